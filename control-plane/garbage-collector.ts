/**
 * Two pieces of object lifecycle that controllers rely on:
 *
 * - Graceful pod termination. A controller (ReplicaSet scale-down, eviction,
 *   garbage collection) does not remove a Pod at once: it sets
 *   `deletionTimestamp`, so the EndpointSlice controller marks the endpoint
 *   terminating (not ready) and every kube-proxy stops sending new
 *   connections there, and only after a drain delay is the Pod removed (the
 *   kubelet's final delete). This is what keeps a Service answering every
 *   request through a rolling update.
 * - The garbage collector: when an owner is deleted, its dependents (by
 *   `ownerReferences` uid) are deleted too (background propagation), pods
 *   gracefully.
 */
import { backgroundTimer } from '../common/clock.ts';
import { formatTimestamp } from './timestamp.ts';
import { EVENTS, EVENTS_V1 } from './core-resources.ts';
import { PODS, resourceKeyOf, type ResourceType } from './resources.ts';
import type { Store } from './store.ts';
import type { KubeObject, Pod } from './types.ts';
import { ownerReferencesOf } from './workload-resources.ts';

/** Options of {@link GarbageCollector}. */
export interface GarbageCollectorOptions {
  /** How long a terminating Pod keeps serving before it is removed (capped by its terminationGracePeriodSeconds). */
  podDrainMs?: number;
}

/** Default drain of a terminating pod: long enough for every kube-proxy to drop the endpoint. */
export const DEFAULT_POD_DRAIN_MS = 2000;

/** The collector and graceful-termination driver. One per store. */
export class GarbageCollector {
  private store?: Store;
  private readonly drainMs: number;
  private readonly timers = new Map<string, { cancel(): void }>();

  constructor(opts: GarbageCollectorOptions = {}) {
    this.drainMs = opts.podDrainMs ?? DEFAULT_POD_DRAIN_MS;
  }

  install(store: Store): void {
    this.store = store;
    store.subscribe((ev) => {
      if (ev.type === 'DELETED') {
        this.timers.get(ev.object.metadata.uid)?.cancel();
        this.timers.delete(ev.object.metadata.uid);
        this.collectDependents(ev.object);
      }
    });
    store.onOpen(() => {
      // Terminations that were under way when the apiserver stopped.
      for (const p of store.objectsOf(PODS)) if (p.metadata.deletionTimestamp) this.scheduleRemoval(p as Pod);
      // Dependents whose owners vanished while we were not running.
      const uids = new Set<string>();
      for (const rt of store.registry.all()) for (const o of store.objectsOf(rt)) uids.add(o.metadata.uid);
      for (const rt of store.registry.all()) {
        if (rt === EVENTS || rt === EVENTS_V1) continue;
        for (const o of [...store.objectsOf(rt)]) {
          const refs = ownerReferencesOf(o);
          if (refs.length > 0 && refs.every((r) => !uids.has(r.uid))) this.deleteObject(rt, o);
        }
      }
    });
    store.onClose(() => {
      for (const t of this.timers.values()) t.cancel();
      this.timers.clear();
    });
  }

  /**
   * Starts a Pod's graceful termination. A Pod that never got an IP (nothing
   * can be connected to it) goes at once.
   */
  terminatePod(pod: KubeObject): void {
    const store = this.store;
    if (!store) return;
    const live = store.tryGet<Pod>(PODS, pod.metadata.name, pod.metadata.namespace);
    if (!live || live.metadata.uid !== pod.metadata.uid || live.metadata.deletionTimestamp) return;
    if (!live.status?.podIP) {
      store.delete(PODS, live.metadata.name, { namespace: live.metadata.namespace });
      return;
    }
    const grace = typeof live.spec?.terminationGracePeriodSeconds === 'number' ? live.spec.terminationGracePeriodSeconds : 30;
    const marked = store.mutate<Pod>(PODS, live.metadata.name, live.metadata.namespace, (d) => {
      d.metadata.deletionTimestamp = formatTimestamp(store.clock.now() + grace * 1000);
      (d.metadata as unknown as Record<string, unknown>).deletionGracePeriodSeconds = grace;
    });
    this.scheduleRemoval(marked);
  }

  private scheduleRemoval(pod: Pod): void {
    const store = this.store!;
    const uid = pod.metadata.uid;
    if (this.timers.has(uid)) return;
    const grace = typeof pod.spec?.terminationGracePeriodSeconds === 'number' ? pod.spec.terminationGracePeriodSeconds * 1000 : 30_000;
    const timer = backgroundTimer(store.clock, () => {
      this.timers.delete(uid);
      const live = store.tryGet(PODS, pod.metadata.name, pod.metadata.namespace);
      if (live && live.metadata.uid === uid) {
        try {
          store.delete(PODS, pod.metadata.name, { namespace: pod.metadata.namespace });
        } catch (err) {
          process.emitWarning(`cannot remove terminated pod ${pod.metadata.name}: ${(err as Error).message}`);
        }
      }
    }, Math.min(this.drainMs, grace));
    this.timers.set(uid, timer);
  }

  /** Deletes (or, for pods, terminates) every object owned by `owner` that has no other live owner. */
  private collectDependents(owner: KubeObject): void {
    const store = this.store!;
    const uid = owner.metadata.uid;
    for (const rt of store.registry.all()) {
      if (rt === EVENTS || rt === EVENTS_V1) continue;
      if (owner.metadata.namespace !== undefined && rt.namespaced === false) continue;
      for (const o of [...store.objectsOf(rt)]) {
        if (rt.namespaced && owner.metadata.namespace !== undefined && o.metadata.namespace !== owner.metadata.namespace) continue;
        const refs = ownerReferencesOf(o);
        if (!refs.some((r) => r.uid === uid)) continue;
        const others = refs.filter((r) => r.uid !== uid);
        if (others.length === 0) {
          this.deleteObject(rt, o);
        } else {
          store.mutate(rt, o.metadata.name, o.metadata.namespace, (d) => {
            (d.metadata as unknown as Record<string, unknown>).ownerReferences = others;
          });
        }
      }
    }
  }

  private deleteObject(rt: ResourceType, o: KubeObject): void {
    const store = this.store!;
    try {
      if (resourceKeyOf(rt) === resourceKeyOf(PODS)) {
        this.terminatePod(o);
        return;
      }
      if (store.tryGet(rt, o.metadata.name, o.metadata.namespace)) store.delete(rt, o.metadata.name, { namespace: o.metadata.namespace });
    } catch (err) {
      process.emitWarning(`garbage collector: cannot delete ${rt.plural} ${o.metadata.name}: ${(err as Error).message}`);
    }
  }
}
