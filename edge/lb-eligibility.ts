/**
 * Which LoadBalancer addresses a node may announce, in either mode, as
 * MetalLB's speaker decides it: the address's pool must be selected by an
 * advertisement of that mode whose nodeSelectors admit the node, and with
 * `externalTrafficPolicy: Local` the node must hold a ready endpoint of the
 * Service (a node whose endpoints go away stops announcing); with `Cluster`
 * every admitted node may. Pure: a function of the LoadBalancer Services'
 * summary (./lb-services.ts) and the MetalLB objects.
 */
import { advertisesFromNode, advertisesPool, poolContains, type Advertisement, type IpAddressPool } from '../control-plane/metallb.ts';
import type { LbService } from './lb-services.ts';

/** One port of an announced Service. */
export interface AnnouncedPort {
  port: number;
  protocol: 'tcp' | 'udp';
  nodePort?: number;
}

/** One address this node may announce, with what it serves. */
export interface Announcement {
  ip: string;
  /** `ns/name` of the Service. */
  service: string;
  clusterIP: string;
  ports: AnnouncedPort[];
  /** externalTrafficPolicy: Local (the real client address is carried in). */
  local: boolean;
  /** The pool that holds the address. */
  pool: string;
}

/** An address this node may announce and the advertisements (of one mode) that select it from here. */
export interface Eligible {
  announcement: Announcement;
  advertisements: Advertisement[];
}

/** The addresses `node` may announce under `advertisements` (of one mode), sorted by address. */
export function eligibleAddresses(
  node: string,
  nodeLabels: Record<string, string>,
  lbs: readonly LbService[],
  pools: readonly IpAddressPool[],
  advertisements: readonly Advertisement[],
): Eligible[] {
  const out: Eligible[] = [];
  for (const svc of lbs) {
    if (svc.local && !svc.readyNodes.includes(node)) continue;
    for (const ip of svc.ingress) {
      const pool = pools.find((p) => poolContains(p.spec ?? { addresses: [] }, ip));
      if (!pool) continue;
      const advs = advertisements.filter((a) => advertisesPool(a.spec, pool.metadata.name) && advertisesFromNode(a.spec, nodeLabels));
      if (!advs.length) continue;
      out.push({ announcement: { ip, service: svc.service, clusterIP: svc.clusterIP, ports: svc.ports.map((p) => ({ ...p })), local: svc.local, pool: pool.metadata.name }, advertisements: advs });
    }
  }
  return out.sort((a, b) => (a.announcement.ip < b.announcement.ip ? -1 : a.announcement.ip > b.announcement.ip ? 1 : 0));
}
