/**
 * client-go's EventRecorder for the controllers that run inside the
 * apiserver process: writes core/v1 Events about an object, folding a
 * repeat of the same (object, type, reason, message, source) into the
 * existing Event's `count` and `lastTimestamp`, as the event correlator does.
 *
 * Events are kept for `ttlMs` (kube-apiserver's --event-ttl, 1 h) and at most
 * `maxEvents` exist at once, so a flapping lab cannot grow state.json
 * without bound (every mutation rewrites it).
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

/** Records Events through a store. */
export class EventRecorder {
  private readonly ttlMs: number;
  private readonly maxEvents: number;
  /** Aggregation key → event name (namespace is part of the key). */
  private readonly byKey = new Map<string, { namespace: string; name: string }>();
  private seq = 0;

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

  /** Drops expired events, then the oldest ones beyond the cap. */
  private prune(): void {
    const store = this.store;
    const events = [...store.objectsOf(EVENTS)] as CoreEvent[];
    const cutoff = store.clock.now() - this.ttlMs;
    const last = (e: CoreEvent) => Date.parse(e.lastTimestamp ?? e.metadata.creationTimestamp) || 0;
    const doomed = events.filter((e) => last(e) < cutoff);
    const rest = events.filter((e) => last(e) >= cutoff).sort((a, b) => last(a) - last(b));
    if (rest.length >= this.maxEvents) doomed.push(...rest.slice(0, rest.length - this.maxEvents + 1));
    for (const e of doomed) {
      if (store.tryGet(EVENTS, e.metadata.name, e.metadata.namespace)) store.delete(EVENTS, e.metadata.name, { namespace: e.metadata.namespace });
    }
    if (doomed.length) {
      const gone = new Set(doomed.map((e) => `${e.metadata.namespace}/${e.metadata.name}`));
      for (const [k, v] of this.byKey) if (gone.has(`${v.namespace}/${v.name}`)) this.byKey.delete(k);
    }
  }
}
