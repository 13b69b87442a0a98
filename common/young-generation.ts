/**
 * The young generation a worker thread's isolate gets: the one the process's command line gave its main thread.
 * V8 sizes an isolate's heap from its flags when it makes the isolate, and the lab's processes set their
 * --max-semi-space-size back to its default once their own heap is made (common/heap-flags-reset.cjs, for Node's
 * code cache), so a worker made later would otherwise grow V8's default 16 MB semi-spaces: its young generation
 * reached 32 MB under churn, against 2 MB with the limit.
 */
import type { ResourceLimits } from 'node:worker_threads';

/** `resourceLimits` for a worker of this process: none unless its command line bounds the semi-spaces. */
export function workerResourceLimits(execArgv: readonly string[] = process.execArgv): ResourceLimits {
  for (const arg of execArgv) {
    // node takes V8's size flags only as `--max-semi-space-size=N` (dashes or underscores).
    const m = /^--max[-_]semi[-_]space[-_]size=(\d+)$/.exec(arg);
    const mb = m ? Number(m[1]) : 0;
    // A young generation is two semi-spaces and a large-object space of one semi-space's size (V8's
    // Heap::YoungGenerationSizeFromSemiSpaceSize): 3 MB gives the worker the 1 MB semi-spaces of the flag's 1.
    if (mb > 0) return { maxYoungGenerationSizeMb: 3 * mb };
  }
  return {};
}
