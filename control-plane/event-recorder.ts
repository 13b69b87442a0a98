/**
 * client-go's EventRecorder for the controllers that run inside the
 * apiserver process: writes core/v1 Events about an object, folding a
 * repeat of the same (object, type, reason, message, source) into the
 * existing Event's `count` and `lastTimestamp`, as the event correlator does.
 *
 * Events are kept for `ttlMs` (kube-apiserver's --event-ttl, 1 h) and at most
 * `maxEvents` exist at once (reaching it, the oldest tenth goes), so a
 * flapping lab cannot grow the store without bound.
 */
import { formatTimestamp } from './timestamp.ts';
import { EVENTS, type CoreEvent } from './core-resources.ts';
import { coreEventObject, eventName } from './event-client.ts';
import { NAMESPACES } from './resources.ts';
import type { Store } from './store.ts';
import type { KubeObject } from './types.ts';

/** Who reports an event (`source.component`, and the node for kubelet events). */
export interface EventSource {
  component: string;
  host?: string;
}

/** Options of {@link EventRecorder}. */
export interface EventRecorderOptions {
  ttlMs?: number;
  maxEvents?: number;
}

const DEFAULT_TTL_MS = 60 * 60 * 1000;
const DEFAULT_MAX_EVENTS = 2000;
/**
 * At the cap, the oldest events go until this share of it is free: a 100 × 10 lab's start records more events than
 * the cap, and pruning one at a time made every new event scan and sort all 2,000 (7% of the apiserver's busy time).
 */
const PRUNE_SLACK = 0.1;

/** Records Events through a store. */
export class EventRecorder {
  private readonly ttlMs: number;
  private readonly maxEvents: number;
  /** Aggregation key → event name (namespace is part of the key). */
  private readonly byKey = new Map<string, { namespace: string; name: string }>();
  private seq = 0;
  /** No event can expire before this (ms); events created meanwhile expire later still. */
  private nextExpiryMs = -Infinity;

  constructor(
    private readonly store: Store,
    opts: EventRecorderOptions = {},
  ) {
    this.ttlMs = opts.ttlMs ?? DEFAULT_TTL_MS;
    this.maxEvents = opts.maxEvents ?? DEFAULT_MAX_EVENTS;
  }

  /**
   * Records one event about `obj`. Cluster-scoped objects' events go to
   * `default`, as kubelet and the node controller file Node events.
   * `fieldPath` names a part of the object (`spec.containers{nginx}`).
   * Never throws: an event that cannot be written is dropped.
   */
  record(obj: KubeObject, type: 'Normal' | 'Warning', reason: string, message: string, source: EventSource, fieldPath?: string): void {
    const store = this.store;
    const namespace = obj.metadata.namespace ?? 'default';
    try {
      if (!store.tryGet(NAMESPACES, namespace)) return;
      const now = formatTimestamp(store.clock.now());
      const key = JSON.stringify([namespace, obj.metadata.uid, obj.kind, fieldPath ?? '', type, reason, message, source.component, source.host ?? '']);
      const known = this.byKey.get(key);
      if (known && store.tryGet(EVENTS, known.name, known.namespace)) {
        store.mutate<CoreEvent>(EVENTS, known.name, known.namespace, (e) => {
          e.count = (e.count ?? 1) + 1;
          e.lastTimestamp = now;
        });
        return;
      }
      this.prune();
      const ms = store.clock.now();
      const name = eventName(obj, ms, this.seq++);
      store.create(EVENTS, coreEventObject(obj, { name, namespace, now, type, reason, message, source, fieldPath }));
      this.byKey.set(key, { namespace, name });
    } catch (err) {
      process.emitWarning(`event ${reason} about ${obj.kind} ${obj.metadata.name} not recorded: ${(err as Error).message}`);
    }
  }

  /**
   * Drops expired events, then the oldest ones beyond the cap. Every record of
   * a new event comes here, so the scan is skipped while nothing can have
   * expired (before the oldest event's expiry, which only moves later as events
   * are bumped) and the store is under the cap; each event's time is parsed
   * once. A 100-node lab records thousands of events while it comes up: a
   * sort that parsed both timestamps in every comparison made the apiserver
   * spend most of its time here.
   */
  private prune(): void {
    const store = this.store;
    const now = store.clock.now();
    if (store.countOf(EVENTS) < this.maxEvents && now < this.nextExpiryMs) return;
    const events = store.objectsOf(EVENTS) as CoreEvent[];
    const cutoff = now - this.ttlMs;
    const stamped = events.map((e) => ({ e, at: Date.parse(e.lastTimestamp ?? e.metadata.creationTimestamp) || 0 }));
    const doomed = stamped.filter((x) => x.at < cutoff).map((x) => x.e);
    const rest = stamped.filter((x) => x.at >= cutoff).sort((a, b) => a.at - b.at);
    // Room for the event being recorded, and the slack.
    const keep = this.maxEvents - 1 - Math.floor(this.maxEvents * PRUNE_SLACK);
    if (rest.length >= this.maxEvents) doomed.push(...rest.splice(0, rest.length - keep).map((x) => x.e));
    // The oldest left, or the one being recorded, expires first. Events others post through the API may carry older
    // times: look again within a minute regardless.
    this.nextExpiryMs = Math.min((rest.length ? rest[0].at : now) + this.ttlMs, now + 60_000);
    for (const e of doomed) {
      if (store.tryGet(EVENTS, e.metadata.name, e.metadata.namespace)) store.delete(EVENTS, e.metadata.name, { namespace: e.metadata.namespace });
    }
    if (doomed.length) {
      const gone = new Set(doomed.map((e) => `${e.metadata.namespace}/${e.metadata.name}`));
      for (const [k, v] of this.byKey) if (gone.has(`${v.namespace}/${v.name}`)) this.byKey.delete(k);
    }
  }
}
