/**
 * A node's data plane, without any control plane: the node's namespace (lo,
 * eth0 on the underlay, cni0, flannel.1), the real UDP underlay, and the pods'
 * namespaces hanging off cni0. The agent drives it from the apiserver; tests
 * and benchmarks drive it directly.
 */
import type { Clock } from '../common/clock.ts';
import { SeededRng, deriveMac } from '../common/rng.ts';
import { intToIpv4, readMac } from '../packet/addr.ts';
import { gatewayOf, type Backend, type PlanAction } from '../backends/plan.ts';
import { UdpUnderlay } from '../overlay/underlay-udp.ts';
import type { RawWire } from '../overlay/underlay-raw.ts';
import { Vtep } from '../backends/vxlan/vtep.ts';
import { Bridge } from '../netstack/link/bridge.ts';
import { IpStack } from '../netstack/ipv4/ip-stack.ts';
import { writeEthernetHeader } from '../packet/ethernet.ts';
import { Tracer } from '../netstack/trace.ts';
import type { Netfilter } from '../netstack/netfilter/netfilter.ts';
import { ServiceNat, type NatEngine, type NatHost } from '../netstack/netfilter/service-nat.ts';
import { IfindexAllocator, NetDevice } from '../netstack/link/netdev.ts';
import { PodNet } from '../netstack/pod-net.ts';
import { parseCidr } from '../netstack/ipv4/route-table.ts';

/** The bare-IPv4 wire's default port in local mode (next to VXLAN's 8472). */
export const DEFAULT_WIRE_PORT = 8473;

/** VXLAN over IPv4 costs 50 bytes: outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8. */
export const VXLAN_OVERHEAD = 50;

export interface DataPlaneOptions {
  name: string;
  /** vxlan (default): flannel.1 and UDP 8472; host-gw and bgp: bare IPv4 on the wire. */
  backend?: Backend;
  /** The bare-IPv4 wire's UDP port (unencapsulated backends, local mode). */
  wirePort?: number;
  /** Unencapsulated backends in root modes: real frames on the real eth0 instead of the UDP wire (started by the caller). */
  rawWire?: Pick<RawWire, 'send' | 'onFrame' | 'sent' | 'received'>;
  ip: string;
  underlayCidr: string;
  podCIDR: string;
  vtepMac: string;
  /** eth0's MAC (default: derived from the seed; with a raw wire, the real eth0's). */
  eth0Mac?: string;
  clusterCidr: string;
  vxlanPort: number;
  vni: number;
  seed: number;
  mtu: number;
  clock: Clock;
  rng: SeededRng;
  /** The node's tracer, shared by its namespaces (default: a fresh one). */
  tracer?: Tracer;
}

export class NodeDataPlane {
  readonly stack: IpStack;
  readonly eth0: NetDevice;
  readonly bridge: Bridge;
  /** flannel.1; absent with the unencapsulated backends. */
  readonly vtep?: Vtep;
  readonly backend: Backend;
  /** eth0 neighbours' MAC → underlay IP, for the bare wire (kept from the plan). */
  private readonly wirePeers = new Map<string, string>();
  readonly underlay: UdpUnderlay;
  readonly pods = new Map<string, PodNet>();
  /** The node namespace's hook chains and connection table (the stack's). */
  readonly netfilter: Netfilter;
  /** What kube-proxy's NAT hooks need from the node. */
  readonly natHost: NatHost;
  private serviceNat?: ServiceNat;
  /** The node namespace's interface numbers (pods' veth pairs included). */
  private readonly ifindexes = new IfindexAllocator();
  /** Hop-by-hop tracing of this node's packets (`podlab trace`). */
  readonly tracer: Tracer;

  constructor(readonly opts: DataPlaneOptions) {
    const { name, seed, clock } = opts;
    this.tracer = opts.tracer ?? new Tracer();
    const tracer = this.tracer;
    this.stack = new IpStack(`node ${name}`, { clock, forwarding: true, idSeed: opts.rng.int(0, 0xffff), traceNs: 'node', tracer });
    const lo = new NetDevice('lo', 'loopback', '00:00:00:00:00:00', 65536, { ifindexes: this.ifindexes, tracer });
    this.stack.addInterface(lo, { arp: false });
    this.stack.addAddress('lo', '127.0.0.1', 8);

    this.eth0 = new NetDevice('eth0', 'ether', opts.eth0Mac ?? deriveMac(seed, `eth0:${name}`), opts.mtu, { ifindexes: this.ifindexes, tracer });
    // On the bare wire eth0 has no ARP: peers' MACs are programmed (see flannel-plan.ts).
    this.stack.addInterface(this.eth0, { arp: (opts.backend ?? 'vxlan') === 'vxlan' });
    const under = parseCidr(opts.underlayCidr);
    this.stack.addAddress('eth0', opts.ip, under.prefixLen);

    this.backend = opts.backend ?? 'vxlan';
    const encap = this.backend === 'vxlan';
    this.underlay = new UdpUnderlay({
      localIp: opts.ip,
      port: encap ? opts.vxlanPort : 0,
      wirePort: encap || opts.rawWire ? undefined : (opts.wirePort ?? DEFAULT_WIRE_PORT),
      // Raw frames need no sending sockets: the impairments are all that is used.
      sourcePorts: !encap && opts.rawWire ? 0 : undefined,
      allowed: { net: intToIpv4(under.net), prefixLen: under.prefixLen },
      clock,
      rng: opts.rng.fork('underlay'),
    });
    if (encap) {
      const vtep = new Vtep({ vni: opts.vni, mac: opts.vtepMac, mtu: this.podMtu, port: opts.vxlanPort, underlay: this.underlay, eth0: this.eth0, ifindex: this.ifindexes.take() });
      this.vtep = vtep;
      this.underlay.onDatagram = (buf, from) => vtep.decap(buf, from);
      this.stack.addInterface(vtep.dev, { arp: false });
      this.stack.addAddress('flannel.1', gatewayOf(opts.podCIDR), 32);
    } else if (opts.rawWire) {
      this.attachRawWire(opts.rawWire);
    } else {
      this.attachWire();
    }

    this.netfilter = this.stack.nf;
    this.bridge = new Bridge('cni0', deriveMac(seed, `cni0:${name}`), this.podMtu, clock, undefined, { netfilter: this.netfilter.bridgeForward, ifindexes: this.ifindexes, tracer });
    this.stack.addInterface(this.bridge.dev, { arp: true });
    this.stack.addAddress('cni0', this.gateway, parseCidr(opts.podCIDR).prefixLen);

    this.natHost = {
      isLocal: (ip) => this.stack.isLocal(ip),
      sourceTowards: (dst) => {
        const r = this.stack.routes.lookup(dst);
        return r ? this.stack.sourceFor(r) : undefined;
      },
      reject: (raw, from) => this.stack.rejectPortUnreachable(raw, from),
      isLocalPod: (ip) => [...this.pods.values()].some((p) => p.ip === ip),
    };
  }

  /** Registers kube-proxy's NAT hooks for `engine` (replacing the previous engine's), or removes them. */
  installServiceNat(engine: NatEngine | undefined): ServiceNat | undefined {
    this.serviceNat?.close();
    this.serviceNat = engine ? new ServiceNat(this.netfilter, this.natHost, engine, this.tracer) : undefined;
    return this.serviceNat;
  }

  /** Pods and flannel.1 lose VXLAN's 50 bytes; without encapsulation pods get the full MTU. */
  get podMtu(): number {
    return (this.opts.backend ?? 'vxlan') === 'vxlan' ? this.opts.mtu - VXLAN_OVERHEAD : this.opts.mtu;
  }

  /**
   * The unencapsulated underlay of local mode: what eth0 transmits goes, minus
   * its Ethernet header, as a bare IPv4 packet to the peer that owns the
   * destination MAC; what arrives is framed again for eth0.
   */
  private attachWire(): void {
    this.eth0.wire = this.wireTransmit(
      'bare IPv4 packet',
      (peer, frame) => this.underlay.sendBare(peer, frame.subarray(14)),
      (verdict, peer) => `bare IPv4 packet (pod addresses intact, no encapsulation) sent to ${peer}:${this.underlay.wirePort} UDP${verdict === 'sent' ? '' : ` (impairment: ${verdict})`}`,
    );
    this.underlay.onBare = (buf, from) =>
      this.receiveTraced(buf, `bare IPv4 packet from ${from.address}:${from.port}, ${buf.length} bytes`, () => {
        const frame = Buffer.allocUnsafe(14 + buf.length);
        const srcMac = [...this.wirePeers].find(([, ip]) => ip === from.address)?.[0] ?? '02:00:00:00:00:00';
        writeEthernetHeader(frame, 0, this.eth0.mac, srcMac, 0x0800);
        buf.copy(frame, 14);
        this.eth0.receive(frame);
      });
  }

  /**
   * The unencapsulated underlay of root modes: eth0's frames go out as they
   * are on the real eth0 (pod addresses intact, the next hop's MAC), through
   * the impairment towards the peer that owns the destination MAC; frames the
   * raw wire claims come in on eth0 (overlay/underlay-raw.ts).
   */
  private attachRawWire(raw: NonNullable<DataPlaneOptions['rawWire']>): void {
    const put = (f: Buffer) => {
      if (!raw.send(f)) this.eth0.counters.drop('raw-send-failed');
    };
    this.eth0.wire = this.wireTransmit(
      'raw frame',
      (peer, frame) => this.underlay.throughImpairment(peer, frame, put),
      (verdict, peer, dst) => `raw frame on the real eth0 to ${dst} (${peer}), pod addresses intact, no encapsulation${verdict === 'sent' ? '' : ` (impairment: ${verdict})`}`,
    );
    raw.onFrame = (frame) => this.receiveTraced(frame.subarray(14), `raw frame from ${readMac(frame, 6)} on the real eth0, ${frame.length} bytes`, () => this.eth0.receive(frame));
  }

  /**
   * eth0's transmit on an unencapsulated wire: finds the peer that owns the
   * destination MAC (from the plan's neighbours), hands the frame to `send`
   * and records the hop while a trace runs.
   */
  private wireTransmit(kind: string, send: (peer: string, frame: Buffer) => string, describe: (verdict: string, peer: string, dst: string) => string): (frame: Buffer) => void {
    return (frame) => {
      const dst = readMac(frame, 0);
      const peer = this.wirePeers.get(dst);
      if (!peer) {
        this.eth0.counters.drop('no-wire-peer');
        if (this.tracer.current) this.tracer.hop('node', 'eth0', `no underlay peer owns ${dst}: dropped`, { drop: 'no-wire-peer' });
        return;
      }
      const verdict = send(peer, frame);
      if (!this.tracer.current) return;
      const lost = verdict === 'lost' || verdict === 'blackholed' || verdict === 'refused';
      this.tracer.hop('node', 'underlay', lost ? `${kind} ${verdict} (towards ${peer})` : describe(verdict, peer, dst), {
        drop: lost ? (verdict === 'refused' ? 'underlay-refused' : `impairment-${verdict}`) : undefined,
      });
    };
  }

  /** Delivers what a wire received, inside the trace it belongs to (if a trace filter matches its IPv4 packet). */
  private receiveTraced(ipPacket: Buffer, hop: string, deliver: () => void): void {
    const ctx = this.tracer.filters.size ? this.tracer.matchIpv4(ipPacket) : null;
    const run = () => {
      if (this.tracer.current) this.tracer.hop('node', 'underlay', hop);
      deliver();
    };
    if (ctx) this.tracer.run(ctx, run);
    else run();
  }

  /** Which underlay carries unencapsulated packets: 'vxlan', 'raw' (real frames on eth0) or 'udp' (the bare-IPv4 wire). */
  get wireKind(): 'vxlan' | 'raw' | 'udp' {
    return this.backend === 'vxlan' ? 'vxlan' : this.opts.rawWire ? 'raw' : 'udp';
  }

  /** cni0's address: the pods' default gateway (`<podCIDR>.1`). */
  get gateway(): string {
    return intToIpv4((parseCidr(this.opts.podCIDR).net + 1) >>> 0);
  }

  /** Binds the underlay sockets. */
  start(): Promise<void> {
    return this.underlay.start();
  }

  close(): Promise<void> {
    return this.underlay.close();
  }

  /** Creates a pod's namespace and plugs its veth into cni0 (the CNI ADD). */
  addPod(p: { namespace: string; name: string; uid: string; ip: string }): PodNet {
    const net = new PodNet({
      ...p,
      podCIDR: this.opts.podCIDR,
      gateway: this.gateway,
      clusterCidr: this.opts.clusterCidr,
      mtu: this.podMtu,
      seed: this.opts.seed,
      clock: this.opts.clock,
      nodeName: this.opts.name,
      ifindexes: this.ifindexes,
      tracer: this.tracer,
    });
    this.bridge.addPort(net.hostVeth);
    this.pods.set(net.key, net);
    return net;
  }

  /** Unplugs and forgets a pod (the CNI DEL). */
  removePod(net: PodNet): void {
    this.bridge.removePort(net.hostVeth);
    this.stack.neigh.delete('cni0', net.ip);
    this.pods.delete(net.key);
  }

  /** Applies one step of a plan to the kernel-like tables. */
  applyPlan(a: PlanAction): void {
    switch (a.op) {
      case 'add-neigh':
        if (a.dev === 'eth0') this.wirePeers.set(a.mac, a.ip);
        return this.stack.neigh.setPermanent(a.dev, a.ip, a.mac);
      case 'del-neigh':
        if (a.dev === 'eth0') for (const [mac, ip] of this.wirePeers) if (ip === a.ip) this.wirePeers.delete(mac);
        this.stack.neigh.delete(a.dev, a.ip);
        return;
      case 'add-fdb':
        this.vtep?.fdb.set(a.mac, a.dst);
        return;
      case 'del-fdb':
        this.vtep?.fdb.delete(a.mac);
        return;
      case 'add-route': {
        const [dst, len] = a.cidr.split('/');
        this.stack.routes.replace({ dst, prefixLen: Number(len), gateway: a.via, dev: a.dev, onlink: a.onlink || undefined, proto: a.proto, scope: 'global' });
        return;
      }
      case 'del-route': {
        const [dst, len] = a.cidr.split('/');
        this.stack.routes.delete(dst, Number(len));
        return;
      }
    }
  }

  /** Devices of the node's namespace, for `ip link`. */
  devices(): NetDevice[] {
    return [...[...this.stack.interfaces.values()].map((i) => i.dev), ...[...this.pods.values()].map((p) => p.hostVeth)];
  }
}
