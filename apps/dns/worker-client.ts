/**
 * The data plane's side of a CoreDNS pod's worker thread (./worker.ts): hands
 * it each query's bytes, calls back with the response's, and watches the
 * thread. A worker that exits is started again with backoff (0.5 s doubling
 * to 30 s, back to 0.5 s once a new one has its lists); the queries it had
 * not answered are dropped and counted (the client asks again, as after a
 * lost datagram), and while it is away, or when more than PENDING_MAX
 * queries wait on it (a hung worker), the caller answers SERVFAIL itself.
 */
import type { Worker } from 'node:worker_threads';
import { startModuleWorker } from '../../common/module-worker.ts';
import type { DnsTransport } from './serve.ts';
import { ownBytes, type DnsWorkerInit, type FromDnsWorker, type ToDnsWorker } from './worker-protocol.ts';

const RESTART_MIN_MS = 500;
const RESTART_MAX_MS = 30_000;
/** Queries waiting on the worker at most (its 256 held while syncing fit well within). */
export const PENDING_MAX = 1024;

export interface WorkerAnswer {
  out?: Buffer;
  outcome: Extract<FromDnsWorker, { t: 'answer' }>['outcome'];
  truncated: boolean;
}

export class DnsWorkerClient {
  state: 'starting' | 'up' | 'down' | 'closed' = 'starting';
  restarts = 0;
  /** What the worker last said it holds. */
  objects = { services: 0, endpointslices: 0, namespaces: 0, synced: false };
  private worker!: Worker;
  private nextId = 1;
  private readonly pending = new Map<number, (a: WorkerAnswer) => void>();
  private backoff = RESTART_MIN_MS;
  private restartTimer?: NodeJS.Timeout;
  private lastError = '';

  constructor(
    private readonly init: DnsWorkerInit,
    private readonly log: (msg: string, fields?: Record<string, unknown>) => void = () => {},
  ) {
    this.spawn();
  }

  /** The thread, for tests that make it fail. */
  get thread(): Worker {
    return this.worker;
  }

  /** False when the worker cannot take it now (down, or too many waiting): the caller answers. */
  query(data: Buffer, transport: DnsTransport, cb: (a: WorkerAnswer) => void): boolean {
    if (this.state === 'down' || this.state === 'closed' || this.pending.size >= PENDING_MAX) return false;
    const id = this.nextId++;
    this.pending.set(id, cb);
    const bytes = ownBytes(data);
    this.worker.postMessage({ t: 'query', id, data: bytes, transport } satisfies ToDnsWorker, [bytes.buffer as ArrayBuffer]);
    return true;
  }

  close(): void {
    this.state = 'closed';
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.pending.clear();
    void this.worker.terminate();
  }

  private spawn(): void {
    const w = startModuleWorker('apps/dns/worker.ts', { workerData: this.init });
    this.worker = w;
    this.state = 'starting';
    // The agent's sockets keep it alive; a bare app in a test must not be kept alive by its worker.
    w.unref();
    w.on('message', (m: FromDnsWorker) => this.onMessage(m));
    w.on('error', (e) => {
      this.lastError = e.stack ?? String(e);
    });
    w.on('exit', (code) => {
      if (w !== this.worker || this.state === 'closed') return;
      this.failed(`coredns worker exited (code ${code})${this.lastError ? `: ${this.lastError.split('\n')[0]}` : ''}`);
    });
  }

  private failed(reason: string): void {
    this.state = 'down';
    const lost = [...this.pending.values()];
    this.pending.clear();
    for (const cb of lost) cb({ outcome: 'dropped', truncated: false });
    const retry = this.backoff;
    this.backoff = Math.min(this.backoff * 2, RESTART_MAX_MS);
    this.log('coredns worker failed: queries get SERVFAIL until it is back', { reason, lost: lost.length, retryMs: retry });
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      this.restarts++;
      this.lastError = '';
      this.spawn();
    }, retry);
    this.restartTimer.unref();
  }

  private onMessage(m: FromDnsWorker): void {
    switch (m.t) {
      case 'ready':
        this.state = 'up';
        return;
      case 'answer': {
        const cb = this.pending.get(m.id);
        this.pending.delete(m.id);
        return cb?.({ ...(m.out ? { out: Buffer.from(m.out.buffer, m.out.byteOffset, m.out.byteLength) } : {}), outcome: m.outcome, truncated: m.truncated });
      }
      case 'objects':
        this.objects = { services: m.services, endpointslices: m.endpointslices, namespaces: m.namespaces, synced: m.synced };
        // A worker that got its lists is healthy: the next failure starts the backoff anew.
        if (m.synced) this.backoff = RESTART_MIN_MS;
        return;
    }
  }
}
