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

const RESTART_MIN_MS = 500;
const RESTART_MAX_MS = 30_000;

export interface RestartingWorkerHooks<From> {
  message(m: From): void;
  /** After every start, the first included: the new thread holds nothing yet. */
  started(): void;
  /** The thread exited (not by `close()`): it is started again after `retryMs`. */
  exited(reason: string, retryMs: number): void;
}

export interface RestartingWorkerOptions {
  /** The delay before a restart: `min` doubling to `max`, back to `min` once healthy (default 0.5 s to 30 s). */
  restartMs?: { min: number; max: number };
  /** The thread's name (in inspectors and profiles). */
  name?: string;
}

/**
 * A worker thread started again whenever it exits, with backoff: 0.5 s doubling to 30 s (by default), back to
 * the minimum once its owner says a new one is healthy. What kube-proxy's engine, a CoreDNS pod and flanneld each
 * run beside the data plane; the owner keeps its own state and says what a restart means for it. Unref'd: the
 * agent's sockets keep the process alive, and a bare engine or app in a test must not.
 */
export class RestartingWorker<From> {
  restarts = 0;
  lastError = '';
  private current!: Worker;
  private readonly minMs: number;
  private readonly maxMs: number;
  private backoff: number;
  private timer?: NodeJS.Timeout;
  private closed = false;

  constructor(
    private readonly entry: string,
    private readonly workerData: unknown,
    /** How the exit reason names it ("kube-proxy's engine worker"). */
    private readonly what: string,
    private readonly hooks: RestartingWorkerHooks<From>,
    private readonly opts: RestartingWorkerOptions = {},
  ) {
    this.minMs = opts.restartMs?.min ?? RESTART_MIN_MS;
    this.maxMs = opts.restartMs?.max ?? RESTART_MAX_MS;
    this.backoff = this.minMs;
  }

  /** The thread now (tests make it fail). */
  get thread(): Worker {
    return this.current;
  }

  start(): void {
    const w = startModuleWorker(this.entry, { workerData: this.workerData, ...(this.opts.name ? { name: this.opts.name } : {}) });
    this.current = w;
    w.unref();
    w.on('message', (m: From) => this.hooks.message(m));
    w.on('error', (e) => {
      this.lastError = e.stack ?? String(e);
    });
    w.on('exit', (code) => {
      if (w !== this.current || this.closed) return;
      const retry = this.backoff;
      this.backoff = Math.min(this.backoff * 2, this.maxMs);
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.restarts++;
        this.lastError = '';
        this.start();
      }, retry);
      this.timer.unref();
      this.hooks.exited(`${this.what} exited (code ${code})${this.lastError ? `: ${this.lastError.split('\n')[0]}` : ''}`, retry);
    });
    this.hooks.started();
  }

  /** The thread got what it needs to serve: the next failure starts the backoff anew. */
  healthy(): void {
    this.backoff = this.minMs;
  }

  close(): Promise<number> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    return this.current.terminate();
  }
}
