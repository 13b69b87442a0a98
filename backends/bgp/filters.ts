/**
 * Route filters, as calico-node's BIRD configuration has them, evaluated
 * purely: which prefix a node accepts from which peer, and the rule that
 * decided (shown by `bgp routes` for what was filtered). The same decisions are
 * rendered as BIRD filter functions for kernel nodes (./bird.ts).
 *
 * - The IP pools are the cluster's IPPool objects (projectcalico.org/v3,
 *   spec.cidr) and the cluster CIDR, which stands for the default pool
 *   calico-node creates from CALICO_IPV4POOL_CIDR (podlab has no object for it).
 * - From a node peer (mesh or route reflector): only prefixes inside the
 *   cluster's IP pools that the announcing node owns: its block (Node
 *   spec.podCIDR(s)). With route reflection the announcing node is the path's
 *   ORIGINATOR_ID, else the peer itself. Also the LoadBalancer routes the
 *   announcing node is eligible for (`NodeOwner.lb`, MetalLB's BGP mode,
 *   edge/bgp-advertiser.ts): they lie outside the pools, and are accepted
 *   from their owner only. A node never installs such a route in its table
 *   (kube-proxy serves LB addresses on every node, as Calico's kernel filter
 *   keeps service addresses out) and never passes one learned from another
 *   node on to an external peer: every eligible node announces for itself.
 * - From an external BGPPeer: nothing inside an IP pool (those are the
 *   cluster's own routes: a router must not take them over); anything else as
 *   the peer's BGPFilters (spec.filters, in order) say: the first matching
 *   importV4 rule decides, and a prefix no rule matches is accepted, as
 *   Calico's docs define it. A peer with no BGPFilter imports nothing: podlab
 *   is stricter than Calico here, because anyone who may create a BGPPeer
 *   could otherwise inject routes.
 * - Never a default route (0.0.0.0/0) unless a rule matching it says Accept.
 *
 * Export (exportV4) is evaluated the same way on what a node sends an
 * external peer; node peers get what the RIB's export policy gives them.
 */
import type { BgpFilter, BgpFilterRule } from '../../control-plane/calico.ts';
import { CALICO_IPV4_ADDRESS } from '../../control-plane/annotations.ts';
import { intToIpv4, ipv4ToInt } from '../../packet/addr.ts';
import type { BgpInputs, DesiredPeer } from './peers.ts';

/** What a filter said: accepted or not, and the rule that decided (text for `bgp routes` and the log). */
export interface FilterVerdict {
  accept: boolean;
  rule: string;
}

/** A node peer's owner data: its address (router id) and the blocks it may announce. */
export interface NodeOwner {
  name: string;
  ip: string;
  blocks: string[];
  /** The LoadBalancer routes (prefixes) the node announces. */
  lb?: string[];
}

/** Who a peer is, for filtering. */
export type PeerKind = { kind: 'node' } | { kind: 'external'; name: string; filters: BgpFilter[] };

/** The cluster-wide inputs: IP pools, LoadBalancer pools and who owns which block. */
export interface FilterContext {
  pools: string[];
  /** Nodes by IP (their router id and session address). */
  nodes: Map<string, NodeOwner>;
}

/** Every LoadBalancer route some node announces. */
export function lbPrefixes(ctx: FilterContext): Set<string> {
  return new Set([...ctx.nodes.values()].flatMap((n) => n.lb ?? []));
}

const DEFAULT_ROUTE = '0.0.0.0/0';

function parse(cidr: string): { net: number; len: number } | undefined {
  const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d{1,2})$/.exec(cidr.trim());
  if (!m) return undefined;
  const len = Number(m[2]);
  if (len > 32) return undefined;
  const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
  return { net: (ipv4ToInt(m[1]) & mask) >>> 0, len };
}

/** `prefix` lies inside `outer` (or equals it): BIRD's `net ~ outer`. */
export function prefixWithin(prefix: string, outer: string): boolean {
  const p = parse(prefix);
  const o = parse(outer);
  if (!p || !o || p.len < o.len) return false;
  const mask = o.len === 0 ? 0 : (0xffffffff << (32 - o.len)) >>> 0;
  return ((p.net & mask) >>> 0) === o.net;
}

/** `a` and `b` are the same network. */
export function prefixEqual(a: string, b: string): boolean {
  const x = parse(a);
  const y = parse(b);
  return !!x && !!y && x.net === y.net && x.len === y.len;
}

/** Whether a BGPFilter rule matches `prefix` (a rule without cidr matches everything). */
export function ruleMatches(rule: BgpFilterRule, prefix: string): boolean {
  if (!rule.cidr) return true;
  switch (rule.matchOperator ?? 'In') {
    case 'Equal':
      return prefixEqual(prefix, rule.cidr);
    case 'In':
      return prefixWithin(prefix, rule.cidr);
    case 'NotIn':
      return !prefixWithin(prefix, rule.cidr);
    default:
      return false;
  }
}

/** Text of a rule: `BGPFilter NAME importV4[i] Reject In 44.0.0.0/16`. */
export function ruleText(filter: string, dir: 'importV4' | 'exportV4', i: number, rule: BgpFilterRule): string {
  return `BGPFilter ${filter} ${dir}[${i}] ${rule.action}${rule.cidr ? ` ${rule.matchOperator ?? 'In'} ${rule.cidr}` : ''}`;
}

/** The first matching rule of `filters` (in order) for `dir`, or undefined. */
export function firstMatch(filters: BgpFilter[], dir: 'importV4' | 'exportV4', prefix: string): FilterVerdict | undefined {
  for (const f of filters) {
    const rules = f.spec?.[dir] ?? [];
    for (let i = 0; i < rules.length; i++) {
      if (ruleMatches(rules[i], prefix)) return { accept: rules[i].action === 'Accept', rule: ruleText(f.metadata.name, dir, i, rules[i]) };
    }
  }
  return undefined;
}

/** Applies BGPFilter rules with the default-route guard and Calico's unmatched-is-Accept. */
function byFilters(filters: BgpFilter[], dir: 'importV4' | 'exportV4', prefix: string, peerName: string): FilterVerdict {
  if (!filters.length) return { accept: false, rule: `no BGPFilter on ${peerName}: nothing is ${dir === 'importV4' ? 'imported' : 'exported'}` };
  const m = firstMatch(filters, dir, prefix);
  if (prefixEqual(prefix, DEFAULT_ROUTE) && !m?.accept) return m ?? { accept: false, rule: 'default route: only a BGPFilter rule may accept it' };
  return m ?? { accept: true, rule: `no rule of ${filters.map((f) => f.metadata.name).join(', ')} matches: Accept` };
}

/**
 * The import decision for `prefix` received from a peer. `announcer` is the
 * node that originated it (ORIGINATOR_ID when reflected, else the peer's address).
 */
export function importVerdict(ctx: FilterContext, peer: PeerKind, prefix: string, announcer: string): FilterVerdict {
  if (peer.kind === 'external') {
    // Inside only: a covering prefix (10.0.0.0/8, the default) loses to the blocks by longest match.
    const pool = ctx.pools.find((p) => prefixWithin(prefix, p));
    if (pool) return { accept: false, rule: `inside IP pool ${pool}: only nodes announce the cluster's addresses` };
    return byFilters(peer.filters, 'importV4', prefix, `BGPPeer ${peer.name}`);
  }
  if (prefixEqual(prefix, DEFAULT_ROUTE)) return { accept: false, rule: 'default route: never from a node' };
  const lbOwner = ctx.nodes.get(announcer);
  const lb = lbOwner?.lb?.find((p) => prefixEqual(p, prefix));
  if (lb) return { accept: true, rule: `${lbOwner!.name}'s LoadBalancer route ${lb}` };
  const pool = ctx.pools.find((p) => prefixWithin(prefix, p));
  if (!pool) return { accept: false, rule: `outside the IP pools (${ctx.pools.join(', ')})` };
  const owner = ctx.nodes.get(announcer);
  if (!owner) return { accept: false, rule: `announced by ${announcer}, which is no node` };
  const block = owner.blocks.find((b) => prefixWithin(prefix, b));
  if (!block) return { accept: false, rule: `not ${owner.name}'s block (${owner.blocks.join(', ') || 'none'})` };
  return { accept: true, rule: `${owner.name}'s block ${block}` };
}

/**
 * The export decision for `prefix` towards an external peer (node peers:
 * undefined, no filter). `lb`: the prefix is a LoadBalancer route, and
 * whether this node originates it.
 */
export function exportVerdict(peer: PeerKind, prefix: string, lb?: { local: boolean }): FilterVerdict | undefined {
  if (peer.kind !== 'external') return undefined;
  if (lb && !lb.local) return { accept: false, rule: 'LoadBalancer route of another node: each eligible node announces its own' };
  if (!peer.filters.length) return undefined; // Calico exports the pools' blocks to external peers by default
  return byFilters(peer.filters, 'exportV4', prefix, `BGPPeer ${peer.name}`);
}

/** The node owners of a cluster: each BGP node's address, its blocks (spec.podCIDRs, else spec.podCIDR) and LoadBalancer routes. */
export function nodeOwners(input: BgpInputs): Map<string, NodeOwner> {
  const out = new Map<string, NodeOwner>();
  for (const n of input.nodes) {
    const ip = n.metadata.annotations?.[CALICO_IPV4_ADDRESS]?.split('/')[0];
    if (!ip) continue;
    const blocks = n.spec?.podCIDRs?.length ? n.spec.podCIDRs : n.spec?.podCIDR ? [n.spec.podCIDR] : [];
    const lb = input.lb?.get(n.metadata.name);
    out.set(ip, { name: n.metadata.name, ip, blocks, ...(lb?.length ? { lb } : {}) });
  }
  return out;
}

/** Each desired peer's kind, with the BGPFilters its BGPPeer names (unknown names are skipped, as Calico does). */
export function peerKinds(want: Map<string, DesiredPeer>, filters: BgpFilter[]): Map<string, PeerKind> {
  const byName = new Map(filters.map((f) => [f.metadata.name, f]));
  const out = new Map<string, PeerKind>();
  for (const [addr, p] of want) {
    out.set(addr, p.external ? { kind: 'external', name: p.name.replace(/^BGPPeer /, ''), filters: p.external.filters.flatMap((n) => byName.get(n) ?? []) } : { kind: 'node' });
  }
  return out;
}

/**
 * The IP pools filters judge by: every IPPool's spec.cidr, and `clusterCidr`
 * (the default pool) unless a pool already covers it; sorted and without
 * duplicates, so an unchanged cluster gives an unchanged policy.
 */
export function ipPoolCidrs(input: BgpInputs, clusterCidr: string[]): string[] {
  const pools = (input.pools ?? []).map((p) => p.spec?.cidr).filter((c): c is string => typeof c === 'string' && parse(c) !== undefined);
  const all = [...pools, ...clusterCidr.filter((c) => !pools.some((p) => prefixWithin(c, p)))];
  return [...new Set(all.map(normal))].sort();
}

function normal(cidr: string): string {
  const p = parse(cidr)!;
  return `${intToIpv4(p.net)}/${p.len}`;
}
