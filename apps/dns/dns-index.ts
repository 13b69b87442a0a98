/**
 * The cluster's objects as CoreDNS's answers look them up: Services by
 * namespace and name and by ClusterIP, EndpointSlices by the Service they
 * belong to, and which Services list an address, so that a query costs about
 * its answer. A scan of every Service and slice per query was the cost at
 * 10,000 Services. Kept incrementally from the informers' add, update and
 * delete events (`put`/`delete`), or built at once from lists (`of`).
 */
import type { EndpointSlice, Service } from '../../control-plane/service-resources.ts';
import type { KubeObject } from '../../control-plane/types.ts';
import type { ClusterIndex, ClusterObjects } from './kubernetes.ts';

const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

const nsOf = (o: KubeObject) => o.metadata.namespace ?? 'default';
const svcKey = (ns: string, name: string) => `${ns}/${name}`;
/** The Service a slice belongs to, as a key; undefined for a slice without the label (no Service's). */
const sliceOwner = (s: EndpointSlice) => {
  const svc = s.metadata.labels?.[SERVICE_NAME_LABEL];
  return svc === undefined ? undefined : svcKey(nsOf(s), svc);
};

export class DnsIndex implements ClusterIndex {
  private readonly services = new Map<string, Service>();
  private readonly byClusterIP = new Map<string, string>();
  /** Service key -> slice key -> slice, in the order they came (the first slice's ports are the Service's). */
  private readonly slices = new Map<string, Map<string, EndpointSlice>>();
  /** Slice key -> its owner, to move or remove a slice whose label changed. */
  private readonly sliceOwners = new Map<string, string>();
  /** Endpoint address -> the keys of the Services whose slices list it, with how many slices do. */
  private readonly byAddress = new Map<string, Map<string, number>>();
  private readonly namespaces = new Set<string>();

  static of(o: ClusterObjects): DnsIndex {
    const x = new DnsIndex();
    for (const s of o.services) x.putService(s);
    // Lists may hold two slices of one name (tests' fixtures): by position, so that both count, as a scan of the list did.
    o.slices.forEach((s, i) => x.putSlice(s, `${i}`));
    for (const n of o.namespaces) x.putNamespace(n);
    return x;
  }

  get size(): { services: number; endpointslices: number; namespaces: number } {
    return { services: this.services.size, endpointslices: this.sliceOwners.size, namespaces: this.namespaces.size };
  }

  putService(s: Service): void {
    const key = svcKey(nsOf(s), s.metadata.name);
    this.deleteService(s);
    this.services.set(key, s);
    const ip = s.spec?.clusterIP;
    if (ip && ip !== 'None') this.byClusterIP.set(ip, key);
  }

  deleteService(s: Service): void {
    const key = svcKey(nsOf(s), s.metadata.name);
    const old = this.services.get(key);
    if (!old) return;
    this.services.delete(key);
    const ip = old.spec?.clusterIP;
    if (ip && this.byClusterIP.get(ip) === key) this.byClusterIP.delete(ip);
  }

  /** `key`: the informer's (namespace/name) unless given. */
  putSlice(s: EndpointSlice, key = svcKey(nsOf(s), s.metadata.name)): void {
    const owner = sliceOwner(s);
    const prev = this.sliceOwners.get(key);
    // A slice updated in place keeps its place among its Service's slices, as in the informer's cache.
    if (prev !== undefined && prev === owner) {
      const m = this.slices.get(owner)!;
      this.addresses(m.get(key)!, owner, -1);
      m.set(key, s);
      this.addresses(s, owner, 1);
      return;
    }
    this.deleteSlice(s, key);
    if (owner === undefined) return;
    let m = this.slices.get(owner);
    if (!m) this.slices.set(owner, (m = new Map<string, EndpointSlice>()));
    m.set(key, s);
    this.sliceOwners.set(key, owner);
    this.addresses(s, owner, 1);
  }

  deleteSlice(s: EndpointSlice, key = svcKey(nsOf(s), s.metadata.name)): void {
    const owner = this.sliceOwners.get(key);
    if (owner === undefined) return;
    this.sliceOwners.delete(key);
    const m = this.slices.get(owner)!;
    const old = m.get(key)!;
    m.delete(key);
    if (!m.size) this.slices.delete(owner);
    this.addresses(old, owner, -1);
  }

  putNamespace(n: KubeObject): void {
    this.namespaces.add(n.metadata.name);
  }

  deleteNamespace(n: KubeObject): void {
    this.namespaces.delete(n.metadata.name);
  }

  private addresses(s: EndpointSlice, owner: string, delta: 1 | -1): void {
    for (const e of s.endpoints ?? []) {
      for (const ip of e.addresses) {
        let m = this.byAddress.get(ip);
        if (!m) this.byAddress.set(ip, (m = new Map<string, number>()));
        const n = (m.get(owner) ?? 0) + delta;
        if (n > 0) m.set(owner, n);
        else m.delete(owner);
        if (!m.size) this.byAddress.delete(ip);
      }
    }
  }

  hasNamespace(ns: string): boolean {
    return this.namespaces.has(ns);
  }

  service(ns: string, name: string): Service | undefined {
    return this.services.get(svcKey(ns, name));
  }

  slicesOf(ns: string, svc: string): Iterable<EndpointSlice> {
    return this.slices.get(svcKey(ns, svc))?.values() ?? [];
  }

  serviceByClusterIP(ip: string): Service | undefined {
    const key = this.byClusterIP.get(ip);
    return key === undefined ? undefined : this.services.get(key);
  }

  /** In the order of their keys, so that an address two Services share names the same one however the events came. */
  *servicesWithAddress(ip: string): Iterable<Service> {
    for (const key of [...(this.byAddress.get(ip)?.keys() ?? [])].sort()) {
      const s = this.services.get(key);
      if (s) yield s;
    }
  }
}
