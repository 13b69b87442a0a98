/**
 * CoreDNS at 10,000 Services (`npx tsx --expose-gc bench/coredns.ts [N] [--slices]`): an
 * apiserver in this process, N selector-less Services created through it (with
 * `--slices`, an EndpointSlice of two ready endpoints each), then
 * one CoreDNS pod on a node data plane of this thread (127.0.103.0/24, never
 * started). Prints the data plane thread's heap (after a full GC) before the
 * app starts and once it answers, and the time of sequential A queries from a
 * client pod through the pod stacks (the first 50 are warm-up), and this
 * thread's CPU time over them (/proc, the main thread's task). Not part of
 * `npm run bench`: the figures are in bench/README.md, against the code that
 * ran the informers on this thread.
 */
import fs, { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monotonicClock } from '../common/clock.ts';
import { SeededRng } from '../common/rng.ts';
import { corednsApp } from '../apps/dns/coredns.ts';
import { startApiServer } from '../control-plane/apiserver.ts';
import { ApiClient } from '../control-plane/client.ts';
import { DnsType } from '../packet/dns.ts';
import { queryDns } from '../pod-tools/resolver.ts';
import { NodeDataPlane } from '../node-agent/dataplane.ts';

const N = Number(process.argv.find((a) => /^\d+$/.test(a)) ?? 10_000);
const SLICES = process.argv.includes('--slices');
const QUERIES = 2000;
/** This (the main) thread's CPU time in ms: its task's utime + stime, in clock ticks of 10 ms. */
const threadCpuMs = () => {
  const f = fs.readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
};
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc (npx tsx --expose-gc bench/coredns.ts)');
const heapMB = () => {
  gc();
  gc();
  return process.memoryUsage().heapUsed / 1e6;
};

const dir = mkdtempSync(join(tmpdir(), 'podlab-bench-coredns-'));
const api = await startApiServer({ host: '127.0.0.1', port: 0, stateDir: dir });
const client = new ApiClient(api.url, { credentials: api.credentials });
await client.create('namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } }).catch(() => undefined);
const t0 = performance.now();
for (let i = 0; i < N; i += 50) {
  await Promise.all(Array.from({ length: Math.min(50, N - i) }, (_, j) => client.create('services', { apiVersion: 'v1', kind: 'Service', metadata: { name: `s-${i + j}`, namespace: 'default' }, spec: { ports: [{ name: 'http', port: 80 }] } }, 'default')));
}
if (SLICES) {
  for (let i = 0; i < N; i += 50) {
    await Promise.all(
      Array.from({ length: Math.min(50, N - i) }, (_, j) => {
        const k = i + j;
        const ip = (n: number) => `10.${244 + (n >> 16)}.${(n >> 8) & 255}.${n & 255}`;
        return client.create('endpointslices', { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: `s-${k}-abcde`, namespace: 'default', labels: { 'kubernetes.io/service-name': `s-${k}` } }, addressType: 'IPv4', endpoints: [{ addresses: [ip(2 * k + 1)], conditions: { ready: true } }, { addresses: [ip(2 * k + 2)], conditions: { ready: true } }], ports: [{ name: 'http', port: 80, protocol: 'TCP' }] }, 'default');
      }),
    );
  }
}
process.stderr.write(`${N} Services${SLICES ? ' and EndpointSlices' : ''} created in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);

// One node, never started: the client and CoreDNS pods share its cni0, no underlay socket.
const node = new NodeDataPlane({ name: 'node-1', ip: '127.0.103.11', underlayCidr: '127.0.103.0/24', podCIDR: '10.244.1.0/24', vtepMac: '02:00:00:00:00:01', clusterCidr: '10.244.0.0/16', vxlanPort: 8472, vni: 1, seed: 42, mtu: 1500, clock: monotonicClock, rng: new SeededRng(1) });
const addPod = (name: string, ip: string) => node.addPod({ namespace: 'default', name, uid: `uid-${name}`, ip });
const server = addPod('coredns', '10.244.1.2');
const pod = addPod('client', '10.244.1.3');
const before = heapMB();
const app = corednsApp.start(server, { name: 'coredns', image: 'registry.k8s.io/coredns/coredns:v1.11.1', ports: [{ containerPort: 53, protocol: 'UDP' }] }, { podName: 'coredns', nodeName: 'node-1', api: { url: api.url, credentials: api.credentials } });
const ctx = { pod, argv: [], stdout: () => {}, stderr: () => {}, signal: new AbortController().signal, clock: monotonicClock, rng: new SeededRng(9) };
const ask = async (i: number) => {
  const r = await queryDns(ctx, `s-${i % N}.default.svc.cluster.local`, DnsType.A, { server: '10.244.1.2', timeoutMs: 5000, attempts: 1 });
  if (!r.ok || r.response.answers.length !== 1) throw new Error(`s-${i % N}: ${JSON.stringify(r)}`);
};
const ts = performance.now();
for (;;) {
  try {
    await ask(0);
    break;
  } catch {
    await new Promise((r) => setTimeout(r, 50));
  }
}
const syncMs = performance.now() - ts;
for (let i = 0; i < 50; i++) await ask(i * 7);
const times: number[] = [];
const cpu0 = threadCpuMs();
for (let i = 0; i < QUERIES; i++) {
  const s = performance.now();
  await ask(i * 13 + 1);
  times.push(performance.now() - s);
}
const cpuPerQueryMs = (threadCpuMs() - cpu0) / QUERIES;
times.sort((a, b) => a - b);
const after = heapMB();
const mean = times.reduce((a, b) => a + b, 0) / times.length;
console.log(JSON.stringify({ services: N, slices: SLICES ? N : 0, threadCpuPerQueryMs: +cpuPerQueryMs.toFixed(3), heapBeforeMB: +before.toFixed(1), heapAfterMB: +after.toFixed(1), heapGrowthMB: +(after - before).toFixed(1), firstAnswerMs: Math.round(syncMs), queryMeanMs: +mean.toFixed(3), queryP50Ms: +times[QUERIES >> 1].toFixed(3), queryP99Ms: +times[Math.floor(QUERIES * 0.99)].toFixed(3) }));
app.stop();
await node.close();
client.close();
await api.close();
rmSync(dir, { recursive: true, force: true });
