/**
 * The resource registry: one table entry per kind the apiserver serves.
 *
 * Everything kind-specific (REST paths, discovery, list kinds, selectable
 * fields, defaulting, validation) hangs off an entry here, so adding Services,
 * EndpointSlices or Calico's BGPConfiguration later is one `registry.register`
 * call plus optional hooks, not edits across the server and client.
 */
import type { KubeObject } from './types.ts';
import type { FieldError } from './errors.ts';
import { defaultNamespace, defaultNodeFromOld, defaultPod, validateNamespace, validateNode, validatePod } from './validation.ts';
import type { NameRule } from './validation.ts';
import { NAMESPACE_TABLE, NODE_TABLE, POD_TABLE, type TableDefinition } from './tables.ts';
import { BGP_CONFIGURATIONS, BGP_FILTERS, BGP_PEERS, IP_POOLS } from './calico.ts';
import { BGP_ADVERTISEMENTS, IP_ADDRESS_POOLS, L2_ADVERTISEMENTS } from './metallb.ts';
import { INGRESSES, INGRESS_CLASSES } from './ingress-resources.ts';
import { ENDPOINTSLICES, SERVICES } from './service-resources.ts';
import { DAEMONSETS, DEPLOYMENTS, REPLICASETS } from './workload-resources.ts';
import { CONFIGMAPS, ENDPOINTS, EVENTS, EVENTS_V1, LEASES, SECRETS, SERVICEACCOUNTS } from './core-resources.ts';
import { NETWORK_POLICIES } from './network-policy.ts';

/** A field-selector getter: returns the field as a string ("" when absent, as k8s does). */
export type FieldGetter = (obj: KubeObject) => string;

/** One servable kind. */
export interface ResourceType {
  /** API group; '' is the legacy core group served under /api/v1. */
  group: string;
  version: string;
  kind: string;
  /** Lower-case plural used in URLs (`pods`). */
  plural: string;
  /** Lower-case singular (`pod`), also accepted by the client. */
  singular: string;
  namespaced: boolean;
  listKind: string;
  shortNames?: string[];
  /** True when the kind has a `/status` subresource (main updates then ignore status). */
  hasStatus: boolean;
  /** Selectable fields beyond metadata.name / metadata.namespace, which every kind has. */
  fieldSelectors?: Record<string, FieldGetter>;
  /** How `metadata.name` is validated; default DNS-1123 subdomain (Namespace uses label). */
  nameRule?: NameRule;
  /** Fills server-side defaults into a new or updated object (mutates it); `old` is set on update. */
  defaulting?: (obj: KubeObject, op: 'create' | 'update', old: KubeObject | undefined) => void;
  /** Kind-specific validation; `old` is set on update. */
  validate?: (obj: KubeObject, old: KubeObject | undefined) => FieldError[];
  /** Server-side printing for `kubectl get` (default: Name + Created At). */
  table?: TableDefinition;
  /** Discovery categories (`all` makes `kubectl get all` include the kind). */
  categories?: string[];
  /** True when the kind serves the autoscaling/v1 `scale` subresource (spec.replicas). */
  scalable?: boolean;
}

/** The `apiVersion` string for a resource (`v1`, `discovery.k8s.io/v1`). */
export function apiVersionOf(rt: ResourceType): string {
  return rt.group ? `${rt.group}/${rt.version}` : rt.version;
}

/** A stable key for a resource type, used by the store (`/pods`, `discovery.k8s.io/endpointslices`). */
export function resourceKeyOf(rt: ResourceType): string {
  return `${rt.group}/${rt.plural}`;
}

/** Path prefix of a group/version: `/api/v1` for core, `/apis/{group}/{version}` otherwise. */
export function groupVersionPrefix(rt: Pick<ResourceType, 'group' | 'version'>): string {
  return rt.group ? `/apis/${rt.group}/${rt.version}` : `/api/${rt.version}`;
}

/**
 * REST path of a collection, an object or a subresource, e.g.
 * `/api/v1/namespaces/default/pods/web/status`. Without a namespace a
 * namespaced kind's collection path lists across all namespaces.
 */
export function resourcePath(rt: ResourceType, opts: { namespace?: string; name?: string; subresource?: string } = {}): string {
  let p = groupVersionPrefix(rt);
  if (rt.namespaced && opts.namespace !== undefined) p += `/namespaces/${encodeURIComponent(opts.namespace)}`;
  p += `/${rt.plural}`;
  if (opts.name !== undefined) p += `/${encodeURIComponent(opts.name)}`;
  if (opts.subresource !== undefined) p += `/${opts.subresource}`;
  return p;
}

/** Reads a dotted path from an object as a field-selector string. */
export function fieldPath(path: string): FieldGetter {
  const parts = path.split('.');
  return (obj) => {
    let cur: unknown = obj;
    for (const part of parts) {
      if (typeof cur !== 'object' || cur === null) return '';
      cur = (cur as Record<string, unknown>)[part];
    }
    if (typeof cur === 'string') return cur;
    if (typeof cur === 'number' || typeof cur === 'boolean') return String(cur);
    return '';
  };
}

/** A table of resource types with lookup by the names a user might type. */
export class ResourceRegistry {
  private readonly types: ResourceType[] = [];

  /** Adds a kind. Throws if its plural is already registered in that group. */
  register(rt: ResourceType): ResourceType {
    if (this.types.some((t) => t.group === rt.group && t.plural === rt.plural)) {
      throw new Error(`resource ${rt.plural}.${rt.group} already registered`);
    }
    this.types.push(rt);
    return rt;
  }

  /** All registered kinds, in registration order. */
  all(): readonly ResourceType[] {
    return this.types;
  }

  /** The distinct named (non-core) group/version pairs. */
  groups(): { group: string; version: string }[] {
    const seen = new Map<string, { group: string; version: string }>();
    for (const t of this.types) if (t.group) seen.set(`${t.group}/${t.version}`, { group: t.group, version: t.version });
    return [...seen.values()];
  }

  /** The kind served at `{group, version, plural}`, as a URL names it. */
  lookup(group: string, version: string, plural: string): ResourceType | undefined {
    return this.types.find((t) => t.group === group && t.version === version && t.plural === plural);
  }

  /** The kind with this apiVersion/kind pair (for decoding bodies). */
  byKind(apiVersion: string, kind: string): ResourceType | undefined {
    return this.types.find((t) => apiVersionOf(t) === apiVersion && t.kind === kind);
  }

  /**
   * Resolves what a user or caller wrote: plural, singular, Kind or short
   * name, optionally group-qualified (`bgpconfigurations.projectcalico.org`).
   * Case-insensitive. Core-group names win over same-named group kinds, as in kubectl.
   */
  resolve(name: string): ResourceType | undefined {
    const lower = name.toLowerCase();
    const names = (t: ResourceType) => [t.plural, t.singular, t.kind.toLowerCase(), ...(t.shortNames ?? [])];
    const sorted = [...this.types].sort((a, b) => (a.group === '' ? 0 : 1) - (b.group === '' ? 0 : 1));
    const plain = sorted.find((t) => names(t).includes(lower));
    if (plain) return plain;
    for (const t of sorted) {
      if (!t.group) continue;
      for (const n of names(t)) {
        if (lower === `${n}.${t.group}` || lower === `${n}.${t.version}.${t.group}`) return t;
      }
    }
    return undefined;
  }
}

/** Core v1 Namespace. */
export const NAMESPACES: ResourceType = {
  group: '',
  version: 'v1',
  kind: 'Namespace',
  plural: 'namespaces',
  singular: 'namespace',
  namespaced: false,
  listKind: 'NamespaceList',
  shortNames: ['ns'],
  hasStatus: true,
  nameRule: 'dns1123-label',
  fieldSelectors: { 'status.phase': fieldPath('status.phase') },
  defaulting: defaultNamespace,
  validate: validateNamespace,
  table: NAMESPACE_TABLE,
};

/** Core v1 Node. */
export const NODES: ResourceType = {
  group: '',
  version: 'v1',
  kind: 'Node',
  plural: 'nodes',
  singular: 'node',
  namespaced: false,
  listKind: 'NodeList',
  shortNames: ['no'],
  hasStatus: true,
  fieldSelectors: {
    'spec.unschedulable': (obj) => fieldPath('spec.unschedulable')(obj) || 'false',
  },
  defaulting: (obj, _op, old) => defaultNodeFromOld(obj, old),
  validate: validateNode,
  table: NODE_TABLE,
};

/** Core v1 Pod. */
export const PODS: ResourceType = {
  group: '',
  version: 'v1',
  kind: 'Pod',
  plural: 'pods',
  singular: 'pod',
  namespaced: true,
  listKind: 'PodList',
  shortNames: ['po'],
  categories: ['all'],
  hasStatus: true,
  fieldSelectors: {
    'spec.nodeName': fieldPath('spec.nodeName'),
    'spec.restartPolicy': fieldPath('spec.restartPolicy'),
    'spec.hostNetwork': (obj) => fieldPath('spec.hostNetwork')(obj) || 'false',
    'status.phase': fieldPath('status.phase'),
    'status.podIP': fieldPath('status.podIP'),
  },
  defaulting: defaultPod,
  validate: validatePod,
  table: POD_TABLE,
};

/** The process-wide registry used by the apiserver and the client. */
export const registry = new ResourceRegistry();
registry.register(NAMESPACES);
registry.register(NODES);
registry.register(PODS);
registry.register(BGP_CONFIGURATIONS);
registry.register(BGP_PEERS);
registry.register(BGP_FILTERS);
registry.register(IP_POOLS);
registry.register(SERVICES);
registry.register(ENDPOINTSLICES);
registry.register(ENDPOINTS);
registry.register(EVENTS);
registry.register(CONFIGMAPS);
registry.register(SECRETS);
registry.register(SERVICEACCOUNTS);
registry.register(DEPLOYMENTS);
registry.register(REPLICASETS);
registry.register(DAEMONSETS);
registry.register(EVENTS_V1);
registry.register(LEASES);
registry.register(NETWORK_POLICIES);
registry.register(IP_ADDRESS_POOLS);
registry.register(L2_ADVERTISEMENTS);
registry.register(BGP_ADVERTISEMENTS);
registry.register(INGRESSES);
registry.register(INGRESS_CLASSES);

export { ENDPOINTSLICES, SERVICES };
