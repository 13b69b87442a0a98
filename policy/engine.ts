/**
 * The NetworkPolicy engine: policies, pods and namespaces compiled into one
 * verdict table per pod and direction, and the question every enforcement
 * point asks of it: may this flow (after Service DNAT) pass?
 *
 * The semantics are Kubernetes' (networking.k8s.io/v1, the e2e suite in
 * test/e2e/network/netpol and cyclonus' truth tables):
 * - a pod no policy selects for a direction is not isolated: all allowed;
 * - a pod is isolated for a direction as soon as one policy of its namespace
 *   selects it with that policyType; then only what some rule of some such
 *   policy allows passes (the union; there is no deny rule);
 * - policyTypes default to Ingress, plus Egress when egress rules exist;
 * - a rule with no peers matches every address, with no ports every port and
 *   protocol; a peer is a podSelector (pods of the policy's namespace), a
 *   namespaceSelector (every pod of those namespaces), both (ANDed), or an
 *   ipBlock (cidr minus except, matched against any address, pods included);
 * - a port is a number (with endPort: a range), or a name looked up in the
 *   destination pod's container ports (ingress: the selected pod itself;
 *   egress: the peer, so a name never matches a non-pod destination);
 * - a connection needs both: the source's egress and the destination's
 *   ingress. Replies of an allowed connection are the enforcer's business
 *   (connection state), not the table's.
 *
 * Pure: no clock, no I/O; a new PolicySet is compiled on every change.
 */
import { ipv4ToInt, isValidIpv4 } from '../packet/addr.ts';
import { Cidr } from '../packet/cidr.ts';
import type { KubeObject, Pod } from '../control-plane/types.ts';
import { labelSelectorMatches } from '../control-plane/label-selector.ts';
import type { Direction, LabelSelector, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, PolicyNamespace, PolicyPod, PolicyProtocol } from './types.ts';

/** What a flow carries for policy: after DNAT, so `dst`/`dport` are the backend's. */
export interface Flow {
  src: string;
  dst: string;
  protocol: PolicyProtocol | 'ICMP';
  /** The destination port (0 for ICMP). */
  dport: number;
}

/** Names one rule: `x/allow-from-y`, ingress rule 0. */
export interface RuleRef {
  policy: string;
  direction: Direction;
  rule: number;
}

/** The verdict for one direction at one pod. */
export type DirVerdict =
  | { kind: 'not-isolated' }
  | { kind: 'allowed'; by: RuleRef }
  | { kind: 'denied'; isolatedBy: string[] };

/** A flow's verdict: egress at the source pod, ingress at the destination pod (null where the end is no pod). */
export interface Verdict {
  allowed: boolean;
  egress: DirVerdict | null;
  ingress: DirVerdict | null;
}

type CompiledPort = { protocol: PolicyProtocol; from: number; to: number } | { protocol: PolicyProtocol; name: string };

interface CompiledBlock {
  cidr: Cidr;
  except: Cidr[];
  text: string;
}

/** A rule's peers resolved: pod addresses and ipBlocks; `any` without peers. */
export interface CompiledPeers {
  any: boolean;
  /** Pod IPs (as integers) the selectors matched, and who they are. */
  pods: Map<number, string>;
  blocks: CompiledBlock[];
}

export interface CompiledRule {
  ref: RuleRef;
  peers: CompiledPeers;
  /** Undefined: every port and protocol. */
  ports?: CompiledPort[];
}

export interface CompiledPolicy {
  /** `namespace/name`. */
  id: string;
  rules: CompiledRule[];
}

/** One pod's table: the policies isolating it per direction (absent: not isolated). */
export interface PodTable {
  pod: PolicyPod;
  ingress?: CompiledPolicy[];
  egress?: CompiledPolicy[];
}

/** Label selector semantics of metav1.LabelSelectorAsSelector; an absent selector (a policy's omitted podSelector) selects every pod. */
export function selectorMatches(sel: LabelSelector | undefined, labels: Record<string, string>): boolean {
  return !sel || labelSelectorMatches(sel, labels);
}

/** The policy types in force: as written, else Ingress plus Egress when egress rules exist. */
export function policyTypesOf(p: NetworkPolicy): Direction[] {
  const t = p.spec?.policyTypes;
  if (t && t.length) return t.map((x) => (x === 'Egress' ? 'egress' : 'ingress'));
  return (p.spec?.egress?.length ?? 0) > 0 ? ['ingress', 'egress'] : ['ingress'];
}

const policyId = (p: NetworkPolicy) => `${p.metadata.namespace ?? 'default'}/${p.metadata.name}`;

/** Pods as policy sees them: running with an address, host-network pods left out (policy never applies to them). */
export function policyPods(pods: readonly Pod[]): PolicyPod[] {
  const out: PolicyPod[] = [];
  for (const p of pods) {
    const ip = p.status?.podIP;
    if (!ip || !isValidIpv4(ip) || p.spec?.hostNetwork) continue;
    out.push({
      namespace: p.metadata.namespace ?? 'default',
      name: p.metadata.name,
      labels: p.metadata.labels ?? {},
      ip,
      ports: (p.spec?.containers ?? []).flatMap((c) => (c.ports ?? []).map((cp) => ({ name: cp.name, port: cp.containerPort, protocol: cp.protocol ?? 'TCP' }))),
    });
  }
  return out;
}

export function policyNamespaces(nss: readonly KubeObject[]): PolicyNamespace[] {
  return nss.map((n) => ({ name: n.metadata.name, labels: n.metadata.labels ?? {} }));
}

export class PolicySet {
  /** Per pod (`namespace/name`), the policies isolating it. */
  readonly tables = new Map<string, PodTable>();
  private readonly byIp = new Map<number, PolicyPod>();
  readonly policies: readonly NetworkPolicy[];

  constructor(policies: readonly NetworkPolicy[], pods: readonly PolicyPod[], namespaces: readonly PolicyNamespace[]) {
    this.policies = [...policies].sort((a, b) => policyId(a).localeCompare(policyId(b)));
    const nsLabels = new Map(namespaces.map((n) => [n.name, n.labels]));
    // A namespace the informer has not delivered yet still carries the label the apiserver always sets.
    const labelsOfNs = (ns: string) => nsLabels.get(ns) ?? { 'kubernetes.io/metadata.name': ns };
    for (const p of pods) {
      this.byIp.set(ipv4ToInt(p.ip), p);
      this.tables.set(`${p.namespace}/${p.name}`, { pod: p });
    }
    for (const pol of this.policies) {
      const ns = pol.metadata.namespace ?? 'default';
      const types = policyTypesOf(pol);
      const selected = pods.filter((p) => p.namespace === ns && selectorMatches(pol.spec?.podSelector, p.labels));
      if (!selected.length) continue;
      const compiled = new Map<Direction, CompiledPolicy>();
      for (const dir of types) {
        const rules = (dir === 'ingress' ? pol.spec?.ingress?.map((r) => ({ peers: r.from, ports: r.ports })) : pol.spec?.egress?.map((r) => ({ peers: r.to, ports: r.ports }))) ?? [];
        compiled.set(dir, {
          id: policyId(pol),
          rules: rules.map((r, i) => ({ ref: { policy: policyId(pol), direction: dir, rule: i }, peers: this.resolvePeers(r.peers, ns, pods, labelsOfNs), ports: compilePorts(r.ports) })),
        });
      }
      for (const p of selected) {
        const t = this.tables.get(`${p.namespace}/${p.name}`)!;
        for (const [dir, c] of compiled) (t[dir] ??= []).push(c);
      }
    }
  }

  /** Whether any policy exists (with none, nothing is isolated and enforcement can stand aside). */
  get empty(): boolean {
    return this.policies.length === 0;
  }

  /** The pod with this address, if policy knows it. */
  podAt(ip: string): PolicyPod | undefined {
    return isValidIpv4(ip) ? this.byIp.get(ipv4ToInt(ip)) : undefined;
  }

  private resolvePeers(peers: NetworkPolicyPeer[] | undefined, ns: string, pods: readonly PolicyPod[], labelsOfNs: (ns: string) => Record<string, string>): CompiledPeers {
    const out: CompiledPeers = { any: !peers || peers.length === 0, pods: new Map(), blocks: [] };
    for (const peer of peers ?? []) {
      if (peer.ipBlock) {
        const cidr = Cidr.tryParse(peer.ipBlock.cidr);
        if (cidr) out.blocks.push({ cidr, except: (peer.ipBlock.except ?? []).map((e) => Cidr.tryParse(e)).filter((c): c is Cidr => !!c), text: peer.ipBlock.cidr + (peer.ipBlock.except?.length ? ` except ${peer.ipBlock.except.join(',')}` : '') });
        continue;
      }
      if (!peer.podSelector && !peer.namespaceSelector) continue;
      for (const p of pods) {
        const nsOk = peer.namespaceSelector ? selectorMatches(peer.namespaceSelector, labelsOfNs(p.namespace)) : p.namespace === ns;
        if (nsOk && selectorMatches(peer.podSelector, p.labels)) out.pods.set(ipv4ToInt(p.ip), `${p.namespace}/${p.name}`);
      }
    }
    return out;
  }

  /** The verdict of one direction at one pod for a flow. */
  decide(key: string, dir: Direction, flow: Flow): DirVerdict {
    const t = this.tables.get(key);
    const pols = t?.[dir];
    if (!pols) return { kind: 'not-isolated' };
    const peerIp = dir === 'ingress' ? flow.src : flow.dst;
    const peer = isValidIpv4(peerIp) ? ipv4ToInt(peerIp) : -1;
    // Named ports are the destination pod's: the selected pod for ingress, the peer for egress.
    const dstPod = dir === 'ingress' ? t.pod : this.podAt(flow.dst);
    for (const pol of pols) {
      for (const r of pol.rules) {
        if (!peerMatches(r.peers, peer)) continue;
        if (r.ports && !r.ports.some((p) => portMatches(p, flow, dstPod))) continue;
        return { kind: 'allowed', by: r.ref };
      }
    }
    return { kind: 'denied', isolatedBy: pols.map((p) => p.id) };
  }

  /**
   * The whole verdict of a flow. `at` limits which ends are judged (an
   * enforcement point judges only its own pods' ends; the other end's node
   * judges the other).
   */
  evaluate(flow: Flow, at: { src?: boolean; dst?: boolean } = { src: true, dst: true }): Verdict {
    const s = at.src ? this.podAt(flow.src) : undefined;
    const d = at.dst ? this.podAt(flow.dst) : undefined;
    const egress = s ? this.decide(`${s.namespace}/${s.name}`, 'egress', flow) : null;
    const ingress = d ? this.decide(`${d.namespace}/${d.name}`, 'ingress', flow) : null;
    return { allowed: egress?.kind !== 'denied' && ingress?.kind !== 'denied', egress, ingress };
  }
}

function compilePorts(ports: NetworkPolicyPort[] | undefined): CompiledPort[] | undefined {
  if (!ports || ports.length === 0) return undefined;
  return ports.map((p) => {
    const protocol = p.protocol ?? 'TCP';
    if (typeof p.port === 'string') return { protocol, name: p.port };
    if (p.port === undefined) return { protocol, from: 1, to: 65535 };
    return { protocol, from: p.port, to: p.endPort ?? p.port };
  });
}

function peerMatches(peers: CompiledPeers, ip: number): boolean {
  if (peers.any) return true;
  if (ip < 0) return false;
  if (peers.pods.has(ip)) return true;
  return peers.blocks.some((b) => b.cidr.contains(ip) && !b.except.some((e) => e.contains(ip)));
}

function portMatches(p: CompiledPort, flow: Flow, dstPod: PolicyPod | undefined): boolean {
  if (flow.protocol !== p.protocol) return false;
  if ('name' in p) return !!dstPod?.ports.some((cp) => cp.name === p.name && cp.protocol === p.protocol && cp.port === flow.dport);
  return flow.dport >= p.from && flow.dport <= p.to;
}

/** A rule for people: `x/allow-from-y ingress rule 0`. */
export function formatRuleRef(r: RuleRef): string {
  return `${r.policy} ${r.direction} rule ${r.rule}`;
}

/** One direction's verdict for people. */
export function formatDirVerdict(dir: Direction, v: DirVerdict | null): string {
  if (!v) return `${dir}: not a pod`;
  if (v.kind === 'not-isolated') return `${dir}: not isolated (no policy selects the pod)`;
  if (v.kind === 'allowed') return `${dir}: allowed by ${formatRuleRef(v.by)}`;
  return `${dir}: denied (isolated by ${v.isolatedBy.join(', ')}; no rule allows it)`;
}

/** The compiled rule text of a peer set, for views. */
export function describePeers(p: CompiledPeers): string[] {
  if (p.any) return ['any'];
  return [...[...p.pods.values()], ...p.blocks.map((b) => b.text)];
}
