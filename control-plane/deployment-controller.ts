/**
 * The Deployment controller (kube-controller-manager's deployment
 * controller, pkg/controller/deployment), on the store's commit stream:
 *
 * - one ReplicaSet per pod template, named `<deployment>-<pod-template-hash>`
 *   (FNV-32a of the template, encoded like rand.SafeEncodeString), with the
 *   hash as a label on it, its selector and its pods;
 * - revisions in `deployment.kubernetes.io/revision` on the ReplicaSets and
 *   the Deployment; a rollback (`kubectl rollout undo` patches the old
 *   template back) reuses the old ReplicaSet and gives it the next revision;
 * - RollingUpdate: the new ReplicaSet grows while the total stays within
 *   replicas + maxSurge, old ones shrink while the available pods (Ready, for
 *   minReadySeconds) stay at least replicas - maxUnavailable, unhealthy old
 *   pods first; Recreate: old to zero, then the new one up;
 * - status (replicas, updated, ready, available, the Available and
 *   Progressing conditions) as `kubectl rollout status` reads it;
 * - ScalingReplicaSet events; old ReplicaSets beyond revisionHistoryLimit go.
 */
import { formatTimestamp } from './timestamp.ts';
import type { EventRecorder } from './event-recorder.ts';
import { ownedBy } from './replicaset-controller.ts';
import { PODS, resourceKeyOf } from './resources.ts';
import type { Store, StoreEvent } from './store.ts';
import {
  controllerOf,
  controllerRef,
  DEPLOYMENTS,
  DESIRED_REPLICAS_ANNOTATION,
  MAX_REPLICAS_ANNOTATION,
  POD_TEMPLATE_HASH_LABEL,
  REPLICASETS,
  REVISION_ANNOTATION,
  type Deployment,
  type DeploymentStatus,
  type PodTemplateSpec,
  type ReplicaSet,
  type WorkloadCondition,
} from './workload-resources.ts';

const SOURCE = { component: 'deployment-controller' };
const SAFE_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789';

/**
 * JSON with sorted keys and without null members, so that templates equal as
 * Go structs compare equal: a template that went through a typed client
 * (`kubectl rollout undo` copies one from a ReplicaSet) carries
 * `metadata.creationTimestamp: null`, which a typed comparison ignores.
 */
export function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v)
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined && (v as Record<string, unknown>)[k] !== null)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stableJson((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

/** controller.ComputeHash: FNV-32a of the template (and collision count), as a safe string. */
export function computeTemplateHash(template: PodTemplateSpec | undefined, collisionCount = 0): string {
  let h = 0x811c9dc5;
  const text = stableJson(withoutHash(template)) + (collisionCount ? String(collisionCount) : '');
  for (const byte of Buffer.from(text, 'utf8')) {
    h ^= byte;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return [...String(h)].map((c) => SAFE_ALPHABET[c.charCodeAt(0) % SAFE_ALPHABET.length]).join('');
}

function withoutHash(template: PodTemplateSpec | undefined): PodTemplateSpec {
  const t = structuredClone(template ?? {});
  if (t.metadata?.labels) {
    delete t.metadata.labels[POD_TEMPLATE_HASH_LABEL];
  }
  return t;
}

/** EqualIgnoreHash: two templates equal but for the pod-template-hash label. */
export function templatesEqual(a: PodTemplateSpec | undefined, b: PodTemplateSpec | undefined): boolean {
  return stableJson(withoutHash(a)) === stableJson(withoutHash(b));
}

/** intstr.GetScaledValueFromIntOrPercent. */
export function resolveIntOrPercent(v: number | string | undefined, total: number, roundUp: boolean): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'string' && /^\d+%$/.test(v)) {
    const x = (Number(v.slice(0, -1)) * total) / 100;
    return roundUp ? Math.ceil(x) : Math.floor(x);
  }
  return 0;
}

/** deploymentutil.ResolveFenceposts: (maxSurge, maxUnavailable), never both zero. */
export function fenceposts(d: Deployment): { maxSurge: number; maxUnavailable: number } {
  const replicas = d.spec?.replicas ?? 1;
  const ru = d.spec?.strategy?.rollingUpdate ?? {};
  const maxSurge = resolveIntOrPercent(ru.maxSurge ?? '25%', replicas, true);
  let maxUnavailable = resolveIntOrPercent(ru.maxUnavailable ?? '25%', replicas, false);
  if (maxSurge === 0 && maxUnavailable === 0) maxUnavailable = 1;
  return { maxSurge, maxUnavailable: Math.min(maxUnavailable, replicas) };
}

const revisionOf = (o: { metadata: { annotations?: Record<string, string> } }): number => Number(o.metadata.annotations?.[REVISION_ANNOTATION] ?? 0) || 0;
const specReplicas = (rs: ReplicaSet): number => rs.spec?.replicas ?? 0;

/** The controller. */
export class DeploymentController {
  private store?: Store;

  constructor(private readonly recorder: EventRecorder) {}

  install(store: Store): void {
    this.store = store;
    store.subscribe((ev) => this.onEvent(ev));
    store.onOpen(() => {
      for (const d of store.objectsOf(DEPLOYMENTS)) this.sync(d.metadata.namespace ?? 'default', d.metadata.name);
    });
  }

  private onEvent(ev: StoreEvent): void {
    const key = resourceKeyOf(ev.rt);
    if (key === resourceKeyOf(DEPLOYMENTS)) {
      if (ev.type !== 'DELETED') this.sync(ev.object.metadata.namespace ?? 'default', ev.object.metadata.name);
    } else if (key === resourceKeyOf(REPLICASETS)) {
      const owner = controllerOf(ev.object);
      if (owner?.kind === 'Deployment') this.sync(ev.object.metadata.namespace ?? 'default', owner.name);
    } else if (key === resourceKeyOf(PODS) && ev.type === 'DELETED') {
      // A Recreate rollout waits for the last old pod to be gone.
      const rsRef = controllerOf(ev.object);
      const rs = rsRef?.kind === 'ReplicaSet' ? this.store!.tryGet(REPLICASETS, rsRef.name, ev.object.metadata.namespace) : undefined;
      const owner = rs ? controllerOf(rs) : undefined;
      if (owner?.kind === 'Deployment') this.sync(ev.object.metadata.namespace ?? 'default', owner.name);
    }
  }

  /** Reconciles one Deployment. */
  sync(namespace: string, name: string): void {
    const store = this.store;
    if (!store) return;
    let d = store.tryGet<Deployment>(DEPLOYMENTS, name, namespace);
    if (!d || d.metadata.deletionTimestamp || !d.spec?.template) return;
    const all = () => ownedBy(store, REPLICASETS, d!) as ReplicaSet[];
    let rsList = all();
    let newRS = rsList.find((rs) => templatesEqual(rs.spec?.template, d!.spec?.template));
    const olds = () => all().filter((rs) => rs.metadata.uid !== newRS?.metadata.uid);
    const maxOld = Math.max(0, ...olds().map(revisionOf));
    if (!newRS) {
      newRS = this.createReplicaSet(d, maxOld + 1, rsList);
      if (!newRS) return;
    } else if (revisionOf(newRS) <= maxOld) {
      // A rollback: the old ReplicaSet becomes the newest revision again.
      newRS = store.mutate<ReplicaSet>(REPLICASETS, newRS.metadata.name, namespace, (r) => {
        r.metadata.annotations = { ...(r.metadata.annotations ?? {}), [REVISION_ANNOTATION]: String(maxOld + 1) };
      });
    }
    const revision = String(revisionOf(newRS));
    if (d.metadata.annotations?.[REVISION_ANNOTATION] !== revision) {
      d = store.mutate<Deployment>(DEPLOYMENTS, name, namespace, (x) => {
        x.metadata.annotations = { ...(x.metadata.annotations ?? {}), [REVISION_ANNOTATION]: revision };
      });
    }
    if (!d.spec?.paused) {
      if (d.spec?.strategy?.type === 'Recreate') this.recreate(d, newRS, olds());
      else this.rollingUpdate(d, newRS.metadata.name, () => olds());
      this.cleanup(d, olds());
    }
    rsList = all();
    newRS = rsList.find((rs) => templatesEqual(rs.spec?.template, d.spec?.template));
    this.updateStatus(d, newRS, rsList);
  }

  private createReplicaSet(d: Deployment, revision: number, existing: ReplicaSet[]): ReplicaSet | undefined {
    const store = this.store!;
    const namespace = d.metadata.namespace ?? 'default';
    let collision = d.status?.collisionCount ?? 0;
    for (let attempt = 0; attempt < 5; attempt++, collision++) {
      const hash = computeTemplateHash(d.spec!.template, collision);
      const name = `${d.metadata.name}-${hash}`;
      if (store.tryGet(REPLICASETS, name, namespace)) continue;
      const template = structuredClone(d.spec!.template!);
      template.metadata = { ...(template.metadata ?? {}), labels: { ...(template.metadata?.labels ?? {}), [POD_TEMPLATE_HASH_LABEL]: hash } };
      const selector = structuredClone(d.spec!.selector ?? {});
      selector.matchLabels = { ...(selector.matchLabels ?? {}), [POD_TEMPLATE_HASH_LABEL]: hash };
      const replicas = d.spec?.strategy?.type === 'Recreate' ? 0 : this.newReplicas(d, 0, existing);
      const { maxSurge } = fenceposts(d);
      try {
        const rs = store.create<ReplicaSet>(REPLICASETS, {
          apiVersion: 'apps/v1',
          kind: 'ReplicaSet',
          metadata: {
            name,
            namespace,
            labels: template.metadata.labels,
            annotations: {
              [DESIRED_REPLICAS_ANNOTATION]: String(d.spec?.replicas ?? 1),
              [MAX_REPLICAS_ANNOTATION]: String((d.spec?.replicas ?? 1) + maxSurge),
              [REVISION_ANNOTATION]: String(revision),
            },
            ownerReferences: [controllerRef(d)],
          },
          spec: { replicas, minReadySeconds: d.spec?.minReadySeconds ?? 0, selector, template },
        });
        if (replicas > 0) this.recorder.record(d, 'Normal', 'ScalingReplicaSet', `Scaled up replica set ${name} to ${replicas}`, SOURCE);
        return rs;
      } catch (err) {
        this.recorder.record(d, 'Warning', 'FailedCreate', `Failed to create new replica set "${name}": ${(err as Error).message}`, SOURCE);
        return undefined;
      }
    }
    return undefined;
  }

  /** deploymentutil.NewRSNewReplicas for RollingUpdate. */
  private newReplicas(d: Deployment, current: number, rsList: ReplicaSet[]): number {
    const replicas = d.spec?.replicas ?? 1;
    const { maxSurge } = fenceposts(d);
    const total = rsList.reduce((n, rs) => n + specReplicas(rs), 0);
    const maxTotal = replicas + maxSurge;
    if (total >= maxTotal) return current;
    return current + Math.max(0, Math.min(maxTotal - total, replicas - current));
  }

  private scale(d: Deployment, rs: ReplicaSet, to: number): void {
    const from = specReplicas(rs);
    if (from === to) return;
    const { maxSurge } = fenceposts(d);
    this.store!.mutate<ReplicaSet>(REPLICASETS, rs.metadata.name, rs.metadata.namespace, (r) => {
      (r.spec ??= {}).replicas = to;
      r.metadata.annotations = {
        ...(r.metadata.annotations ?? {}),
        [DESIRED_REPLICAS_ANNOTATION]: String(d.spec?.replicas ?? 1),
        [MAX_REPLICAS_ANNOTATION]: String((d.spec?.replicas ?? 1) + maxSurge),
      };
    });
    this.recorder.record(d, 'Normal', 'ScalingReplicaSet', `Scaled ${to > from ? 'up' : 'down'} replica set ${rs.metadata.name} to ${to} from ${from}`, SOURCE);
  }

  private rollingUpdate(d: Deployment, newName: string, olds: () => ReplicaSet[]): void {
    const store = this.store!;
    const ns = d.metadata.namespace ?? 'default';
    const replicas = d.spec?.replicas ?? 1;
    const { maxUnavailable } = fenceposts(d);
    const fresh = () => store.tryGet<ReplicaSet>(REPLICASETS, newName, ns)!;
    // reconcileNewReplicaSet
    let newRS = fresh();
    if (specReplicas(newRS) > replicas) this.scale(d, newRS, replicas);
    else if (specReplicas(newRS) < replicas) this.scale(d, newRS, this.newReplicas(d, specReplicas(newRS), [newRS, ...olds()]));
    newRS = fresh();
    // reconcileOldReplicaSets
    const oldRSs = olds().filter((rs) => specReplicas(rs) > 0);
    if (oldRSs.length === 0) return;
    const allRSs = [newRS, ...olds()];
    const allPods = allRSs.reduce((n, rs) => n + specReplicas(rs), 0);
    const minAvailable = replicas - maxUnavailable;
    const newUnavailable = specReplicas(newRS) - (newRS.status?.availableReplicas ?? 0);
    let maxScaledDown = allPods - minAvailable - newUnavailable;
    if (maxScaledDown <= 0) return;
    // cleanupUnhealthyReplicas: old pods that are not available go first, oldest ReplicaSet first.
    for (const rs of oldRSs.sort((a, b) => (a.metadata.creationTimestamp < b.metadata.creationTimestamp ? -1 : 1))) {
      if (maxScaledDown <= 0) break;
      const unhealthy = specReplicas(rs) - (rs.status?.availableReplicas ?? 0);
      if (unhealthy <= 0) continue;
      const down = Math.min(unhealthy, maxScaledDown);
      this.scale(d, rs, specReplicas(rs) - down);
      maxScaledDown -= down;
    }
    // scaleDownOldReplicaSetsForRollingUpdate
    const now = [fresh(), ...olds()];
    const available = now.reduce((n, rs) => n + (rs.status?.availableReplicas ?? 0), 0);
    if (available <= minAvailable) return;
    let total = available - minAvailable;
    for (const rs of olds().filter((r) => specReplicas(r) > 0).sort((a, b) => (a.metadata.creationTimestamp < b.metadata.creationTimestamp ? -1 : 1))) {
      if (total <= 0) break;
      const down = Math.min(specReplicas(rs), total);
      this.scale(d, rs, specReplicas(rs) - down);
      total -= down;
    }
  }

  private recreate(d: Deployment, newRS: ReplicaSet, olds: ReplicaSet[]): void {
    for (const rs of olds) if (specReplicas(rs) > 0) this.scale(d, rs, 0);
    // oldPodsRunning: terminating pods still run, so the new ones wait until they are gone.
    if (olds.some((rs) => ownedBy(this.store!, PODS, rs).some((p) => !['Succeeded', 'Failed'].includes(String((p.status as { phase?: string } | undefined)?.phase))))) return;
    this.scale(d, newRS, d.spec?.replicas ?? 1);
  }

  /** Old ReplicaSets beyond revisionHistoryLimit, oldest first, once they have no pods. */
  private cleanup(d: Deployment, olds: ReplicaSet[]): void {
    const limit = d.spec?.revisionHistoryLimit ?? 10;
    const idle = olds.filter((rs) => specReplicas(rs) === 0 && (rs.status?.replicas ?? 0) === 0).sort((a, b) => revisionOf(a) - revisionOf(b));
    for (const rs of idle.slice(0, Math.max(0, olds.length - limit))) this.store!.delete(REPLICASETS, rs.metadata.name, { namespace: rs.metadata.namespace });
  }

  private updateStatus(d: Deployment, newRS: ReplicaSet | undefined, rsList: ReplicaSet[]): void {
    const store = this.store!;
    const replicas = d.spec?.replicas ?? 1;
    const sum = (f: (rs: ReplicaSet) => number | undefined) => rsList.reduce((n, rs) => n + (f(rs) ?? 0), 0);
    const available = sum((rs) => rs.status?.availableReplicas);
    const totalSpec = sum((rs) => rs.spec?.replicas);
    const status: DeploymentStatus = {
      observedGeneration: d.metadata.generation ?? 1,
      replicas: sum((rs) => rs.status?.replicas),
      updatedReplicas: newRS?.status?.replicas ?? 0,
      readyReplicas: sum((rs) => rs.status?.readyReplicas),
      availableReplicas: available,
      unavailableReplicas: Math.max(0, totalSpec - available),
    };
    if (d.status?.collisionCount !== undefined) status.collisionCount = d.status.collisionCount;
    const now = formatTimestamp(store.clock.now());
    const { maxUnavailable } = fenceposts(d);
    const complete = status.updatedReplicas === replicas && status.replicas === replicas && available === replicas;
    const conds: WorkloadCondition[] = [
      available >= replicas - maxUnavailable
        ? { type: 'Available', status: 'True', reason: 'MinimumReplicasAvailable', message: 'Deployment has minimum availability.' }
        : { type: 'Available', status: 'False', reason: 'MinimumReplicasUnavailable', message: 'Deployment does not have minimum availability.' },
      complete && newRS
        ? { type: 'Progressing', status: 'True', reason: 'NewReplicaSetAvailable', message: `ReplicaSet "${newRS.metadata.name}" has successfully progressed.` }
        : { type: 'Progressing', status: 'True', reason: 'ReplicaSetUpdated', message: `ReplicaSet "${newRS?.metadata.name ?? ''}" is progressing.` },
    ];
    const oldConds = d.status?.conditions ?? [];
    status.conditions = conds.map((c) => {
      const prev = oldConds.find((o) => o.type === c.type);
      const same = prev && prev.status === c.status && prev.reason === c.reason && prev.message === c.message;
      return { ...c, lastUpdateTime: same ? prev.lastUpdateTime : now, lastTransitionTime: prev && prev.status === c.status ? prev.lastTransitionTime : now };
    });
    if (stableJson(d.status ?? {}) === stableJson(status)) return;
    store.mutate<Deployment>(DEPLOYMENTS, d.metadata.name, d.metadata.namespace, (x) => {
      x.status = status;
    });
  }
}

