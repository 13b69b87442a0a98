/**
 * `node --import tsx bench/ping-hops.ts [--lab-net CIDR] [--rounds R]`: where one cross-node pod ping's round
 * trip goes, hop by hop, against the raw Node UDP ping-pong of `npm run bench -- --echo` at the same gap.
 * A diagnostic, not a bench figure: every process involved (this one, the raw echo server, the lab's agents
 * through NODE_OPTIONS) preloads bench/hop-trace.mjs, which stamps each dgram send, its completion and each
 * datagram received with CLOCK_MONOTONIC, and the two programs' own start and end of their timing (ping's and
 * rawUdpRtt's hook). The data path itself has no tracing in it.
 *
 * Runs as the bench does: the lab's first 200 pings at 5 ms gaps (cold) after a raw ping-pong at 5 ms, then
 * 1,000 pings 2 ms apart untraced, then R rounds of raw and pod at 10 ms (50) and at 5 ms (200). Prints per run
 * the mean and median of each hop (µs), the programs' own mean RTT and each process's CPU per ping (/proc).
 * A 2-node lab on 127.0.222.0/24 by default.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT, down, up } from '../lab/lab.ts';
import { readLab } from '../lab/state.ts';
import { pidCpuMs } from './backends.ts';
import { podPingRtt } from './pod-echo.ts';
import { rawUdpRtt, startEchoServer } from './raw-udp.ts';
import { stopOnInterrupt } from './interrupt.ts';

type Kind = 'send' | 'sent' | 'recv' | 'app-send' | 'app-reply';
/** One stamped event: kind, local port, datagram length (or the program's sequence number), time in ns. */
type Event = [Kind, number, number, number];
interface Tagged {
  who: 'origin' | 'peer';
  kind: Kind;
  port: number;
  len: number;
  t: number;
}

/** The hops of one round trip, each from the previous stamp (µs); `sendmsg` is a side figure, not a hop. */
const HOPS = ['app send -> origin send()', 'origin send() -> peer JS receive', 'peer receive -> peer send()', 'peer send() -> origin JS receive', 'origin receive -> app reply'] as const;
const SIDE = ['origin send() -> its completion', 'peer send() -> its completion'] as const;

function option(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i < 0 ? undefined : process.argv[i + 1];
}

const traceDir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-hops-'));
process.env.PODLAB_HOP_TRACE = traceDir;
const preload = path.join(ROOT, 'bench/hop-trace.mjs');
// The lab's processes and the raw echo server inherit the preload; this process loads it now.
process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} --import ${preload}`.trim();
await import(preload);

/** Has each process write what it recorded since the last dump, and reads it. */
async function dump(pids: number[]): Promise<Map<number, Event[]>> {
  for (const pid of pids) fs.rmSync(path.join(traceDir, `${pid}.json`), { force: true });
  for (const pid of pids) process.kill(pid, 'SIGUSR2');
  const out = new Map<number, Event[]>();
  for (let i = 0; i < 100 && out.size < pids.length; i++) {
    await new Promise((r) => setTimeout(r, 20));
    for (const pid of pids) {
      if (out.has(pid)) continue;
      try {
        out.set(pid, (JSON.parse(fs.readFileSync(path.join(traceDir, `${pid}.json`), 'utf8')) as { events: Event[] }).events);
      } catch {
        // Not written yet (or half written): read again.
      }
    }
  }
  if (out.size < pids.length) throw new Error('ping-hops: a process did not dump its trace');
  return out;
}

/**
 * The round trips in a trace: from each program send, the origin's send() of a datagram of `len` bytes, the
 * peer's receive and send() of one, the origin's receive and the program's reply.
 */
function cycles(origin: Event[], peer: Event[], len: number): { hops: number[][]; side: number[][]; gapMs: number } {
  const all: Tagged[] = [...origin.map((e) => ({ who: 'origin' as const, kind: e[0], port: e[1], len: e[2], t: e[3] })), ...peer.map((e) => ({ who: 'peer' as const, kind: e[0], port: e[1], len: e[2], t: e[3] }))];
  all.sort((a, b) => a.t - b.t);
  const hops: number[][] = HOPS.map(() => []);
  const side: number[][] = SIDE.map(() => []);
  const sends = origin.filter((e) => e[0] === 'app-send').map((e) => e[3]);
  // The program's real gap between sends (timers fire late, and ping re-sleeps when one fires early).
  const gapMs = sends.length > 1 ? (sends[sends.length - 1] - sends[0]) / (sends.length - 1) / 1e6 : NaN;
  /** What each stage waits for, after the program's send: its stamp is the next hop's end. */
  const steps: [Tagged['who'], Kind][] = [
    ['origin', 'send'],
    ['peer', 'recv'],
    ['peer', 'send'],
    ['origin', 'recv'],
    ['origin', 'app-reply'],
  ];
  let st: number[] = [];
  let stage = -1;
  let oSent = NaN;
  let pSent = NaN;
  for (const e of all) {
    if (e.who === 'origin' && e.kind === 'app-send') {
      st = [e.t];
      stage = 0;
      oSent = pSent = NaN;
      continue;
    }
    if (stage < 0) continue;
    // A send's completion, once its send() is stamped: a side figure.
    if (e.kind === 'sent' && e.len === len) {
      if (e.who === 'origin' && stage >= 1 && Number.isNaN(oSent)) oSent = e.t;
      if (e.who === 'peer' && stage >= 3 && Number.isNaN(pSent)) pSent = e.t;
      continue;
    }
    const [who, kind] = steps[stage];
    if (e.who !== who || e.kind !== kind || (kind !== 'app-reply' && e.len !== len)) continue;
    st.push(e.t);
    if (++stage < steps.length) continue;
    for (let i = 0; i < HOPS.length; i++) hops[i].push((st[i + 1] - st[i]) / 1000);
    side[0].push((oSent - st[1]) / 1000);
    side[1].push((pSent - st[3]) / 1000);
    stage = -1;
  }
  return { hops, side, gapMs };
}

/** Minor page faults of process `pid` (every thread), from /proc. */
function minorFaults(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[7]);
}

function mean(xs: number[]): number {
  const v = xs.filter((x) => Number.isFinite(x));
  return v.reduce((a, b) => a + b, 0) / (v.length || 1);
}

function median(xs: number[]): number {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  return v.length ? v[v.length >> 1] : NaN;
}

interface Run {
  label: string;
  rttMs: number;
  hops: number[][];
  side: number[][];
  gapMs: number;
  cpu: { origin: number; peer: number };
  faults: { origin: number; peer: number };
}

function print(raw: Run, pod: Run): void {
  const row = (name: string, r: number[], p: number[]) =>
    `| ${name} | ${mean(r).toFixed(1)} / ${median(r).toFixed(1)} | ${mean(p).toFixed(1)} / ${median(p).toFixed(1)} | ${(mean(p) - mean(r)).toFixed(1)} |\n`;
  const total = (h: number[][]) => h[0].map((_, i) => h.reduce((a, x) => a + x[i], 0));
  let s = `\n### ${pod.label} (load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}; ${pod.hops[0].length} pod / ${raw.hops[0].length} raw round trips traced)\n\n`;
  s += '| hop (µs, mean / median) | raw ping-pong | pod ping | pod - raw (mean) |\n| --- | --- | --- | --- |\n';
  for (let i = 0; i < HOPS.length; i++) s += row(HOPS[i], raw.hops[i], pod.hops[i]);
  s += row('**round trip, stamped**', total(raw.hops), total(pod.hops));
  for (let i = 0; i < SIDE.length; i++) s += row(`(${SIDE[i]})`, raw.side[i], pod.side[i]);
  s += `| the program's own mean RTT | ${(raw.rttMs * 1000).toFixed(1)} | ${(pod.rttMs * 1000).toFixed(1)} | ratio ${(pod.rttMs / raw.rttMs).toFixed(2)} |\n`;
  s += `| the program's mean gap between sends (ms) | ${raw.gapMs.toFixed(3)} | ${pod.gapMs.toFixed(3)} | |\n`;
  s += `| CPU per ping, origin / peer process (µs, /proc) | ${raw.cpu.origin.toFixed(0)} / ${raw.cpu.peer.toFixed(0)} | ${pod.cpu.origin.toFixed(0)} / ${pod.cpu.peer.toFixed(0)} | |\n`;
  s += `| minor page faults per ping, origin / peer | ${raw.faults.origin.toFixed(2)} / ${raw.faults.peer.toFixed(2)} | ${pod.faults.origin.toFixed(2)} / ${pod.faults.peer.toFixed(2)} | |\n`;
  process.stdout.write(s);
}

const labNet = option('--lab-net') ?? '127.0.222.0/24';
const rounds = Number(option('--rounds') ?? 1);
stopOnInterrupt();
const echo = await startEchoServer();
const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-hops-lab-'));
try {
  await up({ stateDir, nodes: 2, podsPerNode: 1, manifests: [], labNet, apiPort: 0, clusterCidr: '10.244.0.0/16', vxlanPort: 8472, seed: 1, mtu: 1500, waitReady: true });
  const agents = (readLab(stateDir)?.procs ?? []).filter((p) => p.role === 'node').map((p) => p.pid);
  if (agents.length !== 2) throw new Error('ping-hops: expected two agents');
  const [a1, a2] = agents;
  const self = process.pid;
  const cpuSelf = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  };

  const rawRun = async (label: string, count: number, gapMs: number): Promise<Run> => {
    await dump([self, echo.pid]);
    const c0 = [cpuSelf(), pidCpuMs(echo.pid)];
    const f0 = [minorFaults(self), minorFaults(echo.pid)];
    const rttMs = await rawUdpRtt(echo.port, count, gapMs);
    const cpu = { origin: ((cpuSelf() - c0[0]) * 1000) / count, peer: ((pidCpuMs(echo.pid) - c0[1]) * 1000) / count };
    const faults = { origin: (minorFaults(self) - f0[0]) / count, peer: (minorFaults(echo.pid) - f0[1]) / count };
    const t = await dump([self, echo.pid]);
    return { label, rttMs, cpu, faults, ...cycles(t.get(self)!, t.get(echo.pid)!, 64) };
  };
  const podRun = async (label: string, count: number, gapMs: number): Promise<Run> => {
    await dump([a1, a2]);
    const c0 = [pidCpuMs(a1), pidCpuMs(a2)];
    const f0 = [minorFaults(a1), minorFaults(a2)];
    const rttMs = await podPingRtt(stateDir, count, gapMs);
    const cpu = { origin: ((pidCpuMs(a1) - c0[0]) * 1000) / count, peer: ((pidCpuMs(a2) - c0[1]) * 1000) / count };
    const faults = { origin: (minorFaults(a1) - f0[0]) / count, peer: (minorFaults(a2) - f0[1]) / count };
    const t = await dump([a1, a2]);
    // An echo of 56 bytes: ICMP 8 + IPv4 20 + Ethernet 14 + VXLAN 8 around it.
    return { label, rttMs, cpu, faults, ...cycles(t.get(a1)!, t.get(a2)!, 56 + 8 + 20 + 14 + 8) };
  };

  print(await rawRun('cold', 200, 5), await podRun('200 pings 5 ms apart, cold', 200, 5));
  await podPingRtt(stateDir, 1000, 2);
  for (let r = 0; r < rounds; r++) {
    for (const [count, gap] of [
      [50, 10],
      [200, 5],
    ]) {
      const raw = await rawRun('', count, gap);
      print(raw, await podRun(`${count} pings ${gap} ms apart, warm${rounds > 1 ? `, round ${r + 1}` : ''}`, count, gap));
    }
  }
} finally {
  echo.stop();
  await down(stateDir);
  fs.rmSync(stateDir, { recursive: true, force: true });
  fs.rmSync(traceDir, { recursive: true, force: true });
}
