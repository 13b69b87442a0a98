/**
 * A pod's network namespace, as the CNI bridge plugin (which Flannel's CNI
 * config delegates to) leaves it: a veth pair whose host end `vethXXXXXXXX` is
 * a cni0 port and whose pod end is `eth0` with the pod IP; `lo`; and the routes
 * `default via <gw>`, `<cluster CIDR> via <gw>` and the connected podCIDR.
 * Every container of the pod shares this one namespace (the pause container's
 * role in the seeds).
 */
import { createHash } from 'node:crypto';
import type { Clock } from '../common/clock.ts';
import { SeededRng, deriveMac, seedFrom } from '../common/rng.ts';
import { IpStack } from './ipv4/ip-stack.ts';
import { NetDevice, vethPair, type IfindexAllocator } from './link/netdev.ts';
import type { TcpConfig } from './tcp/config.ts';
import { TcpStack } from './tcp/stack.ts';
import type { Tracer } from './trace.ts';

export interface PodNetOptions {
  namespace: string;
  name: string;
  uid: string;
  ip: string;
  podCIDR: string;
  gateway: string;
  clusterCidr: string;
  mtu: number;
  seed: number;
  clock: Clock;
  nodeName: string;
  /** TCP tunables for the pod's stack (default: DEFAULT_TCP_CONFIG, the lab's short timers). */
  tcp?: Partial<TcpConfig>;
  /** The node namespace's interface numbers: the veth pair is created there. */
  ifindexes?: IfindexAllocator;
  /** The node's tracer: a traced packet crosses from the node into the pod. */
  tracer?: Tracer;
}

/** The host-side veth name, derived from the pod as the CNI plugin derives a random one. */
export function hostVethName(namespace: string, name: string, uid: string): string {
  return 'veth' + createHash('sha256').update(`${namespace}/${name}/${uid}`).digest('hex').slice(0, 8);
}

export class PodNet {
  readonly key: string;
  readonly stack: IpStack;
  /** The pod's TCP (shared by its containers, like the namespace). */
  readonly tcp: TcpStack;
  readonly eth0: NetDevice;
  readonly lo: NetDevice;
  readonly hostVeth: NetDevice;
  readonly netnsName: string;

  constructor(readonly opts: PodNetOptions) {
    this.key = `${opts.namespace}/${opts.name}`;
    this.netnsName = `cni-${opts.uid.slice(0, 8)}`;
    const { hostEnd, podEnd } = vethPair(
      { name: hostVethName(opts.namespace, opts.name, opts.uid), mac: deriveMac(opts.seed, `veth:${opts.uid}`), netns: opts.nodeName },
      { name: 'eth0', mac: deriveMac(opts.seed, `pod:${opts.uid}`), netns: this.netnsName },
      opts.mtu,
      { ifindexes: opts.ifindexes, tracer: opts.tracer },
    );
    this.hostVeth = hostEnd;
    this.eth0 = podEnd;
    this.lo = new NetDevice('lo', 'loopback', '00:00:00:00:00:00', 65536, { ifindex: 1, tracer: opts.tracer });
    const ns = `pod ${opts.name}`;
    hostEnd.ns = 'node';
    podEnd.ns = ns;
    this.lo.ns = ns;
    this.stack = new IpStack(`pod ${this.key}`, { clock: opts.clock, forwarding: false, idSeed: seedFrom(opts.seed, `ipid:${opts.uid}`), traceNs: ns, tracer: opts.tracer });
    this.stack.addInterface(this.lo, { arp: false });
    // Linux makes all of 127/8 local with a local-table route; podlab's stack answers 127.0.0.1 only, and a
    // link route for the rest would send a reply to a real client carried in from the host's loopback
    // (externalTrafficPolicy: Local, node-agent/kube-proxy.ts) into lo, where it dies. Without it the reply
    // takes the default route back to the node, whose conntrack returns it to the client.
    this.stack.addAddress('lo', '127.0.0.1', 8, { noPrefixRoute: true });
    this.stack.addInterface(this.eth0, { arp: true });
    const prefixLen = Number(opts.podCIDR.split('/')[1]);
    this.stack.addAddress('eth0', opts.ip, prefixLen);
    const [cnet, clen] = opts.clusterCidr.split('/');
    this.stack.routes.replace({ dst: '0.0.0.0', prefixLen: 0, gateway: opts.gateway, dev: 'eth0', proto: 'boot', scope: 'global' });
    this.stack.routes.replace({ dst: cnet, prefixLen: Number(clen), gateway: opts.gateway, dev: 'eth0', proto: 'boot', scope: 'global' });
    this.tcp = new TcpStack(this.stack, { clock: opts.clock, rng: new SeededRng(seedFrom(opts.seed, `tcp:${opts.uid}`)), config: opts.tcp });
  }

  get ip(): string {
    return this.opts.ip;
  }
}
