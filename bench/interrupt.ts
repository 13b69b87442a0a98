/**
 * An interrupted bench (Ctrl-C, or SIGTERM to its pid alone) leaves nothing
 * running: the labs it brought up stop (their processes are detached, out of
 * reach of the terminal's signal) and so do the helper processes it spawned
 * (echo servers, an apiserver, a module measured apart), which a SIGTERM to the
 * bench alone would leave orphaned.
 */
import type { ChildProcess } from 'node:child_process';
import { stopLabsOnInterrupt } from '../lab/launch.ts';

const children = new Set<ChildProcess>();

/** A helper process to stop if the bench is interrupted; it leaves the set when it exits. */
export function benchChild<T extends ChildProcess>(child: T): T {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

let installed = false;

/** Called by every bench entry, before it starts anything. */
export function stopOnInterrupt(): void {
  if (installed) return;
  installed = true;
  stopLabsOnInterrupt(
    (m) => process.stderr.write(`bench: ${m}\n`),
    () => {
      for (const c of children) c.kill('SIGTERM');
    },
  );
}
