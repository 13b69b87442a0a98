/**
 * The endpoints controller's output, derived here from the EndpointSlices:
 * every Service with a selector (and the apiserver's own `kubernetes`
 * Service) gets a v1 Endpoints object of the same name whose subsets list
 * ready addresses and not-ready ones per port set, so `kubectl describe svc`
 * and `kubectl get endpoints` show what kube-proxy routes to. Endpoints of
 * Services without a selector belong to the user and are left alone.
 */
import { ENDPOINTS, type EndpointSubset } from './core-resources.ts';
import { resourceKeyOf } from './resources.ts';
import { ENDPOINTSLICES, SERVICE_NAME_LABEL, SERVICES, type EndpointSlice, type Service } from './service-resources.ts';
import type { Store, StoreEvent } from './store.ts';

function managed(svc: Service | undefined): boolean {
  if (!svc) return false;
  if (svc.metadata.namespace === 'default' && svc.metadata.name === 'kubernetes') return true;
  return !!svc.spec?.selector && Object.keys(svc.spec.selector).length > 0;
}

/** Subsets from a Service's slices: one subset per distinct port list, addresses sorted. */
export function subsetsFromSlices(slices: readonly EndpointSlice[]): EndpointSubset[] {
  const byPorts = new Map<string, EndpointSubset>();
  for (const s of slices) {
    const ports = (s.ports ?? []).filter((p) => typeof p.port === 'number').map((p) => ({ ...(p.name ? { name: p.name } : {}), port: p.port as number, protocol: p.protocol ?? 'TCP' }));
    const key = JSON.stringify(ports);
    let sub = byPorts.get(key);
    for (const e of s.endpoints ?? []) {
      if (e.conditions?.terminating === true) continue;
      if (!sub) byPorts.set(key, (sub = { ports }));
      for (const ip of e.addresses ?? []) {
        const addr = { ip, ...(e.nodeName ? { nodeName: e.nodeName } : {}), ...(e.targetRef ? { targetRef: { ...e.targetRef } } : {}) };
        const list = e.conditions?.ready === false ? (sub.notReadyAddresses ??= []) : (sub.addresses ??= []);
        list.push(addr);
      }
    }
  }
  const out = [...byPorts.values()].filter((s) => (s.addresses?.length ?? 0) + (s.notReadyAddresses?.length ?? 0) > 0);
  for (const s of out) {
    s.addresses?.sort((a, b) => (a.ip < b.ip ? -1 : 1));
    s.notReadyAddresses?.sort((a, b) => (a.ip < b.ip ? -1 : 1));
    if (s.ports?.length === 0) delete s.ports;
  }
  return out;
}

/** The controller. */
export class EndpointsController {
  private store?: Store;

  install(store: Store): void {
    this.store = store;
    store.subscribe((ev) => this.onEvent(ev));
    store.onOpen(() => {
      for (const svc of store.objectsOf(SERVICES)) this.sync(svc.metadata.namespace ?? 'default', svc.metadata.name);
    });
  }

  private onEvent(ev: StoreEvent): void {
    const key = resourceKeyOf(ev.rt);
    const ns = ev.object.metadata.namespace ?? 'default';
    if (key === resourceKeyOf(SERVICES)) {
      if (ev.type === 'DELETED') {
        if (managed(ev.object as Service) && this.store!.tryGet(ENDPOINTS, ev.object.metadata.name, ns)) this.store!.delete(ENDPOINTS, ev.object.metadata.name, { namespace: ns });
      } else this.sync(ns, ev.object.metadata.name);
    } else if (key === resourceKeyOf(ENDPOINTSLICES)) {
      const svc = ev.object.metadata.labels?.[SERVICE_NAME_LABEL] ?? ev.prev?.metadata.labels?.[SERVICE_NAME_LABEL];
      if (svc) this.sync(ns, svc);
    }
  }

  /** Reconciles the Endpoints of one Service. */
  sync(namespace: string, name: string): void {
    const store = this.store!;
    const svc = store.tryGet<Service>(SERVICES, name, namespace);
    if (!managed(svc)) return;
    const slices = store.objectsOf(ENDPOINTSLICES).filter((s) => s.metadata.namespace === namespace && s.metadata.labels?.[SERVICE_NAME_LABEL] === name) as EndpointSlice[];
    const subsets = subsetsFromSlices(slices);
    const labels = { ...(svc!.metadata.labels ?? {}) };
    const existing = store.tryGet(ENDPOINTS, name, namespace);
    if (!existing) {
      store.create(ENDPOINTS, { apiVersion: 'v1', kind: 'Endpoints', metadata: { name, namespace, ...(Object.keys(labels).length ? { labels } : {}) }, subsets });
      return;
    }
    store.mutate(ENDPOINTS, name, namespace, (d) => {
      (d as unknown as { subsets: EndpointSubset[] }).subsets = subsets;
      if (Object.keys(labels).length) d.metadata.labels = labels;
    });
  }
}
