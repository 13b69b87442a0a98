/**
 * NetworkPolicy end to end in a real local lab of three nodes: the netpol
 * e2e layout (namespaces x, y, z; pods a, b, c serving TCP 80 and 81, spread
 * over the nodes so pairs meet on one node through the bridge hook and across
 * nodes through FORWARD), a subset of the truth tables probed cell by cell
 * with `nc -z` from every pod to every pod on both ports, a policy on Service
 * traffic (judged after DNAT), and the views: trace names the deciding
 * policy, stats count drops per policy, iptables-save shows Calico's chains.
 */
import test from 'ava';
import type { ApiClient } from '../control-plane/client.ts';
import { labApi } from '../lab/lab.ts';
import type { Pod } from '../control-plane/types.ts';
import { callNode, nodeCommand } from '../cli/commands.ts';
import { trace } from '../cli/trace.ts';
import { diffMatrix, formatMatrix, parseMatrix, type Matrix } from '../policy/reachability.ts';
import { eventually, startLab, type TestLab } from './helpers/lab.ts';
import { NAMESPACES, NETPOL_CASES, POD_NAMES, netpolPod, np, nsLabels } from './helpers/netpol-cases.ts';

const NODES = ['node-1', 'node-2', 'node-3'];
/** The cases run for real (the engine test runs them all). */
const E2E_CASES = [
  'deny-all ingress in x',
  'allow from namespace y into x',
  'namespaceSelector AND podSelector: y/c into x/a',
  'named port serve-81-tcp from every namespace into x',
  'egress port range 75-80 (endPort) from y',
  'egress to ipBlock except y/b from x/a',
  'union of two policies: y on every port, z on 81 into x/a',
];

async function policyCount(lab: TestLab, node: string): Promise<number> {
  const s = await callNode<{ policy?: { policies: number } }>(lab.stateDir, node, 'stats', {});
  return s.policy?.policies ?? -1;
}

/** Waits until every node compiled exactly `n` policies. */
async function converged(lab: TestLab, n: number): Promise<void> {
  await eventually(async () => (await Promise.all(NODES.map((nd) => policyCount(lab, nd)))).every((c) => c === n), 15_000);
}

async function probe(lab: TestLab, from: string, ip: string, port: number): Promise<boolean> {
  const r = await lab.exec(from, ['nc', '-z', '-w', '1', ip, String(port)]);
  return r.code === 0;
}

async function matrix(lab: TestLab, ips: Map<string, string>, port: number): Promise<Matrix> {
  return Promise.all(POD_NAMES.map((s) => Promise.all(POD_NAMES.map((d) => probe(lab, s, ips.get(d)!, port)))));
}

async function applyPolicies(api: ApiClient, lab: TestLab, pols: ReturnType<typeof np>[]): Promise<void> {
  for (const p of pols) await api.create('networkpolicies', p, p.metadata.namespace);
  await converged(lab, pols.length);
}

async function removePolicies(api: ApiClient, lab: TestLab, pols: ReturnType<typeof np>[]): Promise<void> {
  for (const p of pols) await api.delete('networkpolicies', p.metadata.name, p.metadata.namespace);
  await converged(lab, 0);
}

test.serial('truth tables, Service traffic after DNAT, trace, stats and iptables-save in a 3-node lab', async (t) => {
  t.timeout(300_000);
  const lab = await startLab('127.0.190.0/24', { podsPerNode: 0, seed: 17 });
  t.teardown(() => lab.close());
  const api = labApi(lab.rec);
  for (const ns of NAMESPACES) await api.create('namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, labels: nsLabels(ns) } });
  for (const [i, n] of POD_NAMES.entries()) {
    const [ns, letter] = n.split('/');
    await api.create('pods', netpolPod(ns, letter, NODES[i % 3]), ns);
  }
  const ips = await eventually(async () => {
    const pods = (await api.list<Pod>('pods')).items.filter((p) => NAMESPACES.includes(p.metadata.namespace as 'x'));
    if (pods.length !== 9 || !pods.every((p) => p.status?.phase === 'Running' && p.status.podIP)) return null;
    return new Map(pods.map((p) => [`${p.metadata.namespace}/${p.metadata.name}`, p.status!.podIP!]));
  }, 30_000);
  await converged(lab, 0);
  const started = Date.now();

  // Without policy every pod reaches every pod on both ports.
  for (const port of [80, 81]) t.deepEqual(diffMatrix(POD_NAMES, parseMatrix(Array<string>(9).fill('.........')), await matrix(lab, ips, port)), [], `no policy, port ${port}`);

  for (const name of E2E_CASES) {
    const c = NETPOL_CASES.find((x) => x.name === name)!;
    const pols = c.policies((p) => ips.get(p)!);
    await applyPolicies(api, lab, pols);
    for (const port of [80, 81] as const) {
      const got = await matrix(lab, ips, port);
      t.deepEqual(diffMatrix(POD_NAMES, parseMatrix(c.expect[port]), got), [], `${name}, port ${port}:\n${formatMatrix(POD_NAMES, got)}`);
    }
    await removePolicies(api, lab, pols);
    t.log(`${name}: ${Date.now() - started} ms since the lab was up`);
  }

  // A Service whose only endpoint is x/a, and a policy admitting only pods b of x into x/a: judged after DNAT.
  await api.create('services', { apiVersion: 'v1', kind: 'Service', metadata: { name: 'xa' }, spec: { selector: { pod: 'a' }, ports: [{ port: 8080, targetPort: 80 }] } }, 'x');
  const svc = (await api.get<{ spec: { clusterIP: string } }>('services', 'xa', 'x'))!.spec.clusterIP;
  await eventually(async () => (await nodeCommand(lab.stateDir, 'node-3', ['iptables-save', '-t', 'nat'])).includes(`${ips.get('x/a')}:80`), 10_000);
  const svcPolicy = [np('x', 'allow-b-to-a', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'b' } } }] }] })];
  await applyPolicies(api, lab, svcPolicy);
  const others = POD_NAMES.filter((n) => n !== 'x/a');
  const row = (await Promise.all(others.map((n) => probe(lab, n, svc, 8080)))).map((ok) => (ok ? '.' : 'X')).join('');
  t.is(row, '.XXXXXXX', `Service ${svc}:8080 from ${others.join(' ')}`);

  // trace: the drop names the hook and the policy that isolated the pod; an allowed one the rule.
  const denied = await trace(lab.stateDir, 'y/b', ips.get('x/a')!, { proto: 'tcp', port: 80 });
  // y/b's node (node-2) judges its egress (not isolated), x/a's node (node-1) its ingress.
  t.true(denied.hops.some((h) => h.node === 'node-2' && h.point === 'policy' && /egress: not isolated/.test(h.summary)));
  const hop = denied.hops.find((h) => h.point === 'policy' && h.drop);
  t.truthy(hop, JSON.stringify(denied.hops.map((h) => h.summary)));
  t.is(hop!.drop, 'policy-denied');
  t.is(hop!.node, 'node-1');
  t.regex(hop!.summary, /DROP \(no RST sent\).*cali-tw-\S+: ingress: denied \(isolated by x\/allow-b-to-a/);
  t.is(denied.result.kind, 'no-reply');
  const allowed = await trace(lab.stateDir, 'x/b', ips.get('x/a')!, { proto: 'tcp', port: 80 });
  t.true(allowed.hops.some((h) => h.point === 'policy' && /ingress: allowed by x\/allow-b-to-a ingress rule 0/.test(h.summary)), JSON.stringify(allowed.hops.map((h) => h.summary)));
  t.is(allowed.result.kind, 'reply');

  // stats: drops counted against the policy on x/a's node; iptables-save: Calico's chain names.
  const s = await callNode<{ policy: { dropsByPolicy: Record<string, number> } }>(lab.stateDir, 'node-1', 'stats', {});
  t.true((s.policy.dropsByPolicy['x/allow-b-to-a'] ?? 0) > 0, JSON.stringify(s.policy));
  t.regex(await nodeCommand(lab.stateDir, 'node-1', ['stats']), /x\/allow-b-to-a\s+\d+/);
  const filter = await nodeCommand(lab.stateDir, 'node-1', ['iptables-save', '-t', 'filter']);
  t.regex(filter, /^:cali-pi-_[A-Za-z0-9_-]{19} - \[0:0\]$/m);
  t.regex(filter, /^-A cali-tw-\S+ -m mark --mark 0x0\/0x20000 -m comment --comment "Drop if no policies passed packet" -j DROP$/m);
  t.regex(filter, new RegExp(`^-A cali-pi-\\S+ -m comment --comment "Policy x/knp.default.allow-b-to-a ingress rule 0" -s ${ips.get('x/b')!.replace(/\./g, '\\.')}/32 -j MARK`, 'm'));
  await removePolicies(api, lab, svcPolicy);
});
