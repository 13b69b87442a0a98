/**
 * The EndpointSlice controller (kube-controller-manager's
 * endpointslice-controller.k8s.io), running in the apiserver process on the
 * store's commit stream like the scheduler: for every Service with a
 * selector it keeps EndpointSlices listing the matching Pods.
 *
 * - A Pod is listed once it has an IP, unless it has finished for good
 *   (ShouldPodBeInEndpoints): `ready` = its Ready condition and not
 *   terminating, `serving` = its Ready condition, `terminating` = it has a
 *   deletionTimestamp. A not-ready Pod stays in the slice with ready=false,
 *   as in Kubernetes; a deleted Pod leaves it.
 * - Named targetPorts are resolved per Pod from its containers' ports (name
 *   and protocol must match); a Pod that lacks the name gets no entry for
 *   that port. Pods resolving to different port numbers go into different
 *   slices, at most 100 endpoints per slice (maxEndpointsPerSlice).
 * - Slices are named `<service>-<random>` (generateName), labelled
 *   `kubernetes.io/service-name` and `endpointslice.kubernetes.io/managed-by:
 *   endpointslice-controller.k8s.io` plus the Service's own labels, and owned
 *   by the Service; deleting the Service deletes them.
 *
 * Reconciliation is synchronous inside the commit that changed a Pod or a
 * Service, so a watcher sees the slice change right after the Pod change:
 * well under a second, with no polling. Slices of other managers (the
 * `kubernetes` service's, hand-made ones) are never touched.
 */
import { resourceKeyOf } from './resources.ts';
import { ENDPOINTSLICE_CONTROLLER, ENDPOINTSLICES, MANAGED_BY_LABEL, SERVICE_NAME_LABEL, SERVICES, type EndpointSlice, type Service, type SliceEndpoint, type SlicePort } from './service-resources.ts';
import { PODS } from './resources.ts';
import type { Store, StoreEvent } from './store.ts';
import type { KubeObject, Pod } from './types.ts';

/** maxEndpointsPerSlice default of kube-controller-manager. */
export const MAX_ENDPOINTS_PER_SLICE = 100;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** True when every selector label is on the object (an empty selector matches nothing here, as for Services). */
export function selectorMatches(selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  if (!selector) return false;
  const keys = Object.keys(selector);
  if (keys.length === 0) return false;
  return keys.every((k) => labels?.[k] === selector[k]);
}

/** k8s ShouldPodBeInEndpoints(pod, includeTerminating=true). */
export function shouldPodBeInEndpoints(pod: Pod): boolean {
  const ip = pod.status?.podIP;
  if (!ip) return false;
  const phase = pod.status?.phase;
  const policy = pod.spec?.restartPolicy ?? 'Always';
  if (policy === 'Never') return phase !== 'Failed' && phase !== 'Succeeded';
  if (policy === 'OnFailure') return phase !== 'Succeeded';
  return true;
}

/** podutil.IsPodReady: the Ready condition is True. */
export function isPodReady(pod: Pod): boolean {
  return pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

/** podutil.FindPort: a number is itself; a name is looked up among the containers' ports with the same protocol. */
export function findPort(pod: Pod, targetPort: number | string | undefined, port: number, protocol: string): number | undefined {
  if (targetPort === undefined) return port;
  if (typeof targetPort === 'number') return targetPort;
  for (const c of pod.spec?.containers ?? []) {
    for (const p of c.ports ?? []) if (p.name === targetPort && (p.protocol ?? 'TCP') === protocol) return p.containerPort;
  }
  return undefined;
}

/** The desired content of one slice. */
interface DesiredSlice {
  ports: SlicePort[];
  endpoints: SliceEndpoint[];
}

function ipKey(ip: string): number {
  return ip.split('.').reduce((a, o) => a * 256 + Number(o), 0);
}

/** Computes the slices a Service should have from the Pods of its namespace. */
export function desiredSlices(svc: Service, pods: readonly Pod[]): DesiredSlice[] {
  const spec = svc.spec ?? {};
  const svcPorts = Array.isArray(spec.ports) ? spec.ports : [];
  const groups = new Map<string, DesiredSlice>();
  const sorted = pods
    .filter((p) => p.metadata.namespace === svc.metadata.namespace && selectorMatches(spec.selector, p.metadata.labels) && shouldPodBeInEndpoints(p))
    .sort((a, b) => ipKey(a.status!.podIP!) - ipKey(b.status!.podIP!) || (a.metadata.name < b.metadata.name ? -1 : 1));
  for (const pod of sorted) {
    const ports: SlicePort[] = [];
    for (const sp of svcPorts) {
      const protocol = sp.protocol ?? 'TCP';
      const num = findPort(pod, sp.targetPort, sp.port, protocol);
      if (num === undefined) continue;
      ports.push({ name: sp.name ?? '', port: num, protocol });
    }
    const key = JSON.stringify(ports);
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { ports, endpoints: [] }));
    const terminating = typeof (pod.metadata as unknown as Record<string, unknown>).deletionTimestamp === 'string';
    const ready = isPodReady(pod);
    const ep: SliceEndpoint = {
      addresses: [pod.status!.podIP!],
      conditions: { ready: ready && !terminating, serving: ready, terminating },
      targetRef: { kind: 'Pod', namespace: pod.metadata.namespace, name: pod.metadata.name, uid: pod.metadata.uid },
    };
    if (pod.spec?.nodeName) ep.nodeName = pod.spec.nodeName;
    g.endpoints.push(ep);
  }
  // A Service with a selector but no matching pod still gets one placeholder slice, without ports or
  // endpoints (kubectl prints <unset> <unset>), as the Kubernetes reconciler keeps one.
  if (groups.size === 0) groups.set('[]', { ports: [], endpoints: [] });
  const out: DesiredSlice[] = [];
  for (const g of groups.values()) {
    if (g.endpoints.length === 0) out.push(g);
    for (let i = 0; i < g.endpoints.length; i += MAX_ENDPOINTS_PER_SLICE) out.push({ ports: g.ports, endpoints: g.endpoints.slice(i, i + MAX_ENDPOINTS_PER_SLICE) });
  }
  return out;
}

/** The controller. Install it on a store with {@link EndpointSliceController.install}. */
export class EndpointSliceController {
  private store?: Store;
  /** `ns/service` → names of the slices we manage for it. */
  private readonly owned = new Map<string, Set<string>>();
  /** Reconciliations done (for tests and benchmarks). */
  syncs = 0;

  /** Subscribes to Pod, Service and EndpointSlice changes and reconciles everything once the store is open. */
  install(store: Store): void {
    this.store = store;
    store.subscribe((ev) => this.onEvent(ev));
    store.onOpen(() => {
      for (const s of store.objectsOf(ENDPOINTSLICES)) this.track(s, true);
      for (const svc of store.objectsOf(SERVICES)) this.sync(svc.metadata.namespace ?? 'default', svc.metadata.name);
      // Slices whose Service vanished while we were not looking.
      for (const key of [...this.owned.keys()]) {
        const [ns, name] = key.split('/');
        if (!store.tryGet(SERVICES, name, ns)) this.sync(ns, name);
      }
    });
  }

  private track(slice: KubeObject, present: boolean): void {
    const labels = slice.metadata.labels ?? {};
    if (labels[MANAGED_BY_LABEL] !== ENDPOINTSLICE_CONTROLLER || !labels[SERVICE_NAME_LABEL]) return;
    const key = `${slice.metadata.namespace}/${labels[SERVICE_NAME_LABEL]}`;
    let set = this.owned.get(key);
    if (present) {
      if (!set) this.owned.set(key, (set = new Set()));
      set.add(slice.metadata.name);
    } else if (set) {
      set.delete(slice.metadata.name);
      if (set.size === 0) this.owned.delete(key);
    }
  }

  private onEvent(ev: StoreEvent): void {
    const store = this.store!;
    const key = resourceKeyOf(ev.rt);
    if (key === resourceKeyOf(SERVICES)) {
      this.sync(ev.object.metadata.namespace ?? 'default', ev.object.metadata.name);
    } else if (key === resourceKeyOf(PODS)) {
      const ns = ev.object.metadata.namespace ?? 'default';
      for (const svc of store.objectsOf(SERVICES)) {
        if (svc.metadata.namespace !== ns) continue;
        const sel = (svc as Service).spec?.selector;
        if (selectorMatches(sel, ev.object.metadata.labels) || (ev.prev && selectorMatches(sel, ev.prev.metadata.labels))) this.sync(ns, svc.metadata.name);
      }
    } else if (key === resourceKeyOf(ENDPOINTSLICES)) {
      this.track(ev.object, ev.type !== 'DELETED');
      const svcName = ev.object.metadata.labels?.[SERVICE_NAME_LABEL];
      // Someone else deleted or edited a slice we manage: put it back.
      const managed = ev.object.metadata.labels?.[MANAGED_BY_LABEL] === ENDPOINTSLICE_CONTROLLER;
      if (managed && svcName && ev.type === 'DELETED') this.sync(ev.object.metadata.namespace ?? 'default', svcName);
    }
  }

  /** Reconciles the slices of one Service. */
  sync(namespace: string, name: string): void {
    const store = this.store;
    if (!store) return;
    this.syncs++;
    const key = `${namespace}/${name}`;
    const svc = store.tryGet<Service>(SERVICES, name, namespace);
    const names = [...(this.owned.get(key) ?? [])].sort();
    const existing = names.map((n) => store.tryGet<EndpointSlice>(ENDPOINTSLICES, n, namespace)).filter((s): s is EndpointSlice => s !== undefined);
    if (!svc || !isRecord(svc.spec) || !svc.spec.selector || Object.keys(svc.spec.selector).length === 0) {
      for (const s of existing) this.remove(s);
      return;
    }
    const pods = store.objectsOf(PODS).filter((p) => p.metadata.namespace === namespace) as Pod[];
    const want = desiredSlices(svc, pods);
    const labels = { ...(svc.metadata.labels ?? {}), [SERVICE_NAME_LABEL]: name, [MANAGED_BY_LABEL]: ENDPOINTSLICE_CONTROLLER };
    const owner = { apiVersion: 'v1', kind: 'Service', name, uid: svc.metadata.uid, controller: true, blockOwnerDeletion: true };
    // Reuse slices whose ports match first (fewer changes for watchers), then any leftover.
    const pool = [...existing];
    const take = (ports: SlicePort[]): EndpointSlice | undefined => {
      let i = pool.findIndex((s) => JSON.stringify(s.ports ?? []) === JSON.stringify(ports));
      if (i < 0) i = pool.length ? 0 : -1;
      return i < 0 ? undefined : pool.splice(i, 1)[0];
    };
    for (const d of want) {
      const s = take(d.ports);
      if (!s) {
        const created = store.create<EndpointSlice>(ENDPOINTSLICES, {
          apiVersion: 'discovery.k8s.io/v1',
          kind: 'EndpointSlice',
          metadata: { generateName: `${name}-`, namespace, labels, ownerReferences: [owner] },
          addressType: 'IPv4',
          endpoints: d.endpoints,
          ports: d.ports,
        });
        this.track(created, true);
        continue;
      }
      store.mutate<EndpointSlice>(ENDPOINTSLICES, s.metadata.name, namespace, (draft) => {
        draft.metadata.labels = labels;
        (draft.metadata as unknown as Record<string, unknown>).ownerReferences = [owner];
        draft.addressType = 'IPv4';
        draft.endpoints = d.endpoints;
        draft.ports = d.ports;
      });
    }
    for (const s of pool) this.remove(s);
  }

  private remove(s: KubeObject): void {
    const store = this.store!;
    this.track(s, false);
    if (store.tryGet(ENDPOINTSLICES, s.metadata.name, s.metadata.namespace)) store.delete(ENDPOINTSLICES, s.metadata.name, { namespace: s.metadata.namespace });
  }
}
