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
import { RestartingWorker } from '../../common/module-worker.ts';
import type { DnsTransport } from './serve.ts';
import { ownBytes, type DnsWorkerInit, type FromDnsWorker, type ToDnsWorker } from './worker-protocol.ts';

/** Queries waiting on the worker at most (its 256 held while syncing fit well within). */
export const PENDING_MAX = 1024;

export interface WorkerAnswer {
  out?: Buffer;
  outcome: Extract<FromDnsWorker, { t: 'answer' }>['outcome'];
  truncated: boolean;
}

export class DnsWorkerClient {
  state: 'starting' | 'up' | 'down' | 'closed' = 'starting';
  /** What the worker last said it holds. */
  objects = { services: 0, endpointslices: 0, namespaces: 0, synced: false };
  private readonly runner: RestartingWorker<FromDnsWorker>;
  private nextId = 1;
  private readonly pending = new Map<number, (a: WorkerAnswer) => void>();

  constructor(
    init: DnsWorkerInit,
    private readonly log: (msg: string, fields?: Record<string, unknown>) => void = () => {},
  ) {
    this.runner = new RestartingWorker<FromDnsWorker>('apps/dns/worker.ts', init, 'coredns worker', {
      message: (m) => this.onMessage(m),
      started: () => (this.state = 'starting'),
      exited: (reason, retryMs) => this.failed(reason, retryMs),
    });
    this.runner.start();
  }

  /** The thread, for tests that make it fail. */
  get thread(): Worker {
    return this.runner.thread;
  }

  /** Times the thread was started again. */
  get restarts(): number {
    return this.runner.restarts;
  }

  /** False when the worker cannot take it now (down, or too many waiting): the caller answers. */
  query(data: Buffer, transport: DnsTransport, cb: (a: WorkerAnswer) => void): boolean {
    if (this.state === 'down' || this.state === 'closed' || this.pending.size >= PENDING_MAX) return false;
    const id = this.nextId++;
    this.pending.set(id, cb);
    const bytes = ownBytes(data);
    this.runner.thread.postMessage({ t: 'query', id, data: bytes, transport } satisfies ToDnsWorker, [bytes.buffer as ArrayBuffer]);
    return true;
  }

  close(): void {
    this.state = 'closed';
    this.pending.clear();
    void this.runner.close();
  }

  private failed(reason: string, retry: number): void {
    this.state = 'down';
    const lost = [...this.pending.values()];
    this.pending.clear();
    for (const cb of lost) cb({ outcome: 'dropped', truncated: false });
    this.log('coredns worker failed: queries get SERVFAIL until it is back', { reason, lost: lost.length, retryMs: retry });
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
        if (m.synced) this.runner.healthy();
        return;
    }
  }
}
