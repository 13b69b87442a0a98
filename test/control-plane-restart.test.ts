import test, { type ExecutionContext } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { adminCredentials } from '../control-plane/credentials.ts';
import { ApiClient } from '../control-plane/client.ts';
import { Informer, objectKey } from '../control-plane/informer.ts';
import type { KubeObject, Node, Pod } from '../control-plane/types.ts';
import { startEtcd } from './helpers/etcd.ts';

/** The repository root (this file lives in test/), so the test also runs from a clone elsewhere. */
const CWD = fileURLToPath(new URL('..', import.meta.url));

interface Proc {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

type Ctx = { teardown: (fn: () => unknown) => void };

/** Starts control-plane/main.ts as a real child process; killed in teardown if still alive. */
function spawnApiserver(t: Ctx, args: string[]): Proc {
  const child = spawn(process.execPath, ['--import', 'tsx', 'control-plane/main.ts', ...args], { cwd: CWD, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout?.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr?.setEncoding('utf8').on('data', (c: string) => (err += c));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) child.kill('SIGKILL');
  });
  return { child, stdout: () => out, stderr: () => err, exited };
}

async function waitFor(cond: () => boolean, what: string, timeoutMs = 45_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function listening(p: Proc): Promise<{ event: string; url: string; pid: number }> {
  await waitFor(() => p.stdout().includes('\n') || p.child.exitCode !== null, 'the listening line');
  const lines = p.stdout().split('\n').filter(Boolean);
  if (lines.length !== 1) throw new Error(`expected one stdout line, got ${JSON.stringify(p.stdout())}; stderr: ${p.stderr()}`);
  return JSON.parse(lines[0]) as { event: string; url: string; pid: number };
}

function podBody(name: string): KubeObject {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name } as KubeObject['metadata'], spec: { containers: [{ name: 'c', image: 'busybox' }] } };
}

function nodeBody(name: string): KubeObject {
  return { apiVersion: 'v1', kind: 'Node', metadata: { name } as KubeObject['metadata'], status: { conditions: [{ type: 'Ready', status: 'True' }] } };
}

const fingerprint = (objs: KubeObject[]) =>
  Object.fromEntries(
    objs
      .map((o) => [objectKey(o), { uid: o.metadata.uid, rv: o.metadata.resourceVersion, node: (o as Pod).spec?.nodeName, podCIDR: (o as Node).spec?.podCIDR }] as const)
      .sort(([a], [b]) => (a < b ? -1 : 1)),
  );

for (const store of ['sqlite', 'etcd'] as const) {
  test(`kill -9 and restart on the same port (--store ${store}): state survives and an informer neither loses nor repeats events`, async (t) => {
    const etcd = store === 'etcd' ? await startEtcd(t, 23796) : undefined;
    if (store === 'etcd' && !etcd) return;
    await killAndRestart(t, etcd ? ['--store', etcd.store] : [], store === 'sqlite');
  });
}

/**
 * The kill -9 round trip. With SQLite the history window is on disk, so the
 * informer resumes without a relist; with etcd the window starts at the
 * restart, so it relists, and must still emit each change exactly once.
 */
async function killAndRestart(t: ExecutionContext, storeArgs: string[], resumes: boolean): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'podlab-cp-restart-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));

  const first = spawnApiserver(t, ['--host', '127.0.0.1', '--port', '0', '--state-dir', dir, ...storeArgs]);
  const hello = await listening(first);
  t.is(hello.event, 'listening');
  t.is(hello.pid, first.child.pid ?? -1);
  t.regex(hello.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  t.deepEqual(JSON.parse(readFileSync(join(dir, 'apiserver', 'endpoint.json'), 'utf8')), hello);
  const port = new URL(hello.url).port;

  const client = new ApiClient(hello.url, { credentials: adminCredentials(dir) });
  t.teardown(() => client.close());
  const n1 = await client.create<Node>('nodes', nodeBody('node-1'));
  const n2 = await client.create<Node>('nodes', nodeBody('node-2'));
  t.is(n1.spec?.podCIDR, '10.244.1.0/24');
  t.is(n2.spec?.podCIDR, '10.244.2.0/24');

  const inf = new Informer<Pod>(client, 'pods', { resyncBackoffMs: 25, maxBackoffMs: 200 });
  const events: { type: 'add' | 'update' | 'delete'; key: string; uid: string; rv: string }[] = [];
  const states: string[] = [];
  const record = (type: 'add' | 'update' | 'delete') => (p: Pod) => events.push({ type, key: objectKey(p), uid: p.metadata.uid, rv: p.metadata.resourceVersion });
  inf.on('add', record('add'));
  inf.on('update', (_old, p) => record('update')(p));
  inf.on('delete', record('delete'));
  inf.on('status', (s) => states.push(s.state));
  t.teardown(() => inf.stop());
  await inf.start();

  const createdUids = new Map<string, string>();
  const deletedUids = new Set<string>();
  for (let i = 0; i < 8; i++) {
    const p = await client.create<Pod>('pods', podBody(`p${i}`));
    createdUids.set(p.metadata.uid, p.metadata.name);
  }
  deletedUids.add((await client.delete<Pod>('pods', 'p0'))!.metadata.uid);
  await client.patchStatus('pods', 'p1', { status: { phase: 'Running', podIP: '10.244.1.2' } });
  // The last write before the crash: its 201 means it is on disk.
  const last = await client.create<Pod>('pods', podBody('last-before-crash'));
  createdUids.set(last.metadata.uid, last.metadata.name);
  const before = {
    pods: fingerprint((await client.list('pods')).items),
    nodes: fingerprint((await client.list('nodes')).items),
    ns: fingerprint((await client.list('namespaces')).items),
  };
  first.child.kill('SIGKILL');
  await first.exited;
  await waitFor(() => states.includes('disconnected'), 'the informer to notice the outage');

  const second = spawnApiserver(t, ['--host', '127.0.0.1', '--port', port, '--state-dir', dir, ...storeArgs]);
  const hello2 = await listening(second);
  t.is(hello2.url, hello.url, 'same address after restart');
  const after = {
    pods: fingerprint((await client.list('pods')).items),
    nodes: fingerprint((await client.list('nodes')).items),
    ns: fingerprint((await client.list('namespaces')).items),
  };
  t.deepEqual(after, before, 'objects, uids, resourceVersions and podCIDRs survive kill -9');
  const p1 = await client.get<Pod>('pods', 'p1');
  t.is(p1?.status?.podIP, '10.244.1.2');

  for (let i = 8; i < 12; i++) {
    const p = await client.create<Pod>('pods', podBody(`p${i}`));
    createdUids.set(p.metadata.uid, p.metadata.name);
  }
  deletedUids.add((await client.delete<Pod>('pods', 'p2'))!.metadata.uid);
  deletedUids.add((await client.delete<Pod>('pods', 'last-before-crash'))!.metadata.uid);
  const n3 = await client.create<Node>('nodes', nodeBody('node-3'));
  t.is(n3.spec?.podCIDR, '10.244.3.0/24', 'IPAM continues after restart without reusing a subnet');

  const server = await client.list<Pod>('pods');
  const serverPrint = fingerprint(server.items);
  await waitFor(() => JSON.stringify(fingerprint(inf.list())) === JSON.stringify(serverPrint), 'the informer to catch up');
  t.deepEqual(fingerprint(inf.list()), serverPrint, "informer cache equals the server's list exactly");

  // Replay the emitted events against a model: no duplicate add, no update/delete of an unknown object.
  const model = new Map<string, string>();
  for (const ev of events) {
    if (ev.type === 'add') {
      t.false(model.has(ev.key), `duplicate add for ${ev.key}`);
      model.set(ev.key, ev.uid);
    } else {
      t.is(model.get(ev.key), ev.uid, `${ev.type} for unknown ${ev.key}`);
      if (ev.type === 'delete') model.delete(ev.key);
    }
  }
  t.deepEqual([...model.keys()].sort(), Object.keys(serverPrint).sort());
  // Nothing lost: every created pod was added exactly once, every deleted pod deleted exactly once.
  for (const [uid, name] of createdUids) t.is(events.filter((e) => e.type === 'add' && e.uid === uid).length, 1, `add of ${name}`);
  for (const uid of deletedUids) t.is(events.filter((e) => e.type === 'delete' && e.uid === uid).length, 1, `delete of ${uid}`);
  if (resumes) t.false(states.includes('relisted'), 'the persisted history let the informer resume without relisting');
  t.deepEqual(states.filter((s) => s === 'connected' || s === 'disconnected').slice(0, 3), ['connected', 'disconnected', 'connected']);

  // SIGTERM is a clean shutdown.
  await inf.stop();
  second.child.kill('SIGTERM');
  t.is(await second.exited, 0);
}

test('main.ts: bad flags exit 2 naming the flag; a taken port exits 1 with a clear message', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'podlab-cp-flags-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const cases: [string[], RegExp][] = [
    [['--state-dir', dir, '--prot', '1'], /--prot/],
    [['--state-dir', dir, '--port', 'http'], /--port/],
    [['--port', '0'], /--state-dir/],
    [['--state-dir', dir, '--port', '0', '--cluster-cidr', '10.0.0.0/33'], /--cluster-cidr/],
    [['--state-dir', dir, '--port', '0', '--node-cidr-mask-size', '8'], /--node-cidr-mask-size/],
    [['--state-dir', dir, '--port', '0', '--store', 'http://127.0.0.1:2379'], /--store/],
  ];
  const runs = cases.map(([args]) => spawnApiserver(t, args));
  for (const [i, p] of runs.entries()) {
    t.is(await p.exited, 2, `exit code for ${cases[i][0].join(' ')}`);
    t.regex(p.stderr(), cases[i][1]);
    t.is(p.stdout(), '');
  }

  const first = spawnApiserver(t, ['--host', '127.0.0.1', '--port', '0', '--state-dir', dir]);
  const hello = await listening(first);
  const clash = spawnApiserver(t, ['--host', '127.0.0.1', '--port', new URL(hello.url).port, '--state-dir', join(dir, 'other')]);
  t.is(await clash.exited, 1);
  t.regex(clash.stderr(), /already in use/);
  first.child.kill('SIGINT');
  t.is(await first.exited, 0);
});
