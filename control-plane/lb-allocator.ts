/**
 * MetalLB's controller role: gives every `type: LoadBalancer` Service an
 * address from an IPAddressPool and writes it to `status.loadBalancer.ingress`
 * (the speakers in the node agents then announce it). It runs in the
 * apiserver process beside the other controllers rather than as its own
 * Deployment; what it reads and writes is MetalLB's.
 *
 * - A requested address (`metallb.io/loadBalancerIPs` or
 *   `metallb.universe.tf/loadBalancerIPs` annotation, comma-separated, else
 *   `spec.loadBalancerIP`) must lie in a pool and be free, or allocation fails
 *   with an `AllocationFailed` event and the Service stays `<pending>`.
 * - Otherwise an address already held stays while its pool still holds it;
 *   else the first free address of the first auto-assign pool, pools ordered
 *   by `serviceAllocation.priority` (set ones first, lower first) then name.
 *   The `address-pool` annotation restricts the search to one pool.
 * - Addresses are not shared between Services (podlab does not implement
 *   `allow-shared-ip`); Services with a `spec.loadBalancerClass` are left to
 *   whoever implements that class, as MetalLB does.
 *
 * Like the ClusterIP allocator, nothing is bookkept apart from the objects:
 * the used set is read from the Services' statuses, so it persists with them.
 */
import type { EventRecorder } from './event-recorder.ts';
import { ADDRESS_POOL_ANNOTATIONS, IP_ADDRESS_POOLS, LB_IPS_ANNOTATIONS, poolAddresses, poolContains, type IpAddressPool } from './metallb.ts';
import { resourceKeyOf } from './resources.ts';
import { SERVICES, type LoadBalancerStatus, type Service } from './service-resources.ts';
import type { Store, StoreEvent } from './store.ts';

const SOURCE = { component: 'metallb-controller' };

function annotation(svc: Service, keys: readonly string[]): string | undefined {
  for (const k of keys) {
    const v = svc.metadata.annotations?.[k];
    if (typeof v === 'string' && v.trim() !== '') return v.trim();
  }
  return undefined;
}

/** The addresses a Service asks for: the annotation's list, else spec.loadBalancerIP; empty when it asks for none. */
export function requestedIPs(svc: Service): string[] {
  const ann = annotation(svc, LB_IPS_ANNOTATIONS);
  if (ann) return ann.split(',').map((s) => s.trim()).filter((s) => s !== '');
  const ip = svc.spec?.loadBalancerIP;
  return typeof ip === 'string' && ip !== '' ? [ip] : [];
}

/** The addresses in a Service's status. */
export function ingressIPs(svc: Service): string[] {
  return (svc.status?.loadBalancer?.ingress ?? []).map((i) => i.ip).filter((ip): ip is string => typeof ip === 'string');
}

/** Pools in MetalLB's allocation order: explicit priority first (lower first), then by name. */
export function orderPools(pools: readonly IpAddressPool[]): IpAddressPool[] {
  const prio = (p: IpAddressPool) => p.spec?.serviceAllocation?.priority;
  return [...pools].sort((a, b) => {
    const pa = prio(a);
    const pb = prio(b);
    if (pa !== undefined && pb === undefined) return -1;
    if (pa === undefined && pb !== undefined) return 1;
    if (pa !== undefined && pb !== undefined && pa !== pb) return pa - pb;
    return a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0;
  });
}

/** The outcome of one allocation: the addresses to publish, or why there are none. */
export type Allocation = { ips: string[]; pool: string } | { error: string };

/**
 * Pure allocation for one Service against the pools and the addresses other
 * Services hold (MetalLB's allocator.Allocate, without IP sharing).
 */
export function allocate(svc: Service, pools: readonly IpAddressPool[], usedByOthers: ReadonlySet<string>): Allocation {
  const key = `${svc.metadata.namespace ?? 'default'}/${svc.metadata.name}`;
  const wantPool = annotation(svc, ADDRESS_POOL_ANNOTATIONS);
  const ordered = orderPools(pools).filter((p) => !wantPool || p.metadata.name === wantPool);
  if (wantPool && ordered.length === 0) return { error: `Failed to allocate IP for "${key}": pool "${wantPool}" does not exist` };
  const poolOf = (ip: string) => ordered.find((p) => poolContains(p.spec ?? { addresses: [] }, ip));
  const requested = requestedIPs(svc);
  if (requested.length) {
    if (requested.length > 1) return { error: `Failed to allocate IP for "${key}": only one IPv4 address is supported, got ${JSON.stringify(requested)}` };
    const ip = requested[0];
    const pool = poolOf(ip);
    if (!pool) return { error: `Failed to allocate IP for "${key}": ["${ip}"] is not allowed in config` };
    if (usedByOthers.has(ip)) return { error: `Failed to allocate IP for "${key}": can't change sharing key for "${key}", address also in use by another service` };
    return { ips: [ip], pool: pool.metadata.name };
  }
  for (const ip of ingressIPs(svc)) {
    const pool = poolOf(ip);
    if (pool && !usedByOthers.has(ip)) return { ips: [ip], pool: pool.metadata.name };
  }
  for (const pool of ordered) {
    if (pool.spec?.autoAssign === false && pool.metadata.name !== wantPool) continue;
    for (const ip of poolAddresses(pool.spec ?? { addresses: [] })) if (!usedByOthers.has(ip)) return { ips: [ip], pool: pool.metadata.name };
  }
  return { error: `Failed to allocate IP for "${key}": no available IPs` };
}

/** The controller. */
export class LoadBalancerAllocator {
  private store?: Store;
  private syncing = false;

  constructor(private readonly recorder: EventRecorder) {}

  install(store: Store): void {
    this.store = store;
    store.subscribe((ev) => this.onEvent(ev));
    store.onOpen(() => this.syncAll());
  }

  private onEvent(ev: StoreEvent): void {
    const key = resourceKeyOf(ev.rt);
    if (key === resourceKeyOf(IP_ADDRESS_POOLS)) this.syncAll();
    else if (key === resourceKeyOf(SERVICES)) {
      if (ev.type === 'DELETED') {
        // A freed address may be what a pending Service waits for.
        if (ingressIPs(ev.object as Service).length) this.syncAll();
      } else if (!this.syncing) this.sync(ev.object as Service);
    }
  }

  /** Every LoadBalancer Service, oldest first, so a replay assigns the same addresses. */
  private syncAll(): void {
    const store = this.store!;
    const services = [...store.objectsOf(SERVICES)] as Service[];
    services.sort((a, b) => (a.metadata.creationTimestamp < b.metadata.creationTimestamp ? -1 : a.metadata.creationTimestamp > b.metadata.creationTimestamp ? 1 : a.metadata.name < b.metadata.name ? -1 : 1));
    // Services with an address keep it first; pending ones then take what is left.
    const held = services.filter((s) => ingressIPs(s).length);
    for (const s of [...held, ...services.filter((s) => !ingressIPs(s).length)]) this.sync(store.tryGet<Service>(SERVICES, s.metadata.name, s.metadata.namespace) ?? s);
  }

  /** Reconciles one Service's status with the pools. */
  sync(svc: Service): void {
    const store = this.store!;
    const ns = svc.metadata.namespace ?? 'default';
    if (svc.metadata.deletionTimestamp) return;
    const have = ingressIPs(svc);
    const managed = svc.spec?.type === 'LoadBalancer' && !svc.spec.loadBalancerClass;
    let want: string[] = [];
    let outcome: Allocation | undefined;
    if (managed) {
      const used = new Set<string>();
      for (const o of store.objectsOf(SERVICES) as Service[]) if (o.metadata.uid !== svc.metadata.uid && o.spec?.type === 'LoadBalancer') for (const ip of ingressIPs(o)) used.add(ip);
      outcome = allocate(svc, store.objectsOf(IP_ADDRESS_POOLS) as IpAddressPool[], used);
      if ('ips' in outcome) want = outcome.ips;
    } else if (svc.spec?.type === 'LoadBalancer') return; // another implementation's class: its status is not ours
    if (outcome && 'error' in outcome) this.recorder.record(svc, 'Warning', 'AllocationFailed', outcome.error, SOURCE);
    if (JSON.stringify(want) === JSON.stringify(have)) return;
    this.syncing = true;
    try {
      const updated = store.mutate<Service>(SERVICES, svc.metadata.name, ns, (d) => {
        const lb: LoadBalancerStatus = want.length ? { ingress: want.map((ip) => ({ ip, ipMode: 'VIP' as const })) } : {};
        d.status = { ...(d.status ?? {}), loadBalancer: lb };
      });
      if (want.length) this.recorder.record(updated, 'Normal', 'IPAllocated', `Assigned IP ${JSON.stringify(want)}`, SOURCE);
    } finally {
      this.syncing = false;
    }
  }
}
