/**
 * What every backend's plan shares: a lease diff (Flannel's per-remote-node
 * loop: a new or changed lease is programmed, a gone or changed one is
 * forgotten), the annotations Flannel-style backends read, and the `.0`
 * gateway address. Each backend's own folder says which actions program one
 * peer; decisions are kept apart from side effects (the agent applies them).
 *
 * Adds program the neighbour (and FDB entry) before the route, so no packet is
 * routed to an unresolvable next hop; removals take the route away first.
 */
import { FLANNEL_BACKEND_DATA, FLANNEL_BACKEND_TYPE, FLANNEL_PUBLIC_IP, PODLAB_ETH0_MAC } from '../control-plane/annotations.ts';
import { intToIpv4, ipv4ToInt, isValidMac } from '../packet/addr.ts';
import { isIpv4Address } from '../packet/ip-input.ts';
import type { Node } from '../control-plane/types.ts';
import type { Lease, NetworkBackend, PlanAction, PlanSelf } from './backend.ts';

export type { Lease, PlanAction, PlanSelf } from './backend.ts';

/** The `.0` address of a pod CIDR: the remote tunnel device's address used as next hop. */
export function gatewayOf(podCIDR: string): string {
  const [net] = podCIDR.split('/');
  return intToIpv4(ipv4ToInt(net));
}

export function sameLease(a: Lease, b: Lease): boolean {
  return a.podCIDR === b.podCIDR && a.publicIp === b.publicIp && a.vtepMac === b.vtepMac && a.eth0Mac === b.eth0Mac && a.backend === b.backend;
}

/** How one backend programs and forgets one peer. */
export interface PeerPlan {
  accepts(l: Lease, self: PlanSelf): boolean;
  add(l: Lease): PlanAction[];
  /** Route first. */
  remove(l: Lease): PlanAction[];
}

/**
 * The actions that turn `current` (what is programmed, by node) into
 * `desired`. Leases the backend does not accept (another backend's, another
 * VNI's) are skipped, as flanneld only programs leases of its own type.
 */
export function diffPeers(desired: Lease[], current: Map<string, Lease>, self: PlanSelf, p: PeerPlan): PlanAction[] {
  const want = new Map(desired.filter((l) => l.node !== self.node && p.accepts(l, self)).map((l) => [l.node, l]));
  const removals: PlanAction[] = [];
  const adds: PlanAction[] = [];
  for (const [name, have] of current) {
    const w = want.get(name);
    if (!w || !sameLease(w, have)) removals.push(...p.remove(have));
  }
  for (const [name, w] of want) {
    const have = current.get(name);
    if (have && sameLease(w, have)) continue;
    adds.push(...p.add(w));
  }
  return [...removals, ...adds];
}

/** The peer as the next hop on eth0, with its MAC where published (podlab's ARP-less wire needs it). */
export function eth0NeighbourAdd(l: Lease): PlanAction[] {
  return l.eth0Mac ? [{ op: 'add-neigh', dev: 'eth0', ip: l.publicIp, mac: l.eth0Mac, node: l.node }] : [];
}

export function eth0NeighbourDel(l: Lease): PlanAction[] {
  return l.eth0Mac ? [{ op: 'del-neigh', dev: 'eth0', ip: l.publicIp, node: l.node }] : [];
}

/** The eth0 MAC a Node publishes (podlab's own annotation), when valid. */
export function publishedEth0Mac(node: Node): string | undefined {
  const mac = node.metadata.annotations?.[PODLAB_ETH0_MAC]?.toLowerCase();
  return mac && isValidMac(mac) ? mac : undefined;
}

/**
 * A Flannel backend's part of a Node: its public IP when the backend type
 * annotation names `type` (`matches` decides for a missing type); undefined
 * when the Node is not of that type, a reason when it is but is unusable.
 */
export function flannelPublicIp(node: Node, matches: (type: string | undefined) => boolean): { publicIp: string } | string | undefined {
  const ann = node.metadata.annotations ?? {};
  if (!matches(ann[FLANNEL_BACKEND_TYPE])) return undefined;
  const name = node.metadata.name;
  const publicIp = ann[FLANNEL_PUBLIC_IP];
  if (!publicIp) return `node ${name}: no flannel annotations yet`;
  if (!isIpv4Address(publicIp)) return `node ${String(name)}: bad ${String(FLANNEL_PUBLIC_IP)} ${String(publicIp)}`;
  return { publicIp };
}

/**
 * The Node side of a Flannel backend that publishes no backend data (host-gw,
 * udp): its type annotation, and the lease of a Node of the same type.
 */
export function flannelNoDataLease(name: string): Pick<NetworkBackend, 'annotations' | 'readLease'> {
  return {
    annotations: () => ({ [FLANNEL_BACKEND_TYPE]: name, [FLANNEL_BACKEND_DATA]: 'null' }),
    readLease(node) {
      const ip = flannelPublicIp(node, (type) => type === name);
      if (ip === undefined || typeof ip === 'string') return ip;
      return { node: node.metadata.name, podCIDR: node.spec!.podCIDR!, publicIp: ip.publicIp, backend: name, eth0Mac: publishedEth0Mac(node) };
    },
  };
}
