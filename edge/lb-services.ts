/**
 * The LoadBalancer Services as MetalLB's speaker sees them: only Services of
 * type LoadBalancer that have an address, each with its ports, its traffic
 * policy and the nodes holding a ready endpoint of it. Nothing else of the
 * Services and EndpointSlices matters to the speaker, so a node keeps this
 * summary instead of all of them, and keeps it up to date one object at a
 * time (`LbIndex`): the cost of a change is that of the object changed, and
 * the list handed out is as long as the LoadBalancer Services, however many
 * Services there are. kube-proxy's engine worker keeps one and sends it back
 * when it changes (service-proxy/worker-protocol.ts).
 */
import { objectKey } from '../control-plane/informer.ts';
import type { KubeObject } from '../control-plane/types.ts';
import type { AnnouncedPort } from './lb-eligibility.ts';

/** One LoadBalancer Service with an address, as the speaker needs it. Plain data: it crosses threads. */
export interface LbService {
  /** `ns/name`. */
  service: string;
  clusterIP: string;
  /** status.loadBalancer.ingress IPs, in order. */
  ingress: string[];
  ports: AnnouncedPort[];
  /** externalTrafficPolicy: Local. */
  local: boolean;
  /** Nodes holding a ready endpoint of the Service, sorted. */
  readyNodes: string[];
}

interface ServiceLite {
  type?: string;
  clusterIP?: string;
  externalTrafficPolicy?: string;
  ports?: { port: number; protocol?: string; nodePort?: number }[];
}

interface SliceLite {
  metadata: KubeObject['metadata'];
  endpoints?: { nodeName?: string; conditions?: { ready?: boolean } }[];
}

/** The Service's `ns/name` (the key a slice names it by). */
function serviceName(ns: string | undefined, name: string): string {
  return `${ns ?? 'default'}/${name}`;
}

/** The speaker's view of one Service, or undefined when it is not a LoadBalancer with an address (or is going away). */
export function lbServiceOf(svc: KubeObject): Omit<LbService, 'readyNodes'> | undefined {
  const spec = (svc.spec ?? {}) as ServiceLite;
  if (spec.type !== 'LoadBalancer' || svc.metadata.deletionTimestamp) return undefined;
  const ingress = ((svc.status as { loadBalancer?: { ingress?: { ip?: string }[] } } | undefined)?.loadBalancer?.ingress ?? []).map((i) => i.ip).filter((ip): ip is string => !!ip);
  if (!ingress.length) return undefined;
  const ports = (spec.ports ?? []).map((p) => ({ port: p.port, protocol: (p.protocol ?? 'TCP').toLowerCase() === 'udp' ? ('udp' as const) : ('tcp' as const), ...(p.nodePort ? { nodePort: p.nodePort } : {}) }));
  return { service: serviceName(svc.metadata.namespace, svc.metadata.name), clusterIP: spec.clusterIP ?? '', ingress, ports, local: spec.externalTrafficPolicy === 'Local' };
}

/** The Service a slice belongs to (`ns/name`) and the nodes of its ready endpoints, sorted. */
function sliceNodes(o: KubeObject): { service: string; nodes: string[] } | undefined {
  const s = o as unknown as SliceLite;
  const owner = s.metadata.labels?.['kubernetes.io/service-name'];
  if (!owner) return undefined;
  const nodes = new Set<string>();
  for (const e of s.endpoints ?? []) if (e.nodeName && e.conditions?.ready !== false) nodes.add(e.nodeName);
  return { service: serviceName(s.metadata.namespace, owner), nodes: [...nodes].sort() };
}

const sameList = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((x, i) => x === b[i]);

/**
 * The LoadBalancer Services, kept one Service or EndpointSlice change at a
 * time. Every slice is remembered only as its Service's name and its ready
 * nodes (a slice may arrive before its Service). `take()` says whether the
 * list changed since it was last taken.
 */
export class LbIndex {
  /** LoadBalancer Services with an address, by the informer's key. */
  private readonly services = new Map<string, Omit<LbService, 'readyNodes'>>();
  /** The LoadBalancer Services' names, for the slices' question "does my Service matter?". */
  private readonly lbNames = new Map<string, number>();
  private readonly slices = new Map<string, { service: string; nodes: string[] }>();
  /** Per Service name: how many of its slices have a ready endpoint on each node. */
  private readonly nodes = new Map<string, Map<string, number>>();
  private dirty = true;
  private cached: LbService[] = [];

  /** A Service added or changed (`key`: the informer's key, unique per Service). */
  putService(key: string, o: KubeObject): void {
    const now = lbServiceOf(o);
    const was = this.services.get(key);
    if (!now) return this.deleteService(key);
    if (was && JSON.stringify(was) === JSON.stringify(now)) return;
    if (was) this.unname(was.service);
    this.services.set(key, now);
    this.lbNames.set(now.service, (this.lbNames.get(now.service) ?? 0) + 1);
    this.dirty = true;
  }

  deleteService(key: string): void {
    const was = this.services.get(key);
    if (!was) return;
    this.services.delete(key);
    this.unname(was.service);
    this.dirty = true;
  }

  private unname(service: string): void {
    const n = (this.lbNames.get(service) ?? 1) - 1;
    if (n > 0) this.lbNames.set(service, n);
    else this.lbNames.delete(service);
  }

  /** An EndpointSlice added or changed. */
  putSlice(key: string, o: KubeObject): void {
    const now = sliceNodes(o);
    const was = this.slices.get(key);
    if (!now) return this.deleteSlice(key);
    if (was && was.service === now.service && sameList(was.nodes, now.nodes)) return;
    if (was) this.count(was, -1);
    this.slices.set(key, now);
    this.count(now, 1);
  }

  deleteSlice(key: string): void {
    const was = this.slices.get(key);
    if (!was) return;
    this.slices.delete(key);
    this.count(was, -1);
  }

  private count(s: { service: string; nodes: string[] }, by: 1 | -1): void {
    if (!s.nodes.length) return;
    let m = this.nodes.get(s.service);
    if (!m) this.nodes.set(s.service, (m = new Map<string, number>()));
    for (const n of s.nodes) {
      const c = (m.get(n) ?? 0) + by;
      if (c > 0) m.set(n, c);
      else m.delete(n);
    }
    if (!m.size) this.nodes.delete(s.service);
    if (this.lbNames.has(s.service)) this.dirty = true;
  }

  /** How many LoadBalancer Services with an address. */
  get size(): number {
    return this.services.size;
  }

  /** The list, sorted by Service name. */
  list(): LbService[] {
    if (!this.dirty) return this.cached;
    this.dirty = false;
    this.cached = [...this.services.values()]
      .map((s) => ({ ...s, readyNodes: [...(this.nodes.get(s.service)?.keys() ?? [])].sort() }))
      .sort((a, b) => (a.service < b.service ? -1 : a.service > b.service ? 1 : 0));
    return this.cached;
  }

  /** The list when it changed since the last `take` (or `list`), else undefined. */
  take(): LbService[] | undefined {
    return this.dirty ? this.list() : undefined;
  }
}

/** The LoadBalancer Services of whole lists (pure; tests and one-off views). */
export function loadBalancerServices(services: readonly KubeObject[], slices: readonly KubeObject[]): LbService[] {
  const ix = new LbIndex();
  for (const s of services) ix.putService(objectKey(s), s);
  for (const s of slices) ix.putSlice(objectKey(s), s);
  return ix.list();
}
