/**
 * Flannel's backends, reduced to a plan of kernel-table changes per remote
 * node, computed from the desired leases and what is programmed; the agent
 * applies it. Decisions are kept apart from side effects.
 *
 * vxlan (pkg/backend/vxlan/vxlan.go's design note: "one route, one ARP entry
 * and one FDB entry per remote host"):
 *   ip neigh replace <podCIDR.0> lladdr <VtepMAC> dev flannel.1 nud permanent
 *   bridge fdb replace <VtepMAC> dev flannel.1 dst <public IP> self permanent
 *   ip route replace <podCIDR> via <podCIDR.0> dev flannel.1 onlink
 *
 * host-gw (pkg/backend/hostgw): the peer itself is the next hop, no encapsulation:
 *   ip route replace <podCIDR> via <public IP> dev eth0
 * plus, in local mode where the bare-IPv4 wire has no ARP, the neighbour
 *   ip neigh replace <public IP> lladdr <peer eth0 MAC> dev eth0 nud permanent
 *
 * Adds program the neighbour (and FDB entry) before the route, so no packet is
 * routed to an unresolvable next hop; removals take the route away first.
 */
import { CALICO_IPV4_ADDRESS, FLANNEL_BACKEND_DATA, FLANNEL_BACKEND_TYPE, FLANNEL_PUBLIC_IP, PODLAB_ETH0_MAC, parseFlannelBackendData } from '../control-plane/annotations.ts';
import { intToIpv4, ipv4ToInt, isValidMac } from '../packet/addr.ts';
import type { Node } from '../control-plane/types.ts';
import type { RouteProto } from '../netstack/ipv4/route-table.ts';
import { isIpv4Address, parseIpv4CidrInput } from '../packet/ip-input.ts';

/** The data-plane backends: Flannel's vxlan and host-gw, and Calico-style BGP. */
export type Backend = 'vxlan' | 'host-gw' | 'bgp';
export const BACKENDS: Backend[] = ['vxlan', 'host-gw', 'bgp'];

/** What a node publishes about itself: its subnet lease. */
export interface Lease {
  node: string;
  podCIDR: string;
  publicIp: string;
  backend: Backend;
  /** vxlan only. */
  vtepMac?: string;
  vni?: number;
  /** The node's eth0 MAC, where published (podlab's own annotation). */
  eth0Mac?: string;
}

export type PlanAction =
  | { op: 'add-neigh'; dev: string; ip: string; mac: string; node: string }
  | { op: 'del-neigh'; dev: string; ip: string; node: string }
  | { op: 'add-fdb'; mac: string; dst: string; node: string }
  | { op: 'del-fdb'; mac: string; node: string }
  | { op: 'add-route'; cidr: string; via: string; dev: string; onlink: boolean; proto: RouteProto; node: string }
  | { op: 'del-route'; cidr: string; node: string };

/** The `.0` address of a pod CIDR: the remote flannel.1 address used as next hop. */
export function gatewayOf(podCIDR: string): string {
  const [net] = podCIDR.split('/');
  return intToIpv4(ipv4ToInt(net));
}

/** Reads a Node's lease from its annotations; a reason string when it has none or a bad one. */
export function leaseFromNode(node: Node): Lease | string {
  const name = node.metadata.name;
  const ann = node.metadata.annotations ?? {};
  const podCIDR = node.spec?.podCIDR;
  if (!podCIDR) return `node ${name}: no spec.podCIDR yet`;
  if (!parseIpv4CidrInput(podCIDR)) return `node ${name}: bad spec.podCIDR ${podCIDR}`;
  const mac0 = ann[PODLAB_ETH0_MAC]?.toLowerCase();
  const calico = ann[CALICO_IPV4_ADDRESS]?.split('/')[0];
  if (calico) {
    if (!isIpv4Address(calico)) return `node ${name}: bad ${CALICO_IPV4_ADDRESS}`;
    return { node: name, podCIDR, publicIp: calico, backend: 'bgp', eth0Mac: mac0 && isValidMac(mac0) ? mac0 : undefined };
  }
  const publicIp = ann[FLANNEL_PUBLIC_IP];
  const type = ann[FLANNEL_BACKEND_TYPE] ?? (ann[FLANNEL_BACKEND_DATA] ? 'vxlan' : undefined);
  if (!publicIp || !type) return `node ${name}: no flannel annotations yet`;
  if (!isIpv4Address(publicIp)) return `node ${name}: bad ${FLANNEL_PUBLIC_IP} ${publicIp}`;
  const mac = ann[PODLAB_ETH0_MAC]?.toLowerCase();
  const eth0Mac = mac && isValidMac(mac) ? mac : undefined;
  if (type === 'host-gw') return { node: name, podCIDR, publicIp, backend: type, eth0Mac };
  if (type !== 'vxlan') return `node ${name}: unknown backend type ${type}`;
  const d = parseFlannelBackendData(ann[FLANNEL_BACKEND_DATA]);
  if (!d || !isValidMac(d.VtepMAC.toLowerCase())) return `node ${name}: bad ${FLANNEL_BACKEND_DATA} annotation`;
  return { node: name, podCIDR, publicIp, backend: 'vxlan', vtepMac: d.VtepMAC.toLowerCase(), vni: d.VNI, eth0Mac };
}

function sameLease(a: Lease, b: Lease): boolean {
  return a.podCIDR === b.podCIDR && a.publicIp === b.publicIp && a.vtepMac === b.vtepMac && a.eth0Mac === b.eth0Mac && a.backend === b.backend;
}

/** The actions that program one peer. */
function addPeer(l: Lease): PlanAction[] {
  if (l.backend === 'vxlan') {
    const via = gatewayOf(l.podCIDR);
    return [
      { op: 'add-neigh', dev: 'flannel.1', ip: via, mac: l.vtepMac!, node: l.node },
      { op: 'add-fdb', mac: l.vtepMac!, dst: l.publicIp, node: l.node },
      { op: 'add-route', cidr: l.podCIDR, via, dev: 'flannel.1', onlink: true, proto: 'boot', node: l.node },
    ];
  }
  const out: PlanAction[] = [];
  if (l.eth0Mac) out.push({ op: 'add-neigh', dev: 'eth0', ip: l.publicIp, mac: l.eth0Mac, node: l.node });
  out.push({ op: 'add-route', cidr: l.podCIDR, via: l.publicIp, dev: 'eth0', onlink: false, proto: 'boot', node: l.node });
  return out;
}

/** The actions that forget one peer, route first. */
function removePeer(l: Lease): PlanAction[] {
  if (l.backend === 'vxlan') {
    return [
      { op: 'del-route', cidr: l.podCIDR, node: l.node },
      { op: 'del-fdb', mac: l.vtepMac!, node: l.node },
      { op: 'del-neigh', dev: 'flannel.1', ip: gatewayOf(l.podCIDR), node: l.node },
    ];
  }
  const out: PlanAction[] = [{ op: 'del-route', cidr: l.podCIDR, node: l.node }];
  if (l.eth0Mac) out.push({ op: 'del-neigh', dev: 'eth0', ip: l.publicIp, node: l.node });
  return out;
}

/**
 * The actions that turn `current` (what is programmed, by node) into
 * `desired`. Leases of another backend (or another VNI) are skipped, as
 * flanneld only programs leases of its own backend type.
 */
export function planFlannel(desired: Lease[], current: Map<string, Lease>, self: { node: string; vni: number; backend?: Backend }): PlanAction[] {
  const backend = self.backend ?? 'vxlan';
  const want = new Map(
    desired.filter((l) => l.node !== self.node && l.backend === backend && (backend !== 'vxlan' || l.vni === self.vni)).map((l) => [l.node, l]),
  );
  const removals: PlanAction[] = [];
  const adds: PlanAction[] = [];
  for (const [name, have] of current) {
    const w = want.get(name);
    if (!w || !sameLease(w, have)) removals.push(...removePeer(have));
  }
  for (const [name, w] of want) {
    const have = current.get(name);
    if (have && sameLease(w, have)) continue;
    adds.push(...addPeer(w));
  }
  const all = [...removals, ...adds];
  // Calico-style BGP learns routes from its speaker: the lease plan only keeps the neighbours.
  return backend === 'bgp' ? all.filter((a) => a.op !== 'add-route' && a.op !== 'del-route') : all;
}
