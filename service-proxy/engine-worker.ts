/**
 * The data plane's side of kube-proxy's engine in a worker thread
 * (./worker.ts, protocol in ./worker-protocol.ts): feeds it the informers'
 * changes as deltas, in small messages so that no single structured clone
 * holds the data plane up; asks for first-packet decisions and views; and
 * watches the thread: one that exits is reported (the `down` callback) and
 * started again with backoff, given the whole state anew, and meanwhile no
 * decision waits on it.
 *
 * Given the apiserver (`init.api`), the worker lists and watches the objects
 * itself and nothing is fed from here (a restarted worker lists them anew).
 */
import type { Worker } from 'node:worker_threads';
import { workerRunner, type SharedThread, type WorkerRunner } from '../common/module-worker.ts';
import { objectKey } from '../control-plane/informer.ts';
import type { KubeObject } from '../control-plane/types.ts';
import type { Decision, ServicePacket } from './types.ts';
import type { EngineObjectKind, EngineSummary, EngineWorkerInit, FromEngine, ToEngine } from './worker-protocol.ts';

/** Objects per message: a structured clone of 50 EndpointSlices of 10 endpoints costs the sender about 1 ms. */
const CHUNK = 50;
/** Objects of a whole list compared with what the worker has, per turn of the event loop (30-80 ms for 20,000 at once). */
const SCAN = 1000;
/** A decision unanswered this long fails (a hung worker must not hold packets for ever). */
const DECISION_TIMEOUT_MS = 10_000;

export interface EngineWorkerHooks {
  /** After each sync in the worker. */
  summary(s: EngineSummary): void;
  /** The worker exited or failed; it is restarted after `retryMs`. */
  down(reason: string, retryMs: number): void;
  /** The worker (re)started and has the state. */
  up?(restarts: number): void;
  /** The worker's own informers connected, lost or relisted (`init.api` given). */
  informer?(kind: EngineObjectKind, state: string, error?: string): void;
}

/** A whole list being compared with what the worker has; `newer`: keys changed (or deleted: null) since it was given. */
interface PendingList {
  list: readonly KubeObject[];
  i: number;
  seen: Set<string>;
  newer: Map<string, KubeObject | null>;
}

interface Waiting<T> {
  resolve(v: T): void;
  reject(e: Error): void;
  at: number;
}

export class EngineWorker {
  state: 'starting' | 'up' | 'down' | 'closed' = 'starting';
  decisions = 0;
  /** Syncs asked of the worker (each after the last message of a batch of changes). */
  syncsAsked = 0;
  lastSummary?: EngineSummary;
  /** The worker thread's scheduling and kernel thread id, as it reported them. */
  priority?: string;
  tid?: number;
  private readonly runner: WorkerRunner;
  private nextId = 1;
  private readonly decisionsWaiting = new Map<number, Waiting<Decision | null>>();
  /**
   * Decisions asked before the worker's first sync: sent once it is done, so
   * that none is made from half the objects (a Service without its endpoints would REJECT).
   */
  private held: ToEngine[] = [];
  private readonly commandsWaiting = new Map<number, Waiting<string | undefined>>();
  /** The informers' objects as last sent, for a restarted worker. */
  private readonly objects: Record<EngineObjectKind, Map<string, KubeObject>> = { services: new Map(), endpointslices: new Map() };
  /** Changes not sent yet: an object, or null for a deletion. */
  private readonly unsent: Record<EngineObjectKind, Map<string, KubeObject | null>> = { services: new Map(), endpointslices: new Map() };
  /** Whole lists being compared with `objects`, a slice per turn. */
  private readonly lists: Partial<Record<EngineObjectKind, PendingList>> = {};
  private flushing?: NodeJS.Immediate;
  private watchdog?: NodeJS.Timeout;

  constructor(
    private readonly init: EngineWorkerInit,
    private readonly hooks: EngineWorkerHooks,
    /** A thread to run on with other workers' code (the agent's); else a thread of its own. */
    shared?: SharedThread,
  ) {
    this.runner = workerRunner<FromEngine>('service-proxy/worker.ts', init, "kube-proxy's engine worker", {
      message: (m) => this.onMessage(m),
      started: () => this.started(),
      exited: (reason, retryMs) => this.failed(reason, retryMs),
    // On a thread of its own, its compiles there, below the data plane (PODLAB_ENGINE_COMPILES=shared: on V8's platform
    // thread, to measure it); the agent's shared thread is made so too (node-agent/agent.ts).
    }, { shared, ownCompiles: process.env.PODLAB_ENGINE_COMPILES !== 'shared' });
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

  /** The last uncaught error of the thread now, if any. */
  get lastError(): string {
    return this.runner.lastError;
  }

  /** Objects held on this side for the worker (none when it watches the apiserver itself). */
  get objectsHeld(): Record<EngineObjectKind, number> {
    return { services: this.objects.services.size, endpointslices: this.objects.endpointslices.size };
  }

  /** Requests waiting for the worker. */
  get pending(): number {
    return this.decisionsWaiting.size + this.commandsWaiting.size;
  }

  private started(): void {
    this.state = 'starting';
    // It lists the objects itself.
    if (this.init.api) return;
    // Everything the worker should hold (a new worker holds nothing), then one sync.
    for (const kind of ['services', 'endpointslices'] as const) {
      // A list half compared: the rest at once (a restart is rare), so that `objects` is the whole truth.
      while (!this.scan(kind));
      const list = [...this.objects[kind].values()];
      this.objects[kind].clear();
      this.unsent[kind].clear();
      this.lists[kind] = { list, i: 0, seen: new Set(), newer: new Map() };
    }
    this.schedule();
  }

  private failed(reason: string, retry: number): void {
    this.state = 'down';
    const err = new Error(reason);
    for (const w of this.decisionsWaiting.values()) w.reject(err);
    for (const w of this.commandsWaiting.values()) w.reject(err);
    this.decisionsWaiting.clear();
    this.commandsWaiting.clear();
    this.held = [];
    if (this.flushing) clearImmediate(this.flushing);
    this.flushing = undefined;
    this.hooks.down(reason, retry);
  }

  private onMessage(m: FromEngine): void {
    switch (m.t) {
      case 'ready':
        this.priority = m.priority;
        this.tid = m.tid;
        return;
      case 'decision': {
        const w = this.decisionsWaiting.get(m.id);
        this.decisionsWaiting.delete(m.id);
        this.decisions++;
        return w?.resolve(m.d);
      }
      case 'command': {
        const w = this.commandsWaiting.get(m.id);
        this.commandsWaiting.delete(m.id);
        if (m.error !== undefined) w?.reject(new Error(m.error));
        else w?.resolve(m.out);
        return;
      }
      case 'summary':
        if (this.state === 'starting') {
          this.state = 'up';
          this.runner.healthy();
          for (const h of this.held.splice(0)) this.send(h);
          this.hooks.up?.(this.restarts);
        }
        this.lastSummary = m.s;
        return this.hooks.summary(m.s);
      case 'informer':
        return this.hooks.informer?.(m.kind, m.state, m.error);
    }
  }

  private send(m: ToEngine): void {
    this.runner.post(m);
  }

  /** An informer's object added or changed. */
  put(kind: EngineObjectKind, key: string, obj: KubeObject): void {
    this.lists[kind]?.newer.set(key, obj);
    this.objects[kind].set(key, obj);
    this.unsent[kind].set(key, obj);
    this.schedule();
  }

  /** An informer's object deleted. */
  delete(kind: EngineObjectKind, key: string): void {
    const l = this.lists[kind];
    l?.newer.set(key, null);
    if (!this.objects[kind].delete(key) && !l) return;
    this.unsent[kind].set(key, null);
    this.schedule();
  }

  /**
   * Replaces the state wholesale (a full list), sending only what differs
   * from what the worker has (by object identity); compared a slice per turn
   * of the event loop, so that even a list of 20,000 costs no long stall.
   */
  replace(kind: EngineObjectKind, list: readonly KubeObject[]): void {
    this.lists[kind] = { list, i: 0, seen: new Set(), newer: new Map() };
    this.schedule();
  }

  /** Compares up to SCAN objects of a pending list with `objects`; true when the list is done. */
  private scan(kind: EngineObjectKind): boolean {
    const l = this.lists[kind];
    if (!l) return true;
    const objects = this.objects[kind];
    const unsent = this.unsent[kind];
    const end = Math.min(l.list.length, l.i + SCAN);
    for (; l.i < end; l.i++) {
      const o = l.list[l.i];
      const k = objectKey(o);
      // Changed since the list was taken: the change is newer than the list.
      if (l.newer.has(k)) continue;
      l.seen.add(k);
      if (objects.get(k) === o) continue;
      objects.set(k, o);
      unsent.set(k, o);
    }
    if (l.i < l.list.length) return false;
    for (const k of objects.keys()) {
      if (l.seen.has(k) || l.newer.get(k)) continue;
      objects.delete(k);
      unsent.set(k, null);
    }
    this.lists[kind] = undefined;
    return true;
  }

  private schedule(): void {
    if (this.flushing || this.state === 'down' || this.state === 'closed') return;
    this.flushing = setImmediate(() => this.flush());
  }

  /** One message of changes per turn of the event loop; a sync after the last. */
  private flush(): void {
    this.flushing = undefined;
    let listsDone = true;
    for (const kind of ['services', 'endpointslices'] as const) if (!this.scan(kind)) listsDone = false;
    for (const kind of ['services', 'endpointslices'] as const) {
      const unsent = this.unsent[kind];
      if (!unsent.size) continue;
      const put: KubeObject[] = [];
      const del: string[] = [];
      for (const [k, o] of unsent) {
        unsent.delete(k);
        if (o) put.push(o);
        else del.push(k);
        if (put.length + del.length >= CHUNK) break;
      }
      this.send({ t: 'objects', kind, put, del });
      this.flushing = setImmediate(() => this.flush());
      return;
    }
    if (!listsDone) {
      this.flushing = setImmediate(() => this.flush());
      return;
    }
    this.syncsAsked++;
    this.send({ t: 'sync' });
  }

  /**
   * A first packet's decision, or a failure when the worker is gone (or does
   * not answer within 10 s): the caller decides what its packets become then.
   */
  decide(pkt: ServicePacket): Promise<Decision | null> {
    if (this.state === 'down' || this.state === 'closed') return Promise.reject(new Error(`kube-proxy's engine worker is ${this.state === 'down' ? 'down' : 'stopped'}`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.decisionsWaiting.set(id, { resolve, reject, at: Date.now() });
      if (this.state === 'starting') this.held.push({ t: 'decide', id, pkt });
      else this.send({ t: 'decide', id, pkt });
      this.armWatchdog();
    });
  }

  /** `iptables-save`, `ipvsadm`, `ipset` from the engine. */
  command(argv: string[], stamp: Date): Promise<string | undefined> {
    if (this.state === 'down' || this.state === 'closed') return Promise.reject(new Error(`kube-proxy's engine worker is ${this.state === 'down' ? `down (${this.lastError || 'restarting'})` : 'stopped'}`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.commandsWaiting.set(id, { resolve, reject, at: Date.now() });
      this.send({ t: 'command', id, argv, stamp: stamp.getTime() });
      this.armWatchdog();
    });
  }

  opened(key: string): void {
    if (this.state !== 'down' && this.state !== 'closed') this.send({ t: 'opened', key });
  }

  closed(key: string): void {
    if (this.state !== 'down' && this.state !== 'closed') this.send({ t: 'closed', key });
  }

  /** Fails requests older than the timeout; runs only while some wait. */
  private armWatchdog(): void {
    if (this.watchdog) return;
    this.watchdog = setInterval(() => {
      const old = Date.now() - DECISION_TIMEOUT_MS;
      for (const waiting of [this.decisionsWaiting, this.commandsWaiting] as Map<number, Waiting<unknown>>[]) {
        for (const [id, w] of waiting) {
          if (w.at > old) break;
          waiting.delete(id);
          w.reject(new Error(`kube-proxy's engine worker did not answer within ${DECISION_TIMEOUT_MS / 1000} s`));
        }
      }
      if (!this.pending) {
        clearInterval(this.watchdog);
        this.watchdog = undefined;
      }
    }, 1000);
    this.watchdog.unref();
  }

  close(): Promise<number> {
    this.state = 'closed';
    if (this.flushing) clearImmediate(this.flushing);
    if (this.watchdog) clearInterval(this.watchdog);
    const err = new Error("kube-proxy's engine worker is stopped");
    for (const w of this.decisionsWaiting.values()) w.reject(err);
    for (const w of this.commandsWaiting.values()) w.reject(err);
    this.decisionsWaiting.clear();
    this.commandsWaiting.clear();
    this.held = [];
    return this.runner.close();
  }
}
