/**
 * kube-proxy's engine in a worker thread, as node agents run it, in process:
 * one node's data plane (never started: no sockets) with a client pod and a
 * backend pod, a ClusterIP Service, and KubeProxy with `worker: true`.
 * - a TCP connection to the ClusterIP is decided in the worker and still
 *   traced through kube-proxy's rule walk;
 * - UDP datagrams of one flow sent while its decision is pending are queued,
 *   then all delivered, in order;
 * - a worker that dies is reported, connections meanwhile are dropped and
 *   counted (not a silent blackhole), and the restarted worker decides again;
 * - given a real apiserver (127.0.107.0/24 for the node), the worker lists and
 *   watches for itself, the thread's informers stop at once, and a worker
 *   restarted after a Service was created while it was down lists it.
 * - the worker's thread runs at nice 10 (as /proc shows it), the agent's at 0;
 *   a thread can also move itself to SCHED_IDLE.
 */
import { Worker } from 'node:worker_threads';
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startApiServer } from '../control-plane/apiserver.ts';
import { ApiClient } from '../control-plane/client.ts';
import { Informer } from '../control-plane/informer.ts';
import { monotonicClock } from '../common/clock.ts';
import { SeededRng } from '../common/rng.ts';
import type { KubeObject } from '../control-plane/types.ts';
import { NodeDataPlane } from '../node-agent/dataplane.ts';
import { KubeProxy, WORKER_AT_SERVICES } from '../node-agent/kube-proxy.ts';
import { sendProbe } from '../netstack/trace-probe.ts';
import { systemTool } from '../common/system-tool.ts';
import { threadId, threadSched } from '../common/thread-priority.ts';
import { eventually } from './helpers/lab.ts';
import { loadEngineFactory } from '../service-proxy/load-engine.ts';

const iptablesEngine = await loadEngineFactory('iptables');

const VIP = '10.96.100.10';

const service: KubeObject = {
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name: 'web', namespace: 'default', uid: 'web', resourceVersion: '1', creationTimestamp: '' },
  spec: {
    type: 'ClusterIP',
    clusterIP: VIP,
    clusterIPs: [VIP],
    selector: { app: 'web' },
    ports: [
      { name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' },
      { name: 'dgram', port: 53, targetPort: 5353, protocol: 'UDP' },
    ],
  },
};
const slice = {
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: { name: 'web-a', namespace: 'default', uid: 'web-a', resourceVersion: '1', creationTimestamp: '', labels: { 'kubernetes.io/service-name': 'web' } },
  addressType: 'IPv4',
  endpoints: [{ addresses: ['10.244.1.5'], nodeName: 'node-1', conditions: { ready: true } }],
  ports: [
    { name: 'http', port: 8080, protocol: 'TCP' },
    { name: 'dgram', port: 5353, protocol: 'UDP' },
  ],
} as unknown as KubeObject;

function node(onDown?: (reason: string) => void) {
  const dp = new NodeDataPlane({ name: 'node-1', ip: '127.0.100.11', underlayCidr: '127.0.100.0/24', podCIDR: '10.244.1.0/24', vtepMac: '02:00:00:00:64:01', clusterCidr: '10.244.0.0/16', vxlanPort: 8472, vni: 1, seed: 5, mtu: 1500, clock: monotonicClock, rng: new SeededRng(5) });
  const client = dp.addPod({ namespace: 'default', name: 'client', uid: 'uid-client', ip: '10.244.1.4' });
  const web = dp.addPod({ namespace: 'default', name: 'web', uid: 'uid-web', ip: '10.244.1.5' });
  const kp = new KubeProxy(dp, { engine: iptablesEngine, node: 'node-1', nodeIp: '127.0.100.11', clusterCidr: '10.244.0.0/16', clock: monotonicClock, rng: new SeededRng(3), allowRealBind: () => false, worker: true, onEngineDown: onDown });
  kp.update([service], [slice]);
  return { dp, client, web, kp };
}

/** Until the worker's first sync reached this side (the ClusterIP is a service address). */
async function synced(kp: KubeProxy): Promise<void> {
  await eventually(() => kp.wants(0x0a60640a, 80, () => false), 10_000, 10);
}

test.serial('a connection to a ClusterIP decided in the worker, traced through the rule walk', async (t) => {
  const { dp, client, web, kp } = node();
  t.teardown(() => kp.close());
  t.is(kp.engineHost, 'worker');
  web.tcp.listen(8080, {}, (s) => s.end());
  await synced(kp);
  const f = { id: 'tr1', a: client.ip, b: VIP, protocol: 6, key: 40001, port: 80 };
  dp.tracer.start(f);
  const r = await sendProbe(client, f, monotonicClock, { timeoutMs: 5000 });
  const hops = dp.tracer.collect('tr1').map((h) => `${h.point}: ${h.summary}`);
  dp.tracer.stop('tr1');
  t.is(r.kind, 'reply', JSON.stringify(r));
  const text = hops.join('\n');
  t.regex(text, /kube-proxy\(iptables\): 10\.244\.1\.4:40001 > 10\.96\.100\.10:80: queued until kube-proxy's engine decides/);
  t.regex(text, /kube-proxy\(iptables\): .*KUBE-SERVICES.*default\/web:http cluster IP/);
  t.regex(text, /kube-proxy\(iptables\): .*KUBE-SEP-/);
  t.regex(text, /conntrack: new tcp connection 10\.244\.1\.4:40001 > 10\.96\.100\.10:80: DNAT to 10\.244\.1\.5:8080/);
  // The rule walk comes after the queueing and before the DNAT, in that order.
  const order = ['queued until', 'KUBE-SERVICES', 'DNAT to'].map((s) => hops.findIndex((h) => h.includes(s)));
  t.deepEqual([...order].sort((a, b) => a - b), order, text);
  t.regex(await kp.command(['iptables-save', '-t', 'nat']) ?? '', /-A KUBE-SERVICES -d 10\.96\.100\.10\/32 -p tcp -m comment --comment "default\/web:http cluster IP"/);
  t.regex(dp.netfilter.conntrack.format(), /src=10\.244\.1\.4 dst=10\.96\.100\.10 sport=40001 dport=80 src=10\.244\.1\.5 dst=10\.244\.1\.4 sport=8080/);
});

test.serial('packets of a flow that arrive while its decision is pending are neither dropped nor reordered', async (t) => {
  const { client, web, kp } = node();
  t.teardown(() => kp.close());
  await synced(kp);
  const got: number[] = [];
  web.stack.bindUdp(5353, { message: (m) => got.push(m.data.readUInt32BE(0)) });
  const from = client.stack.bindUdp(0, { message: () => {} });
  // All in one turn of the event loop: the worker's answer cannot come before the last is sent.
  for (let i = 0; i < 40; i++) t.true(client.stack.sendUdp(from.port, VIP, 53, Buffer.from([0, 0, 0, i])).ok);
  t.is((kp.stats().queue as { waiting: number }).waiting, 40, 'all 40 wait for the decision');
  await eventually(() => got.length === 40, 5000, 5);
  t.deepEqual(got, Array.from({ length: 40 }, (_, i) => i));
  t.is((kp.stats().queue as { waiting: number }).waiting, 0);
  // The flow is established now: later packets do not ask.
  const decisions = kp.stats().decisions;
  client.stack.sendUdp(from.port, VIP, 53, Buffer.from([0, 0, 0, 40]));
  await eventually(() => got.length === 41, 2000, 5);
  t.is(kp.stats().decisions, decisions);
});

test.serial('a worker that dies is reported and restarted; meanwhile new connections are dropped and counted', async (t) => {
  const downs: string[] = [];
  const { dp, client, web, kp } = node((reason) => downs.push(reason));
  t.teardown(() => kp.close());
  // The data plane's timers and the restart's are unref'd (an agent has its sockets): this test keeps the loop alive.
  const alive = setInterval(() => {}, 1000);
  t.teardown(() => clearInterval(alive));
  web.tcp.listen(8080, {}, (s) => s.end());
  await synced(kp);
  await kp.engineWorker!.thread.terminate();
  await eventually(() => downs.length === 1, 2000, 5);
  t.regex(downs[0], /kube-proxy's engine worker exited \(code 1\)/);
  t.like(kp.stats(), { engine: 'worker', worker: 'down' });
  const f = { id: 'tr2', a: client.ip, b: VIP, protocol: 6, key: 40002, port: 80 };
  dp.tracer.start(f);
  const r = await sendProbe(client, f, monotonicClock, { timeoutMs: 300 });
  const hops = dp.tracer.collect('tr2').map((h) => `${h.point}: ${h.summary}`).join('\n');
  dp.tracer.stop('tr2');
  t.is(r.kind, 'no-reply');
  t.regex(hops, /netfilter: DROP: kube-proxy-unavailable/);
  const cni0 = dp.devices().find((d) => d.name === 'cni0')!;
  t.true((cni0.counters.drops.get('service-kube-proxy-unavailable') ?? 0) >= 1, JSON.stringify(cni0.counters.toJSON()));
  await t.throwsAsync(kp.command(['iptables-save']), { message: /engine worker is down/ });
  // Restarted after its backoff with the whole state: connections work again.
  await eventually(() => kp.stats().worker === 'up', 5000, 20);
  t.like(kp.stats(), { restarts: 1 });
  await synced(kp);
  const again = await sendProbe(client, { id: 'tr3', a: client.ip, b: VIP, protocol: 6, key: 40003, port: 80 }, monotonicClock, { timeoutMs: 5000 });
  t.is(again.kind, 'reply');
});

test.serial("'auto' keeps the engine on the thread for a few Services and moves it to the worker at 100", async (t) => {
  const dp = new NodeDataPlane({ name: 'node-1', ip: '127.0.101.11', underlayCidr: '127.0.101.0/24', podCIDR: '10.244.1.0/24', vtepMac: '02:00:00:00:65:01', clusterCidr: '10.244.0.0/16', vxlanPort: 8472, vni: 1, seed: 6, mtu: 1500, clock: monotonicClock, rng: new SeededRng(6) });
  const client = dp.addPod({ namespace: 'default', name: 'client', uid: 'uid-client', ip: '10.244.1.4' });
  const web = dp.addPod({ namespace: 'default', name: 'web', uid: 'uid-web', ip: '10.244.1.5' });
  web.tcp.listen(8080, {}, (s) => s.end());
  const kp = new KubeProxy(dp, { engine: iptablesEngine, node: 'node-1', nodeIp: '127.0.101.11', clusterCidr: '10.244.0.0/16', clock: monotonicClock, rng: new SeededRng(3), allowRealBind: () => false, worker: 'auto' });
  t.teardown(() => kp.close());
  const others = Array.from({ length: WORKER_AT_SERVICES }, (_, i) => ({ ...service, metadata: { ...service.metadata, name: `other-${i}`, uid: `other-${i}` }, spec: { ...service.spec!, clusterIP: `10.96.102.${i + 1}`, clusterIPs: [`10.96.102.${i + 1}`] } }));
  kp.update([service, ...others.slice(0, WORKER_AT_SERVICES - 2)], [slice]);
  kp.sync();
  t.is(kp.engineHost, 'thread');
  t.is((await sendProbe(client, { id: 'a1', a: client.ip, b: VIP, protocol: 6, key: 40011, port: 80 }, monotonicClock, { timeoutMs: 3000 })).kind, 'reply');
  kp.update([service, ...others.slice(0, WORKER_AT_SERVICES - 1)], [slice]);
  kp.sync();
  t.is(kp.engineHost, 'worker');
  await eventually(() => kp.engineWorker?.state === 'up', 10_000, 10);
  t.is((await sendProbe(client, { id: 'a2', a: client.ip, b: VIP, protocol: 6, key: 40012, port: 80 }, monotonicClock, { timeoutMs: 5000 })).kind, 'reply');
  t.true(kp.engineWorker!.decisions >= 1);
});

test.serial('given the apiserver, the worker lists and watches for itself: the thread drops its informers, and a restarted worker lists again', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'podlab-kp-worker-api-'));
  const server = await startApiServer({ host: '127.0.0.1', port: 0, stateDir: dir });
  const api = new ApiClient(server.url, { credentials: server.credentials });
  t.teardown(async () => {
    api.close();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const alive = setInterval(() => {}, 1000);
  t.teardown(() => clearInterval(alive));
  const strip = (o: KubeObject) => ({ ...o, metadata: { name: o.metadata.name, namespace: o.metadata.namespace, ...(o.metadata.labels ? { labels: o.metadata.labels } : {}) } });
  await api.create('services', strip(service), 'default');
  await api.create('endpointslices', strip(slice), 'default');
  const dp = new NodeDataPlane({ name: 'node-1', ip: '127.0.107.11', underlayCidr: '127.0.107.0/24', podCIDR: '10.244.1.0/24', vtepMac: '02:00:00:00:6b:01', clusterCidr: '10.244.0.0/16', vxlanPort: 8472, vni: 1, seed: 7, mtu: 1500, clock: monotonicClock, rng: new SeededRng(7) });
  const client = dp.addPod({ namespace: 'default', name: 'client', uid: 'uid-client', ip: '10.244.1.4' });
  const web = dp.addPod({ namespace: 'default', name: 'web', uid: 'uid-web', ip: '10.244.1.5' });
  web.tcp.listen(8080, {}, (s) => s.end());
  const kp = new KubeProxy(dp, { engine: iptablesEngine, node: 'node-1', nodeIp: '127.0.107.11', clusterCidr: '10.244.0.0/16', clock: monotonicClock, rng: new SeededRng(3), allowRealBind: () => false, worker: true, api: { url: server.url, credentials: server.credentials } });
  t.teardown(() => kp.close());
  const services = new Informer(api, 'services');
  const slices = new Informer(api, 'endpointslices');
  await Promise.all([services.start(), slices.start()]);
  kp.watch(services, slices);
  // The Service is there: the worker starts, and this side's informers are stopped and let go.
  t.like(kp.stats(), { engine: 'worker', onThread: { services: 0, endpointslices: 0 } });
  await synced(kp);
  const held = services.list().length;
  await api.create('services', { apiVersion: 'v1', kind: 'Service', metadata: { name: 'after', namespace: 'default' }, spec: { clusterIP: '10.96.100.11', ports: [{ port: 81, targetPort: 8080, protocol: 'TCP' }] } }, 'default');
  await new Promise((r) => setTimeout(r, 300));
  t.is(services.list().length, held, 'a stopped informer takes no new Service');
  const probe = (b: string, port: number, key: number) => sendProbe(client, { id: `p${key}`, a: client.ip, b, protocol: 6, key, port }, monotonicClock, { timeoutMs: 5000 });
  t.is((await probe(VIP, 80, 40021)).kind, 'reply');
  // The worker dies; while it is down a Service and its slice are created: the restarted worker's own list has them.
  await kp.engineWorker!.thread.terminate();
  await eventually(() => kp.stats().worker === 'down', 2000, 5);
  await api.create('services', { apiVersion: 'v1', kind: 'Service', metadata: { name: 'late', namespace: 'default' }, spec: { clusterIP: '10.96.100.12', ports: [{ port: 82, targetPort: 8080, protocol: 'TCP' }] } }, 'default');
  await api.create('endpointslices', { ...strip(slice), metadata: { name: 'late-a', namespace: 'default', labels: { 'kubernetes.io/service-name': 'late' } } }, 'default');
  await eventually(() => kp.stats().worker === 'up', 5000, 20);
  await eventually(() => kp.wants(0x0a60640c, 82, () => false), 10_000, 10);
  t.is((await probe('10.96.100.12', 82, 40022)).kind, 'reply');
  t.is((await probe(VIP, 80, 40023)).kind, 'reply');
  t.like(kp.stats(), { restarts: 1, onThread: { services: 0, endpointslices: 0 } });
  t.like(kp.stats(), { services: 3 }, 'the restarted worker holds web, after and late');
  // web-a and late-a (and whatever slice the apiserver's controller made for web's selector).
  t.true((kp.stats().endpointslices as number) >= 2, JSON.stringify(kp.stats()));
});

test.serial('the worker thread runs at nice 10, below the data plane (as /proc shows it), and still decides', async (t) => {
  const { kp } = node();
  t.teardown(() => kp.close());
  await synced(kp);
  const w = kp.engineWorker!;
  t.is(w.priority, 'nice 10');
  // /proc's word for the thread, not the worker's own report; the agent's thread keeps nice 0.
  t.deepEqual(threadSched(w.tid!), { policy: 0, nice: 10 });
  t.deepEqual(threadSched(threadId()!), { policy: 0, nice: 0 });
  const d = await w.decide({ src: '10.244.1.4', dst: VIP, protocol: 'tcp', sport: 40999, dport: 80, localDst: false, fromLocalPod: true, trace: false });
  t.is(d?.kind === 'dnat' ? `${d.to.ip}:${d.to.port}` : String(d?.kind), '10.244.1.5:8080');
});

test.serial('a thread can put itself in SCHED_IDLE (the PODLAB_ENGINE_SCHED=idle switch), alone', async (t) => {
  if (!systemTool('chrt') || process.platform !== 'linux') {
    if (process.env.CI === 'true') return t.fail('chrt (util-linux) is needed');
    t.log('skipped: no chrt here');
    return t.pass();
  }
  // From the sources, as common/module-worker.ts starts one (the helper is no bundled entry).
  const bootstrap = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((m) => { m.register(); return import(${JSON.stringify(new URL('./helpers/idle-thread.ts', import.meta.url).href)}); });`;
  const w = new Worker(bootstrap, { eval: true, execArgv: [] });
  t.teardown(() => void w.terminate());
  const [got, tid] = await new Promise<[string, number]>((r) => w.once('message', r));
  t.is(got, 'SCHED_IDLE');
  t.is(threadSched(tid)?.policy, 5);
  t.is(threadSched(threadId()!)?.policy, 0);
});
