/**
 * What control-plane work costs the data plane: a pod on one in-process node
 * pings a pod on another (real VXLAN datagrams on 127.0.57.0/24) every 2 ms,
 * and the longest wait between two replies, and the ping latency corrected
 * for coordinated omission (./paced-ping.ts), are taken while kube-proxy's
 * iptables engine does a full sync of 10,000 Services x 10 endpoints, and
 * while it resyncs after one endpoint changed, against the same with nothing
 * else running; in three arrangements:
 * - as agents run it: the engine's worker thread (service-proxy/engine-worker.ts)
 *   lists and watches Services and EndpointSlices from an apiserver in a
 *   child process (./sync-stall-apiserver.ts) that holds 10,000 of each; the
 *   data plane's thread only gets the summaries. The full sync is the
 *   worker's start, initial list and sync; the resync follows one
 *   EndpointSlice patched through the API. Beside it the control: a thread
 *   that only burns CPU at the worker's priority as long;
 * - the previous arrangement, after it (its objects live on the data plane's
 *   heap): the worker fed the 20,000 objects from the data plane's thread in
 *   messages of 50, and the first-packet decisions asked meanwhile;
 * - the engine in the data plane's event loop (how agents ran it first):
 *   every millisecond of a sync is a millisecond no packet moves.
 * Also the cost the worker's feed puts on the sending thread: one structured
 * clone of every EndpointSlice at once against one message of 50.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import { Worker } from 'node:worker_threads';
import { monotonicClock } from '../common/clock.ts';
import { GcPauses, type GcPauseStats } from '../common/gc-pauses.ts';
import { SeededRng } from '../common/rng.ts';
import { ApiClient } from '../control-plane/client.ts';
import { objectKey } from '../control-plane/informer.ts';
import type { ClientCredentials } from '../control-plane/credentials.ts';
import type { KubeObject } from '../control-plane/types.ts';
import { ipv4ToInt } from '../packet/addr.ts';
import type { PodNet } from '../netstack/pod-net.ts';
import { ping } from '../pod-tools/ping.ts';
import { findV8PlatformThreads, lowerV8PlatformThreads } from '../common/thread-priority.ts';
import { createServiceProxyEngine } from '../service-proxy/index.ts';
import { EngineWorker } from '../service-proxy/engine-worker.ts';
import { ServiceAddressSet, type EngineSummary } from '../service-proxy/worker-protocol.ts';
import { pacedPing, type PacedLatency } from './paced-ping.ts';
import { AGENT_NODE_FLAGS } from '../lab/local-lab.ts';
import { measuresApart, runAsMain } from './apart.ts';
import { measure, timeMs, type Measure } from './results.ts';
import { makeCluster } from './services.ts';
import { twoNodes } from './two-nodes.ts';
import { benchChild, benchTempDir, benchTempDirGone } from './interrupt.ts';

const NET = '127.0.57';

interface Gaps {
  /** The longest wait between consecutive replies (ms). */
  worst: number;
  /** The 99th percentile of those waits (ms). */
  p99: number;
  /** Ping latency corrected for coordinated omission, from echoes on a fixed schedule sent meanwhile (./paced-ping.ts). */
  paced: PacedLatency;
  /** How long the thread was runnable but waiting for a core (ms, /proc schedstat), and over how long a window (ms). */
  queuedMs: number;
  spanMs: number;
}

/** This thread's time spent runnable but not running so far (ms): /proc/thread-self/schedstat's second field; NaN off Linux. */
function queuedSoFar(): number {
  try {
    return Number(fs.readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[1]) / 1e6;
  } catch {
    return NaN;
  }
}

/**
 * The waits (ms) between consecutive echo replies of `count` pings sent 2 ms apart; `during` runs 60 ms after
 * the first. Gaps, not round trips: a stall delays whatever is due while it lasts, whether or not a ping
 * happened to be in flight when it began. With `until`, the pings go on (up to 20,000) until it resolves, and 60 ms more (and at least `count` of them).
 * Meanwhile echoes on a fixed 2 ms schedule from the same pod give the latency each would have seen from when it
 * was due (the "ping p99", without the coordinated omission a round trip has).
 */
async function gaps(pod: PodNet, dst: string, during?: () => void, count = 150, until?: Promise<void>): Promise<Gaps> {
  const replies: number[] = [];
  let out = '';
  const q0 = queuedSoFar();
  const t0 = performance.now();
  const timer = during ? setTimeout(during, 60) : undefined;
  const stop = new AbortController();
  // Stops 60 ms after `until`, but never before `count` replies (a quick resync would leave too few for a p99).
  let over = false;
  void until?.then(() => setTimeout(() => ((over = true), replies.length >= count && stop.abort()), 60));
  const pacedStop = new AbortController();
  // Offset by half an interval from ping's echoes, so that the two do not always queue behind each other.
  const pacedRun = new Promise((r) => setTimeout(r, 1)).then(() => pacedPing(pod, dst, pacedStop.signal));
  await ping({
    pod,
    argv: ['ping', '-c', String(until ? 20_000 : count), '-i', '0.002', dst],
    stdout: (s) => {
      out += s;
      for (const line of s.split('\n')) if (/bytes from/.test(line)) replies.push(performance.now());
      if (over && replies.length >= count) stop.abort();
    },
    stderr: (s) => (out += s),
    signal: stop.signal,
    clock: monotonicClock,
    rng: new SeededRng(3),
  });
  clearTimeout(timer);
  pacedStop.abort();
  const paced = await pacedRun;
  if (paced.lost > 2) throw new Error(`${paced.lost} of ${paced.latencies.length} paced echoes unanswered`);
  if (replies.length < Math.min(count, 100)) throw new Error(`only ${replies.length} of ${count} pings answered:\n${out.slice(-2000)}`);
  const g: number[] = [];
  for (let i = 1; i < replies.length; i++) g.push(replies[i] - replies[i - 1]);
  g.sort((a, b) => a - b);
  return { worst: g[g.length - 1], p99: g[Math.floor(g.length * 0.99)], paced, queuedMs: queuedSoFar() - q0, spanMs: performance.now() - t0 };
}

/** The data plane's thread's GC pauses over one window (common/gc-pauses.ts, as agents report theirs). */
function watchGc(): { stop(): GcPauseStats } {
  const g = new GcPauses();
  g.read();
  return {
    stop: () => {
      const r = g.read();
      g.stop();
      return r;
    },
  };
}

const gcNote = (g: GcPauseStats) => `GC pauses on the data plane's thread meanwhile: longest ${g.maxMs.toFixed(1)} ms, ${g.count} in all, ${g.totalMs.toFixed(0)} ms`;

/** CPU time (user + system, ms) of a process or one of this process's threads, from /proc (USER_HZ 100); NaN if gone. */
function cpuMs(stat: string): number {
  try {
    const f = fs.readFileSync(stat, 'utf8');
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) * 10;
  } catch {
    return NaN;
  }
}

/** The apiserver in a child process, serving 10,000 Services + EndpointSlices (./sync-stall-apiserver.ts). */
async function apiserverChild(): Promise<{ url: string; credentials: ClientCredentials; filledMs: number; pid: number; stop(): Promise<void> }> {
  const dir = benchTempDir(fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-sync-stall-')));
  const child = benchChild(spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./sync-stall-apiserver.ts', import.meta.url)), dir, '10000', '10'], { stdio: ['pipe', 'pipe', 'inherit'] }));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const stop = async () => {
    child.stdin.end();
    const t = setTimeout(() => child.kill(), 5000);
    await exited;
    clearTimeout(t);
    fs.rmSync(dir, { recursive: true, force: true });
    benchTempDirGone(dir);
  };
  try {
    const line = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) resolve(out.slice(0, out.indexOf('\n')));
      });
      void exited.then(() => reject(new Error(`the bench's apiserver exited before serving: ${out}`)));
    });
    return { ...(JSON.parse(line) as { url: string; credentials: ClientCredentials; filledMs: number }), pid: child.pid!, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

type SyncWindow = Gaps & {
  syncMs: number;
  longestStepMs: number;
  coveredMs: number;
  gc: GcPauseStats;
  decisions: { syncing: boolean; ms: number }[];
  summary: EngineSummary;
  summaryCost: { count: number; bytes: number; decodeMs: number; applyMs: number };
};

const costNote = (w: SyncWindow) => `the thread got ${w.summaryCost.count} summary of ${(w.summaryCost.bytes / 1024).toFixed(1)} KiB (its deserialization ~${w.summaryCost.decodeMs.toFixed(2)} ms, applied in ${w.summaryCost.applyMs.toFixed(2)} ms)`;

export async function benchSyncStall(): Promise<Measure[]> {
  // As an agent's process does at its start (node-agent/main.ts); the threads' CPU is in the notes either way.
  const platform = await findV8PlatformThreads();
  const platformLowered = await lowerV8PlatformThreads(10, platform);
  const platformCpu = () => platform.reduce((n, t) => n + cpuMs(`/proc/self/task/${t}/stat`), 0);
  const platformNote = platformLowered.length ? `nice 10` : `unchanged (${platform.length ? 'nice 0' : 'not found'})`;
  const lab = await twoNodes(`${NET}.0/24`, 57);
  const a = lab.a;
  const init = { nodeName: 'node-1', nodeIP: `${NET}.11`, localAddresses: ['10.244.1.1'], clusterCidr: '10.244.0.0/16', loopbackCidr: '127.0.0.1/32' };
  let worker: EngineWorker | undefined;
  let fed: EngineWorker | undefined;
  let apiserver: Awaited<ReturnType<typeof apiserverChild>> | undefined;
  let api: ApiClient | undefined;
  try {
    await gaps(a, '10.244.2.2'); // warm: ARP, the JIT
    const idle = await gaps(a, '10.244.2.2');
    apiserver = await apiserverChild();
    api = new ApiClient(apiserver.url, { credentials: apiserver.credentials });
    // Its start (loading 20,000 objects) is over before the windows.
    await new Promise((r) => setTimeout(r, 500));

    // What the agent's thread keeps of each summary (node-agent/kube-proxy.ts): the hooks' pre-filter.
    const addresses = new ServiceAddressSet();
    let onSummary = () => {};
    let summaries: EngineSummary[] = [];
    // How long the thread spends applying them (the message's deserialization before the hook: ./summaryCost).
    let applyMs = 0;
    const hooks = {
      summary: (s: EngineSummary) => {
        const t0 = performance.now();
        addresses.apply(s);
        applyMs += performance.now() - t0;
        summaries.push(s);
        onSummary();
      },
      down: (reason: string) => console.error(reason),
    };
    // A new connection's first packet to a ClusterIP, as the agent asks the worker: how long its decision takes.
    let sport = 20000;
    const decideMs = async (w: EngineWorker): Promise<number> => {
      const t0 = performance.now();
      await w.decide({ src: '10.244.1.2', dst: '10.96.1.1', protocol: 'tcp', sport: sport++, dport: 80, localDst: false, fromLocalPod: true, trace: false });
      return performance.now() - t0;
    };
    /**
     * The pings while `start` sets a sync off, until its summary is back; a decision every 20 ms meanwhile
     * (tagged: asked after `syncing()` turned true, or before, queued behind the feed).
     */
    const window = async (start: () => void, w: () => EngineWorker | undefined, syncing: () => boolean = () => true): Promise<SyncWindow> => {
      summaries = [];
      applyMs = 0;
      const gc = watchGc();
      let done = 0;
      let startedAt = 0;
      const decisions: Promise<{ syncing: boolean; ms: number }>[] = [];
      let asking: NodeJS.Timeout | undefined;
      const synced = new Promise<void>((r) => (onSummary = () => ((done = performance.now()), clearInterval(asking), r())));
      const g = await gaps(
        a,
        '10.244.2.2',
        () => {
          startedAt = performance.now();
          start();
          asking = setInterval(() => {
            const s = syncing();
            const wk = w();
            // A decision that failed (the worker's 10 s limit) counts as NaN, never as an unhandled rejection.
            if (wk) decisions.push(decideMs(wk).then((ms) => ({ syncing: s, ms }), () => ({ syncing: s, ms: NaN })));
          }, 20);
        },
        150,
        synced,
      );
      if (!done) throw new Error('the worker did not finish its sync within 20,000 pings');
      const summary = summaries[summaries.length - 1];
      const gcPauses = gc.stop();
      // What the summaries cost the thread: their structured clone's size, its deserialization (timed again here), the apply.
      const bufs = summaries.map((x) => v8.serialize(x));
      const summaryCost = { count: bufs.length, bytes: bufs.reduce((n, b) => n + b.length, 0), decodeMs: bufs.reduce((n, b) => n + timeMs(() => v8.deserialize(b), 5), 0), applyMs };
      return { ...g, syncMs: summary.syncMs, longestStepMs: summary.longestStepMs ?? NaN, coveredMs: done - startedAt, gc: gcPauses, decisions: await Promise.all(decisions), summary, summaryCost };
    };

    // Agents' arrangement: the worker lists and watches the apiserver itself; its first summary ends its initial list and sync.
    const apiInit = { ...init, mode: 'iptables' as const, seed: 1, api: { url: apiserver.url, credentials: apiserver.credentials } };
    // No decisions asked: a starting worker holds them until its first sync (none is made from half the objects).
    const apiCpu0 = cpuMs(`/proc/${apiserver.pid}/stat`);
    const platformCpu0 = platformCpu();
    const wFull = await window(() => (worker = new EngineWorker(apiInit, hooks)), () => undefined);
    // What shared the cores with the data plane meanwhile: the apiserver's list, the worker's decoding and sync.
    const apiCpu = cpuMs(`/proc/${apiserver.pid}/stat`) - apiCpu0;
    const platformUsed = platformCpu() - platformCpu0;
    const workerCpu = cpuMs(`/proc/self/task/${worker!.tid}/stat`);
    const priority = worker!.priority;
    if (wFull.summary.services !== 10_000 || wFull.summary.slices !== 10_000) throw new Error(`the worker listed ${wFull.summary.services} Services, ${wFull.summary.slices} EndpointSlices`);
    if (!addresses.wants(ipv4ToInt('10.96.1.1'), 1, () => false)) throw new Error('the summary lacks a ClusterIP');
    const slice5 = (await api.get('endpointslices', 'svc-5-abcde', 'default')) as unknown as { endpoints: unknown[] };
    const wResync = await window(() => void api!.patch('endpointslices', 'svc-5-abcde', { endpoints: slice5.endpoints.slice(1) }, 'default'), () => worker);
    if (!wResync.summary.goneEndpoints.length) throw new Error('the resync missed the removed endpoint');
    const wIdle = await gaps(a, '10.244.2.2');
    const idleDecisions: number[] = [];
    for (let i = 0; i < 20; i++) idleDecisions.push(await decideMs(worker!));
    idleDecisions.sort((x, y) => x - y);
    await worker!.close();
    worker = undefined;
    api.close();
    api = undefined;
    await apiserver.stop();
    apiserver = undefined;

    // The control: a thread that only burns CPU at the worker's priority for as long as the full sync took, so
    // what the cores' sharing costs the pings on this machine shows apart from anything the sync does.
    const burnMs = Math.round(wFull.coveredMs);
    // Under the same scheduling as the worker (common/thread-priority.ts's choice, repeated here in plain JS).
    const burner = new Worker(
      `const { spawnSync } = require('node:child_process'); const fs = require('node:fs'); const os = require('node:os');
       const tid = fs.readlinkSync('/proc/thread-self').split('/').pop();
       const idle = process.env.PODLAB_ENGINE_SCHED === 'idle' && spawnSync('chrt', ['--idle', '--pid', '0', tid], { stdio: 'ignore' }).status === 0;
       const nice = process.env.PODLAB_ENGINE_SCHED === 'idle' ? 19 : 10;
       if (!idle) try { os.setPriority(0, nice); } catch {}
       const { parentPort } = require('node:worker_threads');
       parentPort.postMessage(idle ? 'SCHED_IDLE' : 'nice ' + nice);
       parentPort.on('message', (ms) => { const end = Date.now() + ms; let x = 0; while (Date.now() < end) x++; parentPort.postMessage(x); });`,
      { eval: true },
    );
    const burnerPriority = await new Promise<string>((r) => burner.once('message', r));
    const burnt = new Promise<void>((r) => burner.once('message', () => r()));
    const busyGc = watchGc();
    const busy = await gaps(a, '10.244.2.2', () => burner.postMessage(burnMs), 150, burnt);
    const busyGcPauses = busyGc.stop();
    await burner.terminate();

    // The previous arrangement, after: the data plane's thread holds the 20,000 objects and feeds them to the
    // worker in messages of 50 (their heap would otherwise weigh on the GC during the windows above).
    const big = makeCluster(10_000, 10);
    const changed = big.slices.map((s, i) => (i === 5 ? ({ ...s, endpoints: (s as unknown as { endpoints: unknown[] }).endpoints.slice(1) } as unknown as KubeObject) : s));
    fed = new EngineWorker({ ...init, mode: 'iptables', seed: 1 }, hooks);
    await new Promise<void>((r) => (onSummary = r)); // started, and its (empty) first sync done
    const asked = () => fed!.syncsAsked;
    let askedBefore = asked();
    const fFull = await window(
      () => {
        askedBefore = asked();
        fed!.replace('services', big.services);
        fed!.replace('endpointslices', big.slices);
      },
      () => fed,
      () => asked() > askedBefore,
    );
    const fResync = await window(() => fed!.put('endpointslices', objectKey(changed[5]), changed[5]), () => fed);
    await fed.close();
    fed = undefined;

    // The engine on this thread, last: its 10,000 compiled Services (hundreds of MB) would otherwise be garbage
    // collected on the data plane's thread during the worker's turn, which an agent's heap never holds.
    const { full, resync } = await (async () => {
      const engine = createServiceProxyEngine('iptables', { ...init, clock: monotonicClock, rng: new SeededRng(1) });
      return {
        full: await gaps(a, '10.244.2.2', () => engine.update(big.services, big.slices)),
        resync: await gaps(a, '10.244.2.2', () => engine.update(big.services, changed)),
      };
    })();

    const cloneAll = timeMs(() => structuredClone(big.slices), 3);
    const cloneChunk = timeMs(() => structuredClone(big.slices.slice(0, 50)), 50);
    const duringSync = fFull.decisions.filter((d) => d.syncing).map((d) => d.ms).sort((x, y) => x - y);
    const duringFeed = fFull.decisions.filter((d) => !d.syncing).map((d) => d.ms).sort((x, y) => x - y);
    const resyncDecisions = wResync.decisions.map((d) => d.ms).sort((x, y) => x - y);
    const queued = (g: Gaps) => `the thread waited for a core ${g.queuedMs.toFixed(0)} ms of the ${g.spanMs.toFixed(0)} ms window`;
    const note = (g: Gaps) => `p99 gap ${g.p99.toFixed(1)} ms; ping latency (corrected) p99 ${g.paced.p99.toFixed(1)} ms, max ${g.paced.max.toFixed(1)} ms; ${queued(g)}`;
    const lat = (g: Gaps) => `max ${g.paced.max.toFixed(1)} ms over ${g.paced.latencies.length} slots (p99 gap ${g.p99.toFixed(1)} ms); ${queued(g)}; with nothing running max ${wIdle.paced.max.toFixed(1)} ms, ${queued(wIdle)}`;
    const load = os.loadavg().map((x) => x.toFixed(1)).join(' ');
    return [
      measure('data plane during control-plane work: longest wait between pod ping replies while kube-proxy fully syncs 10,000 Services', full.worst, 'ms', 'the same with nothing else running', idle.worst, `iptables engine in the agent's event loop (the synchronous engine); 150 pings 2 ms apart; ${note(full)}`),
      measure('data plane during control-plane work: longest wait between pod ping replies while kube-proxy resyncs one endpoint change at 10,000 Services', resync.worst, 'ms', 'the same with nothing else running', idle.worst, `the same, a partial sync: unchanged Services are reused; ${note(resync)}`),
      measure("data plane during control-plane work, engine in a worker: longest wait between pod ping replies while kube-proxy's worker lists and fully syncs 10,000 Services", wFull.worst, 'ms', 'the same with nothing else running', wIdle.worst, `agents' arrangement: the worker (${priority}, started at the window's start) lists and watches Services and EndpointSlices from an apiserver in a child process holding 10,000 of each, the data plane's thread only gets the summary; its sync ${wFull.syncMs.toFixed(0)} ms, ${wFull.coveredMs.toFixed(0)} ms from the worker's start to the summary back, the pings going on until then; ${note(wFull)}; ${gcNote(wFull.gc)}; ${costNote(wFull)}; CPU meanwhile: the apiserver ${apiCpu.toFixed(0)} ms, the worker thread ${workerCpu.toFixed(0)} ms, V8's platform thread (${platformNote}) ${platformUsed.toFixed(0)} ms; load average ${load}`),
      measure("data plane during control-plane work, engine in a worker: longest wait between pod ping replies while kube-proxy's worker resyncs one endpoint change at 10,000 Services", wResync.worst, 'ms', 'the same with nothing else running', wIdle.worst, `one EndpointSlice patched through the API, the worker's watch event and partial sync ${wResync.syncMs.toFixed(0)} ms; ${note(wResync)}; ${gcNote(wResync.gc)}; ${costNote(wResync)}; decisions meanwhile longest ${(resyncDecisions[resyncDecisions.length - 1] ?? NaN).toFixed(1)} ms of ${resyncDecisions.length}`),
      measure("data plane beside a CPU-bound thread: longest wait between pod ping replies while another thread burns CPU at the worker's priority", busy.worst, 'ms', 'the same with nothing else running', wIdle.worst, `the control for the worker's figures: a thread doing nothing but a busy loop (${burnerPriority}) for ${burnMs} ms (the worker's start, list and full sync); ${note(busy)}; ${gcNote(busyGcPauses)}`),
      measure("data plane during control-plane work, engine in a worker: pod ping latency p99 (coordinated-omission corrected) while kube-proxy's worker lists and fully syncs 10,000 Services", wFull.paced.p99, 'ms', 'the same with nothing else running', wIdle.paced.p99, `echoes due every 2 ms, each reply's time minus when it was due; ${lat(wFull)}; ${gcNote(wFull.gc)}`),
      measure("data plane during control-plane work, engine in a worker: pod ping latency p99 (coordinated-omission corrected) while kube-proxy's worker resyncs one endpoint change at 10,000 Services", wResync.paced.p99, 'ms', 'the same with nothing else running', wIdle.paced.p99, `the same; ${lat(wResync)}`),
      measure("data plane beside a CPU-bound thread: pod ping latency p99 (coordinated-omission corrected) while another thread burns CPU at the worker's priority", busy.paced.p99, 'ms', 'the same with nothing else running', wIdle.paced.p99, `the control for the two rows above; ${lat(busy)}`),
      measure("previous arrangement, worker fed from the data plane's thread: pod ping latency p99 (coordinated-omission corrected) while kube-proxy's worker fully syncs 10,000 Services", fFull.paced.p99, 'ms', 'the same with nothing else running', wIdle.paced.p99, `the thread holds the 20,000 objects and sends them in messages of 50, as agents without the apiserver's address do (and did); its sync ${fFull.syncMs.toFixed(0)} ms, ${fFull.coveredMs.toFixed(0)} ms from the first message to the summary; ${lat(fFull)}; longest gap ${fFull.worst.toFixed(1)} ms; ${gcNote(fFull.gc)}`),
      measure("previous arrangement, worker fed from the data plane's thread: pod ping latency p99 (coordinated-omission corrected) while kube-proxy's worker resyncs one endpoint change at 10,000 Services", fResync.paced.p99, 'ms', 'the same with nothing else running', wIdle.paced.p99, `one changed EndpointSlice sent; ${lat(fResync)}; longest gap ${fResync.worst.toFixed(1)} ms; ${gcNote(fResync.gc)}`),
      measure("kube-proxy worker: longest wait for a new ClusterIP connection's first-packet decision while the worker fully syncs 10,000 Services", duringSync[duringSync.length - 1] ?? NaN, 'ms', 'the same with the worker idle', idleDecisions[idleDecisions.length - 1], `in the previous arrangement's full sync (with the apiserver, decisions wait for the worker's first sync: none is made from half the objects): decisions asked every 20 ms from the feed's last message to the summary (${duringSync.length} of them, median ${(duringSync[duringSync.length >> 1] ?? NaN).toFixed(1)} ms); the worker's sync ${process.env.PODLAB_ENGINE_SYNC === 'whole' ? 'in one go (PODLAB_ENGINE_SYNC=whole)' : 'in steps, decisions between them from the previous rules'}, ${fFull.syncMs.toFixed(0)} ms of work, its longest step ${fFull.longestStepMs.toFixed(1)} ms; while the feed went out (behind its messages) longest ${(duringFeed[duringFeed.length - 1] ?? NaN).toFixed(1)} ms of ${duringFeed.length}; idle median ${idleDecisions[idleDecisions.length >> 1].toFixed(1)} ms`),
      measure('kube-proxy worker feed: structured clone of every EndpointSlice at once (10,000 x 10 endpoints)', cloneAll, 'ms', 'one message of 50 EndpointSlices, as the feed sends them', cloneChunk, "what posting the whole state would hold the data plane for, against the feed's largest message"),
    ];
  } finally {
    await worker?.close();
    await fed?.close();
    api?.close();
    await apiserver?.stop();
    await lab.close();
  }
}

/**
 * The figures above in a process of their own with the agents' V8 flags (lab/local-lab.ts AGENT_NODE_FLAGS): they
 * measure an agent's data-plane thread, whose garbage collection those flags shape (many short scavenges of a 1 MB
 * young generation, on the thread itself); without them the corrected p99 was higher in 9 of 10 interleaved pairs (median 7.5 against 6.2 ms).
 */
export function benchSyncStallApart(): Promise<Measure[]> {
  return measuresApart(import.meta.url, [], AGENT_NODE_FLAGS);
}

await runAsMain(import.meta.url, benchSyncStall);
