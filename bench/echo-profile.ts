/**
 * `node --import tsx bench/echo-profile.ts [--lab-net CIDR] [--rounds R] [--ping [--cold]] [--loud] [--profile DIR]`:
 * where a cross-node pod UDP echo's CPU goes. Brings up a 2-node lab, then in
 * R interleaved rounds measures CPU time per echoed datagram (every thread's
 * run time, /proc/PID/task/TID/schedstat: backends.ts pidCpuMs) of
 * - the raw Node echo: the echo server process plus this process's client;
 * - the pod echo: both node agents (client pod on node-1, echo pod on node-2);
 *   with --loud also with the echo pod printing every datagram (as it did).
 * With --ping, instead: pod ping against the raw ping-pong at 10 and 5 ms gaps,
 * RTT and CPU per ping.
 * With --profile DIR, a last round runs with both agents and the raw echo
 * server under the inspector's CPU profiler (bench/cpu-profile.ts) and writes
 * their .cpuprofile files, top self-time summaries and a breakdown per echoed
 * datagram (bench/profile-breakdown.ts) there.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT, down, up } from '../lab/lab.ts';
import { readLab } from '../lab/state.ts';
import { agentCpuMs, pidCpuMs } from './backends.ts';
import type { Profile } from './cpu-profile.ts';
import { breakdown } from './profile-breakdown.ts';
import { podEchoPps, podPingRtt } from './pod-echo.ts';
import { rawUdpPps, rawUdpRtt, startEchoServer } from './raw-udp.ts';
import { benchChild, stopOnInterrupt } from './interrupt.ts';

const N = Number(process.env.BENCH_PACKETS ?? 20_000);
const WINDOW = 32;
const POD_ECHOES = 60_000;

function option(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i < 0 ? undefined : process.argv[i + 1];
}

function profile(pid: number, seconds: number, out: string, log: string): Promise<string> {
  return new Promise((resolve) => {
    const p = benchChild(spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'bench/cpu-profile.ts'), String(pid), String(seconds), out, log], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] }));
    let text = '';
    p.stdout.on('data', (d) => (text += d));
    p.on('exit', () => resolve(text));
  });
}

const selfMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

async function main(): Promise<void> {
  const labNet = option('--lab-net') ?? '127.0.99.0/24';
  const rounds = Number(option('--rounds') ?? 3);
  const profDir = option('--profile');
  // Each process opens its inspector on a free port of its own when profiled (SIGUSR1), announced in its log.
  if (profDir) fs.mkdirSync(profDir, { recursive: true });
  if (profDir) process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} --inspect-port=0`;
  const echo = await startEchoServer(profDir ? path.join(profDir, 'raw-echo-server.log') : undefined);
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-echoprof-'));
  try {
    await up({ stateDir, nodes: 2, podsPerNode: 1, manifests: [], labNet, apiPort: 0, clusterCidr: '10.244.0.0/16', vxlanPort: 8472, seed: 1, mtu: 1500, waitReady: true });
    await rawUdpPps(echo.port, 2000, WINDOW);
    await podEchoPps(stateDir, 2000, WINDOW);
    for (let r = 0; r < (process.argv.includes('--ping') ? 0 : rounds); r++) {
      const a0 = selfMs() + pidCpuMs(echo.pid);
      const rawPps = await rawUdpPps(echo.port, N, WINDOW);
      const rawUs = ((selfMs() + pidCpuMs(echo.pid) - a0) * 1000) / N;
      for (const quiet of process.argv.includes('--loud') ? [true, false] : [true]) {
        const c0 = agentCpuMs(stateDir);
        const podPps = await podEchoPps(stateDir, N, WINDOW, quiet);
        const podUs = ((agentCpuMs(stateDir) - c0) * 1000) / N;
        process.stdout.write(`round ${r + 1}: raw ${rawPps.toFixed(0)} pps ${rawUs.toFixed(1)} µs/echo | pod${quiet ? '' : ' (echo server printing)'} ${podPps.toFixed(0)} pps ${podUs.toFixed(1)} µs/echo (agents) | pps ratio ${(podPps / rawPps).toFixed(3)}\n`);
      }
    }
    if (process.argv.includes('--ping')) {
      // As the bench does (run.ts): the ping's path warmed up first, unless --cold.
      if (!process.argv.includes('--cold')) await podPingRtt(stateDir, 1000, 2);
      for (let r = 0; r < rounds; r++) {
        for (const gap of [10, 5]) {
          const n = gap === 10 ? 50 : 200;
          const raw0 = selfMs() + pidCpuMs(echo.pid);
          const raw = await rawUdpRtt(echo.port, n, gap);
          const rawUs = ((selfMs() + pidCpuMs(echo.pid) - raw0) * 1000) / n;
          const c0 = agentCpuMs(stateDir);
          const pod = await podPingRtt(stateDir, n, gap);
          const us = ((agentCpuMs(stateDir) - c0) * 1000) / n;
          process.stdout.write(`round ${r + 1}: ${n} pings ${gap} ms apart: raw ${raw.toFixed(3)} ms, ${rawUs.toFixed(0)} µs CPU per ping | pod ${pod.toFixed(3)} ms, agents ${us.toFixed(0)} µs CPU per ping | ratio ${(pod / raw).toFixed(2)}\n`);
        }
      }
    }
    if (profDir) {
      fs.mkdirSync(profDir, { recursive: true });
      const agents = (readLab(stateDir)?.procs ?? []).filter((p) => p.role === 'node');
      // One long echo inside the profiles' window, so that they see the echo and little else.
      const profs = agents.map((a) => profile(a.pid, 7, path.join(profDir, `${a.name}.cpuprofile`), a.log));
      await new Promise((r) => setTimeout(r, 700));
      await podEchoPps(stateDir, POD_ECHOES, WINDOW);
      const outs = await Promise.all(profs);
      const rawProf = profile(echo.pid, 6, path.join(profDir, 'raw-echo-server.cpuprofile'), path.join(profDir, 'raw-echo-server.log'));
      await new Promise((r) => setTimeout(r, 1000));
      for (let i = 0; i < 3; i++) await rawUdpPps(echo.port, 40_000, WINDOW);
      outs.push(await rawProf);
      const read = (name: string) => JSON.parse(fs.readFileSync(path.join(profDir, `${name}.cpuprofile`), 'utf8')) as Profile;
      for (const a of agents) outs.push(`${a.name}, by category:\n${breakdown(read(a.name), POD_ECHOES)}`);
      outs.push(`raw echo server, by category:\n${breakdown(read('raw-echo-server'), 120_000)}`);
      fs.writeFileSync(path.join(profDir, 'summary.txt'), outs.join('\n'));
      process.stdout.write(outs.join('\n'));
    }
  } finally {
    echo.stop();
    await down(stateDir);
    fs.rmSync(stateDir, { recursive: true, force: true });
  }
}

stopOnInterrupt();
await main();
