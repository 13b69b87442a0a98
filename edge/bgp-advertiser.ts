/**
 * MetalLB's speaker in BGP mode, as a pure plan: the routes this node
 * announces for LoadBalancer addresses whose pool a BGPAdvertisement selects
 * (and whose nodeSelectors admit the node). Every eligible node announces
 * (./lb-eligibility.ts: with `externalTrafficPolicy: Local` only nodes with a
 * ready local endpoint), so an upstream router spreads traffic over them by
 * ECMP; nothing is elected.
 *
 * Each address becomes `ip/aggregationLength` (default 32, masked, so several
 * addresses may share one aggregate) with the advertisement's `localPref`
 * (carried to iBGP peers only, as RFC 4271 says) and `communities`: standard
 * ones as `ASN:value`, RFC 8092 large ones as `large:A:B:C`, as MetalLB
 * writes them. Where several advertisements or addresses give the same
 * prefix, their communities are joined and the highest localPref wins.
 *
 * The node agent hands the plan to the node's BGP speaker (backends/bgp),
 * which announces the difference to external BGPPeers.
 */
import type { Advertisement, IpAddressPool } from '../control-plane/metallb.ts';
import type { LbService } from './lb-services.ts';
import { intToIpv4, ipv4ToInt } from '../packet/addr.ts';
import { eligibleAddresses } from './lb-eligibility.ts';

/** One LoadBalancer route a node originates. */
export interface LbRoute {
  /** `a.b.c.d/len`, the network of the address at the aggregation length. */
  prefix: string;
  localPref?: number;
  /** RFC 1997 communities as u32 (ASN << 16 | value), sorted. */
  communities: number[];
  /** RFC 8092 large communities (global admin, local 1, local 2), sorted. */
  largeCommunities: [number, number, number][];
  /** `ns/name` of the Services behind it. */
  services: string[];
}

/** A parsed BGPAdvertisement community: standard `65000:100` or large `large:1:2:3`; undefined when malformed. */
export function parseCommunity(text: string): { standard: number } | { large: [number, number, number] } | undefined {
  const s = /^(\d{1,5}):(\d{1,5})$/.exec(text.trim());
  if (s) {
    const [hi, lo] = [Number(s[1]), Number(s[2])];
    return hi <= 0xffff && lo <= 0xffff ? { standard: ((hi << 16) | lo) >>> 0 } : undefined;
  }
  const l = /^large:(\d{1,10}):(\d{1,10}):(\d{1,10})$/.exec(text.trim());
  if (l) {
    const v = [Number(l[1]), Number(l[2]), Number(l[3])] as [number, number, number];
    return v.every((n) => n <= 0xffffffff) ? { large: v } : undefined;
  }
  return undefined;
}

/** `ip` masked to `len` bits, as a prefix. */
export function aggregate(ip: string, len: number): string {
  const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
  return `${intToIpv4((ipv4ToInt(ip) & mask) >>> 0)}/${len}`;
}

const cmpLarge = (a: readonly number[], b: readonly number[]) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2];

/** The routes `node` announces, sorted by prefix (pure). */
export function bgpLbRoutes(
  node: string,
  nodeLabels: Record<string, string>,
  lbs: readonly LbService[],
  pools: readonly IpAddressPool[],
  advertisements: readonly Advertisement[],
): LbRoute[] {
  const byPrefix = new Map<string, { localPref?: number; std: Set<number>; large: Map<string, [number, number, number]>; services: Set<string> }>();
  for (const e of eligibleAddresses(node, nodeLabels, lbs, pools, advertisements)) {
    for (const adv of e.advertisements) {
      const prefix = aggregate(e.announcement.ip, adv.spec?.aggregationLength ?? 32);
      let r = byPrefix.get(prefix);
      if (!r) byPrefix.set(prefix, (r = { std: new Set(), large: new Map(), services: new Set() }));
      r.services.add(e.announcement.service);
      const lp = adv.spec?.localPref;
      if (lp !== undefined && (r.localPref === undefined || lp > r.localPref)) r.localPref = lp;
      for (const c of adv.spec?.communities ?? []) {
        const p = parseCommunity(c);
        if (p && 'standard' in p) r.std.add(p.standard);
        else if (p) r.large.set(p.large.join(':'), p.large);
      }
    }
  }
  return [...byPrefix.entries()]
    .map(([prefix, r]) => ({
      prefix,
      ...(r.localPref !== undefined ? { localPref: r.localPref } : {}),
      communities: [...r.std].sort((a, b) => a - b),
      largeCommunities: [...r.large.values()].sort(cmpLarge),
      services: [...r.services].sort(),
    }))
    .sort((a, b) => {
      const [ai, al] = a.prefix.split('/');
      const [bi, bl] = b.prefix.split('/');
      return ipv4ToInt(ai) - ipv4ToInt(bi) || Number(al) - Number(bl);
    });
}
