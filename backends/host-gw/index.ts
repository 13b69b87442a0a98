/**
 * Flannel's host-gw backend (pkg/backend/hostgw): the peer itself is the next
 * hop, no encapsulation:
 *   ip route replace <podCIDR> via <public IP> dev eth0
 * plus, where the node's eth0 MAC is published (podlab's ARP-less wire in
 * local mode), the neighbour
 *   ip neigh replace <public IP> lladdr <peer eth0 MAC> dev eth0 nud permanent
 * Pods get the full underlay MTU.
 */
import type { Lease, NetworkBackend, PlanAction } from '../backend.ts';
import { diffPeers, eth0NeighbourAdd, eth0NeighbourDel, flannelNoDataLease } from '../plan.ts';
import { attachRoutedWire } from '../routed-wire.ts';
import { routedKernelSupport } from '../kernel-iproute2.ts';

const NAME = 'host-gw';

const peers = {
  accepts: (l: Lease) => l.backend === NAME,
  add: (l: Lease): PlanAction[] => [...eth0NeighbourAdd(l), { op: 'add-route', cidr: l.podCIDR, via: l.publicIp, dev: 'eth0', onlink: false, proto: 'boot', node: l.node }],
  remove: (l: Lease): PlanAction[] => [{ op: 'del-route', cidr: l.podCIDR, node: l.node }, ...eth0NeighbourDel(l)],
};

export const hostGw: NetworkBackend = {
  name: NAME,
  help: 'Flannel host-gw (routes via the peer node, no encapsulation)',
  mtuOverhead: 0,
  ipUnderlay: true,
  bgp: false,
  // flanneld's host-gw backend publishes no backend data.
  ...flannelNoDataLease(NAME),
  accepts: peers.accepts,
  plan: (desired, current, self) => diffPeers(desired, current, self, peers),
  attach: attachRoutedWire,
  kernel: routedKernelSupport(NAME),
};
