import test, { type ExecutionContext } from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import type { ClientRequest, IncomingMessage, RequestOptions } from 'node:http';
import { createServer, request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startApiServer, type ApiServer, type ApiServerOptions } from '../control-plane/apiserver.ts';
import { ApiClient, ApiConnectionError, ApiError } from '../control-plane/client.ts';
import { Informer } from '../control-plane/informer.ts';
import { ensurePki } from '../control-plane/pki.ts';
import { openStore } from '../control-plane/store.ts';
import type { KubeObject, Node, Pod, Status, WatchEvent } from '../control-plane/types.ts';
import { EtcdPool, storeOptions, storeTest } from './helpers/stores.ts';
import { httpsCall, type HttpsResponse } from './helpers/https.ts';

type Ctx = ExecutionContext;

/** The etcd of the [etcd] variants (serial, so one is enough): client port 23800, peer 23801. */
const etcds = new EtcdPool([23800]);

/**
 * An apiserver on the test's store (./helpers/stores.ts): SQLite in a fresh
 * state dir, or an emptied etcd of this file's pool.
 */
async function server(t: Ctx, extra: Partial<ApiServerOptions> = {}): Promise<{ api: ApiServer; client: ApiClient; dir: string }> {
  const dir = extra.stateDir ?? mkdtempSync(join(tmpdir(), 'podlab-cp-api-'));
  const store = await storeOptions(t, etcds);
  const api = await startApiServer({ host: '127.0.0.1', port: 0, stateDir: dir, ...store.options, ...extra });
  const client = new ApiClient(api.url, { credentials: api.credentials });
  credsByBase.set(api.url, api.credentials);
  t.teardown(async () => {
    client.close();
    await api.close();
    await store.release();
    if (!extra.stateDir) rmSync(dir, { recursive: true, force: true });
  });
  return { api, client, dir };
}

type RawResponse = HttpsResponse;

/** The admin credentials of each test server, by base URL: raw requests authenticate like any client. */
const credsByBase = new Map<string, ApiServer['credentials']>();

function credsFor(url: string): ApiServer['credentials'] {
  const creds = credsByBase.get(new URL(url).origin);
  if (!creds) throw new Error(`no test server at ${url}`);
  return creds;
}

/** node:https request to a test server, trusting its CA and sending its admin token. */
function request(url: string, opts: RequestOptions, cb: (res: IncomingMessage) => void): ClientRequest;
function request(url: string, cb: (res: IncomingMessage) => void): ClientRequest;
function request(url: string, a: RequestOptions | ((res: IncomingMessage) => void), b?: (res: IncomingMessage) => void): ClientRequest {
  const opts = typeof a === 'function' ? {} : a;
  const cb = typeof a === 'function' ? a : b!;
  const creds = credsFor(url);
  return httpsRequest(url, { ...opts, ca: creds.ca, headers: { authorization: `Bearer ${creds.token}`, ...(opts.headers as Record<string, string> | undefined) } }, cb);
}

/** A raw request to a test server with its admin token (test/helpers/https.ts). */
const http = (base: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<RawResponse> => httpsCall(base + path, credsFor(base), { method, body, headers });

function podBody(name: string, nodeName?: string, labels?: Record<string, string>): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, ...(labels ? { labels } : {}) } as KubeObject['metadata'],
    spec: { ...(nodeName ? { nodeName } : {}), containers: [{ name: 'c', image: 'busybox' }] },
  };
}

function nodeBody(name: string, ready = true): KubeObject {
  return { apiVersion: 'v1', kind: 'Node', metadata: { name } as KubeObject['metadata'], status: { conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }] } };
}

/** Collects events from an async iterable until `n` arrived or it ends. */
async function take<T>(it: AsyncIterator<T>, n: number, timeoutMs = 5000): Promise<T[]> {
  const out: T[] = [];
  const deadline = Date.now() + timeoutMs;
  while (out.length < n) {
    const next = await Promise.race([
      it.next(),
      new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), Math.max(1, deadline - Date.now()))),
    ]);
    if (next === 'timeout' || next.done) break;
    out.push(next.value);
  }
  return out;
}

/** The first item of an async iterable (undefined when it ends at once); the iteration is closed after it. */
async function firstOf<T>(it: AsyncIterable<T>): Promise<T | undefined> {
  for await (const x of it) return x;
  return undefined;
}

const short = (ev: WatchEvent<KubeObject>) => `${ev.type} ${ev.object.metadata?.name ?? ''}`;

storeTest('discovery documents, version and health endpoints', async (t) => {
  const { api } = await server(t);
  const apis = await http(api.url, 'GET', '/api');
  t.is(apis.code, 200);
  t.like(apis.json, { kind: 'APIVersions', versions: ['v1'] });
  const v1 = (await http(api.url, 'GET', '/api/v1')).json as { kind: string; groupVersion: string; resources: { name: string; namespaced: boolean; kind: string; verbs: string[]; shortNames?: string[] }[] };
  t.is(v1.kind, 'APIResourceList');
  t.is(v1.groupVersion, 'v1');
  const pods = v1.resources.find((r) => r.name === 'pods');
  t.like(pods, { namespaced: true, kind: 'Pod', shortNames: ['po'] });
  t.true(pods?.verbs.includes('watch') && pods.verbs.includes('patch'));
  t.like(v1.resources.find((r) => r.name === 'nodes'), { namespaced: false, kind: 'Node' });
  t.like(v1.resources.find((r) => r.name === 'namespaces'), { namespaced: false, kind: 'Namespace' });
  t.truthy(v1.resources.find((r) => r.name === 'pods/status'));
  const groups = (await http(api.url, 'GET', '/apis')).json as { kind: string; groups: { name: string; preferredVersion: { groupVersion: string } }[] };
  t.is(groups.kind, 'APIGroupList');
  t.like(groups.groups.find((g) => g.name === 'projectcalico.org'), { preferredVersion: { groupVersion: 'projectcalico.org/v3' } });
  t.like((await http(api.url, 'GET', '/version')).json, { major: '1', minor: '30', gitVersion: 'v1.30.0-podlab' });
  for (const p of ['/healthz', '/readyz']) {
    const r = await http(api.url, 'GET', p);
    t.is(r.code, 200);
    t.is(r.text, 'ok');
  }
  const missing = await http(api.url, 'GET', '/api/v1/widgets');
  t.is(missing.code, 404);
  t.like(missing.json, { kind: 'Status', status: 'Failure', reason: 'NotFound', code: 404 });
});

storeTest('REST verbs and status codes for namespaced and cluster-scoped resources', async (t) => {
  const { api } = await server(t);
  const u = api.url;
  const created = await http(u, 'POST', '/api/v1/namespaces/default/pods', podBody('web'));
  t.is(created.code, 201);
  const pod = created.json as Pod;
  t.is(pod.metadata.namespace, 'default');
  t.is((await http(u, 'POST', '/api/v1/namespaces/default/pods', podBody('web'))).code, 409);
  t.like((await http(u, 'POST', '/api/v1/namespaces/default/pods', podBody('web'))).json, { reason: 'AlreadyExists' });
  t.is((await http(u, 'GET', '/api/v1/namespaces/default/pods/web')).code, 200);

  const plain = await http(u, 'GET', '/api/v1/namespaces/default/pods?limit=500', undefined, { accept: 'application/json' });
  t.like(plain.json, { kind: 'PodList', apiVersion: 'v1' });
  // The scheduler's FailedScheduling Event for the unbound pod may come after it: the list is at least as new.
  t.true(Number((plain.json as { metadata: { resourceVersion: string } }).metadata.resourceVersion) >= Number(pod.metadata.resourceVersion));
  t.is((plain.json as { items: unknown[] }).items.length, 1);
  t.is(((await http(u, 'GET', '/api/v1/pods')).json as { items: unknown[] }).items.length, 1);
  t.is(((await http(u, 'GET', '/api/v1/namespaces/kube-system/pods')).json as { items: unknown[] }).items.length, 0);

  const mismatch = await http(u, 'POST', '/api/v1/namespaces/default/pods', { ...podBody('x'), metadata: { name: 'x', namespace: 'kube-system' } });
  t.is(mismatch.code, 400);
  t.like(mismatch.json, { reason: 'BadRequest', message: 'the namespace of the provided object does not match the namespace sent on the request' });
  t.is((await http(u, 'POST', '/api/v1/pods', podBody('x'))).code, 405);
  t.is((await http(u, 'POST', '/api/v1/namespaces/default/pods', '{not json')).code, 400);
  const inv = await http(u, 'POST', '/api/v1/namespaces/default/pods', podBody('Foo_'));
  t.is(inv.code, 422);
  t.regex((inv.json as Status).message, /metadata\.name: Invalid value: "Foo_"/);
  t.is((await http(u, 'POST', '/api/v1/namespaces/nope/pods', podBody('x'))).code, 404);

  const stale = await http(u, 'PUT', '/api/v1/namespaces/default/pods/web', { ...pod, metadata: { ...pod.metadata, resourceVersion: '1' } });
  t.is(stale.code, 409);
  t.like(stale.json, { reason: 'Conflict' });
  const put = await http(u, 'PUT', '/api/v1/namespaces/default/pods/web', { ...pod, metadata: { ...pod.metadata, labels: { v: '2' } } });
  t.is(put.code, 200);
  const wrongName = await http(u, 'PUT', '/api/v1/namespaces/default/pods/other', pod);
  t.is(wrongName.code, 400);

  const patched = await http(u, 'PATCH', '/api/v1/namespaces/default/pods/web', { metadata: { labels: { v: null, w: '3' } } }, { 'content-type': 'application/merge-patch+json' });
  t.is(patched.code, 200);
  t.deepEqual((patched.json as Pod).metadata.labels, { w: '3' });
  const smp = await http(u, 'PATCH', '/api/v1/namespaces/default/pods/web', { metadata: { labels: { s: '1' } } }, { 'content-type': 'application/strategic-merge-patch+json' });
  t.is(smp.code, 200);
  const jsonPatch = await http(u, 'PATCH', '/api/v1/namespaces/default/pods/web', [{ op: 'add', path: '/metadata/labels/j', value: '1' }], { 'content-type': 'application/json-patch+json' });
  t.is(jsonPatch.code, 200);
  t.is((jsonPatch.json as Pod).metadata.labels?.j, '1');
  const badPointer = await http(u, 'PATCH', '/api/v1/namespaces/default/pods/web', [{ op: 'replace', path: '/metadata/nothing/here', value: 1 }], { 'content-type': 'application/json-patch+json' });
  t.is(badPointer.code, 422);
  // Server-side apply needs a field manager, as kube-apiserver says.
  const apply = await http(u, 'PATCH', '/api/v1/namespaces/default/pods/web', 'metadata: {}', { 'content-type': 'application/apply-patch+yaml' });
  t.is(apply.code, 422);
  t.regex((apply.json as { message: string }).message, /fieldManager: Required value: is required for apply patch/);

  const status = await http(u, 'PATCH', '/api/v1/namespaces/default/pods/web/status', { status: { phase: 'Running', podIP: '10.244.1.5' } }, { 'content-type': 'application/merge-patch+json' });
  t.is(status.code, 200);
  t.is((status.json as Pod).status?.podIP, '10.244.1.5');
  const getStatus = await http(u, 'GET', '/api/v1/namespaces/default/pods/web/status');
  t.is((getStatus.json as Pod).status?.phase, 'Running');
  const putStatus = await http(u, 'PUT', '/api/v1/namespaces/default/pods/web/status', { ...(status.json as Pod), status: { phase: 'Succeeded' } });
  t.is((putStatus.json as Pod).status?.phase, 'Succeeded');
  t.is((await http(u, 'GET', '/api/v1/namespaces/default/pods/web/exec')).code, 404);

  const del = await http(u, 'DELETE', '/api/v1/namespaces/default/pods/web');
  t.is(del.code, 200);
  t.is((del.json as Pod).metadata.uid, pod.metadata.uid);
  const gone = await http(u, 'GET', '/api/v1/namespaces/default/pods/web');
  t.is(gone.code, 404);
  t.like(gone.json, { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'NotFound', code: 404, message: 'pods "web" not found' });
  t.is((await http(u, 'DELETE', '/api/v1/namespaces/default/pods/web')).code, 404);

  // Cluster-scoped kinds.
  const node = await http(u, 'POST', '/api/v1/nodes', nodeBody('node-1'));
  t.is(node.code, 201);
  t.is((node.json as Node).spec?.podCIDR, '10.244.1.0/24');
  t.is((await http(u, 'GET', '/api/v1/nodes/node-1')).code, 200);
  t.is((await http(u, 'GET', '/api/v1/nodes/node-1/status')).code, 200);
  t.like((await http(u, 'GET', '/api/v1/namespaces/default')).json, { kind: 'Namespace', status: { phase: 'Active' } });
  t.is((await http(u, 'POST', '/api/v1/namespaces', { metadata: { name: 'team' } })).code, 201);
  t.is((await http(u, 'DELETE', '/api/v1/namespaces/team')).code, 200);
  t.is((await http(u, 'DELETE', '/api/v1/namespaces/default')).code, 403);
  const pre = await http(u, 'DELETE', '/api/v1/nodes/node-1', { preconditions: { uid: 'nope' } });
  t.is(pre.code, 409, pre.text);
  t.is((await http(u, 'DELETE', '/api/v1/nodes/node-1')).code, 200);
});

const TABLE_ACCEPT = 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json';

interface Table {
  kind: string;
  apiVersion: string;
  columnDefinitions: { name: string; priority: number }[];
  rows: { cells: unknown[]; object?: { kind: string; metadata: { name: string } } }[];
}

storeTest('kubectl support: as=Table gets server-side printed tables (list, get, watch); OpenAPI v3 stub', async (t) => {
  const { api, client } = await server(t);
  await client.create('nodes', { ...nodeBody('node-1'), status: { addresses: [{ type: 'InternalIP', address: '10.99.0.11' }], conditions: [{ type: 'Ready', status: 'True' }] } });
  await client.create('pods', podBody('web'));
  await client.patchStatus('pods', 'web', { status: { phase: 'Running', podIP: '10.244.1.2', conditions: [{ type: 'Ready', status: 'True' }] } });
  const list = (await http(api.url, 'GET', '/api/v1/namespaces/default/pods?limit=500', undefined, { accept: TABLE_ACCEPT })).json as Table;
  t.is(list.kind, 'Table');
  t.is(list.apiVersion, 'meta.k8s.io/v1');
  t.deepEqual(list.columnDefinitions.map((c) => c.name), ['Name', 'Ready', 'Status', 'Restarts', 'Age', 'IP', 'Node', 'Nominated Node', 'Readiness Gates']);
  t.deepEqual(list.columnDefinitions.filter((c) => c.priority === 1).map((c) => c.name), ['IP', 'Node', 'Nominated Node', 'Readiness Gates']);
  t.deepEqual(list.rows[0].cells.filter((_c, i) => i !== 4), ['web', '1/1', 'Running', '0', '10.244.1.2', 'node-1', '<none>', '<none>']);
  t.regex(String(list.rows[0].cells[4]), /^\d+s$/);
  t.like(list.rows[0].object, { kind: 'PartialObjectMetadata', metadata: { name: 'web' } });
  const nodes = (await http(api.url, 'GET', '/api/v1/nodes', undefined, { accept: TABLE_ACCEPT })).json as Table;
  t.deepEqual([nodes.rows[0].cells[0], nodes.rows[0].cells[1], nodes.rows[0].cells[5]], ['node-1', 'Ready', '10.99.0.11']);
  const one = (await http(api.url, 'GET', '/api/v1/namespaces/default/pods/web', undefined, { accept: TABLE_ACCEPT })).json as Table;
  t.is(one.rows.length, 1);

  const raw = await new Promise<string>((resolve, reject) => {
    const req = request(`${api.url}/api/v1/namespaces/default/pods?watch=true&timeoutSeconds=1`, { headers: { accept: TABLE_ACCEPT } }, (res) => {
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (buf += c));
      res.on('end', () => resolve(buf));
    });
    req.on('error', reject);
    req.end();
  });
  const [ev] = raw.split('\n').filter(Boolean).map((l) => JSON.parse(l) as WatchEvent<Table>);
  t.is(ev.type, 'ADDED');
  t.is(ev.object.kind, 'Table');
  t.is(ev.object.rows[0].cells[0], 'web');

  const root = (await http(api.url, 'GET', '/openapi/v3')).json as { paths: Record<string, { serverRelativeURL: string }> };
  const doc = (await http(api.url, 'GET', root.paths['api/v1'].serverRelativeURL)).json as { paths: Record<string, { patch?: { parameters: { name: string }[] } }> };
  t.is(doc.paths['/api/v1/namespaces/{namespace}/pods/{name}'].patch?.parameters[0].name, 'fieldValidation');
});

storeTest('watch stream: chunked NDJSON, from 0 (synthetic ADDED then live) and from N (history only after N)', async (t) => {
  const { api, client } = await server(t);
  await client.create('pods', podBody('a'));
  const b = await client.create<Pod>('pods', podBody('b'));

  // Raw HTTP to check the wire format.
  const raw = await new Promise<{ headers: Record<string, unknown>; lines: string[] }>((resolve, reject) => {
    const req = request(`${api.url}/api/v1/namespaces/default/pods?watch=true&timeoutSeconds=1`, (res) => {
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (buf += c));
      res.on('end', () => resolve({ headers: res.headers, lines: buf.split('\n').filter(Boolean) }));
    });
    req.on('error', reject);
    req.end();
  });
  t.is(raw.headers['content-type'], 'application/json');
  t.is(raw.headers['transfer-encoding'], 'chunked');
  t.deepEqual(
    raw.lines.map((l) => short(JSON.parse(l) as WatchEvent<KubeObject>)),
    ['ADDED a', 'ADDED b'],
  );

  const ac = new AbortController();
  t.teardown(() => ac.abort());
  const fromZero = client.watch('pods', { resourceVersion: '0', signal: ac.signal })[Symbol.asyncIterator]();
  t.deepEqual((await take(fromZero, 2)).map(short), ['ADDED a', 'ADDED b']);
  await client.create('pods', podBody('c'));
  await client.delete('pods', 'a');
  t.deepEqual((await take(fromZero, 2)).map(short), ['ADDED c', 'DELETED a']);

  const fromN = client.watch('pods', { resourceVersion: b.metadata.resourceVersion, signal: ac.signal })[Symbol.asyncIterator]();
  t.deepEqual((await take(fromN, 2)).map(short), ['ADDED c', 'DELETED a']);
  const live = await client.patch<Pod>('pods', 'c', { metadata: { labels: { x: 'y' } } });
  const [ev] = await take(fromN, 1);
  t.is(short(ev), 'MODIFIED c');
  t.is(ev.object.metadata.resourceVersion, live.metadata.resourceVersion);
});

storeTest('watch with a resourceVersion older than history: one ERROR 410 event, then the stream ends', async (t) => {
  const { client } = await server(t, { historyLimit: 3 });
  for (const n of ['a', 'b', 'c', 'd', 'e']) await client.create('pods', podBody(n));
  const events: WatchEvent<KubeObject | Status>[] = [];
  for await (const ev of client.watch<KubeObject | Status>('pods', { resourceVersion: '1' })) events.push(ev);
  t.is(events.length, 1);
  t.is(events[0].type, 'ERROR');
  const st = events[0].object as Status;
  t.like(st, { kind: 'Status', code: 410, reason: 'Expired' });
  t.regex(st.message, /^too old resource version: 1 \(\d+\)$/);
  // A bad selector, by contrast, is an ordinary HTTP 400.
  await t.throwsAsync(() => firstOf(client.watch('pods', { fieldSelector: 'spec.bogus=1' })), { instanceOf: ApiError, message: 'field label not supported: spec.bogus' });
});

storeTest('fieldSelector watch: pods on node-1 only; a pod rebound elsewhere is DELETED, rebound here is ADDED', async (t) => {
  const { api, client } = await server(t);
  const ac = new AbortController();
  t.teardown(() => ac.abort());
  // The generator opens its request lazily, so start from an explicit version.
  const from = (await client.list('pods')).metadata.resourceVersion;
  // A Pod's node is immutable through the API (as in Kubernetes); rebinding is done the way
  // in-process controllers write, through the store.
  const rebind = (name: string, node: string) => api.store.mutate<Pod>('pods', name, 'default', (d) => void (d.spec!.nodeName = node));
  const it = client.watch<Pod>('pods', { fieldSelector: 'spec.nodeName=node-1', resourceVersion: from, signal: ac.signal })[Symbol.asyncIterator]();
  await client.create('pods', podBody('p1', 'node-1'));
  await client.create('pods', podBody('p2', 'node-2'));
  await client.patch('pods', 'p1', { metadata: { labels: { touched: 'yes' } } });
  await t.throwsAsync(client.patch('pods', 'p1', { spec: { nodeName: 'node-2' } }), { instanceOf: ApiError, message: /spec: Forbidden: pod updates may not change fields/ });
  rebind('p1', 'node-2');
  rebind('p2', 'node-1');
  const evs = await take(it, 4);
  t.deepEqual(
    evs.map((e) => `${e.type} ${e.object.metadata.name} ${e.object.spec?.nodeName}`),
    ['ADDED p1 node-1', 'MODIFIED p1 node-1', 'DELETED p1 node-2', 'ADDED p2 node-1'],
  );
});

storeTest('timeoutSeconds ends the stream cleanly; bookmarks carry the current resourceVersion', async (t) => {
  const { client } = await server(t, { bookmarkIntervalMs: 100 });
  const started = Date.now();
  const evs: WatchEvent<KubeObject>[] = [];
  for await (const ev of client.watch('pods', { resourceVersion: '0', timeoutSeconds: 1, allowWatchBookmarks: true })) evs.push(ev);
  const took = Date.now() - started;
  t.true(took >= 900 && took < 3000, `took ${took} ms`);
  const bookmarks = evs.filter((e) => e.type === 'BOOKMARK');
  t.true(bookmarks.length >= 3, `got ${bookmarks.length} bookmarks`);
  const list = await client.list('pods');
  t.like(bookmarks[0].object, { kind: 'Pod', apiVersion: 'v1', metadata: { resourceVersion: list.metadata.resourceVersion } });
  // Without allowWatchBookmarks none are sent.
  const plain: WatchEvent<KubeObject>[] = [];
  for await (const ev of client.watch('pods', { timeoutSeconds: 1 })) plain.push(ev);
  t.deepEqual(plain, []);
});

storeTest('client: typed results, null on 404, ApiError with Status, connection errors', async (t) => {
  const { client } = await server(t);
  t.is(await client.get('pods', 'nope'), null);
  t.is(await client.delete('pods', 'nope'), null);
  const p = await client.create<Pod>('Pod', podBody('web'));
  t.is((await client.get<Pod>('po', 'web', 'default'))?.metadata.uid, p.metadata.uid);
  const upd = await client.update<Pod>('pods', { ...p, metadata: { ...p.metadata, labels: { a: 'b' } } });
  const err = await t.throwsAsync(client.update('pods', { ...p, metadata: { ...p.metadata, labels: { a: 'c' } } }), { instanceOf: ApiError });
  t.is(err?.code, 409);
  t.is(err?.reason, 'Conflict');
  t.is(err?.status.kind, 'Status');
  const st = await client.updateStatus<Pod>('pods', { ...upd, status: { phase: 'Running' } });
  t.is(st.status?.phase, 'Running');
  const ps = await client.patchStatus<Pod>('pods', 'web', { status: { podIP: '10.244.1.9' } });
  t.is(ps.status?.podIP, '10.244.1.9');
  t.is(ps.status?.phase, 'Running');
  const ns = await client.list('namespaces');
  t.deepEqual(ns.items.map((n) => n.metadata.name), ['default', 'kube-node-lease', 'kube-public', 'kube-system']);
  t.throws(() => client.resource('widgets'), { name: 'UnknownResourceError' });

  const dead = new ApiClient('https://127.0.0.1:1', { credentials: { token: 'x', ca: '' } });
  const e = await t.throwsAsync(dead.list('pods'), { instanceOf: ApiConnectionError });
  t.regex(e?.message ?? '', /connection refused/);
});

test('client watch reassembles lines split across chunks, including multi-byte characters', async (t) => {
  const ev1 = JSON.stringify({ type: 'ADDED', object: { kind: 'Pod', metadata: { name: 'a', annotations: { note: 'héllo ✓ 世界' } } } });
  const ev2 = JSON.stringify({ type: 'DELETED', object: { kind: 'Pod', metadata: { name: 'b' } } });
  const bytes = Buffer.from(`${ev1}\n${ev2}\n`, 'utf8');
  const pkiDir = mkdtempSync(join(tmpdir(), 'podlab-cp-pki-'));
  t.teardown(() => rmSync(pkiDir, { recursive: true, force: true }));
  const pki = ensurePki(pkiDir, ['127.0.0.1']);
  const srv = createServer({ cert: pki.cert, key: pki.key }, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    // Dribble 7 bytes at a time so lines and UTF-8 sequences straddle chunks.
    let off = 0;
    const tick = () => {
      if (off >= bytes.length) return res.end();
      res.write(bytes.subarray(off, off + 7));
      off += 7;
      setTimeout(tick, 1);
    };
    tick();
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => srv.close(() => r())));
  const client = new ApiClient(`https://127.0.0.1:${(srv.address() as AddressInfo).port}`, { credentials: { token: pki.adminToken, ca: pki.ca } });
  t.teardown(() => client.close());
  const got: WatchEvent<KubeObject>[] = [];
  for await (const ev of client.watch('pods', {})) got.push(ev);
  t.deepEqual(got.map(short), ['ADDED a', 'DELETED b']);
  t.is(got[0].object.metadata.annotations?.note, 'héllo ✓ 世界');
});

storeTest('informer: add/update/delete from a live watch; no event for unchanged objects', async (t) => {
  const { client } = await server(t);
  await client.create('pods', podBody('pre'));
  const inf = new Informer<Pod>(client, 'pods');
  const log: string[] = [];
  inf.on('add', (p) => log.push(`add ${p.metadata.name}`));
  inf.on('update', (o, n) => log.push(`update ${n.metadata.name} ${o.metadata.resourceVersion}->${n.metadata.resourceVersion}`));
  inf.on('delete', (p) => log.push(`delete ${p.metadata.name}`));
  t.teardown(() => inf.stop());
  await inf.start();
  t.true(inf.hasSynced);
  t.deepEqual(log, ['add pre']);
  const created = await client.create<Pod>('pods', podBody('x'));
  const patched = await client.patch<Pod>('pods', 'x', { metadata: { labels: { a: 'b' } } });
  await client.patch('pods', 'x', { metadata: { labels: { a: 'b' } } }); // no-op: no event
  await client.delete('pods', 'pre');
  await waitFor(() => log.length >= 4);
  await new Promise((r) => setTimeout(r, 100));
  t.deepEqual(log, ['add pre', 'add x', `update x ${created.metadata.resourceVersion}->${patched.metadata.resourceVersion}`, 'delete pre']);
  t.deepEqual(inf.keys(), ['default/x']);
  t.is(inf.get('default/x')?.metadata.labels?.a, 'b');
});

test('informer: after a 410 it relists and emits exactly the differences', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'podlab-cp-410-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const first = await startApiServer({ host: '127.0.0.1', port: 0, stateDir: dir, historyLimit: 3 });
  const port = first.port;
  const client = new ApiClient(first.url, { credentials: first.credentials });
  t.teardown(() => client.close());
  for (const n of ['keep', 'change', 'remove']) await client.create('pods', podBody(n));
  const inf = new Informer<Pod>(client, 'pods', { resyncBackoffMs: 20, maxBackoffMs: 100 });
  const log: string[] = [];
  const states: string[] = [];
  inf.on('add', (p) => log.push(`add ${p.metadata.name}`));
  inf.on('update', (_o, n) => log.push(`update ${n.metadata.name}`));
  inf.on('delete', (p) => log.push(`delete ${p.metadata.name}`));
  inf.on('status', (s) => states.push(s.state));
  t.teardown(() => inf.stop());
  await inf.start();
  log.length = 0;
  await first.close();
  await waitFor(() => states.includes('disconnected'));

  // While the server is down, change more than the history holds, directly in the persisted store.
  const offline = openStore({ stateDir: dir, historyLimit: 3 });
  offline.patch('pods', 'change', { metadata: { labels: { v: '2' } } }, { namespace: 'default' });
  offline.delete('pods', 'remove', { namespace: 'default' });
  for (const n of ['new1', 'new2', 'new3']) offline.create('pods', podBody(n));

  const second = await startApiServer({ host: '127.0.0.1', port, stateDir: dir, historyLimit: 3 });
  t.teardown(() => second.close());
  await waitFor(() => states.includes('relisted'));
  t.deepEqual([...log].sort(), ['add new1', 'add new2', 'add new3', 'delete remove', 'update change']);
  t.deepEqual(inf.keys(), ['default/change', 'default/keep', 'default/new1', 'default/new2', 'default/new3']);
  // The informer carries on watching after the relist.
  await client.delete('pods', 'keep');
  await waitFor(() => log.includes('delete keep'));
  t.pass();
});

async function waitFor(cond: () => boolean, timeoutMs = 8000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('informer: retries forever with capped exponential backoff on an injected clock, and syncs once the server answers', async (t) => {
  const { ManualClock, MANUAL_WALL_START_MS } = await import('../common/clock.ts');
  const clock = new ManualClock(MANUAL_WALL_START_MS);
  let up = false;
  const calls: number[] = [];
  class FlakyClient extends ApiClient {
    override list<T>(): Promise<import('../control-plane/types.ts').List<T>> {
      calls.push(clock.now());
      if (!up) return Promise.reject(new ApiConnectionError('GET /api/v1/pods', 'connection refused'));
      return Promise.resolve({ apiVersion: 'v1', kind: 'PodList', metadata: { resourceVersion: '7' }, items: [] });
    }
    override async *watch<T>(): AsyncGenerator<WatchEvent<T>, void, undefined> {
      yield await new Promise<WatchEvent<T>>(() => {}); // a watch that never delivers
    }
  }
  const inf = new Informer<Pod>(new FlakyClient('https://127.0.0.1:1', { credentials: { token: 'x', ca: '' } }), 'pods', { clock });
  const states: string[] = [];
  inf.on('status', (s) => states.push(s.state));
  const started = inf.start();
  const flush = async () => {
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  };
  await flush();
  const t0 = clock.now();
  const gaps = [100, 200, 400, 800, 1600, 2000, 2000];
  for (const gap of gaps) {
    const before = calls.length;
    clock.advance(gap - 1);
    await flush();
    t.is(calls.length, before, `no retry before ${gap} ms`);
    clock.advance(1);
    await flush();
    t.is(calls.length, before + 1, `retry after ${gap} ms`);
  }
  t.deepEqual(calls.map((c) => c - t0), [0, 100, 300, 700, 1500, 3100, 5100, 7100]);
  t.false(inf.hasSynced);
  up = true;
  clock.advance(2000);
  await started;
  t.true(inf.hasSynced);
  t.is(inf.resourceVersion, '7');
  t.deepEqual(states, ['disconnected', 'connected']);
  await Promise.race([inf.stop(), new Promise((r) => setTimeout(r, 1000))]);
});

storeTest('dryRun=All (kubectl diff, --dry-run=server) validates and answers but stores nothing', async (t) => {
  const { api, client } = await server(t);
  const u = api.url;
  const created = await client.create<Pod>('pods', podBody('web'));
  const rv = created.metadata.resourceVersion;
  const patched = await http(u, 'PATCH', '/api/v1/namespaces/default/pods/web?dryRun=All', { metadata: { labels: { dry: 'yes' } } }, { 'content-type': 'application/strategic-merge-patch+json' });
  t.is(patched.code, 200);
  t.is((patched.json as Pod).metadata.labels?.dry, 'yes');
  const now = (await client.get<Pod>('pods', 'web'))!;
  t.is(now.metadata.labels?.dry, undefined);
  t.is(now.metadata.resourceVersion, rv);
  const forbidden = await http(u, 'PATCH', '/api/v1/namespaces/default/pods/web?dryRun=All', { spec: { nodeName: 'elsewhere' } }, { 'content-type': 'application/merge-patch+json' });
  t.is(forbidden.code, 422, 'a dry run is validated like the real thing');
  t.is((await http(u, 'POST', '/api/v1/namespaces/default/pods?dryRun=All', podBody('ghost'))).code, 201);
  t.is(await client.get('pods', 'ghost'), null);
  t.is((await http(u, 'DELETE', '/api/v1/namespaces/default/pods/web?dryRun=All')).code, 200);
  t.truthy(await client.get('pods', 'web'));
  t.is((await http(u, 'DELETE', '/api/v1/namespaces/default/pods/web?dryRun=Some')).code, 400);
  // The store's resourceVersion moves with the controllers' Events; the pods themselves must not have changed.
  t.deepEqual((await client.list<Pod>('pods')).items.map((p) => `${p.metadata.name}@${p.metadata.resourceVersion}`), [`web@${rv}`], 'no dry run changed a pod');
});
