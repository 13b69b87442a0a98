/**
 * Which backend an ingress controller sends a request to, as pure functions
 * of the cluster's objects: which Ingresses the controller owns (IngressClass),
 * the servers they make (one per host, plus the catch-all for hostless rules),
 * and the match of one request's host and path.
 *
 * The rules are the Ingress specification's (networking.k8s.io/v1, "Ingress"
 * in the Kubernetes docs), decided where the spec leaves room the way
 * ingress-nginx decides:
 * - host: an exact host beats a wildcard; `*.foo.com` matches exactly one
 *   label (`bar.foo.com`, not `foo.com` nor `baz.bar.foo.com`); a request
 *   no host rule takes goes to the catch-all server (rules without a host).
 *   A request whose host has a server is routed by that server alone: no
 *   path there means its fallback, not the catch-all's rules (nginx picks
 *   the server by name first, then the location).
 * - path: Exact matches the path as written, byte for byte; Prefix matches
 *   by `/`-separated element (`/foo` matches `/foo`, `/foo/`, `/foo/bar`,
 *   never `/foobar`; a trailing `/` in the rule is ignored);
 *   ImplementationSpecific is treated as Prefix (no path: `/`). The longest
 *   matching path wins; between equally long ones Exact beats Prefix; then
 *   the older Ingress (creationTimestamp, then namespace/name) and its
 *   earlier rule.
 * - fallback: a host's server falls back to the defaultBackend of the
 *   Ingress that first defined the host (ingress-nginx's rule), the
 *   catch-all server to the first Ingress with a defaultBackend (those
 *   without rules first); with none, the controller's own 404.
 */
import type { KubeObject } from '../../control-plane/types.ts';
import type { Ingress, IngressBackend } from '../../control-plane/ingress-resources.ts';
import type { EndpointSlice, Service } from '../../control-plane/service-resources.ts';

/** The annotation that made an IngressClass the default (ingress-resources.ts has the same). */
const DEFAULT_CLASS_ANNOTATION = 'ingressclass.kubernetes.io/is-default-class';
/** The class annotation that predates spec.ingressClassName, still honoured by ingress-nginx. */
export const LEGACY_CLASS_ANNOTATION = 'kubernetes.io/ingress.class';

/** Who this controller is: `--controller-class`, `--ingress-class`, `--watch-ingress-without-class`. */
export interface ControllerIdentity {
  controllerClass: string;
  ingressClass: string;
  watchWithoutClass: boolean;
}

export const DEFAULT_IDENTITY: ControllerIdentity = { controllerClass: 'k8s.io/ingress-nginx', ingressClass: 'nginx', watchWithoutClass: false };

/** True when this controller serves the Ingress. */
export function ownsIngress(ing: Ingress, classes: readonly KubeObject[], id: ControllerIdentity): boolean {
  const mine = (c: KubeObject) => (c.spec as { controller?: string } | undefined)?.controller === id.controllerClass;
  const name = ing.spec?.ingressClassName;
  if (name) {
    const cls = classes.find((c) => c.metadata.name === name);
    return cls ? mine(cls) : false;
  }
  const legacy = ing.metadata.annotations?.[LEGACY_CLASS_ANNOTATION];
  if (legacy !== undefined) return legacy === id.ingressClass;
  // No class at all: ours when we are told to take those, or when our class is the cluster's default
  // (the admission plugin gives the default only to Ingresses created after it was marked).
  return id.watchWithoutClass || classes.some((c) => mine(c) && c.metadata.annotations?.[DEFAULT_CLASS_ANNOTATION] === 'true');
}

/** A backend Service an Ingress names, resolved to its namespace. */
export interface BackendRef {
  namespace: string;
  service: string;
  /** The Service port: its number or its name, as the Ingress gives it. */
  port: number | string;
}

export interface Route {
  /** `namespace/name` of the Ingress. */
  ingress: string;
  host: string;
  path: string;
  pathType: 'Exact' | 'Prefix';
  backend: BackendRef;
}

interface Server {
  routes: Route[];
  fallback?: { ingress: string; backend: BackendRef };
}

export interface RoutingTable {
  /** By host (`a.example`, `*.example.com`); '' is the catch-all server. */
  servers: Map<string, Server>;
}

export type RouteMatch =
  | { kind: 'rule'; route: Route }
  | { kind: 'default-backend'; ingress: string; backend: BackendRef }
  /** Nothing takes it: the controller answers 404 itself. */
  | { kind: 'none' };

/** A resource backend (or a broken one) routes nowhere podlab can send to. */
function refOf(ns: string, b: IngressBackend | undefined): BackendRef | undefined {
  const s = b?.service;
  if (!s?.name) return undefined;
  const port = s.port?.number ?? s.port?.name;
  return port === undefined || port === '' ? undefined : { namespace: ns, service: s.name, port };
}

const ingressOrder = (a: Ingress, b: Ingress) => {
  const ta = a.metadata.creationTimestamp ?? '';
  const tb = b.metadata.creationTimestamp ?? '';
  if (ta !== tb) return ta < tb ? -1 : 1;
  const ka = `${a.metadata.namespace}/${a.metadata.name}`;
  const kb = `${b.metadata.namespace}/${b.metadata.name}`;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
};

/** The servers the given (owned) Ingresses make. */
export function buildRoutingTable(ingresses: readonly Ingress[]): RoutingTable {
  const servers = new Map<string, Server>();
  const server = (host: string) => {
    let s = servers.get(host);
    if (!s) servers.set(host, (s = { routes: [] }));
    return s;
  };
  server('');
  const sorted = [...ingresses].sort(ingressOrder);
  for (const ing of sorted) {
    const ns = ing.metadata.namespace ?? 'default';
    const key = `${ns}/${ing.metadata.name}`;
    const dflt = refOf(ns, ing.spec?.defaultBackend);
    for (const rule of ing.spec?.rules ?? []) {
      const host = (rule.host ?? '').toLowerCase();
      const fresh = !servers.has(host); // never for '' (made above; its fallback is chosen below)
      const s = server(host);
      if (fresh && dflt) s.fallback = { ingress: key, backend: dflt };
      for (const p of rule.http?.paths ?? []) {
        const backend = refOf(ns, p.backend);
        if (!backend) continue;
        const pathType = p.pathType === 'Exact' ? 'Exact' : 'Prefix';
        const path = p.path || '/';
        if (pathType === 'Exact' && !path.startsWith('/')) continue;
        // The same host, path and type twice: the older Ingress keeps it.
        if (s.routes.some((r) => r.path === path && r.pathType === pathType)) continue;
        s.routes.push({ ingress: key, host, path, pathType, backend });
      }
    }
  }
  const catchAll = servers.get('')!;
  const withDefault = sorted.filter((i) => refOf(i.metadata.namespace ?? 'default', i.spec?.defaultBackend));
  const first = withDefault.find((i) => !i.spec?.rules?.length) ?? withDefault[0];
  if (first) {
    const ns = first.metadata.namespace ?? 'default';
    catchAll.fallback = { ingress: `${ns}/${first.metadata.name}`, backend: refOf(ns, first.spec?.defaultBackend)! };
  }
  return { servers };
}

/** A rule's Prefix without its trailing `/` (`/` itself stays). */
function trimSlash(p: string): string {
  const t = p.replace(/\/+$/, '');
  return t === '' ? '/' : t;
}

/** Does a rule's path take the request path? */
export function pathMatches(rule: { path: string; pathType: 'Exact' | 'Prefix' }, path: string): boolean {
  if (rule.pathType === 'Exact') return rule.path === path;
  const prefix = trimSlash(rule.path);
  if (prefix === '/') return true;
  return path === prefix || path.startsWith(`${prefix}/`);
}

/** The length a matching rule counts with: what it matched of the path. */
const matchLength = (r: Route) => (r.pathType === 'Exact' ? r.path.length : trimSlash(r.path).length);

/** The request's host as servers are named: lower case, without port or a trailing dot. */
export function requestHost(hostHeader: string | undefined): string {
  let h = (hostHeader ?? '').trim().toLowerCase();
  const colon = h.lastIndexOf(':');
  if (colon >= 0 && !h.endsWith(']')) h = h.slice(0, colon);
  return h.replace(/\.$/, '');
}

/** The server a host goes to: its own, else the one-label wildcard's, else the catch-all. */
function serverFor(table: RoutingTable, host: string): Server {
  const exact = host && table.servers.get(host);
  if (exact) return exact;
  const dot = host.indexOf('.');
  const wild = dot > 0 && table.servers.get(`*${host.slice(dot)}`);
  return wild || table.servers.get('')!;
}

/** Where a request for `host` (the Host header) and `path` (without the query) goes. */
export function matchRoute(table: RoutingTable, hostHeader: string | undefined, path: string): RouteMatch {
  const s = serverFor(table, requestHost(hostHeader));
  let best: Route | undefined;
  for (const r of s.routes) {
    if (!pathMatches(r, path)) continue;
    if (!best) best = r;
    else {
      const d = matchLength(r) - matchLength(best);
      // Routes are in Ingress order, so a tie on both keeps the older one.
      if (d > 0 || (d === 0 && r.pathType === 'Exact' && best.pathType === 'Prefix')) best = r;
    }
  }
  if (best) return { kind: 'rule', route: best };
  if (s.fallback) return { kind: 'default-backend', ...s.fallback };
  return { kind: 'none' };
}

/** One endpoint a request can go to. */
export interface Endpoint {
  ip: string;
  port: number;
}

export type Upstream =
  /** ingress-nginx's upstream name, `NAMESPACE-SERVICE-PORT`, as its access log shows it. */
  | { name: string; endpoints: Endpoint[] }
  | { name: string; error: 'no-service' | 'no-port' };

/** ingress-nginx's upstream name for a backend. */
export function upstreamName(b: BackendRef): string {
  return `${b.namespace}-${b.service}-${b.port}`;
}

/**
 * The ready endpoints of a backend, from EndpointSlices directly (ingress-nginx
 * sends to pod addresses, not through the ClusterIP): the Service port the
 * Ingress names, the slice port of the same name, the ready addresses.
 */
export function resolveUpstream(b: BackendRef, services: readonly Service[], slices: readonly EndpointSlice[]): Upstream {
  const name = upstreamName(b);
  const svc = services.find((s) => s.metadata.namespace === b.namespace && s.metadata.name === b.service);
  if (!svc) return { name, error: 'no-service' };
  const sp = (svc.spec?.ports ?? []).find((p) => (typeof b.port === 'number' ? p.port === b.port : p.name === b.port));
  if (!sp) return { name, error: 'no-port' };
  const portName = sp.name ?? '';
  const seen = new Set<string>();
  const endpoints: Endpoint[] = [];
  for (const sl of slices) {
    if (sl.metadata.namespace !== b.namespace || sl.metadata.labels?.['kubernetes.io/service-name'] !== b.service || sl.addressType !== 'IPv4') continue;
    const slicePort = (sl.ports ?? []).find((p) => (p.name ?? '') === portName && (p.protocol ?? 'TCP') === 'TCP');
    const port = slicePort?.port ?? (typeof sp.targetPort === 'number' ? sp.targetPort : undefined);
    if (port === undefined) continue;
    for (const e of sl.endpoints ?? []) {
      if (e.conditions?.ready === false) continue;
      for (const ip of e.addresses) {
        const k = `${ip}:${port}`;
        if (seen.has(k)) continue;
        seen.add(k);
        endpoints.push({ ip, port });
      }
    }
  }
  endpoints.sort((x, y) => x.ip.localeCompare(y.ip, 'en', { numeric: true }) || x.port - y.port);
  return { name, endpoints };
}
