/**
 * Which LoadBalancer addresses a node may announce, in either mode, as
 * MetalLB's speaker decides it: the address's pool must be selected by an
 * advertisement of that mode whose nodeSelectors admit the node, and with
 * `externalTrafficPolicy: Local` the node must hold a ready endpoint of the
 * Service (a node whose endpoints go away stops announcing); with `Cluster`
 * every admitted node may. Pure: a function of the watched objects.
 */
import { advertisesFromNode, advertisesPool, poolContains, type Advertisement, type IpAddressPool } from '../control-plane/metallb.ts';
import type { KubeObject } from '../control-plane/types.ts';

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

interface SliceLite {
  metadata: KubeObject['metadata'];
  endpoints?: { nodeName?: string; conditions?: { ready?: boolean } }[];
}

/** True when `node` holds a ready endpoint of the Service `ns/name`. */
export function hasLocalEndpoint(node: string, ns: string, name: string, slices: readonly KubeObject[]): boolean {
  return (slices as readonly unknown[] as readonly SliceLite[]).some(
    (s) => s.metadata.namespace === ns && s.metadata.labels?.['kubernetes.io/service-name'] === name && (s.endpoints ?? []).some((e) => e.nodeName === node && e.conditions?.ready !== false),
  );
}

/** The addresses `node` may announce under `advertisements` (of one mode), sorted by address. */
export function eligibleAddresses(
  node: string,
  nodeLabels: Record<string, string>,
  services: readonly KubeObject[],
  slices: readonly KubeObject[],
  pools: readonly IpAddressPool[],
  advertisements: readonly Advertisement[],
): Eligible[] {
  const out: Eligible[] = [];
  for (const svc of services) {
    const spec = (svc.spec ?? {}) as { type?: string; clusterIP?: string; externalTrafficPolicy?: string; ports?: { port: number; protocol?: string; nodePort?: number }[] };
    if (spec.type !== 'LoadBalancer' || svc.metadata.deletionTimestamp) continue;
    const ns = svc.metadata.namespace ?? 'default';
    const local = spec.externalTrafficPolicy === 'Local';
    if (local && !hasLocalEndpoint(node, ns, svc.metadata.name, slices)) continue;
    const ingress = ((svc.status as { loadBalancer?: { ingress?: { ip?: string }[] } } | undefined)?.loadBalancer?.ingress ?? []).map((i) => i.ip).filter((ip): ip is string => !!ip);
    for (const ip of ingress) {
      const pool = pools.find((p) => poolContains(p.spec ?? { addresses: [] }, ip));
      if (!pool) continue;
      const advs = advertisements.filter((a) => advertisesPool(a.spec, pool.metadata.name) && advertisesFromNode(a.spec, nodeLabels));
      if (!advs.length) continue;
      const ports = (spec.ports ?? []).map((p) => ({ port: p.port, protocol: (p.protocol ?? 'TCP').toLowerCase() === 'udp' ? ('udp' as const) : ('tcp' as const), ...(p.nodePort ? { nodePort: p.nodePort } : {}) }));
      out.push({ announcement: { ip, service: `${ns}/${svc.metadata.name}`, clusterIP: spec.clusterIP ?? '', ports, local, pool: pool.metadata.name }, advertisements: advs });
    }
  }
  return out.sort((a, b) => (a.announcement.ip < b.announcement.ip ? -1 : a.announcement.ip > b.announcement.ip ? 1 : 0));
}
