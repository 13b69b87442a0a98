/**
 * Calico-style BGP routing: no encapsulation, pod blocks announced over BGP and
 * installed as `<podCIDR> via <peer IP> dev eth0 proto bird`. The lease plan
 * programs only what podlab's ARP-less wire needs (the peers' eth0 MACs); the
 * routes come from the speaker (./bgp-backend.ts on emulated nodes, a real
 * BIRD on kernel nodes: ./bird-routing.ts).
 */
import { CALICO_IPV4_ADDRESS, FLANNEL_BACKEND_DATA, FLANNEL_BACKEND_TYPE, PODLAB_CALICO_ENCAP } from '../../control-plane/annotations.ts';
import { isIpv4Address } from '../../packet/ip-input.ts';
import type { Node } from '../../control-plane/types.ts';
import type { Lease, NetworkBackend, NodeIdentity } from '../backend.ts';
import { diffPeers, eth0NeighbourAdd, eth0NeighbourDel, publishedEth0Mac } from '../plan.ts';
import { attachRoutedWire } from '../routed-wire.ts';
import { routedKernelSupport } from '../kernel-iproute2.ts';

const NAME = 'bgp';

/** calico-node's Node annotations; `encap` marks an encapsulating backend's Nodes (ipip), null for plain BGP. */
export function calicoAnnotations(self: NodeIdentity, encap: string | null): Record<string, string | null> {
  // calico-node announces the node's address; flannel's annotations are not there.
  return { [FLANNEL_BACKEND_TYPE]: null, [FLANNEL_BACKEND_DATA]: null, [CALICO_IPV4_ADDRESS]: `${self.ip}/${self.underlayPrefixLen}`, [PODLAB_CALICO_ENCAP]: encap };
}

/** A Calico Node's lease for backend `name` when its encapsulation marker is `encap` (undefined: none). */
export function readCalicoLease(node: Node, name: string, encap: string | undefined): Lease | string | undefined {
  const ann = node.metadata.annotations ?? {};
  const ip = ann[CALICO_IPV4_ADDRESS]?.split('/')[0];
  if (!ip || ann[PODLAB_CALICO_ENCAP] !== encap) return undefined;
  if (!isIpv4Address(ip)) return `node ${node.metadata.name}: bad ${CALICO_IPV4_ADDRESS}`;
  return { node: node.metadata.name, podCIDR: node.spec!.podCIDR!, publicIp: ip, backend: name, eth0Mac: publishedEth0Mac(node) };
}

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
  annotations: (self) => calicoAnnotations(self, null),
  readLease: (node) => readCalicoLease(node, NAME, undefined),
  accepts: peers.accepts,
  plan: (desired, current, self) => diffPeers(desired, current, self, peers),
  attach: attachRoutedWire,
  kernel: routedKernelSupport(NAME, { names: ['bird', 'birdc'], hint: `--kernel-nodes with --backend ${NAME} runs BIRD in each kernel node: apt-get install bird2` }),
};
