/**
 * CoreDNS in its own worker thread against a real apiserver in this process
 * (its sqlite store in a temporary folder): the worker lists and watches
 * Services, EndpointSlices and Namespaces itself and answers from its index,
 * so a Service created or deleted through the API is answered over
 * the pod's UDP and TCP 53 without the app on the data plane's thread
 * holding any object; a worker that dies is restarted, queries meanwhile get
 * SERVFAIL from the thread; an agent's runs on its own thread until there are
 * 100 Services, then on the worker thread it shares with kube-proxy's engine.
 * One node data plane on 127.0.102.0/24, never
 * started (two pods on its cni0 need no underlay).
 */
import test, { type ExecutionContext } from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import v8 from 'node:v8';
import vm from 'node:vm';
import { join } from 'node:path';
import { monotonicClock } from '../common/clock.ts';
import { SeededRng } from '../common/rng.ts';
import { corednsApp } from '../apps/dns/coredns.ts';
import { DnsWorkerClient } from '../apps/dns/worker-client.ts';
import { SharedThread } from '../common/module-worker.ts';
import { EngineWorker } from '../service-proxy/engine-worker.ts';
import { startApiServer } from '../control-plane/apiserver.ts';
import { ApiClient } from '../control-plane/client.ts';
import type { Container } from '../control-plane/types.ts';
import { DnsRcode, DnsType, dnsFlags, parseDns, serializeDns, type DnsMessage } from '../packet/dns.ts';
import { isWireError } from '../packet/errors.ts';
import { queryDns } from '../pod-tools/resolver.ts';
import { addPod, makeNode } from './helpers/dataplane.ts';
import { connectionsTo } from './helpers/https.ts';
import { eventually } from './helpers/lab.ts';

const DNS: Container = { name: 'coredns', image: 'registry.k8s.io/coredns/coredns:v1.11.1', ports: [{ name: 'dns', containerPort: 53, protocol: 'UDP' }, { name: 'dns-tcp', containerPort: 53, protocol: 'TCP' }] };

async function apiserver(t: ExecutionContext) {
  const dir = mkdtempSync(join(tmpdir(), 'podlab-coredns-worker-'));
  const api = await startApiServer({ host: '127.0.0.1', port: 0, stateDir: dir });
  const client = new ApiClient(api.url, { credentials: api.credentials });
  t.teardown(async () => {
    client.close();
    await api.close();
    rmSync(dir, { recursive: true, force: true });
  });
  for (const name of ['default', 'shop']) await client.create('namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name } }).catch(() => undefined);
  return { api, client };
}

const svc = (name: string, ns = 'default') => ({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: ns }, spec: { ports: [{ name: 'http', port: 80 }] } });

test.serial('the app: Services created and deleted through the API are answered over UDP and TCP; the worker holds them', async (t) => {
  const { api, client } = await apiserver(t);
  const node = makeNode(1, { net: '127.0.102.0/24' });
  const server = addPod(node, 'coredns', '10.244.1.2');
  const pod = addPod(node, 'client', '10.244.1.3');
  const lines: string[] = [];
  const app = corednsApp.start(server, DNS, { podName: 'coredns', nodeName: 'node-1', api: { url: api.url, credentials: api.credentials }, stdout: (l) => lines.push(l) });
  t.teardown(async () => {
    app.stop();
    await node.close();
  });
  t.deepEqual(lines, ['.:53', 'CoreDNS-1.11.1', 'linux/amd64, go1.21.11 (podlab)']);
  const ctx = { pod, argv: [], stdout: () => {}, stderr: () => {}, signal: new AbortController().signal, clock: monotonicClock, rng: new SeededRng(5) };
  const ask = async (name: string, tcp = false) => {
    const r = await queryDns(ctx, name, DnsType.A, { server: '10.244.1.2', tcp, timeoutMs: 3000, attempts: 1 });
    if (!r.ok) throw new Error(JSON.stringify(r));
    return r.response;
  };
  const created = await client.create<{ spec: { clusterIP: string } }>('services', svc('web'), 'default');
  const vip = created.spec.clusterIP;
  const a = await eventually(async () => {
    const r = await ask('web.default.svc.cluster.local');
    return r.answers.length > 0 && r;
  }, 10_000, 100);
  t.like(a.answers[0], { type: DnsType.A, data: { address: vip } });
  t.like((await ask('web.default.svc.cluster.local', true)).answers[0], { data: { address: vip } });
  t.is((await ask('nope.default.svc.cluster.local')).flags.rcode, DnsRcode.NXDOMAIN);
  const st = app.status().counters;
  t.is(st.workerServices, 1, JSON.stringify(st));
  t.true(st.answered >= 2 && st.nxdomain >= 1 && st.tcpQueries === 1, JSON.stringify(st));
  await client.delete('services', 'web', 'default');
  await eventually(async () => (await ask('web.default.svc.cluster.local')).flags.rcode === DnsRcode.NXDOMAIN, 10_000, 100);
  t.pass();
});

const query = (id: number, name: string) => serializeDns({ id, flags: dnsFlags({ rd: true }), questions: [{ name, type: DnsType.A, class: 1 }], answers: [], authorities: [], additionals: [] } satisfies DnsMessage);

test.serial('a dead worker: new queries are refused to the caller (the thread answers SERVFAIL), and it is restarted with its lists', async (t) => {
  const { api, client } = await apiserver(t);
  await client.create('services', svc('db', 'shop'), 'shop');
  const w = new DnsWorkerClient({ api: { url: api.url, credentials: api.credentials } });
  t.teardown(() => w.close());
  const ask = (id: number) =>
    new Promise<{ outcome: string; msg?: DnsMessage }>((resolve, reject) => {
      const took = w.query(query(id, 'db.shop.svc.cluster.local'), 'udp', (a) => {
        const msg = a.out && parseDns(a.out);
        if (msg && isWireError(msg)) return reject(new Error(msg.message));
        resolve({ outcome: a.outcome, ...(msg ? { msg } : {}) });
      });
      if (!took) resolve({ outcome: 'refused' });
    });
  const first = await ask(1);
  t.is(first.outcome, 'answered');
  t.is(first.msg?.id, 1);
  t.is(first.msg?.answers.length, 1);
  await eventually(() => w.objects.synced && w.objects.services === 1, 5_000, 50);
  // This thread's client and the worker's, whose three informers share one HTTP/2 connection.
  t.is(connectionsTo(api.port), 2);
  const exited = new Promise((r) => w.thread.once('exit', r));
  await w.thread.terminate();
  await exited;
  t.is(w.state, 'down');
  t.is((await ask(2)).outcome, 'refused');
  await eventually(() => w.state === 'up', 5_000, 50);
  t.is(w.restarts, 1);
  const again = await ask(3);
  t.is(again.outcome, 'answered');
  t.is(again.msg?.answers.length, 1);
});

test.serial("the data plane's thread holds no Service for CoreDNS: its heap does not grow with 4,000 Services the worker holds", async (t) => {
  const { api, client } = await apiserver(t);
  const N = 4000;
  for (let i = 0; i < N; i += 50) {
    await Promise.all(Array.from({ length: 50 }, (_, j) => client.create('services', svc(`s-${i + j}`), 'default')));
  }
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const heap = () => (gc(), gc(), process.memoryUsage().heapUsed);
  const node = makeNode(1, { net: '127.0.104.0/24' });
  const server = addPod(node, 'coredns', '10.244.1.2');
  const pod = addPod(node, 'client', '10.244.1.3');
  const before = heap();
  const app = corednsApp.start(server, DNS, { podName: 'coredns', nodeName: 'node-1', api: { url: api.url, credentials: api.credentials } });
  t.teardown(async () => {
    app.stop();
    await node.close();
  });
  const ctx = { pod, argv: [], stdout: () => {}, stderr: () => {}, signal: new AbortController().signal, clock: monotonicClock, rng: new SeededRng(7) };
  await eventually(async () => {
    const r = await queryDns(ctx, `s-${N - 1}.default.svc.cluster.local`, DnsType.A, { server: '10.244.1.2', timeoutMs: 3000, attempts: 1 });
    return r.ok && r.response.answers.length === 1;
  }, 20_000, 100);
  await eventually(() => app.status().counters.workerServices === N, 5_000, 50);
  const grown = (heap() - before) / 1e6;
  t.log(`the thread's heap grew ${grown.toFixed(2)} MB with ${N} Services in CoreDNS's worker`);
  // On the thread the informers' cache of 4,000 Services took ~3.4 MB (bench/coredns.ts: 8.6 MB at 10,000).
  t.true(grown < 1.5, `${grown.toFixed(2)} MB`);
});

test.serial("an agent's CoreDNS: on the data plane's thread below 100 Services, then on the worker thread it shares with kube-proxy's engine; both restart with it", async (t) => {
  const { api, client } = await apiserver(t);
  await client.create('services', svc('db', 'shop'), 'shop');
  const shared = new SharedThread('node-agent/threads.ts', "the agent's worker thread");
  const credentials = { url: api.url, credentials: api.credentials };
  const engine = new EngineWorker({ mode: 'iptables', nodeName: 'node-1', nodeIP: '127.0.0.1', localAddresses: [], clusterCidr: '10.244.0.0/16', loopbackCidr: '127.0.0.0/8', seed: 1, api: credentials }, { summary: () => {}, down: () => {} }, shared);
  const w = new DnsWorkerClient({ api: credentials }, () => {}, shared);
  t.teardown(async () => {
    w.close();
    await engine.close();
  });
  const ask = (id: number, name: string) =>
    new Promise<{ outcome: string; answers: number }>((resolve, reject) => {
      const took = w.query(query(id, name), 'udp', (a) => {
        const msg = a.out && parseDns(a.out);
        if (msg && isWireError(msg)) return reject(new Error(msg.message));
        resolve({ outcome: a.outcome, answers: msg ? msg.answers.length : -1 });
      });
      if (!took) resolve({ outcome: 'refused', answers: -1 });
    });
  t.deepEqual(await ask(1, 'db.shop.svc.cluster.local'), { outcome: 'answered', answers: 1 });
  t.is(w.where, 'here');
  t.deepEqual(shared.entries, ['service-proxy/worker.ts']);
  for (let i = 0; i < 100; i += 25) await Promise.all(Array.from({ length: 25 }, (_, j) => client.create('services', svc(`s-${i + j}`), 'default')));
  await eventually(() => w.where === 'thread', 10_000, 50);
  // One thread runs both, and the code that ran here stopped.
  t.deepEqual(shared.entries.sort(), ['apps/dns/worker.ts', 'service-proxy/worker.ts']);
  t.is(w.thread, engine.thread);
  t.deepEqual(await ask(2, 's-99.default.svc.cluster.local'), { outcome: 'answered', answers: 1 });
  await eventually(() => engine.state === 'up', 10_000, 50);
  const exited = new Promise((r) => w.thread.once('exit', r));
  await w.thread.terminate();
  await exited;
  t.is(w.state, 'down');
  t.is(engine.state, 'down');
  await eventually(() => w.state === 'up' && engine.state === 'up', 10_000, 50);
  t.is(w.restarts, 1);
  t.deepEqual(await ask(3, 's-42.default.svc.cluster.local'), { outcome: 'answered', answers: 1 });
  // The last tenant gone, the thread ends.
  w.close();
  await engine.close();
  t.is(shared.thread, undefined);
});
