/**
 * The few scheduling rules podlab's scheduler honours beyond "Ready and not
 * cordoned", as kube-scheduler's plugins decide them (pure functions):
 *
 * - NodeAffinity (a filter): `spec.nodeSelector` (every label equal) and
 *   `affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution`
 *   (any of the nodeSelectorTerms; within a term every matchExpression and
 *   matchFields entry; In, NotIn, Exists, DoesNotExist, Gt, Lt);
 * - InterPodAffinity's preferred anti-affinity (a score): for each
 *   `preferredDuringSchedulingIgnoredDuringExecution` term, its weight for
 *   every pod the term selects already in the node's topology domain (the
 *   node's value of `topologyKey`). This is what spreads CoreDNS's two
 *   replicas over two nodes when it can (kubeadm's Deployment carries such a
 *   term on `kubernetes.io/hostname`). It is a preference: with one node both
 *   replicas land on it, as with kube-scheduler.
 */
import { labelSelectorMatches, type LabelSelector } from './label-selector.ts';
import type { KubeObject, Pod } from './types.ts';

interface NodeSelectorRequirement {
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist' | 'Gt' | 'Lt';
  values?: string[];
}

interface NodeSelectorTerm {
  matchExpressions?: NodeSelectorRequirement[];
  matchFields?: NodeSelectorRequirement[];
}

interface PodAffinityTerm {
  labelSelector?: LabelSelector;
  namespaces?: string[];
  topologyKey: string;
}

interface Affinity {
  nodeAffinity?: { requiredDuringSchedulingIgnoredDuringExecution?: { nodeSelectorTerms?: NodeSelectorTerm[] } };
  podAntiAffinity?: { preferredDuringSchedulingIgnoredDuringExecution?: { weight: number; podAffinityTerm: PodAffinityTerm }[] };
}

function requirementHolds(r: NodeSelectorRequirement, value: string | undefined): boolean {
  const vals = r.values ?? [];
  switch (r.operator) {
    case 'In':
      return value !== undefined && vals.includes(value);
    case 'NotIn':
      return value === undefined || !vals.includes(value);
    case 'Exists':
      return value !== undefined;
    case 'DoesNotExist':
      return value === undefined;
    case 'Gt':
    case 'Lt': {
      // Both sides must be integers; anything else does not match (v1helper's parse failure).
      const a = Number(value);
      const b = Number(vals[0]);
      if (value === undefined || vals.length !== 1 || !Number.isInteger(a) || !Number.isInteger(b)) return false;
      return r.operator === 'Gt' ? a > b : a < b;
    }
    default:
      return false;
  }
}

function termMatches(t: NodeSelectorTerm, node: KubeObject): boolean {
  const labels = node.metadata.labels ?? {};
  // An empty term matches nothing (nodeaffinity.NewNodeSelector skips it).
  if (!(t.matchExpressions ?? []).length && !(t.matchFields ?? []).length) return false;
  if (!(t.matchExpressions ?? []).every((r) => requirementHolds(r, Object.prototype.hasOwnProperty.call(labels, r.key) ? labels[r.key] : undefined))) return false;
  return (t.matchFields ?? []).every((r) => r.key === 'metadata.name' && requirementHolds(r, node.metadata.name));
}

function affinityOf(pod: Pod): Affinity | undefined {
  const a = pod.spec?.affinity;
  return typeof a === 'object' && a !== null ? a : undefined;
}

/** The NodeAffinity filter: may `pod` go to `node` by its nodeSelector and required node affinity? */
export function nodeFits(pod: Pod, node: KubeObject): boolean {
  const labels = node.metadata.labels ?? {};
  const sel = pod.spec?.nodeSelector;
  if (sel && typeof sel === 'object' && !Object.entries(sel as Record<string, string>).every(([k, v]) => labels[k] === v)) return false;
  const terms = affinityOf(pod)?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms;
  if (terms && !terms.some((t) => termMatches(t, node))) return false;
  return true;
}

/** Whether `pod` has preferred anti-affinity terms (else every node costs 0). */
export function hasAntiAffinity(pod: Pod): boolean {
  return (affinityOf(pod)?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution ?? []).length > 0;
}

/**
 * The preferred anti-affinity cost of putting `pod` on `node`: the summed
 * weights of its terms times the pods each term selects in the node's
 * topology domain. `placed` are the pods already bound, with their nodes.
 */
export function antiAffinityCost(pod: Pod, node: KubeObject, placed: readonly { pod: KubeObject; node: KubeObject }[]): number {
  const prefs = affinityOf(pod)?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution ?? [];
  let cost = 0;
  for (const { weight, podAffinityTerm: term } of prefs) {
    const domain = node.metadata.labels?.[term.topologyKey];
    if (domain === undefined) continue;
    const namespaces = term.namespaces?.length ? term.namespaces : [pod.metadata.namespace ?? 'default'];
    for (const p of placed) {
      if (p.node.metadata.labels?.[term.topologyKey] !== domain) continue;
      if (!namespaces.includes(p.pod.metadata.namespace ?? 'default')) continue;
      if (labelSelectorMatches(term.labelSelector, p.pod.metadata.labels)) cost += weight;
    }
  }
  return cost;
}
