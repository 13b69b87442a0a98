/**
 * The apiserver serves networking.k8s.io/v1 NetworkPolicy: discovery (what
 * `kubectl api-resources` reads), create with kube-apiserver's defaulting
 * (policyTypes, protocol TCP), validation errors with its field paths, list,
 * watch, get, delete, and the `NAME POD-SELECTOR AGE` table.
 */
import { httpsJson } from './helpers/https.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startApiServer } from '../control-plane/apiserver.ts';
import { ApiClient, ApiError } from '../control-plane/client.ts';
import { Informer } from '../control-plane/informer.ts';
import type { NetworkPolicy } from '../policy/types.ts';
import { np } from './helpers/netpol-cases.ts';
import { EtcdPool, storeOptions, storeTest } from './helpers/stores.ts';

/** The etcd of the [etcd] variants (./helpers/stores.ts): client port 23804, peer 23805. */
const etcds = new EtcdPool([23804]);

async function server(t: { teardown(fn: () => unknown): void }) {
  const dir = mkdtempSync(join(tmpdir(), 'podlab-netpol-api-'));
  const store = await storeOptions(t, etcds);
  const api = await startApiServer({ host: '127.0.0.1', port: 0, stateDir: dir, ...store.options });
  const client = new ApiClient(api.url, { credentials: api.credentials });
  await client.create('namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'x' } });
  t.teardown(async () => {
    client.close();
    await api.close();
    await store.release();
    rmSync(dir, { recursive: true, force: true });
  });
  return { api, client };
}

const bare = (p: NetworkPolicy) => ({ ...p, metadata: { name: p.metadata.name, namespace: p.metadata.namespace } });

storeTest('discovery lists networkpolicies in networking.k8s.io/v1', async (t) => {
  const { api } = await server(t);
  const groups = await httpsJson<{ groups: { name: string }[] }>(`${api.url}/apis`, api.credentials);
  t.true(groups.groups.some((g) => g.name === 'networking.k8s.io'));
  const list = await httpsJson<{ resources: { name: string; namespaced: boolean; kind: string; shortNames?: string[]; verbs: string[] }[] }>(`${api.url}/apis/networking.k8s.io/v1`, api.credentials);
  const r = list.resources.find((x) => x.name === 'networkpolicies');
  t.truthy(r);
  t.true(r!.namespaced);
  t.is(r!.kind, 'NetworkPolicy');
  t.deepEqual(r!.shortNames, ['netpol']);
  for (const v of ['create', 'delete', 'get', 'list', 'watch']) t.true(r!.verbs.includes(v), v);
});

storeTest('create defaults policyTypes and protocol; get, list, watch, delete', async (t) => {
  const { client } = await server(t);
  const inf = new Informer<NetworkPolicy>(client, 'networkpolicies');
  const seen: string[] = [];
  inf.on('add', (p: NetworkPolicy) => seen.push(`add ${p.metadata.namespace}/${p.metadata.name}`));
  inf.on('delete', (p: NetworkPolicy) => seen.push(`delete ${p.metadata.namespace}/${p.metadata.name}`));
  await inf.start();
  t.teardown(() => inf.stop());
  const created = await client.create<NetworkPolicy>('networkpolicies', bare(np('x', 'egress', { podSelector: {}, egress: [{ ports: [{ port: 53 }] }] })), 'x');
  t.deepEqual(created.spec!.policyTypes, ['Ingress', 'Egress']);
  t.is(created.spec!.egress![0].ports![0].protocol, 'TCP');
  const ing = await client.create<NetworkPolicy>('networkpolicies', bare(np('x', 'deny', { podSelector: {} })), 'x');
  t.deepEqual(ing.spec!.policyTypes, ['Ingress']);
  t.is((await client.get<NetworkPolicy>('networkpolicies', 'deny', 'x'))!.metadata.name, 'deny');
  t.deepEqual((await client.list<NetworkPolicy>('networkpolicies')).items.map((p) => p.metadata.name).sort(), ['deny', 'egress']);
  await client.delete('networkpolicies', 'deny', 'x');
  t.is(await client.get('networkpolicies', 'deny', 'x'), null);
  const deadline = Date.now() + 5000;
  while (seen.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  t.deepEqual(seen, ['add x/egress', 'add x/deny', 'delete x/deny']);
});

storeTest('validation: field paths and wording as kube-apiserver', async (t) => {
  const { client } = await server(t);
  const bad = np('x', 'bad', {
    podSelector: {},
    ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.0/16', except: ['10.1.0.0/24'] }, podSelector: {} }], ports: [{ port: 'http', endPort: 90 }] }],
    egress: [{ to: [{}], ports: [{ protocol: 'ICMP' as 'TCP', port: 70000 }] }],
  });
  const e = await t.throwsAsync(client.create('networkpolicies', bare(bad), 'x'), { instanceOf: ApiError });
  const msg = e.message;
  t.regex(msg, /spec\.ingress\[0\]\.from\[0\]: Forbidden: may not specify more than 1 peer type/);
  t.regex(msg, /spec\.ingress\[0\]\.from\[0\]\.ipBlock\.except\[0\]: Invalid value: "10\.1\.0\.0\/24": must be a strict subset of `cidr`/);
  t.regex(msg, /spec\.ingress\[0\]\.ports\[0\]\.endPort: Invalid value: 90: may not be specified when `port` is not a number/);
  t.regex(msg, /spec\.egress\[0\]\.to\[0\]: Required value/);
  t.regex(msg, /spec\.egress\[0\]\.ports\[0\]\.protocol: Unsupported value: "ICMP"/);
  t.regex(msg, /spec\.egress\[0\]\.ports\[0\]\.port: Invalid value: 70000/);
});

storeTest('kubectl get networkpolicies prints NAME POD-SELECTOR AGE', async (t) => {
  const { api, client } = await server(t);
  await client.create('networkpolicies', bare(np('x', 'sel', { podSelector: { matchLabels: { pod: 'a' }, matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['db', 'cache'] }] } })), 'x');
  await client.create('networkpolicies', bare(np('x', 'all', { podSelector: {} })), 'x');
  const table = await httpsJson<{ columnDefinitions: { name: string }[]; rows: { cells: string[] }[] }>(`${api.url}/apis/networking.k8s.io/v1/namespaces/x/networkpolicies`, api.credentials, { accept: 'application/json;as=Table;v=v1;g=meta.k8s.io' });
  t.deepEqual(table.columnDefinitions.map((c) => c.name), ['Name', 'Pod-Selector', 'Age']);
  t.deepEqual(table.rows.map((r) => r.cells.slice(0, 2)).sort(), [['all', '<none>'], ['sel', 'pod=a,tier notin (db,cache)']]);
});
