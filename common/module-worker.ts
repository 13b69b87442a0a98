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
import v8 from 'node:v8';
import type { MessagePort, Transferable, Worker, WorkerOptions } from 'node:worker_threads';
import { BUNDLED, ROOT, compiledFile } from './compiled.js';
import { workerThreads } from './lazy-builtins.ts';
import { workerResourceLimits } from './young-generation.ts';

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
  const resourceLimits = { ...workerResourceLimits(), ...options.resourceLimits };
  if (!fromSource) return new Worker(pathToFileURL(compiledFile(entry)), { ...options, resourceLimits, execArgv: [] });
  const url = pathToFileURL(path.join(ROOT, entry));
  const tsx = import.meta.resolve('tsx/esm/api');
  const bootstrap = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(url.href)}); });`;
  return new Worker(bootstrap, { ...options, resourceLimits, eval: true, execArgv: [] });
}

/**
 * What the owner of a worker's code needs of it, whether that code has a
 * thread of its own (RestartingWorker) or shares one (SharedThread.attach).
 */
export interface WorkerRunner {
  /** Starts the code (its `started` hook is called from here: call it once the owner holds the runner). */
  start(): void;
  /** The thread the code runs on now (tests make it fail). */
  readonly thread: Worker;
  /** Times the thread was started again. */
  readonly restarts: number;
  /** The last uncaught error of the thread now, if any. */
  readonly lastError: string;
  post(m: unknown, transfer?: readonly Transferable[]): void;
  /** The code got what it needs to serve: the next failure starts the backoff anew. */
  healthy(): void;
  close(): Promise<number>;
}

/**
 * A runner for a bundled worker entry's code, not started yet: on `shared`'s
 * thread when given (the entry is one of that thread's tenants), else on a
 * thread of its own.
 */
export function workerRunner<From>(entry: string, workerData: unknown, what: string, hooks: RestartingWorkerHooks<From>, opts: RestartingWorkerOptions & { shared?: SharedThread } = {}): WorkerRunner {
  return opts.shared ? opts.shared.tenant(entry, workerData, hooks) : new RestartingWorker<From>(entry, workerData, what, hooks, opts);
}

/** A worker entry's code as a function: it serves its protocol on `port` and returns how to stop it. */
export type TenantServe = (port: MessagePort, workerData: unknown) => () => void;

/**
 * A worker entry's code run on this very thread, over a MessageChannel, so its
 * owner speaks the same protocol as to a thread (and can move it to one later):
 * for code that is cheap while its data is small. It has no thread to restart.
 */
export function inThreadRunner<From>(serve: TenantServe, workerData: unknown, hooks: RestartingWorkerHooks<From>): WorkerRunner {
  let port: MessagePort | undefined;
  let stop = () => {};
  return {
    start() {
      const { MessageChannel } = workerThreads();
      const { port1, port2 } = new MessageChannel();
      port1.on('message', (m: From) => hooks.message(m));
      port = port1;
      stop = serve(port2, workerData);
      // Neither end keeps the process alive, as a worker thread does not.
      port1.unref();
      port2.unref();
      hooks.started();
    },
    get thread(): Worker {
      throw new Error('runs on this thread');
    },
    restarts: 0,
    lastError: '',
    post(m, transfer = []) {
      port?.postMessage(m, transfer);
    },
    healthy() {},
    close() {
      stop();
      port?.close();
      port = undefined;
      return Promise.resolve(0);
    },
  };
}

/** Whether the process was started without V8's concurrent optimizing compiler (then it is never turned on here). */
const noConcurrentCompiles = process.execArgv.includes('--no-concurrent-recompilation');

/**
 * Starts a worker whose isolate optimizes its code on its own thread. V8 gives an isolate a concurrent optimizing
 * compiler, whose jobs run on the process's platform thread, when `--concurrent-recompilation` is on as the
 * isolate is made; so the flag is off from here until the worker runs (its isolate made), and isolates made
 * before or after keep theirs. A fresh kube-proxy worker's compiles (~400 ms of its first list and sync of
 * 10,000 Services) then take its own thread's time at its nice 10, instead of the platform thread's beside the
 * data plane, where even at nice 10 the data plane's thread waited behind them for a core.
 */
function withoutConcurrentCompiles(start: () => Worker): Worker {
  if (noConcurrentCompiles) return start();
  v8.setFlagsFromString('--no-concurrent-recompilation');
  let w: Worker;
  try {
    w = start();
  } catch (e) {
    v8.setFlagsFromString('--concurrent-recompilation');
    throw e;
  }
  let restored = false;
  const restore = () => {
    if (restored) return;
    restored = true;
    v8.setFlagsFromString('--concurrent-recompilation');
  };
  w.once('online', restore);
  w.once('error', restore);
  w.once('exit', restore);
  return w;
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
  /**
   * Its optimizing compiler's jobs on its own thread (at its own priority) instead of on V8's platform thread,
   * which every isolate of the process shares, the data plane's too (./withoutConcurrentCompiles).
   */
  ownCompiles?: boolean;
}

/**
 * A worker thread started again whenever it exits, with backoff: 0.5 s doubling to 30 s (by default), back to
 * the minimum once its owner says a new one is healthy. What kube-proxy's engine, a CoreDNS pod and flanneld each
 * run beside the data plane; the owner keeps its own state and says what a restart means for it. Unref'd: the
 * agent's sockets keep the process alive, and a bare engine or app in a test must not.
 */
export class RestartingWorker<From> implements WorkerRunner {
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
    const start = () => startModuleWorker(this.entry, { workerData: this.workerData, ...(this.opts.name ? { name: this.opts.name } : {}) });
    const w = this.opts.ownCompiles ? withoutConcurrentCompiles(start) : start();
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

  post(m: unknown, transfer: readonly Transferable[] = []): void {
    this.current.postMessage(m, transfer);
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

/** What a SharedThread's owner side tells its thread (common/shared-thread-host.ts serves it). */
export type ToSharedThread = { t: 'attach'; id: number; entry: string; workerData: unknown; port: MessagePort } | { t: 'detach'; id: number };

interface Tenant {
  entry: string;
  workerData: unknown;
  hooks: RestartingWorkerHooks<unknown>;
  port?: MessagePort;
}

/**
 * One worker thread (a RestartingWorker on `hostEntry`, which serves
 * shared-thread-host.ts's protocol) that several worker entries' code runs on
 * as tenants, each with a MessagePort of its own speaking its usual protocol.
 * A worker thread is a whole Node environment (~10 MB RSS before any of its
 * code runs), so an agent holding a CoreDNS pod runs that pod's code on the
 * thread of kube-proxy's engine rather than on a second one. They share its
 * fate: when the thread dies, every tenant is told it exited and is attached
 * again to the restarted thread (the thread's restart count and backoff are
 * theirs). The thread starts with the first tenant and
 * ends with the last.
 */
export class SharedThread {
  private host?: RestartingWorker<never>;
  private readonly tenants = new Map<number, Tenant>();
  private nextId = 1;

  constructor(
    private readonly hostEntry: string,
    private readonly what: string,
    private readonly opts: RestartingWorkerOptions = {},
  ) {}

  /** The thread now, if any tenant runs. */
  get thread(): Worker | undefined {
    return this.host?.thread;
  }

  /** Tenants attached (their entries). */
  get entries(): string[] {
    return [...this.tenants.values()].map((t) => t.entry);
  }

  /** A tenant running `entry`'s code (a bundled worker entry that the host entry serves), once started. */
  tenant<From>(entry: string, workerData: unknown, hooks: RestartingWorkerHooks<From>): WorkerRunner {
    const id = this.nextId++;
    const tenant: Tenant = { entry, workerData, hooks };
    const running = () => this.host;
    return {
      start: () => this.attach(id, tenant),
      get thread() {
        const h = running();
        if (!h) throw new Error(`shared thread: ${entry} is not started`);
        return h.thread;
      },
      get restarts() {
        return running()?.restarts ?? 0;
      },
      get lastError() {
        return running()?.lastError ?? '';
      },
      post(m, transfer = []) {
        tenant.port?.postMessage(m, transfer);
      },
      healthy: () => this.host?.healthy(),
      close: () => this.detach(id),
    };
  }

  private attach(id: number, tenant: Tenant): void {
    this.tenants.set(id, tenant);
    if (!this.host) {
      this.host = new RestartingWorker<never>(this.hostEntry, undefined, this.what, {
        message: () => {},
        started: () => {
          for (const [i, t] of this.tenants) this.connect(i, t);
        },
        exited: (reason, retryMs) => {
          for (const t of this.tenants.values()) {
            t.port?.close();
            t.port = undefined;
            t.hooks.exited(reason, retryMs);
          }
        },
      }, this.opts);
      this.host.start();
    } else this.connect(id, tenant);
  }

  private connect(id: number, t: Tenant): void {
    const { MessageChannel } = workerThreads();
    const { port1, port2 } = new MessageChannel();
    port1.on('message', (m) => t.hooks.message(m));
    // As the thread itself is unref'd: the agent's sockets keep the process alive, a tenant must not.
    port1.unref();
    t.port = port1;
    this.host!.thread.postMessage({ t: 'attach', id, entry: t.entry, workerData: t.workerData, port: port2 } satisfies ToSharedThread, [port2]);
    t.hooks.started();
  }

  private detach(id: number): Promise<number> {
    const t = this.tenants.get(id);
    const host = this.host;
    if (!t || !host) return Promise.resolve(0);
    this.tenants.delete(id);
    t.port?.close();
    t.port = undefined;
    if (this.tenants.size > 0) {
      host.thread.postMessage({ t: 'detach', id } satisfies ToSharedThread);
      return Promise.resolve(0);
    }
    this.host = undefined;
    return host.close();
  }
}
