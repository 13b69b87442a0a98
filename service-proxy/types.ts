/**
 * The contract between kube-proxy's decision engines (this folder) and the
 * node's data path (node-agent/, the lead's): the data path asks `decide()`
 * about the first packet of every new connection, applies the answer (DNAT +
 * conntrack entry, REJECT, DROP or a hand-over to the userspace proxy), and
 * tells the engine when connections are established and gone (IPVS counts
 * them for lc/wlc/sed/nq and for persistence templates).
 *
 * Engines are pure: no I/O, no timers; time comes from an injected clock and
 * every random draw from a SeededRng, so a run replays from its seed.
 */
import type { SeededRng } from '../common/rng.ts';
import type { KubeObject } from '../control-plane/types.ts';
import type { SaveFormatOptions, TableName } from './iptables/rules.ts';

/** kube-proxy's `--proxy-mode`. */
export type ProxyMode = 'iptables' | 'ipvs' | 'userspace';

/** Layer-4 protocols the engines handle. */
export type L4Protocol = 'tcp' | 'udp';

/** The first packet of a new connection, as the data path sees it. */
export interface ServicePacket {
  src: string;
  dst: string;
  protocol: L4Protocol;
  sport: number;
  dport: number;
  /** dst is one of this node's addresses (NodePort traffic): iptables' `-m addrtype --dst-type LOCAL`. */
  localDst: boolean;
  /** The packet came in from a pod on this node (cni0), rather than from the underlay. */
  fromLocalPod: boolean;
  /**
   * The node itself sent it (a host-network process): the packet walks the
   * OUTPUT hooks instead of PREROUTING/FORWARD. Default false.
   */
  fromHost?: boolean;
  /** false: skip building `steps` (the per-connection fast path when no trace is running). Default true. */
  trace?: boolean;
}

/** DNAT to a backend: what the data path writes into its conntrack entry. */
export interface DnatDecision {
  kind: 'dnat';
  to: { ip: string; port: number };
  /** SNAT the packet to the node's address on the way out (KUBE-MARK-MASQ / MASQUERADE). */
  masquerade: boolean;
  /** `namespace/name`. */
  service: string;
  /** kube-proxy's ServicePortName: `namespace/name` plus `:portName` when the port is named. */
  servicePort: string;
  /** The rules / virtual server the packet took, human-readable, in order. */
  steps: string[];
  /** Connection key to hand back in connectionOpened/connectionClosed (see {@link connectionKey}). */
  key: string;
}

/** Refused with an ICMP error (iptables REJECT, or IPVS with no real server). */
export interface RejectDecision {
  kind: 'reject';
  /** `no-endpoints`: a service port without usable endpoints; `not-a-service-port`: an IPVS VIP on a port no service has. */
  reason: 'no-endpoints' | 'not-a-service-port';
  icmp: 'port-unreachable';
  steps: string[];
}

/** Silently dropped (externalTrafficPolicy/internalTrafficPolicy Local without local endpoints, or a firewall rule). */
export interface DropDecision {
  kind: 'drop';
  reason: 'no-local-endpoints' | 'filtered';
  steps: string[];
}

/** The legacy userspace proxy: the connection goes to a node-side listener on `proxyPort`. */
export interface UserspaceDecision {
  kind: 'userspace';
  proxyPort: number;
  /** The ServicePortName to pass to `pickBackend()`. */
  service: string;
  steps: string[];
}

/** A backend picked for a connection the userspace proxy accepted. */
export interface BackendChoice {
  ip: string;
  port: number;
  reason: string;
}

/** One node-side listener of the userspace proxy (a proxied service port). */
export interface ProxyPort {
  /** ServicePortName. */
  servicePort: string;
  protocol: L4Protocol;
  port: number;
}

/**
 * Views only some modes have (`podlab node NODE ipvsadm|ipset`): a member is
 * absent when the mode has no such kernel object, and the command says so.
 */
export interface EngineViews {
  /** `ipvsadm -Ln`: the virtual servers. */
  ipvsadm?(): string;
  /** `ipset list [NAME]`. */
  ipset?(name?: string): string;
}

/** What the engine decided for a first packet. */
export type Decision = DnatDecision | RejectDecision | DropDecision | UserspaceDecision;

/** The interface the node's data path drives. */
export interface ServiceProxyEngine {
  readonly mode: ProxyMode;
  /** Full state from the informers: every Service and every EndpointSlice (all namespaces). */
  update(services: readonly KubeObject[], slices: readonly KubeObject[]): void;
  /** First packet of a new connection (no conntrack entry yet); null = not a service address: continue routing. */
  decide(pkt: ServicePacket): Decision | null;
  /** The connection of a `dnat` decision reached ESTABLISHED (TCP). IPVS counts it as active. */
  connectionOpened(key: string): void;
  /** The connection's conntrack entry is gone. */
  connectionClosed(key: string): void;
  /** `iptables-save`: every mode programs rules (the Service chains, IPVS's glue, the userspace redirects). */
  iptablesSave(table?: TableName, opts?: SaveFormatOptions): string;
  /** Listeners the node must open for the legacy userspace proxy; empty in the other modes. */
  proxyPorts(): ProxyPort[];
  /** A backend for a connection accepted on a proxy port (userspace); null without endpoints or in other modes. */
  pickBackend(service: string, clientIp: string): BackendChoice | null;
  /** The mode's own kernel views. */
  readonly views: EngineViews;
}

/** Minimal clock: milliseconds (monotonic is fine): common/clock.ts's clocks fit. */
export interface EngineClock {
  now(): number;
}

/** What every engine is constructed with. */
export interface EngineOptions {
  /** This node's name (endpoints with this nodeName are local). */
  nodeName: string;
  /** The node's primary address (userspace DNAT target, KUBE-FW checks). */
  nodeIP: string;
  /** Every other address of the node (cni0 gateway, flannel.1, ...): `addrtype LOCAL`. nodeIP is always included. */
  localAddresses?: string[];
  /** `--cluster-cidr` for kube-proxy's local-traffic detector (`! -s <cidr> -j KUBE-MARK-MASQ`); default 10.244.0.0/16; '' disables it. */
  clusterCidr?: string;
  clock: EngineClock;
  rng: SeededRng;
  /** `--iptables-masquerade-bit`, default 14 (mark 0x4000). */
  masqueradeBit?: number;
  /**
   * What kube-proxy writes as "localhost": 127.0.0.0/8. In podlab's local mode the node addresses are
   * themselves 127.0.0.x, so the lead may pass 127.0.0.1/32 to keep NodePorts and pod-to-node traffic
   * from being treated as loopback (the rules then print that CIDR instead).
   */
  loopbackCidr?: string;
  /** IPVS `--ipvs-scheduler` (default rr). */
  ipvsScheduler?: IpvsSchedulerName;
  /** Userspace proxy ports are drawn from this range (default 32768-60999, Linux's ephemeral range). */
  userspacePortRange?: [number, number];
}

/** IPVS schedulers the engine implements with the kernel's semantics. */
export type IpvsSchedulerName = 'rr' | 'wrr' | 'lc' | 'wlc' | 'sh' | 'dh' | 'sed' | 'nq';

/** The conntrack-style key of a connection: `tcp 10.244.1.2:40000 > 10.96.0.10:80`. */
export function connectionKey(pkt: Pick<ServicePacket, 'protocol' | 'src' | 'sport' | 'dst' | 'dport'>): string {
  return `${pkt.protocol} ${pkt.src}:${pkt.sport} > ${pkt.dst}:${pkt.dport}`;
}
