/**
 * Flannel's first backend, `udp` (pkg/backend/udp), kept for teaching: the
 * TUN device flannel0 (MTU 1472: the underlay's 1500 less IPv4 20 and UDP 8),
 * `10.244.0.0/16 dev flannel0` (the cluster network on flannel0's address,
 * `<podCIDR.0>/16`) next to the local cni0 subnet, and flanneld in user space
 * (a thread of the node's agent, started only here) carrying bare IP packets
 * over UDP 8285 (./flanneld.ts). The per-node table is flanneld's, not the
 * kernel's: the plan's route steps go to it.
 */
import { Eth0Sockets } from '../../overlay/eth0-sockets.ts';
import { Cidr } from '../../packet/cidr.ts';
import type { Lease, NetworkBackend, PlanAction } from '../backend.ts';
import { diffPeers, flannelNoDataLease, gatewayOf } from '../plan.ts';
import { FLANNEL_UDP_PORT, Flanneld, TUN_DEV } from './flanneld.ts';

const NAME = 'udp';
/** Outer IPv4 20 + UDP 8: flannel0's MTU is the underlay's less this (1472). */
export const FLANNEL_UDP_OVERHEAD = 28;

const peers = {
  accepts: (l: Lease) => l.backend === NAME,
  add: (l: Lease): PlanAction[] => [{ op: 'add-route', cidr: l.podCIDR, via: l.publicIp, dev: TUN_DEV, onlink: false, proto: 'boot', node: l.node }],
  remove: (l: Lease): PlanAction[] => [{ op: 'del-route', cidr: l.podCIDR, node: l.node }],
};

export const udp: NetworkBackend = {
  name: NAME,
  help: 'flannel UDP (flannel0 TUN; flanneld, a thread of its own, copies bare packets over UDP 8285; slow, for teaching)',
  mtuOverhead: FLANNEL_UDP_OVERHEAD,
  tunnelDevice: TUN_DEV,
  ipUnderlay: false,
  bgp: false,
  udpDecode: { port: FLANNEL_UDP_PORT, as: 'ip' },
  // flanneld's udp backend publishes no backend data.
  ...flannelNoDataLease(NAME),
  accepts: peers.accepts,
  plan: (desired, current, self) => diffPeers(desired, current, self, peers),
  attach(ctx) {
    const underlay = ctx.underlay({ port: FLANNEL_UDP_PORT });
    const sockets = new Eth0Sockets(ctx.eth0, underlay);
    const flanneld = new Flanneld({ sockets, port: FLANNEL_UDP_PORT, mtu: ctx.podMtu, ifindexes: ctx.ifindexes, tracer: ctx.eth0.tracer });
    ctx.stack.addInterface(flanneld.dev, { arp: false });
    // flannel's configureIface: the lease's first address with the network's prefix; the kernel adds the /16 route.
    ctx.stack.addAddress(TUN_DEV, gatewayOf(ctx.podCIDR), Cidr.parse(ctx.clusterCidr).prefixLen);
    return {
      underlay,
      wireKind: NAME,
      wireText: `flanneld over UDP ${FLANNEL_UDP_PORT}`,
      sockets,
      devices: [{ dev: flanneld.dev, description: `TUN device ${TUN_DEV} (flanneld reads and writes it; UDP ${FLANNEL_UDP_PORT})` }],
      apply(a) {
        if (a.op === 'add-route' && a.dev === TUN_DEV) flanneld.setRoute(a.cidr, a.via);
        else if (a.op === 'del-route') return flanneld.deleteRoute(a.cidr);
        else return false;
        return true;
      },
      stats: () => ({ flanneld: flanneld.copies() }),
      close: () => flanneld.close(),
    };
  },
};
