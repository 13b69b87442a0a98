/**
 * The backends side by side: one 2-node local lab per registered backend, all
 * up at once, the same cross-node pod UDP echo load on each (bench/pod-echo.ts)
 * in interleaved rounds (each round visits every backend, starting one further
 * along), so a busy moment of a shared machine falls on all of them alike. Each
 * backend's median is set against the default backend's (VXLAN) in the same
 * run. flannel's udp backend pays flanneld's crossings on every packet: four per
 * node, each a copy posted to flanneld's own thread or back; the routed
 * backends save the encapsulation.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BACKEND_NAMES, DEFAULT_BACKEND } from '../backends/registry.ts';
import { down, up } from '../lab/lab.ts';
import { readLab } from '../lab/state.ts';
import { Cidr } from '../packet/cidr.ts';
import { intToIpv4 } from '../packet/addr.ts';
import { podEchoPps } from './pod-echo.ts';
import { measure, median, type Measure } from './results.ts';

const N = Number(process.env.BENCH_BACKEND_PACKETS ?? 5_000);
const WINDOW = 32;
/** USER_HZ, the unit of /proc/PID/stat's times (`getconf CLK_TCK`: 100 on Linux). */
const CLOCK_TICKS = 100;

export interface BackendBenchOptions {
  /** The first lab's /24; the others take the ones after it (default 127.0.174.0/24). */
  firstNet?: string;
  /** Rounds over all backends (default 3); each backend's figure is its median. */
  rounds?: number;
}

export async function benchBackends(o: BackendBenchOptions = {}): Promise<Measure[]> {
  const rounds = o.rounds ?? 3;
  const first = Cidr.parse(o.firstNet ?? '127.0.174.0/24');
  if (first.prefixLen !== 24) throw new Error(`the backends' lab nets are /24s: ${o.firstNet}`);
  const labs: { backend: string; stateDir: string }[] = [];
  const samples = new Map<string, number[]>(BACKEND_NAMES.map((b) => [b, []]));
  const cpu = new Map<string, number[]>(BACKEND_NAMES.map((b) => [b, []]));
  try {
    for (const [i, backend] of BACKEND_NAMES.entries()) {
      const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), `podlab-bench-${backend}-`));
      labs.push({ backend, stateDir });
      const labNet = `${intToIpv4((first.network + i * 256) >>> 0)}/24`;
      await up({ stateDir, nodes: 2, podsPerNode: 1, manifests: [], labNet, apiPort: 0, clusterCidr: '10.244.0.0/16', vxlanPort: 8472, seed: 1, mtu: 1500, waitReady: true, backend });
    }
    for (let r = 0; r < rounds; r++) {
      for (let k = 0; k < labs.length; k++) {
        const { backend, stateDir } = labs[(r + k) % labs.length];
        const cpu0 = agentCpuMs(stateDir);
        const pps = await podEchoPps(stateDir, N, WINDOW);
        const us = ((agentCpuMs(stateDir) - cpu0) * 1000) / N;
        samples.get(backend)!.push(pps);
        cpu.get(backend)!.push(us);
        process.stderr.write(`round ${r + 1}/${rounds} backend ${backend}: ${pps.toFixed(0)} pps, ${us.toFixed(0)} µs of agent CPU per datagram echoed\n`);
      }
    }
  } finally {
    for (const { stateDir } of labs) {
      await down(stateDir);
      fs.rmSync(stateDir, { recursive: true, force: true });
    }
  }
  const base = median(samples.get(DEFAULT_BACKEND)!);
  const baseCpu = median(cpu.get(DEFAULT_BACKEND)!);
  const list = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(', ');
  return BACKEND_NAMES.flatMap((b) => [
    measure(`cross-node pod UDP echo throughput, --backend ${b}`, median(samples.get(b)!), 'packets/s', `--backend ${DEFAULT_BACKEND}, same run`, base, `median of ${rounds} interleaved rounds (${list(samples.get(b)!)}); ${N} datagrams of 64 bytes, ${WINDOW} in flight; a 2-node local lab per backend`),
    measure(`agent CPU per cross-node pod UDP echo, --backend ${b}`, median(cpu.get(b)!), 'µs', `--backend ${DEFAULT_BACKEND}, same run`, baseCpu, `both node agents' CPU time (all their threads) over the echo above, per datagram echoed; median of ${rounds} rounds (${list(cpu.get(b)!)}); ratio > 1 = costlier`),
  ]);
}

/**
 * CPU time the lab's node agents have used, all threads (flanneld's too), in
 * ms: what the path costs, which a throughput figure on a busy machine, with
 * threads running in parallel, can hide.
 */
export function agentCpuMs(stateDir: string): number {
  let ms = 0;
  for (const p of readLab(stateDir)?.procs ?? []) if (p.role === 'node') ms += pidCpuMs(p.pid);
  return ms;
}

/**
 * CPU time (user + system, every thread) process `pid` has used, in ms, to the nanosecond: the scheduler's own
 * count of each thread's run time (/proc/PID/task/TID/schedstat), where /proc/PID/stat counts 10 ms clock ticks
 * and a few hundred pings cost only a few. A thread that ends meanwhile takes its time with it (the benches'
 * processes keep theirs); without schedstat (a kernel without CONFIG_SCHED_INFO), the ticks.
 */
export function pidCpuMs(pid: number): number {
  let ns = 0;
  let read = 0;
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      read++;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
  return read ? ns / 1e6 : pidCpuMsTicks(pid);
}

/** The same from /proc/PID/stat, in clock ticks (threads that ended included). */
function pidCpuMsTicks(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // After the command name in parentheses: state is field 3, utime and stime fields 14 and 15.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * (1000 / CLOCK_TICKS);
}

/** `npx tsx bench/backends.ts`: just this comparison. */
if (import.meta.url === `file://${process.argv[1]}`) {
  for (const x of await benchBackends()) process.stdout.write(`${x.name}: ${x.value} ${x.unit} | ratio to ${x.baselineName} ${x.ratio} (${x.note})\n`);
}
