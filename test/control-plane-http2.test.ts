/**
 * The apiserver speaks HTTP/2 to a client that offers only h2 (ApiClient, so the node agents) and HTTP/1.1 to
 * every client that offers it (kubectl, curl, client libraries): an ApiClient's watches and requests then share
 * one connection, where over HTTP/1.1 each watch held one.
 */
import test, { type ExecutionContext } from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect as h2connect, createSecureServer } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { startApiServer, type ApiServer } from '../control-plane/apiserver.ts';
import { ApiClient, ApiConnectionError } from '../control-plane/client.ts';
import { Informer } from '../control-plane/informer.ts';
import { ensurePki } from '../control-plane/pki.ts';
import type { Namespace, Pod } from '../control-plane/types.ts';
import { connectionsTo, httpsCall } from './helpers/https.ts';

async function apiserver(t: ExecutionContext, port = 0, dir = mkdtempSync(join(tmpdir(), 'podlab-cp-h2-'))): Promise<{ api: ApiServer; dir: string }> {
  const api = await startApiServer({ host: '127.0.0.1', port, stateDir: dir });
  t.teardown(async () => {
    await api.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { api, dir };
}

function pod(name: string): object {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default' }, spec: { nodeName: 'node-1', containers: [{ name: 'c', image: 'podlab/pause' }] } };
}

test('an ApiClient runs its watches and requests over one HTTP/2 connection', async (t) => {
  const { api } = await apiserver(t);
  const client = new ApiClient(api.url, { credentials: api.credentials });
  t.teardown(() => client.close());
  const informers = ['pods', 'nodes', 'services', 'endpointslices', 'namespaces', 'networkpolicies'].map((r) => new Informer(client, r));
  t.teardown(() => Promise.all(informers.map((i) => i.stop())));
  await Promise.all(informers.map((i) => i.start()));
  const seen = new Promise<Pod>((resolve) => informers[0].on('add', (p) => resolve(p as Pod)));
  await client.create('pods', pod('over-h2'));
  t.is((await seen).metadata.name, 'over-h2');
  t.is((await client.get<Pod>('pods', 'over-h2'))?.metadata.name, 'over-h2');
  t.is((await client.list<Namespace>('namespaces')).items.some((n) => n.metadata.name === 'default'), true);
  t.is(connectionsTo(api.port), 1, 'six watches and their requests on one connection');
});

test('the apiserver answers h2 to an h2-only client and HTTP/1.1 to a client that offers both', async (t) => {
  const { api } = await apiserver(t);
  const { ca, token } = api.credentials;
  // As kubectl and curl offer: h2 first, then http/1.1. The server's order decides.
  const offered = await new Promise<string | false>((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port: api.port, ca, ALPNProtocols: ['h2', 'http/1.1'] }, () => {
      resolve(s.alpnProtocol ?? false);
      s.destroy();
    });
    s.on('error', reject);
  });
  t.is(offered, 'http/1.1');
  const h1 = await httpsCall(`${api.url}/api/v1/namespaces/default`, { ca, token });
  t.is(h1.code, 200);

  const session = h2connect(api.url, { ca });
  t.teardown(() => session.close());
  const { status, body, alpn } = await new Promise<{ status: number; body: string; alpn: string | undefined }>((resolve, reject) => {
    const req = session.request({ ':path': '/api/v1/namespaces/default', authorization: `Bearer ${token}` });
    let status = 0;
    let body = '';
    req.on('response', (h) => (status = Number(h[':status'])));
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => resolve({ status, body, alpn: session.alpnProtocol }));
    req.on('error', reject);
  });
  t.is(alpn, 'h2');
  t.is(status, 200);
  t.is((JSON.parse(body) as Namespace).metadata.name, 'default');
});

test('over HTTP/2 a watch ends with the apiserver, and the client connects again to the restarted one', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'podlab-cp-h2-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const first = await startApiServer({ host: '127.0.0.1', port: 0, stateDir: dir });
  const port = first.port;
  const client = new ApiClient(first.url, { credentials: first.credentials });
  t.teardown(() => client.close());
  await client.create('pods', pod('before'));
  const events: string[] = [];
  const watching = (async () => {
    try {
      for await (const ev of client.watch<Pod>('pods', { resourceVersion: '0' })) events.push(`${ev.type} ${ev.object.metadata.name}`);
      return 'ended';
    } catch (err) {
      return err instanceof ApiConnectionError ? 'broken' : `other: ${String(err)}`;
    }
  })();
  while (events.length === 0) await new Promise((r) => setTimeout(r, 10));
  await first.close();
  t.regex(await watching, /^(ended|broken)$/);
  t.deepEqual(events, ['ADDED before']);

  const second = await startApiServer({ host: '127.0.0.1', port, stateDir: dir });
  t.teardown(() => second.close());
  await client.create('pods', pod('after'));
  t.deepEqual((await client.list<Pod>('pods')).items.map((p) => p.metadata.name).sort(), ['after', 'before']);
});

test('an HTTP/2 request without a response in its timeout fails, and the client keeps serving', async (t) => {
  const pkiDir = mkdtempSync(join(tmpdir(), 'podlab-cp-h2-pki-'));
  t.teardown(() => rmSync(pkiDir, { recursive: true, force: true }));
  const pki = ensurePki(pkiDir, ['127.0.0.1']);
  let answer = false;
  const srv = createSecureServer({ cert: pki.cert, key: pki.key }, (req, res) => {
    if (!answer) return; // holds the request
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } }));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => srv.close(() => r())));
  const client = new ApiClient(`https://127.0.0.1:${(srv.address() as AddressInfo).port}`, { credentials: { token: pki.adminToken, ca: pki.ca }, timeoutMs: 300 });
  t.teardown(() => client.close());
  const e = await t.throwsAsync(client.get('namespaces', 'default'), { instanceOf: ApiConnectionError });
  t.regex(e?.message ?? '', /no response within 300 ms/);
  answer = true;
  t.is((await client.get<Namespace>('namespaces', 'default'))?.metadata.name, 'default');
});

test('malformed HTTP/2 gets a GOAWAY, and the apiserver keeps serving', async (t) => {
  const { api } = await apiserver(t);
  const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
  // Not a preface; a preface and then a HEADERS frame whose block HPACK cannot decode.
  for (const bytes of [Buffer.from('garbage garbage garbage\r\n\r\n'), Buffer.concat([preface, Buffer.from([0, 0, 5, 1, 4, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff])])]) {
    const answer = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      const s = tlsConnect({ host: '127.0.0.1', port: api.port, ca: api.credentials.ca, ALPNProtocols: ['h2'] }, () => s.write(bytes));
      s.on('data', (d: Buffer) => chunks.push(d));
      s.on('close', () => resolve(Buffer.concat(chunks)));
      s.on('error', reject);
      setTimeout(() => s.destroy(), 2000).unref();
    });
    // The last frame the server sent is a GOAWAY (type 7).
    const frames: number[] = [];
    for (let off = 0; off + 9 <= answer.length; off += 9 + answer.readUIntBE(off, 3)) frames.push(answer[off + 3]);
    t.is(frames.at(-1), 7, `frames ${frames.join(',')}`);
  }
  const client = new ApiClient(api.url, { credentials: api.credentials });
  t.teardown(() => client.close());
  t.true((await client.list<Namespace>('namespaces')).items.some((n) => n.metadata.name === 'default'));
});

test('a large list on its way does not refuse the same connection its next requests', async (t) => {
  const { api } = await apiserver(t);
  const client = new ApiClient(api.url, { credentials: api.credentials });
  t.teardown(() => client.close());
  // 24 ConfigMaps of ~700 KB: a 16 MB list, more than Node lets an HTTP/2 connection queue by default.
  const data = { blob: 'x'.repeat(700 * 1024) };
  for (let i = 0; i < 24; i++) await client.create('configmaps', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `big-${i}`, namespace: 'default' }, data });
  const [list, ...gets] = await Promise.all([client.list('configmaps', { namespace: 'default' }), ...Array.from({ length: 5 }, () => client.get<Namespace>('namespaces', 'default'))]);
  t.is(list.items.length, 24);
  t.deepEqual(gets.map((n) => n?.metadata.name), Array(5).fill('default'));
});

test('a watch the client stops over HTTP/2 ends on the apiserver too', async (t) => {
  const { api } = await apiserver(t);
  // The store's watchers: one per open watch request.
  const watching = (): number => (api.store as unknown as { watchers: Set<unknown> }).watchers.size;
  const client = new ApiClient(api.url, { credentials: api.credentials });
  t.teardown(() => client.close());
  const informers = ['pods', 'nodes', 'services'].map((r) => new Informer(client, r));
  t.teardown(() => Promise.all(informers.map((i) => i.stop())));
  await Promise.all(informers.map((i) => i.start()));
  const until = async (n: number): Promise<number> => {
    for (let i = 0; i < 200 && watching() !== n; i++) await new Promise((r) => setTimeout(r, 10));
    return watching();
  };
  // An informer's watch goes out after its list.
  t.is(await until(3), 3);
  await Promise.all(informers.map((i) => i.stop()));
  t.is(await until(0), 0);
});

test('a stopping apiserver sends its HTTP/2 clients a GOAWAY, and does not wait on their connections', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'podlab-cp-h2-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const api = await startApiServer({ host: '127.0.0.1', port: 0, stateDir: dir });
  const session = h2connect(api.url, { ca: api.credentials.ca });
  t.teardown(() => session.destroy());
  // One round trip, so the server has the connection (its TLS handshake ends after the client's).
  await new Promise<void>((resolve, reject) => session.request({ ':path': '/healthz' }).on('response', () => resolve()).on('error', reject).resume());
  const goaway = new Promise<number>((resolve) => session.once('goaway', (code: number) => resolve(code)));
  const closed = new Promise<void>((resolve) => session.once('close', () => resolve()));
  await api.close();
  t.is(await goaway, 0, 'NO_ERROR');
  await closed;
});
