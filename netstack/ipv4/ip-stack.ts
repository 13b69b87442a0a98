/**
 * An emulated Linux IPv4 stack: one per network namespace. A pod has one
 * (eth0 + lo, forwarding off); a node has one (eth0, cni0, flannel.1,
 * forwarding on), exactly as `ip netns exec` would show two different kernels'
 * views.
 *
 * Input: Ethernet → ARP (answer, learn) or IPv4 (checksum-verified) → local
 * delivery (ICMP echo, ICMP errors to sockets, UDP sockets, reassembly) or, when
 * forwarding, TTL check and decrement, route lookup, MTU/DF check, neighbour
 * resolution, and out of the route's device.
 *
 * Errors are sent as the kernel sends them: time exceeded when TTL runs out,
 * fragmentation needed (with the next-hop MTU) for DF packets over the MTU,
 * net unreachable without a route, host unreachable after ARP gives up, port
 * unreachable for closed UDP ports. Every drop is counted with its reason.
 *
 * I/O: processing never transmits or delivers by itself. What it emits goes
 * to the namespace's dispatcher (./dispatcher.ts), which sends it once the
 * current packet's processing is over; frames arriving meanwhile wait their
 * turn. So no protocol is re-entered, loopback is a queued delivery drained
 * by the same loop, and a chain of replies between stacks of one process
 * runs in constant JS stack depth.
 */
import type { Clock, Timer } from '../../common/clock.ts';
import { BROADCAST_MAC, readMac } from '../../packet/addr.ts';
import { Ipv4Packet } from '../../packet/ipv4-packet.ts';
import { ARP_REPLY, ARP_REQUEST, parseArp, serializeArp } from '../../packet/arp.ts';
import { ETHERNET_HEADER_LEN, ETHERTYPE_ARP, ETHERTYPE_IPV4, ethernetType, serializeEthernet, writeEthernetHeader } from '../../packet/ethernet.ts';
import { isWireError } from '../../packet/errors.ts';
import {
  ICMP_TIMXCEED_INTRANS,
  ICMP_TIMXCEED_REASS,
  ICMP_UNREACH_HOST,
  ICMP_UNREACH_NEEDFRAG,
  ICMP_UNREACH_NET,
  ICMP_UNREACH_PORT,
  ICMP_UNREACH_PROTOCOL,
  icmpErrorQuote,
  parseIcmp,
  serializeIcmp,
  serializeIcmpFramed,
  type IcmpRepr,
} from '../../packet/icmp.ts';
import {
  IPPROTO_ICMP,
  IPPROTO_UDP,
  Reassembler,
  decrementTtlInPlace,
  fragmentIpv4,
  ipv4HeaderLenFor,
  parseIpv4,
  serializeIpv4,
  writeIpv4Header,
  type Ipv4Repr,
} from '../../packet/ipv4.ts';
import { parseUdp, writeUdpHeader } from '../../packet/udp.ts';
import { NeighbourTable } from './neighbour.ts';
import { Counters, NetDevice } from '../link/netdev.ts';
import { RouteTable, formatRoute, type Route } from './route-table.ts';
import { Tracer } from '../trace.ts';
import { Conntrack } from '../netfilter/conntrack.ts';
import { Netfilter, nfState, type NfHookOps, type NfState } from '../netfilter/netfilter.ts';
import { FlowCache, type FlowRecording } from '../flow/flow-cache.ts';
import { FlowGeneration } from '../flow/generation.ts';
import { Dispatcher, type LoopbackItem } from './dispatcher.ts';

/** An interface as the stack sees it: the device, its addresses, whether it ARPs. */
export interface StackInterface {
  dev: NetDevice;
  addrs: { ip: string; prefixLen: number }[];
  /** False on NOARP devices such as flannel.1, whose neighbours are programmed. */
  arp: boolean;
}

/** Path MTU discovery mode of a socket, as `ping -M`. */
export type PmtuDisc = 'want' | 'do' | 'dont';

/** What a ping socket hears back. */
export type IcmpEvent =
  | { kind: 'echo-reply'; from: string; ttl: number; id: number; seq: number; data: Buffer; bytes: number }
  | {
      kind: 'error';
      from: string;
      type: 'dest-unreachable' | 'time-exceeded';
      code: number;
      nextHopMtu?: number;
      id: number;
      seq: number;
    };

/** A datagram delivered to a UDP socket. */
export interface UdpMessage {
  data: Buffer;
  srcIp: string;
  srcPort: number;
  dstIp: string;
  dstPort: number;
  ttl: number;
}

/** An ICMP error delivered to the UDP socket whose datagram caused it. */
export interface UdpError {
  from: string;
  type: 'dest-unreachable' | 'time-exceeded';
  code: number;
  dstIp: string;
  dstPort: number;
}

export interface UdpHandlers {
  message: (m: UdpMessage) => void;
  error?: (e: UdpError) => void;
}

/**
 * A transport protocol plugged into the stack (TCP): it receives every local
 * datagram of its protocol number (checksum of the IP header verified,
 * reassembled) and the ICMP errors that quote one of its datagrams.
 */
export interface ProtocolHandler {
  /** `raw` is the datagram `ip` was read from: its header holds the addresses as integers (checksums need no string parsed back). */
  input(ip: Ipv4Repr, raw: Buffer): void;
  icmpError?(e: { from: string; type: 'dest-unreachable' | 'time-exceeded'; code: number; nextHopMtu?: number; quote: Buffer }): void;
  /**
   * The protocol's sockets' pending output (smoltcp's socket egress), asked
   * for by the dispatcher when nothing else is queued; true if it sent
   * something or ran an application (the loop goes round again).
   */
  egress?(): boolean;
}

/** Outcome of a locally originated send. */
export type SendResult =
  | { ok: true }
  | { ok: false; error: 'EMSGSIZE'; mtu: number }
  | { ok: false; error: 'ENETUNREACH' }
  | { ok: false; error: 'EINVAL'; message: string };

export interface SendOptions {
  dst: string;
  protocol: number;
  payload: Buffer;
  /**
   * A buffer with room for the Ethernet and option-less IPv4 headers
   * (`FRAME_ROOM` bytes) before `payload`, which is its tail: the frame is
   * then written around the payload rather than the payload copied into a
   * new frame. Ignored whenever the datagram takes another shape (options,
   * fragments, a hook's rewrite). The stack owns the buffer from then on: it
   * leaves in it, and the flow cache may rewrite it in place.
   */
  frame?: Buffer;
  src?: string;
  ttl?: number;
  pmtudisc?: PmtuDisc;
}

export interface IpStackOptions {
  clock: Clock;
  forwarding: boolean;
  defaultTtl?: number;
  /** Seeds the IP identification counter so runs replay. */
  idSeed?: number;
  /** The namespace's label in traces: `node` or `pod NAME`. */
  traceNs?: string;
  /** The node's tracer (shared by the node's and its pods' namespaces: a traced packet crosses them). */
  tracer?: Tracer;
  /** The flow cache for forwarded packets (../flow/flow-cache.ts); default on when forwarding. */
  fastPath?: boolean;
}

const EMPTY = Buffer.alloc(0);

/** Room a transport leaves before its payload for the stack to frame it in place (SendOptions.frame): Ethernet 14 + IPv4 20. */
export const FRAME_ROOM = ETHERNET_HEADER_LEN + 20;

/** True if `payload` is still the tail of `frame` after FRAME_ROOM bytes (no hook or option moved it). */
function framesPayload(frame: Buffer, payload: Buffer): boolean {
  return payload.buffer === frame.buffer && payload.byteOffset === frame.byteOffset + FRAME_ROOM && payload.length === frame.length - FRAME_ROOM;
}

export class IpStack {
  /** Moved by every table a forwarding decision reads: cached flows die with it. */
  readonly generation = new FlowGeneration();
  readonly routes = new RouteTable(this.generation);
  readonly neigh: NeighbourTable;
  /** The fast path for established forwarded flows (absent when not forwarding, or turned off). */
  readonly flows?: FlowCache;
  readonly interfaces = new Map<string, StackInterface>();
  /** Stack-level drops (`ip -s` has no such view; `podlab node stats` shows them as "ip"). */
  readonly counters = new Counters();
  readonly forwarding: boolean;
  private readonly clock: Clock;
  private readonly defaultTtl: number;
  private readonly local = new Set<string>();
  private readonly icmpSockets = new Map<number, (e: IcmpEvent) => void>();
  private readonly udpSockets = new Map<number, UdpHandlers>();
  private readonly protocols = new Map<number, ProtocolHandler>();
  private egressOf: (() => boolean)[] = [];
  /** Performs what processing emits, after it: see the file's comment. */
  private readonly io: Dispatcher;
  private readonly reassembler: Reassembler;
  private reassemblyTimer?: Timer;
  private nextId: number;
  readonly traceNs: string;
  readonly tracer: Tracer;
  /** The namespace's netfilter: hook chains (empty until someone registers) and conntrack. */
  readonly nf: Netfilter;

  constructor(
    readonly name: string,
    opts: IpStackOptions,
  ) {
    this.clock = opts.clock;
    this.forwarding = opts.forwarding;
    this.defaultTtl = opts.defaultTtl ?? 64;
    this.nextId = (opts.idSeed ?? 0) & 0xffff;
    this.reassembler = new Reassembler({
      onDrop: (reason, n) => {
        for (let i = 0; i < n; i++) this.counters.drop(`reassembly-${reason}`);
      },
      // RFC 1122 3.3.2: time exceeded (fragment reassembly), only when the first fragment came.
      onExpire: (first) => {
        if (first) this.sendIcmpError(first, serializeIpv4(first), { kind: 'time-exceeded', code: ICMP_TIMXCEED_REASS, original: EMPTY });
      },
    });
    this.traceNs = opts.traceNs ?? name;
    this.tracer = opts.tracer ?? new Tracer();
    this.neigh = new NeighbourTable(this.clock, (dev, ip) => this.sendArpRequest(dev, ip), { onOverflow: () => this.counters.drop('neigh-table-overflow'), generation: this.generation });
    this.nf = new Netfilter(new Conntrack(this.clock, {}, this.generation), this.generation);
    if (this.forwarding && opts.fastPath !== false) this.flows = new FlowCache(this.generation, this.nf.conntrack);
    this.io = new Dispatcher(this.tracer, {
      receive: (dev, frame) => this.inputNow(dev, frame),
      loopback: (item) => this.deliverLocal(item.ip, item.raw, item.st),
      egress: () => {
        const e = this.egressOf;
        for (let i = 0; i < e.length; i++) if (e[i]()) return true;
        return false;
      },
    });
  }

  /**
   * Runs `fn` (an application's call, a timer) as one unit of processing: what
   * it emits leaves after it returns. Inside processing, just `fn`.
   */
  run<T>(fn: () => T): T {
    return this.io.run(fn);
  }

  /** Runs the dispatcher if the stack is idle: a protocol has output to send from outside any processing. */
  wake(): void {
    this.io.wake();
  }

  /** True while this namespace processes a packet or performs what it emitted. */
  get busy(): boolean {
    return this.io.active;
  }

  /** Most items the dispatcher held queued at once (a bound the tests check). */
  get maxQueued(): number {
    return this.io.maxQueued;
  }

  // ---------------------------------------------------------------- config

  /** Attaches a device; its received frames now enter this stack. */
  addInterface(dev: NetDevice, opts: { arp: boolean }): StackInterface {
    const iface: StackInterface = { dev, addrs: [], arp: opts.arp };
    this.interfaces.set(dev.name, iface);
    dev.attach((frame, d) => this.io.receive(d, frame));
    this.generation.bump('device');
    return iface;
  }

  /** Detaches a device and everything that pointed at it. */
  removeInterface(name: string): void {
    const iface = this.interfaces.get(name);
    if (!iface) return;
    for (const a of iface.addrs) this.local.delete(a.ip);
    this.interfaces.delete(name);
    this.routes.deleteByDev(name);
    this.neigh.flushDev(name);
    this.generation.bump('device');
  }

  /**
   * `ip addr add IP/LEN dev DEV`: also adds the prefix route
   * (`proto kernel scope link src IP`) unless the prefix is a /32 or
   * `noPrefixRoute` (iproute2's `noprefixroute`) is set.
   */
  addAddress(devName: string, ip: string, prefixLen: number, opts: { noPrefixRoute?: boolean } = {}): void {
    const iface = this.mustIface(devName);
    iface.addrs.push({ ip, prefixLen });
    this.local.add(ip);
    this.generation.bump('address');
    if (prefixLen < 32 && !opts.noPrefixRoute) {
      this.routes.replace({ dst: ip, prefixLen, dev: devName, proto: 'kernel', scope: 'link', src: ip });
    }
  }

  /** True if ip is one of this namespace's own addresses. */
  isLocal(ip: string): boolean {
    return this.local.has(ip);
  }

  private mustIface(name: string): StackInterface {
    const iface = this.interfaces.get(name);
    if (!iface) throw new Error(`${this.name}: no such device ${name}`);
    return iface;
  }

  /** Preferred source address for packets routed by `route`. */
  sourceFor(route: Route): string | undefined {
    if (route.src) return route.src;
    return this.interfaces.get(route.dev)?.addrs[0]?.ip ?? this.anyAddress();
  }

  private anyAddress(): string | undefined {
    for (const i of this.interfaces.values()) if (i.dev.kind !== 'loopback' && i.addrs[0]) return i.addrs[0].ip;
    return undefined;
  }

  // ---------------------------------------------------------------- sockets

  /** Plugs a transport protocol (by IP protocol number) into the stack. */
  registerProtocol(protocol: number, handler: ProtocolHandler): void {
    this.protocols.set(protocol, handler);
    this.egressOf = [...this.protocols.values()].flatMap((h) => (h.egress ? [h.egress.bind(h)] : []));
  }

  /** A ping socket: receives echo replies and ICMP errors for echo requests with this id. */
  openIcmp(id: number, handler: (e: IcmpEvent) => void): { close(): void } {
    if (this.icmpSockets.has(id)) throw new Error(`icmp id ${id} in use`);
    this.icmpSockets.set(id, handler);
    return { close: () => void this.icmpSockets.delete(id) };
  }

  /** Binds a UDP port (all local addresses). Throws EADDRINUSE as a typed error. */
  bindUdp(port: number, handlers: UdpHandlers): { port: number; close(): void } {
    if (port === 0) port = this.ephemeralPort(this.udpSockets);
    if (this.udpSockets.has(port)) throw Object.assign(new Error(`bind: address already in use (udp port ${port})`), { code: 'EADDRINUSE' });
    this.udpSockets.set(port, handlers);
    return { port, close: () => void this.udpSockets.delete(port) };
  }

  private ephemeralPort(used: Map<number, unknown>): number {
    // Linux's default ip_local_port_range is 32768-60999.
    for (let i = 0; i < 28232; i++) {
      const p = 32768 + ((this.nextId + i * 7919) % 28232);
      if (!used.has(p)) return p;
    }
    throw Object.assign(new Error('no free ephemeral port'), { code: 'EADDRINUSE' });
  }

  /** Sends a UDP datagram from a bound port. */
  sendUdp(srcPort: number, dst: string, dstPort: number, data: Buffer, opts: { ttl?: number; pmtudisc?: PmtuDisc; src?: string } = {}): SendResult {
    const route = this.routeFor(dst);
    if (!route) return { ok: false, error: 'ENETUNREACH' };
    const src = opts.src ?? (this.isLocal(dst) ? dst : this.sourceFor(route));
    if (!src) return { ok: false, error: 'ENETUNREACH' };
    // Written once, into the frame it leaves in: UDP header and data behind the room for the link and IP headers.
    const frame = Buffer.allocUnsafe(FRAME_ROOM + 8 + data.length);
    data.copy(frame, FRAME_ROOM + 8);
    writeUdpHeader(frame, FRAME_ROOM, { srcPort, dstPort }, data.length, src, dst);
    const o: SendOptions = { dst, src, protocol: IPPROTO_UDP, payload: frame.subarray(FRAME_ROOM), frame, ttl: opts.ttl, pmtudisc: opts.pmtudisc };
    // The route just found goes along: the datagram is not routed twice.
    return this.io.active ? this.sendNow(o, route) : this.io.run(() => this.sendNow(o, route));
  }

  /** Sends an ICMP echo request. */
  sendEcho(dst: string, id: number, seq: number, data: Buffer, opts: { ttl?: number; pmtudisc?: PmtuDisc } = {}): SendResult {
    const frame = serializeIcmpFramed({ kind: 'echo-request', id, seq, data }, FRAME_ROOM);
    return this.send({ dst, protocol: IPPROTO_ICMP, payload: frame.subarray(FRAME_ROOM), frame, ...opts });
  }

  private routeFor(dst: string): Route | undefined {
    if (this.isLocal(dst)) return { dst, prefixLen: 32, dev: 'lo', proto: 'kernel', scope: 'link', src: dst };
    return this.routes.lookup(dst);
  }

  // ---------------------------------------------------------------- output

  /** Originates one IPv4 datagram from this namespace (it leaves when the current processing is over). */
  send(opts: SendOptions): SendResult {
    return this.io.active ? this.sendNow(opts) : this.io.run(() => this.sendNow(opts));
  }

  private sendNow(opts: SendOptions, routed?: Route): SendResult {
    let route = routed ?? this.routeFor(opts.dst);
    if (!route) {
      this.counters.drop('no-route');
      return { ok: false, error: 'ENETUNREACH' };
    }
    const src = opts.src ?? this.sourceFor(route);
    if (!src) return { ok: false, error: 'ENETUNREACH' };
    const mode = opts.pmtudisc ?? 'want';
    const repr: Ipv4Repr = {
      src,
      dst: opts.dst,
      protocol: opts.protocol,
      ttl: opts.ttl ?? this.defaultTtl,
      id: this.allocId(),
      dontFragment: mode !== 'dont',
      moreFragments: false,
      fragmentOffset: 0,
      dscp: 0,
      ecn: 0,
      payload: opts.payload,
    };
    let st: NfState | undefined;
    let built: Buffer | undefined;
    if (this.nf.output.active) {
      // OUTPUT: the namespace's own packets pass the hooks too (kube-proxy: NodePort edge, host-network clients).
      st = nfState('output');
      st.outDev = route.dev;
      // Freshly serialized: the bytes are this packet's own.
      st.owned = true;
      const pkt = Ipv4Packet.unchecked(serializeIpv4(repr));
      const out = this.nf.output.run(pkt, st);
      // Kept by a hook (kube-proxy waiting for its engine): sent, as far as the sender knows.
      if (!out) return st.stolen ? { ok: true } : { ok: false, error: 'ENETUNREACH' };
      built = out === pkt && !out.modified ? pkt.buffer : out.datagram;
      if (out !== pkt || out.modified) {
        if (out.dst !== repr.dst || out.src !== repr.src) {
          // Rerouted after NAT, as ip_route_me_harder does.
          const r2 = this.routeFor(out.dst);
          if (!r2) return { ok: false, error: 'ENETUNREACH' };
          route = r2;
          st.outDev = route.dev;
        }
        Object.assign(repr, { src: out.src, dst: out.dst, payload: out.payload });
      }
    }
    return this.sendRouted(repr, route, mode, st, built, opts.frame);
  }

  /** The rest of `send` once OUTPUT passed the packet: loopback, fragmentation, POSTROUTING and the device. */
  private sendRouted(repr: Ipv4Repr, route: Route, mode: NonNullable<SendOptions['pmtudisc']>, st?: NfState, built?: Buffer, room?: Buffer): SendResult {
    if (route.dev === 'lo') {
      // Loopback: the kernel delivers to itself without touching a device MTU.
      const item: LoopbackItem = { ip: repr, raw: built ?? serializeIpv4(repr), st };
      this.io.loopback(item);
      return { ok: true };
    }
    const mtu = this.interfaces.get(route.dev)?.dev.mtu ?? 1500;
    const total = 20 + repr.payload.length;
    if (total > mtu) {
      if (mode === 'do') return { ok: false, error: 'EMSGSIZE', mtu };
      // PMTUDISC_WANT fragments locally, and fragments never carry DF.
      repr.dontFragment = false;
      built = undefined;
    }
    if (this.tracer.current || this.tracer.filters.size) {
      // A packet born inside a traced path (an echo reply, an ICMP error) is its own leg; one sent
      // later (a TCP segment from a timer) is recognised by the trace's filter.
      const ctx = this.tracer.matchIpv4(serializeIpv4(repr)) ?? this.tracer.current;
      if (!ctx) {
        this.output(repr, null, route, st, built, undefined, room);
        return { ok: true };
      }
      this.tracer.run(ctx, () => {
        this.tracer.hop(this.traceNs, 'send', `${repr.src} > ${repr.dst}: new packet, route "${formatRoute(route)}"`);
        this.output(repr, null, route, st, built, undefined, room);
      });
      return { ok: true };
    }
    this.output(repr, null, route, st, built, undefined, room);
    return { ok: true };
  }

  private allocId(): number {
    this.nextId = (this.nextId + 1) & 0xffff;
    return this.nextId;
  }

  /**
   * POSTROUTING, then out of the route's device. `raw` is the datagram's bytes
   * when forwarding (TTL already decremented), null when originating (`built`:
   * its bytes if the OUTPUT hooks already serialized it).
   */
  private output(repr: Ipv4Repr, raw: Buffer | null, route: Route, st?: NfState, built?: Buffer, rec?: FlowRecording, room?: Buffer): void {
    if (this.nf.postrouting.active) {
      const s = st ?? nfState('postrouting');
      s.outDev = route.dev;
      // A forwarded packet's copy, or bytes this namespace built: hooks may edit them in place.
      s.owned = true;
      const pkt = Ipv4Packet.unchecked(raw ?? built ?? serializeIpv4(repr));
      const out = this.nf.postrouting.run(pkt, s);
      if (!out) {
        this.interfaces.get(route.dev)?.dev.counters.drop(s.dropReason ?? 'netfilter');
        if (this.tracer.current) this.traceDrop(route.dev, `dropped by netfilter POSTROUTING (${s.dropReason ?? 'netfilter'})`, s.dropReason ?? 'netfilter');
        return;
      }
      if (out !== pkt || out.modified) {
        const again = parseIpv4(out.datagram, { verifyChecksum: false });
        if (isWireError(again)) return;
        repr = again;
        if (raw) raw = out.datagram;
        else built = out.datagram;
      } else if (!raw) {
        built = pkt.buffer;
      }
      if (s.noFlow) rec = undefined;
    }
    // The connection kube-proxy's hooks found: the recorded flow translates as they did (checked when recorded).
    if (rec && st) rec.ct = st.ct;
    this.transmitRouted(repr, raw, route, built, rec, room);
  }

  /**
   * MTU check (fragmenting or refusing DF), neighbour resolution, and
   * transmission on the route's device. `raw` as for `output`.
   */
  private transmitRouted(repr: Ipv4Repr, raw: Buffer | null, route: Route, built?: Buffer, rec?: FlowRecording, room?: Buffer): void {
    const iface = this.interfaces.get(route.dev);
    if (!iface) {
      this.counters.drop('no-device');
      return;
    }
    // A datagram this namespace originates is written once, straight into its frame behind the Ethernet header's room.
    let framed: Buffer | undefined;
    let bytes = raw ?? built;
    if (bytes === undefined) {
      const hlen = ipv4HeaderLenFor(repr);
      if (room !== undefined && hlen === 20 && framesPayload(room, repr.payload)) {
        framed = room;
      } else {
        framed = Buffer.allocUnsafe(ETHERNET_HEADER_LEN + hlen + repr.payload.length);
        repr.payload.copy(framed, ETHERNET_HEADER_LEN + hlen);
      }
      writeIpv4Header(framed, ETHERNET_HEADER_LEN, repr, repr.payload.length);
      bytes = framed.subarray(ETHERNET_HEADER_LEN);
    }
    if (bytes.length > iface.dev.mtu) {
      if (repr.dontFragment) {
        iface.dev.counters.drop('frag-needed');
        if (this.tracer.current) this.traceDrop(route.dev, `packet of ${bytes.length} bytes with DF set exceeds ${route.dev} mtu ${iface.dev.mtu}: dropped, ICMP fragmentation needed (mtu ${iface.dev.mtu}) sent back`, 'mtu-df');
        if (raw) this.sendIcmpError(repr, raw, { kind: 'dest-unreachable', code: ICMP_UNREACH_NEEDFRAG, nextHopMtu: iface.dev.mtu, original: EMPTY });
        return;
      }
      const frags = fragmentIpv4(repr, iface.dev.mtu);
      if (this.tracer.current) this.tracer.hop(this.traceNs, route.dev, `${bytes.length} bytes exceed mtu ${iface.dev.mtu}: sent as ${frags.length} fragments`);
      for (const frag of frags) this.transmitRouted(frag, null, route);
      return;
    }
    const nextHop = route.gateway ?? repr.dst;
    if (iface.dev.headerless) {
      // No link layer: nothing to resolve; the device takes the next hop (an IPIP tunnel's outer destination).
      this.emitFrame(iface, nextHop, bytes, framed, rec, '00:00:00:00:00:00');
      return;
    }
    if (!iface.arp) {
      const e = this.neigh.get(route.dev, nextHop);
      if (!e?.mac) {
        iface.dev.counters.drop('no-neighbour');
        if (this.tracer.current) this.traceDrop(route.dev, `no neighbour entry for ${nextHop} on ${route.dev} (NOARP device): dropped`, 'no-neighbour');
        if (raw) this.sendIcmpError(repr, raw, { kind: 'dest-unreachable', code: ICMP_UNREACH_HOST, original: EMPTY });
        return;
      }
      this.emitFrame(iface, nextHop, bytes, framed, rec, e.mac);
      return;
    }
    // A resolved neighbour: sent now, without the callbacks a resolution in flight needs.
    const known = this.neigh.usable(route.dev, nextHop);
    if (known !== undefined) {
      this.emitFrame(iface, nextHop, bytes, framed, rec, known);
      return;
    }
    const data = bytes;
    if (this.tracer.current && !this.neigh.get(route.dev, nextHop)?.mac) this.tracer.hop(this.traceNs, 'neighbour', `${nextHop} dev ${route.dev}: not resolved yet, ARP request sent, packet queued`);
    this.neigh.resolve(route.dev, nextHop, this.tracer.bind((mac: string) => this.emitFrame(iface, nextHop, data, framed, rec, mac)), this.tracer.bind(() => {
      iface.dev.counters.drop('neighbour-failed');
      if (this.tracer.current) this.traceDrop(route.dev, `ARP for ${nextHop} on ${route.dev} unanswered after 3 probes: dropped, host unreachable`, 'arp-unresolved');
      // Forwarded packets get ICMP host unreachable; locally originated ones are reported
      // to the sending socket, as the kernel reports EHOSTUNREACH to ping.
      if (raw) this.sendIcmpError(repr, raw, { kind: 'dest-unreachable', code: ICMP_UNREACH_HOST, original: EMPTY });
      else this.dispatchError(repr.src, 'dest-unreachable', ICMP_UNREACH_HOST, data);
    }));
  }

  /**
   * The datagram `bytes` leaves `iface` towards `mac`: in `framed` when it was
   * written there (its Ethernet header's room in front), else copied behind a
   * new header. Queued on the dispatcher: it goes out after the current processing.
   */
  private emitFrame(iface: StackInterface, nextHop: string, bytes: Buffer, framed: Buffer | undefined, rec: FlowRecording | undefined, mac: string): void {
    const dev = iface.dev;
    if (this.tracer.current && dev.headerless) {
      this.tracer.hop(this.traceNs, 'neighbour', `${nextHop} dev ${dev.name}: no link layer, no neighbour to resolve (the device gets the next hop)`);
    } else if (this.tracer.current) {
      const e = this.neigh.get(dev.name, nextHop);
      this.tracer.hop(this.traceNs, 'neighbour', `${nextHop} dev ${dev.name} lladdr ${mac} ${e?.state ?? ''}`.trim(), { detail: { neighbour: { ip: nextHop, dev: dev.name, mac, state: e?.state } } });
    }
    let frame = framed;
    if (frame === undefined) {
      frame = Buffer.allocUnsafe(ETHERNET_HEADER_LEN + bytes.length);
      bytes.copy(frame, ETHERNET_HEADER_LEN);
    }
    writeEthernetHeader(frame, 0, mac, dev.mac, ETHERTYPE_IPV4);
    // What this forwarded packet did becomes its flow's entry (rec is only passed along the forwarding path).
    if (rec && this.flows) this.flows.record(rec, dev, frame, nextHop);
    this.io.transmit(dev, frame, nextHop);
  }

  // ---------------------------------------------------------------- input

  /**
   * A frame arriving on one of this namespace's devices: processed now when
   * the stack is idle, else after the work in hand (the devices' dispatcher).
   */
  input(dev: NetDevice, frame: Buffer): void {
    this.io.receive(dev, frame);
  }

  /** Processes one received frame (traced when it belongs to a running trace); called by the dispatcher only. */
  private inputNow(dev: NetDevice, frame: Buffer): void {
    // A running trace forces the slow path: every decision is made where it can be recorded.
    if (this.flows !== undefined && this.tracer.filters.size === 0 && this.tracer.current === null && this.flows.forward(dev, frame)) return;
    if (this.tracer.filters.size && !this.tracer.current) {
      const ctx = this.tracer.matchFrame(frame);
      if (ctx) {
        this.tracer.run(ctx, () => this.inputFrame(dev, frame));
        return;
      }
    }
    this.inputFrame(dev, frame);
  }

  private inputFrame(dev: NetDevice, frame: Buffer): void {
    // The Ethernet header read in place: MACs compared as bytes, not turned into strings.
    const etherType = ethernetType(frame);
    if (isWireError(etherType)) {
      dev.counters.drop(`malformed-ethernet:${etherType.reason}`);
      return;
    }
    // Group addresses (broadcast, multicast) have the I/G bit set; a unicast frame must be ours.
    if ((frame[0] & 1) === 0 && !dev.isOwnMac(frame, 0)) {
      dev.counters.drop('other-host');
      if (this.tracer.current) this.traceDrop(dev.name, `destination MAC ${readMac(frame, 0)} is not ${dev.name}'s: dropped`, 'other-host');
      return;
    }
    const l3 = frame.subarray(ETHERNET_HEADER_LEN);
    if (etherType === ETHERTYPE_ARP) return this.inputArp(dev, l3);
    if (etherType !== ETHERTYPE_IPV4) {
      dev.counters.drop('unknown-ethertype');
      return;
    }
    const parsed = parseIpv4(l3);
    if (isWireError(parsed)) {
      dev.counters.drop(`malformed-ipv4:${parsed.reason}`);
      return;
    }
    let ip = parsed;
    let raw = l3.subarray(0, 20 + (ip.options?.length ?? 0) + ip.payload.length);
    let st: NfState | undefined;
    // A packet that could start a flow entry, unless a hook or the route says otherwise.
    let rec = this.flows !== undefined && this.tracer.current === null ? this.flows.begin(dev, frame) : undefined;
    if (this.nf.prerouting.active) {
      st = nfState('prerouting', dev.name);
      if (rec) st.flowKeep = rec.keep;
      const pkt = Ipv4Packet.unchecked(raw);
      const out = this.nf.prerouting.run(pkt, st);
      if (!out) {
        if (!st.stolen) dev.counters.drop(st.dropReason ?? 'netfilter');
        return;
      }
      if (st.noFlow) rec = undefined;
      if (out !== pkt || out.modified) {
        raw = out.datagram;
        const again = parseIpv4(raw, { verifyChecksum: false });
        if (isWireError(again)) return;
        ip = again;
      }
    }
    this.routeInput(ip, raw, dev, st, rec);
  }

  /**
   * Hands back a packet a hook kept (NF_QUEUE: kube-proxy's first packet of a
   * connection while its engine decides): the hooks after `after` run, then
   * the packet goes on as if it had never stopped: routed after PREROUTING,
   * or sent after OUTPUT. `pkt` null: the hook's owner dropped it (`st.dropReason`).
   */
  reinject(pkt: Ipv4Packet | null, st: NfState, after: NfHookOps): void {
    st.stolen = false;
    if (st.hook === 'prerouting') {
      const dev = st.inDev !== undefined ? this.interfaces.get(st.inDev)?.dev : undefined;
      const counters = dev?.counters ?? this.counters;
      const out = pkt && this.nf.prerouting.runAfter(after, pkt, st);
      if (!out) {
        if (!st.stolen) {
          counters.drop(st.dropReason ?? 'netfilter');
          if (this.tracer.current) this.traceDrop(st.inDev ?? 'prerouting', `dropped by netfilter PREROUTING (${st.dropReason ?? 'netfilter'})`, st.dropReason ?? 'netfilter');
        }
        return;
      }
      const ip = parseIpv4(out.datagram, { verifyChecksum: false });
      if (isWireError(ip)) return;
      if (!dev) {
        this.counters.drop('device-gone');
        return;
      }
      this.routeInput(ip, out.datagram, dev, st, undefined);
      return;
    }
    const out = pkt && this.nf.output.runAfter(after, pkt, st);
    if (!out) {
      if (!st.stolen) this.counters.drop(st.dropReason ?? 'netfilter');
      return;
    }
    const repr = parseIpv4(out.datagram, { verifyChecksum: false });
    if (isWireError(repr)) return;
    const route = this.routeFor(repr.dst);
    if (!route) {
      this.counters.drop('no-route');
      return;
    }
    st.outDev = route.dev;
    this.sendRouted(repr, route, repr.dontFragment ? 'want' : 'dont', st, out.datagram);
  }

  /** After PREROUTING: local delivery or forwarding. */
  private routeInput(ip: Ipv4Repr, raw: Buffer, dev: NetDevice, st: NfState | undefined, rec: FlowRecording | undefined): void {
    if (this.local.has(ip.dst) || ip.dst === '255.255.255.255') {
      this.deliverLocal(ip, raw, st, dev);
      return;
    }
    if (!this.forwarding) {
      dev.counters.drop('not-for-us');
      if (this.tracer.current) this.traceDrop(dev.name, `${ip.dst} is not an address of this namespace: dropped`, 'not-for-us');
      return;
    }
    this.forward(ip, raw, dev, st, rec);
  }

  private forward(ip: Ipv4Repr, raw: Buffer, inDev: NetDevice, st?: NfState, rec?: FlowRecording): void {
    if (ip.ttl <= 1) {
      inDev.counters.drop('ttl-exceeded');
      if (this.tracer.current) this.traceDrop('routing', `ttl ${ip.ttl} would reach 0 here: dropped, ICMP time exceeded sent back to ${ip.src}`, 'ttl-exceeded');
      this.sendIcmpError(ip, raw, { kind: 'time-exceeded', code: ICMP_TIMXCEED_INTRANS, original: EMPTY });
      return;
    }
    const route = this.routes.lookup(ip.dst);
    if (!route) {
      inDev.counters.drop('no-route');
      if (this.tracer.current) this.traceDrop('routing', `no route to ${ip.dst}: dropped, ICMP net unreachable sent back to ${ip.src}`, 'no-route');
      this.sendIcmpError(ip, raw, { kind: 'dest-unreachable', code: ICMP_UNREACH_NET, original: EMPTY });
      return;
    }
    if (this.tracer.current) {
      this.tracer.hop(this.traceNs, 'routing', `${ip.dst} matches "${formatRoute(route)}"; ttl ${ip.ttl} -> ${ip.ttl - 1}`, { detail: { route: formatRoute(route), ttl: ip.ttl - 1 } });
    }
    // Copy before patching: the received frame may be shared (bridge flooding).
    let copy: Buffer = Buffer.from(raw);
    decrementTtlInPlace(copy);
    let repr: Ipv4Repr = { ...ip, ttl: ip.ttl - 1 };
    if (!st && (this.nf.forward.active || this.nf.postrouting.active)) st = nfState('forward', inDev.name);
    // The copy is this packet's own: hooks may rewrite it in place.
    if (st) {
      st.owned = true;
      if (rec) st.flowKeep = rec.keep;
    }
    if (st && this.nf.forward.active) {
      const s = st;
      s.inDev = inDev.name;
      s.outDev = route.dev;
      const passed = this.runChain(this.nf.forward, 'forward', copy, s, inDev.counters);
      if (!passed) return;
      if (passed.ip) ({ raw: copy, ip: repr } = passed as { raw: Buffer; ip: Ipv4Repr });
      if (s.noFlow) rec = undefined;
    }
    this.output(repr, copy, route, st, undefined, rec);
  }

  /**
   * Runs one hook chain on a datagram. Null when a hook dropped it (counted on
   * `counters` and traced) or a rewrite left it unparsable; otherwise the bytes
   * to go on with, with their Repr when a hook rewrote them.
   */
  private runChain(chain: Netfilter['input'], point: 'forward' | 'input', raw: Buffer, s: NfState, counters: Counters): { raw: Buffer; ip?: Ipv4Repr } | null {
    const pkt = Ipv4Packet.unchecked(raw);
    const out = chain.run(pkt, s);
    if (!out) {
      const reason = s.dropReason ?? 'netfilter';
      counters.drop(reason);
      if (this.tracer.current) this.traceDrop(point, `dropped by netfilter ${point.toUpperCase()} (${reason})`, reason);
      return null;
    }
    if (out === pkt && !out.modified) return { raw };
    const again = parseIpv4(out.datagram, { verifyChecksum: false });
    return isWireError(again) ? null : { raw: out.datagram, ip: again };
  }

  private inputArp(dev: NetDevice, payload: Buffer): void {
    const iface = this.interfaces.get(dev.name);
    const arp = parseArp(payload);
    if (isWireError(arp)) {
      dev.counters.drop(`malformed-arp:${arp.reason}`);
      return;
    }
    if (!iface?.arp) {
      dev.counters.drop('arp-on-noarp');
      return;
    }
    const forUs = iface.addrs.some((a) => a.ip === arp.targetIp);
    this.neigh.learn(dev.name, arp.senderIp, arp.senderMac, forUs);
    if (arp.op === ARP_REQUEST && forUs) {
      const reply = serializeArp({
        op: ARP_REPLY,
        senderMac: dev.mac,
        senderIp: arp.targetIp,
        targetMac: arp.senderMac,
        targetIp: arp.senderIp,
      });
      this.io.transmit(dev, serializeEthernet({ dst: arp.senderMac, src: dev.mac, etherType: ETHERTYPE_ARP, payload: reply }));
    }
  }

  private sendArpRequest(devName: string, ip: string): void {
    const iface = this.interfaces.get(devName);
    if (!iface) return;
    const route = this.routes.lookup(ip);
    const senderIp = (route?.dev === devName ? route.src : undefined) ?? iface.addrs[0]?.ip ?? '0.0.0.0';
    const req = serializeArp({ op: ARP_REQUEST, senderMac: iface.dev.mac, senderIp, targetMac: '00:00:00:00:00:00', targetIp: ip });
    this.io.transmit(iface.dev, serializeEthernet({ dst: BROADCAST_MAC, src: iface.dev.mac, etherType: ETHERTYPE_ARP, payload: req }));
  }

  /** Incomplete datagrams time out on a timer, as ipfrag_time does, not only when another fragment arrives. */
  private armReassemblyTimer(): void {
    if (this.reassemblyTimer) return;
    const due = this.reassembler.nextExpiryMs();
    if (due === undefined) return;
    this.reassemblyTimer = this.clock.setTimeout(() => {
      this.reassemblyTimer = undefined;
      this.reassembler.expire(this.clock.now());
      this.armReassemblyTimer();
    }, Math.max(0, due - this.clock.now()));
  }

  private deliverLocal(ipIn: Ipv4Repr, raw: Buffer, st?: NfState, inDev?: NetDevice): void {
    let ip = ipIn;
    if (ip.moreFragments || ip.fragmentOffset > 0) {
      const whole = this.reassembler.push(ip, this.clock.now());
      this.armReassemblyTimer();
      if (!whole) return;
      ip = whole;
      raw = serializeIpv4({ ...whole, moreFragments: false, fragmentOffset: 0 });
    }
    if (this.nf.input.active) {
      // INPUT runs after reassembly, as ip_local_deliver does.
      const s = st ?? nfState('input', inDev?.name ?? 'lo');
      const passed = this.runChain(this.nf.input, 'input', raw, s, (inDev ?? { counters: this.counters }).counters);
      if (!passed) return;
      if (passed.ip) ({ raw, ip } = passed as { raw: Buffer; ip: Ipv4Repr });
    }
    if (this.tracer.current) this.tracer.hop(this.traceNs, 'local', `${ip.dst} is a local address: delivered to the ${ip.protocol === IPPROTO_ICMP ? 'ICMP' : ip.protocol === IPPROTO_UDP ? 'UDP' : ip.protocol === 6 ? 'TCP' : `protocol ${ip.protocol}`} layer`);
    if (ip.protocol === IPPROTO_ICMP) return this.deliverIcmp(ip, raw);
    if (ip.protocol === IPPROTO_UDP) return this.deliverUdp(ip, raw);
    const handler = this.protocols.get(ip.protocol);
    if (handler) return handler.input(ip, raw);
    this.counters.drop('unknown-protocol');
    this.sendIcmpError(ip, raw, { kind: 'dest-unreachable', code: ICMP_UNREACH_PROTOCOL, original: EMPTY });
  }

  private deliverIcmp(ip: Ipv4Repr, raw: Buffer): void {
    const icmp = parseIcmp(ip.payload);
    if (isWireError(icmp)) {
      this.counters.drop(`malformed-icmp:${icmp.reason}`);
      return;
    }
    switch (icmp.kind) {
      case 'echo-request': {
        const frame = serializeIcmpFramed({ kind: 'echo-reply', id: icmp.id, seq: icmp.seq, data: icmp.data }, FRAME_ROOM);
        this.send({ dst: ip.src, src: ip.dst === '255.255.255.255' ? undefined : ip.dst, protocol: IPPROTO_ICMP, payload: frame.subarray(FRAME_ROOM), frame, pmtudisc: 'dont' });
        return;
      }
      case 'echo-reply': {
        const sock = this.icmpSockets.get(icmp.id);
        if (!sock) {
          this.counters.drop('no-icmp-socket');
          return;
        }
        sock({ kind: 'echo-reply', from: ip.src, ttl: ip.ttl, id: icmp.id, seq: icmp.seq, data: icmp.data, bytes: ip.payload.length });
        return;
      }
      case 'dest-unreachable':
      case 'time-exceeded':
        this.dispatchError(ip.src, icmp.kind, icmp.code, icmp.original, icmp.kind === 'dest-unreachable' ? icmp.nextHopMtu : undefined);
        return;
      default:
        this.counters.drop('icmp-ignored');
        void raw;
    }
  }

  /**
   * Hands an ICMP error to the socket that sent the quoted datagram: a ping
   * socket by echo id, a UDP socket by source port. The quote is read leniently
   * (it is truncated by design), straight from the header fields.
   */
  private dispatchError(from: string, type: 'dest-unreachable' | 'time-exceeded', code: number, quote: Buffer, nextHopMtu?: number): void {
    const q = Ipv4Packet.quoted(quote);
    if (isWireError(q)) return;
    const proto = q.protocol;
    const body = quote.subarray(q.headerLen);
    if (proto === IPPROTO_ICMP && body.length >= 8 && body[0] === 8) {
      const id = body.readUInt16BE(4);
      const seq = body.readUInt16BE(6);
      this.icmpSockets.get(id)?.({ kind: 'error', from, type, code, nextHopMtu, id, seq });
    } else if (proto === IPPROTO_UDP && body.length >= 8) {
      const sport = body.readUInt16BE(0);
      const dport = body.readUInt16BE(2);
      this.udpSockets.get(sport)?.error?.({ from, type, code, dstIp: q.dst, dstPort: dport });
    } else {
      this.protocols.get(proto)?.icmpError?.({ from, type, code, nextHopMtu, quote });
    }
  }

  private deliverUdp(ip: Ipv4Repr, raw: Buffer): void {
    // The pseudo header from the header's own words: the addresses were read once, into ip's strings.
    const udp = parseUdp(ip.payload, raw.readUInt32BE(12), raw.readUInt32BE(16));
    if (isWireError(udp)) {
      this.counters.drop(`malformed-udp:${udp.reason}`);
      return;
    }
    const sock = this.udpSockets.get(udp.dstPort);
    if (!sock) {
      this.counters.drop('udp-port-unreachable');
      if (this.tracer.current) this.traceDrop('udp', `no socket on UDP port ${udp.dstPort}: ICMP port unreachable sent back`, 'port-unreachable');
      if (ip.dst !== '255.255.255.255') this.sendIcmpError(ip, raw, { kind: 'dest-unreachable', code: ICMP_UNREACH_PORT, original: EMPTY });
      return;
    }
    sock.message({ data: udp.payload, srcIp: ip.src, srcPort: udp.srcPort, dstIp: ip.dst, dstPort: udp.dstPort, ttl: ip.ttl });
  }

  /**
   * Sends an ICMP error about `orig` back to its source (RFC 1122 3.2.2): never
   * about an ICMP error, a non-first fragment, or a broadcast/unspecified source.
   */
  private sendIcmpError(orig: Ipv4Repr, raw: Buffer, err: IcmpRepr): void {
    if (orig.fragmentOffset > 0) return;
    if (orig.src === '0.0.0.0' || orig.src === '255.255.255.255') return;
    if (orig.protocol === IPPROTO_ICMP && orig.payload.length > 0) {
      const t = orig.payload[0];
      if (t !== 8 && t !== 0 && t !== 13 && t !== 14) return;
    }
    const quoted = { ...err, original: icmpErrorQuote(raw) } as IcmpRepr;
    const route = this.routes.lookup(orig.src);
    if (!route) return;
    if (this.tracer.current) this.tracer.hop(this.traceNs, 'icmp', `sends ICMP ${err.kind} (code ${'code' in err ? err.code : 0}) to ${orig.src}`);
    this.send({ dst: orig.src, src: this.sourceFor(route), protocol: IPPROTO_ICMP, payload: serializeIcmp(quoted), pmtudisc: 'dont' });
  }

  /** REJECT with ICMP port unreachable about `raw`, sent from `from` (kube-proxy, no endpoints). */
  rejectPortUnreachable(raw: Buffer, from: string): void {
    const orig = parseIpv4(raw, { verifyChecksum: false });
    if (isWireError(orig)) return;
    const route = this.routes.lookup(orig.src);
    if (!route) return;
    const payload = serializeIcmp({ kind: 'dest-unreachable', code: ICMP_UNREACH_PORT, original: icmpErrorQuote(raw) });
    this.send({ dst: orig.src, src: from, protocol: IPPROTO_ICMP, payload, pmtudisc: 'dont' });
  }

  private traceDrop(point: string, summary: string, reason: string): void {
    this.tracer.hop(this.traceNs, point, summary, { drop: reason });
  }
}
