/**
 * The contract every pod-network backend implements, as Flannel's
 * pkg/backend does (a Backend builds a Network for a lease; the manager
 * registers them by type). A backend is one folder (backends/<name>/) with
 * one `NetworkBackend` value, registered by one line in ./registry.ts.
 *
 * A backend says, for the node agent and the lab:
 * - its name, help text and MTU overhead;
 * - the Node annotations it publishes and the lease it reads back from a Node;
 * - its plan: the lease of every other node turned into table changes;
 * - how it attaches to an emulated node (devices, underlay wiring, views);
 * - whether and how a kernel node runs it (kernel-node/).
 *
 * Nothing outside backends/ compares a backend's name: it asks the backend.
 */
import type { Node } from '../control-plane/types.ts';
import type { IpPool } from '../control-plane/calico.ts';
import type { IpStack } from '../netstack/ipv4/ip-stack.ts';
import type { IfindexAllocator, NetDevice } from '../netstack/link/netdev.ts';
import type { RouteProto } from '../netstack/ipv4/route-table.ts';
import type { UdpUnderlay, UnderlayOptions } from '../overlay/underlay-udp.ts';
import type { RawWire } from '../overlay/underlay-raw.ts';
import type { Eth0Sockets } from '../overlay/eth0-sockets.ts';

/** A backend's name as `--backend` spells it. */
export type BackendName = string;

/** What a node publishes about itself: its subnet lease, as one backend reads it. */
export interface Lease {
  node: string;
  podCIDR: string;
  publicIp: string;
  backend: BackendName;
  /** Tunnel backends: the remote tunnel endpoint's MAC and network id (VXLAN's VtepMAC and VNI). */
  vtepMac?: string;
  vni?: number;
  /** The node's eth0 MAC, where published (podlab's own annotation). */
  eth0Mac?: string;
}

/** One change to a node's tables; `node` names the peer it is for. */
export type PlanAction =
  | { op: 'add-neigh'; dev: string; ip: string; mac: string; node: string }
  | { op: 'del-neigh'; dev: string; ip: string; node: string }
  /** FDB entries live on the backend's tunnel device. */
  | { op: 'add-fdb'; mac: string; dst: string; node: string }
  | { op: 'del-fdb'; mac: string; node: string }
  | { op: 'add-route'; cidr: string; via: string; dev: string; onlink: boolean; proto: RouteProto; node: string }
  | { op: 'del-route'; cidr: string; node: string };

/** The node a plan is computed for. */
export interface PlanSelf {
  node: string;
  /** The network id this node's tunnel uses (VXLAN's VNI); leases of another are skipped. */
  vni: number;
}

/** What a node knows about itself when it registers. */
export interface NodeIdentity {
  ip: string;
  underlayPrefixLen: number;
  vni: number;
  /** The tunnel device's MAC (VXLAN's VtepMAC), kept across restarts. */
  vtepMac: string;
}

/** A route a BGP speaker learned, with what decides how it is installed. */
export interface LearnedRoute {
  prefix: string;
  nextHop: string;
  /** The node's own underlay address and prefix (CrossSubnet compares the next hop with it). */
  self: { ip: string; underlayPrefixLen: number };
  pools: IpPool[];
}

/** A device a capture may open, with the line `podlab capture --list` shows. */
export interface CaptureDevice {
  dev: NetDevice;
  description: string;
}

/** What an emulated node gives a backend to attach to. */
export interface EmulatedNodeContext {
  name: string;
  ip: string;
  podCIDR: string;
  vni: number;
  vtepMac: string;
  vxlanPort: number;
  /** The bare-IPv4 wire's UDP port (routed backends, local mode). */
  wirePort: number;
  /** The cluster's pod network (flannel's Network, e.g. 10.244.0.0/16). */
  clusterCidr: string;
  /** The MTU pods and tunnel devices get (the underlay's minus the overhead). */
  podMtu: number;
  stack: IpStack;
  eth0: NetDevice;
  /** The node namespace's interface numbers, for the devices the backend creates. */
  ifindexes: IfindexAllocator;
  /** Real frames on the real eth0 (root modes), when the agent started one. */
  rawWire?: Pick<RawWire, 'send' | 'attach' | 'sent' | 'received'>;
  /** Builds the node's real-socket underlay with the ports the backend needs. */
  underlay(ports: Pick<UnderlayOptions, 'port' | 'wirePort' | 'sourcePorts'>): UdpUnderlay;
}

/** A backend attached to one emulated node: its devices, its underlay and its views. */
export interface EmulatedLink {
  readonly underlay: UdpUnderlay;
  /** Which underlay carries the pods' packets, for `podlab node NODE stats`. */
  readonly wireKind: string;
  /** eth0's socket path when the backend's packets ride real UDP sockets (outer datagrams, for capture). */
  readonly sockets?: Eth0Sockets;
  /** Tunnel devices (flannel.1) with their capture description. */
  readonly devices: CaptureDevice[];
  /**
   * Sees every plan step first: takes the ones its devices implement (VXLAN's
   * FDB entries; a user-space tunnel's peer table) and returns true; false
   * leaves the step to the node's tables.
   */
  apply(a: PlanAction): boolean;
  /** eth0 neighbour learned or forgotten by the plan (the routed wire needs the MAC → peer map). */
  neighbour?(op: 'add' | 'del', ip: string, mac?: string): void;
  /** How `stats` names the underlay, when the wire kind alone does not say it. */
  readonly wireText?: string;
  /** The backend's own counters for `podlab node NODE stats` (flanneld's user-space copies). */
  stats?(): Record<string, unknown>;
  /** Stops what the backend runs beside the node's tables (flanneld's thread). */
  close?(): Promise<void>;
  /** `bridge fdb` lines for the backend's devices. */
  fdb?(): { dev: string; fdb: Map<string, string> };
  /** `ip -d link`'s details for the tunnel device. */
  linkDetails?(): { vxlan?: { vni: number; port: number; local: string } };
}

/** How a kernel node (a real namespace, iproute2) runs a backend. */
export interface KernelSupport {
  /** Creates the backend's devices in namespace `ns`; returns the tunnel MAC to publish, if any. */
  setup(ns: string, o: { ip: string; vni: number; vxlanPort: number; podMtu: number; exists: (dev: string) => boolean }, run: (argv: KernelArgv) => Promise<string>): Promise<{ vtepMac?: string }>;
  /** After registration: addresses on the backend's devices. */
  configure?(ns: string, podCIDR: string, run: (argv: KernelArgv) => Promise<string>): Promise<void>;
  /** The iproute2 command of one plan step (the kernel resolves eth0 neighbours itself: return undefined to skip). */
  command(ns: string, a: PlanAction): KernelArgv | undefined;
  /** Why a kernel node cannot run this backend in a lab with this wire, if it cannot. */
  wireProblem?(wire: 'udp' | 'raw'): string | undefined;
  /** Host tools the kernel node needs (apt package hint). */
  tools?: { names: string[]; hint: string };
  /** The `capture` hint for a kernel node of this backend. */
  captureHint(ns: string, o: { vxlanPort: number }): string;
}

/** A kernel node's command: the program and its arguments. */
export type KernelArgv = [program: 'ip' | 'bridge', ...args: string[]];

export interface NetworkBackend {
  readonly name: BackendName;
  /** One line for `--backend`'s help. */
  readonly help: string;
  /** Bytes the backend's encapsulation costs: pods and tunnel devices get the underlay MTU minus this. */
  readonly mtuOverhead: number;
  /** The tunnel device pods' packets to other nodes leave through (flannel.1), if any. */
  readonly tunnelDevice?: string;
  /**
   * True when the backend's packets cross the underlay as IP packets out of
   * eth0 rather than over the node's UDP sockets: pod packets as they are
   * (host-gw, Calico BGP), or an IP-in-IP tunnel's outer packets. Local labs
   * carry them on the bare-IPv4 UDP wire, root labs as raw frames on eth0
   * (`--wire raw`), and the emulated eth0 needs no ARP (peers' MACs are
   * programmed). False for backends on UDP sockets (VXLAN 8472, flannel UDP 8285).
   */
  readonly ipUnderlay: boolean;
  /** A UDP port captures decode as another protocol (`tshark -d udp.port==PORT,AS`): flannel UDP's 8285 as IP. */
  readonly udpDecode?: { port: number; as: string };
  /** True when routes to other nodes come from BGP (a speaker, or BIRD on kernel nodes). */
  readonly bgp: boolean;
  /**
   * BGP backends: the device a learned route goes out of (default `dev eth0`,
   * as Calico installs routes without encapsulation; Calico IPIP: `dev tunl0
   * onlink` where the pool's ipipMode says to encapsulate).
   */
  learnedRoute?(r: LearnedRoute): { dev: string; onlink: boolean };
  /** The annotations this backend publishes on its Node (null removes one another backend left). */
  annotations(self: NodeIdentity): Record<string, string | null>;
  /** The lease a Node publishes for this backend; undefined when the Node is not this backend's, a reason when its annotations are bad. */
  readLease(node: Node): Lease | string | undefined;
  /** The tunnel MAC a Node published before (a restarted agent keeps it). */
  knownVtepMac?(node: Node | undefined): string | undefined;
  /** Whether `lease` is one this node programs (same backend, same network id). */
  accepts(lease: Lease, self: PlanSelf): boolean;
  /** The actions that turn `current` (what is programmed, by node) into `desired`. */
  plan(desired: Lease[], current: Map<string, Lease>, self: PlanSelf): PlanAction[];
  /** Wires the backend into an emulated node. */
  attach(ctx: EmulatedNodeContext): EmulatedLink;
  /** How a kernel node runs it; absent: kernel nodes cannot. */
  readonly kernel?: KernelSupport;
}
