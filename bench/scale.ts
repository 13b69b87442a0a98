/**
 * `npm run bench -- --scale [--nodes N] [--pods-per-node M]`: a big lab on
 * this machine (default 100 nodes × 10 pods), measured as a user meets it:
 * the time `up --detach` takes, memory per agent and of the apiserver, the
 * time until every node has every peer's route and FDB entry, seeded random
 * cross-node pings, the same node count converging over BGP with two route
 * reflectors, and the time `down` takes. Its lab runs on `labNet` (127.0.98.0/24
 * unless `--lab-net` says otherwise), and the BGP lab after it on the same net. Baselines come from the same run: a
 * bare Node process's RSS, and the time to start as many bare Node processes.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execInPod } from '../cli/commands.ts';
import { SeededRng } from '../common/rng.ts';
import type { Pod } from '../control-plane/types.ts';
import { down, labApi, labProcessEnv, up, waitRoutesConverged } from '../lab/lab.ts';
import { connectNode } from '../lab/node-endpoint.ts';
import type { LabRecord } from '../lab/state.ts';
import { measure, type Measure } from './results.ts';
import { benchChild } from './interrupt.ts';

const say = (m: string) => process.stderr.write(`scale: ${m}\n`);

/** Resident set size of a process, in MB (from /proc). */
export function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Peak resident set size of a process so far, in MB (VmHWM). */
export function peakRssMb(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** A process's resident memory split into anonymous (heaps) and file-backed (Node's binary, libraries), in MB. */
export function rssSplit(pid: number): { anon: number; file: number } {
  const t = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(t)?.[1] ?? NaN);
  return { anon: kb('Anonymous') / 1024, file: (kb('Rss') - kb('Anonymous')) / 1024 };
}

/**
 * Where a process's anonymous memory is, in MB (from /proc/PID/smaps): the malloc arena (`[heap]`: OpenSSL's
 * per-connection state, SQLite, Node's native objects), 256 KiB mappings (V8's heap pages: its young and old
 * generation) and the rest (code space, large objects, thread stacks).
 */
export function anonSplit(pid: number): { malloc: number; v8: number; other: number } {
  const out = { malloc: 0, v8: 0, other: 0 };
  let into: keyof typeof out | undefined;
  for (const line of fs.readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      const kb = (parseInt(head[2], 16) - parseInt(head[1], 16)) / 1024;
      into = head[3] === '[heap]' ? 'malloc' : head[3] !== '' ? undefined : kb === 256 ? 'v8' : 'other';
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss && into) out[into] += Number(rss[1]) / 1024;
  }
  return out;
}

/** Threads of a process (the main thread, V8's and libuv's, one per worker thread). */
const threadCount = (pid: number) => fs.readdirSync(`/proc/${pid}/task`).length;

/** CPU time a process has used so far (user + system), in seconds (from /proc; clock ticks of 10 ms). */
export function cpuSeconds(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** How long the lab idles before memory is read a second time. */
const IDLE_MS = 20_000;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Baseline: `n` bare Node processes started and answering, and one's RSS; in the environment the lab's processes get. */
async function bareNodes(n: number): Promise<{ ms: number; rss: number }> {
  const t0 = performance.now();
  const procs = await Promise.all(
    Array.from({ length: n }, () => {
      const p = benchChild(spawn(process.execPath, ['-e', 'process.stdout.write("ready\\n"); setInterval(() => {}, 1000)'], { stdio: ['ignore', 'pipe', 'ignore'], env: labProcessEnv() }));
      return new Promise<typeof p>((resolve) => p.stdout.once('data', () => resolve(p)));
    }),
  );
  const ms = performance.now() - t0;
  const rss = median(procs.map((p) => rssMb(p.pid!)));
  // Gone before anything is timed after them.
  const running = procs.filter((p) => p.exitCode === null && p.signalCode === null);
  await Promise.all(running.map((p) => new Promise((resolve) => (p.once('exit', resolve), p.kill('SIGKILL')))));
  return { ms, rss };
}

/** Polls every node until it has `n - 1` peer routes and FDB entries (vxlan); the time that took. */
async function untilProgrammed(rec: LabRecord, n: number, timeoutMs: number): Promise<number> {
  const t0 = performance.now();
  const pending = new Set(rec.nodes.map((x) => x.name));
  while (pending.size) {
    for (const name of [...pending]) {
      const c = await connectNode(rec, name);
      try {
        const fdb = (await c.call<{ stdout: string }>('node.cmd', { argv: ['bridge', 'fdb'] })).stdout;
        const routes = (await c.call<{ stdout: string }>('node.cmd', { argv: ['ip', 'route'] })).stdout;
        const fdbs = fdb.split('\n').filter((l) => l.includes(' dst ')).length;
        const peerRoutes = routes.split('\n').filter((l) => l.includes('dev flannel.1')).length;
        if (fdbs >= n - 1 && peerRoutes >= n - 1) pending.delete(name);
      } finally {
        c.close();
      }
    }
    if (performance.now() - t0 > timeoutMs) throw new Error(`not programmed after ${timeoutMs} ms: ${[...pending].slice(0, 5).join(', ')}...`);
    if (pending.size) await new Promise((r) => setTimeout(r, 200));
  }
  return performance.now() - t0;
}

/** The agent with the most RSS: its node, what it holds and how many threads it runs (a CoreDNS pod adds a worker thread). */
async function heaviestAgent(rec: LabRecord, rss: Map<string, number>): Promise<string> {
  const [name, mb] = [...rss].sort((a, b) => b[1] - a[1])[0];
  const pid = rec.procs.find((p) => p.role === 'node' && p.name === name)!.pid;
  const c = await connectNode(rec, name);
  const pods = await c.call<{ pods: { key: string }[] }>('info', {}).then((i) => i.pods.map((p) => p.key)).finally(() => c.close());
  const { anon, file } = rssSplit(pid);
  const others = pods.filter((k) => !k.startsWith('default/'));
  return `${name} ${mb.toFixed(1)} MB (anon ${anon.toFixed(1)}, file ${file.toFixed(1)}), ${threadCount(pid)} threads, ${pods.length} pods${others.length ? ` with ${others.join(', ')}` : ''}`;
}

/** Median threads per agent, to set the heaviest one's against. */
const medianThreads = (rec: LabRecord) => median(rec.procs.filter((p) => p.role === 'node').map((p) => threadCount(p.pid)));

export async function benchScale(nodes: number, podsPerNode: number, labNet = '127.0.98.0/24'): Promise<Measure[]> {
  const out: Measure[] = [];
  const base = await bareNodes(nodes + 1);
  say(`baseline: ${nodes + 1} bare Node processes in ${base.ms.toFixed(0)} ms, ${base.rss.toFixed(1)} MB RSS each`);
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-bench-scale-'));
  const opts = { stateDir, nodes, podsPerNode, manifests: [], labNet, apiPort: 0, clusterCidr: '10.244.0.0/16', vxlanPort: 8472, seed: 1, mtu: 1500, waitReady: true, timeoutMs: 600_000 };
  try {
    let t0 = performance.now();
    const rec = await up(opts);
    const upMs = performance.now() - t0;
    say(`up --detach (every node Ready, ${nodes * podsPerNode} pods Running): ${(upMs / 1000).toFixed(1)} s`);
    const programmedMs = await untilProgrammed(rec, nodes, 300_000);
    say(`every route and FDB entry programmed ${(programmedMs / 1000).toFixed(1)} s after up returned`);
    const agentRss = () => new Map(rec.procs.filter((p) => p.role === 'node').map((p) => [p.name, rssMb(p.pid)] as const));
    const agentsNow = agentRss();
    const agents = [...agentsNow.values()];
    const api = rec.procs.find((p) => p.role === 'apiserver')!;
    const apiRss = rssMb(api.pid);
    const apiPeak = peakRssMb(api.pid);
    const apiSplit = rssSplit(api.pid);
    // CPU each process used to get here: what `up` costs the machine, next to how long it took.
    const agentCpu = rec.procs.filter((p) => p.role === 'node').map((p) => cpuSeconds(p.pid));
    const apiCpu = cpuSeconds(api.pid);
    say(`CPU used by up: agents median ${median(agentCpu).toFixed(2)} s (sum ${agentCpu.reduce((a, b) => a + b, 0).toFixed(1)} s), apiserver ${apiCpu.toFixed(1)} s`);
    const heaviest = await heaviestAgent(rec, agentsNow);
    const apiAnon = anonSplit(api.pid);
    const apiNote = `peak ${apiPeak.toFixed(1)} MB during up; anon ${apiSplit.anon.toFixed(1)} (malloc ${apiAnon.malloc.toFixed(1)}, V8 pages ${apiAnon.v8.toFixed(1)}, other ${apiAnon.other.toFixed(1)}), file ${apiSplit.file.toFixed(1)}`;
    say(`RSS: agents median ${median(agents).toFixed(1)} MB, max ${Math.max(...agents).toFixed(1)} MB; apiserver ${apiRss.toFixed(1)} MB (${apiNote}); load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
    say(`heaviest agent: ${heaviest} (median agent: ${medianThreads(rec)} threads)`);
    // Read again once the lab has idled: the first reading comes right after each agent's busiest minute,
    // before V8's memory reducer has given back what start-up left behind (before the pings' execs load the pod tools).
    await new Promise((r) => setTimeout(r, IDLE_MS));
    const agentsIdleNow = agentRss();
    const agentsIdle = [...agentsIdleNow.values()];
    const heaviestIdle = await heaviestAgent(rec, agentsIdleNow);
    const apiIdle = rssMb(api.pid);
    const apiIdleAnon = anonSplit(api.pid);
    const apiIdleNote = `malloc ${apiIdleAnon.malloc.toFixed(1)}, V8 pages ${apiIdleAnon.v8.toFixed(1)}, other anon ${apiIdleAnon.other.toFixed(1)}`;
    say(`RSS after ${IDLE_MS / 1000} s idle: agents median ${median(agentsIdle).toFixed(1)} MB, max ${Math.max(...agentsIdle).toFixed(1)} MB (${heaviestIdle}); apiserver ${apiIdle.toFixed(1)} MB (${apiIdleNote})`);

    // 50 seeded random cross-node pod pairs, one ping each.
    const pods = (await labApi(rec).list<Pod>('pods')).items.filter((p) => p.status?.podIP);
    const rng = new SeededRng(1);
    let ok = 0;
    const pairs = 50;
    for (let i = 0; i < pairs; i++) {
      const a = pods[rng.int(0, pods.length - 1)];
      let b = pods[rng.int(0, pods.length - 1)];
      while (b.spec?.nodeName === a.spec?.nodeName) b = pods[rng.int(0, pods.length - 1)];
      let text = '';
      // Any pod of the lab, CoreDNS's in kube-system too; a failed exec counts as an unanswered ping.
      await execInPod(stateDir, a.metadata.name, ['ping', '-c', '1', '-W', '2', b.status!.podIP!], { namespace: a.metadata.namespace, stdout: (s) => (text += s), stderr: () => {} }).catch((e: unknown) => say(`exec in ${a.metadata.name}: ${(e as Error).message}`));
      if (/ 0% packet loss/.test(text)) ok++;
    }
    say(`${ok}/${pairs} random cross-node pings answered`);

    t0 = performance.now();
    await down(stateDir);
    const downMs = performance.now() - t0;
    say(`down: ${(downMs / 1000).toFixed(1)} s`);

    out.push(measure(`scale: up --detach, ${nodes} nodes x ${podsPerNode} pods`, upMs, 'ms', `starting ${nodes + 1} bare Node processes`, base.ms));
    out.push(measure(`scale: every route and FDB entry programmed after up, ${nodes} nodes`, programmedMs, 'ms', 'up --detach itself', upMs));
    out.push(measure(`scale: agent RSS median, ${nodes} nodes`, median(agents), 'MB', 'a bare Node process', base.rss, `max ${Math.max(...agents).toFixed(1)} MB`));
    out.push(measure(`scale: agent RSS max, ${nodes} nodes`, Math.max(...agents), 'MB', 'a bare Node process', base.rss, heaviest));
    out.push(measure(`scale: agent RSS median after ${IDLE_MS / 1000} s idle, ${nodes} nodes`, median(agentsIdle), 'MB', 'a bare Node process', base.rss, `max ${heaviestIdle}`));
    out.push(measure(`scale: apiserver RSS, ${nodes} nodes x ${podsPerNode} pods`, apiRss, 'MB', 'a bare Node process', base.rss, apiNote));
    out.push(measure(`scale: apiserver RSS after ${IDLE_MS / 1000} s idle, ${nodes} nodes x ${podsPerNode} pods`, apiIdle, 'MB', 'a bare Node process', base.rss, apiIdleNote));
    out.push(measure(`scale: CPU used by the agents and the apiserver until every route is programmed, ${nodes} nodes`, agentCpu.reduce((a, b) => a + b, 0) + apiCpu, 's', 'up --detach wall time x 2 cores', (upMs / 1000) * os.cpus().length, `agent median ${median(agentCpu).toFixed(2)} s, apiserver ${apiCpu.toFixed(1)} s`));
    out.push(measure(`scale: random cross-node pings answered, ${nodes} nodes`, ok, 'pings', 'pings sent', pairs, 'seed 1, one ping each, 2 s timeout'));
    out.push(measure(`scale: down, ${nodes} nodes`, downMs, 'ms', 'up --detach', upMs));

    // The same node count over BGP with two route reflectors: from up until every node routes to every block.
    const bgpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-bench-scale-bgp-'));
    try {
      t0 = performance.now();
      const bgp = await up({ ...opts, stateDir: bgpDir, podsPerNode: 0, backend: 'bgp', bgpTopology: 'route-reflector', bgpReflectors: 2, waitReady: false });
      const started = performance.now() - t0;
      await waitRoutesConverged(bgp, 300_000);
      const converged = performance.now() - t0 - started;
      say(`bgp, ${nodes} nodes, 2 route reflectors: agents up in ${(started / 1000).toFixed(1)} s, every route learned ${(converged / 1000).toFixed(1)} s later`);
      out.push(measure(`scale: BGP convergence after the agents are up, ${nodes} nodes, 2 route reflectors`, converged, 'ms', 'starting the agents', started));
    } finally {
      await down(bgpDir).catch(() => {});
      fs.rmSync(bgpDir, { recursive: true, force: true });
    }
  } finally {
    await down(stateDir).catch(() => {});
    fs.rmSync(stateDir, { recursive: true, force: true });
  }
  return out;
}
