/**
 * iptables rules as data, with the two text forms a student meets:
 *
 * - restore form: the exact argument order kube-proxy writes into its
 *   `iptables-restore` input (what pkg/proxy/iptables/proxier_test.go
 *   compares), e.g. `-A KUBE-SERVICES -m comment --comment "ns/svc cluster IP"
 *   -m tcp -p tcp -d 10.96.0.10 --dport 80 -j KUBE-SVC-...`;
 * - save form: what `iptables-save` prints after the kernel stored the rule:
 *   addresses as CIDRs (`-d 10.96.0.10/32`), `-s/-d/-p` first, then matches in
 *   order, then the target; `--probability` re-read from the kernel's 31-bit
 *   fixed point with `%.11f` (`0.3333333333` is stored as 715827883 and printed
 *   `0.33333333349`); `--or-mark 0x4000` printed as `--set-xmark 0x4000/0x4000`;
 *   `-m recent` with its implicit `--mask 255.255.255.255 --rsource`; REJECT
 *   with its default `--reject-with icmp-port-unreachable`; comments quoted
 *   by libxtables' xtables_save_string rule.
 *
 * A rule is built once with {@link RuleBuilder}, which records both forms at
 * the same time; evaluation (evaluate.ts) reads the structured fields.
 */
import { Cidr } from '../../packet/cidr.ts';

/** The tables kube-proxy writes. */
export type TableName = 'nat' | 'filter';

/** `-s` / `-d`. */
export interface AddrMatch {
  net: number;
  mask: number;
  /** As iptables-save prints it: `a.b.c.d/len`. */
  cidr: string;
  /** As kube-proxy wrote it (`10.96.0.10` or `10.244.0.0/16`). */
  text: string;
  neg: boolean;
}

/** A `-m` match with its options. */
export type Match =
  | { kind: 'comment'; text: string; quoted: boolean }
  | { kind: 'l4'; proto: 'tcp' | 'udp'; dport?: number }
  | { kind: 'statistic'; probability: string; threshold: number }
  | { kind: 'recent'; op: 'rcheck' | 'set'; name: string; seconds?: number; reap?: boolean }
  | { kind: 'addrtype'; side: 'src' | 'dst'; type: 'LOCAL'; neg: boolean }
  | { kind: 'mark'; value: number; mask: number; neg: boolean }
  | { kind: 'conntrack'; states: string[]; neg: boolean }
  | { kind: 'state'; states: string[] }
  | { kind: 'set'; name: string; flags: string };

/** A `-j` target. `none` is a rule without `-j` (it only counts packets). */
export type Target =
  | { kind: 'jump'; chain: string }
  | { kind: 'DNAT'; ip: string; port: number }
  | { kind: 'REDIRECT'; port: number }
  | { kind: 'MARK'; op: 'or' | 'xor'; value: number }
  | { kind: 'MASQUERADE'; randomFully: boolean }
  | { kind: 'RETURN' | 'ACCEPT' | 'DROP' | 'REJECT' | 'none' };

/** One rule. */
export interface Rule {
  table: TableName;
  chain: string;
  src?: AddrMatch;
  dst?: AddrMatch;
  proto?: 'tcp' | 'udp';
  matches: Match[];
  target: Target;
  /** `--dport` of the rule's protocol match, hoisted for evaluation. */
  dport: number | undefined;
  /** The matches evaluation must call (not comments, not the protocol match already covered by proto/dport). */
  checks: Match[];
  /**
   * The order kube-proxy wrote the arguments in, one op letter per builder call
   * (shared strings: a few distinct sequences for all rules); {@link restoreText}
   * replays it over the structured fields.
   */
  seq: string;
  /** Cached save form (built on first use). */
  saveText?: string;
  /** What the rule's writer tagged it with (kube-proxy: the service port a DNAT rule serves), so a verdict names it without a lookup. */
  owner?: unknown;
}

const cidrCache = new Map<string, AddrMatch>();

/** Parses `a.b.c.d` or `a.b.c.d/len` into an address match (CIDRs are shared: rules never mutate them). */
export function addrMatch(text: string, neg = false): AddrMatch {
  if (!text.includes('/')) return parseAddrMatch(text, neg);
  const key = neg ? `!${text}` : text;
  let m = cidrCache.get(key);
  if (!m) {
    if (cidrCache.size > 1000) cidrCache.clear();
    cidrCache.set(key, (m = parseAddrMatch(text, neg)));
  }
  return m;
}

function parseAddrMatch(text: string, neg: boolean): AddrMatch {
  // Every endpoint's `-s IP` and every clusterIP's `-d IP` comes through here: canonical bare addresses skip the Cidr object.
  const bare = canonicalIpv4(text);
  if (bare !== undefined) return { net: bare, mask: 0xffffffff, cidr: `${text}/32`, text, neg };
  const c = Cidr.parse(text, { allowBare: true });
  return { net: c.network, mask: c.mask, cidr: c.format(), text, neg };
}

/** `a.b.c.d` as unsigned, only when written as iptables-save prints it (no leading zeros, octets <= 255); else undefined. */
function canonicalIpv4(text: string): number | undefined {
  let v = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || dots === 3) return undefined;
      v = v * 256 + octet;
      octet = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && octet === 0) return undefined;
      octet = octet * 10 + (c - 48);
      if (++digits > 3 || octet > 255) return undefined;
    } else return undefined;
  }
  if (dots !== 3 || digits === 0) return undefined;
  return v * 256 + octet;
}

/** True if the unsigned address lies in the match's network (ignoring negation). */
export function inAddr(m: AddrMatch, ip: number): boolean {
  return ((ip & m.mask) >>> 0) === m.net;
}

/** The kernel's statistic threshold for a probability text: lround(2^31 * p). */
export function statisticThreshold(probability: string): number {
  return Math.round(0x80000000 * Number(probability));
}

type StatisticMatch = Extract<Match, { kind: 'statistic' }>;
/** One match object per probability text, with its save form: matches are never mutated, and 10,000 services use a handful. */
const statistics = new Map<string, { match: StatisticMatch; save: string }>();

function statisticOf(probability: string): { match: StatisticMatch; save: string } {
  let st = statistics.get(probability);
  if (!st) {
    if (statistics.size > 10_000) statistics.clear();
    const match: StatisticMatch = { kind: 'statistic', probability, threshold: statisticThreshold(probability) };
    statistics.set(probability, (st = { match, save: matchSave(match) }));
  }
  return st;
}

const NO_QUOTE = /^[A-Za-z0-9_-]+$/;

/** libxtables' xtables_save_string: bare when only [A-Za-z0-9_-], else double-quoted with `"`, `\`, `'` escaped. */
export function saveString(value: string): string {
  if (value.length > 0 && NO_QUOTE.test(value)) return value;
  return `"${value.replace(/["\\']/g, (c) => `\\${c}`)}"`;
}

const hex = (n: number): string => `0x${n.toString(16)}`;

const NO_TARGET: Target = { kind: 'none' };
const NO_CHECKS: Match[] = [];
const VERDICTS = { RETURN: { kind: 'RETURN' }, ACCEPT: { kind: 'ACCEPT' }, DROP: { kind: 'DROP' }, REJECT: { kind: 'REJECT' } } as const satisfies Record<string, Target>;
/** Interned op sequences. */
const seqs = new Map<string, string>();

/** Builds a rule, recording kube-proxy's argument order and the structured form together. */
export class RuleBuilder implements RuleWriter<Rule> {
  private readonly r: Rule;
  private seq = '';
  private lastL4?: Extract<Match, { kind: 'l4' }>;

  constructor(table: TableName, chain: string) {
    // Every field present from the start: one hidden class for all rules keeps property access monomorphic.
    this.r = { table, chain, src: undefined, dst: undefined, proto: undefined, matches: [], target: NO_TARGET, dport: undefined, checks: NO_CHECKS, seq: '', saveText: undefined, owner: undefined };
  }

  /** `-m comment --comment TEXT`; `quoted` when kube-proxy itself wrote the quotes (its `"%s cluster IP"` strings). */
  comment(text: string, quoted: boolean): this {
    this.op('c');
    this.r.matches.push({ kind: 'comment', text, quoted });
    return this;
  }

  /** `-p tcp`. */
  p(proto: 'tcp' | 'udp'): this {
    this.op('p');
    this.r.proto = proto;
    return this;
  }

  /** `-m tcp` (the protocol's own match, which carries `--dport`). */
  m(proto: 'tcp' | 'udp'): this {
    this.op('m');
    this.lastL4 = { kind: 'l4', proto };
    this.r.matches.push(this.lastL4);
    return this;
  }

  /** `--dport N` of the last `-m tcp|udp`. */
  dport(port: number): this {
    this.op('P');
    if (!this.lastL4) throw new Error('--dport without -m tcp|udp');
    this.lastL4.dport = port;
    return this;
  }

  /** `[!] -s ADDR` as written (kube-proxy writes bare IPs or CIDRs). */
  s(text: string, neg = false): this {
    this.op('s');
    this.r.src = addrMatch(text, neg);
    return this;
  }

  /** `[!] -d ADDR`. */
  d(text: string, neg = false): this {
    this.op('d');
    this.r.dst = addrMatch(text, neg);
    return this;
  }

  /** `-m statistic --mode random --probability P` (P already formatted `%0.10f`). */
  statistic(probability: string): this {
    this.op('t');
    this.r.matches.push(statisticOf(probability).match);
    return this;
  }

  /** `-m recent --name N --rcheck --seconds T --reap` (kube-proxy's order). */
  recentCheck(name: string, seconds: number): this {
    this.op('r');
    this.r.matches.push({ kind: 'recent', op: 'rcheck', name, seconds, reap: true });
    return this;
  }

  /** `-m recent --name N --set`. */
  recentSet(name: string): this {
    this.op('r');
    this.r.matches.push({ kind: 'recent', op: 'set', name });
    return this;
  }

  /** `-m addrtype [!] --src-type|--dst-type LOCAL`. */
  addrtype(side: 'src' | 'dst', neg = false): this {
    this.op('a');
    this.r.matches.push({ kind: 'addrtype', side, type: 'LOCAL', neg });
    return this;
  }

  /** `-m mark [!] --mark V/M`. */
  mark(value: number, mask: number, neg = false): this {
    this.op('k');
    this.r.matches.push({ kind: 'mark', value, mask, neg });
    return this;
  }

  /** `-m conntrack [!] --ctstate A,B`. */
  conntrack(states: string[], neg = false): this {
    this.op('n');
    this.r.matches.push({ kind: 'conntrack', states, neg });
    return this;
  }

  /** `-m state --state A`. */
  state(states: string[]): this {
    this.op('x');
    this.r.matches.push({ kind: 'state', states });
    return this;
  }

  /** `-m set --match-set NAME FLAGS`. */
  set(name: string, flags: string): this {
    this.op('e');
    this.r.matches.push({ kind: 'set', name, flags });
    return this;
  }

  /** `-j CHAIN`. */
  jump(chain: string): Rule {
    return this.finish({ kind: 'jump', chain });
  }

  /** `-j DNAT --to-destination IP:PORT`. */
  dnat(ip: string, port: number): Rule {
    return this.finish({ kind: 'DNAT', ip, port });
  }

  /** `-j REDIRECT --to-ports N`. */
  redirect(port: number): Rule {
    return this.finish({ kind: 'REDIRECT', port });
  }

  /** `-j MARK --or-mark V` / `--xor-mark V`. */
  markTarget(op: 'or' | 'xor', value: number): Rule {
    return this.finish({ kind: 'MARK', op, value });
  }

  /** `-j MASQUERADE [--random-fully]`. */
  masquerade(randomFully: boolean): Rule {
    return this.finish({ kind: 'MASQUERADE', randomFully });
  }

  /** `-j RETURN|ACCEPT|DROP|REJECT`. */
  verdict(kind: 'RETURN' | 'ACCEPT' | 'DROP' | 'REJECT'): Rule {
    return this.finish(VERDICTS[kind]);
  }

  /** A rule without a target. */
  noTarget(): Rule {
    return this.finish(NO_TARGET);
  }

  private op(c: string): void {
    this.seq += c;
  }

  private finish(target: Target): Rule {
    this.r.target = target;
    // An exact-size copy: arrays grown by push keep ~17 slots, which adds up over 100,000s of rules.
    this.r.matches = this.r.matches.slice();
    const checks = this.r.matches.filter((m) => m.kind !== 'comment' && !(m.kind === 'l4' && m.proto === this.r.proto));
    if (checks.length) this.r.checks = checks;
    if (this.lastL4 && this.lastL4.proto === this.r.proto) this.r.dport = this.lastL4.dport;
    let seq = seqs.get(this.seq);
    if (seq === undefined) seqs.set(this.seq, (seq = this.seq));
    this.r.seq = seq;
    return this.r;
  }
}

/** The builder calls kube-proxy's per-service rendering makes: {@link RuleBuilder} (rule objects) and {@link SaveLineWriter} (save text) both take them. */
export interface RuleWriter<R> {
  comment(text: string, quoted: boolean): this;
  p(proto: 'tcp' | 'udp'): this;
  m(proto: 'tcp' | 'udp'): this;
  dport(port: number): this;
  s(text: string, neg?: boolean): this;
  d(text: string, neg?: boolean): this;
  statistic(probability: string): this;
  recentCheck(name: string, seconds: number): this;
  recentSet(name: string): this;
  addrtype(side: 'src' | 'dst', neg?: boolean): this;
  jump(chain: string): R;
  dnat(ip: string, port: number): R;
  /** A rule without a target (KUBE-FW's last rule: it only counts what falls through). */
  noTarget(): R;
}

/** A rule known only by its `iptables-save` line. */
export interface SavedRule {
  chain: string;
  text: string;
  owner?: unknown;
}

/**
 * Writes a rule straight into its `iptables-save` line, with the same
 * formatting as {@link saveText} of the rule object the same calls would build
 * (-s, -d, -p first, then the matches in call order, then the target), but
 * without the object: a full `iptables-save` of 10,000 services formats
 * 300,000 rules no packet may ever walk.
 */
export class SaveLineWriter implements RuleWriter<SavedRule> {
  private src = '';
  private dst = '';
  private proto = '';
  // The matches' text in call order, kept as: before the last `-m tcp|udp`, that match (which a later
  // --dport still extends), after it. Text only: no match objects for rules nobody evaluates.
  private pre = '';
  private l4 = '';
  private post = '';

  constructor(private readonly chain: string) {}

  private add(text: string): this {
    if (this.l4) this.post += text;
    else this.pre += text;
    return this;
  }

  comment(text: string, quoted: boolean): this {
    return this.add(` ${matchSave({ kind: 'comment', text, quoted })}`);
  }

  p(proto: 'tcp' | 'udp'): this {
    this.proto = ` -p ${proto}`;
    return this;
  }

  m(proto: 'tcp' | 'udp'): this {
    this.pre += this.l4 + this.post;
    this.post = '';
    this.l4 = ` -m ${proto}`;
    return this;
  }

  dport(port: number): this {
    if (!this.l4) throw new Error('--dport without -m tcp|udp');
    this.l4 += ` --dport ${port}`;
    return this;
  }

  s(text: string, neg = false): this {
    this.src = `${neg ? ' ! -s ' : ' -s '}${saveCidr(text, neg)}`;
    return this;
  }

  d(text: string, neg = false): this {
    this.dst = `${neg ? ' ! -d ' : ' -d '}${saveCidr(text, neg)}`;
    return this;
  }

  statistic(probability: string): this {
    return this.add(` ${statisticOf(probability).save}`);
  }

  recentCheck(name: string, seconds: number): this {
    return this.add(` ${matchSave({ kind: 'recent', op: 'rcheck', name, seconds, reap: true })}`);
  }

  recentSet(name: string): this {
    return this.add(` ${matchSave({ kind: 'recent', op: 'set', name })}`);
  }

  addrtype(side: 'src' | 'dst', neg = false): this {
    return this.add(` ${matchSave({ kind: 'addrtype', side, type: 'LOCAL', neg })}`);
  }

  jump(chain: string): SavedRule {
    return this.finish(` -j ${chain}`);
  }

  dnat(ip: string, port: number): SavedRule {
    return this.finish(` -j DNAT --to-destination ${ip}:${port}`);
  }

  noTarget(): SavedRule {
    return this.finish('');
  }

  private finish(target: string): SavedRule {
    return { chain: this.chain, text: `-A ${this.chain}${this.src}${this.dst}${this.proto}${this.pre}${this.l4}${this.post}${target}`, owner: undefined };
  }
}

/** The `-s`/`-d` text iptables-save prints for an address as written, without an {@link AddrMatch} for bare addresses. */
function saveCidr(text: string, neg: boolean): string {
  return canonicalIpv4(text) !== undefined ? `${text}/32` : addrMatch(text, neg).cidr;
}

/** Shorthand for `new RuleBuilder(table, chain)`. */
export function rule(table: TableName, chain: string): RuleBuilder {
  return new RuleBuilder(table, chain);
}

function matchRestore(m: Match): string {
  switch (m.kind) {
    case 'comment':
      return `-m comment --comment ${m.quoted ? `"${m.text}"` : m.text}`;
    case 'l4':
      return `-m ${m.proto}`;
    case 'statistic':
      return `-m statistic --mode random --probability ${m.probability}`;
    case 'recent':
      return m.op === 'rcheck' ? `-m recent --name ${m.name} --rcheck --seconds ${m.seconds} --reap` : `-m recent --name ${m.name} --set`;
    case 'addrtype':
      return `-m addrtype${m.neg ? ' !' : ''} --${m.side}-type ${m.type}`;
    case 'mark':
      return `-m mark${m.neg ? ' !' : ''} --mark ${hex(m.value)}/${hex(m.mask)}`;
    case 'conntrack':
      return `-m conntrack${m.neg ? ' !' : ''} --ctstate ${m.states.join(',')}`;
    case 'state':
      return `-m state --state ${m.states.join(',')}`;
    case 'set':
      return `-m set --match-set ${m.name} ${m.flags}`;
  }
}

function targetRestore(t: Target): string {
  switch (t.kind) {
    case 'MARK':
      return `-j MARK ${t.op === 'or' ? '--or-mark' : '--xor-mark'} ${hex(t.value)}`;
    case 'REJECT':
      return '-j REJECT';
    default:
      return targetSave(t);
  }
}

/** The rule in kube-proxy's restore form (`-A CHAIN args...`), replaying its recorded argument order. */
export function restoreText(r: Rule): string {
  let out = `-A ${r.chain}`;
  let mi = 0;
  let l4: Extract<Match, { kind: 'l4' }> | undefined;
  for (const op of r.seq) {
    switch (op) {
      case 'p':
        out += ` -p ${r.proto}`;
        break;
      case 'P':
        out += ` --dport ${l4?.dport}`;
        break;
      case 's':
        out += r.src!.neg ? ` ! -s ${r.src!.text}` : ` -s ${r.src!.text}`;
        break;
      case 'd':
        out += r.dst!.neg ? ` ! -d ${r.dst!.text}` : ` -d ${r.dst!.text}`;
        break;
      default: {
        const m = r.matches[mi++];
        if (m.kind === 'l4') l4 = m;
        out += ` ${matchRestore(m)}`;
      }
    }
  }
  const t = targetRestore(r.target);
  return t ? `${out} ${t}` : out;
}

function matchSave(m: Match): string {
  switch (m.kind) {
    case 'comment':
      return `-m comment --comment ${saveString(m.text)}`;
    case 'l4':
      return m.dport === undefined ? `-m ${m.proto}` : `-m ${m.proto} --dport ${m.dport}`;
    case 'statistic':
      return `-m statistic --mode random --probability ${(m.threshold / 0x80000000).toFixed(11)}`;
    case 'recent':
      return m.op === 'rcheck'
        ? `-m recent --rcheck --seconds ${m.seconds} ${m.reap ? '--reap ' : ''}--name ${m.name} --mask 255.255.255.255 --rsource`
        : `-m recent --set --name ${m.name} --mask 255.255.255.255 --rsource`;
    case 'addrtype':
      return `-m addrtype${m.neg ? ' !' : ''} --${m.side}-type ${m.type}`;
    case 'mark':
      return `-m mark${m.neg ? ' !' : ''} --mark ${hex(m.value)}/${hex(m.mask)}`;
    case 'conntrack':
      return `-m conntrack${m.neg ? ' !' : ''} --ctstate ${m.states.join(',')}`;
    case 'state':
      return `-m state --state ${m.states.join(',')}`;
    case 'set':
      return `-m set --match-set ${m.name} ${m.flags}`;
  }
}

function targetSave(t: Target): string {
  switch (t.kind) {
    case 'jump':
      return `-j ${t.chain}`;
    case 'DNAT':
      return `-j DNAT --to-destination ${t.ip}:${t.port}`;
    case 'REDIRECT':
      return `-j REDIRECT --to-ports ${t.port}`;
    case 'MARK':
      return `-j MARK --set-xmark ${hex(t.value)}/${hex(t.op === 'or' ? t.value : 0)}`;
    case 'MASQUERADE':
      return t.randomFully ? '-j MASQUERADE --random-fully' : '-j MASQUERADE';
    case 'REJECT':
      return '-j REJECT --reject-with icmp-port-unreachable';
    case 'none':
      return '';
    default:
      return `-j ${t.kind}`;
  }
}

/** The rule as `iptables-save` prints it (cached on the rule). */
export function saveText(r: Rule): string {
  if (r.saveText !== undefined) return r.saveText;
  let out = `-A ${r.chain}`;
  if (r.src) out += r.src.neg ? ` ! -s ${r.src.cidr}` : ` -s ${r.src.cidr}`;
  if (r.dst) out += r.dst.neg ? ` ! -d ${r.dst.cidr}` : ` -d ${r.dst.cidr}`;
  if (r.proto) out += ` -p ${r.proto}`;
  for (const m of r.matches) out += ` ${matchSave(m)}`;
  const t = targetSave(r.target);
  if (t) out += ` ${t}`;
  r.saveText = out;
  return out;
}

/** Built-in chains per table, in the order iptables-save lists them. */
export const BUILTIN_CHAINS: Record<TableName, string[]> = {
  nat: ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'],
  filter: ['INPUT', 'FORWARD', 'OUTPUT'],
};

/**
 * One table's content: kube-proxy's restore payload (chain declarations and
 * rules in write order) plus the jump rules it keeps in built-in chains
 * (EnsureRule, outside the restore payload).
 */
export interface TableData {
  name: TableName;
  /** User chains kube-proxy declares, in write order. */
  chains: string[];
  /** Rules of the restore payload, in write order. */
  rules: Rule[];
  /** Rules in built-in chains (jumps to kube-proxy's chains), in chain order. */
  builtinRules: Rule[];
  /** Chains that exist but kube-proxy never writes (KUBE-PROXY-CANARY, made by its monitor). */
  extraChains: string[];
}

/** Options of {@link formatIptablesSave}. */
export interface SaveFormatOptions {
  /** Adds `# Generated by iptables-save v1.8.9 on <date>` / `# Completed on <date>` lines. */
  stamp?: Date;
}

function ctime(d: Date): string {
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const p = (n: number) => String(n).padStart(2, '0');
  return `${days[d.getUTCDay()]} ${months[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2, ' ')} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} ${d.getUTCFullYear()}`;
}

/**
 * `iptables-save -t TABLE`: `*table`, built-in chains with their policy,
 * user chains sorted by name (libiptc keeps them sorted), then every rule
 * chain by chain in that same order, then `COMMIT`.
 */
export function formatIptablesSave(t: TableData, opts: SaveFormatOptions = {}): string {
  const lines: string[] = [];
  lines.push(`*${t.name}`);
  const builtins = BUILTIN_CHAINS[t.name];
  for (const c of builtins) lines.push(`:${c} ACCEPT [0:0]`);
  // Default sort compares UTF-16 code units: strcmp order for these ASCII names.
  const user = [...new Set([...t.chains, ...t.extraChains])].sort();
  for (const c of user) lines.push(`:${c} - [0:0]`);
  const byChain = new Map<string, Rule[]>();
  for (const r of [...t.builtinRules, ...t.rules]) {
    let list = byChain.get(r.chain);
    if (!list) byChain.set(r.chain, (list = []));
    list.push(r);
  }
  for (const c of [...builtins, ...user]) for (const r of byChain.get(c) ?? []) lines.push(saveText(r));
  lines.push('COMMIT');
  return stampSave(lines.join('\n') + '\n', opts);
}

/** Wraps one table's `iptables-save` body in the `# Generated by` / `# Completed on` lines when asked to. */
export function stampSave(body: string, opts: SaveFormatOptions): string {
  if (!opts.stamp) return body;
  return `# Generated by iptables-save v1.8.9 on ${ctime(opts.stamp)}\n${body}# Completed on ${ctime(opts.stamp)}\n`;
}

/** kube-proxy's iptables-restore input for one table (what its unit tests compare). */
export function formatIptablesRestore(t: TableData): string {
  const lines = [`*${t.name}`, ...t.chains.map((c) => `:${c} - [0:0]`), ...t.rules.map(restoreText), 'COMMIT'];
  return lines.join('\n') + '\n';
}
