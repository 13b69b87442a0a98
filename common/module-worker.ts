/**
 * Starts a worker thread on a module of podlab's own, whichever way podlab is
 * running: from dist/ the module is the compiled `.js` beside its importer and
 * Node loads it as it is; from the sources (tsx: tests, `bin/podlab.js` with a
 * stale dist/) it is the `.ts` file, which a worker cannot load on its own,
 * because tsx's hooks are the main thread's (`bin/podlab.js` registers them
 * through the API, not on the command line a worker inherits). There a small
 * bootstrap registers tsx in the worker first, then imports the module.
 */
import { Worker, type WorkerOptions } from 'node:worker_threads';

/**
 * `name` is the module's file name without extension, resolved beside
 * `importerUrl` (the caller's `import.meta.url`), taking the importer's own
 * extension: `.ts` under tsx, `.js` in dist/.
 */
export function startModuleWorker(importerUrl: string, name: string, options: Omit<WorkerOptions, 'eval' | 'execArgv'> = {}): Worker {
  const fromSource = importerUrl.endsWith('.ts');
  const url = new URL(`./${name}${fromSource ? '.ts' : '.js'}`, importerUrl);
  // No inherited flags: a test runner's `--import=tsx` would load tsx twice, and nothing else applies to a worker.
  if (!fromSource) return new Worker(url, { ...options, execArgv: [] });
  const tsx = import.meta.resolve('tsx/esm/api');
  const bootstrap = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(url.href)}); });`;
  return new Worker(bootstrap, { ...options, eval: true, execArgv: [] });
}
