/**
 * What Services coming through the API cost a real agent's data plane: a
 * 2-node local lab (real apiserver, agent processes, VXLAN on loopback);
 * while 10,000 Services and their EndpointSlices (10 endpoints each; 5 of the
 * Services LoadBalancers) are created through the API, and then one slice is
 * changed, two probes run across the nodes:
 * - pod-1a pings pod-2a every 2 ms (podlab's ping in node-1's agent): the
 *   longest and p99 wait between consecutive replies, as the bench receives
 *   them (a stall of either agent's thread shows whether or not a ping was in
 *   flight);
 * - the bench sends a UDP datagram every 2 ms on a fixed schedule (catching
 *   up after its own delays, never skipping) to node-1's real NodePort of a
 *   UDP echo pod on node-2: each reply's time minus its scheduled send time,
 *   so that a stall counts for every datagram it held, not once (coordinated
 *   omission). The pod ping cannot do that: it sends each echo an interval
 *   after the last.
 * CoreDNS is scaled to no replicas first: its pods are apps on the agents'
 * threads with their own informers over all Services and EndpointSlices.
 * Also node-1's agent: its RSS (sampled every second, and after a full GC at
 * the end), its CPU time, and, where the agent reports them (`memory` with
 * gcPauses), the GC pauses of its data-plane thread. The baseline of each
 * row is the same probe in the 5 s before the first create.
 *
 * Before/after comparisons run this file in two checkouts, interleaved.
 */
import dgram from 'node:dgram';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { callNode, execInPod } from '../cli/commands.ts';
import { down, labApi, up } from '../lab/lab.ts';
import type { ApiClient } from '../control-plane/client.ts';
import type { KubeObject } from '../control-plane/types.ts';
import { adminCredentials } from '../control-plane/credentials.ts';
import { Worker } from 'node:worker_threads';
import { sliceObject } from './agent-services-objects.ts';
import { measure, type Measure } from './results.ts';

const INTERVAL_MS = 2;
const ECHO_NODEPORT = 32000;
const MARKER_NODEPORT = 32001;

/** Sorted copy; the value at quantile q. */
function quantile(xs: number[], q: number): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * q))];
}

/** Wall-clock windows of the run; each probe's samples are cut by them. */
interface Window {
  from: number;
  to: number;
}

/** The pod ping: arrival times of replies at the bench. */
function podPing(stateDir: string): { replies: number[]; stop(): Promise<void> } {
  const replies: number[] = [];
  const ac = new AbortController();
  let buf = '';
  const run = execInPod(stateDir, 'pod-1a', ['ping', '-c', '1000000', '-i', String(INTERVAL_MS / 1000), '10.244.2.2'], {
    stdout: (s) => {
      const now = performance.now();
      buf += s;
      const lines = buf.split('\n');
      buf = lines.pop()!;
      for (const l of lines) if (l.includes('bytes from')) replies.push(now);
    },
    stderr: () => {},
    signal: ac.signal,
  }).catch(() => 1);
  return {
    replies,
    stop: async () => {
      ac.abort();
      await run;
    },
  };
}

/** The fixed-schedule UDP probe: per datagram, its scheduled send time and its reply's time. */
async function udpProbe(ip: string, port: number): Promise<{ sched: number[]; got: number[]; stop(): void }> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  const sched: number[] = [];
  const got: number[] = [];
  sock.on('message', (m) => {
    if (m.length < 4) return;
    const seq = m.readUInt32BE(0);
    if (seq < sched.length && got[seq] === undefined) got[seq] = performance.now();
  });
  const t0 = performance.now();
  let seq = 0;
  const tick = () => {
    const now = performance.now();
    // Every datagram due by now, each stamped with the time it was due.
    while (t0 + seq * INTERVAL_MS <= now) {
      const b = Buffer.alloc(32);
      b.writeUInt32BE(seq, 0);
      sched[seq] = t0 + seq * INTERVAL_MS;
      seq++;
      sock.send(b, port, ip);
    }
  };
  const timer = setInterval(tick, 1);
  return {
    sched,
    got,
    stop: () => {
      clearInterval(timer);
      sock.removeAllListeners('message');
      try {
        sock.close();
      } catch {
        /* closed already */
      }
    },
  };
}

interface PhaseFigures {
  worstGap: number;
  p99Gap: number;
  /** Reply time minus scheduled send time, p99 and max (ms), of the datagrams answered. */
  p99Late: number;
  maxLate: number;
  lost: number;
}

function figures(ping: number[], udp: { sched: number[]; got: number[] }, w: Window): PhaseFigures {
  const inW = ping.filter((t) => t >= w.from && t <= w.to);
  const gaps: number[] = [];
  for (let i = 1; i < inW.length; i++) gaps.push(inW[i] - inW[i - 1]);
  const late: number[] = [];
  let lost = 0;
  for (let i = 0; i < udp.sched.length; i++) {
    const s = udp.sched[i];
    if (s < w.from || s > w.to) continue;
    const g = udp.got[i];
    // A lost datagram has no reply time: counted apart (a UDP socket's buffer overflowed during a stall).
    if (g === undefined) lost++;
    else late.push(g - s);
  }
  return { worstGap: Math.max(0, ...gaps), p99Gap: quantile(gaps, 0.99), p99Late: quantile(late, 0.99), maxLate: Math.max(0, ...late), lost };
}

/** The agent's CPU time (user + system, ms) from /proc. */
function cpuMs(pid: number): number {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return ((Number(rest[11]) + Number(rest[12])) * 1000) / 100;
}

/** The creator (./agent-services-creator.ts) in a worker thread; the bench runs from the sources, so through tsx. */
function startCreator(workerData: unknown): Worker {
  const url = new URL('./agent-services-creator.ts', import.meta.url);
  const tsx = import.meta.resolve('tsx/esm/api');
  const bootstrap = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(url.href)}); });`;
  return new Worker(bootstrap, { eval: true, execArgv: [], workerData });
}

/** A real UDP echo through `port` on `ip` answers. */
async function answers(ip: string, port: number, timeoutMs: number): Promise<boolean> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  const deadline = performance.now() + timeoutMs;
  try {
    while (performance.now() < deadline) {
      const ok = await new Promise<boolean>((resolve) => {
        const t = setTimeout(() => resolve(false), 300);
        sock.once('message', () => (clearTimeout(t), resolve(true)));
        sock.send(Buffer.from('hi'), port, ip);
      });
      if (ok) return true;
    }
    return false;
  } finally {
    sock.close();
  }
}

export async function benchAgentServices(o: { net?: string; services?: number } = {}): Promise<Measure[]> {
  const net = (o.net ?? '127.0.107.0/24').replace(/\.0\/24$/, '');
  const n = o.services ?? 10_000;
  const eps = 10;
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-bench-agent-services-'));
  const log = (s: string) => process.stderr.write(`agent-services: ${s}\n`);
  try {
    const rec = await up({ stateDir, nodes: 2, podsPerNode: 1, manifests: [], labNet: `${net}.0/24`, apiPort: 0, clusterCidr: '10.244.0.0/16', vxlanPort: 8472, seed: 1, mtu: 1500, waitReady: true, timeoutMs: 90_000 });
    const api: ApiClient = labApi(rec);
    const nodeIp = `${net}.11`;
    // CoreDNS's pods run as apps on the agents' threads with informers of their own over every Service and
    // EndpointSlice (a real cluster runs them as processes of their own): scaled to none, so that what is
    // measured is the agent's own work.
    await api.patch('deployments', 'coredns', { spec: { replicas: 0 } }, 'kube-system');
    const dnsGone = performance.now() + 60_000;
    while ((await api.list<KubeObject>('pods', { namespace: 'kube-system' })).items.some((p) => p.metadata.name.startsWith('coredns-'))) {
      if (performance.now() > dnsGone) throw new Error('the coredns pods did not go');
      await new Promise((r) => setTimeout(r, 200));
    }
    await api.create('pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'echo', labels: { app: 'echo' } }, spec: { nodeName: 'node-2', containers: [{ name: 'c', image: 'podlab/echo', ports: [{ containerPort: 7, protocol: 'UDP' }] }] } }, 'default');
    await api.create('services', { apiVersion: 'v1', kind: 'Service', metadata: { name: 'echo' }, spec: { type: 'NodePort', selector: { app: 'echo' }, ports: [{ port: 7, protocol: 'UDP', targetPort: 7, nodePort: ECHO_NODEPORT }] } }, 'default');
    if (!(await answers(nodeIp, ECHO_NODEPORT, 60_000))) throw new Error(`no UDP echo through ${nodeIp}:${ECHO_NODEPORT}`);
    const pid = (await callNode<{ pid: number }>(stateDir, 'node-1', 'info', {})).pid;
    const mem = (p: Record<string, unknown>) => callNode<{ rss: number; heapUsed: number; gcPauses?: { count: number; maxMs: number; totalMs: number; over5ms: number } }>(stateDir, 'node-1', 'memory', p);
    const idleMem = await mem({ gc: true });
    const rssIdle = idleMem.rss;
    const heapIdle = idleMem.heapUsed;

    const ping = podPing(stateDir);
    const udp = await udpProbe(nodeIp, ECHO_NODEPORT);
    let rssMax = 0;
    const sampler = setInterval(() => void mem({}).then((m) => (rssMax = Math.max(rssMax, m.rss)), () => {}), 1000);
    try {
      await new Promise((r) => setTimeout(r, 1000)); // warm: ARP, the flows, the JIT
      const idleW = { from: performance.now(), to: 0 };
      await new Promise((r) => setTimeout(r, 5000));
      idleW.to = performance.now();

      await mem({ gcPauses: true, reset: true });
      const cpu0 = cpuMs(pid);
      const createW = { from: performance.now(), to: 0 };
      const creator = startCreator({ url: api.baseUrl, credentials: adminCredentials(stateDir), n, eps });
      await new Promise<void>((resolve, reject) => {
        creator.on('message', (m: { t: string; done?: number }) => (m.t === 'done' ? resolve() : m.done! % 5000 === 0 && log(`${m.done} of ${n} Services created`)));
        creator.once('error', reject);
        creator.once('exit', (code) => reject(new Error(`the creator exited (${code})`)));
      });
      await creator.terminate();
      const createdAt = performance.now();
      // node-1's kube-proxy has seen every one of them when a Service created after them is served.
      await api.create('services', { apiVersion: 'v1', kind: 'Service', metadata: { name: 'marker' }, spec: { type: 'NodePort', selector: { app: 'echo' }, ports: [{ port: 8, protocol: 'UDP', targetPort: 7, nodePort: MARKER_NODEPORT }] } }, 'default');
      if (!(await answers(nodeIp, MARKER_NODEPORT, 300_000))) throw new Error('the marker Service was never served');
      createW.to = performance.now();
      const createCpu = cpuMs(pid) - cpu0;
      const createGc = (await mem({ gcPauses: true, reset: true })).gcPauses;
      log(`created in ${((createdAt - createW.from) / 1000).toFixed(1)} s, served ${((createW.to - createdAt) / 1000).toFixed(1)} s later`);

      // One EndpointSlice changes (an endpoint goes); 3 s of probes after it.
      const changeW = { from: performance.now(), to: 0 };
      const cur = (await api.get<KubeObject>('endpointslices', 'svc-5-abcde', 'default'))!;
      await api.update('endpointslices', { ...sliceObject(5, eps, 1), metadata: cur.metadata });
      await new Promise((r) => setTimeout(r, 3000));
      changeW.to = performance.now();
      const changeGc = (await mem({ gcPauses: true, reset: true })).gcPauses;

      clearInterval(sampler);
      ping.stop().catch(() => {});
      udp.stop();
      const end = await mem({ gc: true });
      const rssEnd = end.rss;
      const idle = figures(ping.replies, udp, idleW);
      const create = figures(ping.replies, udp, createW);
      const change = figures(ping.replies, udp, changeW);
      const mb = (b: number) => b / 1048576;
      const tag = `${n.toLocaleString('en')} Services`;
      const gcNote = (g?: { count: number; maxMs: number; totalMs: number; over5ms: number }) => (g ? `; data-plane thread GC: ${g.count} pauses, longest ${g.maxMs} ms, ${g.over5ms} of 5 ms or more, ${g.totalMs} ms in all` : '; the agent does not report its GC pauses');
      const lostNote = (f: PhaseFigures) => (f.lost ? `; ${f.lost} datagrams unanswered` : '');
      return [
        measure(`agent data plane while ${tag} + EndpointSlices are created through the API: longest wait between pod ping replies`, create.worstGap, 'ms', 'the same before the first create', idle.worstGap, `2-node lab, pod-1a pings pod-2a every 2 ms; p99 gap ${create.p99Gap.toFixed(1)} ms (before ${idle.p99Gap.toFixed(1)} ms); window ${((createW.to - createW.from) / 1000).toFixed(0)} s, until node-1 serves a Service created after them${gcNote(createGc)}`),
        measure(`agent data plane while ${tag} + EndpointSlices are created through the API: p99 of UDP echo reply time minus scheduled send time`, create.p99Late, 'ms', 'the same before the first create', idle.p99Late, `a datagram every 2 ms on a fixed schedule from the host to node-1's NodePort, echoed by a pod on node-2 (coordinated omission counted); worst ${create.maxLate.toFixed(0)} ms (before ${idle.maxLate.toFixed(0)} ms)${lostNote(create)}`),
        measure(`agent data plane after one EndpointSlice changed at ${tag}: longest wait between pod ping replies`, change.worstGap, 'ms', 'the same before the first create', idle.worstGap, `3 s from the update; p99 gap ${change.p99Gap.toFixed(1)} ms; UDP p99 late ${change.p99Late.toFixed(1)} ms, worst ${change.maxLate.toFixed(0)} ms${lostNote(change)}${gcNote(changeGc)}`),
        measure(`agent RSS with ${tag} + EndpointSlices (node-1, after a full GC)`, mb(rssEnd), 'MB', 'the same before the first create', mb(rssIdle), `largest sampled during the creation ${mb(rssMax).toFixed(0)} MB; the data-plane thread's own heap ${mb(end.heapUsed).toFixed(0)} MB at the end (before ${mb(heapIdle).toFixed(0)} MB), the rest is the engine worker's heap and the process's`),
        measure(`agent CPU time while ${tag} + EndpointSlices are created through the API (node-1, all threads)`, createCpu, 'ms', 'the window\'s length', createW.to - createW.from, 'user + system from /proc, the worker\'s included'),
      ];
    } finally {
      clearInterval(sampler);
      await ping.stop().catch(() => {});
      udp.stop();
    }
  } finally {
    await down(stateDir);
    fs.rmSync(stateDir, { recursive: true, force: true });
  }
}
