/**
 * A netfilter rule walker over {@link Rule} data: the same rules that
 * `iptables-save` prints are the ones a packet is matched against, so what a
 * student reads is what happens.
 *
 * Semantics follow the kernel's xtables: rules of a chain in order; `-j CHAIN`
 * pushes, RETURN or the end of a user chain pops, the end of a built-in chain
 * applies its policy (ACCEPT here); DNAT/REDIRECT/MASQUERADE/ACCEPT end the
 * table, DROP/REJECT end the packet; MARK continues. The stateful matches keep
 * the kernel's state:
 * - `statistic --mode random`: `(random_u32 & 0x7fffffff) < lround(2^31 * p)`,
 *   the 31-bit draw taken from the injected SeededRng;
 * - `recent`: per-list entries keyed by source address with their last-seen
 *   time, `--rcheck --seconds` against the injected clock, `--reap` removing
 *   the list's oldest entry when stale, at most 100 entries per list
 *   (xt_recent's ip_list_tot) with the least recently seen evicted.
 *
 * Speed: a chain with many rules gets an index on (destination /32, protocol,
 * destination port); a packet is tried against the union of its bucket and
 * the rules that cannot be indexed, in rule order, so the verdict is exactly
 * that of a linear walk (KUBE-SERVICES with 10,000 services costs a few map
 * lookups instead of 10,000 comparisons).
 */
import type { SeededRng } from '../../common/rng.ts';
import type { EngineClock } from '../types.ts';
import { inAddr, saveText, type Match, type Rule, type TableName } from './rules.ts';

/** Per-packet state while walking tables. */
export interface WalkPacket {
  src: number;
  srcStr: string;
  dst: number;
  dstStr: string;
  proto: 'tcp' | 'udp';
  sport: number;
  dport: number;
  /** nfmark. */
  mark: number;
  /** conntrack state bits of this (first) packet: NEW, plus DNAT once translated. */
  ctDnat: boolean;
}

/** How a table walk ended. */
export type WalkVerdict =
  | { kind: 'accept' }
  | { kind: 'drop'; rule: Rule }
  | { kind: 'reject'; rule: Rule }
  | { kind: 'dnat'; ip: string; port: number; rule: Rule }
  | { kind: 'redirect'; port: number; rule: Rule }
  | { kind: 'masquerade'; rule: Rule };

/** The verdict without a rule: one object for every walk that ends so. */
const ACCEPTED: WalkVerdict = { kind: 'accept' };

/** What the walker asks its owner about addresses and ipsets. */
export interface WalkEnv {
  isLocal(ip: number, ipStr: string): boolean;
  /** ipset membership for `-m set --match-set NAME FLAGS`; absent → never matches. */
  inSet?(name: string, flags: string, pkt: WalkPacket): boolean;
}

interface IndexedChain {
  rules: Rule[];
  /** (dst/32, proto, dport) → ascending indices of the rules such a packet can match: that bucket ∪ its (*, proto, dport) bucket ∪ wild. */
  byDst?: Map<number, number[]>;
  /** (proto, dport) → ascending indices for a destination without a bucket: that bucket ∪ wild. */
  byPort?: Map<number, number[]>;
  /** Indices of rules the index cannot key, ascending. */
  wild?: number[];
  /**
   * Jump targets already looked up, by rule index, valid while `linkGen` is the
   * walker's `removals`: a packet to one of 10,000 services then follows
   * pointers instead of hashing chain names into a table of 100,000 chains.
   */
  links?: (IndexedChain | null | undefined)[];
  linkGen?: number;
  /** A `null` link (the chain did not exist, and could not be loaded) holds while this is the walker's `additions`. */
  missGen?: number;
}

const INDEX_THRESHOLD = 16;

function l4Of(r: Rule): { proto: string; dport: number } | undefined {
  for (const m of r.matches) if (m.kind === 'l4' && m.dport !== undefined) return { proto: m.proto, dport: m.dport };
  return undefined;
}

/** Numeric keys (no string building per packet): protocol and port in the low 17 bits, the address above. */
const portKey = (proto: string, dport: number): number => (proto === 'udp' ? 65536 : 0) + dport;
const dstKey = (dst: number, proto: string, dport: number): number => dst * 131072 + portKey(proto, dport);

function sortedUnion(...lists: number[][]): number[] {
  const nonEmpty = lists.filter((l) => l.length > 0);
  if (nonEmpty.length === 1) return nonEmpty[0];
  return nonEmpty.flat().sort((a, b) => a - b);
}

function indexChain(rules: Rule[]): IndexedChain {
  if (rules.length < INDEX_THRESHOLD) return { rules };
  const dstBuckets = new Map<number, number[]>();
  const portBuckets = new Map<number, number[]>();
  const wild: number[] = [];
  rules.forEach((r, i) => {
    const l4 = l4Of(r);
    if (!l4 || !r.proto) return wild.push(i);
    let map: Map<number, number[]>;
    let key: number;
    if (!r.dst) {
      map = portBuckets;
      key = portKey(l4.proto, l4.dport);
    } else if (!r.dst.neg && r.dst.mask === 0xffffffff) {
      map = dstBuckets;
      key = dstKey(r.dst.net, l4.proto, l4.dport);
    } else return wild.push(i);
    let b = map.get(key);
    if (!b) map.set(key, (b = []));
    b.push(i);
  });
  const byDst = new Map<number, number[]>();
  for (const [k, b] of dstBuckets) byDst.set(k, sortedUnion(b, portBuckets.get(k % 131072) ?? [], wild));
  const byPort = new Map<number, number[]>();
  for (const [k, b] of portBuckets) byPort.set(k, sortedUnion(b, wild));
  return { rules, byDst, byPort, wild };
}

/**
 * Dotted quad to unsigned 32-bit, without packet/addr.ts' memo (a memo of 4,096
 * entries thrashes when 10,000 service addresses are in use). NaN if malformed.
 */
export function ipToUint(s: string): number {
  let v = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || octet > 255) return NaN;
      v = v * 256 + octet;
      octet = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57 && digits < 3) {
      octet = octet * 10 + (c - 48);
      digits++;
    } else return NaN;
  }
  if (dots !== 3 || digits === 0 || octet > 255) return NaN;
  return v * 256 + octet;
}

/** Groups rules by chain, keeping their order. */
export function groupByChain(rules: readonly Rule[]): Map<string, Rule[]> {
  const by = new Map<string, Rule[]>();
  for (const r of rules) {
    let l = by.get(r.chain);
    if (!l) by.set(r.chain, (l = []));
    l.push(r);
  }
  return by;
}
const RECENT_LIST_MAX = 100;

/** xt_recent state: list name → source address → last-seen ms (Map order = least recently seen first). */
export class RecentTables {
  readonly lists = new Map<string, Map<string, number>>();

  private list(name: string): Map<string, number> {
    let l = this.lists.get(name);
    if (!l) this.lists.set(name, (l = new Map<string, number>()));
    return l;
  }

  /** `--rcheck --seconds S [--reap]`. */
  rcheck(name: string, src: string, now: number, seconds: number, reap: boolean): boolean {
    const l = this.lists.get(name);
    const last = l?.get(src);
    if (!l || last === undefined) return false;
    const since = now - seconds * 1000;
    const hit = last >= since;
    if (reap) {
      // recent_entry_reap: only the list's oldest entry, if it is stale.
      const [oldestKey, oldestTime] = l.entries().next().value as [string, number];
      if (oldestTime < since) l.delete(oldestKey);
    }
    return hit;
  }

  /** `--set`: records `src` as seen now. */
  set(name: string, src: string, now: number): void {
    const l = this.list(name);
    l.delete(src);
    if (l.size >= RECENT_LIST_MAX) l.delete(l.keys().next().value as string);
    l.set(src, now);
  }
}

/** Compiled tables plus the state of stateful matches. */
export class RuleWalker {
  private readonly tables = new Map<TableName, Map<string, IndexedChain>>([
    ['nat', new Map()],
    ['filter', new Map()],
  ]);
  /** Chains loaded as a whole with {@link load}, per table (replaced on the next load). */
  private readonly loaded = new Map<TableName, Set<string>>([
    ['nat', new Set()],
    ['filter', new Set()],
  ]);
  readonly recent = new RecentTables();
  /**
   * Asked when a jump names a chain the walker does not have: the owner may
   * {@link setChain} it (and its siblings) and answer true, so chains are
   * compiled when a packet first needs them.
   */
  onMissingChain: ((table: TableName, chain: string) => boolean) | undefined;

  constructor(
    private readonly rng: SeededRng,
    private readonly clock: EngineClock,
    /** false: walk every rule in order (the reference the index must agree with; tests use it). */
    private readonly indexed = true,
  ) {}

  /**
   * Replaces the chains `rules` belong to (built-in chain rules included) and
   * drops the chains the previous load() had that are not here. Chains set
   * with {@link setChain} are left alone. Recent lists survive, as in the kernel.
   */
  load(table: TableName, rules: readonly Rule[]): void {
    const map = this.tables.get(table)!;
    const by = groupByChain(rules);
    const prev = this.loaded.get(table)!;
    for (const c of prev) if (!by.has(c)) map.delete(c);
    for (const [chain, list] of by) map.set(chain, this.indexed ? indexChain(list) : { rules: list });
    this.loaded.set(table, new Set(by.keys()));
    this.removals++;
  }

  /** Sets (or with an empty list, removes) one chain: partial syncs touch only the chains of changed services. */
  setChain(table: TableName, chain: string, rules: readonly Rule[]): void {
    const map = this.tables.get(table)!;
    // A chain that is new cannot be behind a link (only found chains are linked): adding keeps the links, not the misses.
    if (map.has(chain)) this.removals++;
    else if (rules.length > 0) this.additions++;
    if (rules.length === 0) map.delete(chain);
    else map.set(chain, this.indexed ? indexChain(rules as Rule[]) : { rules: rules as Rule[] });
  }

  /** Bumped whenever a chain is replaced or removed: every cached jump link is then stale. */
  private removals = 0;
  /** Bumped whenever a chain is added: every cached miss is then stale. */
  private additions = 0;

  /** The chain a jump of rule `idx` of `c` leads to (cached), loading it through {@link onMissingChain} if needed. */
  private follow(chains: Map<string, IndexedChain>, table: TableName, c: IndexedChain, idx: number, chain: string): IndexedChain | undefined {
    if (c.linkGen !== this.removals || !c.links) {
      c.links = new Array<IndexedChain | undefined>(c.rules.length);
      c.linkGen = this.removals;
    }
    let next = c.links[idx];
    if (next) return next;
    next = chains.get(chain);
    if (!next && this.onMissingChain?.(table, chain)) next = chains.get(chain);
    // Loading may have replaced chains (and bumped removals): link only under the generation it was found in.
    if (next && c.linkGen === this.removals) c.links[idx] = next;
    return next;
  }

  private candidates(c: IndexedChain, pkt: WalkPacket): number[] | undefined {
    if (!c.byDst) return undefined;
    return c.byDst.get(dstKey(pkt.dst, pkt.proto, pkt.dport)) ?? c.byPort!.get(portKey(pkt.proto, pkt.dport)) ?? c.wild;
  }

  private matchOne(m: Match, pkt: WalkPacket, env: WalkEnv, steps: string[] | null, r: Rule): boolean {
    switch (m.kind) {
      case 'comment':
        return true;
      case 'l4':
        return m.proto === pkt.proto && (m.dport === undefined || m.dport === pkt.dport);
      case 'statistic': {
        const draw = Math.floor(this.rng.next() * 0x80000000);
        const hit = draw < m.threshold;
        if (!hit && steps) steps.push(`  ${r.table} ${r.chain}: -m statistic --probability ${m.probability} not taken (draw ${(Math.floor((draw / 0x80000000) * 1e4) / 1e4).toFixed(4)})`);
        return hit;
      }
      case 'recent':
        if (m.op === 'set') {
          this.recent.set(m.name, pkt.srcStr, this.clock.now());
          return true;
        }
        return this.recent.rcheck(m.name, pkt.srcStr, this.clock.now(), m.seconds ?? 0, m.reap === true);
      case 'addrtype': {
        const local = m.side === 'src' ? env.isLocal(pkt.src, pkt.srcStr) : env.isLocal(pkt.dst, pkt.dstStr);
        return local !== m.neg;
      }
      case 'mark':
        return (((pkt.mark & m.mask) >>> 0) === m.value) !== m.neg;
      case 'conntrack': {
        const has = m.states.some((s) => s === 'NEW' || (s === 'DNAT' && pkt.ctDnat));
        return has !== m.neg;
      }
      case 'state':
        return m.states.includes('NEW');
      case 'set':
        return env.inSet ? env.inSet(m.name, m.flags, pkt) : false;
    }
  }

  private matches(r: Rule, pkt: WalkPacket, env: WalkEnv, steps: string[] | null): boolean {
    if (r.proto !== undefined && r.proto !== pkt.proto) return false;
    if (r.dport !== undefined && r.dport !== pkt.dport) return false;
    if (r.src !== undefined && inAddr(r.src, pkt.src) === r.src.neg) return false;
    if (r.dst !== undefined && inAddr(r.dst, pkt.dst) === r.dst.neg) return false;
    const checks = r.checks;
    for (let i = 0; i < checks.length; i++) if (!this.matchOne(checks[i], pkt, env, steps, r)) return false;
    return true;
  }

  /**
   * Walks `table`'s built-in `chain` for `pkt` (mutating its mark), recording
   * every rule that fired in `steps` in iptables-save form (null: no trace).
   */
  walk(table: TableName, chain: string, pkt: WalkPacket, env: WalkEnv, steps: string[] | null): WalkVerdict {
    interface Frame {
      c: IndexedChain;
      cand?: number[];
      pos: number;
    }
    const chains = this.tables.get(table)!;
    const root = chains.get(chain);
    if (!root) return ACCEPTED;
    const stack: Frame[] = [{ c: root, cand: this.candidates(root, pkt), pos: 0 }];
    let depth = 0;
    while (stack.length > 0) {
      const f = stack[stack.length - 1];
      const limit = f.cand ? f.cand.length : f.c.rules.length;
      if (f.pos >= limit) {
        stack.pop(); // end of chain: return (built-in: policy ACCEPT)
        continue;
      }
      const idx = f.cand ? f.cand[f.pos] : f.pos;
      const r = f.c.rules[idx];
      f.pos++;
      if (!this.matches(r, pkt, env, steps)) continue;
      const t = r.target;
      if (steps && t.kind !== 'none') steps.push(`${table} ${saveText(r)}`);
      switch (t.kind) {
        case 'none':
          break;
        case 'jump': {
          const next = this.follow(chains, table, f.c, idx, t.chain);
          if (++depth > 256) throw new Error(`iptables: chain loop at ${t.chain}`);
          if (next) stack.push({ c: next, cand: this.candidates(next, pkt), pos: 0 });
          break;
        }
        case 'RETURN':
          stack.pop();
          break;
        case 'MARK':
          pkt.mark = t.op === 'or' ? (pkt.mark | t.value) >>> 0 : (pkt.mark ^ t.value) >>> 0;
          break;
        case 'ACCEPT':
          return ACCEPTED;
        case 'DROP':
          return { kind: 'drop', rule: r };
        case 'REJECT':
          return { kind: 'reject', rule: r };
        case 'DNAT':
          return { kind: 'dnat', ip: t.ip, port: t.port, rule: r };
        case 'REDIRECT':
          return { kind: 'redirect', port: t.port, rule: r };
        case 'MASQUERADE':
          return { kind: 'masquerade', rule: r };
      }
    }
    return ACCEPTED;
  }
}
