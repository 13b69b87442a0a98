/**
 * A deliberately tiny kube-scheduler: unbound Pods go round-robin over the
 * Nodes that are schedulable (not `spec.unschedulable`) and Ready
 * (condition Ready=True), taken in name order, among those their
 * nodeSelector and required node affinity admit and, of these, the ones
 * their preferred pod anti-affinity scores best (placement.ts).
 *
 * It binds at create time when it can (so `kubectl get pods -o wide` shows a
 * node straight away) and otherwise waits: whenever a Node event arrives it
 * retries every still-unbound Pod, oldest first. The round-robin pointer is
 * the name of the last node chosen (stable when nodes come and go) and is
 * persisted with the store, so a restart continues the rotation.
 */
import { formatTimestamp } from './timestamp.ts';
import { antiAffinityCost, hasAntiAffinity, nodeFits } from './placement.ts';
import { NODES, PODS, resourceKeyOf } from './resources.ts';
import type { Store } from './store.ts';
import type { KubeObject, NodeSpec, NodeStatus, Pod, PodCondition, PodSpec, PodStatus } from './types.ts';

/** True when a Node may receive new Pods: Ready=True and not cordoned. */
export function isSchedulable(node: KubeObject): boolean {
  const spec = node.spec as NodeSpec | undefined;
  if (spec?.unschedulable === true) return false;
  const status = node.status as NodeStatus | undefined;
  return status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

function setCondition(status: PodStatus, cond: PodCondition): void {
  const conditions = (status.conditions ?? []).filter((c) => c.type !== cond.type);
  const old = status.conditions?.find((c) => c.type === cond.type);
  // Keep the transition time when the status did not actually flip.
  if (old && old.status === cond.status && old.lastTransitionTime) cond.lastTransitionTime = old.lastTransitionTime;
  status.conditions = [...conditions, cond];
}

/** The round-robin scheduler. Install it on a store with {@link Scheduler.install}. */
export class Scheduler {
  /** Name of the node that got the previous pod. */
  private lastNode = '';
  private store?: Store;

  /** Sorted names of the nodes that can take a pod now. */
  candidates(nodes: readonly KubeObject[]): string[] {
    return nodes
      .filter(isSchedulable)
      .map((n) => n.metadata.name)
      .sort();
  }

  /** Picks the first candidate after the last one chosen (wrapping), or undefined if none. */
  pick(candidates: readonly string[]): string | undefined {
    if (candidates.length === 0) return undefined;
    const choice = candidates.find((n) => n > this.lastNode) ?? candidates[0];
    this.lastNode = choice;
    return choice;
  }

  /**
   * The node for `pod` among `nodes`: schedulable ones it fits, the lowest
   * anti-affinity cost against the bound `pods`, round-robin among equals.
   * Undefined (with kube-scheduler's reason) when none fits.
   */
  place(pod: Pod, nodes: readonly KubeObject[], pods: readonly KubeObject[]): { node: string } | { reason: string } {
    const ready = new Set(this.candidates(nodes));
    const fit = nodes.filter((n) => ready.has(n.metadata.name) && nodeFits(pod, n));
    if (!fit.length) {
      const mismatched = nodes.filter((n) => ready.has(n.metadata.name)).length;
      const why = ready.size === 0 ? 'no node is Ready and schedulable.' : `${mismatched} node(s) didn't match Pod's node affinity/selector.`;
      return { reason: `0/${nodes.length} nodes are available: ${why}` };
    }
    if (!hasAntiAffinity(pod)) return { node: this.pick(fit.map((n) => n.metadata.name).sort())! };
    const byName = new Map(nodes.map((n) => [n.metadata.name, n]));
    const placed = pods.flatMap((p) => {
      const node = byName.get((p.spec as PodSpec | undefined)?.nodeName ?? '');
      const phase = (p.status as PodStatus | undefined)?.phase;
      const active = node && p !== pod && !p.metadata.deletionTimestamp && phase !== 'Succeeded' && phase !== 'Failed';
      return active ? [{ pod: p, node }] : [];
    });
    const cost = new Map(fit.map((n) => [n.metadata.name, antiAffinityCost(pod, n, placed)]));
    const best = Math.min(...cost.values());
    return { node: this.pick([...cost].filter(([, c]) => c === best).map(([n]) => n).sort())! };
  }

  /** Wires the scheduler into a store: admission on Pod create, retries on Node changes and at open. */
  install(store: Store): void {
    this.store = store;
    store.registerSection('scheduler', {
      save: () => ({ lastNode: this.lastNode }),
      load: (data) => {
        if (typeof data === 'object' && data !== null && typeof (data as { lastNode?: unknown }).lastNode === 'string') {
          this.lastNode = (data as { lastNode: string }).lastNode;
        }
      },
    });
    store.addAdmission((ctx) => {
      if (ctx.op !== 'create' || resourceKeyOf(ctx.rt) !== resourceKeyOf(PODS)) return;
      const pod = ctx.obj as Pod;
      if (pod.spec?.nodeName) return;
      const now = formatTimestamp(store.clock.now());
      const status = (pod.status ??= {});
      const nodes = store.objectsOf(NODES);
      const r = this.place(pod, nodes, store.objectsOf(PODS));
      if ('node' in r) {
        (pod.spec as PodSpec).nodeName = r.node;
        setCondition(status, { type: 'PodScheduled', status: 'True', lastProbeTime: null, lastTransitionTime: now });
      } else {
        setCondition(status, { type: 'PodScheduled', status: 'False', lastProbeTime: null, lastTransitionTime: now, reason: 'Unschedulable', message: r.reason });
      }
    });
    store.subscribe((ev) => {
      if (resourceKeyOf(ev.rt) === resourceKeyOf(NODES) && ev.type !== 'DELETED' && isSchedulable(ev.object)) this.schedulePending();
    });
    store.onOpen(() => this.schedulePending());
  }

  /** Binds every unbound Pod it can, oldest first. Returns how many were bound. */
  schedulePending(): number {
    const store = this.store;
    if (!store) return 0;
    const pending = store
      .objectsOf(PODS)
      .filter((p) => !(p.spec as PodSpec | undefined)?.nodeName)
      .filter((p) => {
        const phase = (p.status as PodStatus | undefined)?.phase;
        return phase === undefined || phase === 'Pending';
      })
      .sort((a, b) =>
        a.metadata.creationTimestamp !== b.metadata.creationTimestamp
          ? a.metadata.creationTimestamp < b.metadata.creationTimestamp
            ? -1
            : 1
          : Number(a.metadata.resourceVersion) - Number(b.metadata.resourceVersion),
      );
    let bound = 0;
    for (const pod of pending) {
      // Each binding counts for the next pod's anti-affinity: read the pods afresh.
      const r = this.place(pod as Pod, store.objectsOf(NODES), store.objectsOf(PODS));
      if (!('node' in r)) continue;
      const now = formatTimestamp(store.clock.now());
      store.mutate<Pod>(PODS, pod.metadata.name, pod.metadata.namespace, (draft) => {
        (draft.spec as PodSpec).nodeName = r.node;
        setCondition((draft.status ??= {}), { type: 'PodScheduled', status: 'True', lastProbeTime: null, lastTransitionTime: now });
      });
      bound++;
    }
    return bound;
  }
}
