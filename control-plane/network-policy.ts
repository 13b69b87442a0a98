/**
 * The NetworkPolicy kind (networking.k8s.io/v1): the registry entry, the
 * apiserver's defaulting (SetDefaults_NetworkPolicy: `protocol: TCP` on every
 * port, `policyTypes` from the rules present) and validation with
 * kube-apiserver's field paths (pkg/apis/networking/validation), and the
 * printer kubectl shows (`NAME POD-SELECTOR AGE`).
 *
 * The apiserver only stores policies; what they mean is policy/ (compiled by
 * every node agent).
 */
import { Cidr } from '../packet/cidr.ts';
import type { FieldError } from './errors.ts';
import type { ResourceType } from './resources.ts';
import { humanDuration, type TableDefinition } from './tables.ts';
import type { KubeObject } from './types.ts';

const rec = (v: unknown): Record<string, unknown> => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

/** SetDefaults_NetworkPolicy and SetDefaults_NetworkPolicyPort. */
function defaultNetworkPolicy(obj: KubeObject): void {
  const spec = rec(obj.spec);
  obj.spec = spec;
  spec.podSelector ??= {};
  for (const dir of ['ingress', 'egress'] as const) {
    for (const r of arr(spec[dir])) for (const p of arr(rec(r).ports)) rec(p).protocol ??= 'TCP';
  }
  if (!Array.isArray(spec.policyTypes) || spec.policyTypes.length === 0) {
    spec.policyTypes = arr(spec.egress).length > 0 ? ['Ingress', 'Egress'] : ['Ingress'];
  }
}

function cidrOf(v: unknown): Cidr | null {
  return typeof v === 'string' ? Cidr.tryParse(v) ?? null : null;
}

function validatePeer(peer: unknown, field: string, errs: FieldError[]): void {
  const p = rec(peer);
  const n = ['podSelector', 'namespaceSelector', 'ipBlock'].filter((k) => p[k] !== undefined).length;
  if (n === 0) errs.push({ field, type: 'FieldValueRequired', detail: 'must specify a peer' });
  if (p.ipBlock !== undefined && n > 1) errs.push({ field, type: 'FieldValueForbidden', detail: 'may not specify more than 1 peer type' });
  if (p.ipBlock === undefined) return;
  const b = rec(p.ipBlock);
  const cidr = cidrOf(b.cidr);
  if (b.cidr === undefined) errs.push({ field: `${field}.ipBlock.cidr`, type: 'FieldValueRequired' });
  else if (!cidr) errs.push({ field: `${field}.ipBlock.cidr`, type: 'FieldValueInvalid', value: b.cidr, detail: 'must be a valid CIDR' });
  arr(b.except).forEach((e, i) => {
    const ex = cidrOf(e);
    const f = `${field}.ipBlock.except[${i}]`;
    if (!ex) errs.push({ field: f, type: 'FieldValueInvalid', value: e, detail: 'must be a valid CIDR' });
    else if (cidr && !(ex.prefixLen > cidr.prefixLen && cidr.covers(ex))) errs.push({ field: f, type: 'FieldValueInvalid', value: e, detail: 'must be a strict subset of `cidr`' });
  });
}

function validatePort(port: unknown, field: string, errs: FieldError[]): void {
  const p = rec(port);
  if (p.protocol !== undefined && !['TCP', 'UDP', 'SCTP'].includes(p.protocol as string)) {
    errs.push({ field: `${field}.protocol`, type: 'FieldValueNotSupported', value: p.protocol, detail: 'supported values: "SCTP", "TCP", "UDP"' });
  }
  const v = p.port;
  if (typeof v === 'number' && !(Number.isInteger(v) && v >= 1 && v <= 65535)) errs.push({ field: `${field}.port`, type: 'FieldValueInvalid', value: v, detail: 'must be between 1 and 65535, inclusive' });
  if (typeof v === 'string' && !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(v)) errs.push({ field: `${field}.port`, type: 'FieldValueInvalid', value: v, detail: 'must be a valid port name (IANA_SVC_NAME)' });
  if (p.endPort === undefined) return;
  if (typeof v !== 'number') errs.push({ field: `${field}.endPort`, type: 'FieldValueInvalid', value: p.endPort, detail: 'may not be specified when `port` is not a number' });
  else if (typeof p.endPort !== 'number' || !Number.isInteger(p.endPort) || p.endPort < v || p.endPort > 65535) {
    errs.push({ field: `${field}.endPort`, type: 'FieldValueInvalid', value: p.endPort, detail: 'must be greater than or equal to `port`' });
  }
}

function validateNetworkPolicy(obj: KubeObject): FieldError[] {
  const spec = rec(obj.spec);
  const errs: FieldError[] = [];
  arr(spec.policyTypes).forEach((t, i) => {
    if (t !== 'Ingress' && t !== 'Egress') errs.push({ field: `spec.policyTypes[${i}]`, type: 'FieldValueNotSupported', value: t, detail: 'supported values: "Egress", "Ingress"' });
  });
  for (const [dir, peers] of [['ingress', 'from'], ['egress', 'to']] as const) {
    arr(spec[dir]).forEach((r, i) => {
      arr(rec(r)[peers]).forEach((p, j) => validatePeer(p, `spec.${dir}[${i}].${peers}[${j}]`, errs));
      arr(rec(r).ports).forEach((p, j) => validatePort(p, `spec.${dir}[${i}].ports[${j}]`, errs));
    });
  }
  return errs;
}

/** `metav1.FormatLabelSelector`: `app=web,tier in (a,b)`, `<none>` for the empty selector. */
export function formatLabelSelector(sel: unknown): string {
  const s = rec(sel);
  const parts = Object.entries(rec(s.matchLabels)).map(([k, v]) => `${k}=${String(v)}`);
  for (const e of arr(s.matchExpressions)) {
    const x = rec(e);
    const op = typeof x.operator === 'string' ? x.operator : '';
    const vals = arr(x.values).map(String).join(',');
    if (op === 'In') parts.push(`${String(x.key)} in (${vals})`);
    else if (op === 'NotIn') parts.push(`${String(x.key)} notin (${vals})`);
    else if (op === 'Exists') parts.push(String(x.key));
    else if (op === 'DoesNotExist') parts.push(`!${String(x.key)}`);
  }
  return parts.length ? parts.join(',') : '<none>';
}

const NETWORK_POLICY_TABLE: TableDefinition = {
  columns: [
    { name: 'Name', type: 'string', format: 'name', description: 'Name must be unique within a namespace.', priority: 0 },
    { name: 'Pod-Selector', type: 'string', format: '', description: 'Selects the pods to which this NetworkPolicy object applies.', priority: 0 },
    { name: 'Age', type: 'string', format: '', description: 'CreationTimestamp is a timestamp representing the server time when this object was created.', priority: 0 },
  ],
  cells: (obj, now) => [obj.metadata.name, formatLabelSelector(rec(obj.spec).podSelector), humanDuration(now - Date.parse(obj.metadata.creationTimestamp))],
};

export const NETWORK_POLICIES: ResourceType = {
  group: 'networking.k8s.io',
  version: 'v1',
  kind: 'NetworkPolicy',
  plural: 'networkpolicies',
  singular: 'networkpolicy',
  namespaced: true,
  listKind: 'NetworkPolicyList',
  shortNames: ['netpol'],
  hasStatus: false,
  defaulting: defaultNetworkPolicy,
  validate: validateNetworkPolicy,
  table: NETWORK_POLICY_TABLE,
};
