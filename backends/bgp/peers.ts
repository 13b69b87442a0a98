/**
 * Who a node's BGP peers with, from the cluster's state, as calico-node's
 * confd renders it for BIRD; computed once for both of podlab's speakers
 * (bgp-backend.ts on emulated nodes, BIRD on kernel nodes):
 *
 * - full mesh (default, `nodeToNodeMeshEnabled`): every node peers with every
 *   other;
 * - route reflectors (`--bgp-topology route-reflector`): nodes labelled
 *   `route-reflector=true` reflect, peer with every node (non-reflectors as
 *   clients) and with each other; other nodes peer only with the reflectors;
 * - BGPPeer objects add external routers (BIRD, a top-of-rack switch), from
 *   every node or from `spec.node` only.
 */
import { CALICO_DEFAULT_ASN, parsePeerIP, type BgpConfiguration, type BgpFilter, type BgpPeer, type IpPool } from '../../control-plane/calico.ts';
import { CALICO_IPV4_ADDRESS } from '../../control-plane/annotations.ts';
import type { Node } from '../../control-plane/types.ts';

export type BgpTopology = 'full-mesh' | 'route-reflector';

/** Label and annotation marking a route reflector, as Calico's docs set them. */
export const RR_LABEL = 'route-reflector';
export const RR_CLUSTER_ANNOTATION = 'projectcalico.org/RouteReflectorClusterID';
export const DEFAULT_RR_CLUSTER_ID = '244.0.0.1';

/** What a node's BGP reads from the cluster: Nodes, the `default` BGPConfiguration, BGPPeers, BGPFilters, IPPools. */
export interface BgpInputs {
  nodes: Node[];
  config: BgpConfiguration | undefined;
  peers: BgpPeer[];
  /** The BGPFilters BGPPeers name in spec.filters (absent: none). */
  filters?: BgpFilter[];
  /** The IPPools (their ipipMode shapes learned routes on the ipip backend; filters accept node routes inside them). */
  pools?: IpPool[];
  /** The LoadBalancer routes each node announces, by node name (MetalLB's BGP mode; absent: none). */
  lb?: Map<string, string[]>;
}

export interface DesiredPeer {
  /** The peer's node name, or `BGPPeer <name>`. */
  name: string;
  address: string;
  port: number;
  asn: number;
  rrClient: boolean;
  /** External routers: we dial too (they usually both listen and dial; collisions resolve it). */
  passive?: boolean;
  description: string;
  /** An external router (a BGPPeer), not a node: its routes pass its BGPFilters (spec.filters, by name). */
  external?: { filters: string[] };
}

/** The AS of the cluster's nodes. */
export function clusterAsn(config: BgpConfiguration | undefined): number {
  return config?.spec?.asNumber ?? CALICO_DEFAULT_ASN;
}

/** The route reflector cluster ID of `self`, when it reflects (it may: `canReflect`). */
export function reflectorClusterId(self: string, topology: BgpTopology, nodes: Node[]): string | undefined {
  const me = nodes.find((n) => n.metadata.name === self);
  if (topology !== 'route-reflector' || me?.metadata.labels?.[RR_LABEL] !== 'true') return undefined;
  return me.metadata.annotations?.[RR_CLUSTER_ANNOTATION] ?? DEFAULT_RR_CLUSTER_ID;
}

/** The peers `self` should have, by address. */
export function desiredPeers(o: { self: string; port: number; topology: BgpTopology; reflector: boolean }, input: BgpInputs): Map<string, DesiredPeer> {
  const asn = clusterAsn(input.config);
  const want = new Map<string, DesiredPeer>();
  const bgpNodes = input.nodes
    .filter((n) => n.metadata.name !== o.self && n.metadata.annotations?.[CALICO_IPV4_ADDRESS])
    .map((n) => ({ name: n.metadata.name, ip: n.metadata.annotations![CALICO_IPV4_ADDRESS].split('/')[0], rr: n.metadata.labels?.[RR_LABEL] === 'true' }));
  const peer = (n: { name: string; ip: string }, rrClient: boolean, description: string): DesiredPeer => ({ name: n.name, address: n.ip, port: o.port, asn, rrClient, description });
  if (o.topology === 'route-reflector') {
    for (const n of bgpNodes) {
      if (o.reflector) want.set(n.ip, peer(n, !n.rr, `${n.name}${n.rr ? ' (reflector)' : ' (client)'}`));
      else if (n.rr) want.set(n.ip, peer(n, false, `${n.name} (reflector)`));
    }
  } else if (input.config?.spec?.nodeToNodeMeshEnabled !== false) {
    for (const n of bgpNodes) want.set(n.ip, peer(n, false, `${n.name} (node-to-node mesh)`));
  }
  for (const p of input.peers) {
    if (p.spec?.node && p.spec.node !== o.self) continue;
    const addr = parsePeerIP(p.spec?.peerIP ?? '');
    if (!addr) continue;
    want.set(addr.ip, { name: `BGPPeer ${p.metadata.name}`, address: addr.ip, port: addr.port ?? 179, asn: p.spec!.asNumber, rrClient: false, passive: false, description: `BGPPeer ${p.metadata.name}`, external: { filters: p.spec!.filters ?? [] } });
  }
  return want;
}
