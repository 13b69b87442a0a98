/**
 * A node's data plane, without any control plane: the node's namespace (lo,
 * eth0 on the underlay, cni0, flannel.1), the real UDP underlay, and the pods'
 * namespaces hanging off cni0. The agent drives it from the apiserver; tests
 * and benchmarks drive it directly.
 */
import type { Clock } from '../common/clock.ts';
import { SeededRng, deriveMac } from '../common/rng.ts';
import { intToIpv4 } from '../packet/addr.ts';
import type { BackendName, EmulatedLink, NetworkBackend, PlanAction } from '../backends/backend.ts';
import { backendNamed } from '../backends/registry.ts';
import { UdpUnderlay } from '../overlay/underlay-udp.ts';
import type { RawWire } from '../overlay/underlay-raw.ts';
import { Bridge } from '../netstack/link/bridge.ts';
import { IpStack } from '../netstack/ipv4/ip-stack.ts';
import { Tracer } from '../netstack/trace.ts';
import type { Netfilter } from '../netstack/netfilter/netfilter.ts';
import { ServiceNat, type NatEngine, type NatHost } from '../netstack/netfilter/service-nat.ts';
import { IfindexAllocator, NetDevice } from '../netstack/link/netdev.ts';
import { PodNet } from '../netstack/pod-net.ts';
import { parseCidr } from '../netstack/ipv4/route-table.ts';

export { DEFAULT_WIRE_PORT } from '../backends/routed-wire.ts';
import { DEFAULT_WIRE_PORT } from '../backends/routed-wire.ts';

export interface DataPlaneOptions {
  name: string;
  /** The pod-network backend (backends/registry.ts); default: the registry's default (vxlan). */
  backend?: BackendName;
  /** The bare-IPv4 wire's UDP port (backends with pods on the underlay, local mode). */
  wirePort?: number;
  /** Backends with pods on the underlay, root modes: real frames on the real eth0 instead of the UDP wire (started by the caller). */
  rawWire?: Pick<RawWire, 'send' | 'attach' | 'sent' | 'received'>;
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
  /** The node namespace's flow cache for established forwarded flows (netstack/flow/); default on. */
  fastPath?: boolean;
}

export class NodeDataPlane {
  readonly stack: IpStack;
  readonly eth0: NetDevice;
  readonly bridge: Bridge;
  readonly backend: NetworkBackend;
  /** The backend attached to this node: its devices, underlay wiring and views. */
  readonly link: EmulatedLink;
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
    this.backend = backendNamed(opts.backend);
    this.tracer = opts.tracer ?? new Tracer();
    this.tracer.node = name;
    const tracer = this.tracer;
    this.stack = new IpStack(`node ${name}`, { clock, forwarding: true, idSeed: opts.rng.int(0, 0xffff), traceNs: 'node', tracer, fastPath: opts.fastPath });
    const lo = new NetDevice('lo', 'loopback', '00:00:00:00:00:00', 65536, { ifindexes: this.ifindexes, tracer });
    this.stack.addInterface(lo, { arp: false });
    this.stack.addAddress('lo', '127.0.0.1', 8);

    this.eth0 = new NetDevice('eth0', 'ether', opts.eth0Mac ?? deriveMac(seed, `eth0:${name}`), opts.mtu, { ifindexes: this.ifindexes, tracer });
    // With pods on the underlay eth0 has no ARP: peers' MACs are programmed (backends/plan.ts).
    this.stack.addInterface(this.eth0, { arp: !this.backend.ipUnderlay });
    const under = parseCidr(opts.underlayCidr);
    this.stack.addAddress('eth0', opts.ip, under.prefixLen);

    this.link = this.backend.attach({
      name,
      ip: opts.ip,
      podCIDR: opts.podCIDR,
      clusterCidr: opts.clusterCidr,
      vni: opts.vni,
      vtepMac: opts.vtepMac,
      vxlanPort: opts.vxlanPort,
      wirePort: opts.wirePort ?? DEFAULT_WIRE_PORT,
      podMtu: this.podMtu,
      stack: this.stack,
      eth0: this.eth0,
      ifindexes: this.ifindexes,
      rawWire: opts.rawWire,
      underlay: (ports) => new UdpUnderlay({ localIp: opts.ip, ...ports, allowed: { net: intToIpv4(under.net), prefixLen: under.prefixLen }, clock, rng: opts.rng.fork('underlay') }),
    });
    this.underlay = this.link.underlay;
    // Impairments act on every datagram, cached flow or not; a change still re-decides the flows, as any table's does.
    this.underlay.onImpairmentChange = () => this.stack.generation.bump('impairment');

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
      reinject: (pkt, st, after) => this.stack.reinject(pkt, st, after),
    };
  }

  /** Registers kube-proxy's NAT hooks for `engine` (replacing the previous engine's), or removes them. */
  installServiceNat(engine: NatEngine | undefined): ServiceNat | undefined {
    this.serviceNat?.close();
    this.serviceNat = engine ? new ServiceNat(this.netfilter, this.natHost, engine, this.tracer) : undefined;
    return this.serviceNat;
  }

  /** Pods and tunnel devices lose the backend's encapsulation overhead (VXLAN: 50 bytes). */
  get podMtu(): number {
    return this.opts.mtu - this.backend.mtuOverhead;
  }

  /** Which underlay carries the pods' packets: the tunnel's name, raw (real frames on eth0) or udp (the bare-IPv4 wire). */
  get wireKind(): string {
    return this.link.wireKind;
  }

  /** cni0's address: the pods' default gateway (`<podCIDR>.1`). */
  get gateway(): string {
    return intToIpv4((parseCidr(this.opts.podCIDR).net + 1) >>> 0);
  }

  /** Binds the underlay sockets. */
  start(): Promise<void> {
    return this.underlay.start();
  }

  async close(): Promise<void> {
    await this.link.close?.();
    await this.underlay.close();
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
    if (this.link.apply(a)) return;
    switch (a.op) {
      case 'add-neigh':
        if (a.dev === 'eth0') this.link.neighbour?.('add', a.ip, a.mac);
        return this.stack.neigh.setPermanent(a.dev, a.ip, a.mac);
      case 'del-neigh':
        if (a.dev === 'eth0') this.link.neighbour?.('del', a.ip);
        this.stack.neigh.delete(a.dev, a.ip);
        return;
      case 'add-fdb':
      case 'del-fdb':
        // Only a tunnel device has an FDB; the backend took it above if it has one.
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
