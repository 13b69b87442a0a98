/**
 * Services end to end, across nodes, with kube-proxy in every node agent:
 * iptables mode spreads 600 new connections evenly (chi-square, fixed seed),
 * ClientIP affinity pins a client, NodePort answers a real curl from the host
 * (and externalTrafficPolicy Local only where an endpoint runs), deleted
 * endpoints leave every node's rules within a second, a Service without
 * endpoints is rejected; ipvs rr answers exactly in turn; the userspace proxy
 * adds its hop.
 */
import { labApi } from '../cli/lab.ts';
import test from 'ava';
import http from 'node:http';
import { ApiClient } from '../control-plane/client.ts';
import type { KubeObject, Pod } from '../control-plane/types.ts';
import { nodeCommand } from '../cli/commands.ts';
import { trace } from '../cli/trace.ts';
import { eventually, startLab, type TestLab } from './helpers/lab.ts';

const pod = (name: string, node: string, app: string, image = 'podlab/http') => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, labels: { app } },
  spec: { nodeName: node, containers: [{ name: 'c', image, ports: [{ name: 'http', containerPort: 80 }] }] },
});
const service = (name: string, app: string, extra: Record<string, unknown> = {}) => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name },
  spec: { selector: { app }, ports: [{ port: 80, targetPort: 'http' }], ...extra },
});

async function setup(lab: TestLab, objs: object[]): Promise<ApiClient> {
  const api = labApi(lab.rec);
  for (const o of objs) await api.create((o as KubeObject).kind === 'Service' ? 'services' : 'pods', o, 'default');
  await eventually(async () => (await api.list<Pod>('pods')).items.every((p) => p.status?.phase === 'Running'), 20_000);
  return api;
}

async function clusterIP(api: ApiClient, name: string): Promise<string> {
  return (await api.get<KubeObject<{ clusterIP: string }>>('services', name, 'default'))!.spec!.clusterIP;
}

async function heyJson(lab: TestLab, from: string, args: string[]): Promise<{ requests: number; errors: number; bodies: Record<string, number> }> {
  const r = await lab.exec(from, ['hey', ...args, '-o', 'json']);
  return JSON.parse(r.out.trim().split('\n').pop()!);
}

function realGet(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(body.trim()));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
  });
}

test.serial('iptables mode: even spread, affinity, NodePort from the host, endpoint churn, no endpoints', async (t) => {
  const lab = await startLab('127.0.80.0/24', { podsPerNode: 1, proxyMode: 'iptables', seed: 3 });
  t.teardown(() => lab.close());
  const api = await setup(lab, [
    pod('web-1', 'node-1', 'web'),
    pod('web-2', 'node-2', 'web'),
    pod('web-3', 'node-3', 'web'),
    pod('solo', 'node-1', 'solo'),
    service('web', 'web', { type: 'NodePort' }),
    service('sticky', 'web', { sessionAffinity: 'ClientIP' }),
    service('local', 'solo', { type: 'NodePort', externalTrafficPolicy: 'Local' }),
    service('empty', 'nothing'),
  ]);
  const web = await clusterIP(api, 'web');
  // iptables-save prints what the kernel stored: kube-proxy's 0.3333333333 comes back as 0.33333333349.
  await eventually(async () => /default\/web -> 10\.244\.3\.\d+:80"/.test(await nodeCommand(lab.stateDir, 'node-2', ['iptables-save', '-t', 'nat'])), 10_000);

  // 600 new connections from a pod on node-2: chi-square against a uniform spread over 3 endpoints.
  const r = await heyJson(lab, 'pod-2a', ['-n', '600', '-c', '10', '-disable-keepalive', `http://${web}/`]);
  t.is(r.errors, 0);
  const counts = ['web-1 on node-1', 'web-2 on node-2', 'web-3 on node-3'].map((b) => r.bodies[b] ?? 0);
  const chi2 = counts.reduce((s, o) => s + (o - 200) ** 2 / 200, 0);
  t.log(`spread ${counts.join('/')}, chi-square ${chi2.toFixed(2)} (p > 0.01 needs < 9.21 with 2 degrees of freedom)`);
  t.true(chi2 < 9.21, `chi-square ${chi2} for ${counts}`);

  // The rule structure and probabilities are kube-proxy's.
  const nat = await nodeCommand(lab.stateDir, 'node-2', ['iptables-save', '-t', 'nat']);
  t.regex(nat, /-A KUBE-SERVICES -d \S+\/32 -p tcp -m comment --comment "default\/web cluster IP" -m tcp --dport 80 -j KUBE-SVC-\w{16}/);
  t.regex(nat, /-m statistic --mode random --probability 0\.33333333\d+ -j KUBE-SEP-\w{16}/);
  t.regex(nat, /-m statistic --mode random --probability 0\.50000000\d+ -j KUBE-SEP-\w{16}/);
  t.regex(nat, /-j DNAT --to-destination 10\.244\.\d\.\d+:80/);

  // ClientIP affinity: every connection from one client lands on one backend.
  const sticky = await heyJson(lab, 'pod-3a', ['-n', '30', '-c', '3', '-disable-keepalive', `http://${await clusterIP(api, 'sticky')}/`]);
  t.is(Object.keys(sticky.bodies).length, 1, JSON.stringify(sticky.bodies));

  // NodePort from the real world: a real HTTP client on the host.
  const svc = (await api.get<KubeObject<{ ports: { nodePort: number }[] }>>('services', 'web', 'default'))!;
  const nodePort = svc.spec!.ports[0].nodePort;
  const seen = new Set<string>();
  for (let i = 0; i < 12; i++) seen.add(await realGet(`http://127.0.80.${11 + (i % 3)}:${nodePort}/`));
  t.true([...seen].every((b) => /^web-\d on node-\d$/.test(b)), [...seen].join(', '));
  t.true(seen.size >= 2, 'NodePort traffic is balanced too');

  // externalTrafficPolicy Local: only node-1, which runs the endpoint, answers.
  const localPort = (await api.get<KubeObject<{ ports: { nodePort: number }[] }>>('services', 'local', 'default'))!.spec!.ports[0].nodePort;
  t.is(await realGet(`http://127.0.80.11:${localPort}/`), 'solo on node-1');
  await t.throwsAsync(realGet(`http://127.0.80.12:${localPort}/`));

  // No endpoints: REJECT with ICMP port unreachable, which a TCP client sees as connection refused.
  const empty = await lab.exec('pod-1a', ['curl', '-s', '-S', `http://${await clusterIP(api, 'empty')}/`]);
  t.is(empty.code, 7, empty.out);
  t.regex(empty.out, /Failed to connect to .* after \d+ ms: Couldn't connect to server/, 'refused at once, not a timeout');

  // Endpoint churn: web-2 deleted, gone from every node's rules within a second; traffic goes on.
  const ip2 = (await api.get<Pod>('pods', 'web-2', 'default'))!.status!.podIP!;
  await api.delete('pods', 'web-2', 'default');
  const t0 = Date.now();
  for (const n of ['node-1', 'node-2', 'node-3']) {
    await eventually(async () => !(await nodeCommand(lab.stateDir, n, ['iptables-save', '-t', 'nat'])).includes(`${ip2}:80`), 5000, 20);
  }
  const took = Date.now() - t0;
  t.log(`deleted endpoint left every node's rules in ${took} ms`);
  t.true(took < 1000, `${took} ms`);
  const after = await heyJson(lab, 'pod-2a', ['-n', '60', '-c', '5', '-disable-keepalive', `http://${web}/`]);
  t.is(after.errors, 0);
  t.deepEqual(Object.keys(after.bodies).sort(), ['web-1 on node-1', 'web-3 on node-3']);

  // trace shows the service hop: the rules taken and the DNAT.
  const tr = await trace(lab.stateDir, 'pod-1a', web, { proto: 'tcp', port: 80 });
  t.is(tr.result.kind, 'reply');
  t.true(tr.hops.some((h) => h.point === 'kube-proxy(iptables)' && /KUBE-SVC-/.test(h.summary)), tr.hops.map((h) => `${h.point}: ${h.summary}`).join('\n'));
  t.true(tr.hops.some((h) => h.point === 'conntrack' && /DNAT to 10\.244\./.test(h.summary)));
});

test.serial('ipvs mode: rr answers exactly in turn; ipvsadm -Ln lists the virtual server', async (t) => {
  const lab = await startLab('127.0.80.0/24', { podsPerNode: 1, proxyMode: 'ipvs' });
  t.teardown(() => lab.close());
  const api = await setup(lab, [pod('web-1', 'node-1', 'web'), pod('web-2', 'node-2', 'web'), pod('web-3', 'node-3', 'web'), service('web', 'web')]);
  const web = await clusterIP(api, 'web');
  await eventually(async () => (await nodeCommand(lab.stateDir, 'node-1', ['ipvsadm', '-Ln'])).includes(`TCP  ${web}:80 rr`), 10_000);
  const order: string[] = [];
  for (let i = 0; i < 9; i++) order.push((await lab.exec('pod-1a', ['curl', '-s', `http://${web}/`])).out.trim());
  t.deepEqual(order.slice(3, 6), order.slice(0, 3));
  t.deepEqual(order.slice(6, 9), order.slice(0, 3));
  t.is(new Set(order.slice(0, 3)).size, 3, order.join(', '));
  t.regex(await nodeCommand(lab.stateDir, 'node-1', ['ipvsadm', '-Ln']), new RegExp(`TCP  ${web.replace(/\./g, '\\.')}:80 rr\\n(  -> 10\\.244\\.\\d\\.\\d+:80 +Masq +1 .*\\n){3}`));
});

test.serial('userspace mode: the node accepts the connection and opens a second one to a backend', async (t) => {
  const lab = await startLab('127.0.80.0/24', { podsPerNode: 1, proxyMode: 'userspace' });
  t.teardown(() => lab.close());
  const api = await setup(lab, [pod('web-1', 'node-2', 'web'), pod('web-2', 'node-3', 'web'), service('web', 'web')]);
  const web = await clusterIP(api, 'web');
  const r = await heyJson(lab, 'pod-1a', ['-n', '20', '-c', '2', '-disable-keepalive', `http://${web}/`]);
  t.is(r.errors, 0);
  t.deepEqual(Object.keys(r.bodies).sort(), ['web-1 on node-2', 'web-2 on node-3']);
  const tr = await trace(lab.stateDir, 'pod-1a', web, { proto: 'tcp', port: 80 });
  t.is(tr.result.kind, 'reply');
  t.true(tr.hops.some((h) => h.point === 'kube-proxy(userspace)'), tr.hops.map((h) => `${h.point}: ${h.summary}`).join('\n'));
  t.true(tr.hops.some((h) => h.node === 'node-1' && h.ns === 'node' && h.point === 'local'), 'the SYN ends in node-1 itself: the proxy accepts it');
});
