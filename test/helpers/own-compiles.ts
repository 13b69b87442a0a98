/**
 * Run as a process of its own with `--trace-opt` (test/module-worker-compiles.test.ts): kube-proxy's engine
 * worker syncs 2,000 Services and makes decisions while this thread runs a hot function of its own, so that both
 * isolates optimize code; V8's trace says for each compile whether it ran concurrently (on the platform thread)
 * or on the isolate's own thread. Then a plain worker started afterwards runs a hot function too.
 */
import { Worker } from 'node:worker_threads';
import type { KubeObject } from '../../control-plane/types.ts';
import { EngineWorker } from '../../service-proxy/engine-worker.ts';

const services: KubeObject[] = [];
const slices: KubeObject[] = [];
for (let i = 0; i < 2000; i++) {
  const meta = (name: string) => ({ name, namespace: 'default', uid: `u-${name}`, resourceVersion: '1', creationTimestamp: '' });
  services.push({ apiVersion: 'v1', kind: 'Service', metadata: meta(`svc-${i}`), spec: { type: 'ClusterIP', clusterIP: `10.96.${(i >> 8) + 1}.${i & 255}`, ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }] } });
  slices.push({
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { ...meta(`svc-${i}-x`), labels: { 'kubernetes.io/service-name': `svc-${i}` } },
    addressType: 'IPv4',
    endpoints: [{ addresses: [`10.244.${(i >> 8) + 1}.${i & 255}`], conditions: { ready: true } }],
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  } as unknown as KubeObject);
}
let synced!: () => void;
const summary = new Promise<void>((r) => (synced = r));
const w = new EngineWorker(
  { nodeName: 'node-1', nodeIP: '127.0.0.11', localAddresses: ['10.244.1.1'], clusterCidr: '10.244.0.0/16', loopbackCidr: '127.0.0.1/32', mode: 'iptables', seed: 1 },
  { summary: (s) => s.services === services.length && synced(), down: (r) => console.error(r) },
);
w.replace('services', services);
w.replace('endpointslices', slices);
// This thread's own hot function, optimized meanwhile.
let x = 0;
function hotOnMain(i: number): number {
  return (x = (x * 31 + i) | 0);
}
const until = performance.now() + 300;
while (performance.now() < until) for (let i = 0; i < 1e5; i++) hotOnMain(i);
await summary;
for (let i = 0; i < 3000; i++) await w.decide({ src: '10.244.9.9', dst: `10.96.${(i % 2000 >> 8) + 1}.${i % 2000 & 255}`, protocol: 'tcp', sport: 10000 + i, dport: 80, localDst: false, fromLocalPod: true, trace: false });
await w.close();
// A worker started afterwards (with no such option) has the process's concurrent compiles back.
const after = new Worker(
  `let y = 0; function hotInLaterWorker(i) { return (y = (y * 31 + i) | 0); }
   const until = performance.now() + 300; while (performance.now() < until) for (let i = 0; i < 1e5; i++) hotInLaterWorker(i);
   require('node:worker_threads').parentPort.postMessage(y);`,
  { eval: true },
);
await new Promise((r) => after.once('message', r));
await after.terminate();
process.stdout.write(`done ${x}\n`);
