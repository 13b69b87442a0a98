/**
 * Calico-style BGP routing: no encapsulation, pod blocks announced over BGP and
 * installed as `<podCIDR> via <peer IP> dev eth0 proto bird`. The lease plan
 * programs only what podlab's ARP-less wire needs (the peers' eth0 MACs); the
 * routes come from the speaker (./bgp-backend.ts on emulated nodes, a real
 * BIRD on kernel nodes: ./bird-routing.ts).
 */
import { CALICO_IPV4_ADDRESS, FLANNEL_BACKEND_DATA, FLANNEL_BACKEND_TYPE } from '../../control-plane/annotations.ts';
import { isIpv4Address } from '../../packet/ip-input.ts';
import type { Lease, NetworkBackend } from '../backend.ts';
import { diffPeers, eth0NeighbourAdd, eth0NeighbourDel, publishedEth0Mac } from '../plan.ts';
import { attachRoutedWire } from '../routed-wire.ts';
import { routedKernelSupport } from '../kernel-iproute2.ts';

const NAME = 'bgp';

const peers = {
  accepts: (l: Lease) => l.backend === NAME,
  add: eth0NeighbourAdd,
  remove: eth0NeighbourDel,
};

export const bgp: NetworkBackend = {
  name: NAME,
  help: 'Calico-style BGP routing (no encapsulation)',
  mtuOverhead: 0,
  ipUnderlay: true,
  bgp: true,
  // calico-node announces the node's address; flannel's annotations are not there.
  annotations: (self) => ({ [FLANNEL_BACKEND_TYPE]: null, [FLANNEL_BACKEND_DATA]: null, [CALICO_IPV4_ADDRESS]: `${self.ip}/${self.underlayPrefixLen}` }),
  readLease(node) {
    const ip = node.metadata.annotations?.[CALICO_IPV4_ADDRESS]?.split('/')[0];
    if (!ip) return undefined;
    if (!isIpv4Address(ip)) return `node ${node.metadata.name}: bad ${CALICO_IPV4_ADDRESS}`;
    return { node: node.metadata.name, podCIDR: node.spec!.podCIDR!, publicIp: ip, backend: NAME, eth0Mac: publishedEth0Mac(node) };
  },
  accepts: peers.accepts,
  plan: (desired, current, self) => diffPeers(desired, current, self, peers),
  attach: attachRoutedWire,
  kernel: routedKernelSupport(NAME, { names: ['bird', 'birdc'], hint: `--kernel-nodes with --backend ${NAME} runs BIRD in each kernel node: apt-get install bird2` }),
};
