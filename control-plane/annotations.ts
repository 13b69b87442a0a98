/**
 * Well-known annotation names, spelled exactly as flannel writes them on Node
 * objects when it runs with `--kube-subnet-manager`. Keeping them in one place
 * means the node agent (flanneld role) and the CLI agree with each other and
 * with what a reader finds in flannel's docs.
 */

/** Backend type of the node's flannel instance (the backend's name: backends/registry.ts). */
export const FLANNEL_BACKEND_TYPE = 'flannel.alpha.coreos.com/backend-type';

/** JSON `{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}`: what peers need to build FDB/ARP entries. */
export const FLANNEL_BACKEND_DATA = 'flannel.alpha.coreos.com/backend-data';

/** The node's underlay address: peers send VXLAN datagrams there. */
export const FLANNEL_PUBLIC_IP = 'flannel.alpha.coreos.com/public-ip';

/** `"true"` when the subnet lease comes from Node.spec.podCIDR (kube subnet manager). */
export const FLANNEL_KUBE_SUBNET_MANAGER = 'flannel.alpha.coreos.com/kube-subnet-manager';

/** Parsed form of {@link FLANNEL_BACKEND_DATA} for the vxlan backend. */
export interface FlannelVxlanBackendData {
  VNI: number;
  VtepMAC: string;
}

/**
 * Parses a backend-data annotation value; returns null when it is missing or
 * malformed, because a peer must skip such a node rather than crash on it.
 */
export function parseFlannelBackendData(value: string | undefined): FlannelVxlanBackendData | null {
  if (value === undefined) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    return null;
  }
  if (typeof parsed !== 'object' || parsed === null) return null;
  const vni: unknown = (parsed as Record<string, unknown>).VNI;
  const mac: unknown = (parsed as Record<string, unknown>).VtepMAC;
  if (typeof vni !== 'number' || !Number.isInteger(vni) || typeof mac !== 'string') return null;
  return { VNI: vni, VtepMAC: mac };
}

/**
 * podlab's own: the node's eth0 MAC. In local mode the unencapsulated underlay
 * (host-gw, bgp) carries bare IPv4 with no ARP, so peers program a permanent
 * neighbour entry from this instead (a real L2 segment would ARP for it).
 */
export const PODLAB_ETH0_MAC = 'podlab.io/eth0-mac';

/** podlab's own: the UDP port of the node's bare-IPv4 underlay wire (local mode). */
export const PODLAB_WIRE_PORT = 'podlab.io/wire-port';

/** calico-node's annotation of the node's address and prefix, e.g. `127.0.0.11/24`. */
export const CALICO_IPV4_ADDRESS = 'projectcalico.org/IPv4Address';

/**
 * podlab's own: the encapsulation of a Calico node (`IPIP` for the ipip
 * backend; absent for plain BGP). Calico sets it per pool (IPPool ipipMode);
 * a node carries it so the two BGP backends read only their own Nodes' leases.
 */
export const PODLAB_CALICO_ENCAP = 'podlab.io/calico-encapsulation';
