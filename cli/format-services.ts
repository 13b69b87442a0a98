/**
 * kubectl's tables for Services and EndpointSlices:
 * `NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE [SELECTOR]` and
 * `NAME ADDRESSTYPE PORTS ENDPOINTS AGE`, cells as kubectl's printers make
 * them (control-plane/service-resources.ts holds the shared cell helpers).
 */
import { selectorString, serviceExternalIP, servicePortsString, sliceEndpointsString, slicePortsString, type EndpointSlice, type Service } from '../control-plane/service-resources.ts';
import { age, table } from './format.ts';

function empty(allNamespaces: boolean, namespace: string | undefined): string {
  return allNamespaces ? 'No resources found\n' : `No resources found in ${namespace ?? 'default'} namespace.\n`;
}

/** `kubectl get services [-o wide] [-A]`. */
export function formatServices(services: Service[], wide: boolean, allNamespaces: boolean, namespace?: string): string {
  const header = ['NAME', 'TYPE', 'CLUSTER-IP', 'EXTERNAL-IP', 'PORT(S)', 'AGE'];
  if (allNamespaces) header.unshift('NAMESPACE');
  if (wide) header.push('SELECTOR');
  const rows = services.map((s) => {
    const spec = s.spec ?? {};
    const r = [s.metadata.name, spec.type ?? 'ClusterIP', spec.clusterIPs?.[0] ?? spec.clusterIP ?? '<none>', serviceExternalIP(s), servicePortsString(spec), age(s.metadata.creationTimestamp)];
    if (allNamespaces) r.unshift(s.metadata.namespace ?? 'default');
    if (wide) r.push(selectorString(spec.selector));
    return r;
  });
  return rows.length ? table(header, rows) : empty(allNamespaces, namespace);
}

/** `kubectl get endpointslices [-A]`. */
export function formatEndpointSlices(slices: EndpointSlice[], allNamespaces: boolean, namespace?: string): string {
  const header = ['NAME', 'ADDRESSTYPE', 'PORTS', 'ENDPOINTS', 'AGE'];
  if (allNamespaces) header.unshift('NAMESPACE');
  const rows = slices.map((s) => {
    const r = [s.metadata.name, s.addressType ?? '', slicePortsString(s.ports), sliceEndpointsString(s.endpoints), age(s.metadata.creationTimestamp)];
    if (allNamespaces) r.unshift(s.metadata.namespace ?? 'default');
    return r;
  });
  return rows.length ? table(header, rows) : empty(allNamespaces, namespace);
}
