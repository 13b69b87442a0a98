/**
 * The Service (core/v1) and EndpointSlice (discovery.k8s.io/v1) kinds:
 * registry entries, defaulting and validation with kube-apiserver's field
 * paths and wording (pkg/apis/core/validation ValidateService,
 * pkg/apis/discovery/validation), and the server-side printers kubectl uses
 * (`NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE`,
 * `NAME ADDRESSTYPE PORTS ENDPOINTS AGE`).
 *
 * This file only imports types from resources.ts, which registers these two
 * entries; allocation (clusterIP, nodePort) is admission in
 * service-allocator.ts, endpoints in endpointslice-controller.ts.
 *
 * podlab serves `type: ClusterIP | NodePort | LoadBalancer` (and headless
 * `clusterIP: None`); ExternalName is refused as an unsupported value. A
 * LoadBalancer gets NodePorts (unless `allocateLoadBalancerNodePorts: false`)
 * and its address from the MetalLB-style allocator (lb-allocator.ts).
 */
import { isIpAddress, isIpv4Address, isIpv4Cidr } from '../packet/ip-input.ts';
import type { FieldError } from './errors.ts';
import type { ResourceType } from './resources.ts';
import type { TableColumn, TableDefinition } from './tables.ts';
import { humanDuration } from './tables.ts';
import type { KubeObject } from './types.ts';
import { dns1123LabelErrors } from './validation.ts';

/** `spec.type` values podlab serves. */
export const SERVICE_TYPES = ['ClusterIP', 'NodePort', 'LoadBalancer'] as const;

/** Types whose ports are reachable from outside the cluster (k8s' ExternallyAccessible): they take NodePorts and externalTrafficPolicy. */
export function isExternalType(type: unknown): type is 'NodePort' | 'LoadBalancer' {
  return type === 'NodePort' || type === 'LoadBalancer';
}

/** The affinity timeout the apiserver defaults (3 hours), and k8s' maximum (1 day). */
export const DEFAULT_CLIENT_IP_TIMEOUT_SECONDS = 10800;
export const MAX_CLIENT_IP_TIMEOUT_SECONDS = 86400;

/** Label of an EndpointSlice naming its Service. */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
/** Label naming the controller managing an EndpointSlice. */
export const MANAGED_BY_LABEL = 'endpointslice.kubernetes.io/managed-by';
/** The endpointslice controller's value of {@link MANAGED_BY_LABEL}. */
export const ENDPOINTSLICE_CONTROLLER = 'endpointslice-controller.k8s.io';

/** A Service port. */
export interface ServicePort {
  name?: string;
  protocol?: 'TCP' | 'UDP' | 'SCTP';
  port: number;
  targetPort?: number | string;
  nodePort?: number;
}

/** `Service.spec` (the subset podlab serves). */
export interface ServiceSpec {
  type?: 'ClusterIP' | 'NodePort' | 'LoadBalancer';
  selector?: Record<string, string>;
  ports?: ServicePort[];
  clusterIP?: string;
  clusterIPs?: string[];
  sessionAffinity?: 'None' | 'ClientIP';
  sessionAffinityConfig?: { clientIP?: { timeoutSeconds?: number } };
  externalTrafficPolicy?: 'Cluster' | 'Local';
  internalTrafficPolicy?: 'Cluster' | 'Local';
  ipFamilies?: string[];
  ipFamilyPolicy?: string;
  loadBalancerIP?: string;
  loadBalancerSourceRanges?: string[];
  loadBalancerClass?: string;
  allocateLoadBalancerNodePorts?: boolean;
  [extra: string]: unknown;
}

/** A Service. */
export type Service = KubeObject<ServiceSpec, { loadBalancer?: LoadBalancerStatus }>;

/** `status.loadBalancer`: the addresses the load balancer answers on. */
export interface LoadBalancerStatus {
  ingress?: { ip?: string; hostname?: string; ipMode?: 'VIP' | 'Proxy'; ports?: unknown[] }[];
}

/** One endpoint of an EndpointSlice. */
export interface SliceEndpoint {
  addresses: string[];
  conditions?: { ready?: boolean; serving?: boolean; terminating?: boolean };
  nodeName?: string;
  targetRef?: { kind: string; name: string; namespace?: string; uid?: string };
}

/** One port of an EndpointSlice. */
export interface SlicePort {
  name?: string;
  port?: number;
  protocol?: string;
}

/** An EndpointSlice: no spec/status, the fields sit at the top level. */
export interface EndpointSlice extends KubeObject {
  addressType: 'IPv4' | 'IPv6' | 'FQDN';
  endpoints: SliceEndpoint[];
  ports?: SlicePort[];
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const isPortNumber = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535;

/** k8s IsValidPortName (an IANA_SVC_NAME): the messages it returns for `name`. */
export function portNameErrors(name: string): string[] {
  const errs: string[] = [];
  if (name.length > 15) errs.push('must be no more than 15 characters');
  if (!/^[-a-z0-9]+$/.test(name)) errs.push('must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)');
  if (name.includes('--')) errs.push('must not contain consecutive hyphens');
  if (/[a-z]/.test(name) === false) errs.push('must contain at least one letter (a-z)');
  if (name.startsWith('-') || name.endsWith('-')) errs.push('must not begin or end with a hyphen');
  return errs;
}

/** Service defaulting (SetDefaults_Service + the REST strategy), on create and update. */
export function defaultService(obj: KubeObject, op: 'create' | 'update', old: KubeObject | undefined): void {
  const spec = (isRecord(obj.spec) ? obj.spec : {}) as ServiceSpec;
  obj.spec = spec;
  spec.type ??= 'ClusterIP';
  spec.sessionAffinity ??= 'None';
  if (spec.sessionAffinity === 'ClientIP') {
    const cfg = (spec.sessionAffinityConfig ??= {});
    const ip = (cfg.clientIP ??= {});
    ip.timeoutSeconds ??= DEFAULT_CLIENT_IP_TIMEOUT_SECONDS;
  }
  if (Array.isArray(spec.ports)) {
    for (const p of spec.ports) {
      if (!isRecord(p)) continue;
      p.protocol ??= 'TCP';
      if (p.targetPort === undefined || p.targetPort === 0 || p.targetPort === '') p.targetPort = p.port;
    }
  }
  if (isExternalType(spec.type)) spec.externalTrafficPolicy ??= 'Cluster';
  if (spec.type === 'LoadBalancer') spec.allocateLoadBalancerNodePorts ??= true;
  spec.internalTrafficPolicy ??= 'Cluster';
  if (spec.clusterIP !== 'None') {
    spec.ipFamilies ??= ['IPv4'];
    spec.ipFamilyPolicy ??= 'SingleStack';
  }
  // clusterIP and clusterIPs[0] are one value; an update that omits it keeps the allocated one (patchAllocatedValues).
  const oldSpec = old && isRecord(old.spec) ? (old.spec as ServiceSpec) : undefined;
  if (!spec.clusterIP && Array.isArray(spec.clusterIPs) && typeof spec.clusterIPs[0] === 'string') spec.clusterIP = spec.clusterIPs[0];
  if (op === 'update' && oldSpec && !spec.clusterIP && oldSpec.clusterIP) {
    spec.clusterIP = oldSpec.clusterIP;
  }
  if (spec.clusterIP) spec.clusterIPs = [spec.clusterIP];
  if (op === 'update' && oldSpec && isExternalType(spec.type) && isExternalType(oldSpec.type) && Array.isArray(spec.ports) && Array.isArray(oldSpec.ports)) {
    const used = new Set(spec.ports.filter((p) => isRecord(p) && p.nodePort).map((p) => p.nodePort));
    const byName = new Map(oldSpec.ports.filter(isRecord).map((p) => [p.name ?? '', p.nodePort]));
    for (const p of spec.ports) {
      if (!isRecord(p) || p.nodePort) continue;
      const was = byName.get(p.name ?? '');
      if (was && !used.has(was)) p.nodePort = was;
    }
  }
  if (op === 'create') {
    const status = isRecord(obj.status) ? obj.status : {};
    status.loadBalancer ??= {};
    obj.status = status;
  }
}

function unsupported(field: string, value: unknown, allowed: readonly string[]): FieldError {
  return { field, type: 'FieldValueNotSupported', value, detail: `supported values: ${allowed.map((a) => `"${a}"`).join(', ')}` };
}

/** ValidateService (+ ValidateServiceUpdate when `old` is set), for what podlab serves. */
export function validateService(obj: KubeObject, old: KubeObject | undefined): FieldError[] {
  const errs: FieldError[] = [];
  const spec = obj.spec;
  if (!isRecord(spec)) return [{ field: 'spec', type: 'FieldValueRequired' }];
  const type = spec.type;
  if (!(SERVICE_TYPES as readonly unknown[]).includes(type)) errs.push(unsupported('spec.type', type, SERVICE_TYPES));
  const headless = spec.clusterIP === 'None';
  const ports = spec.ports;
  if (ports !== undefined && !Array.isArray(ports)) errs.push({ field: 'spec.ports', type: 'FieldValueInvalid', value: ports, detail: 'must be a list' });
  const list = Array.isArray(ports) ? ports : [];
  if (list.length === 0 && !headless) errs.push({ field: 'spec.ports', type: 'FieldValueRequired' });
  const names = new Set<string>();
  const keys = new Set<string>();
  const nodePorts = new Set<string>();
  list.forEach((p: unknown, i) => {
    const at = `spec.ports[${i}]`;
    if (!isRecord(p)) {
      errs.push({ field: at, type: 'FieldValueInvalid', value: p, detail: 'must be an object' });
      return;
    }
    const name = p.name;
    if (name === undefined || name === '') {
      if (list.length > 1) errs.push({ field: `${at}.name`, type: 'FieldValueRequired' });
    } else if (typeof name !== 'string') {
      errs.push({ field: `${at}.name`, type: 'FieldValueInvalid', value: name, detail: 'must be a string' });
    } else {
      for (const msg of dns1123LabelErrors(name)) errs.push({ field: `${at}.name`, type: 'FieldValueInvalid', value: name, detail: msg });
      if (names.has(name)) errs.push({ field: `${at}.name`, type: 'FieldValueDuplicate', value: name });
      names.add(name);
    }
    if (!isPortNumber(p.port)) errs.push({ field: `${at}.port`, type: 'FieldValueInvalid', value: p.port ?? 0, detail: 'must be between 1 and 65535, inclusive' });
    const protocol = p.protocol ?? 'TCP';
    if (protocol !== 'TCP' && protocol !== 'UDP' && protocol !== 'SCTP') errs.push(unsupported(`${at}.protocol`, protocol, ['SCTP', 'TCP', 'UDP']));
    const tp = p.targetPort;
    if (typeof tp === 'number') {
      if (!isPortNumber(tp)) errs.push({ field: `${at}.targetPort`, type: 'FieldValueInvalid', value: tp, detail: 'must be between 1 and 65535, inclusive' });
    } else if (typeof tp === 'string') {
      for (const msg of portNameErrors(tp)) errs.push({ field: `${at}.targetPort`, type: 'FieldValueInvalid', value: tp, detail: msg });
    } else if (tp !== undefined) {
      errs.push({ field: `${at}.targetPort`, type: 'FieldValueInvalid', value: tp, detail: 'must be a port number or a port name' });
    }
    const key = `${JSON.stringify(protocol)}/${JSON.stringify(p.port)}`;
    if (keys.has(key)) errs.push({ field: at, type: 'FieldValueDuplicate', value: { protocol, port: p.port } });
    keys.add(key);
    const np = p.nodePort;
    if (np !== undefined && np !== 0) {
      if (type === 'ClusterIP') errs.push({ field: `${at}.nodePort`, type: 'FieldValueForbidden', detail: "may not be used when `type` is 'ClusterIP'" });
      else if (typeof np !== 'number' || !Number.isInteger(np)) errs.push({ field: `${at}.nodePort`, type: 'FieldValueInvalid', value: np, detail: 'must be an integer' });
      else {
        const nk = `${JSON.stringify(protocol)}/${np}`;
        if (nodePorts.has(nk)) errs.push({ field: `${at}.nodePort`, type: 'FieldValueDuplicate', value: np });
        nodePorts.add(nk);
      }
    }
  });
  const cip = spec.clusterIP;
  if (cip !== undefined && cip !== '' && cip !== 'None' && !isIpv4Address(cip)) {
    errs.push({ field: 'spec.clusterIPs[0]', type: 'FieldValueInvalid', value: cip, detail: 'must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)' });
  }
  if (headless && isExternalType(type)) errs.push({ field: 'spec.clusterIPs[0]', type: 'FieldValueInvalid', value: 'None', detail: `may not be set to 'None' for ${type} services` });
  const lbIP = spec.loadBalancerIP;
  if (lbIP !== undefined && lbIP !== '') {
    if (type !== 'LoadBalancer') errs.push({ field: 'spec.loadBalancerIP', type: 'FieldValueForbidden', detail: 'may only be used when `type` is \'LoadBalancer\'' });
    else if (!isIpv4Address(lbIP)) errs.push({ field: 'spec.loadBalancerIP', type: 'FieldValueInvalid', value: lbIP, detail: 'must be a valid IP address' });
  }
  const ranges = spec.loadBalancerSourceRanges;
  if (ranges !== undefined && ranges !== null) {
    if (type !== 'LoadBalancer') errs.push({ field: 'spec.loadBalancerSourceRanges', type: 'FieldValueForbidden', detail: 'may only be used when `type` is \'LoadBalancer\'' });
    else if (!Array.isArray(ranges)) errs.push({ field: 'spec.loadBalancerSourceRanges', type: 'FieldValueInvalid', value: ranges, detail: 'must be a list of CIDRs' });
    else ranges.forEach((r: unknown, i) => {
      if (!isIpv4Cidr(typeof r === 'string' ? r.trim() : r)) errs.push({ field: `spec.loadBalancerSourceRanges[${i}]`, type: 'FieldValueInvalid', value: r, detail: 'must be a list of IP ranges. For example, 10.240.0.0/24,10.250.0.0/24 ' });
    });
  }
  const alloc = spec.allocateLoadBalancerNodePorts;
  if (type === 'LoadBalancer' && typeof alloc !== 'boolean') errs.push({ field: 'spec.allocateLoadBalancerNodePorts', type: 'FieldValueRequired' });
  if (type !== 'LoadBalancer' && alloc !== undefined && alloc !== null) errs.push({ field: 'spec.allocateLoadBalancerNodePorts', type: 'FieldValueForbidden', detail: 'may only be used when `type` is \'LoadBalancer\'' });
  const sel = spec.selector;
  if (sel !== undefined && (!isRecord(sel) || Object.values(sel).some((v) => typeof v !== 'string'))) {
    errs.push({ field: 'spec.selector', type: 'FieldValueInvalid', value: sel, detail: 'must be a map of string to string' });
  }
  const aff = spec.sessionAffinity;
  if (aff !== 'None' && aff !== 'ClientIP') errs.push(unsupported('spec.sessionAffinity', aff, ['ClientIP', 'None']));
  const cfg = spec.sessionAffinityConfig;
  if (aff === 'ClientIP') {
    const t = isRecord(cfg) && isRecord(cfg.clientIP) ? cfg.clientIP.timeoutSeconds : undefined;
    if (typeof t !== 'number' || !Number.isInteger(t) || t <= 0 || t > MAX_CLIENT_IP_TIMEOUT_SECONDS) {
      errs.push({
        field: 'spec.sessionAffinityConfig.clientIP.timeoutSeconds',
        type: 'FieldValueInvalid',
        value: t ?? 0,
        detail: `must be greater than 0 and less than ${MAX_CLIENT_IP_TIMEOUT_SECONDS}`,
      });
    }
  } else if (aff === 'None' && cfg !== undefined && cfg !== null) {
    errs.push({ field: 'spec.sessionAffinityConfig', type: 'FieldValueInvalid', value: cfg, detail: `must not be set when session affinity is None` });
  }
  const etp = spec.externalTrafficPolicy;
  if (etp !== undefined && etp !== '') {
    if (!isExternalType(type)) errs.push({ field: 'spec.externalTrafficPolicy', type: 'FieldValueInvalid', value: etp, detail: 'may only be set for externally-accessible services' });
    else if (etp !== 'Cluster' && etp !== 'Local') errs.push(unsupported('spec.externalTrafficPolicy', etp, ['Cluster', 'Local']));
  }
  const itp = spec.internalTrafficPolicy;
  if (itp !== undefined && itp !== 'Cluster' && itp !== 'Local') errs.push(unsupported('spec.internalTrafficPolicy', itp, ['Cluster', 'Local']));
  if (old && isRecord(old.spec)) {
    const was = old.spec.clusterIP;
    if (typeof was === 'string' && was !== '' && spec.clusterIP !== was) {
      errs.push({ field: 'spec.clusterIPs[0]', type: 'FieldValueInvalid', value: spec.clusterIP ?? '', detail: 'may not change once set' });
    }
  }
  return errs;
}

/** EndpointSlice defaulting: port protocol TCP and name "". */
export function defaultEndpointSlice(obj: KubeObject): void {
  const s = obj as unknown as Record<string, unknown>;
  if (Array.isArray(s.ports)) {
    for (const p of s.ports) {
      if (!isRecord(p)) continue;
      p.protocol ??= 'TCP';
      p.name ??= '';
    }
  }
  if (s.endpoints === undefined || s.endpoints === null) s.endpoints = [];
}

/** ValidateEndpointSlice (+ update: addressType is immutable). */
export function validateEndpointSlice(obj: KubeObject, old: KubeObject | undefined): FieldError[] {
  const errs: FieldError[] = [];
  const s = obj as unknown as Record<string, unknown>;
  const at = s.addressType;
  if (at === undefined || at === '') errs.push({ field: 'addressType', type: 'FieldValueRequired' });
  else if (at !== 'IPv4' && at !== 'IPv6' && at !== 'FQDN') errs.push(unsupported('addressType', at, ['FQDN', 'IPv4', 'IPv6']));
  if (old && (old as unknown as Record<string, unknown>).addressType !== at) {
    errs.push({ field: 'addressType', type: 'FieldValueInvalid', value: at, detail: 'field is immutable' });
  }
  if (!Array.isArray(s.endpoints)) errs.push({ field: 'endpoints', type: 'FieldValueInvalid', value: s.endpoints, detail: 'must be a list' });
  else {
    if (s.endpoints.length > 1000) errs.push({ field: 'endpoints', type: 'FieldValueInvalid', value: s.endpoints.length, detail: 'must have at most 1000 items' });
    s.endpoints.forEach((ep: unknown, i) => {
      const base = `endpoints[${i}]`;
      if (!isRecord(ep)) return errs.push({ field: base, type: 'FieldValueInvalid', value: ep, detail: 'must be an object' });
      if (!Array.isArray(ep.addresses) || ep.addresses.length === 0) {
        errs.push({ field: `${base}.addresses`, type: 'FieldValueRequired', detail: 'must contain at least 1 address' });
      } else {
        if (ep.addresses.length > 100) errs.push({ field: `${base}.addresses`, type: 'FieldValueInvalid', value: ep.addresses.length, detail: 'must have at most 100 items' });
        ep.addresses.forEach((a: unknown, j) => {
          const ok = at === 'IPv4' ? isIpv4Address(a) : at === 'IPv6' ? isIpAddress(a) && !isIpv4Address(a) : typeof a === 'string';
          if (!ok) {
            errs.push({ field: `${String(base)}.addresses[${String(j)}]`, type: 'FieldValueInvalid', value: a, detail: `must be a valid ${String(at)} address` });
          }
        });
      }
      if (ep.nodeName !== undefined && typeof ep.nodeName !== 'string') errs.push({ field: `${base}.nodeName`, type: 'FieldValueInvalid', value: ep.nodeName, detail: 'must be a string' });
      if (ep.conditions !== undefined && !isRecord(ep.conditions)) errs.push({ field: `${base}.conditions`, type: 'FieldValueInvalid', value: ep.conditions, detail: 'must be an object' });
    });
  }
  if (s.ports !== undefined) {
    if (!Array.isArray(s.ports)) errs.push({ field: 'ports', type: 'FieldValueInvalid', value: s.ports, detail: 'must be a list' });
    else {
      const seen = new Set<string>();
      s.ports.forEach((p: unknown, i) => {
        const base = `ports[${i}]`;
        if (!isRecord(p)) return errs.push({ field: base, type: 'FieldValueInvalid', value: p, detail: 'must be an object' });
        const name = typeof p.name === 'string' ? p.name : '';
        if (name !== '') for (const msg of dns1123LabelErrors(name)) errs.push({ field: `${base}.name`, type: 'FieldValueInvalid', value: name, detail: msg });
        if (seen.has(name)) errs.push({ field: `${base}.name`, type: 'FieldValueDuplicate', value: name });
        seen.add(name);
        if (p.port !== undefined && p.port !== null && !isPortNumber(p.port)) errs.push({ field: `${base}.port`, type: 'FieldValueInvalid', value: p.port, detail: 'must be between 1 and 65535, inclusive' });
        if (p.protocol !== 'TCP' && p.protocol !== 'UDP' && p.protocol !== 'SCTP') errs.push(unsupported(`${base}.protocol`, p.protocol, ['SCTP', 'TCP', 'UDP']));
      });
    }
  }
  return errs;
}

const col = (name: string, description: string, priority = 0, type: TableColumn['type'] = 'string', format = ''): TableColumn => ({ name, type, format, description, priority });

function age(obj: KubeObject, now: number): string {
  const created = Date.parse(obj.metadata.creationTimestamp);
  return Number.isNaN(created) ? '<unknown>' : humanDuration(now - created);
}

/** kubectl's makePortString: `80/TCP`, `80:30080/TCP`, comma-separated. */
export function servicePortsString(spec: ServiceSpec | undefined): string {
  const ports = Array.isArray(spec?.ports) ? spec.ports : [];
  const s = ports.map((p) => (p.nodePort ? `${p.port}:${p.nodePort}/${p.protocol ?? 'TCP'}` : `${p.port}/${p.protocol ?? 'TCP'}`)).join(',');
  return s || '<none>';
}

/** labels.FormatLabels of a selector: `app=web,tier=fe` sorted, `<none>` when empty. */
export function selectorString(sel: Record<string, string> | undefined): string {
  const keys = Object.keys(sel ?? {}).sort();
  return keys.length ? keys.map((k) => `${k}=${sel![k]}`).join(',') : '<none>';
}

function listWithMore(list: string[], count: number, max: number): string {
  const ret = list.join(',');
  if (count > max) return `${ret} + ${count - max} more...`;
  return ret === '' ? '<unset>' : ret;
}

/** kubectl's formatDiscoveryPorts: the first 3 port numbers (or names, or `*`). */
export function slicePortsString(ports: SlicePort[] | undefined): string {
  const list: string[] = [];
  for (const p of ports ?? []) if (list.length < 3) list.push(typeof p.port === 'number' ? String(p.port) : p.name ? p.name : '*');
  return listWithMore(list, (ports ?? []).length, 3);
}

/** kubectl's formatDiscoveryEndpoints: the first 3 addresses. */
export function sliceEndpointsString(endpoints: SliceEndpoint[] | undefined): string {
  const list: string[] = [];
  let count = 0;
  for (const ep of endpoints ?? []) {
    for (const a of ep.addresses ?? []) {
      if (list.length < 3) list.push(a);
      count++;
    }
  }
  return listWithMore(list, count, 3);
}

/**
 * kubectl's getServiceExternalIP: for a LoadBalancer the ingress addresses
 * (and externalIPs), `<pending>` until the load balancer has one; for other
 * types the externalIPs or `<none>`.
 */
export function serviceExternalIP(svc: Service): string {
  const spec = (svc.spec ?? {});
  const external = Array.isArray(spec.externalIPs) ? (spec.externalIPs as unknown[]).filter((x): x is string => typeof x === 'string') : [];
  if (spec.type === 'LoadBalancer') {
    const lb = (svc.status?.loadBalancer?.ingress ?? []).map((i) => i.ip ?? i.hostname ?? '').filter((x) => x !== '');
    const all = [...lb, ...external];
    return all.length ? all.join(',') : '<pending>';
  }
  return external.length ? external.join(',') : '<none>';
}

/** Service: NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE [SELECTOR]. */
export const SERVICE_TABLE: TableDefinition = {
  columns: [
    col('Name', 'Name must be unique within a namespace.', 0, 'string', 'name'),
    col('Type', 'type determines how the Service is exposed.'),
    col('Cluster-IP', 'clusterIP is the IP address of the service and is usually assigned randomly.'),
    col('External-IP', 'externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.'),
    col('Port(s)', 'The list of ports that are exposed by this service.'),
    col('Age', 'CreationTimestamp is a timestamp representing the server time when this object was created.'),
    col('Selector', 'Route service traffic to pods with label keys and values matching this selector.', 1),
  ],
  cells(obj, now) {
    const spec = (obj.spec ?? {}) as ServiceSpec;
    const ip = spec.clusterIPs?.[0] ?? spec.clusterIP ?? '<none>';
    return [obj.metadata.name, spec.type ?? 'ClusterIP', ip || '<none>', serviceExternalIP(obj as Service), servicePortsString(spec), age(obj, now), selectorString(spec.selector)];
  },
};

/** EndpointSlice: NAME ADDRESSTYPE PORTS ENDPOINTS AGE. */
export const ENDPOINTSLICE_TABLE: TableDefinition = {
  columns: [
    col('Name', 'Name must be unique within a namespace.', 0, 'string', 'name'),
    col('AddressType', 'addressType specifies the type of address carried by this EndpointSlice.'),
    col('Ports', 'ports specifies the list of network ports exposed by each endpoint in this slice.'),
    col('Endpoints', 'endpoints is a list of unique endpoints in this slice.'),
    col('Age', 'CreationTimestamp is a timestamp representing the server time when this object was created.', 0, 'date'),
  ],
  cells(obj, now) {
    const s = obj as EndpointSlice;
    return [obj.metadata.name, s.addressType ?? '', slicePortsString(s.ports), sliceEndpointsString(s.endpoints), age(obj, now)];
  },
};

const fieldOf =
  (get: (o: Record<string, unknown>) => unknown) =>
  (obj: KubeObject): string => {
    const v = get((obj.spec ?? {}) as Record<string, unknown>);
    return typeof v === 'string' ? v : '';
  };

/** Core v1 Service. */
export const SERVICES: ResourceType = {
  group: '',
  version: 'v1',
  kind: 'Service',
  plural: 'services',
  singular: 'service',
  namespaced: true,
  listKind: 'ServiceList',
  shortNames: ['svc'],
  categories: ['all'],
  hasStatus: true,
  fieldSelectors: { 'spec.clusterIP': fieldOf((s) => s.clusterIP), 'spec.type': fieldOf((s) => s.type) },
  defaulting: defaultService,
  validate: validateService,
  table: SERVICE_TABLE,
};

/** discovery.k8s.io/v1 EndpointSlice. */
export const ENDPOINTSLICES: ResourceType = {
  group: 'discovery.k8s.io',
  version: 'v1',
  kind: 'EndpointSlice',
  plural: 'endpointslices',
  singular: 'endpointslice',
  namespaced: true,
  listKind: 'EndpointSliceList',
  hasStatus: false,
  defaulting: (obj) => defaultEndpointSlice(obj),
  validate: validateEndpointSlice,
  table: ENDPOINTSLICE_TABLE,
};

