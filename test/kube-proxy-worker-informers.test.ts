/**
 * kube-proxy's engine worker as its own watcher, in real agent processes: once
 * the engine runs in the worker, the worker lists and watches Services and
 * EndpointSlices itself and the agent's thread (the data plane's) holds none
 * (its `stats` count them), yet Services created, changed and deleted through
 * the API are served, and the L2 speaker, fed the LoadBalancer Services'
 * summary from the worker, elects a node and fails over when it dies. With
 * 'auto' the thread's informers serve until the 100th Service, then stop,
 * and an agent restarted among 100 Services hands over at once.
 * Labs on 127.0.186.0/24 (worker forced on) and 127.0.109.0/24 ('auto').
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { labApi, killProcess, restartProcess } from '../lab/lab.ts';
import { callNode } from '../cli/commands.ts';
import type { Lease } from '../control-plane/core-resources.ts';
import type { Service } from '../control-plane/service-resources.ts';
import type { KubeObject, Pod } from '../control-plane/types.ts';
import { L2_FAILOVER_MS } from '../edge/l2-speaker.ts';
import { WORKER_AT_SERVICES } from '../node-agent/kube-proxy.ts';
import { httpPod, lbService, realGet } from './helpers/lb.ts';
import { eventually, startLab, type TestLab } from './helpers/lab.ts';

interface KpStats {
  engine: string;
  worker?: string;
  onThread: { services: number; endpointslices: number };
  loadBalancers: number;
  services?: number;
}

const kpStats = async (lab: TestLab, node: string) => (await callNode<{ kubeProxy: KpStats }>(lab.stateDir, node, 'stats', {})).kubeProxy;
const curl = async (lab: TestLab, url: string) => (await lab.exec('pod-1a', ['curl', '-s', '-S', '-m', '2', url])).out.trim();

test.serial('worker on: the worker watches the apiserver, the thread holds no Service; create, change, delete and L2 failover work', async (t) => {
  process.env.PODLAB_KUBE_PROXY_WORKER = 'on';
  t.teardown(() => delete process.env.PODLAB_KUBE_PROXY_WORKER);
  const lab = await startLab('127.0.186.0/24', { nodes: 2, podsPerNode: 1 });
  t.teardown(() => lab.close());
  const api = labApi(lab.rec);
  for (const p of [httpPod('web-1', 'node-1', 'web'), httpPod('web-2', 'node-2', 'web')]) await api.create('pods', p, 'default');
  await api.create('services', { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web' }, spec: { selector: { app: 'web' }, ports: [{ port: 80, targetPort: 'http' }] } }, 'default');
  await eventually(async () => (await api.list<Pod>('pods')).items.every((p) => p.status?.phase === 'Running'), 30_000);
  const vip = (await api.get<KubeObject<{ clusterIP: string }>>('services', 'web', 'default'))!.spec!.clusterIP;

  // Created: served, decided in the worker, which holds the objects; the thread none.
  t.regex(await eventually(async () => /^web-\d on node-\d$/.test(await curl(lab, `http://${vip}/`)) && curl(lab, `http://${vip}/`), 20_000, 200), /^web-\d on node-\d$/);
  for (const node of ['node-1', 'node-2']) {
    const s = await eventually(async () => {
      const k = await kpStats(lab, node);
      return k.worker === 'up' && k.services !== undefined && k;
    }, 15_000, 200);
    t.like(s, { engine: 'worker', onThread: { services: 0, endpointslices: 0 } }, node);
    t.true((s.services ?? 0) >= 2, `${node}: the worker holds the Services (web and kubernetes): ${JSON.stringify(s)}`);
  }

  // Changed: the port moves from 80 to 8080.
  const svc = (await api.get<KubeObject<{ ports: { port: number }[] }>>('services', 'web', 'default'))!;
  await api.update('services', { ...svc, spec: { ...svc.spec!, ports: [{ port: 8080, targetPort: 'http' }] } });
  await eventually(async () => /^web-\d on node-\d$/.test(await curl(lab, `http://${vip}:8080/`)), 15_000, 200);
  t.notRegex(await curl(lab, `http://${vip}/`), /^web-\d on node-\d$/, 'the old port is no longer served');

  // Deleted: no longer served, and gone from the worker.
  await api.delete('services', 'web', 'default');
  await eventually(async () => !/^web-\d on node-\d$/.test(await curl(lab, `http://${vip}:8080/`)), 15_000, 200);
  t.pass();

  // LoadBalancer: the speaker elects from the worker's summary; SIGKILL of the holder moves the address.
  await api.create('services', lbService('lbweb', 'web'), 'default');
  const ip = await eventually(async () => (await api.get<Service>('services', 'lbweb', 'default'))?.status?.loadBalancer?.ingress?.[0]?.ip, 10_000);
  t.is(ip, '127.0.186.200');
  t.regex(await eventually(() => realGet(`http://${ip}/`).catch(() => ''), 20_000, 200), /^web-\d on node-\d$/);
  const holder = async () => (await api.get<Lease>('leases', `l2-${ip.replaceAll('.', '-')}`, 'metallb-system'))?.spec?.holderIdentity;
  const leader = (await holder())!;
  t.regex(leader, /^node-[12]$/);
  const other = leader === 'node-1' ? 'node-2' : 'node-1';
  t.like(await kpStats(lab, other), { loadBalancers: 1, onThread: { services: 0, endpointslices: 0 } });
  await killProcess(lab.stateDir, leader, { kill: true });
  const killedAt = performance.now();
  let answered = '';
  while (!answered && performance.now() - killedAt < L2_FAILOVER_MS + 10_000) {
    answered = await realGet(`http://${ip}/`, undefined, 500).catch(() => '');
    if (!answered) await new Promise((r) => setTimeout(r, 100));
  }
  t.log(`LB IP answered again ${(performance.now() - killedAt).toFixed(0)} ms after SIGKILL of ${leader}, by ${answered}`);
  t.regex(answered, /^web-\d on node-\d$/);
  t.is(await holder(), other);
  // The survivor's thread still holds no Service, and its GC pauses are reported.
  t.like(await kpStats(lab, other), { onThread: { services: 0, endpointslices: 0 } });
  const mem = await callNode<{ rss: number; gcPauses?: { count: number; maxMs: number } }>(lab.stateDir, other, 'memory', { gcPauses: true });
  t.true(mem.rss > 0 && mem.gcPauses !== undefined && mem.gcPauses.count >= 0, JSON.stringify(mem));
});

test.serial("'auto': the thread's informers serve below 100 Services and stop at the move; Services after it are served", async (t) => {
  const lab = await startLab('127.0.109.0/24', { nodes: 2, podsPerNode: 1 });
  t.teardown(() => lab.close());
  const api = labApi(lab.rec);
  await api.create('pods', httpPod('web-1', 'node-2', 'web'), 'default');
  await eventually(async () => (await api.list<Pod>('pods')).items.every((p) => p.status?.phase === 'Running'), 30_000);
  const before = await eventually(async () => {
    const k = await kpStats(lab, 'node-1');
    return k.onThread.services >= 1 && k;
  }, 10_000, 100);
  t.like(before, { engine: 'thread' }, 'the kubernetes Service only: on the thread, its informers hold it');
  // No worker thread yet: the agent's one thread at nice 10 is V8's platform thread (common/thread-priority.ts).
  const agentPid = lab.rec.procs.find((p) => p.name === 'node-1')!.pid;
  const niceOf = (tid: string) => Number(fs.readFileSync(`/proc/${agentPid}/task/${tid}/stat`, 'utf8').split(') ')[1].split(' ')[16]);
  const atNice10 = fs.readdirSync(`/proc/${agentPid}/task`).filter((tid) => niceOf(tid) === 10);
  t.is(atNice10.length, 1, "V8's platform thread, lowered at the agent's start");
  t.not(atNice10[0], String(agentPid), "never the agent's own thread");
  // Selector-less Services up to the threshold (the kubernetes Service is one).
  for (let i = 0; i < WORKER_AT_SERVICES - 1; i++) {
    await api.create('services', { apiVersion: 'v1', kind: 'Service', metadata: { name: `filler-${i}` }, spec: { ports: [{ port: 80 }] } }, 'default');
  }
  const after = await eventually(async () => {
    const k = await kpStats(lab, 'node-1');
    return k.worker === 'up' && k.services !== undefined && k;
  }, 30_000, 200);
  t.like(after, { engine: 'worker', onThread: { services: 0, endpointslices: 0 } });
  t.true((after.services ?? 0) >= WORKER_AT_SERVICES, JSON.stringify(after));
  // A Service created after the move is served (node-1's client, node-2's backend).
  await api.create('services', { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web' }, spec: { selector: { app: 'web' }, ports: [{ port: 80, targetPort: 'http' }] } }, 'default');
  const vip = (await api.get<KubeObject<{ clusterIP: string }>>('services', 'web', 'default'))!.spec!.clusterIP;
  t.is(await eventually(async () => ((await curl(lab, `http://${vip}/`)) === 'web-1 on node-2' ? 'ok' : ''), 20_000, 200), 'ok');
  // node-1's agent restarts among 100 Services: it lists only the Services on its thread, hands over at once.
  await restartProcess(lab.stateDir, 'node-1');
  const restarted = await eventually(async () => {
    const k = await kpStats(lab, 'node-1').catch(() => undefined);
    return k?.worker === 'up' && k.services !== undefined && k;
  }, 30_000, 200);
  t.like(restarted, { engine: 'worker', onThread: { services: 0, endpointslices: 0 } });
  t.is(await eventually(async () => ((await curl(lab, `http://${vip}/`)) === 'web-1 on node-2' ? 'ok' : ''), 20_000, 200), 'ok');
  const moves = [...fs.readFileSync(path.join(lab.stateDir, 'logs', 'node-1.log'), 'utf8').matchAll(/kube-proxy engine moves to a worker thread .*"services":(\d+)/g)].map((m) => Number(m[1]));
  t.deepEqual(moves.length, 2, 'once at the 100th Service, once at the restart');
  t.true(moves[1] > WORKER_AT_SERVICES, String(moves));
});
