/**
 * Routing information bases (RFC 4271 §3.2, §9): an Adj-RIB-In per peer, the
 * Loc-RIB with the best path per prefix and *why* it won, and an
 * Adj-RIB-Out per peer with iBGP split horizon and route reflection
 * (RFC 4456). Pure: no sockets, no timers. Every mutation returns the
 * best-path changes it caused (a plan); `exportsFor(peer)` then computes the
 * UPDATE content for one peer as a diff against what it was last sent.
 *
 * Import (RFC 4271 §9.1.1, RFC 4456 §8): a path is kept in the Adj-RIB-In
 * but marked rejected (not a candidate) when its AS_PATH contains our ASN,
 * its ORIGINATOR_ID is our router ID, its CLUSTER_LIST contains our cluster
 * ID (when we reflect), or its NEXT_HOP is our own session address. LOCAL_PREF
 * from an eBGP peer is ignored (§5.1.5) and replaced by the default 100.
 * Then the import policy (`policy.import`, e.g. Calico's filters: owner
 * blocks, BGPFilter rules) may reject it as 'filtered', naming its rule; the
 * path stays in the Adj-RIB-In, so a changed policy re-decides at once
 * (`reimport`, as soft reconfiguration does) and `bgp routes` shows it.
 *
 * Decision (RFC 4271 §9.1.2.2 plus RFC 4456 §9), as elimination steps over
 * the candidates; the reason a best path won is the step that removed its
 * last competitor (GoBGP's "best vs. runner-up" reason):
 *   local-origin        our own announcement beats learned paths
 *   local-pref          highest LOCAL_PREF
 *   as-path-length      shortest AS_PATH (a set counts 1)
 *   origin              lowest ORIGIN (IGP < EGP < INCOMPLETE)
 *   med                 lowest MED among paths from the same neighbour AS (absent = 0)
 *   ebgp-over-ibgp      eBGP-learned over iBGP-learned
 *                       (no IGP metric step: next hops are all directly reachable in the lab)
 *   router-id           lowest BGP Identifier, ORIGINATOR_ID standing in for it when present
 *   cluster-list-length shortest CLUSTER_LIST
 *   peer-address        lowest peer address
 * 'only-path' when there is a single candidate.
 *
 * Export (RFC 4271 §9.1.3, RFC 4456 §6): never back to the peer a path came
 * from; NO_ADVERTISE / NO_EXPORT honoured; iBGP-learned paths are not sent to
 * iBGP peers (split horizon) unless we are a reflector, which sends client
 * paths to every iBGP peer and non-client paths to clients only, adding
 * ORIGINATOR_ID (if absent) and prepending its CLUSTER_ID to CLUSTER_LIST.
 * To eBGP: our ASN prepended, NEXT_HOP = our session address, no LOCAL_PREF,
 * ORIGINATOR_ID, CLUSTER_LIST or learned MED. To iBGP: NEXT_HOP unchanged
 * (a local announcement without one gets our session address), LOCAL_PREF
 * always present. Unknown optional transitive attributes travel on with the
 * Partial bit set; unknown non-transitive ones stop here.
 */
import { ipv4ToInt } from '../packet/addr.ts';
import type { Clock } from '../common/clock.ts';
import { monotonicClock } from '../common/clock.ts';
import {
  ATTR_FLAG_PARTIAL,
  ATTR_FLAG_TRANSITIVE,
  COMMUNITY_NO_ADVERTISE,
  COMMUNITY_NO_EXPORT,
  ORIGINS,
  type Announcement,
  type PathAttributes,
  type UpdateRepr,
  asPathContains,
  asPathLength,
  cloneAsPath,
  neighborAs,
  normalizePrefix,
  prependAs,
  serializeAttributes,
} from './codec/index.ts';

/** LOCAL_PREF assumed when none applies (RFC 4271 leaves it to policy; 100 is every implementation's default). */
export const DEFAULT_LOCAL_PREF = 100;

/** Why a path is the best one (see the file comment for the order). */
export type BestPathReason =
  | 'only-path'
  | 'local-origin'
  | 'local-pref'
  | 'as-path-length'
  | 'origin'
  | 'med'
  | 'ebgp-over-ibgp'
  | 'router-id'
  | 'cluster-list-length'
  | 'peer-address';

/** The decision steps in order (every BestPathReason but 'only-path'). */
export const DECISION_STEPS: readonly Exclude<BestPathReason, 'only-path'>[] = [
  'local-origin',
  'local-pref',
  'as-path-length',
  'origin',
  'med',
  'ebgp-over-ibgp',
  'router-id',
  'cluster-list-length',
  'peer-address',
];

/** Why a received path is not a candidate. */
export type RejectReason = 'as-path-loop' | 'originator-id-loop' | 'cluster-list-loop' | 'next-hop-local' | 'filtered';

/** A policy's decision on one path, with the rule that decided. */
export interface PolicyVerdict {
  accept: boolean;
  rule: string;
}

/** Import and export policy beyond the RFC's checks (pure functions of the path). */
export interface RibPolicy {
  /** Decides a received path; undefined = accept. */
  import?(peer: Readonly<RibPeer>, prefix: string, attributes: PathAttributes): PolicyVerdict | undefined;
  /** Decides whether `prefix` (its best path `best`) may go to `peer`; undefined = accept. */
  export?(peer: Readonly<RibPeer>, prefix: string, best: Readonly<RoutePath>): PolicyVerdict | undefined;
}

/** What the RIB needs to know about a peer (the speaker fills it once the session is up). */
export interface RibPeer {
  address: string;
  asn: number;
  /** The peer's BGP Identifier. */
  routerId: string;
  /** Same AS as us. */
  ibgp: boolean;
  /** A route-reflector client of ours (meaningful when we have a cluster ID). */
  rrClient: boolean;
  /** Our address on this session: next hop for next-hop-self. */
  localAddress: string;
}

/** One path to a prefix. */
export interface RoutePath {
  prefix: string;
  /** 'local': announced through `originate`; 'peer': learned. */
  source: 'local' | 'peer';
  /** The peer it was learned from. */
  peer?: Readonly<RibPeer>;
  /** Normalized attributes (4-octet AS_PATH; LOCAL_PREF filled in). */
  attributes: PathAttributes;
  /** Clock time it was received or announced. */
  since: number;
}

/** One prefix of the Loc-RIB, with every candidate. */
export interface RibEntry {
  prefix: string;
  best: RoutePath;
  reason: BestPathReason;
  /** Every candidate, best first; losers carry the step that eliminated them. */
  paths: { path: RoutePath; best: boolean; eliminatedBy?: BestPathReason }[];
}

/** A change of best path for one prefix. `best` undefined: the prefix is gone. */
export interface BestChange {
  prefix: string;
  previous?: RoutePath;
  best?: RoutePath;
  reason?: BestPathReason;
}

/** A received path in an Adj-RIB-In, possibly rejected by the import checks. */
export interface AdjInEntry {
  path: RoutePath;
  rejected?: RejectReason;
  /** For 'filtered': the rule that rejected it. */
  rule?: string;
}

/** Per-peer route counts (`birdc show protocols all`: imported / filtered / exported; + preferred). */
export interface PeerRouteCounts {
  received: number;
  accepted: number;
  rejected: number;
  /** Accepted paths that are the best for their prefix. */
  preferred: number;
  sent: number;
}

/** RIB configuration. */
export interface RibOptions {
  asn: number;
  routerId: string;
  /** Set to act as a route reflector (RFC 4456) with this CLUSTER_ID (dotted quad). */
  clusterId?: string;
  clock?: Clock;
  policy?: RibPolicy;
}

const localPref = (p: RoutePath): number => p.attributes.localPref ?? DEFAULT_LOCAL_PREF;
const originRank = (p: RoutePath): number => ORIGINS.indexOf(p.attributes.origin ?? 'incomplete');
const isEbgp = (p: RoutePath): boolean => p.source === 'peer' && !p.peer!.ibgp;
const routerIdOf = (p: RoutePath, self: string): number => ipv4ToInt(p.attributes.originatorId ?? p.peer?.routerId ?? self);
const peerAddr = (p: RoutePath): number => (p.peer ? ipv4ToInt(p.peer.address) : 0);

/** Keeps the candidates with the minimum of `key`. */
function keepMin<T>(c: T[], key: (x: T) => number): T[] {
  const m = Math.min(...c.map(key));
  return c.filter((x) => key(x) === m);
}

/**
 * RFC 4271 §9.1.2.2 over `paths` (all candidates for one prefix). Returns the
 * best path, the reason, and for each loser the step that eliminated it.
 */
export function selectBest(
  paths: readonly RoutePath[],
  ctx: { asn: number; routerId: string },
): { best: RoutePath; reason: BestPathReason; eliminated: Map<RoutePath, BestPathReason> } | undefined {
  if (!paths.length) return undefined;
  const eliminated = new Map<RoutePath, BestPathReason>();
  if (paths.length === 1) return { best: paths[0], reason: 'only-path', eliminated };
  let c = [...paths];
  let reason: BestPathReason = 'peer-address';
  for (const step of DECISION_STEPS) {
    let next: RoutePath[];
    switch (step) {
      case 'local-origin':
        next = c.some((p) => p.source === 'local') ? c.filter((p) => p.source === 'local') : c;
        break;
      case 'local-pref':
        next = keepMin(c, (p) => -localPref(p));
        break;
      case 'as-path-length':
        next = keepMin(c, (p) => asPathLength(p.attributes.asPath ?? []));
        break;
      case 'origin':
        next = keepMin(c, originRank);
        break;
      case 'med': {
        // Compared only between paths from the same neighbouring AS (§9.1.2.2 c).
        const nas = (p: RoutePath) => neighborAs(p.attributes.asPath ?? [], ctx.asn);
        const minMed = new Map<number, number>();
        for (const p of c) minMed.set(nas(p), Math.min(minMed.get(nas(p)) ?? Infinity, p.attributes.med ?? 0));
        next = c.filter((p) => (p.attributes.med ?? 0) === minMed.get(nas(p)));
        break;
      }
      case 'ebgp-over-ibgp':
        next = c.some(isEbgp) ? c.filter(isEbgp) : c;
        break;
      case 'router-id':
        next = keepMin(c, (p) => routerIdOf(p, ctx.routerId));
        break;
      case 'cluster-list-length':
        next = keepMin(c, (p) => p.attributes.clusterList?.length ?? 0);
        break;
      case 'peer-address':
        next = keepMin(c, peerAddr).slice(0, 1);
        break;
    }
    if (next.length < c.length) {
      for (const p of c) if (!next.includes(p)) eliminated.set(p, step);
      c = next;
      if (c.length === 1) {
        reason = step;
        break;
      }
    }
  }
  return { best: c[0], reason, eliminated };
}

/** Stable text key of an attribute set (its 4-octet wire encoding). */
function attrKey(a: PathAttributes): string {
  return serializeAttributes(a, { as4: true }).toString('hex');
}

/** Adj-RIB-In, Loc-RIB and Adj-RIB-Out of one speaker. */
export class Rib {
  readonly asn: number;
  readonly routerId: string;
  readonly clusterId: string | undefined;
  private readonly clock: Clock;
  private policy: RibPolicy;
  private readonly local = new Map<string, RoutePath>();
  private readonly adjIn = new Map<string, Map<string, AdjInEntry>>();
  private readonly loc = new Map<string, { best: RoutePath; reason: BestPathReason }>();
  private readonly adjOut = new Map<string, Map<string, { attributes: PathAttributes; key: string }>>();

  constructor(opts: RibOptions) {
    this.asn = opts.asn;
    this.routerId = opts.routerId;
    this.clusterId = opts.clusterId;
    this.clock = opts.clock ?? monotonicClock;
    this.policy = opts.policy ?? {};
  }

  /**
   * Replaces the import/export policy and re-decides every received path
   * under it (what BIRD does on `configure` with a changed filter). Callers
   * must then re-send exports to every peer (`exportsFor` without prefixes).
   */
  setPolicy(policy: RibPolicy): BestChange[] {
    this.policy = policy;
    const touched = new Set<string>();
    for (const table of this.adjIn.values()) {
      for (const [prefix, e] of table) {
        const before = `${e.rejected}|${e.rule}`;
        this.judge(e);
        if (`${e.rejected}|${e.rule}` !== before) touched.add(prefix);
      }
    }
    return this.decideAll(touched);
  }

  /** Applies the RFC checks and then the import policy to an Adj-RIB-In entry. */
  private judge(e: AdjInEntry): void {
    const p = e.path;
    e.rejected = this.importCheck(p.peer!, p.attributes);
    e.rule = undefined;
    if (e.rejected) return;
    const v = this.policy.import?.(p.peer!, p.prefix, p.attributes);
    if (v && !v.accept) {
      e.rejected = 'filtered';
      e.rule = v.rule;
    }
  }

  /** Announces (or replaces) a locally originated prefix. ORIGIN defaults to IGP, AS_PATH to empty. */
  originate(prefix: string, attributes: PathAttributes = {}): BestChange[] {
    const p = normalizePrefix(prefix);
    const a: PathAttributes = { origin: 'igp', asPath: [], ...attributes };
    this.local.set(p, { prefix: p, source: 'local', attributes: a, since: this.clock.now() });
    return this.decideAll([p]);
  }

  /** Withdraws a locally originated prefix. */
  withdrawLocal(prefix: string): BestChange[] {
    const p = normalizePrefix(prefix);
    if (!this.local.delete(p)) return [];
    return this.decideAll([p]);
  }

  /** Locally originated prefixes. */
  localPrefixes(): string[] {
    return [...this.local.keys()];
  }

  /** Applies a received (normalized) UPDATE from `peer` to its Adj-RIB-In and re-decides the touched prefixes. */
  applyUpdate(peer: RibPeer, u: UpdateRepr): BestChange[] {
    const snap: RibPeer = { ...peer };
    let table = this.adjIn.get(peer.address);
    if (!table) this.adjIn.set(peer.address, (table = new Map<string, AdjInEntry>()));
    const touched = new Set<string>();
    for (const w of u.withdrawn) if (table.delete(w)) touched.add(w);
    if (u.nlri.length) {
      const a = this.importAttributes(snap, u.attributes);
      const now = this.clock.now();
      for (const prefix of u.nlri) {
        const e: AdjInEntry = { path: { prefix, source: 'peer', peer: snap, attributes: a, since: now } };
        this.judge(e);
        table.set(prefix, e);
        touched.add(prefix);
      }
    }
    return this.decideAll(touched);
  }

  /** The session with `address` went down: forget its Adj-RIB-In and Adj-RIB-Out. */
  peerDown(address: string): BestChange[] {
    this.adjOut.delete(address);
    const table = this.adjIn.get(address);
    if (!table) return [];
    this.adjIn.delete(address);
    return this.decideAll(table.keys());
  }

  /** Forgets what was sent to `address`, so the next `exportsFor` re-sends everything (ROUTE-REFRESH). */
  resetAdjRibOut(address: string): void {
    this.adjOut.delete(address);
  }

  /** A peer's Adj-RIB-In (accepted and rejected paths). */
  adjRibIn(address: string): AdjInEntry[] {
    return [...(this.adjIn.get(address)?.values() ?? [])];
  }

  /** One received path of a peer. */
  adjInEntry(address: string, prefix: string): AdjInEntry | undefined {
    return this.adjIn.get(address)?.get(prefix);
  }

  /** What was last announced to a peer. */
  adjRibOut(address: string): { prefix: string; attributes: PathAttributes }[] {
    return [...(this.adjOut.get(address)?.entries() ?? [])].map(([prefix, v]) => ({ prefix, attributes: v.attributes }));
  }

  /** The best path of a prefix. */
  best(prefix: string): { best: RoutePath; reason: BestPathReason } | undefined {
    return this.loc.get(prefix);
  }

  /** The Loc-RIB with every candidate, sorted by prefix. */
  routes(): RibEntry[] {
    const out: RibEntry[] = [];
    for (const prefix of [...this.loc.keys()].sort(comparePrefixes)) {
      const cands = this.candidates(prefix);
      const r = selectBest(cands, this)!;
      out.push({
        prefix,
        best: r.best,
        reason: r.reason,
        paths: [r.best, ...cands.filter((p) => p !== r.best)].map((path) => ({ path, best: path === r.best, eliminatedBy: r.eliminated.get(path) })),
      });
    }
    return out;
  }

  /** Route counts for one peer. */
  counts(address: string): PeerRouteCounts {
    const table = this.adjIn.get(address);
    let accepted = 0;
    let preferred = 0;
    for (const e of table?.values() ?? []) {
      if (e.rejected) continue;
      accepted++;
      if (this.loc.get(e.path.prefix)?.best === e.path) preferred++;
    }
    const received = table?.size ?? 0;
    return { received, accepted, rejected: received - accepted, preferred, sent: this.adjOut.get(address)?.size ?? 0 };
  }

  /**
   * What `peer` must be sent so that its view matches our Loc-RIB: the diff
   * between the export policy's output and the peer's Adj-RIB-Out, which is
   * updated (the caller must send the result). `prefixes` limits the work
   * to prefixes that changed; omitted = everything (initial table, refresh).
   */
  exportsFor(peer: RibPeer, prefixes?: Iterable<string>): { withdraw: string[]; announce: Announcement[] } {
    let out = this.adjOut.get(peer.address);
    if (!out) this.adjOut.set(peer.address, (out = new Map<string, { attributes: PathAttributes; key: string }>()));
    const todo = prefixes ? new Set(prefixes) : new Set([...this.loc.keys(), ...out.keys()]);
    const withdraw: string[] = [];
    const groups = new Map<string, Announcement>();
    for (const prefix of [...todo].sort(comparePrefixes)) {
      const best = this.loc.get(prefix)?.best;
      const attrs = best ? this.exportAttributes(best, peer) : undefined;
      const prev = out.get(prefix);
      if (!attrs) {
        if (prev) {
          out.delete(prefix);
          withdraw.push(prefix);
        }
        continue;
      }
      const key = attrKey(attrs);
      if (prev?.key === key) continue;
      out.set(prefix, { attributes: attrs, key });
      const g = groups.get(key);
      if (g) g.prefixes.push(prefix);
      else groups.set(key, { attributes: attrs, prefixes: [prefix] });
    }
    return { withdraw, announce: [...groups.values()] };
  }

  /**
   * The export policy: the attributes `best` is advertised with to `peer`,
   * or undefined if it must not be (see the file comment).
   */
  exportAttributes(best: RoutePath, peer: RibPeer): PathAttributes | undefined {
    const src = best.peer;
    if (src && src.address === peer.address) return undefined;
    const verdict = this.policy.export?.(peer, best.prefix, best);
    if (verdict && !verdict.accept) return undefined;
    const a = best.attributes;
    const comms = a.communities ?? [];
    if (comms.includes(COMMUNITY_NO_ADVERTISE)) return undefined;
    if (!peer.ibgp && comms.includes(COMMUNITY_NO_EXPORT)) return undefined;
    let reflect = false;
    if (peer.ibgp && src?.ibgp) {
      if (this.clusterId === undefined) return undefined; // iBGP split horizon
      if (!src.rrClient && !peer.rrClient) return undefined; // non-client paths go to clients only
      reflect = true;
    }
    const out: PathAttributes = { origin: a.origin ?? 'igp' };
    if (peer.ibgp) {
      out.asPath = cloneAsPath(a.asPath ?? []);
      out.nextHop = best.source === 'local' ? (a.nextHop ?? peer.localAddress) : a.nextHop;
      if (a.med !== undefined) out.med = a.med;
      out.localPref = a.localPref ?? DEFAULT_LOCAL_PREF;
    } else {
      out.asPath = prependAs(a.asPath ?? [], this.asn);
      out.nextHop = peer.localAddress;
      if (best.source === 'local' && a.med !== undefined) out.med = a.med;
    }
    if (a.atomicAggregate) out.atomicAggregate = true;
    if (a.aggregator) out.aggregator = { ...a.aggregator };
    if (comms.length) out.communities = [...comms];
    if (reflect) {
      out.originatorId = a.originatorId ?? src!.routerId;
      out.clusterList = [this.clusterId!, ...(a.clusterList ?? [])];
    }
    const other = (a.other ?? [])
      .filter((o) => o.flags & ATTR_FLAG_TRANSITIVE)
      .map((o) => ({ ...o, flags: best.source === 'peer' ? o.flags | ATTR_FLAG_PARTIAL : o.flags }));
    if (other.length) out.other = other;
    return out;
  }

  // -------------------------------------------------------------------------

  private importAttributes(peer: RibPeer, a: PathAttributes): PathAttributes {
    const out: PathAttributes = { ...a, asPath: cloneAsPath(a.asPath ?? []) };
    if (!peer.ibgp) out.localPref = DEFAULT_LOCAL_PREF; // §5.1.5: LOCAL_PREF from eBGP is ignored
    else out.localPref ??= DEFAULT_LOCAL_PREF;
    return out;
  }

  private importCheck(peer: RibPeer, a: PathAttributes): RejectReason | undefined {
    if (asPathContains(a.asPath ?? [], this.asn)) return 'as-path-loop';
    if (a.originatorId !== undefined && a.originatorId === this.routerId) return 'originator-id-loop';
    if (this.clusterId !== undefined && a.clusterList?.includes(this.clusterId)) return 'cluster-list-loop';
    if (a.nextHop === peer.localAddress) return 'next-hop-local';
    return undefined;
  }

  private candidates(prefix: string): RoutePath[] {
    const out: RoutePath[] = [];
    const l = this.local.get(prefix);
    if (l) out.push(l);
    for (const table of this.adjIn.values()) {
      const e = table.get(prefix);
      if (e && !e.rejected) out.push(e.path);
    }
    return out;
  }

  private decideAll(prefixes: Iterable<string>): BestChange[] {
    const out: BestChange[] = [];
    for (const prefix of prefixes) {
      const prev = this.loc.get(prefix);
      const r = selectBest(this.candidates(prefix), this);
      if (!r) {
        if (prev) {
          this.loc.delete(prefix);
          out.push({ prefix, previous: prev.best });
        }
        continue;
      }
      this.loc.set(prefix, { best: r.best, reason: r.reason });
      if (prev && samePath(prev.best, r.best)) continue; // re-announced unchanged
      out.push({ prefix, previous: prev?.best, best: r.best, reason: r.reason });
    }
    return out;
  }
}

/** Same origin and same attributes: a re-announcement that changes nothing. */
function samePath(a: RoutePath, b: RoutePath): boolean {
  return a === b || (a.source === b.source && a.peer?.address === b.peer?.address && attrKey(a.attributes) === attrKey(b.attributes));
}

/** Orders prefixes numerically by address, then length. */
export function comparePrefixes(a: string, b: string): number {
  const [aa, al] = a.split('/');
  const [ba, bl] = b.split('/');
  return ipv4ToInt(aa) - ipv4ToInt(ba) || Number(al) - Number(bl);
}
