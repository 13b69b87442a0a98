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
  /** rules.length, kept here so that entering a chain does not touch the rules array. */
  n: number;
  /**
   * The rules' address, protocol, port and statistic matches and their
   * targets as {@link PROG_STRIDE} int32s each, in rule order: a walk reads
   * one contiguous block per chain instead of four or five objects per rule
   * (rule, checks array, match, target, address), which at 10,000 services is
   * what a first packet pays for (cache misses, not comparisons). The rule
   * objects are read only for a trace step, a verdict or a match kept as an
   * object. Absent in the reference walker (`compiled` false).
   */
  prog?: Int32Array;
  /** (dst as int32) → [portKey, n, n rule indices ascending, portKey, ...]: that (dst, proto, dport) bucket ∪ its (*, proto, dport) bucket ∪ wild. */
  byDst?: Map<number, Int32Array>;
  /** portKey → ascending indices for a destination without a bucket: that bucket ∪ wild. */
  byPort?: Map<number, Int32Array>;
  /** Indices of rules the index cannot key, ascending. */
  wild?: Int32Array;
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

function jumpTarget(r: Rule): string {
  return (r.target as Extract<Target, { kind: 'jump' }>).chain;
}

/** Where a walk is in one chain: the next position in its candidate list (or in its rules), and the end. */
interface Frame {
  c: IndexedChain;
  cand: Int32Array | undefined;
  pos: number;
  end: number;
}

/** int32s per rule in {@link IndexedChain.prog}: flags, dport, src net, src mask, dst net, dst mask, statistic threshold, MARK value or DNAT address. */
const PROG_STRIDE = 8;
// Flags (prog[o]): the protocol in bits 0-1, then which matches the rule has, then the target code in bits 12-15.
const P_TCP = 1;
const P_UDP = 2;
const F_DPORT = 1 << 2;
const F_SRC = 1 << 3;
const F_SRC_NEG = 1 << 4;
const F_DST = 1 << 5;
const F_DST_NEG = 1 << 6;
/** The rule's only check is `-m statistic` (KUBE-SVC's per-endpoint rules): threshold in prog[o + 6]. */
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

function compile(rules: readonly Rule[]): Int32Array {
  const prog = new Int32Array(rules.length * PROG_STRIDE);
  rules.forEach((r, i) => {
    const o = i * PROG_STRIDE;
    let f = r.proto === 'tcp' ? P_TCP : r.proto === 'udp' ? P_UDP : 0;
    if (r.dport !== undefined) {
      f |= F_DPORT;
      prog[o + 1] = r.dport;
    }
    if (r.src) {
      f |= F_SRC | (r.src.neg ? F_SRC_NEG : 0);
      prog[o + 2] = r.src.net | 0;
      prog[o + 3] = r.src.mask | 0;
    }
    if (r.dst) {
      f |= F_DST | (r.dst.neg ? F_DST_NEG : 0);
      prog[o + 4] = r.dst.net | 0;
      prog[o + 5] = r.dst.mask | 0;
    }
    const c = r.checks;
    if (c.length === 1 && c[0].kind === 'statistic') {
      f |= F_STAT;
      prog[o + 6] = c[0].threshold;
    } else if (c.length > 0) f |= F_CHECKS;
    const t = r.target;
    if (t.kind === 'MARK') {
      if (t.op === 'xor') f |= F_XOR;
      prog[o + 7] = t.value | 0;
    } else if (t.kind === 'DNAT') prog[o + 7] = ipToUint(t.ip) | 0;
    prog[o] = f | (TARGET_CODES[t.kind] << T_SHIFT);
  });
  return prog;
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

function indexChain(rules: Rule[]): IndexedChain {
  const prog = compile(rules);
  if (rules.length < INDEX_THRESHOLD) return { rules, n: rules.length, prog };
  // dst (int32) → [portKey, rule index, ...] in rule order (no Map per address: 10,000 of them).
  const dstBuckets = new Map<number, number[]>();
  const portBuckets = new Map<number, number[]>();
  const wild: number[] = [];
  rules.forEach((r, i) => {
    const l4 = l4Of(r);
    if (!l4 || !r.proto) return wild.push(i);
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
  });
  const byDst = new Map<number, Int32Array>();
  const flat: number[] = [];
  for (const [dst, pairs] of dstBuckets) {
    flat.length = 0;
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
    byDst.set(dst, Int32Array.from(flat));
  }
  const byPort = new Map<number, Int32Array>();
  for (const [k, b] of portBuckets) byPort.set(k, Int32Array.from(sortedUnion(b, wild)));
  return { rules, n: rules.length, prog, byDst, byPort, wild: Int32Array.from(wild) };
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
    for (const [chain, list] of by) map.set(chain, this.indexed ? indexChain(list) : { rules: list, n: list.length });
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
    else map.set(chain, this.indexed ? indexChain(rules as Rule[]) : { rules: rules as Rule[], n: rules.length });
  }

  /** Bumped whenever a chain is replaced or removed: every cached jump link is then stale. */
  private removals = 0;
  /** Bumped whenever a chain is added: every cached miss is then stale. */
  private additions = 0;

  /** The chain a jump of rule `idx` of `c` leads to (cached), loading it through {@link onMissingChain} if needed. */
  private follow(chains: Map<string, IndexedChain>, table: TableName, c: IndexedChain, idx: number): IndexedChain | undefined {
    // Any chain replaced or removed: links may point at old rules; any chain added: a miss may be found now.
    if (c.linkGen !== this.removals || !c.links || (c.missGen !== undefined && c.missGen !== this.additions)) {
      c.links = new Array<IndexedChain | null | undefined>(c.n);
      c.linkGen = this.removals;
      c.missGen = undefined;
    }
    const link = c.links[idx];
    if (link) return link;
    if (link === null) return undefined;
    // The rule object is read only here: a linked jump needs nothing but the link.
    const chain = jumpTarget(c.rules[idx]);
    let next = chains.get(chain);
    if (!next && this.onMissingChain?.(table, chain)) next = chains.get(chain);
    // Loading may have replaced chains (and bumped removals): link only under the generation it was found in.
    if (c.linkGen === this.removals && (c.missGen === undefined || c.missGen === this.additions)) {
      c.links[idx] = next ?? null;
      if (!next) c.missGen = this.additions;
    }
    return next;
  }

  /** The bucket of rule indices a packet can match in an indexed chain, or undefined: every rule, in order. */
  private candidates(c: IndexedChain, pkt: WalkPacket, f: Frame): void {
    f.cand = undefined;
    f.pos = 0;
    f.end = c.n;
    if (!c.byDst) return;
    const pk = portKey(pkt.proto, pkt.dport);
    const ports = c.byDst.get(pkt.dst | 0);
    if (ports) {
      for (let i = 0; i < ports.length; i += 2 + ports[i + 1]) {
        if (ports[i] !== pk) continue;
        f.cand = ports;
        f.pos = i + 2;
        f.end = i + 2 + ports[i + 1];
        return;
      }
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

  /** The compiled form of {@link matches} (same order of checks, so the same random draws). */
  private matchesCompiled(c: IndexedChain, prog: Int32Array, idx: number, pkt: WalkPacket, src: number, dst: number, env: WalkEnv, steps: string[] | null): boolean {
    const o = idx * PROG_STRIDE;
    const f = prog[o];
    const proto = f & 3;
    if (proto !== 0 && proto !== (pkt.proto === 'tcp' ? P_TCP : P_UDP)) return false;
    if ((f & F_DPORT) !== 0 && prog[o + 1] !== pkt.dport) return false;
    if ((f & F_SRC) !== 0 && ((src & prog[o + 3]) === prog[o + 2]) === ((f & F_SRC_NEG) !== 0)) return false;
    if ((f & F_DST) !== 0 && ((dst & prog[o + 5]) === prog[o + 4]) === ((f & F_DST_NEG) !== 0)) return false;
    if ((f & F_STAT) !== 0) {
      const draw = Math.floor(this.rng.next() * 0x80000000);
      if (draw < prog[o + 6]) return true;
      if (steps) {
        const r = c.rules[idx];
        const m = r.checks[0] as Extract<Match, { kind: 'statistic' }>;
        steps.push(`  ${r.table} ${r.chain}: -m statistic --probability ${m.probability} not taken (draw ${(Math.floor((draw / 0x80000000) * 1e4) / 1e4).toFixed(4)})`);
      }
      return false;
    }
    if ((f & F_CHECKS) !== 0) {
      const r = c.rules[idx];
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
    const chains = this.tables.get(table)!;
    const root = chains.get(chain);
    if (!root) return ACCEPTED;
    const src = pkt.src | 0;
    const dst = pkt.dst | 0;
    const stack: Frame[] = [{ c: root, cand: undefined, pos: 0, end: 0 }];
    this.candidates(root, pkt, stack[0]);
    let depth = 0;
    while (stack.length > 0) {
      const f = stack[stack.length - 1];
      if (f.pos >= f.end) {
        stack.pop(); // end of chain: return (built-in: policy ACCEPT)
        continue;
      }
      const c = f.c;
      const idx = f.cand ? f.cand[f.pos] : f.pos;
      f.pos++;
      const prog = c.prog;
      let code: number;
      if (prog) {
        if (!this.matchesCompiled(c, prog, idx, pkt, src, dst, env, steps)) continue;
        code = (prog[idx * PROG_STRIDE] >>> T_SHIFT) & 15;
        if (steps && code !== T_NONE) steps.push(`${table} ${saveText(c.rules[idx])}`);
      } else {
        const r = c.rules[idx];
        if (!this.matches(r, pkt, env, steps)) continue;
        code = TARGET_CODES[r.target.kind];
        if (steps && code !== T_NONE) steps.push(`${table} ${saveText(r)}`);
      }
      if (code === T_NONE) continue;
      if (code === T_JUMP) {
        const next = this.follow(chains, table, c, idx);
        if (++depth > 256) throw new Error(`iptables: chain loop at ${jumpTarget(c.rules[idx])}`);
        if (next) {
          const nf: Frame = { c: next, cand: undefined, pos: 0, end: 0 };
          this.candidates(next, pkt, nf);
          stack.push(nf);
        }
        continue;
      }
      if (code === T_RETURN) {
        stack.pop();
        continue;
      }
      if (code === T_MARK) {
        if (prog) {
          const o = idx * PROG_STRIDE;
          pkt.mark = (prog[o] & F_XOR) === 0 ? (pkt.mark | prog[o + 7]) >>> 0 : (pkt.mark ^ prog[o + 7]) >>> 0;
        } else {
          const t = c.rules[idx].target as Extract<Target, { kind: 'MARK' }>;
          pkt.mark = t.op === 'or' ? (pkt.mark | t.value) >>> 0 : (pkt.mark ^ t.value) >>> 0;
        }
        continue;
      }
      if (code === T_ACCEPT) return ACCEPTED;
      const r = c.rules[idx];
      const t = r.target;
      switch (t.kind) {
        case 'DROP':
          return { kind: 'drop', rule: r };
        case 'REJECT':
          return { kind: 'reject', rule: r };
        case 'DNAT':
          return { kind: 'dnat', ip: t.ip, addr: prog ? prog[idx * PROG_STRIDE + 7] >>> 0 : ipToUint(t.ip), port: t.port, rule: r };
        case 'REDIRECT':
          return { kind: 'redirect', port: t.port, rule: r };
        case 'MASQUERADE':
          return { kind: 'masquerade', rule: r };
        default:
          throw new Error(`iptables: unexpected target ${t.kind}`);
      }
    }
    return ACCEPTED;
  }
}
