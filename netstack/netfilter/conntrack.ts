/**
 * Connection tracking and NAT, as netfilter's nf_conntrack/nf_nat do on a
 * Kubernetes node: the first packet of a connection gets a decision (from
 * kube-proxy's rules), an entry records the original and the reply tuple, and
 * every later packet of either direction is translated the same way: DNAT on
 * the way to the backend, the inverse on replies, masquerade (SNAT) where
 * kube-proxy marked the connection.
 *
 * Tuples are keyed by protocol, addresses and ports (the ICMP echo id stands
 * in for ports). Timeouts follow the kernel's defaults by state, shortened
 * where a lab would otherwise wait days (`tcpEstablishedMs`). All time comes
 * from the injected clock.
 */
import type { Clock } from '../../common/clock.ts';
import type { Ipv4Packet } from '../../packet/ipv4-packet.ts';
import type { FlowGeneration } from '../flow/generation.ts';

export type CtProto = 'tcp' | 'udp' | 'icmp';

export interface Tuple {
  proto: CtProto;
  src: string;
  sport: number;
  dst: string;
  dport: number;
}

export type TcpCtState = 'SYN_SENT' | 'SYN_RECV' | 'ESTABLISHED' | 'FIN_WAIT' | 'CLOSE_WAIT' | 'LAST_ACK' | 'TIME_WAIT' | 'CLOSE';

export interface CtEntry {
  orig: Tuple;
  reply: Tuple;
  /** What the original direction's packets are rewritten to (absent = unchanged). */
  dnat?: { ip: string; port: number };
  snat?: { ip: string; port: number };
  tcpState?: TcpCtState;
  /** A reply has been seen. */
  replied: boolean;
  /** Seen both ways and past the handshake ([ASSURED]). */
  assured: boolean;
  expiresAt: number;
  /** Free-form: which service/rule created it, for `conntrack -L` comments and traces. */
  note?: string;
  /** Called once when the entry goes away (IPVS connection counts). */
  onClose?: () => void;
}

export interface ConntrackOptions {
  udpUnrepliedMs?: number;
  udpStreamMs?: number;
  tcpEstablishedMs?: number;
  tcpTransientMs?: number;
  icmpMs?: number;
  /** Most connections (nf_conntrack_max; the kernel's default on a machine with a few GB). */
  maxEntries?: number;
}

/** The 5-tuple of an IPv4 packet (a view over bytes a parser accepted), or null for what conntrack ignores. */
export function tupleOf(ip: Ipv4Packet): Tuple | null {
  if (ip.isLaterFragment) return null; // no ports
  const p = ip.protocol;
  if (p === 6 || p === 17) {
    const sport = ip.srcPort;
    if (sport < 0) return null;
    return { proto: p === 6 ? 'tcp' : 'udp', src: ip.src, dst: ip.dst, sport, dport: ip.dstPort };
  }
  const id = ip.icmpEchoId;
  if (id >= 0) return { proto: 'icmp', src: ip.src, dst: ip.dst, sport: id, dport: id };
  return null;
}

const key = (t: Tuple) => `${t.proto}|${t.src}|${t.sport}|${t.dst}|${t.dport}`;

export class Conntrack {
  private readonly byTuple = new Map<string, { e: CtEntry; dir: 'orig' | 'reply' }>();
  private readonly o: Required<ConntrackOptions>;

  constructor(
    private readonly clock: Clock,
    opts: ConntrackOptions = {},
    /** Moved by each new connection: an untracked flow cached before may be its reply direction now. */
    private readonly generation?: FlowGeneration,
  ) {
    this.o = {
      udpUnrepliedMs: 30_000,
      udpStreamMs: 120_000,
      tcpEstablishedMs: 3_600_000,
      tcpTransientMs: 120_000,
      icmpMs: 30_000,
      maxEntries: 65_536,
      ...opts,
    };
  }

  /** Number of tuples tracked (two per connection). */
  get size(): number {
    return this.byTuple.size;
  }

  /** The entry a packet belongs to, and in which direction. */
  lookup(t: Tuple): { e: CtEntry; dir: 'orig' | 'reply' } | null {
    const hit = this.byTuple.get(key(t));
    if (!hit) return null;
    if (hit.e.expiresAt <= this.clock.now()) {
      this.remove(hit.e);
      return null;
    }
    return hit;
  }

  /**
   * Records a new connection. The reply tuple is what the far end will send
   * back after the translation: from the DNAT target (or the original
   * destination) to the SNAT source (or the original source).
   */
  create(orig: Tuple, nat: { dnat?: { ip: string; port: number }; snat?: { ip: string; port: number }; note?: string; onClose?: () => void }): CtEntry | null {
    if (this.byTuple.size >= 2 * this.o.maxEntries && !this.earlyDrop()) return null;
    const d = nat.dnat ?? { ip: orig.dst, port: orig.dport };
    const s = nat.snat ?? { ip: orig.src, port: orig.sport };
    const reply: Tuple = { proto: orig.proto, src: d.ip, sport: orig.proto === 'icmp' ? s.port : d.port, dst: s.ip, dport: orig.proto === 'icmp' ? s.port : s.port };
    const e: CtEntry = {
      orig,
      reply,
      dnat: nat.dnat,
      snat: nat.snat,
      replied: false,
      assured: false,
      expiresAt: 0,
      note: nat.note,
      onClose: nat.onClose,
      tcpState: orig.proto === 'tcp' ? 'SYN_SENT' : undefined,
    };
    e.expiresAt = this.clock.now() + this.timeoutOf(e);
    this.byTuple.set(key(orig), { e, dir: 'orig' });
    this.byTuple.set(key(reply), { e, dir: 'reply' });
    this.generation?.bump('conntrack');
    return e;
  }

  /**
   * A full table makes room as the kernel's early_drop does: the oldest
   * expired or not yet assured connection among the first few goes; assured
   * ones are never pushed out, so a flood of new connections cannot break
   * established ones (it is dropped instead: "table full, dropping packet").
   */
  private earlyDrop(): boolean {
    const now = this.clock.now();
    let scanned = 0;
    for (const { e } of this.byTuple.values()) {
      if (e.expiresAt <= now || !e.assured) {
        this.remove(e);
        return true;
      }
      if (++scanned >= 128) break;
    }
    return false;
  }

  /** Updates state and timers for a packet seen in `dir` with TCP flags (if TCP). */
  touch(e: CtEntry, dir: 'orig' | 'reply', tcpFlags?: number): void {
    if (dir === 'reply') e.replied = true;
    if (e.orig.proto === 'tcp' && tcpFlags !== undefined) e.tcpState = nextTcpState(e.tcpState ?? 'SYN_SENT', dir, tcpFlags);
    if (e.replied && (e.orig.proto !== 'tcp' || e.tcpState === 'ESTABLISHED')) e.assured = true;
    e.expiresAt = this.clock.now() + this.timeoutOf(e);
  }

  private timeoutOf(e: CtEntry): number {
    if (e.orig.proto === 'icmp') return this.o.icmpMs;
    if (e.orig.proto === 'udp') return e.replied ? this.o.udpStreamMs : this.o.udpUnrepliedMs;
    return e.tcpState === 'ESTABLISHED' ? this.o.tcpEstablishedMs : e.tcpState === 'CLOSE' ? 10_000 : this.o.tcpTransientMs;
  }

  /**
   * A cached flow's packet (netstack/flow/): what lookup and touch do for it,
   * on the entry it was recorded with. False once that entry has expired or
   * been removed: the packet goes to the slow path, which decides afresh.
   */
  refresh(e: CtEntry, dir: 'orig' | 'reply', tcpFlags?: number): boolean {
    if (e.expiresAt <= this.clock.now()) return false;
    this.touch(e, dir, tcpFlags);
    return true;
  }

  remove(e: CtEntry): void {
    if (this.byTuple.get(key(e.orig))?.e === e) this.byTuple.delete(key(e.orig));
    if (this.byTuple.get(key(e.reply))?.e === e) this.byTuple.delete(key(e.reply));
    // Gone is expired to whoever still holds it (a cached flow).
    e.expiresAt = 0;
    e.onClose?.();
    e.onClose = undefined;
  }

  /** `conntrack -D` for entries matching a predicate (kube-proxy flushes UDP entries of removed endpoints). */
  deleteWhere(pred: (e: CtEntry) => boolean): number {
    let n = 0;
    for (const e of this.entries()) if (pred(e)) {
      this.remove(e);
      n++;
    }
    return n;
  }

  /** Live entries (expired ones are reaped on the way). */
  entries(): CtEntry[] {
    const now = this.clock.now();
    const out = new Set<CtEntry>();
    for (const { e } of this.byTuple.values()) {
      if (e.expiresAt <= now) this.remove(e);
      else out.add(e);
    }
    return [...out];
  }

  /** `conntrack -L` as conntrack-tools prints it. */
  format(): string {
    const now = this.clock.now();
    const lines = this.entries().map((e) => {
      const num = e.orig.proto === 'tcp' ? 6 : e.orig.proto === 'udp' ? 17 : 1;
      const secs = Math.max(0, Math.ceil((e.expiresAt - now) / 1000));
      const t = (x: Tuple, isReply: boolean) =>
        x.proto === 'icmp'
          ? `src=${x.src} dst=${x.dst} type=${isReply ? 0 : 8} code=0 id=${x.sport}`
          : `src=${x.src} dst=${x.dst} sport=${x.sport} dport=${x.dport}`;
      const state = e.tcpState ? `${e.tcpState} ` : '';
      const unreplied = e.replied ? '' : ' [UNREPLIED]';
      const assured = e.assured ? ' [ASSURED]' : '';
      return `${e.orig.proto.padEnd(8)} ${num} ${secs} ${state}${t(e.orig, false)}${unreplied} ${t(e.reply, true)}${assured} mark=0 use=1`;
    });
    return lines.map((l) => l + '\n').join('') + `conntrack v1.4.7 (conntrack-tools): ${lines.length} flow entries have been shown.\n`;
  }
}

/** A simplified version of the kernel's TCP conntrack state table (tcp_conntracks). */
function nextTcpState(s: TcpCtState, dir: 'orig' | 'reply', flags: number): TcpCtState {
  const FIN = 1,
    SYN = 2,
    RST = 4,
    ACK = 16;
  if (flags & RST) return 'CLOSE';
  if (flags & SYN) return dir === 'reply' && flags & ACK ? 'SYN_RECV' : s === 'ESTABLISHED' ? s : 'SYN_SENT';
  if (flags & FIN) {
    if (s === 'ESTABLISHED' || s === 'SYN_RECV') return dir === 'orig' ? 'FIN_WAIT' : 'CLOSE_WAIT';
    if (s === 'FIN_WAIT' || s === 'CLOSE_WAIT') return 'LAST_ACK';
    return s;
  }
  if (flags & ACK) {
    if (s === 'SYN_RECV' && dir === 'orig') return 'ESTABLISHED';
    if (s === 'LAST_ACK') return 'TIME_WAIT';
  }
  return s;
}

/**
 * Rewrites a packet's addresses/ports in place (a copy is the caller's
 * business), fixing the IPv4 header checksum and the TCP/UDP checksum
 * incrementally (RFC 1624); ICMP echo ids are rewritten for SNAT'd pings.
 */
export function rewrite(ip: Ipv4Packet, to: { src?: string; sport?: number; dst?: string; dport?: number }): void {
  if (to.src) ip.setSrc(to.src);
  if (to.dst) ip.setDst(to.dst);
  if (ip.protocol === 1) {
    const id = to.sport ?? to.dport;
    if (id !== undefined) ip.setIcmpEchoId(id);
  } else {
    if (to.sport !== undefined) ip.setSrcPort(to.sport);
    if (to.dport !== undefined) ip.setDstPort(to.dport);
  }
  // Recomputed rather than trusted to the increments: a header that arrived with a bad checksum leaves fixed.
  ip.fillChecksum();
}
