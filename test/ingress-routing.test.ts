/**
 * The ingress controller's routing as pure functions: the path-matching
 * table of the Kubernetes Ingress documentation ("Examples" under "Path
 * types"), host precedence (exact before the one-label wildcard, the
 * catch-all last), longest path first and Exact before Prefix on a tie,
 * the older Ingress on a conflict, default backends, IngressClass
 * ownership, and endpoint resolution from EndpointSlices.
 */
import test from 'ava';
import type { Ingress, IngressPath } from '../control-plane/ingress-resources.ts';
import type { EndpointSlice, Service } from '../control-plane/service-resources.ts';
import type { KubeObject } from '../control-plane/types.ts';
import { buildRoutingTable, DEFAULT_IDENTITY, matchRoute, ownsIngress, requestHost, resolveUpstream, type RouteMatch } from '../apps/ingress/routing.ts';
import { expandArgs, serviceAddresses } from '../apps/ingress/controller.ts';

let clock = 0;
function ingress(name: string, spec: Ingress['spec'], extra: Partial<Ingress['metadata']> = {}): Ingress {
  clock++;
  return { apiVersion: 'networking.k8s.io/v1', kind: 'Ingress', metadata: { name, namespace: 'default', creationTimestamp: `2026-12-04T12:00:${String(clock).padStart(2, '0')}Z`, ...extra }, spec } as Ingress;
}
const be = (service: string, number = 80) => ({ service: { name: service, port: { number } } });
const p = (path: string, pathType: IngressPath['pathType'], service: string): IngressPath => ({ path, pathType, backend: be(service) });
const where = (m: RouteMatch) => (m.kind === 'rule' ? m.route.backend.service : m.kind === 'default-backend' ? `default:${m.backend.service}` : '404');

// The documentation's table: each row is one Ingress's paths (in one host), a request path, and what matches.
const DOC_TABLE: { paths: [string, IngressPath['pathType']][]; request: string; want: string | null; row: string }[] = [
  { row: 'Prefix / matches all', paths: [['/', 'Prefix']], request: '/anything/at/all', want: '/' },
  { row: 'Exact /foo, /foo', paths: [['/foo', 'Exact']], request: '/foo', want: '/foo' },
  { row: 'Exact /foo, /bar', paths: [['/foo', 'Exact']], request: '/bar', want: null },
  { row: 'Exact /foo, /foo/', paths: [['/foo', 'Exact']], request: '/foo/', want: null },
  { row: 'Exact /foo/, /foo', paths: [['/foo/', 'Exact']], request: '/foo', want: null },
  { row: 'Prefix /foo, /foo', paths: [['/foo', 'Prefix']], request: '/foo', want: '/foo' },
  { row: 'Prefix /foo, /foo/', paths: [['/foo', 'Prefix']], request: '/foo/', want: '/foo' },
  { row: 'Prefix /foo/, /foo', paths: [['/foo/', 'Prefix']], request: '/foo', want: '/foo/' },
  { row: 'Prefix /foo/, /foo/', paths: [['/foo/', 'Prefix']], request: '/foo/', want: '/foo/' },
  { row: 'Prefix /aaa/bb, /aaa/bbb', paths: [['/aaa/bb', 'Prefix']], request: '/aaa/bbb', want: null },
  { row: 'Prefix /aaa/bbb, /aaa/bbb', paths: [['/aaa/bbb', 'Prefix']], request: '/aaa/bbb', want: '/aaa/bbb' },
  { row: 'Prefix /aaa/bbb/ ignores the trailing slash', paths: [['/aaa/bbb/', 'Prefix']], request: '/aaa/bbb', want: '/aaa/bbb/' },
  { row: 'Prefix /aaa/bbb matches the trailing slash', paths: [['/aaa/bbb', 'Prefix']], request: '/aaa/bbb/', want: '/aaa/bbb' },
  { row: 'Prefix /aaa/bbb matches a subpath', paths: [['/aaa/bbb', 'Prefix']], request: '/aaa/bbb/ccc', want: '/aaa/bbb' },
  { row: 'Prefix /aaa/bbb is no string prefix of /aaabbb', paths: [['/aaa/bbb', 'Prefix']], request: '/aaabbb', want: null },
  { row: 'Prefix /, /aaa: /aaa/ccc takes /aaa', paths: [['/', 'Prefix'], ['/aaa', 'Prefix']], request: '/aaa/ccc', want: '/aaa' },
  { row: 'Prefix /, /aaa, /aaa/bbb: /aaa/bbb takes /aaa/bbb', paths: [['/', 'Prefix'], ['/aaa', 'Prefix'], ['/aaa/bbb', 'Prefix']], request: '/aaa/bbb', want: '/aaa/bbb' },
  { row: 'Prefix /, /aaa, /aaa/bbb: /ccc takes /', paths: [['/', 'Prefix'], ['/aaa', 'Prefix'], ['/aaa/bbb', 'Prefix']], request: '/ccc', want: '/' },
  { row: 'Prefix /aaa: /ccc goes to the default backend', paths: [['/aaa', 'Prefix']], request: '/ccc', want: null },
  { row: 'Prefix /foo and Exact /foo: /foo prefers Exact', paths: [['/foo', 'Prefix'], ['/foo', 'Exact']], request: '/foo', want: '/foo Exact' },
  { row: 'ImplementationSpecific is a Prefix here: /foo does not take /foobar', paths: [['/foo', 'ImplementationSpecific']], request: '/foobar', want: null },
  { row: 'ImplementationSpecific /foo takes /foo/x', paths: [['/foo', 'ImplementationSpecific']], request: '/foo/x', want: '/foo' },
  { row: 'the longest match wins over Exact', paths: [['/foo', 'Exact'], ['/foo/bar', 'Prefix']], request: '/foo/bar', want: '/foo/bar' },
];

for (const c of DOC_TABLE) {
  test(`path: ${c.row}`, (t) => {
    const ing = ingress('x', { rules: [{ host: 'a.example', http: { paths: c.paths.map(([path, type]) => p(path, type, `${path} ${type}`)) } }] });
    const m = matchRoute(buildRoutingTable([ing]), 'a.example', c.request);
    if (c.want === null) return t.is(m.kind, 'none');
    t.is(m.kind, 'rule');
    if (m.kind !== 'rule') return;
    if (c.want.includes(' ')) t.is(m.route.backend.service, c.want);
    else t.is(m.route.path, c.want);
  });
}

test('host: exact before wildcard before catch-all; a wildcard takes exactly one label', (t) => {
  const table = buildRoutingTable([
    ingress('wild', { rules: [{ host: '*.example.com', http: { paths: [p('/', 'Prefix', 'wild')] } }] }),
    ingress('exact', { rules: [{ host: 'foo.example.com', http: { paths: [p('/', 'Prefix', 'exact')] } }] }),
    ingress('any', { rules: [{ http: { paths: [p('/', 'Prefix', 'any')] } }] }),
  ]);
  t.is(where(matchRoute(table, 'foo.example.com', '/')), 'exact');
  t.is(where(matchRoute(table, 'FOO.example.com:80', '/')), 'exact', 'case and port do not matter');
  t.is(where(matchRoute(table, 'bar.example.com', '/')), 'wild');
  t.is(where(matchRoute(table, 'baz.bar.example.com', '/')), 'any', 'a wildcard takes one label only');
  t.is(where(matchRoute(table, 'example.com', '/')), 'any', 'nor the bare domain');
  t.is(where(matchRoute(table, undefined, '/')), 'any', 'no Host: the catch-all');
  t.is(where(matchRoute(table, '127.0.0.200', '/')), 'any');
});

test("host: a host's server routes alone, falling back to its Ingress's defaultBackend, not to hostless rules", (t) => {
  const table = buildRoutingTable([
    ingress('a', { defaultBackend: be('a-default'), rules: [{ host: 'a.example', http: { paths: [p('/app', 'Prefix', 'app')] } }] }),
    ingress('b', { rules: [{ host: 'b.example', http: { paths: [p('/app', 'Prefix', 'b-app')] } }] }),
    ingress('any', { rules: [{ http: { paths: [p('/', 'Prefix', 'any')] } }] }),
  ]);
  t.is(where(matchRoute(table, 'a.example', '/app/x')), 'app');
  t.is(where(matchRoute(table, 'a.example', '/other')), 'default:a-default');
  t.is(where(matchRoute(table, 'b.example', '/other')), '404');
  t.is(where(matchRoute(table, 'c.example', '/other')), 'any');
});

test('defaultBackend: the catch-all prefers an Ingress without rules; none at all is the controller 404', (t) => {
  const withRules = ingress('r', { defaultBackend: be('r-default'), rules: [{ host: 'r.example', http: { paths: [p('/', 'Prefix', 'r')] } }] });
  const bare = ingress('bare', { defaultBackend: be('bare-default') });
  t.is(where(matchRoute(buildRoutingTable([withRules, bare]), 'x.example', '/')), 'default:bare-default');
  t.is(where(matchRoute(buildRoutingTable([withRules]), 'x.example', '/')), 'default:r-default');
  t.is(where(matchRoute(buildRoutingTable([]), 'x.example', '/')), '404');
});

test('conflicts: the same host and path in two Ingresses goes to the older one', (t) => {
  const older = ingress('older', { rules: [{ host: 'a.example', http: { paths: [p('/x', 'Prefix', 'older')] } }] });
  const newer = ingress('newer', { rules: [{ host: 'a.example', http: { paths: [p('/x', 'Prefix', 'newer'), p('/y', 'Exact', 'newer-y')] } }] });
  const table = buildRoutingTable([newer, older]);
  t.is(where(matchRoute(table, 'a.example', '/x')), 'older');
  t.is(where(matchRoute(table, 'a.example', '/y')), 'newer-y', 'paths merge across Ingresses of one host');
  t.is(where(matchRoute(table, 'a.example', '/y/z')), '404');
});

test('requestHost strips the port and a trailing dot', (t) => {
  t.is(requestHost('A.Example.:8080'), 'a.example');
  t.is(requestHost(undefined), '');
});

test('IngressClass: by spec.ingressClassName and the class controller, the legacy annotation, the default class', (t) => {
  const cls = (name: string, controller: string, dflt = false): KubeObject =>
    ({ apiVersion: 'networking.k8s.io/v1', kind: 'IngressClass', metadata: { name, annotations: dflt ? { 'ingressclass.kubernetes.io/is-default-class': 'true' } : {} }, spec: { controller } }) as KubeObject;
  const classes = [cls('nginx', 'k8s.io/ingress-nginx'), cls('other', 'example.com/other')];
  const spec = { rules: [{ host: 'a.example', http: { paths: [p('/', 'Prefix', 'a')] } }] };
  t.true(ownsIngress(ingress('a', { ...spec, ingressClassName: 'nginx' }), classes, DEFAULT_IDENTITY));
  t.false(ownsIngress(ingress('b', { ...spec, ingressClassName: 'other' }), classes, DEFAULT_IDENTITY));
  t.false(ownsIngress(ingress('c', { ...spec, ingressClassName: 'missing' }), classes, DEFAULT_IDENTITY));
  t.true(ownsIngress(ingress('d', spec, { annotations: { 'kubernetes.io/ingress.class': 'nginx' } }), classes, DEFAULT_IDENTITY));
  t.false(ownsIngress(ingress('e', spec), classes, DEFAULT_IDENTITY), 'no class, ours is not the default');
  t.true(ownsIngress(ingress('f', spec), [cls('nginx', 'k8s.io/ingress-nginx', true)], DEFAULT_IDENTITY), 'no class, ours is the default');
  t.true(ownsIngress(ingress('g', spec), classes, { ...DEFAULT_IDENTITY, watchWithoutClass: true }));
});

test('endpoints: the named or numbered Service port, its slice port, ready addresses only', (t) => {
  const svc = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'default' }, spec: { ports: [{ name: 'http', port: 80, targetPort: 'web' }, { name: 'alt', port: 81, targetPort: 8081 }] } } as Service;
  const slice = {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: 'web-abc', namespace: 'default', labels: { 'kubernetes.io/service-name': 'web' } },
    addressType: 'IPv4',
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }, { name: 'alt', port: 8081, protocol: 'TCP' }],
    endpoints: [{ addresses: ['10.244.2.9'], conditions: { ready: true } }, { addresses: ['10.244.1.5'] }, { addresses: ['10.244.1.6'], conditions: { ready: false } }],
  } as unknown as EndpointSlice;
  t.deepEqual(resolveUpstream({ namespace: 'default', service: 'web', port: 80 }, [svc], [slice]), { name: 'default-web-80', endpoints: [{ ip: '10.244.1.5', port: 8080 }, { ip: '10.244.2.9', port: 8080 }] });
  t.deepEqual(resolveUpstream({ namespace: 'default', service: 'web', port: 'alt' }, [svc], [slice]), { name: 'default-web-alt', endpoints: [{ ip: '10.244.1.5', port: 8081 }, { ip: '10.244.2.9', port: 8081 }] });
  t.deepEqual(resolveUpstream({ namespace: 'default', service: 'web', port: 82 }, [svc], [slice]), { name: 'default-web-82', error: 'no-port' });
  t.deepEqual(resolveUpstream({ namespace: 'default', service: 'gone', port: 80 }, [svc], [slice]), { name: 'default-gone-80', error: 'no-service' });
  t.deepEqual(resolveUpstream({ namespace: 'default', service: 'web', port: 80 }, [svc], []), { name: 'default-web-80', endpoints: [] });
});

test("the controller's args: $(VAR) from env and fieldRef; status addresses from the published Service", (t) => {
  const env = [{ name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } }, { name: 'X', value: 'y' }] as never;
  t.deepEqual(expandArgs(['--publish-service=$(POD_NAMESPACE)/ingress-nginx-controller', '$(X)', '$(NOPE)', '$$(X)'], env, { name: 'p', namespace: 'ingress-nginx' }), [
    '--publish-service=ingress-nginx/ingress-nginx-controller',
    'y',
    '$(NOPE)',
    '$(X)',
  ]);
  const svc = (spec: Service['spec'], status?: Service['status']) => ({ apiVersion: 'v1', kind: 'Service', metadata: { name: 's', namespace: 'n' }, spec, status }) as Service;
  t.deepEqual(serviceAddresses(svc({ type: 'LoadBalancer', clusterIP: '10.96.0.5' }, { loadBalancer: { ingress: [{ ip: '127.0.20.200' }] } })), ['127.0.20.200']);
  t.deepEqual(serviceAddresses(svc({ type: 'LoadBalancer', clusterIP: '10.96.0.5' }, {})), []);
  t.deepEqual(serviceAddresses(svc({ type: 'NodePort', clusterIP: '10.96.0.5' })), ['10.96.0.5']);
  t.deepEqual(serviceAddresses(svc({ type: 'NodePort', clusterIP: '10.96.0.5', externalIPs: ['192.0.2.7'] })), ['192.0.2.7']);
});
