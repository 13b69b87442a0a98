/**
 * Flannel's VXLAN backend, reduced to a plan: for every remote node, exactly
 * one neighbour entry, one FDB entry and one route (see flannel's
 * pkg/backend/vxlan/vxlan.go design note, "Flannel uses a single VXLAN device
 * per host and programs one route, one ARP entry and one FDB entry per remote
 * host"):
 *
 *   ip neigh replace <podCIDR.0> lladdr <VtepMAC> dev flannel.1 nud permanent
 *   bridge fdb replace <VtepMAC> dev flannel.1 dst <public IP> self permanent
 *   ip route replace <podCIDR> via <podCIDR.0> dev flannel.1 onlink
 *
 * Decisions are separated from side effects: `planFlannel` compares the
 * desired leases with what is programmed and returns ordered actions; the
 * agent applies them. Adds program the neighbour and FDB entry before the
 * route, so no packet is routed to an unresolvable next hop; removals take the
 * route away first for the same reason.
 */
import { FLANNEL_BACKEND_DATA, FLANNEL_PUBLIC_IP, parseFlannelBackendData } from '../control-plane/annotations.ts';
import { intToIpv4, ipv4ToInt, isValidIpv4, isValidMac } from '../packet/addr.ts';
import type { Node } from '../control-plane/types.ts';

/** What Flannel knows of one node: its subnet lease. */
export interface Lease {
  node: string;
  podCIDR: string;
  publicIp: string;
  vtepMac: string;
  vni: number;
}

export type FlannelAction =
  | { op: 'add-neigh'; ip: string; mac: string; node: string }
  | { op: 'del-neigh'; ip: string; node: string }
  | { op: 'add-fdb'; mac: string; dst: string; node: string }
  | { op: 'del-fdb'; mac: string; node: string }
  | { op: 'add-route'; cidr: string; via: string; node: string }
  | { op: 'del-route'; cidr: string; node: string };

/** The `.0` address of a pod CIDR: the remote flannel.1 address used as next hop. */
export function gatewayOf(podCIDR: string): string {
  const [net] = podCIDR.split('/');
  return intToIpv4(ipv4ToInt(net));
}

/** Reads a Node's Flannel lease from its annotations; a reason string when it has none or a bad one. */
export function leaseFromNode(node: Node): Lease | string {
  const name = node.metadata.name;
  const ann = node.metadata.annotations ?? {};
  const podCIDR = node.spec?.podCIDR;
  if (!podCIDR) return `node ${name}: no spec.podCIDR yet`;
  const data = ann[FLANNEL_BACKEND_DATA];
  const publicIp = ann[FLANNEL_PUBLIC_IP];
  if (!data || !publicIp) return `node ${name}: no flannel annotations yet`;
  const d = parseFlannelBackendData(data);
  if (!d || !isValidMac(d.VtepMAC.toLowerCase())) return `node ${name}: bad ${FLANNEL_BACKEND_DATA} annotation`;
  if (!isValidIpv4(publicIp)) return `node ${name}: bad ${FLANNEL_PUBLIC_IP} ${publicIp}`;
  return { node: name, podCIDR, publicIp, vtepMac: d.VtepMAC.toLowerCase(), vni: d.VNI };
}

/**
 * The actions that turn `current` (what is programmed, by node) into
 * `desired`. A lease whose VNI differs from ours is skipped, as flanneld only
 * programs leases of its own backend type.
 */
export function planFlannel(desired: Lease[], current: Map<string, Lease>, self: { node: string; vni: number }): FlannelAction[] {
  const want = new Map(desired.filter((l) => l.node !== self.node && l.vni === self.vni).map((l) => [l.node, l]));
  const removals: FlannelAction[] = [];
  const adds: FlannelAction[] = [];
  const remove = (l: Lease) => {
    removals.push({ op: 'del-route', cidr: l.podCIDR, node: l.node });
    removals.push({ op: 'del-fdb', mac: l.vtepMac, node: l.node });
    removals.push({ op: 'del-neigh', ip: gatewayOf(l.podCIDR), node: l.node });
  };
  for (const [name, have] of current) {
    const w = want.get(name);
    if (!w) remove(have);
    else if (w.podCIDR !== have.podCIDR || w.vtepMac !== have.vtepMac || w.publicIp !== have.publicIp) remove(have);
  }
  for (const [name, w] of want) {
    const have = current.get(name);
    if (have && w.podCIDR === have.podCIDR && w.vtepMac === have.vtepMac && w.publicIp === have.publicIp) continue;
    const via = gatewayOf(w.podCIDR);
    adds.push({ op: 'add-neigh', ip: via, mac: w.vtepMac, node: name });
    adds.push({ op: 'add-fdb', mac: w.vtepMac, dst: w.publicIp, node: name });
    adds.push({ op: 'add-route', cidr: w.podCIDR, via, node: name });
  }
  return [...removals, ...adds];
}
