/**
 * URL routing and discovery documents for the Kubernetes REST layout:
 *
 *   /api/v1/{plural}[/{name}[/{sub}]]                          cluster-scoped, or all namespaces
 *   /api/v1/namespaces/{ns}/{plural}[/{name}[/{sub}]]          namespaced
 *   /apis/{group}/{version}/...                                same, for named groups
 *
 * Derived entirely from the resource registry, so a newly registered kind is
 * routable and discoverable with no change here.
 */
import { apiVersionOf, type ResourceRegistry, type ResourceType } from './resources.ts';

/** A request path that names a resource collection, object or subresource. */
export interface ResourceRoute {
  rt: ResourceType;
  /** Namespace from the path (absent for cluster-scoped paths and all-namespace lists). */
  namespace?: string;
  name?: string;
  subresource?: string;
}

/** A request path that names a discovery document. */
export interface DiscoveryRoute {
  discovery: unknown;
}

/** Version info served at /version (kubectl version reads it). */
export const VERSION_INFO = {
  major: '1',
  minor: '30',
  gitVersion: 'v1.30.0-podlab',
  gitCommit: '0000000000000000000000000000000000000000',
  gitTreeState: 'clean',
  buildDate: '2026-01-01T00:00:00Z',
  goVersion: 'go1.22.0',
  compiler: 'gc',
  platform: 'linux/amd64',
} as const;

function decodeSegments(pathname: string): string[] | null {
  try {
    return pathname
      .split('/')
      .filter((s) => s !== '')
      .map((s) => decodeURIComponent(s));
  } catch {
    return null;
  }
}

/** Resolves the segments after a group/version prefix to a resource route. */
function resolveWithin(registry: ResourceRegistry, group: string, version: string, rest: string[]): ResourceRoute | null {
  if (rest.length === 0) return null;
  // `namespaces/{ns}/{plural}...` is a namespaced path unless the third
  // segment is a subresource of the Namespace object itself.
  if (rest[0] === 'namespaces' && rest.length >= 3 && rest[2] !== 'status' && rest[2] !== 'finalize') {
    const rt = registry.lookup(group, version, rest[2]);
    if (!rt || !rt.namespaced || rest.length > 5) return null;
    return { rt, namespace: rest[1], name: rest[3], subresource: rest[4] };
  }
  const rt = registry.lookup(group, version, rest[0]);
  if (!rt || rest.length > 3) return null;
  // A namespaced kind at the cluster path only exists as a collection (list/watch across namespaces).
  if (rt.namespaced && rest.length > 1) return null;
  return { rt, name: rest[1], subresource: rest[2] };
}

/** Parses a request path; returns null when it is not a resource path. */
export function parseResourcePath(registry: ResourceRegistry, pathname: string): ResourceRoute | null {
  const seg = decodeSegments(pathname);
  if (!seg) return null;
  if (seg[0] === 'api' && seg.length >= 3) return resolveWithin(registry, '', seg[1], seg.slice(2));
  if (seg[0] === 'apis' && seg.length >= 4) return resolveWithin(registry, seg[1], seg[2], seg.slice(3));
  return null;
}

const VERBS = ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'];

/**
 * Create-only review kinds that are answered, never stored (auth.ts): they
 * are discoverable like any group so that `kubectl auth can-i` and
 * `kubectl auth whoami` find them.
 */
const REVIEW_GROUPS: { group: string; version: string; resources: { name: string; kind: string }[] }[] = [
  { group: 'authentication.k8s.io', version: 'v1', resources: [{ name: 'selfsubjectreviews', kind: 'SelfSubjectReview' }] },
  {
    group: 'authorization.k8s.io',
    version: 'v1',
    resources: [
      { name: 'selfsubjectaccessreviews', kind: 'SelfSubjectAccessReview' },
      { name: 'selfsubjectrulesreviews', kind: 'SelfSubjectRulesReview' },
    ],
  },
];

function allGroups(registry: ResourceRegistry): { group: string; version: string }[] {
  return [...registry.groups(), ...REVIEW_GROUPS.map((g) => ({ group: g.group, version: g.version }))];
}

/** The APIResourceList for one group/version (what `kubectl api-resources` reads). */
export function apiResourceList(registry: ResourceRegistry, group: string, version: string): unknown {
  const resources: unknown[] = [];
  for (const rt of registry.all()) {
    if (rt.group !== group || rt.version !== version) continue;
    const entry: Record<string, unknown> = { name: rt.plural, singularName: rt.singular, namespaced: rt.namespaced, kind: rt.kind, verbs: VERBS };
    if (rt.shortNames?.length) entry.shortNames = rt.shortNames;
    if (rt.categories?.length) entry.categories = rt.categories;
    resources.push(entry);
    if (rt.hasStatus) resources.push({ name: `${rt.plural}/status`, singularName: '', namespaced: rt.namespaced, kind: rt.kind, verbs: ['get', 'patch', 'update'] });
    if (rt.plural === 'pods' && !rt.group) {
      // The streaming subresources, relayed to the node agents (pod-exec.ts, pod-log.ts, pod-port-forward.ts).
      for (const [sub, kind, verbs] of [['exec', 'PodExecOptions', ['create', 'get']], ['log', 'Pod', ['get']], ['portforward', 'PodPortForwardOptions', ['create', 'get']]] as const) {
        resources.push({ name: `pods/${sub}`, singularName: '', namespaced: true, kind, verbs });
      }
    }
    if (rt.scalable) {
      resources.push({ name: `${rt.plural}/scale`, singularName: '', namespaced: rt.namespaced, group: 'autoscaling', version: 'v1', kind: 'Scale', verbs: ['get', 'patch', 'update'] });
    }
  }
  for (const g of REVIEW_GROUPS) {
    if (g.group !== group || g.version !== version) continue;
    for (const r of g.resources) resources.push({ name: r.name, singularName: '', namespaced: false, kind: r.kind, verbs: ['create'] });
  }
  return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: group ? `${group}/${version}` : version, resources };
}

/** Returns the discovery document for a path, or null when the path is not a discovery path. */
export function discoveryFor(registry: ResourceRegistry, pathname: string, serverAddress: string): DiscoveryRoute | null {
  const seg = decodeSegments(pathname);
  if (!seg) return null;
  if (seg.length === 1 && seg[0] === 'api') {
    const versions = [...new Set(registry.all().filter((t) => !t.group).map((t) => t.version))];
    return { discovery: { kind: 'APIVersions', versions, serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress }] } };
  }
  if (seg.length === 2 && seg[0] === 'api' && registry.all().some((t) => !t.group && t.version === seg[1])) {
    return { discovery: apiResourceList(registry, '', seg[1]) };
  }
  if (seg.length === 1 && seg[0] === 'apis') {
    const groups = new Map<string, string[]>();
    for (const g of allGroups(registry)) groups.set(g.group, [...(groups.get(g.group) ?? []), g.version]);
    return {
      discovery: {
        kind: 'APIGroupList',
        apiVersion: 'v1',
        groups: [...groups].map(([name, versions]) => ({
          name,
          versions: versions.map((v) => ({ groupVersion: `${name}/${v}`, version: v })),
          preferredVersion: { groupVersion: `${name}/${versions[0]}`, version: versions[0] },
        })),
      },
    };
  }
  if (seg.length === 2 && seg[0] === 'apis') {
    const versions = allGroups(registry).filter((g) => g.group === seg[1]).map((g) => g.version);
    if (versions.length === 0) return null;
    return {
      discovery: {
        kind: 'APIGroup',
        apiVersion: 'v1',
        name: seg[1],
        versions: versions.map((v) => ({ groupVersion: `${seg[1]}/${v}`, version: v })),
        preferredVersion: { groupVersion: `${seg[1]}/${versions[0]}`, version: versions[0] },
      },
    };
  }
  if (seg.length === 3 && seg[0] === 'apis' && allGroups(registry).some((g) => g.group === seg[1] && g.version === seg[2])) {
    return { discovery: apiResourceList(registry, seg[1], seg[2]) };
  }
  if (seg.length === 1 && seg[0] === 'version') return { discovery: VERSION_INFO };
  return null;
}

/** The `apiVersion` and `kind` of a BOOKMARK event object for a resource. */
export function bookmarkObject(rt: ResourceType, resourceVersion: string): unknown {
  return { kind: rt.kind, apiVersion: apiVersionOf(rt), metadata: { resourceVersion } };
}
