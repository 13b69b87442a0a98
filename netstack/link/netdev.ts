/**
 * Network devices of the emulated kernel: every interface a learner would see
 * with `ip link` (eth0, cni0, flannel.1, vethXXXX, a pod's eth0) is a NetDevice
 * with a MAC, an MTU, counters and capture taps. Frames move between devices by
 * direct calls; what is "on the wire" is always a complete Ethernet frame.
 */

import { macToBuffer, readMac } from '../../packet/addr.ts';
import { Tracer, describeIpv4 } from '../trace.ts';

/** Why a frame was dropped: shown by `podlab node NODE stats` and by trace. */
export type DropReason = string;

/** Per-interface counters as `ip -s link` shows them, plus drops by reason. */
export class Counters {
  rxPackets = 0;
  rxBytes = 0;
  txPackets = 0;
  txBytes = 0;
  readonly drops = new Map<DropReason, number>();
  /** Events that are not drops but show a bounded table at its limit (a frame switched without learning its source). */
  readonly events = new Map<string, number>();

  drop(reason: DropReason): void {
    this.drops.set(reason, (this.drops.get(reason) ?? 0) + 1);
  }

  count(event: string): void {
    this.events.set(event, (this.events.get(event) ?? 0) + 1);
  }

  get dropped(): number {
    let n = 0;
    for (const v of this.drops.values()) n += v;
    return n;
  }

  toJSON(): Record<string, unknown> {
    return {
      rxPackets: this.rxPackets,
      rxBytes: this.rxBytes,
      txPackets: this.txPackets,
      txBytes: this.txBytes,
      drops: Object.fromEntries(this.drops),
      ...(this.events.size ? { events: Object.fromEntries(this.events) } : {}),
    };
  }
}

const noHandler: FrameDispatcher = (_f, dev) => dev.counters.drop('no-handler');
const noCarrier: FrameLink = (_f, dev) => dev.counters.drop('no-carrier');

/** A capture tap: sees every frame a device sends ('out') or receives ('in'). */
export type FrameTap = (frame: Buffer, direction: 'in' | 'out', dev: NetDevice) => void;

export type DeviceKind = 'loopback' | 'ether' | 'veth' | 'bridge' | 'vxlan' | 'ipip' | 'tun';

/**
 * Devices without a link-layer header (ARPHRD_TUNNEL, ARPHRD_NONE): an IP-in-IP
 * tunnel, a TUN device. The stack resolves no neighbour for them and hands the
 * route's next hop along with the packet, as the kernel's skb carries its dst
 * (the IPIP device reads the outer destination from it). Inside podlab their
 * packets still move as Ethernet frames with zero MACs; captures strip them.
 */
export function isHeaderless(kind: DeviceKind): boolean {
  return kind === 'ipip' || kind === 'tun';
}

/**
 * Interface numbers of one network namespace (the kernel's dev_new_index):
 * 1, 2, 3, ... in creation order. A veth pair is created in the node's
 * namespace, so both ends number from the node's allocator even when one end
 * then moves into a pod (`eth0@if5` in the pod, `vethX@if6` on the node).
 */
export class IfindexAllocator {
  private next: number;

  constructor(first = 1) {
    this.next = first;
  }

  take(): number {
    return this.next++;
  }
}

/** The layer above a device (gVisor's NetworkDispatcher): a bridge's port handler or an IP stack. */
export type FrameDispatcher = (frame: Buffer, dev: NetDevice) => void;
/** The link below a device: where its transmitted frames go (a veth peer, the bridge, a VTEP, the underlay). */
export type FrameLink = (frame: Buffer, dev: NetDevice, nextHop?: string) => void;

/**
 * What the owner of a device's link (a VXLAN VTEP) lets a cached flow replay
 * for one destination instead of calling the link: the bytes the link puts in
 * front of the frame (the VXLAN header), and where the whole then goes (the
 * peer's address and port, the source socket of the flow's hash), all worked
 * out once when the flow was recorded. Built by the same owner as the link,
 * so it does what the link would do for that destination; it stays valid only
 * while the namespace's flow generation does (the owner bumps it when its
 * table changes).
 */
export interface LinkTemplate {
  /** Sends the frame behind the link's header, as one datagram. */
  send(frame: Buffer): void;
}

/**
 * One interface. `transmit` sends a frame out of the device onto its link;
 * `receive` is called by the link and hands the frame to the dispatcher the
 * layer above attached. Both ends are set through methods, never by another
 * object writing this one's fields: `attach` from above (as gVisor's
 * `LinkEndpoint.Attach(NetworkDispatcher)`), `connect` from below.
 */
export class NetDevice {
  readonly ifindex: number;
  readonly counters = new Counters();
  readonly taps = new Set<FrameTap>();
  up = true;
  private dispatcher: FrameDispatcher = noHandler;
  private link: FrameLink = noCarrier;
  /** The bridge this device is a port of, if any (`master cni0`). */
  master?: NetDevice;
  /** For a veth end: the peer's ifindex and namespace label, for `ip link`'s `@ifN` and link-netns. */
  peer?: { ifindex: number; netns: string };
  /** The namespace the device lives in, for traces: `node` or `pod NAME`. */
  ns = 'node';
  /** False where a device's owner taps frames itself (the bridge sees forwarded frames too). */
  tapInDevice = true;
  /** The node's tracer: the device records a hop for every frame of a traced packet. */
  readonly tracer: Tracer;
  /** Set by the owner of the link when it can hand a flow cache a template for a frame's destination (see LinkTemplate). */
  linkTemplate?: (frame: Buffer) => LinkTemplate | undefined;
  /** `mac` as two numbers, for comparing frames' MACs without a string per frame (refreshed when `mac` changes). */
  private macSeen = '';
  private macHi = 0;
  private macLo = 0;

  constructor(
    readonly name: string,
    readonly kind: DeviceKind,
    public mac: string,
    public mtu: number,
    /** `ifindex`: a fixed number (a pod's lo is 1); `ifindexes`: the namespace's allocator. Neither: 0, unnumbered. */
    opts: { ifindex?: number; ifindexes?: IfindexAllocator; tracer?: Tracer } = {},
  ) {
    this.ifindex = opts.ifindex ?? opts.ifindexes?.take() ?? 0;
    this.tracer = opts.tracer ?? new Tracer();
  }

  /** The MAC as one number (48 bits, exact in a double): a map key that costs no string. */
  get macKey(): number {
    this.macWords();
    return this.macHi * 0x10000 + this.macLo;
  }

  /** True if the 6 bytes at `buf[off]` are this device's MAC. */
  isOwnMac(buf: Buffer, off = 0): boolean {
    this.macWords();
    return buf.readUInt32BE(off) === this.macHi && buf.readUInt16BE(off + 4) === this.macLo;
  }

  private macWords(): void {
    if (this.macSeen === this.mac) return;
    const b = macToBuffer(this.mac);
    this.macHi = b.readUInt32BE(0);
    this.macLo = b.readUInt16BE(4);
    this.macSeen = this.mac;
  }

  /** The layer above takes this device's received frames (an IP stack's input, a bridge port). */
  attach(dispatcher: FrameDispatcher): void {
    this.dispatcher = dispatcher;
  }

  /** Received frames are dropped again (no-handler): the device left its stack or bridge. */
  detach(): void {
    this.dispatcher = noHandler;
  }

  /** The device's link: where frames it transmits go. */
  connect(link: FrameLink): void {
    this.link = link;
  }

  /** True for devices without a link-layer header (tunl0, flannel0). */
  get headerless(): boolean {
    return isHeaderless(this.kind);
  }

  /** Sends a frame out of this device; `nextHop` is the route's next hop (headerless devices use it). */
  transmit(frame: Buffer, nextHop?: string): void {
    if (!this.up) {
      this.counters.drop('link-down');
      return;
    }
    this.counters.txPackets++;
    this.counters.txBytes += frame.length;
    if (this.taps.size && this.tapInDevice) for (const tap of this.taps) tap(frame, 'out', this);
    if (this.tracer.current) this.tracer.hop(this.ns, this.name, describeFrame(frame), { dir: 'tx' });
    this.link(frame, this, nextHop);
  }

  /**
   * Transmits through a template: counted, tapped and traced as `transmit`
   * does, then sent by the template (its header, then the frame) instead of
   * the link.
   */
  transmitTemplated(frame: Buffer, tpl: LinkTemplate): void {
    if (!this.up) {
      this.counters.drop('link-down');
      return;
    }
    this.counters.txPackets++;
    this.counters.txBytes += frame.length;
    if (this.taps.size && this.tapInDevice) for (const tap of this.taps) tap(frame, 'out', this);
    if (this.tracer.current) this.tracer.hop(this.ns, this.name, describeFrame(frame), { dir: 'tx' });
    tpl.send(frame);
  }

  /** Delivers a frame arriving on this device to the layer above. */
  receive(frame: Buffer): void {
    if (!this.up) {
      this.counters.drop('link-down');
      return;
    }
    this.counters.rxPackets++;
    this.counters.rxBytes += frame.length;
    if (this.taps.size && this.tapInDevice) for (const tap of this.taps) tap(frame, 'in', this);
    if (this.tracer.current) this.tracer.hop(this.ns, this.name, describeFrame(frame), { dir: 'rx' });
    this.dispatcher(frame, this);
  }
}

/**
 * A veth pair: what one end transmits, the other receives. The pod end lives in
 * the pod's namespace as `eth0`; the host end is a cni0 bridge port.
 */
export function vethPair(
  host: { name: string; mac: string; netns: string },
  pod: { name: string; mac: string; netns: string },
  mtu: number,
  /** The namespace the pair is created in (the node's): its interface numbers and its tracer. */
  ns: { ifindexes?: IfindexAllocator; tracer?: Tracer } = {},
): { hostEnd: NetDevice; podEnd: NetDevice } {
  const hostEnd = new NetDevice(host.name, 'veth', host.mac, mtu, ns);
  const podEnd = new NetDevice(pod.name, 'veth', pod.mac, mtu, ns);
  // `link-netns` names the namespace where the other end lives.
  hostEnd.peer = { ifindex: podEnd.ifindex, netns: pod.netns };
  podEnd.peer = { ifindex: hostEnd.ifindex, netns: host.netns };
  hostEnd.connect((f) => podEnd.receive(f));
  podEnd.connect((f) => hostEnd.receive(f));
  return { hostEnd, podEnd };
}

/** One line for a frame in a trace: MACs, then the IPv4 summary. */
export function describeFrame(frame: Buffer): string {
  if (frame.length < 14) return 'runt frame';
  const type = frame.readUInt16BE(12);
  const l3 = type === 0x0800 ? describeIpv4(frame.subarray(14)) : type === 0x0806 ? 'ARP' : `ethertype 0x${type.toString(16)}`;
  return `${readMac(frame, 6)} > ${readMac(frame, 0)}, ${l3}`;
}
