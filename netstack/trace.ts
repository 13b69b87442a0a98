/**
 * Hop-by-hop packet tracing, as pwru or `iptables -j TRACE` do on a real
 * node, but for the emulated data path.
 *
 * Design: the data path of one node is synchronous from the moment a frame
 * enters the process (a pod sends, or a datagram arrives on :8472) until it
 * leaves it (a pod receives, or a datagram is sent). So a trace needs no mark
 * in the packet: when a frame that matches an active trace filter enters, the
 * tracer sets `current` for the duration of that call, and every trace point
 * on the way appends a hop while `current` is set. Where the path is deferred
 * (ARP resolution, impairment delay, the work a namespace's dispatcher queues
 * until the current packet is processed), the context is captured and restored.
 * With no trace running, each trace point costs one null check.
 *
 * The packet itself is real and unmodified: remote nodes recognise it by the
 * same filter (addresses, protocol, ICMP id or UDP ports), which the CLI
 * installs on every node before the probe is sent.
 */

import { isWireError } from '../packet/errors.ts';
import { Ipv4Packet } from '../packet/ipv4-packet.ts';

/** What a trace follows: both directions of one flow, and ICMP errors about it. */
export interface TraceFilter {
  id: string;
  /** The probing pod's address and the destination. */
  a: string;
  b: string;
  protocol: number;
  /** ICMP echo identifier, or the UDP/TCP source port of the probe. */
  key: number;
  /** UDP/TCP destination port of the probe. */
  port?: number;
}

/** One hop of a trace. */
export interface TraceHop {
  trace: string;
  /** Microseconds since the epoch, comparable across the lab's processes on one host. */
  tsUs: number;
  seq: number;
  node: string;
  /** The namespace: `node` or `pod NAME`. */
  ns: string;
  /** Where: a device name, or a stage (`routing`, `vxlan-encap`, ...). */
  point: string;
  dir?: 'rx' | 'tx';
  /** One line a person reads. */
  summary: string;
  detail?: Record<string, unknown>;
  drop?: string;
  /** Which packet: the probe, the reply, or an ICMP error about the probe. */
  leg: TraceLeg;
}

export type TraceLeg = 'request' | 'reply' | 'error';

export interface TraceContext {
  filter: TraceFilter;
  leg: TraceLeg;
}

const ICMP = 1;
const UDP = 17;
const TCP = 6;

/** Wall-clock microseconds with sub-millisecond resolution, consistent across processes. */
function nowUs(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

export class Tracer {
  /** Set while a traced packet is being processed. */
  current: TraceContext | null = null;
  readonly filters = new Map<string, TraceFilter>();
  private readonly hops = new Map<string, TraceHop[]>();
  private seq = 0;
  /** The node this process is (set by the agent). */
  node = '';

  /** Starts following a flow; hops are kept until `collect`/`stop`. */
  start(f: TraceFilter): void {
    this.filters.set(f.id, f);
    this.hops.set(f.id, []);
  }

  stop(id: string): void {
    this.filters.delete(id);
    this.hops.delete(id);
  }

  collect(id: string): TraceHop[] {
    return this.hops.get(id) ?? [];
  }

  /** Records a hop if a traced packet is being processed. */
  hop(ns: string, point: string, summary: string, extra: { dir?: 'rx' | 'tx'; detail?: Record<string, unknown>; drop?: string } = {}): void {
    const c = this.current;
    if (!c) return;
    const list = this.hops.get(c.filter.id);
    if (!list) return;
    list.push({ trace: c.filter.id, tsUs: nowUs(), seq: this.seq++, node: this.node, ns, point, summary, leg: c.leg, ...extra });
  }

  /** Runs `fn` with `ctx` as the current trace (restoring the previous one). */
  run<T>(ctx: TraceContext | null, fn: () => T): T {
    const prev = this.current;
    this.current = ctx;
    try {
      return fn();
    } finally {
      this.current = prev;
    }
  }

  /** Binds the current context to a deferred callback (ARP queue, impairment delay). */
  bind<A extends unknown[]>(fn: (...args: A) => void): (...args: A) => void {
    const ctx = this.current;
    if (!ctx) return fn;
    return (...args: A) => this.run(ctx, () => fn(...args));
  }

  /** The trace an Ethernet frame belongs to, if any (only called while filters exist). */
  matchFrame(frame: Buffer): TraceContext | null {
    if (frame.length < 34 || frame.readUInt16BE(12) !== 0x0800) return null;
    return this.matchIpv4(frame.subarray(14));
  }

  /** The trace an IPv4 packet belongs to: the flow either way, or an ICMP error quoting it. */
  matchIpv4(ip: Buffer): TraceContext | null {
    if (!this.filters.size) return null;
    const pkt = Ipv4Packet.quoted(ip);
    if (isWireError(pkt)) return null;
    const proto = pkt.protocol;
    const src = pkt.src;
    const dst = pkt.dst;
    const l4 = ip.subarray(pkt.headerLen);
    for (const f of this.filters.values()) {
      if (proto === ICMP && l4.length >= 8 && (l4[0] === 3 || l4[0] === 11)) {
        // An ICMP error about the probe (time exceeded, unreachable...) quotes its header.
        const q = l4.length >= 36 ? Ipv4Packet.quoted(l4.subarray(8)) : null;
        if (q && !isWireError(q) && this.flowMatches(f, q.protocol, q.src, q.dst, q.buffer.subarray(q.headerLen), true)) return { filter: f, leg: 'error' };
      }
      if (this.flowMatches(f, proto, src, dst, l4, false)) return { filter: f, leg: src === f.a ? 'request' : 'reply' };
    }
    return null;
  }

  private flowMatches(f: TraceFilter, proto: number, src: string, dst: string, l4: Buffer, quoted: boolean): boolean {
    if (proto !== f.protocol) return false;
    if (proto === ICMP) {
      const fwd = src === f.a && dst === f.b;
      const rev = src === f.b && dst === f.a;
      if (!fwd && !(rev && !quoted)) return false;
      return l4.length >= 8 && (l4[0] === 8 || l4[0] === 0) && l4.readUInt16BE(4) === f.key;
    }
    if ((proto === UDP || proto === TCP) && l4.length >= 4) {
      // The probe's own port identifies it, whatever the far address: a Service's DNAT changes
      // the destination on the way (ClusterIP -> backend), and the reply comes from the backend.
      const sp = l4.readUInt16BE(0);
      const dp = l4.readUInt16BE(2);
      const fwd = src === f.a && sp === f.key;
      const rev = dst === f.a && dp === f.key;
      return fwd || (rev && !quoted);
    }
    return false;
  }
}


/** Short text of an IPv4 packet for hop summaries. */
export function describeIpv4(ip: Buffer): string {
  const pkt = Ipv4Packet.quoted(ip);
  if (isWireError(pkt)) return 'runt IPv4 packet';
  const src = pkt.src;
  const dst = pkt.dst;
  const ttl = pkt.ttl;
  const l4 = ip.subarray(pkt.headerLen);
  let what = `proto ${pkt.protocol}`;
  if (pkt.protocol === ICMP && l4.length >= 8) {
    const names: Record<number, string> = { 0: 'ICMP echo reply', 8: 'ICMP echo request', 3: 'ICMP destination unreachable', 11: 'ICMP time exceeded' };
    what = `${names[l4[0]] ?? `ICMP type ${l4[0]}`}${l4[0] === 0 || l4[0] === 8 ? ` id ${l4.readUInt16BE(4)} seq ${l4.readUInt16BE(6)}` : ` code ${l4[1]}`}`;
  } else if (pkt.protocol === UDP && l4.length >= 8) {
    what = `UDP ${l4.readUInt16BE(0)} > ${l4.readUInt16BE(2)}`;
  } else if (pkt.protocol === 6 && l4.length >= 14) {
    // tcpdump's flag letters: S(YN) F(IN) R(ST) P(USH) .(ACK)
    const f = l4[13];
    const flags = `${f & 2 ? 'S' : ''}${f & 1 ? 'F' : ''}${f & 4 ? 'R' : ''}${f & 8 ? 'P' : ''}${f & 16 ? '.' : ''}`;
    what = `TCP ${l4.readUInt16BE(0)} > ${l4.readUInt16BE(2)} [${flags}]`;
  }
  return `${src} > ${dst} ${what}, ttl ${ttl}, ${pkt.totalLen} bytes`;
}


