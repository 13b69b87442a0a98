/**
 * The core kinds clients expect besides Pods and Services: v1 Endpoints,
 * Events (core/v1 and events.k8s.io/v1), ConfigMaps, Secrets,
 * ServiceAccounts, and coordination.k8s.io/v1 Leases (node heartbeats in
 * kube-node-lease). Registry entries with the defaults and printers of
 * kube-apiserver; the objects themselves are stored as sent.
 */
import type { FieldError } from './errors.ts';
import type { FieldGetter, ResourceType } from './resources.ts';
import { humanDuration, type TableColumn, type TableDefinition } from './tables.ts';
import type { KubeObject } from './types.ts';

/** The namespace that holds one Lease per node. */
export const NODE_LEASE_NAMESPACE = 'kube-node-lease';

/** A core/v1 Event. */
export interface CoreEvent extends KubeObject {
  involvedObject: { kind?: string; namespace?: string; name?: string; uid?: string; apiVersion?: string; resourceVersion?: string; fieldPath?: string };
  reason?: string;
  message?: string;
  source?: { component?: string; host?: string };
  firstTimestamp?: string | null;
  lastTimestamp?: string | null;
  count?: number;
  type?: 'Normal' | 'Warning';
  eventTime?: string | null;
  reportingComponent?: string;
  reportingInstance?: string;
}

/** A v1 Endpoints subset. */
export interface EndpointSubset {
  addresses?: { ip: string; nodeName?: string; targetRef?: Record<string, unknown> }[];
  notReadyAddresses?: { ip: string; nodeName?: string; targetRef?: Record<string, unknown> }[];
  ports?: { name?: string; port: number; protocol?: string }[];
}

/** A v1 Endpoints object. */
export interface Endpoints extends KubeObject {
  subsets?: EndpointSubset[];
}

/** A coordination.k8s.io/v1 Lease. */
export type Lease = KubeObject<{ holderIdentity?: string; leaseDurationSeconds?: number; renewTime?: string; acquireTime?: string; leaseTransitions?: number }>;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const col = (name: string, description: string, priority = 0): TableColumn => ({ name, type: 'string', format: name === 'Name' ? 'name' : '', description, priority });
const NAME_COL = col('Name', 'Name must be unique within a namespace.');
const AGE_COL = col('Age', 'CreationTimestamp is a timestamp representing the server time when this object was created.');

function ageOf(ts: string | null | undefined, now: number): string {
  const t = ts ? Date.parse(ts) : NaN;
  return Number.isNaN(t) ? '<unknown>' : humanDuration(now - t);
}

/** `kubectl get endpoints`: NAME ENDPOINTS AGE, at most three addresses then "+ N more...". */
export const ENDPOINTS_TABLE: TableDefinition = {
  columns: [NAME_COL, col('Endpoints', 'Endpoints of the service'), AGE_COL],
  cells(obj, now) {
    const list: string[] = [];
    for (const s of (obj as Endpoints).subsets ?? []) {
      const ports = s.ports?.length ? s.ports : [undefined];
      for (const a of s.addresses ?? []) for (const p of ports) list.push(p ? `${a.ip}:${p.port}` : a.ip);
    }
    let text = list.length === 0 ? '<none>' : list.slice(0, 3).join(',');
    if (list.length > 3) text += ` + ${list.length - 3} more...`;
    return [obj.metadata.name, text, ageOf(obj.metadata.creationTimestamp, now)];
  },
};

/** `kubectl get events`: LAST SEEN TYPE REASON OBJECT MESSAGE (and the wide columns of kube's printer). */
export const EVENT_TABLE: TableDefinition = {
  columns: [
    col('Last Seen', 'Time when last Event occurred'),
    col('Type', 'Type of this event (Normal, Warning), new types could be added in the future.'),
    col('Reason', 'This should be a short, machine understandable string that gives the reason for this event being generated.'),
    col('Object', 'The object that this event is about.'),
    col('Subobject', 'Subobject of the event', 1),
    col('Source', 'The component reporting this event. Should be a short machine understandable string.', 1),
    col('Message', 'A human-readable description of the status of this operation.'),
    col('First Seen', 'The time at which the event was first recorded.', 1),
    col('Count', 'The number of times this event has occurred.', 1),
    { ...col('Name', 'Name must be unique within a namespace.', 1), format: 'name' },
  ],
  cells(obj, now) {
    const e = obj as CoreEvent;
    const last = e.lastTimestamp ?? e.eventTime ?? obj.metadata.creationTimestamp;
    const first = e.firstTimestamp ?? e.eventTime ?? obj.metadata.creationTimestamp;
    const io = e.involvedObject ?? {};
    const source = [e.source?.component ?? e.reportingComponent ?? '', e.source?.host ?? ''].filter(Boolean).join(', ');
    return [
      ageOf(last, now),
      e.type ?? '',
      e.reason ?? '',
      `${(io.kind ?? '').toLowerCase()}/${io.name ?? ''}`,
      io.fieldPath ?? '',
      source,
      (e.message ?? '').trim(),
      ageOf(first, now),
      String(e.count ?? 1),
      obj.metadata.name,
    ];
  },
};

const dataCount = (obj: KubeObject): number => {
  const o = obj as unknown as Record<string, unknown>;
  return (isRecord(o.data) ? Object.keys(o.data).length : 0) + (isRecord(o.binaryData) ? Object.keys(o.binaryData).length : 0);
};

export const CONFIGMAP_TABLE: TableDefinition = {
  columns: [NAME_COL, col('Data', 'Number of data entries.'), AGE_COL],
  cells: (obj, now) => [obj.metadata.name, dataCount(obj), ageOf(obj.metadata.creationTimestamp, now)],
};

export const SECRET_TABLE: TableDefinition = {
  columns: [NAME_COL, col('Type', 'The type of the secret'), col('Data', 'Number of data entries.'), AGE_COL],
  cells: (obj, now) => [obj.metadata.name, String((obj as unknown as { type?: string }).type ?? 'Opaque'), dataCount(obj), ageOf(obj.metadata.creationTimestamp, now)],
};

export const SERVICEACCOUNT_TABLE: TableDefinition = {
  columns: [NAME_COL, col('Secrets', 'Number of secrets.'), AGE_COL],
  cells: (obj, now) => {
    const secrets = (obj as unknown as { secrets?: unknown[] }).secrets;
    return [obj.metadata.name, Array.isArray(secrets) ? secrets.length : 0, ageOf(obj.metadata.creationTimestamp, now)];
  },
};

export const LEASE_TABLE: TableDefinition = {
  columns: [NAME_COL, col('Holder', 'Holder of the lease.'), AGE_COL],
  cells: (obj, now) => [obj.metadata.name, String((obj as Lease).spec?.holderIdentity ?? ''), ageOf(obj.metadata.creationTimestamp, now)],
};

/** Secret defaulting: type Opaque, and `stringData` folded into base64 `data` as the apiserver does. */
function defaultSecret(obj: KubeObject): void {
  const o = obj as unknown as Record<string, unknown>;
  o.type ??= 'Opaque';
  if (isRecord(o.stringData)) {
    const data = isRecord(o.data) ? o.data : {};
    for (const [k, v] of Object.entries(o.stringData)) data[k] = Buffer.from(String(v), 'utf8').toString('base64');
    o.data = data;
    delete o.stringData;
  }
}

const DATA_KEY = /^[-._a-zA-Z0-9]+$/;

/** ConfigMap/Secret: data keys must be valid config keys; Secret values base64. */
function validateData(obj: KubeObject, base64: boolean): FieldError[] {
  const errs: FieldError[] = [];
  const o = obj as unknown as Record<string, unknown>;
  for (const field of ['data', 'binaryData']) {
    const data = o[field];
    if (data === undefined) continue;
    if (!isRecord(data)) {
      errs.push({ field, type: 'FieldValueInvalid', value: data, detail: 'must be a map of strings' });
      continue;
    }
    for (const [k, v] of Object.entries(data)) {
      if (!DATA_KEY.test(k) || k.length > 253) errs.push({ field: `${field}[${k}]`, type: 'FieldValueInvalid', value: k, detail: "a valid config key must consist of alphanumeric characters, '-', '_' or '.'" });
      if (typeof v !== 'string') errs.push({ field: `${field}[${k}]`, type: 'FieldValueInvalid', value: v, detail: 'must be a string' });
      else if ((base64 || field === 'binaryData') && !/^[A-Za-z0-9+/]*={0,2}$/.test(v)) {
        errs.push({ field: `${field}[${k}]`, type: 'FieldValueInvalid', value: '<value omitted>', detail: 'illegal base64 data' });
      }
    }
  }
  return errs;
}

/** core/v1 Event: `involvedObject` is required, `count` defaults to 1. */
function defaultEvent(obj: KubeObject): void {
  const e = obj as unknown as Record<string, unknown>;
  if (!isRecord(e.involvedObject)) e.involvedObject = {};
  e.count ??= 1;
  e.type ??= 'Normal';
}

/** Reads a dotted path as a field-selector string (resources.ts has the same; importing it would be circular). */
function fieldPath(path: string): FieldGetter {
  const parts = path.split('.');
  return (obj) => {
    let cur: unknown = obj;
    for (const part of parts) cur = isRecord(cur) ? cur[part] : undefined;
    return typeof cur === 'string' || typeof cur === 'number' || typeof cur === 'boolean' ? String(cur) : '';
  };
}

const event = fieldPath;

export const ENDPOINTS: ResourceType = {
  group: '',
  version: 'v1',
  kind: 'Endpoints',
  plural: 'endpoints',
  singular: 'endpoints',
  namespaced: true,
  listKind: 'EndpointsList',
  shortNames: ['ep'],
  hasStatus: false,
  table: ENDPOINTS_TABLE,
};

export const EVENTS: ResourceType = {
  group: '',
  version: 'v1',
  kind: 'Event',
  plural: 'events',
  singular: 'event',
  namespaced: true,
  listKind: 'EventList',
  shortNames: ['ev'],
  hasStatus: false,
  fieldSelectors: {
    'involvedObject.kind': event('involvedObject.kind'),
    'involvedObject.namespace': event('involvedObject.namespace'),
    'involvedObject.name': event('involvedObject.name'),
    'involvedObject.uid': event('involvedObject.uid'),
    'involvedObject.apiVersion': event('involvedObject.apiVersion'),
    'involvedObject.resourceVersion': event('involvedObject.resourceVersion'),
    'involvedObject.fieldPath': event('involvedObject.fieldPath'),
    reason: event('reason'),
    reportingComponent: event('reportingComponent'),
    source: event('source.component'),
    type: event('type'),
  },
  defaulting: (obj) => defaultEvent(obj),
  table: EVENT_TABLE,
};

/** events.k8s.io/v1 Event (the newer schema: regarding, note, reportingController). */
export const EVENTS_V1: ResourceType = {
  group: 'events.k8s.io',
  version: 'v1',
  kind: 'Event',
  plural: 'events',
  singular: 'event',
  namespaced: true,
  listKind: 'EventList',
  shortNames: ['ev'],
  hasStatus: false,
  fieldSelectors: {
    'regarding.kind': event('regarding.kind'),
    'regarding.name': event('regarding.name'),
    'regarding.namespace': event('regarding.namespace'),
    'regarding.uid': event('regarding.uid'),
    reason: event('reason'),
    reportingController: event('reportingController'),
    type: event('type'),
  },
};

export const CONFIGMAPS: ResourceType = {
  group: '',
  version: 'v1',
  kind: 'ConfigMap',
  plural: 'configmaps',
  singular: 'configmap',
  namespaced: true,
  listKind: 'ConfigMapList',
  shortNames: ['cm'],
  hasStatus: false,
  validate: (obj) => validateData(obj, false),
  table: CONFIGMAP_TABLE,
};

export const SECRETS: ResourceType = {
  group: '',
  version: 'v1',
  kind: 'Secret',
  plural: 'secrets',
  singular: 'secret',
  namespaced: true,
  listKind: 'SecretList',
  hasStatus: false,
  fieldSelectors: { type: fieldPath('type') },
  defaulting: (obj) => defaultSecret(obj),
  validate: (obj) => validateData(obj, true),
  table: SECRET_TABLE,
};

export const SERVICEACCOUNTS: ResourceType = {
  group: '',
  version: 'v1',
  kind: 'ServiceAccount',
  plural: 'serviceaccounts',
  singular: 'serviceaccount',
  namespaced: true,
  listKind: 'ServiceAccountList',
  shortNames: ['sa'],
  hasStatus: false,
  table: SERVICEACCOUNT_TABLE,
};

export const LEASES: ResourceType = {
  group: 'coordination.k8s.io',
  version: 'v1',
  kind: 'Lease',
  plural: 'leases',
  singular: 'lease',
  namespaced: true,
  listKind: 'LeaseList',
  hasStatus: false,
  table: LEASE_TABLE,
};
