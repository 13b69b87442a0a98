/**
 * Starts a worker thread on a module of podlab's own, whichever way podlab is
 * running: compiled, the worker runs its bundle (dist/bundle/, built by
 * `npm run build` for every worker entry: common/compiled.js's BUNDLED), since
 * the code that starts it may itself be inlined into a bundle anywhere; from
 * the sources (tsx: tests, `bin/podlab.js` with a stale dist/) it is the `.ts`
 * file, which a worker cannot load on its own, because tsx's hooks are the
 * main thread's (`bin/podlab.js` registers them through the API, not on the
 * command line a worker inherits). There a small bootstrap registers tsx in
 * the worker first, then imports the module.
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Worker, WorkerOptions } from 'node:worker_threads';
import { BUNDLED, ROOT, compiledFile } from './compiled.js';
import { workerThreads } from './lazy-builtins.ts';

/** Whether this module, and so the whole process, runs from the sources. */
const fromSource = import.meta.url.endsWith('.ts');

/**
 * `entry` is the worker's source file from the repository root
 * (`service-proxy/worker.ts`); it must be one of the bundled entries.
 */
export function startModuleWorker(entry: string, options: Omit<WorkerOptions, 'eval' | 'execArgv'> = {}): Worker {
  if (!BUNDLED.includes(entry)) throw new Error(`startModuleWorker: ${entry} is not a bundled entry (common/compiled.js BUNDLED)`);
  // No inherited flags: a test runner's `--import=tsx` would load tsx twice, and nothing else applies to a worker.
  const { Worker } = workerThreads();
  if (!fromSource) return new Worker(pathToFileURL(compiledFile(entry)), { ...options, execArgv: [] });
  const url = pathToFileURL(path.join(ROOT, entry));
  const tsx = import.meta.resolve('tsx/esm/api');
  const bootstrap = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(url.href)}); });`;
  return new Worker(bootstrap, { ...options, eval: true, execArgv: [] });
}
