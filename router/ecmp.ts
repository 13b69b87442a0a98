/**
 * The lab router's forwarding decisions, pure: which next hops a learned
 * prefix has (equal-cost multipath over the BGP paths that tie), which
 * prefix covers an address (longest match), and which next hop one flow
 * takes (a seeded hash of its 5-tuple, as a router's ECMP hashes L3+L4
 * fields, so one connection always takes one node and flows spread).
 */
import type { RouteSummary } from '../bgp/index.ts';
import { ipv4ToInt } from '../packet/addr.ts';
import { FNV1A_OFFSET, fnv1aByte as mix } from '../packet/flow-hash.ts';

/**
 * Paths that lose only at these steps are as good as the best for
 * multipath (BIRD's `merge paths`, a router's `maximum-paths`): equal
 * local-pref, AS path length, origin, MED and session type.
 */
const MULTIPATH_TIES: ReadonlySet<string> = new Set(['router-id', 'cluster-list-length', 'peer-address']);

/** One learned prefix with its ECMP next hops (sorted, distinct). */
export interface EcmpRoute {
  prefix: string;
  nextHops: string[];
}

/** The ECMP table from the speaker's Loc-RIB: learned routes only, next hops of the paths that tie with the best. */
export function ecmpTable(routes: readonly RouteSummary[]): EcmpRoute[] {
  const out: EcmpRoute[] = [];
  for (const r of routes) {
    const best = r.paths.find((p) => p.best);
    if (!best || best.source !== 'peer' || !best.nextHop) continue;
    const hops = new Set([best.nextHop]);
    for (const p of r.paths) if (!p.best && p.source === 'peer' && p.nextHop && p.reason && MULTIPATH_TIES.has(p.reason)) hops.add(p.nextHop);
    out.push({ prefix: r.prefix, nextHops: [...hops].sort((a, b) => ipv4ToInt(a) - ipv4ToInt(b)) });
  }
  return out;
}

/** The longest prefix of `table` covering `ip`, if any. */
export function longestMatch(table: readonly EcmpRoute[], ip: string): EcmpRoute | undefined {
  const a = ipv4ToInt(ip);
  let hit: EcmpRoute | undefined;
  let hitLen = -1;
  for (const r of table) {
    const [net, lenText] = r.prefix.split('/');
    const len = Number(lenText);
    const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
    if (((a & mask) >>> 0) === ((ipv4ToInt(net) & mask) >>> 0) && len > hitLen) {
      hit = r;
      hitLen = len;
    }
  }
  return hit;
}

/** A flow's 5-tuple. */
export interface Flow {
  src: string;
  srcPort: number;
  dst: string;
  dstPort: number;
  /** IP protocol number (6 TCP, 17 UDP). */
  protocol: number;
}

/** FNV-1a over the seed and the 5-tuple: the same flow and seed always hash alike. */
export function flowHash(f: Flow, seed: number): number {
  let h = FNV1A_OFFSET;
  for (let i = 0; i < 4; i++) h = mix(h, (seed >>> (8 * i)) & 0xff);
  h = mix(h, f.protocol);
  for (const ip of [f.src, f.dst]) {
    const n = ipv4ToInt(ip);
    for (let i = 3; i >= 0; i--) h = mix(h, (n >>> (8 * i)) & 0xff);
  }
  for (const p of [f.srcPort, f.dstPort]) h = mix(mix(h, p >>> 8), p & 0xff);
  // A final avalanche, so nearby ports spread over few next hops too.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  return h >>> 0;
}

/** The next hop of one flow among `hops` (the modulo of its hash, as hash-threshold ECMP picks a bucket). */
export function pickNextHop(hops: readonly string[], f: Flow, seed: number): string | undefined {
  if (!hops.length) return undefined;
  return hops[flowHash(f, seed) % hops.length];
}
