/**
 * A client-go style informer: list, then watch from the list's
 * resourceVersion, keeping a local cache and emitting add/update/delete.
 *
 * Resilience is the point (flanneld and kube-proxy live on informers):
 * - a broken or ended watch resumes from the last resourceVersion seen, so
 *   an apiserver restart with persisted history loses and repeats nothing;
 * - while the apiserver is down it retries forever with capped exponential
 *   backoff (100 ms doubling to 2 s by default) until stop();
 * - when the server says the version is too old (410) it relists and emits
 *   only the differences against its cache: an object whose resourceVersion
 *   did not change emits nothing, vanished objects emit delete.
 * Problems are reported as `'status'` events, never `'error'` (an unhandled
 * 'error' event would crash the process that hosts the informer).
 */
import { EventEmitter } from 'node:events';
import { ApiError, type ApiClient } from './client.ts';
import { wallClock, type Clock, type Timer } from '../common/clock.ts';
import type { KubeObject, Status, WatchEvent } from './types.ts';

/** Options of an Informer. */
export interface InformerOptions {
  namespace?: string;
  labelSelector?: string;
  fieldSelector?: string;
  /** First reconnect delay after a failure (default 100 ms); doubles up to maxBackoffMs. */
  resyncBackoffMs?: number;
  /** Backoff cap (default 2000 ms). */
  maxBackoffMs?: number;
  /** Time source for backoff timers. */
  clock?: Clock;
}

/** Connection states reported through the `'status'` event. */
export type InformerState = 'connected' | 'disconnected' | 'relisted' | 'listener-error';

/** Payload of the `'status'` event. */
export interface InformerStatus {
  state: InformerState;
  /** The last resourceVersion the cache reflects. */
  resourceVersion: string;
  /** Why we got disconnected / relisted, or what a listener threw. */
  error?: Error;
  /** For `relisted`: how many add/update/delete events the reconciliation emitted. */
  changes?: { added: number; updated: number; deleted: number };
}

/** Cache key of an object: `namespace/name`, or `name` for cluster-scoped objects (client-go's MetaNamespaceKeyFunc). */
export function objectKey(obj: KubeObject): string {
  return obj.metadata.namespace ? `${obj.metadata.namespace}/${obj.metadata.name}` : obj.metadata.name;
}

/** The events an {@link Informer} emits, with their arguments. */
export interface InformerEvents<T extends KubeObject> {
  add: [obj: T];
  update: [oldObj: T, newObj: T];
  delete: [obj: T];
  status: [status: InformerStatus];
}

/** Thrown internally to force a relist (ERROR event in the stream). */
class RelistNeeded extends Error {
  override readonly name = 'RelistNeeded';
}

/** Lists and watches one resource, keeping a cache. Objects handed out are shared: do not mutate them. */
export class Informer<T extends KubeObject = KubeObject> extends EventEmitter<InformerEvents<T>> {
  private readonly client: ApiClient;
  private readonly resource: string;
  private readonly opts: InformerOptions;
  private readonly clock: Clock;
  private readonly cache = new Map<string, T>();
  private lastRv = '';
  private synced = false;
  private stopped = false;
  /** Unknown until the first attempt, so an apiserver that is down at start is reported too. */
  private connected: boolean | undefined = undefined;
  private running?: Promise<void>;
  private readonly abort = new AbortController();
  private sleepTimer?: { timer: Timer; wake: () => void };
  private resolveStart?: () => void;
  private startPromise?: Promise<void>;

  constructor(client: ApiClient, resource: string, opts: InformerOptions = {}) {
    super();
    this.client = client;
    this.resource = resource;
    this.opts = opts;
    this.clock = opts.clock ?? wallClock;
  }

  /** True once the initial list has been applied. */
  get hasSynced(): boolean {
    return this.synced;
  }

  /** The resourceVersion the cache reflects. */
  get resourceVersion(): string {
    return this.lastRv;
  }

  /**
   * Starts listing and watching. Resolves once the initial list is in the
   * cache (retrying while the apiserver is unreachable), or when stop() is
   * called first (then hasSynced stays false, like client-go's WaitForCacheSync).
   */
  start(): Promise<void> {
    if (!this.startPromise) {
      this.startPromise = new Promise<void>((resolve) => {
        this.resolveStart = resolve;
      });
      this.running = this.run();
    }
    return this.startPromise;
  }

  /**
   * Stops watching; pending reconnects are cancelled and the open watch is
   * closed. The cache stays readable. The returned promise resolves once the
   * loop has exited (awaiting it is optional).
   */
  stop(): Promise<void> {
    if (!this.stopped) {
      this.stopped = true;
      this.abort.abort();
      if (this.sleepTimer) {
        this.sleepTimer.timer.cancel();
        this.sleepTimer.wake();
      }
      this.resolveStart?.();
    }
    return this.running ?? Promise.resolve();
  }

  /** Snapshot of the cached objects. */
  list(): T[] {
    return [...this.cache.values()];
  }

  /** Cached object by key (`namespace/name` or `name`). */
  get(key: string): T | undefined {
    return this.cache.get(key);
  }

  /** Sorted cache keys. */
  keys(): string[] {
    return [...this.cache.keys()].sort();
  }

  private emitSafe<K extends keyof InformerEvents<T>>(event: K, ...args: InformerEvents<T>[K]): void {
    try {
      (this.emit as (e: K, ...a: InformerEvents<T>[K]) => boolean)(event, ...args);
    } catch (err) {
      // A throwing handler must not tear down the informer; report it and carry on.
      if (event !== 'status') this.emitSafe('status', { state: 'listener-error', resourceVersion: this.lastRv, error: err as Error });
    }
  }

  private setConnected(up: boolean, error?: Error): void {
    if (up === this.connected) return;
    this.connected = up;
    this.emitSafe('status', { state: up ? 'connected' : 'disconnected', resourceVersion: this.lastRv, ...(error ? { error } : {}) });
  }

  private async run(): Promise<void> {
    const initial = this.opts.resyncBackoffMs ?? 100;
    const max = this.opts.maxBackoffMs ?? 2000;
    let backoff = initial;
    let needList = true;
    let relistCause: Error | undefined;
    let eventsSinceList = 0;
    while (!this.stopped) {
      try {
        if (needList) {
          const changes = await this.relist();
          if (this.stopped) break;
          needList = false;
          if (!this.synced) {
            this.synced = true;
            this.resolveStart?.();
          } else {
            this.emitSafe('status', { state: 'relisted', resourceVersion: this.lastRv, changes, ...(relistCause ? { error: relistCause } : {}) });
          }
          relistCause = undefined;
          this.setConnected(true);
          eventsSinceList = 0;
        }
        let opened = false;
        const stream = this.client.watch<T | Status>(this.resource, {
          namespace: this.opts.namespace,
          labelSelector: this.opts.labelSelector,
          fieldSelector: this.opts.fieldSelector,
          resourceVersion: this.lastRv,
          allowWatchBookmarks: true,
          signal: this.abort.signal,
          onOpen: () => {
            opened = true;
            backoff = initial;
            this.setConnected(true);
          },
        });
        for await (const ev of stream) {
          if (this.stopped) break;
          this.apply(ev);
          if (ev.type !== 'ERROR') eventsSinceList++;
        }
        // A clean end (server timeout or shutdown): resume right away, unless it never opened.
        if (!opened && !this.stopped) await this.sleep(backoff);
      } catch (err) {
        if (this.stopped) break;
        const e = err as Error;
        if (e instanceof RelistNeeded || (e instanceof ApiError && (e.code === 410 || e.code === 504))) {
          needList = true;
          relistCause = e;
          // Relisting right away is what client-go does; the server is evidently up.
          // But a watch that fails again straight after a relist must not spin.
          if (eventsSinceList === 0) {
            await this.sleep(backoff);
            backoff = Math.min(backoff * 2, max);
          }
          continue;
        }
        this.setConnected(false, e);
        await this.sleep(backoff);
        backoff = Math.min(backoff * 2, max);
      }
    }
  }

  /** Applies one watch event to the cache, emitting only real changes. */
  private apply(ev: WatchEvent<T | Status>): void {
    if (ev.type === 'ERROR') {
      const st = ev.object as Status;
      throw new RelistNeeded(`watch error ${st.code ?? ''} ${st.reason ?? ''}: ${st.message ?? ''}`.trim());
    }
    const obj = ev.object as T;
    const rv = obj.metadata?.resourceVersion;
    if (ev.type === 'BOOKMARK') {
      if (rv) this.lastRv = rv;
      return;
    }
    const key = objectKey(obj);
    const old = this.cache.get(key);
    if (ev.type === 'DELETED') {
      if (old) {
        this.cache.delete(key);
        this.emitSafe('delete', obj);
      }
    } else if (!old) {
      this.cache.set(key, obj);
      this.emitSafe('add', obj);
    } else if (old.metadata.resourceVersion !== rv) {
      this.cache.set(key, obj);
      this.emitSafe('update', old, obj);
    }
    if (rv) this.lastRv = rv;
  }

  /** Lists and reconciles the cache against the result. */
  private async relist(): Promise<{ added: number; updated: number; deleted: number }> {
    const list = await this.client.list<T>(this.resource, {
      namespace: this.opts.namespace,
      labelSelector: this.opts.labelSelector,
      fieldSelector: this.opts.fieldSelector,
    });
    if (this.stopped) return { added: 0, updated: 0, deleted: 0 };
    const changes = { added: 0, updated: 0, deleted: 0 };
    const seen = new Set<string>();
    const pending: (() => void)[] = [];
    for (const item of list.items) {
      const key = objectKey(item);
      seen.add(key);
      const old = this.cache.get(key);
      if (!old) {
        this.cache.set(key, item);
        pending.push(() => this.emitSafe('add', item));
        changes.added++;
      } else if (old.metadata.resourceVersion !== item.metadata.resourceVersion) {
        this.cache.set(key, item);
        pending.push(() => this.emitSafe('update', old, item));
        changes.updated++;
      }
    }
    for (const [key, old] of [...this.cache]) {
      if (!seen.has(key)) {
        this.cache.delete(key);
        pending.push(() => this.emitSafe('delete', old));
        changes.deleted++;
      }
    }
    this.lastRv = list.metadata.resourceVersion;
    // Emit after the cache is consistent, so handlers that read list() see the new state.
    for (const emit of pending) emit();
    return changes;
  }

  private sleep(ms: number): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const wake = (): void => {
        this.sleepTimer = undefined;
        resolve();
      };
      this.sleepTimer = { timer: this.clock.setTimeout(wake, ms), wake };
    });
  }
}
