/**
 * The node lifecycle controller (kube-controller-manager's
 * node-lifecycle-controller with its taint-based eviction), plus the two
 * admission steps it relies on:
 *
 * - Every `monitorPeriodMs` it looks at each Node's heartbeat: its Lease in
 *   kube-node-lease (renewed by the node agent) or its Ready condition's
 *   lastHeartbeatTime. A node silent for `gracePeriodMs`
 *   (--node-monitor-grace-period, 40 s) gets Ready/MemoryPressure/...
 *   = Unknown ("Kubelet stopped posting node status."), the
 *   `node.kubernetes.io/unreachable` NoExecute and NoSchedule taints, a
 *   NodeNotReady event, and its pods are marked not Ready, so their
 *   endpoints leave every Service (EndpointSlices show ready=false).
 * - Pods on a node with a NoExecute taint are evicted when their matching
 *   toleration's tolerationSeconds run out (at once without one).
 * - DefaultTolerationSeconds admission: every Pod (created or replaced) tolerates not-ready
 *   and unreachable for 300 s (--default-unreachable-toleration-seconds,
 *   --default-not-ready-toleration-seconds) unless it says otherwise.
 * - Node status defaulting: nodeInfo, capacity and allocatable of this host
 *   (every podlab node is a process on it) where the agent reported none.
 */
import os from 'node:os';
import { backgroundTimer } from '../common/clock.ts';
import { formatTimestamp } from './timestamp.ts';
import { LEASES, NODE_LEASE_NAMESPACE, type Lease } from './core-resources.ts';
import type { EventRecorder } from './event-recorder.ts';
import type { GarbageCollector } from './garbage-collector.ts';
import { VERSION_INFO } from './routes.ts';
import { NODES, PODS, resourceKeyOf } from './resources.ts';
import type { Store } from './store.ts';
import type { KubeObject, NodeCondition, NodeStatus, Pod } from './types.ts';

export const TAINT_UNREACHABLE = 'node.kubernetes.io/unreachable';
export const TAINT_NOT_READY = 'node.kubernetes.io/not-ready';

/** Flags of the controller (all durations, so scenarios can shorten them). */
export interface NodeLifecycleOptions {
  /** --node-monitor-period (default 5 s). */
  monitorPeriodMs?: number;
  /** --node-monitor-grace-period (default 40 s). */
  gracePeriodMs?: number;
  /** --default-not-ready-toleration-seconds (default 300). */
  notReadyTolerationSeconds?: number;
  /** --default-unreachable-toleration-seconds (default 300). */
  unreachableTolerationSeconds?: number;
}

interface Taint {
  key: string;
  value?: string;
  effect: 'NoSchedule' | 'PreferNoSchedule' | 'NoExecute';
  timeAdded?: string;
}

interface Toleration {
  key?: string;
  operator?: 'Exists' | 'Equal';
  value?: string;
  effect?: string;
  tolerationSeconds?: number;
}

/** v1 Toleration.ToleratesTaint. */
export function tolerates(t: Toleration, taint: Taint): boolean {
  if (t.effect && t.effect !== taint.effect) return false;
  if (t.key && t.key !== taint.key) return false;
  if (!t.key && t.operator !== 'Exists') return false;
  if ((t.operator ?? 'Equal') === 'Exists') return true;
  return (t.value ?? '') === (taint.value ?? '');
}

/** When a pod must leave a node with these NoExecute taints: 0 = now, Infinity = never (epoch ms otherwise). */
export function evictionTime(pod: Pod, taints: Taint[]): number {
  const tolerations = (Array.isArray(pod.spec?.tolerations) ? pod.spec.tolerations : []) as Toleration[];
  let at = Infinity;
  for (const taint of taints.filter((x) => x.effect === 'NoExecute')) {
    const matching = tolerations.filter((t) => tolerates(t, taint));
    if (matching.length === 0) return 0;
    const secs = Math.min(...matching.map((t) => (typeof t.tolerationSeconds === 'number' ? t.tolerationSeconds : Infinity)));
    if (secs === Infinity) continue;
    const added = taint.timeAdded ? Date.parse(taint.timeAdded) : 0;
    at = Math.min(at, (Number.isNaN(added) ? 0 : added) + Math.max(0, secs) * 1000);
  }
  return at;
}

/** status.nodeInfo/capacity/allocatable of a node process on this host. */
let hostFacts: { memKi: number; cpus: string } | undefined;

export function hostNodeStatus(): Record<string, unknown> {
  // os.cpus() reads /proc/cpuinfo and /proc/stat: read once, not for every Node written (a 100-node lab writes many).
  hostFacts ??= { memKi: Math.floor(os.totalmem() / 1024), cpus: String(Math.max(1, os.cpus().length)) };
  const { memKi, cpus } = hostFacts;
  return {
    nodeInfo: {
      machineID: '',
      systemUUID: '',
      bootID: '',
      kernelVersion: os.release(),
      osImage: 'podlab emulated node',
      containerRuntimeVersion: 'podlab://emulated',
      kubeletVersion: VERSION_INFO.gitVersion,
      kubeProxyVersion: VERSION_INFO.gitVersion,
      operatingSystem: 'linux',
      architecture: os.arch() === 'x64' ? 'amd64' : os.arch(),
    },
    capacity: { cpu: cpus, memory: `${memKi}Ki`, pods: '110', 'ephemeral-storage': '10Gi' },
    allocatable: { cpu: cpus, memory: `${memKi}Ki`, pods: '110', 'ephemeral-storage': '10Gi' },
  };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const CONDITION_TYPES = ['Ready', 'MemoryPressure', 'DiskPressure', 'PIDPressure'];

/** The controller. */
export class NodeLifecycleController {
  private store?: Store;
  private readonly monitorPeriodMs: number;
  private readonly gracePeriodMs: number;
  private readonly notReadySeconds: number;
  private readonly unreachableSeconds: number;
  /** Node → heartbeat fingerprint and when this controller saw it change. */
  private readonly seen = new Map<string, { key: string; at: number }>();
  private timer?: { cancel(): void };

  constructor(
    private readonly recorder: EventRecorder,
    private readonly gc: GarbageCollector,
    opts: NodeLifecycleOptions = {},
  ) {
    this.monitorPeriodMs = opts.monitorPeriodMs ?? 5000;
    this.gracePeriodMs = opts.gracePeriodMs ?? 40_000;
    this.notReadySeconds = opts.notReadyTolerationSeconds ?? 300;
    this.unreachableSeconds = opts.unreachableTolerationSeconds ?? 300;
  }

  install(store: Store): void {
    this.store = store;
    // DefaultTolerationSeconds runs on create and update (a `replace` without the tolerations gets them
    // back, so Pod update validation sees no change to them), before validation, as the admission plugin does.
    store.addMutatingAdmission((ctx) => {
      if (resourceKeyOf(ctx.rt) === resourceKeyOf(PODS) && ctx.subresource === undefined) this.defaultTolerations(ctx.obj as Pod);
    });
    store.addAdmission((ctx) => {
      if (resourceKeyOf(ctx.rt) === resourceKeyOf(NODES)) this.defaultNodeStatus(ctx.obj);
    });
    store.subscribe((ev) => {
      if (resourceKeyOf(ev.rt) !== resourceKeyOf(NODES) || ev.type !== 'MODIFIED') return;
      const ready = (o: KubeObject | undefined) => (o?.status as NodeStatus | undefined)?.conditions?.find((c) => c.type === 'Ready')?.status;
      const was = ready(ev.prev);
      const now = ready(ev.object);
      if (was === now) return;
      const node = ev.object;
      if (now === 'True') {
        this.recorder.record(node, 'Normal', 'NodeReady', `Node ${node.metadata.name} status is now: NodeReady`, { component: 'node-controller' });
        this.untaint(node.metadata.name);
      } else if (was === 'True') {
        this.recorder.record(node, 'Normal', 'NodeNotReady', `Node ${node.metadata.name} status is now: NodeNotReady`, { component: 'node-controller' });
        this.markPodsNotReady(node.metadata.name);
        this.taint(node.metadata.name, now === 'Unknown' ? TAINT_UNREACHABLE : TAINT_NOT_READY);
      }
    });
    store.onOpen(() => this.schedule());
    store.onClose(() => this.timer?.cancel());
  }

  private schedule(): void {
    this.timer = backgroundTimer(this.store!.clock, () => {
      try {
        this.monitor();
      } catch (err) {
        process.emitWarning(`node lifecycle: ${(err as Error).message}`);
      }
      this.schedule();
    }, this.monitorPeriodMs);
  }

  /** One monitoring pass: heartbeats, then evictions. Public so tests can drive it with a manual clock. */
  monitor(): void {
    const store = this.store!;
    const now = store.clock.now();
    for (const node of store.objectsOf(NODES)) {
      const name = node.metadata.name;
      const lease = store.tryGet<Lease>(LEASES, name, NODE_LEASE_NAMESPACE);
      const conds = (node.status as NodeStatus | undefined)?.conditions ?? [];
      const ready = conds.find((c) => c.type === 'Ready');
      const key = `${lease?.spec?.renewTime ?? ''}|${ready?.lastHeartbeatTime ?? ''}`;
      const prev = this.seen.get(name);
      if (!prev || prev.key !== key) this.seen.set(name, { key, at: now });
      const silentFor = now - (this.seen.get(name)?.at ?? now);
      if (silentFor > this.gracePeriodMs && ready?.status !== 'Unknown' && (ready || conds.length === 0)) {
        const ts = formatTimestamp(now);
        store.mutate(NODES, name, undefined, (d) => {
          const st = ((d.status ??= {}) as NodeStatus);
          const old = st.conditions ?? [];
          const updated: NodeCondition[] = CONDITION_TYPES.map((type) => {
            const c = old.find((x) => x.type === type);
            return {
              type,
              status: 'Unknown',
              lastHeartbeatTime: c?.lastHeartbeatTime ?? ts,
              lastTransitionTime: ts,
              reason: 'NodeStatusUnknown',
              message: 'Kubelet stopped posting node status.',
            };
          });
          st.conditions = [...updated, ...old.filter((c) => !CONDITION_TYPES.includes(c.type))];
        });
      }
    }
    this.evict(now);
  }

  private taint(name: string, key: string): void {
    const store = this.store!;
    const ts = formatTimestamp(store.clock.now());
    store.mutate(NODES, name, undefined, (d) => {
      const spec = (d.spec ??= {}) as { taints?: Taint[] };
      const taints = (spec.taints ?? []).filter((t) => t.key !== TAINT_UNREACHABLE && t.key !== TAINT_NOT_READY);
      taints.push({ key, effect: 'NoSchedule', timeAdded: ts }, { key, effect: 'NoExecute', timeAdded: ts });
      spec.taints = taints;
    });
    this.evict(store.clock.now());
  }

  private untaint(name: string): void {
    const store = this.store!;
    store.mutate(NODES, name, undefined, (d) => {
      const spec = (d.spec ??= {}) as { taints?: Taint[] };
      if (!spec.taints) return;
      const left = spec.taints.filter((t) => t.key !== TAINT_UNREACHABLE && t.key !== TAINT_NOT_READY);
      if (left.length) spec.taints = left;
      else delete spec.taints;
    });
  }

  /** nodeutil.MarkPodsNotReady, with the NodeNotReady event on each pod. */
  private markPodsNotReady(node: string): void {
    const store = this.store!;
    const ts = formatTimestamp(store.clock.now());
    for (const p of [...store.objectsOf(PODS)]) {
      if ((p as Pod).spec?.nodeName !== node) continue;
      const ready = (p as Pod).status?.conditions?.find((c) => c.type === 'Ready');
      if (ready?.status !== 'True') continue;
      store.mutate<Pod>(PODS, p.metadata.name, p.metadata.namespace, (d) => {
        for (const c of d.status?.conditions ?? []) {
          if (c.type === 'Ready') {
            c.status = 'False';
            c.lastTransitionTime = ts;
          }
        }
      });
      this.recorder.record(p, 'Warning', 'NodeNotReady', 'Node is not ready', { component: 'node-controller' });
    }
  }

  private evict(now: number): void {
    const store = this.store!;
    const tainted = new Map<string, Taint[]>();
    for (const n of store.objectsOf(NODES)) {
      const taints = ((n.spec as { taints?: Taint[] } | undefined)?.taints ?? []).filter((t) => t.effect === 'NoExecute');
      if (taints.length) tainted.set(n.metadata.name, taints);
    }
    if (tainted.size === 0) return;
    for (const p of [...store.objectsOf(PODS)] as Pod[]) {
      const taints = tainted.get(p.spec?.nodeName ?? '');
      if (!taints || p.metadata.deletionTimestamp) continue;
      if (evictionTime(p, taints) > now) continue;
      this.recorder.record(p, 'Normal', 'TaintManagerEviction', `Marking for deletion Pod ${p.metadata.namespace}/${p.metadata.name}`, { component: 'taint-eviction-controller' });
      this.gc.terminatePod(p);
    }
  }

  private defaultTolerations(pod: Pod): void {
    if (!isRecord(pod.spec)) return;
    const tolerations = (Array.isArray(pod.spec.tolerations) ? pod.spec.tolerations : []) as Toleration[];
    const has = (key: string) => tolerations.some((t) => (t.key === key || (!t.key && t.operator === 'Exists')) && (!t.effect || t.effect === 'NoExecute'));
    const add: Toleration[] = [];
    if (!has(TAINT_NOT_READY)) add.push({ key: TAINT_NOT_READY, operator: 'Exists', effect: 'NoExecute', tolerationSeconds: this.notReadySeconds });
    if (!has(TAINT_UNREACHABLE)) add.push({ key: TAINT_UNREACHABLE, operator: 'Exists', effect: 'NoExecute', tolerationSeconds: this.unreachableSeconds });
    if (add.length) pod.spec.tolerations = [...tolerations, ...add];
  }

  private defaultNodeStatus(node: KubeObject): void {
    const host = hostNodeStatus();
    const status = isRecord(node.status) ? node.status : (node.status = {});
    for (const k of ['capacity', 'allocatable']) if (!isRecord(status[k])) status[k] = host[k];
    const info = isRecord(status.nodeInfo) ? status.nodeInfo : {};
    for (const [k, v] of Object.entries(host.nodeInfo as Record<string, string>)) if (typeof info[k] !== 'string' || info[k] === '') info[k] = v;
    status.nodeInfo = info;
  }
}
