/**
 * The data plane's side of a CoreDNS pod's worker thread (./worker.ts): hands
 * it each query's bytes, calls back with the response's, and watches the
 * thread. In an agent the same code (./worker-serve.ts) runs on the agent's
 * own thread over a MessageChannel until the cluster has DNS_WORKER_AT_SERVICES
 * Services, then on the agent's shared worker thread, which takes over once it has its lists. A worker that exits is started again with backoff (0.5 s doubling
 * to 30 s, back to 0.5 s once a new one has its lists); the queries it had
 * not answered are dropped and counted (the client asks again, as after a
 * lost datagram), and while it is away, or when more than PENDING_MAX
 * queries wait on it (a hung worker), the caller answers SERVFAIL itself.
 */
import type { Worker } from 'node:worker_threads';
import { inThreadRunner, workerRunner, type RestartingWorkerHooks, type SharedThread, type WorkerRunner } from '../../common/module-worker.ts';
import { serve } from './worker-serve.ts';
import type { DnsTransport } from './serve.ts';
import { ownBytes, type DnsWorkerInit, type FromDnsWorker, type ToDnsWorker } from './worker-protocol.ts';

/**
 * Services from which an agent's CoreDNS runs on its worker thread (as kube-proxy's engine, node-agent/kube-proxy.ts
 * WORKER_AT_SERVICES): below, the decoding and index cost the data plane's thread little, and a worker thread
 * of its own cost ~15 MB RSS (a Node environment, its code, its connections) on every node holding a CoreDNS pod.
 */
export const DNS_WORKER_AT_SERVICES = 100;

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
  /** Where the code runs: on this thread (the agent's, while Services are few), or on a worker thread. */
  where: 'here' | 'thread';
  private runner: WorkerRunner;
  /** The worker thread's code taking over from this thread's, until it has its lists. */
  private moving?: WorkerRunner;
  private nextId = 1;
  private readonly pending = new Map<number, (a: WorkerAnswer) => void>();

  constructor(
    private readonly init: DnsWorkerInit,
    private readonly log: (msg: string, fields?: Record<string, unknown>) => void = () => {},
    /**
     * The agent's shared thread: the code runs on this thread while there are fewer than DNS_WORKER_AT_SERVICES
     * Services, then moves there. Without it, on a thread of its own from the start.
     */
    private readonly shared?: SharedThread,
  ) {
    this.where = shared ? 'here' : 'thread';
    this.runner = shared ? inThreadRunner(serve, init, this.hooks(() => this.runner)) : this.onThread();
    this.runner.start();
  }

  /** The thread, for tests that make it fail (none while the code runs here). */
  get thread(): Worker {
    return this.runner.thread;
  }

  /** Times the thread was started again. */
  get restarts(): number {
    return this.runner.restarts;
  }

  private onThread(): WorkerRunner {
    const r: WorkerRunner = workerRunner<FromDnsWorker>('apps/dns/worker.ts', this.init, 'coredns worker', this.hooks(() => r), { shared: this.shared });
    return r;
  }

  /** A runner's hooks; `self` is that runner (messages of one being replaced or taking over are told apart). */
  private hooks(self: () => WorkerRunner): RestartingWorkerHooks<FromDnsWorker> {
    return {
      message: (m) => this.onMessage(m, self()),
      started: () => {
        if (self() === this.runner) this.state = 'starting';
      },
      exited: (reason, retryMs) => {
        if (self() === this.runner) this.failed(reason, retryMs);
        else if (self() === this.moving) this.log("coredns worker failed while taking over: still answering on the agent's thread", { reason, retryMs });
      },
    };
  }

  /** Many Services: the index and the watch events move off the data plane's thread, once the worker has its lists. */
  private moveToThread(): void {
    this.moving = this.onThread();
    this.moving.start();
  }

  /** The worker has its lists: it answers from now on; the code here answers what it was sent, then stops. */
  private tookOver(): void {
    const old = this.runner;
    this.runner = this.moving!;
    this.moving = undefined;
    this.where = 'thread';
    this.log('coredns moved to the worker thread', { services: this.objects.services });
    const stop = setTimeout(() => void old.close(), 1000);
    stop.unref();
  }

  /** False when the worker cannot take it now (down, or too many waiting): the caller answers. */
  query(data: Buffer, transport: DnsTransport, cb: (a: WorkerAnswer) => void): boolean {
    if (this.state === 'down' || this.state === 'closed' || this.pending.size >= PENDING_MAX) return false;
    const id = this.nextId++;
    this.pending.set(id, cb);
    const bytes = ownBytes(data);
    this.runner.post({ t: 'query', id, data: bytes, transport } satisfies ToDnsWorker, [bytes.buffer as ArrayBuffer]);
    return true;
  }

  close(): void {
    this.state = 'closed';
    this.pending.clear();
    void this.moving?.close();
    void this.runner.close();
  }

  private failed(reason: string, retry: number): void {
    this.state = 'down';
    const lost = [...this.pending.values()];
    this.pending.clear();
    for (const cb of lost) cb({ outcome: 'dropped', truncated: false });
    this.log('coredns worker failed: queries get SERVFAIL until it is back', { reason, lost: lost.length, retryMs: retry });
  }

  private onMessage(m: FromDnsWorker, from: WorkerRunner): void {
    if (from === this.moving) {
      if (m.t === 'objects' && m.synced) this.tookOver();
      return;
    }
    // The code being replaced only answers what it was sent.
    if (from !== this.runner && m.t !== 'answer') return;
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
        if (this.where === 'here' && !this.moving && m.services >= DNS_WORKER_AT_SERVICES) this.moveToThread();
        return;
    }
  }
}
