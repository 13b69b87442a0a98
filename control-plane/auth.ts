/**
 * Who is asking, and may they: bearer-token authentication and a small
 * fixed authorizer.
 *
 * Identities:
 *   - `admin` (group `system:masters`): may do everything;
 *   - `system:node:<name>` (group `system:nodes`), from a node token (pki.ts):
 *     reads everything; creates Nodes and changes its own Node (and status);
 *     writes the status of Pods bound to it; creates and updates Events and
 *     its own Lease in `kube-node-lease`; Leases in `metallb-system` (its
 *     load-balancer speaker's per-address election); the status of Ingresses
 *     (an ingress controller in one of its pods publishes its address: pods
 *     act with their node's identity here). That is what an agent does, and
 *     roughly what Kubernetes' Node authorizer plus NodeRestriction allow.
 * A request without a valid token is 401 (no anonymous access), except the
 * health probes /healthz, /livez and /readyz, which container health checks
 * call without credentials.
 *
 * Decisions are also served as SelfSubjectAccessReviews (`kubectl auth
 * can-i`) and SelfSubjectReviews (`kubectl auth whoami`).
 */
import type { IncomingHttpHeaders } from 'node:http';
import { ApiError, badRequest, makeStatus } from './errors.ts';
import { METALLB_NAMESPACE } from './metallb.ts';
import { tokensEqual, verifyNodeToken, type ServerCredentials } from './pki.ts';

/** An authenticated user. */
export interface Identity {
  username: string;
  uid: string;
  groups: string[];
  /** Set for node identities. */
  node?: string;
}

/** What a request wants to do, as Kubernetes' authorizer sees it. */
export interface ResourceAttributes {
  verb: string;
  group: string;
  resource: string;
  subresource?: string;
  namespace?: string;
  name?: string;
}

/** Lets the authorizer look at the target of a request (is this Pod bound to that node?). */
export interface ObjectLookup {
  podNodeName(namespace: string, name: string): string | undefined;
}

/** A decision with the reason kubectl shows. */
export interface Decision {
  allowed: boolean;
  reason?: string;
}

/** Paths anyone may GET. */
const PUBLIC_PATHS = new Set(['/healthz', '/livez', '/readyz']);

/** True for the unauthenticated health probes. */
export function isPublicPath(pathname: string): boolean {
  return PUBLIC_PATHS.has(pathname);
}

/** 401, worded as kube-apiserver words it. */
export function unauthorized(): ApiError {
  return new ApiError(makeStatus(401, 'Unauthorized', 'Unauthorized'));
}

/** Checks `Authorization: Bearer <token>` against the admin token and node tokens. */
export function authenticate(headers: IncomingHttpHeaders, creds: ServerCredentials): Identity | undefined {
  const auth = headers.authorization;
  if (typeof auth !== 'string') return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
  if (!m) return undefined;
  const token = m[1];
  if (tokensEqual(token, creds.adminToken)) return { username: 'admin', uid: 'admin', groups: ['system:masters', 'system:authenticated'] };
  const node = verifyNodeToken(creds.nodeTokenKey, token);
  if (node !== undefined) return { username: `system:node:${node}`, uid: `node:${node}`, groups: ['system:nodes', 'system:authenticated'], node };
  return undefined;
}

const READ_VERBS = new Set(['get', 'list', 'watch']);
const WRITE_OWN = new Set(['get', 'list', 'watch', 'create', 'update', 'patch']);

/** The authorizer. */
export function authorize(who: Identity, a: ResourceAttributes, lookup: ObjectLookup): Decision {
  if (who.groups.includes('system:masters')) return { allowed: true, reason: 'admin' };
  if (who.node === undefined) return { allowed: false };
  const node = who.node;
  if (READ_VERBS.has(a.verb)) return { allowed: true, reason: 'nodes read the cluster state' };
  const core = a.group === '';
  if (core && a.resource === 'nodes') {
    if (a.verb === 'create' && !a.subresource) return { allowed: true, reason: 'a node registers itself' };
    if ((a.verb === 'update' || a.verb === 'patch') && a.name === node) return { allowed: true, reason: 'a node changes its own Node' };
    return { allowed: false, reason: `a node may only change its own Node (${node})` };
  }
  if (core && a.resource === 'pods' && a.subresource === 'status' && (a.verb === 'update' || a.verb === 'patch')) {
    const bound = a.namespace !== undefined && a.name !== undefined ? lookup.podNodeName(a.namespace, a.name) : undefined;
    if (bound === node) return { allowed: true, reason: 'the Pod is bound to this node' };
    return { allowed: false, reason: `the Pod is not bound to node ${node}` };
  }
  if ((core || a.group === 'events.k8s.io') && a.resource === 'events' && WRITE_OWN.has(a.verb)) return { allowed: true, reason: 'nodes record events' };
  if (a.group === 'coordination.k8s.io' && a.resource === 'leases' && a.namespace === 'kube-node-lease' && WRITE_OWN.has(a.verb)) {
    if (a.verb === 'create' || a.name === node) return { allowed: true, reason: 'a node renews its own Lease' };
  }
  if (a.group === 'coordination.k8s.io' && a.resource === 'leases' && a.namespace === METALLB_NAMESPACE && WRITE_OWN.has(a.verb)) {
    return { allowed: true, reason: "the node's load-balancer speaker elects address owners with Leases" };
  }
  if (a.group === 'networking.k8s.io' && a.resource === 'ingresses' && a.subresource === 'status' && (a.verb === 'update' || a.verb === 'patch')) {
    return { allowed: true, reason: "an ingress controller in the node's pods publishes its address" };
  }
  return { allowed: false };
}

/** The 403 of a denied request, in kube-apiserver's wording. */
export function forbiddenFor(who: Identity, a: ResourceAttributes): ApiError {
  const res = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
  const what = a.name ? `${a.resource} "${a.name}"` : a.resource;
  const scope = a.namespace ? ` in the namespace "${a.namespace}"` : a.verb === 'list' || a.verb === 'watch' || !a.name ? ' at the cluster scope' : '';
  const msg = `${what} is forbidden: User "${who.username}" cannot ${a.verb} resource "${res}" in API group "${a.group}"${scope}`;
  return new ApiError(makeStatus(403, 'Forbidden', msg, { name: a.name, group: a.group || undefined, kind: a.resource }));
}

/** Maps an HTTP method (and whether a name/watch is given) to the Kubernetes verb. */
export function verbOf(method: string, hasName: boolean, watch: boolean): string {
  switch (method) {
    case 'GET':
    case 'HEAD':
      return watch ? 'watch' : hasName ? 'get' : 'list';
    case 'POST':
      return 'create';
    case 'PUT':
      return 'update';
    case 'PATCH':
      return 'patch';
    case 'DELETE':
      return hasName ? 'delete' : 'deletecollection';
    default:
      return method.toLowerCase();
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Answers a SelfSubjectAccessReview body for `who`. */
export function selfSubjectAccessReview(who: Identity, body: unknown, lookup: ObjectLookup): unknown {
  if (!isRecord(body) || !isRecord(body.spec)) throw badRequest('a SelfSubjectAccessReview needs a spec');
  const spec = body.spec;
  let decision: Decision;
  if (isRecord(spec.resourceAttributes)) {
    const r = spec.resourceAttributes;
    const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
    const attrs: ResourceAttributes = {
      verb: str(r.verb) ?? '',
      group: str(r.group) ?? '',
      resource: str(r.resource) ?? '',
      subresource: str(r.subresource),
      namespace: str(r.namespace),
      name: str(r.name),
    };
    // `*` (any verb / resource) is allowed only where everything is.
    decision = attrs.verb === '*' || attrs.resource === '*' ? { allowed: who.groups.includes('system:masters') } : authorize(who, attrs, lookup);
  } else if (isRecord(spec.nonResourceAttributes)) {
    const n = spec.nonResourceAttributes;
    const p = typeof n.path === 'string' ? n.path : '';
    decision = who.groups.includes('system:masters') || (n.verb === 'get' && (isPublicPath(p) || p === '/version' || p.startsWith('/api') || p.startsWith('/openapi')))
      ? { allowed: true }
      : { allowed: false };
  } else {
    throw badRequest('a SelfSubjectAccessReview needs spec.resourceAttributes or spec.nonResourceAttributes');
  }
  return {
    kind: 'SelfSubjectAccessReview',
    apiVersion: 'authorization.k8s.io/v1',
    metadata: { creationTimestamp: null },
    spec,
    // A denial carries no reason, as with Kubernetes' RBAC (kubectl would print `no - <reason>`).
    status: { allowed: decision.allowed, ...(decision.allowed && decision.reason ? { reason: decision.reason } : {}) },
  };
}

/**
 * Answers a SelfSubjectRulesReview (`kubectl auth can-i --list`): the rules
 * the authorizer above applies, written out (names and the bound-pod check
 * shown as resourceNames where they are fixed).
 */
export function selfSubjectRulesReview(who: Identity, body: unknown): unknown {
  const namespace = isRecord(body) && isRecord(body.spec) && typeof body.spec.namespace === 'string' ? body.spec.namespace : '';
  let resourceRules: unknown[];
  let nonResourceRules: unknown[];
  if (who.groups.includes('system:masters')) {
    resourceRules = [{ verbs: ['*'], apiGroups: ['*'], resources: ['*'] }];
    nonResourceRules = [{ verbs: ['*'], nonResourceURLs: ['*'] }];
  } else {
    const node = who.node ?? '';
    resourceRules = [
      { verbs: ['get', 'list', 'watch'], apiGroups: ['*'], resources: ['*'] },
      { verbs: ['create'], apiGroups: [''], resources: ['nodes'] },
      { verbs: ['update', 'patch'], apiGroups: [''], resources: ['nodes', 'nodes/status'], resourceNames: [node] },
      { verbs: ['update', 'patch'], apiGroups: [''], resources: ['pods/status'] },
      { verbs: ['create', 'update', 'patch'], apiGroups: ['', 'events.k8s.io'], resources: ['events'] },
      ...(namespace === METALLB_NAMESPACE ? [{ verbs: ['create', 'update', 'patch'], apiGroups: ['coordination.k8s.io'], resources: ['leases'] }] : []),
      ...(namespace === 'kube-node-lease' ? [{ verbs: ['create'], apiGroups: ['coordination.k8s.io'], resources: ['leases'] }, { verbs: ['update', 'patch'], apiGroups: ['coordination.k8s.io'], resources: ['leases'], resourceNames: [node] }] : []),
    ];
    nonResourceRules = [{ verbs: ['get'], nonResourceURLs: ['/api', '/api/*', '/apis', '/apis/*', '/openapi', '/openapi/*', '/version', '/healthz', '/livez', '/readyz'] }];
  }
  return {
    kind: 'SelfSubjectRulesReview',
    apiVersion: 'authorization.k8s.io/v1',
    metadata: { creationTimestamp: null },
    spec: { namespace },
    // pods/status writes are further limited to Pods bound to the node, which a rule cannot express.
    status: { resourceRules, nonResourceRules, incomplete: who.node !== undefined },
  };
}

/** Answers a SelfSubjectReview (`kubectl auth whoami`). */
export function selfSubjectReview(who: Identity): unknown {
  return {
    kind: 'SelfSubjectReview',
    apiVersion: 'authentication.k8s.io/v1',
    metadata: { creationTimestamp: null },
    status: { userInfo: { username: who.username, uid: who.uid, groups: who.groups } },
  };
}
