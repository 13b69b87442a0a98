/**
 * The DaemonSet controller: one pod per eligible node (the template's
 * nodeSelector), bound to its node directly, with the tolerations Kubernetes
 * adds to every daemon pod (not-ready and unreachable NoExecute without a
 * limit, so a dead node keeps its daemon pod). A template change rolls out
 * node by node within maxUnavailable, the pods labelled with the template's
 * `controller-revision-hash`.
 */
import { formatTimestamp } from './timestamp.ts';
import { computeTemplateHash } from './deployment-controller.ts';
import { isPodReady } from './endpointslice-controller.ts';
import type { EventRecorder } from './event-recorder.ts';
import type { GarbageCollector } from './garbage-collector.ts';
import { isPodActive, isPodAvailable, ownedBy, podFromTemplate } from './replicaset-controller.ts';
import { resolveIntOrPercent } from './deployment-controller.ts';
import { NODES, PODS, resourceKeyOf } from './resources.ts';
import type { Store, StoreEvent } from './store.ts';
import type { KubeObject, Pod } from './types.ts';
import { CONTROLLER_REVISION_HASH_LABEL, controllerOf, DAEMONSETS, type DaemonSet, type DaemonSetStatus } from './workload-resources.ts';

const SOURCE = { component: 'daemonset-controller' };

/** Tolerations the DaemonSet controller adds to its pods (util.AddOrUpdateDaemonPodTolerations). */
export const DAEMON_TOLERATIONS = [
  { key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute' },
  { key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute' },
  { key: 'node.kubernetes.io/disk-pressure', operator: 'Exists', effect: 'NoSchedule' },
  { key: 'node.kubernetes.io/memory-pressure', operator: 'Exists', effect: 'NoSchedule' },
  { key: 'node.kubernetes.io/pid-pressure', operator: 'Exists', effect: 'NoSchedule' },
  { key: 'node.kubernetes.io/unschedulable', operator: 'Exists', effect: 'NoSchedule' },
];

function nodeEligible(ds: DaemonSet, node: KubeObject): boolean {
  const sel = ds.spec?.template?.spec?.nodeSelector as Record<string, string> | undefined;
  return Object.entries(sel ?? {}).every(([k, v]) => node.metadata.labels?.[k] === v);
}

/** The controller. */
export class DaemonSetController {
  private store?: Store;

  constructor(
    private readonly recorder: EventRecorder,
    private readonly gc: GarbageCollector,
  ) {}

  install(store: Store): void {
    this.store = store;
    store.subscribe((ev) => this.onEvent(ev));
    store.onOpen(() => this.syncAll());
  }

  private syncAll(): void {
    for (const ds of this.store!.objectsOf(DAEMONSETS)) this.sync(ds.metadata.namespace ?? 'default', ds.metadata.name);
  }

  private onEvent(ev: StoreEvent): void {
    const key = resourceKeyOf(ev.rt);
    if (key === resourceKeyOf(DAEMONSETS)) {
      if (ev.type !== 'DELETED') this.sync(ev.object.metadata.namespace ?? 'default', ev.object.metadata.name);
    } else if (key === resourceKeyOf(NODES)) {
      if (ev.type !== 'MODIFIED' || JSON.stringify(ev.prev?.metadata.labels) !== JSON.stringify(ev.object.metadata.labels)) this.syncAll();
    } else if (key === resourceKeyOf(PODS)) {
      const owner = controllerOf(ev.object);
      if (owner?.kind === 'DaemonSet') this.sync(ev.object.metadata.namespace ?? 'default', owner.name);
    }
  }

  /** Reconciles one DaemonSet. */
  sync(namespace: string, name: string): void {
    const store = this.store;
    if (!store) return;
    const ds = store.tryGet<DaemonSet>(DAEMONSETS, name, namespace);
    if (!ds || ds.metadata.deletionTimestamp || !ds.spec?.template) return;
    const hash = computeTemplateHash(ds.spec.template);
    const nodes = store.objectsOf(NODES).filter((n) => nodeEligible(ds, n)).map((n) => n.metadata.name).sort();
    const active = () => (ownedBy(store, PODS, ds) as Pod[]).filter(isPodActive);
    const byNode = new Map<string, Pod[]>();
    for (const p of active()) {
      const n = p.spec?.nodeName ?? '';
      byNode.set(n, [...(byNode.get(n) ?? []), p]);
    }
    for (const [node, pods] of byNode) {
      // Pods on nodes that are gone or no longer match, and duplicates.
      const extra = nodes.includes(node) ? pods.sort((a, b) => (a.metadata.creationTimestamp < b.metadata.creationTimestamp ? -1 : 1)).slice(1) : pods;
      for (const p of extra) {
        this.gc.terminatePod(p);
        this.recorder.record(ds, 'Normal', 'SuccessfulDelete', `Deleted pod: ${p.metadata.name}`, SOURCE);
      }
    }
    for (const node of nodes) {
      if (byNode.get(node)?.length) continue;
      const body = podFromTemplate(ds.spec.template, ds, `${name}-`, { [CONTROLLER_REVISION_HASH_LABEL]: hash }) as { spec: Record<string, unknown>; status?: unknown };
      body.spec.nodeName = node;
      const own = Array.isArray(body.spec.tolerations) ? (body.spec.tolerations as { key?: string }[]) : [];
      body.spec.tolerations = [...own, ...DAEMON_TOLERATIONS.filter((t) => !own.some((o) => o.key === t.key))];
      body.status = { conditions: [{ type: 'PodScheduled', status: 'True', lastProbeTime: null, lastTransitionTime: formatTimestamp(store.clock.now()) }] };
      try {
        const pod = store.create<Pod>(PODS, body);
        this.recorder.record(ds, 'Normal', 'SuccessfulCreate', `Created pod: ${pod.metadata.name}`, SOURCE);
      } catch (err) {
        this.recorder.record(ds, 'Warning', 'FailedCreate', `Error creating: ${(err as Error).message}`, SOURCE);
      }
    }
    // Rolling update: replace pods of an older template while few enough are unavailable.
    const now = store.clock.now();
    const minReady = ds.spec.minReadySeconds ?? 0;
    if ((ds.spec.updateStrategy?.type ?? 'RollingUpdate') === 'RollingUpdate') {
      const maxUnavailable = Math.max(1, resolveIntOrPercent(ds.spec.updateStrategy?.rollingUpdate?.maxUnavailable ?? 1, nodes.length, true));
      const pods = active();
      let unavailable = nodes.filter((n) => !pods.some((p) => p.spec?.nodeName === n && isPodAvailable(p, minReady, now))).length;
      for (const p of pods.filter((x) => x.metadata.labels?.[CONTROLLER_REVISION_HASH_LABEL] !== hash)) {
        if (unavailable >= maxUnavailable) break;
        this.gc.terminatePod(p);
        this.recorder.record(ds, 'Normal', 'SuccessfulDelete', `Deleted pod: ${p.metadata.name}`, SOURCE);
        if (isPodAvailable(p, minReady, now)) unavailable++;
      }
    }
    this.updateStatus(ds, nodes, hash);
  }

  private updateStatus(ds: DaemonSet, nodes: string[], hash: string): void {
    const store = this.store!;
    const now = store.clock.now();
    const pods = (ownedBy(store, PODS, ds) as Pod[]).filter(isPodActive);
    const on = (n: string) => pods.filter((p) => p.spec?.nodeName === n);
    const scheduled = nodes.filter((n) => on(n).length > 0);
    const minReady = ds.spec?.minReadySeconds ?? 0;
    const status: DaemonSetStatus = {
      currentNumberScheduled: scheduled.length,
      numberMisscheduled: new Set(pods.map((p) => p.spec?.nodeName ?? '').filter((n) => !nodes.includes(n))).size,
      desiredNumberScheduled: nodes.length,
      numberReady: nodes.filter((n) => on(n).some(isPodReady)).length,
      observedGeneration: ds.metadata.generation ?? 1,
      updatedNumberScheduled: nodes.filter((n) => on(n).some((p) => p.metadata.labels?.[CONTROLLER_REVISION_HASH_LABEL] === hash)).length,
      numberAvailable: nodes.filter((n) => on(n).some((p) => isPodAvailable(p, minReady, now))).length,
    };
    status.numberUnavailable = status.desiredNumberScheduled! - status.numberAvailable!;
    if (JSON.stringify(ds.status ?? {}) === JSON.stringify(status)) return;
    store.mutate<DaemonSet>(DAEMONSETS, ds.metadata.name, ds.metadata.namespace, (d) => {
      d.status = status;
    });
  }
}
