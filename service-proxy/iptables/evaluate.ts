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
import { runSteps } from '../../common/run-steps.ts';
import type { EngineClock } from '../types.ts';
import { inAddr, saveText, type Match, type Rule, type TableName, type Target } from './rules.ts';

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
  /** `addr`: `ip` as unsigned 32-bit. */
  | { kind: 'dnat'; ip: string; addr: number; port: number; rule: Rule }
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
  /** rules.length. */
  n: number;
  /** Where the chain's compiled form starts in its table's {@link Arena} (-1 in the reference walker). */
  base: number;
  /** The chain's number in its table's arena (`byId`), written in its header. */
  id: number;
  /**
   * Open-addressing table of (dst as int32, offset into `cands`) pairs, -1 offsets empty: one probe into
   * one typed array instead of a Map's table, entry and value object.
   */
  byDst?: Int32Array;
  /** Per destination: [length, then portKey, n, n rule indices ascending, portKey, ...]: that (dst, proto, dport) bucket ∪ its (*, proto, dport) bucket ∪ wild. */
  cands?: Int32Array;
  /** portKey → ascending indices for a destination without a bucket: that bucket ∪ wild. */
  byPort?: Map<number, Int32Array>;
  /** Indices of rules the index cannot key, ascending. */
  wild?: Int32Array;
}

const INDEX_THRESHOLD = 16;

/**
 * One table's chains, compiled into one growing Int32Array: per chain a
 * header (rule count, link generations, chain id) and per rule
 * {@link STRIDE} int32s (flags with --dport, source and destination
 * net/mask, statistic threshold, MARK value or DNAT address, and the link:
 * where its jump's target chain starts). A first packet to one of 10,000
 * services then reads a few contiguous blocks, not the four or five objects
 * per rule (rule, checks array, match, target, address) and the chain and
 * link objects between them: at that size its cost was those cache misses,
 * not comparisons. Rule objects are read only for a trace step, a verdict or
 * a match kept as an object. Replaced chains leave dead space, reclaimed by
 * copying the live ones when it outgrows them.
 */
class Arena {
  buf = new Int32Array(1 << 12);
  /** The rule object of each rule slot (offset / STRIDE): a verdict or a trace step reads it without going through its chain. */
  rules: (Rule | undefined)[] = [];
  top = 0;
  /** int32s in use by live chains. */
  live = 0;
  readonly byId: (IndexedChain | undefined)[] = [];
  private readonly freeIds: number[] = [];

  /** Compiles `c` at the top (growing the buffer) and gives it an id. */
  add(c: IndexedChain): void {
    const size = HDR + c.n * STRIDE;
    if (this.top + size > this.buf.length) {
      let len = this.buf.length * 2;
      while (len < this.top + size) len *= 2;
      const next = new Int32Array(len);
      next.set(this.buf.subarray(0, this.top));
      this.buf = next;
    }
    c.base = this.top;
    c.id = this.freeIds.pop() ?? this.byId.length;
    this.byId[c.id] = c;
    compile(c.rules, this.buf, c.base, c.id * 2 + (c.byDst ? 1 : 0));
    const first = (c.base + HDR) / STRIDE;
    for (let i = 0; i < c.n; i++) this.rules[first + i] = c.rules[i];
    this.top += size;
    this.live += size;
  }

  /** `c` is no longer reachable by name: its block is dead space (never reused before a compaction, which relinks). */
  drop(c: IndexedChain): void {
    if (this.byId[c.id] !== c) return;
    this.byId[c.id] = undefined;
    this.freeIds.push(c.id);
    this.live -= HDR + c.n * STRIDE;
    const first = (c.base + HDR) / STRIDE;
    for (let i = 0; i < c.n; i++) this.rules[first + i] = undefined;
  }

  /** Copies the live chains into a fresh buffer when dead space dominates; true if chains moved (links are stale). */
  compact(): boolean {
    if (this.top < 2 * this.live + (1 << 16)) return false;
    let len = 1 << 12;
    while (len < this.live * 2) len *= 2;
    const next = new Int32Array(len);
    const rules: (Rule | undefined)[] = [];
    let top = 0;
    for (const c of this.byId) {
      if (!c) continue;
      const size = HDR + c.n * STRIDE;
      next.set(this.buf.subarray(c.base, c.base + size), top);
      c.base = top;
      const first = (top + HDR) / STRIDE;
      for (let i = 0; i < c.n; i++) rules[first + i] = c.rules[i];
      top += size;
    }
    this.buf = next;
    this.rules = rules;
    this.top = top;
    return true;
  }
}

// Chain header (one rule's width, so that offset / STRIDE numbers rule slots): rule count, the walker's
// `removals` when its links were last valid, its `additions` when a miss was linked (-1: none), chain id * 2
// + 1 if the chain has an index.
const HDR = 8;
const H_LINKGEN = 1;
const H_MISSGEN = 2;
const H_ID = 3;
/** int32s per rule: flags | dport << 16, src net, src mask, dst net, dst mask, statistic threshold, MARK value or DNAT address, link. */
const STRIDE = 8;
const R_SRC = 1;
const R_DST = 3;
const R_THRESHOLD = 5;
const R_VALUE = 6;
const R_LINK = 7;
/** Link values: not looked up yet / the target chain does not exist (valid while H_MISSGEN is the walker's `additions`). */
const LINK_UNKNOWN = -1;
const LINK_MISSING = -2;
// Flags: the protocol in bits 0-1, then which matches the rule has, then the target code in bits 12-15.
const P_TCP = 1;
const P_UDP = 2;
const F_DPORT = 1 << 2;
const F_SRC = 1 << 3;
const F_SRC_NEG = 1 << 4;
const F_DST = 1 << 5;
const F_DST_NEG = 1 << 6;
/** The rule's only check is `-m statistic` (KUBE-SVC's per-endpoint rules). */
const F_STAT = 1 << 7;
/** Other checks: evaluated from the rule object's `checks`. */
const F_CHECKS = 1 << 8;
/** MARK target with --xor-mark (else --or-mark). */
const F_XOR = 1 << 9;
const T_SHIFT = 12;
const TARGET_CODES = { none: 0, jump: 1, RETURN: 2, MARK: 3, ACCEPT: 4, DROP: 5, REJECT: 6, DNAT: 7, REDIRECT: 8, MASQUERADE: 9 } as const;
const T_NONE = 0;
const T_JUMP = 1;
const T_RETURN = 2;
const T_MARK = 3;
const T_ACCEPT = 4;

function compile(rules: readonly Rule[], buf: Int32Array, base: number, idField: number): void {
  buf[base] = rules.length;
  buf[base + H_LINKGEN] = -1;
  buf[base + H_MISSGEN] = -1;
  buf[base + H_ID] = idField;
  for (let i = 0; i < rules.length; i++) {
    const r = rules[i];
    const o = base + HDR + i * STRIDE;
    let f = r.proto === 'tcp' ? P_TCP : r.proto === 'udp' ? P_UDP : 0;
    if (r.dport !== undefined) f |= F_DPORT | (r.dport << 16);
    if (r.src) {
      f |= F_SRC | (r.src.neg ? F_SRC_NEG : 0);
      buf[o + R_SRC] = r.src.net | 0;
      buf[o + R_SRC + 1] = r.src.mask | 0;
    }
    if (r.dst) {
      f |= F_DST | (r.dst.neg ? F_DST_NEG : 0);
      buf[o + R_DST] = r.dst.net | 0;
      buf[o + R_DST + 1] = r.dst.mask | 0;
    }
    const c = r.checks;
    if (c.length === 1 && c[0].kind === 'statistic') {
      f |= F_STAT;
      // threshold - 1, compared with <=: a threshold of 2^31 (probability 1) does not fit an int32.
      buf[o + R_THRESHOLD] = c[0].threshold - 1;
    } else if (c.length > 0) f |= F_CHECKS;
    const t = r.target;
    if (t.kind === 'MARK') {
      if (t.op === 'xor') f |= F_XOR;
      buf[o + R_VALUE] = t.value | 0;
    } else if (t.kind === 'DNAT') buf[o + R_VALUE] = ipToUint(t.ip) | 0;
    buf[o + R_LINK] = LINK_UNKNOWN;
    buf[o] = f | (TARGET_CODES[t.kind] << T_SHIFT);
  }
}

function l4Of(r: Rule): { proto: string; dport: number } | undefined {
  for (const m of r.matches) if (m.kind === 'l4' && m.dport !== undefined) return { proto: m.proto, dport: m.dport };
  return undefined;
}

/** Protocol and port in 17 bits: a small integer key, never a string built per packet. */
const portKey = (proto: string, dport: number): number => (proto === 'udp' ? 65536 : 0) + dport;

function sortedUnion(...lists: number[][]): number[] {
  const nonEmpty = lists.filter((l) => l.length > 0);
  if (nonEmpty.length === 1) return nonEmpty[0];
  return nonEmpty.flat().sort((a, b) => a - b);
}

/** Fibonacci hashing of a destination into a table of `cap` (a power of two) slots. */
function dstSlot(dst: number, cap: number): number {
  return (Math.imul(dst, 0x9e3779b1) >>> 0) & (cap - 1);
}

/** The chain's lookup structures (its rules are compiled by the arena it is added to). */
function indexChain(rules: Rule[]): IndexedChain {
  return runSteps(indexChainSteps(rules, () => false));
}

/** indexChain() in steps, yielding every 1,024 rules or addresses when `pause()` says so (KUBE-SERVICES has one rule per service port). */
function* indexChainSteps(rules: Rule[], pause: () => boolean): Generator<void, IndexedChain, void> {
  const chain: IndexedChain = { rules, n: rules.length, base: -1, id: -1, byDst: undefined, cands: undefined, byPort: undefined, wild: undefined };
  if (rules.length < INDEX_THRESHOLD) return chain;
  // dst (int32) → [portKey, rule index, ...] in rule order (no Map per address: 10,000 of them).
  const dstBuckets = new Map<number, number[]>();
  const portBuckets = new Map<number, number[]>();
  const wild: number[] = [];
  for (let i = 0; i < rules.length; i++) {
    if ((i & 1023) === 1023 && pause()) yield;
    const r = rules[i];
    const l4 = l4Of(r);
    if (!l4 || !r.proto) {
      wild.push(i);
      continue;
    }
    const pk = portKey(l4.proto, l4.dport);
    if (!r.dst) {
      const b = portBuckets.get(pk);
      if (b) b.push(i);
      else portBuckets.set(pk, [i]);
    } else if (!r.dst.neg && r.dst.mask === 0xffffffff) {
      const b = dstBuckets.get(r.dst.net | 0);
      if (b) b.push(pk, i);
      else dstBuckets.set(r.dst.net | 0, [pk, i]);
    } else wild.push(i);
  }
  let cap = 8;
  while (cap < dstBuckets.size * 2) cap *= 2;
  const byDst = new Int32Array(cap * 2).fill(-1);
  const flat: number[] = [];
  let d = 0;
  for (const [dst, pairs] of dstBuckets) {
    if ((++d & 1023) === 0 && pause()) yield;
    const start = flat.length;
    flat.push(0);
    for (let j = 0; j < pairs.length; j += 2) {
      const pk = pairs[j];
      let seen = false;
      for (let k = 0; k < j && !seen; k += 2) seen = pairs[k] === pk;
      if (seen) continue; // this port's bucket is already written
      const mine: number[] = [];
      for (let k = j; k < pairs.length; k += 2) if (pairs[k] === pk) mine.push(pairs[k + 1]);
      const cand = sortedUnion(mine, portBuckets.get(pk) ?? [], wild);
      flat.push(pk, cand.length);
      for (const i of cand) flat.push(i);
    }
    flat[start] = flat.length - start - 1;
    let slot = dstSlot(dst, cap);
    while (byDst[slot * 2 + 1] !== -1) slot = (slot + 1) & (cap - 1);
    byDst[slot * 2] = dst;
    byDst[slot * 2 + 1] = start;
  }
  const byPort = new Map<number, Int32Array>();
  for (const [k, b] of portBuckets) byPort.set(k, Int32Array.from(sortedUnion(b, wild)));
  chain.byDst = byDst;
  chain.cands = Int32Array.from(flat);
  chain.byPort = byPort;
  chain.wild = Int32Array.from(wild);
  return chain;
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
/** Where a walk is in one chain (its arena offset): the next position in its candidate list (or in its rules), and the end. */
interface Frame {
  base: number;
  cand: Int32Array | undefined;
  pos: number;
  end: number;
}

/** Frame `i` of `frames`, made if the walk has not been this deep before (a frame keeps its last chain's candidates until reused). */
function frameAt(frames: Frame[], i: number): Frame {
  while (frames.length <= i) frames.push({ base: 0, cand: undefined, pos: 0, end: 0 });
  return frames[i];
}

function jumpTarget(r: Rule): string {
  return (r.target as Extract<Target, { kind: 'jump' }>).chain;
}

/** Compiled tables plus the state of stateful matches. */
export class RuleWalker {
  private readonly tables = new Map<TableName, Map<string, IndexedChain>>([
    ['nat', new Map()],
    ['filter', new Map()],
  ]);
  private readonly arenas = new Map<TableName, Arena>([
    ['nat', new Arena()],
    ['filter', new Arena()],
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
  /** Walks in progress: an arena is not compacted under them (they hold offsets into it). */
  private walking = 0;
  /** The outermost walk's frames (see walkCompiled). */
  private readonly frames: Frame[] = [];

  constructor(
    private readonly rng: SeededRng,
    private readonly clock: EngineClock,
    /** false: the reference walk, rule by rule over the rule objects, no index, no compiled form (tests hold the two equal). */
    private readonly compiled = true,
  ) {}

  private put(table: TableName, map: Map<string, IndexedChain>, chain: string, rules: readonly Rule[]): void {
    const arena = this.arenas.get(table)!;
    const old = map.get(chain);
    if (old) arena.drop(old);
    if (rules.length === 0) {
      map.delete(chain);
      return;
    }
    const c = this.compiled ? indexChain(rules as Rule[]) : { rules: rules as Rule[], n: rules.length, base: -1, id: -1 };
    if (this.compiled) arena.add(c);
    map.set(chain, c);
  }

  private maybeCompact(table: TableName): void {
    if (this.walking === 0 && this.arenas.get(table)!.compact()) this.removals++;
  }

  /**
   * Replaces the chains `rules` belong to (built-in chain rules included) and
   * drops the chains the previous load() had that are not here. Chains set
   * with {@link setChain} are left alone. Recent lists survive, as in the kernel.
   */
  load(table: TableName, rules: readonly Rule[]): void {
    runSteps(this.stageLoad(table, rules, () => false))();
  }

  /**
   * load() in two parts: the steps (yielding between chains whenever
   * `pause()` says so) index and compile the new chains aside, where the
   * arena holds them but no name leads to them, so walks meanwhile see the
   * old chains; the function they return puts them in place of the old ones
   * at once, as iptables-restore commits a table. Chains set with
   * {@link setChain} meanwhile are kept; commit before staging the table again.
   */
  *stageLoad(table: TableName, rules: readonly Rule[], pause: () => boolean): Generator<void, () => void, void> {
    const by = groupByChain(rules);
    const arena = this.arenas.get(table)!;
    const staged: [string, IndexedChain][] = [];
    for (const [chain, list] of by) {
      if (pause()) yield;
      const c = this.compiled ? yield* indexChainSteps(list, pause) : { rules: list, n: list.length, base: -1, id: -1 };
      if (this.compiled) arena.add(c);
      staged.push([chain, c]);
    }
    return () => {
      const map = this.tables.get(table)!;
      for (const c of this.loaded.get(table)!) if (!by.has(c)) this.put(table, map, c, []);
      for (const [chain, c] of staged) {
        const old = map.get(chain);
        if (old && this.compiled) arena.drop(old);
        map.set(chain, c);
      }
      this.loaded.set(table, new Set(by.keys()));
      this.removals++;
      this.maybeCompact(table);
    };
  }

  /** Sets (or with an empty list, removes) one chain: partial syncs touch only the chains of changed services. */
  setChain(table: TableName, chain: string, rules: readonly Rule[]): void {
    const map = this.tables.get(table)!;
    // A chain that is new cannot be behind a link (only found chains are linked): adding keeps the links, not the misses.
    if (map.has(chain)) this.removals++;
    else if (rules.length > 0) this.additions++;
    this.put(table, map, chain, rules);
    this.maybeCompact(table);
  }

  /** Bumped whenever a chain is replaced or removed (or moved by a compaction): every cached jump link is then stale. */
  private removals = 0;
  /** Bumped whenever a chain is added: every cached miss is then stale. */
  private additions = 0;

  /** The chain named `chain` in `table`, loading it through {@link onMissingChain} if needed. */
  private lookup(chains: Map<string, IndexedChain>, table: TableName, chain: string): IndexedChain | undefined {
    const next = chains.get(chain);
    if (next || !this.onMissingChain?.(table, chain)) return next;
    return chains.get(chain);
  }

  /**
   * The chain the jump of rule `idx` of `c` leads to: through the link in the
   * arena, else looked up by name (the only read of the rule object) and
   * linked, unless the lookup changed the tables' generations.
   */
  private follow(chains: Map<string, IndexedChain>, table: TableName, arena: Arena, base: number, idx: number): number {
    let buf = arena.buf;
    const slot = base + HDR + idx * STRIDE + R_LINK;
    // A chain loaded during this walk may have replaced or added chains since this one was entered.
    const linksValid = buf[base + H_LINKGEN] === this.removals;
    const link = buf[slot];
    if (linksValid && link >= 0) return link;
    if (linksValid && link === LINK_MISSING && buf[base + H_MISSGEN] === this.additions) return -1;
    const removals = this.removals;
    const additions = this.additions;
    const next = this.lookup(chains, table, jumpTarget(arena.rules[(base + HDR) / STRIDE + idx]!));
    if (!linksValid || this.removals !== removals) return next ? next.base : -1;
    // Loading may have grown the buffer; a miss is remembered only under the additions its chain's misses share.
    buf = arena.buf;
    if (next) buf[slot] = next.base;
    else if (this.additions === additions) {
      const missGen = buf[base + H_MISSGEN];
      if (missGen === -1 || missGen === additions) {
        buf[slot] = LINK_MISSING;
        buf[base + H_MISSGEN] = additions;
      }
    }
    return next ? next.base : -1;
  }

  /** Enters the chain at `base`: its links are cleared if any chain was replaced (or, for its misses, added) since they were made. */
  private enter(arena: Arena, base: number, pkt: WalkPacket, f: Frame): void {
    const buf = arena.buf;
    const miss = buf[base + H_MISSGEN];
    if (buf[base + H_LINKGEN] !== this.removals || (miss !== -1 && miss !== this.additions)) {
      for (let i = 0, o = base + HDR + R_LINK, n = buf[base]; i < n; i++, o += STRIDE) buf[o] = LINK_UNKNOWN;
      buf[base + H_LINKGEN] = this.removals;
      buf[base + H_MISSGEN] = -1;
    }
    f.base = base;
    f.cand = undefined;
    f.pos = 0;
    f.end = buf[base];
    const id = buf[base + H_ID];
    if ((id & 1) !== 0) this.candidates(arena.byId[id >> 1]!, pkt, f);
  }

  /** The bucket of rule indices a packet can match in an indexed chain. */
  private candidates(c: IndexedChain, pkt: WalkPacket, f: Frame): void {
    const table = c.byDst;
    if (!table) return;
    const pk = portKey(pkt.proto, pkt.dport);
    const dst = pkt.dst | 0;
    const cap = table.length >> 1;
    for (let slot = dstSlot(dst, cap); table[slot * 2 + 1] !== -1; slot = (slot + 1) & (cap - 1)) {
      if (table[slot * 2] !== dst) continue;
      const cands = c.cands!;
      const start = table[slot * 2 + 1];
      const end = start + 1 + cands[start];
      for (let i = start + 1; i < end; i += 2 + cands[i + 1]) {
        if (cands[i] !== pk) continue;
        f.cand = cands;
        f.pos = i + 2;
        f.end = i + 2 + cands[i + 1];
        return;
      }
      break;
    }
    const cand = c.byPort!.get(pk) ?? c.wild!;
    f.cand = cand;
    f.end = cand.length;
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

  /** The compiled form of {@link matches} (the same checks in the same order, so the same random draws). */
  private matchesCompiled(arena: Arena, buf: Int32Array, o: number, pkt: WalkPacket, src: number, dst: number, env: WalkEnv, steps: string[] | null): boolean {
    const f = buf[o];
    const proto = f & 3;
    if (proto !== 0 && proto !== (pkt.proto === 'tcp' ? P_TCP : P_UDP)) return false;
    if ((f & F_DPORT) !== 0 && f >>> 16 !== pkt.dport) return false;
    if ((f & F_SRC) !== 0 && ((src & buf[o + R_SRC + 1]) === buf[o + R_SRC]) === ((f & F_SRC_NEG) !== 0)) return false;
    if ((f & F_DST) !== 0 && ((dst & buf[o + R_DST + 1]) === buf[o + R_DST]) === ((f & F_DST_NEG) !== 0)) return false;
    if ((f & F_STAT) !== 0) {
      const draw = Math.floor(this.rng.next() * 0x80000000);
      if (draw <= buf[o + R_THRESHOLD]) return true;
      if (steps) {
        const r = arena.rules[o / STRIDE]!;
        const m = r.checks[0] as Extract<Match, { kind: 'statistic' }>;
        steps.push(`  ${r.table} ${r.chain}: -m statistic --probability ${m.probability} not taken (draw ${(Math.floor((draw / 0x80000000) * 1e4) / 1e4).toFixed(4)})`);
      }
      return false;
    }
    if ((f & F_CHECKS) !== 0) {
      const r = arena.rules[o / STRIDE]!;
      const checks = r.checks;
      for (let i = 0; i < checks.length; i++) if (!this.matchOne(checks[i], pkt, env, steps, r)) return false;
    }
    return true;
  }

  /**
   * Walks `table`'s built-in `chain` for `pkt` (mutating its mark), recording
   * every rule that fired in `steps` in iptables-save form (null: no trace).
   */
  walk(table: TableName, chain: string, pkt: WalkPacket, env: WalkEnv, steps: string[] | null): WalkVerdict {
    if (!this.compiled) return this.walkReference(table, chain, pkt, env, steps);
    const chains = this.tables.get(table)!;
    const root = chains.get(chain);
    if (!root) return ACCEPTED;
    this.walking++;
    try {
      return this.walkCompiled(chains, table, root, pkt, env, steps);
    } finally {
      this.walking--;
    }
  }

  private walkCompiled(chains: Map<string, IndexedChain>, table: TableName, root: IndexedChain, pkt: WalkPacket, env: WalkEnv, steps: string[] | null): WalkVerdict {
    const arena = this.arenas.get(table)!;
    const src = pkt.src | 0;
    const dst = pkt.dst | 0;
    // The frames of the outermost walk are the walker's own, reused from packet to packet: a first packet's walks
    // enter a dozen chains, and a frame object apiece was most of what deciding it allocated.
    const frames = this.walking === 1 ? this.frames : [];
    this.enter(arena, root.base, pkt, frameAt(frames, 0));
    let top = 0;
    let depth = 0;
    while (top >= 0) {
      const f = frames[top];
      if (f.pos >= f.end) {
        top--; // end of chain: return (built-in: policy ACCEPT)
        continue;
      }
      const idx = f.cand ? f.cand[f.pos] : f.pos;
      f.pos++;
      // The buffer may have been replaced by a chain loaded during this walk: read it afresh.
      const buf = arena.buf;
      const o = f.base + HDR + idx * STRIDE;
      if (!this.matchesCompiled(arena, buf, o, pkt, src, dst, env, steps)) continue;
      const code = (buf[o] >>> T_SHIFT) & 15;
      if (code === T_NONE) continue;
      if (steps) steps.push(`${table} ${saveText(arena.rules[o / STRIDE]!)}`);
      if (code === T_JUMP) {
        const next = this.follow(chains, table, arena, f.base, idx);
        if (++depth > 256) throw new Error(`iptables: chain loop at ${jumpTarget(arena.rules[o / STRIDE]!)}`);
        if (next >= 0) this.enter(arena, next, pkt, frameAt(frames, ++top));
        continue;
      }
      if (code === T_RETURN) {
        top--;
        continue;
      }
      if (code === T_MARK) {
        pkt.mark = (buf[o] & F_XOR) === 0 ? (pkt.mark | buf[o + R_VALUE]) >>> 0 : (pkt.mark ^ buf[o + R_VALUE]) >>> 0;
        continue;
      }
      if (code === T_ACCEPT) return ACCEPTED;
      return terminal(arena.rules[o / STRIDE]!, buf[o + R_VALUE] >>> 0);
    }
    return ACCEPTED;
  }

  /** Rule by rule over the rule objects, every jump looked up by name: what the compiled walk must agree with. */
  private walkReference(table: TableName, chain: string, pkt: WalkPacket, env: WalkEnv, steps: string[] | null): WalkVerdict {
    const chains = this.tables.get(table)!;
    const root = chains.get(chain);
    if (!root) return ACCEPTED;
    const stack: { rules: Rule[]; pos: number }[] = [{ rules: root.rules, pos: 0 }];
    let depth = 0;
    while (stack.length > 0) {
      const f = stack[stack.length - 1];
      if (f.pos >= f.rules.length) {
        stack.pop();
        continue;
      }
      const r = f.rules[f.pos++];
      if (!this.matches(r, pkt, env, steps)) continue;
      const t = r.target;
      if (t.kind === 'none') continue;
      if (steps) steps.push(`${table} ${saveText(r)}`);
      switch (t.kind) {
        case 'jump': {
          const next = this.lookup(chains, table, t.chain);
          if (++depth > 256) throw new Error(`iptables: chain loop at ${t.chain}`);
          if (next) stack.push({ rules: next.rules, pos: 0 });
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
        default:
          return terminal(r, t.kind === 'DNAT' ? ipToUint(t.ip) : 0);
      }
    }
    return ACCEPTED;
  }
}

/** The verdict of a rule whose target ends the walk (DROP, REJECT, DNAT, REDIRECT, MASQUERADE); `addr`: a DNAT's address. */
function terminal(r: Rule, addr: number): WalkVerdict {
  const t = r.target;
  switch (t.kind) {
    case 'DROP':
      return { kind: 'drop', rule: r };
    case 'REJECT':
      return { kind: 'reject', rule: r };
    case 'DNAT':
      return { kind: 'dnat', ip: t.ip, addr, port: t.port, rule: r };
    case 'REDIRECT':
      return { kind: 'redirect', port: t.port, rule: r };
    case 'MASQUERADE':
      return { kind: 'masquerade', rule: r };
    default:
      throw new Error(`iptables: ${t.kind} does not end a walk`);
  }
}
