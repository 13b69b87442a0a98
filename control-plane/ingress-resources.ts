/**
 * networking.k8s.io/v1 Ingress and IngressClass: registry entries, the
 * validation kube-apiserver applies to paths and backends
 * (pkg/apis/networking/validation), the DefaultIngressClass admission (an
 * Ingress without a class gets the one annotated
 * `ingressclass.kubernetes.io/is-default-class: "true"`), and kubectl's
 * printers (`NAME CLASS HOSTS ADDRESS PORTS AGE`, `NAME CONTROLLER
 * PARAMETERS AGE`). Routing is the controller's business (apps/), not the
 * apiserver's.
 */
import type { FieldError } from './errors.ts';
import type { ResourceType } from './resources.ts';
import type { TableColumn, TableDefinition } from './tables.ts';
import { humanDuration } from './tables.ts';
import type { KubeObject } from './types.ts';
import type { Store } from './store.ts';

/** The annotation that makes an IngressClass the default. */
export const DEFAULT_CLASS_ANNOTATION = 'ingressclass.kubernetes.io/is-default-class';
export const PATH_TYPES = ['Exact', 'Prefix', 'ImplementationSpecific'] as const;

export interface IngressBackend {
  service?: { name: string; port: { number?: number; name?: string } };
  resource?: { apiGroup?: string; kind: string; name: string };
}
export interface IngressPath {
  path?: string;
  pathType: (typeof PATH_TYPES)[number];
  backend: IngressBackend;
}
export interface IngressSpec {
  ingressClassName?: string;
  defaultBackend?: IngressBackend;
  rules?: { host?: string; http?: { paths: IngressPath[] } }[];
  tls?: { hosts?: string[]; secretName?: string }[];
}
export type Ingress = KubeObject<IngressSpec, { loadBalancer?: { ingress?: { ip?: string; hostname?: string }[] } }>;

const rec = (v: unknown): Record<string, unknown> => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {});

function backendErrors(b: unknown, at: string): FieldError[] {
  const r = rec(b);
  const svc = r.service === undefined ? undefined : rec(r.service);
  const errs: FieldError[] = [];
  if (svc && r.resource !== undefined) return [{ field: at, type: 'FieldValueInvalid', value: '', detail: 'cannot set both service and resource backends' }];
  if (!svc && r.resource === undefined) return [{ field: at, type: 'FieldValueInvalid', value: '', detail: 'must specify a service or a resource backend' }];
  if (svc) {
    if (typeof svc.name !== 'string' || svc.name === '') errs.push({ field: `${at}.service.name`, type: 'FieldValueRequired' });
    const port = rec(svc.port);
    const hasNum = port.number !== undefined;
    const hasName = port.name !== undefined && port.name !== '';
    if (hasNum && hasName) errs.push({ field: `${at}.service.port`, type: 'FieldValueInvalid', value: port, detail: 'cannot set both port name & port number' });
    else if (!hasNum && !hasName) errs.push({ field: `${at}.service.port.name`, type: 'FieldValueRequired', detail: 'port name or number is required' });
    else if (hasNum && (!Number.isInteger(port.number) || (port.number as number) < 1 || (port.number as number) > 65535)) {
      errs.push({ field: `${at}.service.port.number`, type: 'FieldValueInvalid', value: port.number, detail: 'must be between 1 and 65535, inclusive' });
    }
  }
  return errs;
}

/** ValidateIngress for what podlab's controller reads. */
export function validateIngress(obj: KubeObject): FieldError[] {
  const spec = rec(obj.spec);
  const errs: FieldError[] = [];
  const rules = spec.rules === undefined ? [] : Array.isArray(spec.rules) ? spec.rules : null;
  if (rules === null) return [{ field: 'spec.rules', type: 'FieldValueInvalid', value: spec.rules, detail: 'must be a list' }];
  if (spec.defaultBackend === undefined && rules.length === 0) errs.push({ field: 'spec.rules', type: 'FieldValueRequired', detail: 'either `defaultBackend` or `rules` must be specified' });
  if (spec.defaultBackend !== undefined) errs.push(...backendErrors(spec.defaultBackend, 'spec.defaultBackend'));
  rules.forEach((r0: unknown, i) => {
    const r = rec(r0);
    const at = `spec.rules[${i}]`;
    if (r.host !== undefined && (typeof r.host !== 'string' || !/^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(r.host))) {
      errs.push({ field: `${at}.host`, type: 'FieldValueInvalid', value: r.host, detail: "a lowercase RFC 1123 subdomain (optionally starting with '*.')" });
    }
    const paths = rec(r.http).paths;
    if (r.http === undefined) return;
    if (!Array.isArray(paths) || paths.length === 0) return errs.push({ field: `${at}.http.paths`, type: 'FieldValueRequired' });
    paths.forEach((p0: unknown, j) => {
      const p = rec(p0);
      const pat = `${at}.http.paths[${j}]`;
      if (p.pathType === undefined) errs.push({ field: `${pat}.pathType`, type: 'FieldValueRequired', detail: 'pathType must be specified' });
      else if (!(PATH_TYPES as readonly unknown[]).includes(p.pathType)) errs.push({ field: `${pat}.pathType`, type: 'FieldValueNotSupported', value: p.pathType, detail: `supported values: ${PATH_TYPES.map((x) => `"${x}"`).join(', ')}` });
      else if (p.pathType !== 'ImplementationSpecific' && (typeof p.path !== 'string' || !p.path.startsWith('/'))) {
        errs.push({ field: `${pat}.path`, type: 'FieldValueInvalid', value: p.path ?? '', detail: 'must be an absolute path' });
      }
      errs.push(...backendErrors(p.backend, `${pat}.backend`));
    });
  });
  return errs;
}

const col = (name: string, description: string, priority = 0, format = ''): TableColumn => ({ name, type: 'string', format, description, priority });
const age = (obj: KubeObject, now: number) => {
  const t = Date.parse(obj.metadata.creationTimestamp);
  return Number.isNaN(t) ? '<unknown>' : humanDuration(now - t);
};

/** kubectl's Ingress row: hosts (`*` for a hostless rule), ADDRESS from status, PORTS 80 or 80, 443 with TLS. */
export const INGRESS_TABLE: TableDefinition = {
  columns: [col('Name', 'Name must be unique within a namespace.', 0, 'name'), col('Class', 'ingressClassName'), col('Hosts', 'rules[].host'), col('Address', 'status.loadBalancer.ingress'), col('Ports', 'ports'), col('Age', 'CreationTimestamp')],
  cells(obj, now) {
    const ing = obj as Ingress;
    const spec = ing.spec ?? {};
    const hosts = (spec.rules ?? []).map((r) => r.host || '*');
    const shown = hosts.length > 4 ? `${hosts.slice(0, 4).join(',')} + ${hosts.length - 4} more...` : hosts.join(',') || '*';
    const addr = (ing.status?.loadBalancer?.ingress ?? []).map((i) => i.ip ?? i.hostname ?? '').filter(Boolean).join(',');
    return [obj.metadata.name, spec.ingressClassName ?? '<none>', shown, addr, spec.tls?.length ? '80, 443' : '80', age(obj, now)];
  },
};

export const INGRESSES: ResourceType = {
  group: 'networking.k8s.io',
  version: 'v1',
  kind: 'Ingress',
  plural: 'ingresses',
  singular: 'ingress',
  namespaced: true,
  listKind: 'IngressList',
  shortNames: ['ing'],
  hasStatus: true,
  validate: validateIngress,
  table: INGRESS_TABLE,
};

export const INGRESS_CLASSES: ResourceType = {
  group: 'networking.k8s.io',
  version: 'v1',
  kind: 'IngressClass',
  plural: 'ingressclasses',
  singular: 'ingressclass',
  namespaced: false,
  listKind: 'IngressClassList',
  hasStatus: false,
  validate: (obj) => (typeof rec(obj.spec).controller === 'string' && rec(obj.spec).controller !== '' ? [] : [{ field: 'spec.controller', type: 'FieldValueRequired' }]),
  table: {
    columns: [col('Name', 'Name must be unique.', 0, 'name'), col('Controller', 'spec.controller'), col('Parameters', 'spec.parameters'), col('Age', 'CreationTimestamp')],
    cells: (obj, now) => {
      const p = rec(rec(obj.spec).parameters);
      const str = (v: unknown) => (typeof v === 'string' ? v : '');
      return [obj.metadata.name, str(rec(obj.spec).controller), str(p.kind) ? `${str(p.kind)}/${str(p.name)}` : '<none>', age(obj, now)];
    },
  },
};

/**
 * The DefaultIngressClass admission plugin: a new Ingress without
 * `spec.ingressClassName` gets the class annotated as default (the newest,
 * when several are).
 */
export function installDefaultIngressClass(store: Store): void {
  store.addAdmission((ctx) => {
    if (ctx.op !== 'create' || ctx.rt !== INGRESSES) return;
    const spec = rec(ctx.obj.spec) as IngressSpec;
    if (spec.ingressClassName) return;
    const defaults = store.objectsOf(INGRESS_CLASSES).filter((c) => c.metadata.annotations?.[DEFAULT_CLASS_ANNOTATION] === 'true');
    if (!defaults.length) return;
    defaults.sort((a, b) => (a.metadata.creationTimestamp < b.metadata.creationTimestamp ? 1 : -1));
    spec.ingressClassName = defaults[0].metadata.name;
    ctx.obj.spec = spec;
  });
}
