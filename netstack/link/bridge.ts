/**
 * The cni0 Linux bridge: a learning switch between the host-side veth ends and
 * the node's own IP stack (the bridge's "local port", the cni0 device itself).
 *
 * As the kernel bridge does: source MACs are learned per port and aged out
 * (default 300 s, `bridge fdb`); a frame to a known unicast MAC goes out of that
 * port only; broadcast, multicast and unknown unicast are flooded to every
 * other port and to the local port; frames to the bridge's own MAC go up to the
 * node's stack only.
 */
import type { Clock } from '../../common/clock.ts';
import { readMac } from '../../packet/addr.ts';
import { isWireError } from '../../packet/errors.ts';
import { Ipv4Packet } from '../../packet/ipv4-packet.ts';
import { NetDevice, describeFrame, type IfindexAllocator } from './netdev.ts';
import type { Tracer } from '../trace.ts';
import { nfState, type HookChain } from '../netfilter/netfilter.ts';

/** One learned or permanent forwarding entry. */
export interface BridgeFdbEntry {
  mac: string;
  port: NetDevice;
  /** Permanent entries are the ports' own MACs (`vlan 1 master cni0 permanent`). */
  permanent: boolean;
  updatedAt: number;
}

function isGroupMac(frame: Buffer): boolean {
  return (frame[0] & 1) === 1;
}

/** The MAC at `frame[off]` as one number (48 bits, exact in a double): the fdb's key, no string per frame. */
function macKeyAt(frame: Buffer, off: number): number {
  return frame.readUInt32BE(off) * 0x10000 + frame.readUInt16BE(off + 4);
}


export class Bridge {
  /** The bridge device itself (cni0): its IP stack side. */
  readonly dev: NetDevice;
  readonly ports = new Set<NetDevice>();
  private readonly fdb = new Map<number, BridgeFdbEntry>();
  /** Learned (not permanent) entries in the fdb. */
  private learned = 0;
  private lastForcedAge = -Infinity;
  /** Most learned entries (Linux: the bridge's fdb_max_learned); past it, sources are not learned and frames still switch. */
  private readonly maxLearned: number;
  /** br_netfilter: the namespace's bridge FORWARD hooks, run on IPv4 frames switched between two ports. */
  private readonly nf?: HookChain;
  private readonly tracer: Tracer;

  constructor(
    name: string,
    mac: string,
    mtu: number,
    private readonly clock: Clock,
    readonly ageingMs = 300_000,
    opts: { netfilter?: HookChain; ifindexes?: IfindexAllocator; tracer?: Tracer; maxLearned?: number } = {},
  ) {
    this.nf = opts.netfilter;
    this.maxLearned = opts.maxLearned ?? 4096;
    this.dev = new NetDevice(name, 'bridge', mac, mtu, { ifindexes: opts.ifindexes, tracer: opts.tracer });
    this.tracer = this.dev.tracer;
    // A capture on cni0 sees every frame crossing the bridge, as tcpdump (promiscuous) does.
    this.dev.tapInDevice = false;
    // What the node's stack transmits on cni0 enters the switch from the local port.
    this.dev.connect((frame) => this.forward(frame, null));
  }

  /** Enslaves a device (`ip link set vethX master cni0`). */
  addPort(port: NetDevice): void {
    port.master = this.dev;
    this.ports.add(port);
    const old = this.fdb.get(port.macKey);
    if (old && !old.permanent) this.learned--;
    this.fdb.set(port.macKey, { mac: port.mac, port, permanent: true, updatedAt: this.clock.now() });
    port.attach((frame) => this.forward(frame, port));
  }

  /** Releases a port and forgets everything learned on it. */
  removePort(port: NetDevice): void {
    this.ports.delete(port);
    port.master = undefined;
    for (const [mac, e] of this.fdb) if (e.port === port) this.forget(mac, e);
  }

  private forget(mac: number, e: BridgeFdbEntry): void {
    if (this.fdb.get(mac) !== e) return;
    this.fdb.delete(mac);
    if (!e.permanent) this.learned--;
  }

  /** The forwarding database, learned entries aged first. */
  entries(): BridgeFdbEntry[] {
    this.age();
    return [...this.fdb.values()];
  }

  private age(): void {
    const now = this.clock.now();
    for (const [mac, e] of this.fdb) {
      if (!e.permanent && now - e.updatedAt > this.ageingMs) this.forget(mac, e);
    }
  }

  /** Learns a source MAC, within the limit (aged entries make room first; a flood of new sources is not learned). */
  private learn(mac: number, frame: Buffer, port: NetDevice, now: number): void {
    // Aging scans the table: under a flood of new sources, at most once a second.
    if (this.learned >= this.maxLearned && now - this.lastForcedAge >= 1000) {
      this.lastForcedAge = now;
      this.age();
    }
    if (this.learned >= this.maxLearned) {
      this.dev.counters.count('fdb-full-not-learned');
      return;
    }
    this.fdb.set(mac, { mac: readMac(frame, 6), port, permanent: false, updatedAt: now });
    this.learned++;
  }

  /** Switches one frame that came in on `from` (null = the bridge's local port). */
  private forward(frame: Buffer, from: NetDevice | null): void {
    if (frame.length < 14) {
      (from ?? this.dev).counters.drop('runt-frame');
      return;
    }
    const now = this.clock.now();
    if (this.dev.taps.size) for (const tap of this.dev.taps) tap(frame, from ? 'in' : 'out', this.dev);
    if (from && (frame[6] & 1) === 0) {
      const src = macKeyAt(frame, 6);
      const known = this.fdb.get(src);
      if (!known) this.learn(src, frame, from, now);
      else if (!known.permanent) {
        known.port = from;
        known.updatedAt = now;
      }
    }
    if (isGroupMac(frame)) {
      if (this.tracer.current) this.tracer.hop(this.dev.ns, this.dev.name, `bridge: ${describeFrame(frame)}: broadcast, flooded to every port`);
      this.flood(frame, from);
      return;
    }
    if (this.dev.isOwnMac(frame, 0)) {
      if (this.tracer.current) this.tracer.hop(this.dev.ns, this.dev.name, `bridge: destination ${readMac(frame, 0)} is ${this.dev.name}'s own MAC (the gateway): up to the node's IP stack`);
      if (from) this.dev.receive(frame);
      return;
    }
    // Bridged between two ports (not up to the node): br_netfilter's pass through the hooks.
    if (from && this.nf?.active) {
      const f = this.netfilter(this.nf, frame, from);
      if (!f) return;
      frame = f;
    }
    const entry = this.fdb.get(macKeyAt(frame, 0));
    if (entry && (entry.permanent || now - entry.updatedAt <= this.ageingMs)) {
      if (this.tracer.current) this.tracer.hop(this.dev.ns, this.dev.name, `bridge: fdb ${entry.mac} -> port ${entry.port.name}${entry.permanent ? ' (permanent)' : ' (learned)'}: forwarded`, { detail: { fdb: { mac: entry.mac, port: entry.port.name } } });
      if (entry.port !== from) entry.port.transmit(frame);
      return;
    }
    if (this.tracer.current) this.tracer.hop(this.dev.ns, this.dev.name, `bridge: ${readMac(frame, 0)} not in the fdb: flooded to every port`);
    this.flood(frame, from);
  }

  /** Runs an IPv4 frame through the bridge FORWARD hooks; null when a hook dropped it. */
  private netfilter(chain: HookChain, frame: Buffer, from: NetDevice): Buffer | null {
    if (frame.length < 34 || frame.readUInt16BE(12) !== 0x0800) return frame;
    const pkt = Ipv4Packet.checked(frame.subarray(14));
    if (isWireError(pkt)) return frame;
    const st = nfState('bridge-forward', from.name);
    const out = chain.run(pkt, st);
    if (!out) {
      from.counters.drop(st.dropReason ?? 'netfilter');
      if (this.tracer.current) this.tracer.hop(this.dev.ns, this.dev.name, `bridge: dropped by netfilter (${st.dropReason ?? 'netfilter'})`, { drop: st.dropReason ?? 'netfilter' });
      return null;
    }
    if (out === pkt && !pkt.modified) return frame;
    const dg = out.datagram;
    const copy = Buffer.allocUnsafe(14 + dg.length);
    frame.copy(copy, 0, 0, 14);
    dg.copy(copy, 14);
    return copy;
  }

  private flood(frame: Buffer, from: NetDevice | null): void {
    for (const p of this.ports) if (p !== from) p.transmit(frame);
    if (from) this.dev.receive(frame);
  }
}
