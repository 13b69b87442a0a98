/**
 * The ingress controller's proxy on one node's data plane, in process (pods
 * on one cni0 bridge, real emulated TCP, no apiserver: the routing state is
 * given): curl from a client pod through the proxy pod to backend pods, the
 * headers the backend sees, Exact over Prefix, the controller's 404, 503 for
 * a backend without endpoints, 502 for an endpoint that refuses, 504 for one
 * that never answers, an upstream status and its headers passed back,
 * upstream keep-alive (one connection carries many requests, both ends
 * count it), round-robin over endpoints, and the access-log lines in
 * ingress-nginx's format.
 */
import test from 'ava';
import { monotonicClock } from '../common/clock.ts';
import { SeededRng } from '../common/rng.ts';
import { podApps, startPodApps } from '../apps/index.ts';
import { serveHttp } from '../apps/http-server.ts';
import { createIngressProxy } from '../apps/ingress/proxy.ts';
import { buildRoutingTable } from '../apps/ingress/routing.ts';
import { UpstreamPool } from '../apps/ingress/upstream.ts';
import type { Ingress } from '../control-plane/ingress-resources.ts';
import type { EndpointSlice, Service } from '../control-plane/service-resources.ts';
import type { PodNet } from '../netstack/pod-net.ts';
import { podCommands } from '../pod-tools/index.ts';
import { makeNode } from './helpers/dataplane.ts';

// Never started: pods on one bridge need no underlay socket.
const node = makeNode(1, { net: '127.0.20.0/24', seed: 20 });
const pod = (name: string, ip: string) => node.addPod({ namespace: 'default', name, uid: `uid-${name}`, ip });
const client = pod('client', '10.244.1.2');
const ingressPod = pod('ingress', '10.244.1.3');
const webA = pod('web-a', '10.244.1.4');
const webB = pod('web-b', '10.244.1.5');
const echo = pod('echo', '10.244.1.6');
pod('dead', '10.244.1.7');
const slow = pod('slow', '10.244.1.8');
startPodApps(webA, [{ name: 'web', image: 'podlab/http' }], { podName: 'web-a', nodeName: 'node-1' });
startPodApps(webB, [{ name: 'web', image: 'podlab/http' }], { podName: 'web-b', nodeName: 'node-1' });
startPodApps(echo, [{ name: 'echo', image: 'hashicorp/http-echo', args: ['-text=banana'] }], { podName: 'echo', nodeName: 'node-1' });
startPodApps(slow, [{ name: 'sink', image: 'podlab/sink' }], { podName: 'slow', nodeName: 'node-1' });

const svc = (name: string, port: number, portName?: string): Service => ({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default' }, spec: { ports: [{ name: portName, port }] } }) as Service;
const slice = (service: string, port: number, ips: string[], portName?: string): EndpointSlice =>
  ({
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `${service}-x`, namespace: 'default', labels: { 'kubernetes.io/service-name': service } },
    addressType: 'IPv4',
    ports: [{ name: portName, port, protocol: 'TCP' }],
    endpoints: ips.map((ip) => ({ addresses: [ip], conditions: { ready: true } })),
  }) as unknown as EndpointSlice;
const route = (host: string, paths: [string, 'Exact' | 'Prefix', string, number | string][]) => ({
  host,
  http: { paths: paths.map(([path, pathType, name, port]) => ({ path, pathType, backend: { service: { name, port: typeof port === 'number' ? { number: port } : { name: port } } } })) },
});
const ing = {
  apiVersion: 'networking.k8s.io/v1',
  kind: 'Ingress',
  metadata: { name: 'demo', namespace: 'default', creationTimestamp: '2026-12-04T12:00:00Z' },
  spec: {
    rules: [
      route('a.example', [
        ['/', 'Prefix', 'web', 80],
        ['/banana', 'Exact', 'echo', 'http'],
      ]),
      route('b.example', [['/', 'Prefix', 'empty', 80]]),
      route('c.example', [['/', 'Prefix', 'dead', 80]]),
      route('d.example', [['/', 'Prefix', 'slow', 9]]),
      route('e.example', [['/', 'Prefix', 'gone', 80]]),
    ],
  },
} as Ingress;
const state = {
  table: buildRoutingTable([ing]),
  services: [svc('web', 80), svc('echo', 80, 'http'), svc('empty', 80), svc('dead', 80), svc('slow', 9)],
  slices: [slice('web', 80, ['10.244.1.4', '10.244.1.5']), slice('echo', 5678, ['10.244.1.6'], 'http'), slice('empty', 80, []), slice('dead', 80, ['10.244.1.7']), slice('slow', 9, ['10.244.1.8'])],
};
const log: string[] = [];
const pool = new UpstreamPool(ingressPod.tcp, { clock: monotonicClock, readTimeoutMs: 500 });
const proxy = createIngressProxy({ pool, clock: monotonicClock, rng: new SeededRng(7), state: () => state, serverAddress: ingressPod.ip, accessLog: (l) => log.push(l) });
serveHttp(ingressPod.tcp, 80, proxy.handle, { serverName: 'nginx', clock: monotonicClock });

async function curl(from: PodNet, args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const argv = ['curl', ...args];
  const code = await podCommands.curl({ pod: from, argv, stdout: (s) => (out += s), stderr: (s) => (err += s), signal: new AbortController().signal, clock: monotonicClock, rng: new SeededRng(1) });
  return { code, out, err };
}
const get = (host: string, path: string, extra: string[] = []) => curl(client, ['-s', '-H', `Host: ${host}`, ...extra, `http://10.244.1.3${path}`]);

// The log format: ingress-nginx's log-format-upstream.
const LOG_LINE =
  /^(\S+) - - \[\d{2}\/\w{3}\/\d{4}:\d{2}:\d{2}:\d{2} \+0000\] "(\S+) (\S+) HTTP\/1\.1" (\d{3}) (\d+) "-" "curl\/8\.5\.0 \(podlab\)" (\d+) \d+\.\d{3} \[(\S*)\] \[\] (\S+(?:, \S+)*) (\S+(?:, \S+)*) (\S+(?:, \S+)*) (\S+(?:, \S+)*) ([0-9a-f]{32})$/;

test.serial('host and path route to the right pod; the backend sees the forwarding headers', async (t) => {
  const h = await get('a.example', '/headers', ['-H', 'X-Forwarded-For: 198.51.100.9']);
  t.is(h.code, 0, h.err);
  const seen = new Map(h.out.trim().split('\n').map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 2)]));
  t.is(seen.get('host'), 'a.example');
  t.is(seen.get('x-real-ip'), '10.244.1.2');
  t.is(seen.get('x-forwarded-for'), '10.244.1.2', 'the client address, not appended to what the client claimed');
  t.is(seen.get('x-original-forwarded-for'), '198.51.100.9');
  t.is(seen.get('x-forwarded-host'), 'a.example');
  t.is(seen.get('x-forwarded-proto'), 'http');
  t.is(seen.get('x-forwarded-port'), '80');
  t.regex(seen.get('x-request-id') ?? '', /^[0-9a-f]{32}$/);
  t.is(seen.get('user-agent'), 'curl/8.5.0 (podlab)');
  t.false(seen.has('connection'), 'keep-alive upstream: no Connection field');

  t.is((await get('a.example', '/banana')).out, 'banana\n', 'Exact /banana beats Prefix /');
  t.regex((await get('a.example', '/banana/split')).out, /^404 Not Found/, 'Exact does not take a subpath: Prefix / does, and the pod answers 404');
  t.regex((await get('A.EXAMPLE:80', '/')).out, /^web-[ab] on node-1\n$/);
});

test.serial('404 from the controller, 503 without endpoints or Service, 502 on refusal, 504 on silence', async (t) => {
  // The stack's timers are unref'd (an agent has its sockets to live for); this test has only them.
  const alive = setInterval(() => {}, 1000);
  t.teardown(() => clearInterval(alive));
  const code = async (host: string) => (await get(host, '/', ['-o', '/dev/null', '-w', '%{http_code}'])).out;
  t.is(await code('nowhere.example'), '404');
  const page = await get('nowhere.example', '/', ['-i']);
  t.regex(page.out, /^HTTP\/1\.1 404 Not Found\r\n/);
  t.regex(page.out, /\r\nServer: nginx\r\n/);
  t.regex(page.out, /<center><h1>404 Not Found<\/h1><\/center>\r\n<hr><center>nginx<\/center>/);
  t.is(await code('b.example'), '503');
  t.regex((await get('b.example', '/', ['-i'])).out, /^HTTP\/1\.1 503 Service Temporarily Unavailable\r\n/);
  t.is(await code('e.example'), '503');
  t.is(await code('c.example'), '502');
  t.is(await code('d.example'), '504');
});

test.serial("an upstream's status, reason and headers come back; POST bodies go up", async (t) => {
  const r = await get('a.example', '/', ['-i', '-X', 'POST', '-H', 'Content-Length: 0']);
  t.regex(r.out, /^HTTP\/1\.1 405 Method Not Allowed\r\n/);
  t.regex(r.out, /\r\nAllow: GET, HEAD\r\n/);
  t.regex(r.out, /\r\nServer: nginx\r\n/, "nginx's own Server field, not the upstream's");
  const e = await get('a.example', '/banana', ['-i']);
  t.regex(e.out, /\r\nX-App-Name: http-echo\r\n/);
});

test.serial('upstream keep-alive: requests reuse pooled connections; round-robin over the endpoints', async (t) => {
  const before = { ...pool.stats };
  const bodies: string[] = [];
  for (let i = 0; i < 8; i++) bodies.push((await get('a.example', '/')).out.trim());
  t.deepEqual(new Set(bodies), new Set(['web-a on node-1', 'web-b on node-1']));
  t.not(bodies[0], bodies[1], 'round-robin alternates');
  const opened = pool.stats.connections - before.connections;
  t.is(pool.stats.requests - before.requests, 8);
  t.true(opened <= 2, `${opened} new upstream connections for 8 requests`);
  t.true(pool.stats.reused - before.reused >= 6);
  // The backends agree: each saw one connection from the proxy for all its requests.
  for (const p of [webA, webB]) {
    const c = podApps(p)[0].status!.counters;
    t.is(c.connections, 1, `${p.key}: ${JSON.stringify(c)}`);
    t.true(c.requests >= 4);
  }
});

test.serial("access-log lines in ingress-nginx's format", (t) => {
  const lines = log.map((l) => LOG_LINE.exec(l));
  t.true(
    lines.every((m) => m),
    log.filter((l) => !LOG_LINE.test(l)).join('\n'),
  );
  const find = (pred: (m: RegExpExecArray) => boolean) => lines.find((m) => m && pred(m))!;
  const ok = find((m) => m[3] === '/banana' && m[4] === '200');
  t.is(ok[1], '10.244.1.2');
  t.is(ok[7], 'default-echo-http');
  t.is(ok[8], '10.244.1.6:5678');
  t.is(ok[9], '7');
  t.is(ok[11], '200');
  const nf = find((m) => m[4] === '404' && m[7] === 'upstream-default-backend');
  t.is(nf[8], '127.0.0.1:8181');
  const un = find((m) => m[4] === '503' && m[7] === 'default-empty-80');
  t.is(un[8], '-');
  const bad = find((m) => m[4] === '502');
  t.is(bad[7], 'default-dead-80');
  t.is(bad[8], '10.244.1.7:80');
  t.is(bad[11], '502');
  t.truthy(find((m) => m[4] === '504' && m[11] === '504'));
});
