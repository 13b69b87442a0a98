/**
 * The ReplicaSet controller (kube-controller-manager's replicaset
 * controller), on the store's commit stream like the EndpointSlice
 * controller: keeps `spec.replicas` active pods carrying the template, owned
 * by the ReplicaSet (ownerReferences, controller=true), adopts matching
 * orphans, and reports status (replicas, ready, available).
 *
 * Scale-down picks pods as controller.ActivePods ranks them (unscheduled,
 * then pending, then not ready, then the newest first) and terminates them
 * gracefully (see garbage-collector.ts). Pods go through the normal create
 * path, so the scheduler and the node agents' IPAM place them like any Pod.
 */
import { backgroundTimer } from '../common/clock.ts';
import { isPodReady } from './endpointslice-controller.ts';
import type { EventRecorder } from './event-recorder.ts';
import type { GarbageCollector } from './garbage-collector.ts';
import { labelSelectorMatches } from './label-selector.ts';
import { PODS, resourceKeyOf } from './resources.ts';
import type { Store, StoreEvent } from './store.ts';
import type { KubeObject, Pod } from './types.ts';
import { controllerOf, controllerRef, REPLICASETS, type PodTemplateSpec, type ReplicaSet, type ReplicaSetStatus } from './workload-resources.ts';

const SOURCE = { component: 'replicaset-controller' };

/** controller.IsPodActive: not finished and not being deleted. */
export function isPodActive(p: KubeObject): boolean {
  const phase = (p as Pod).status?.phase;
  return phase !== 'Succeeded' && phase !== 'Failed' && !p.metadata.deletionTimestamp;
}

/** podutil.IsPodAvailable: Ready for at least minReadySeconds at `now`. */
export function isPodAvailable(p: Pod, minReadySeconds: number, now: number): boolean {
  if (!isPodReady(p)) return false;
  if (minReadySeconds <= 0) return true;
  const cond = p.status?.conditions?.find((c) => c.type === 'Ready');
  const since = cond?.lastTransitionTime ? Date.parse(cond.lastTransitionTime) : NaN;
  return !Number.isNaN(since) && since + minReadySeconds * 1000 <= now;
}

/** Objects of `rt` in `ns` controlled by `owner` (by uid). */
export function ownedBy(store: Store, resource: string | typeof PODS, owner: KubeObject): KubeObject[] {
  return store.objectsOf(resource).filter((o) => o.metadata.namespace === owner.metadata.namespace && controllerOf(o)?.uid === owner.metadata.uid);
}

/** A Pod built from a template, owned by `owner`, named `<prefix><random>`. */
export function podFromTemplate(template: PodTemplateSpec, owner: KubeObject, generateName: string, extraLabels: Record<string, string> = {}): object {
  const meta = template.metadata ?? {};
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      generateName,
      namespace: owner.metadata.namespace,
      labels: { ...(meta.labels ?? {}), ...extraLabels },
      ...(meta.annotations ? { annotations: { ...meta.annotations } } : {}),
      ownerReferences: [controllerRef(owner)],
    },
    spec: structuredClone(template.spec ?? { containers: [] }),
  };
}

const PHASE_RANK: Record<string, number> = { Pending: 0, Unknown: 1, Running: 2 };

/** controller.ActivePods ordering: the pods to remove first come first. */
export function deletionOrder(a: Pod, b: Pod): number {
  const unassigned = (p: Pod) => (p.spec?.nodeName ? 1 : 0);
  if (unassigned(a) !== unassigned(b)) return unassigned(a) - unassigned(b);
  const phase = (p: Pod) => PHASE_RANK[p.status?.phase ?? 'Pending'] ?? 0;
  if (phase(a) !== phase(b)) return phase(a) - phase(b);
  const ready = (p: Pod) => (isPodReady(p) ? 1 : 0);
  if (ready(a) !== ready(b)) return ready(a) - ready(b);
  // Newer pods go first.
  if (a.metadata.creationTimestamp !== b.metadata.creationTimestamp) return a.metadata.creationTimestamp > b.metadata.creationTimestamp ? -1 : 1;
  return Number(b.metadata.resourceVersion) - Number(a.metadata.resourceVersion);
}

/** The controller. */
export class ReplicaSetController {
  private store?: Store;
  private readonly retry = new Map<string, { cancel(): void }>();

  constructor(
    private readonly recorder: EventRecorder,
    private readonly gc: GarbageCollector,
  ) {}

  install(store: Store): void {
    this.store = store;
    store.subscribe((ev) => this.onEvent(ev));
    store.onOpen(() => {
      for (const rs of store.objectsOf(REPLICASETS)) this.sync(rs.metadata.namespace ?? 'default', rs.metadata.name);
    });
    store.onClose(() => {
      for (const t of this.retry.values()) t.cancel();
      this.retry.clear();
    });
  }

  private onEvent(ev: StoreEvent): void {
    const store = this.store!;
    const key = resourceKeyOf(ev.rt);
    if (key === resourceKeyOf(REPLICASETS)) {
      if (ev.type !== 'DELETED') this.sync(ev.object.metadata.namespace ?? 'default', ev.object.metadata.name);
    } else if (key === resourceKeyOf(PODS)) {
      const owner = controllerOf(ev.object) ?? (ev.prev ? controllerOf(ev.prev) : undefined);
      if (owner?.kind === 'ReplicaSet') {
        this.sync(ev.object.metadata.namespace ?? 'default', owner.name);
      } else if (!owner && ev.type !== 'DELETED') {
        // An orphan may be adopted by a ReplicaSet whose selector matches it.
        for (const rs of store.objectsOf(REPLICASETS)) {
          if (rs.metadata.namespace === ev.object.metadata.namespace && labelSelectorMatches((rs as ReplicaSet).spec?.selector, ev.object.metadata.labels)) {
            this.sync(rs.metadata.namespace ?? 'default', rs.metadata.name);
          }
        }
      }
    }
  }

  /** Reconciles one ReplicaSet. */
  sync(namespace: string, name: string): void {
    const store = this.store;
    if (!store) return;
    const rs = store.tryGet<ReplicaSet>(REPLICASETS, name, namespace);
    if (!rs || rs.metadata.deletionTimestamp) return;
    const spec = rs.spec ?? {};
    // Adopt orphans that the selector matches.
    for (const p of store.objectsOf(PODS)) {
      if (p.metadata.namespace !== namespace || controllerOf(p) || !isPodActive(p) || !labelSelectorMatches(spec.selector, p.metadata.labels)) continue;
      store.mutate(PODS, p.metadata.name, namespace, (d) => {
        const meta = d.metadata as unknown as Record<string, unknown>;
        meta.ownerReferences = [...(Array.isArray(meta.ownerReferences) ? (meta.ownerReferences as unknown[]) : []), controllerRef(rs)];
      });
    }
    const owned = ownedBy(store, PODS, rs) as Pod[];
    const active = owned.filter(isPodActive);
    const want = spec.replicas ?? 1;
    const diff = active.length - want;
    if (diff < 0 && spec.template) {
      for (let i = 0; i < -diff; i++) {
        try {
          const pod = store.create<Pod>(PODS, podFromTemplate(spec.template, rs, `${name}-`));
          this.recorder.record(rs, 'Normal', 'SuccessfulCreate', `Created pod: ${pod.metadata.name}`, SOURCE);
        } catch (err) {
          this.recorder.record(rs, 'Warning', 'FailedCreate', `Error creating: ${(err as Error).message}`, SOURCE);
          break;
        }
      }
    } else if (diff > 0) {
      for (const p of [...active].sort(deletionOrder).slice(0, diff)) {
        this.gc.terminatePod(p);
        this.recorder.record(rs, 'Normal', 'SuccessfulDelete', `Deleted pod: ${p.metadata.name}`, SOURCE);
      }
    }
    this.updateStatus(rs);
  }

  private updateStatus(rs: ReplicaSet): void {
    const store = this.store!;
    const now = store.clock.now();
    const minReady = rs.spec?.minReadySeconds ?? 0;
    const active = (ownedBy(store, PODS, rs) as Pod[]).filter(isPodActive);
    const templateLabels = rs.spec?.template?.metadata?.labels ?? {};
    const status: ReplicaSetStatus = {
      replicas: active.length,
      fullyLabeledReplicas: active.filter((p) => Object.entries(templateLabels).every(([k, v]) => p.metadata.labels?.[k] === v)).length,
      readyReplicas: active.filter(isPodReady).length,
      availableReplicas: active.filter((p) => isPodAvailable(p, minReady, now)).length,
      observedGeneration: rs.metadata.generation ?? 1,
    };
    // Pods that are ready but not yet for minReadySeconds become available later: look again then.
    if (minReady > 0 && status.readyReplicas !== status.availableReplicas) this.retryLater(rs, minReady * 1000);
    const old = rs.status ?? {};
    if ((Object.keys(status) as (keyof ReplicaSetStatus)[]).every((k) => JSON.stringify(old[k]) === JSON.stringify(status[k]))) return;
    store.mutate<ReplicaSet>(REPLICASETS, rs.metadata.name, rs.metadata.namespace, (d) => {
      d.status = { ...(d.status ?? {}), ...status };
    });
  }

  private retryLater(rs: ReplicaSet, ms: number): void {
    const key = `${rs.metadata.namespace}/${rs.metadata.name}`;
    if (this.retry.has(key)) return;
    this.retry.set(
      key,
      backgroundTimer(this.store!.clock, () => {
        this.retry.delete(key);
        this.sync(rs.metadata.namespace ?? 'default', rs.metadata.name);
      }, ms),
    );
  }
}
