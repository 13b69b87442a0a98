/**
 * `npm run bench`: measures podlab against what Node itself can do on the same
 * machine in the same run, and prints ratios (never absolute thresholds).
 *
 * - UDP echo throughput: pod-to-pod across nodes (through veth, cni0, routing,
 *   flannel.1, a real VXLAN datagram, and back) versus a raw Node UDP echo
 *   between two processes on loopback; same window of 32 datagrams in flight.
 * - Ping round-trip time: pod-to-pod across nodes versus a raw UDP ping-pong
 *   between two processes.
 * - TCP: cross-node pod-to-pod throughput and connection cost versus raw Node TCP (bench/tcp.ts).
 * - BGP: convergence at 10 and 30 nodes, full mesh versus route reflectors (bench/bgp.ts).
 * - The data plane during control-plane work: the worst pod ping round trip while
 *   kube-proxy syncs 10,000 Services in the same event loop (bench/sync-stall.ts).
 * - Capture: the data path's rate with capture support idle versus the same
 *   path with the hooks removed, and while capturing (bench/capture.ts).
 * - The raw-frame wire (root): bgp pod echo over raw frames versus the UDP wire (bench/netns-wire.ts).
 * - Backends: pod UDP echo on every registered backend in interleaved rounds, each median against VXLAN's (bench/backends.ts).
 *
 * `npm run bench -- --backends [--rounds R] [--backends-net 127.0.X.0/24]` runs
 * only the backend comparison (R interleaved rounds, 3 by default; the labs
 * take five /24s from the given one on, 127.0.174.0/24 by default).
 * `npm run bench -- --scale [--nodes N] [--pods-per-node M]` runs only the
 * big-lab measures instead (bench/scale.ts; 100 nodes x 10 pods by default).
 * - The apiserver's store: big-object patches, create cost as the store grows,
 *   restart (bench/store.ts); `npm run bench -- --store` runs only these.
 * - `npm run bench -- --services [iptables|ipvs|userspace ...]` runs only
 *   kube-proxy's engines at 10,000 Services (bench/services.ts), all modes
 *   unless some are named.
 */
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { callNode, execInPod } from '../cli/commands.ts';
import { ROOT, down, up } from '../lab/lab.ts';
import { benchBgp } from './bgp.ts';
import { benchBackends } from './backends.ts';
import { benchCapture } from './capture.ts';
import { benchTcp } from './tcp.ts';
import { benchServicesApart } from './services.ts';
import type { ProxyMode } from '../service-proxy/index.ts';
import { benchSyncStall } from './sync-stall.ts';
import { benchNetnsWire } from './netns-wire.ts';
import { benchScale } from './scale.ts';
import { benchStore } from './store.ts';
import { podEchoPps } from './pod-echo.ts';
import { measure, writeResults, RESULTS, type Measure } from './results.ts';

const N = Number(process.env.BENCH_PACKETS ?? 20_000);
const WINDOW = 32;
const PINGS = 50;

async function startEchoServer(): Promise<{ port: number; stop(): void }> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'bench/udp-echo-server.ts'), '127.0.0.1'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    let buf = '';
    child.stdout.on('data', (d) => {
      buf += d;
      const m = /"port":(\d+)/.exec(buf);
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', () => reject(new Error('echo server exited')));
  });
  return { port, stop: () => child.kill('SIGTERM') };
}

/** Raw Node UDP: echo throughput with WINDOW in flight. */
async function rawUdpPps(port: number): Promise<number> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  const payload = Buffer.alloc(64, 0x61);
  let sent = 0;
  let received = 0;
  const start = performance.now();
  await new Promise<void>((resolve) => {
    let last = 0;
    const watchdog = setInterval(() => {
      if (received === last && sent < N) {
        sent++;
        sock.send(payload, port, '127.0.0.1');
      }
      last = received;
    }, 50);
    sock.on('message', () => {
      received++;
      if (received >= N) {
        clearInterval(watchdog);
        resolve();
      } else if (sent < N) {
        sent++;
        sock.send(payload, port, '127.0.0.1');
      }
    });
    for (; sent < WINDOW; sent++) sock.send(payload, port, '127.0.0.1');
  });
  const pps = received / ((performance.now() - start) / 1000);
  sock.close();
  return pps;
}

/** Raw Node UDP: ping-pong RTT, one at a time, 10 ms apart (as ping -i 0.01). */
async function rawUdpRtt(port: number): Promise<number> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  const rtts: number[] = [];
  for (let i = 0; i < PINGS; i++) {
    const t0 = performance.now();
    await new Promise<void>((resolve) => {
      sock.once('message', () => resolve());
      sock.send(Buffer.alloc(64), port, '127.0.0.1');
    });
    rtts.push(performance.now() - t0);
    await new Promise((r) => setTimeout(r, 10));
  }
  sock.close();
  return rtts.reduce((a, b) => a + b, 0) / rtts.length;
}

/** The value of `--flag N`, or the default. */
function flag(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  const v = i < 0 ? dflt : Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 1) throw new Error(`${name}: a positive integer, got '${process.argv[i + 1]}'`);
  return v;
}

/** The value of `--flag VALUE`, if given. */
function option(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i < 0 ? undefined : process.argv[i + 1];
}

function report(measures: Measure[]): void {
  writeResults(measures);
  for (const x of measures) {
    process.stdout.write(`${x.name}: ${x.value} ${x.unit} | baseline (${x.baselineName}): ${x.baseline} ${x.unit} | ratio ${x.ratio}${x.note ? ` (${x.note})` : ''}\n`);
  }
  process.stdout.write(`written to ${RESULTS}\n`);
}

async function main(): Promise<void> {
  if (process.argv.includes('--scale')) return report(await benchScale(flag('--nodes', 100), flag('--pods-per-node', 10)));
  if (process.argv.includes('--store')) return report(await benchStore());
  const backendOpts = { rounds: flag('--rounds', 3), firstNet: option('--backends-net') };
  if (process.argv.includes('--backends')) return report(await benchBackends(backendOpts));
  if (process.argv.includes('--sync-stall')) return report(await benchSyncStall());
  if (process.argv.includes('--services')) {
    const modes = process.argv.filter((a): a is ProxyMode => a === 'iptables' || a === 'ipvs' || a === 'userspace');
    return report(await benchServicesApart(modes.length ? modes : undefined));
  }
  const measures: Measure[] = [];
  const labNet = option('--lab-net') ?? '127.0.99.0/24';
  const echo = await startEchoServer();
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-bench-'));
  try {
    const rawPps = await rawUdpPps(echo.port);
    const rawRtt = await rawUdpRtt(echo.port);
    process.stderr.write(`baseline: raw UDP echo ${rawPps.toFixed(0)} pps, rtt ${rawRtt.toFixed(3)} ms\n`);

    await up({ stateDir, nodes: 2, podsPerNode: 1, manifests: [], labNet, apiPort: 0, clusterCidr: '10.244.0.0/16', vxlanPort: 8472, seed: 1, mtu: 1500, waitReady: true });
    const quiet = { stdout: () => {}, stderr: (s: string) => process.stderr.write(s) };
    const podPps = await podEchoPps(stateDir, N, WINDOW);
    // How many of those packets each node answered from its flow cache (absent when it runs without one).
    for (const node of ['node-1', 'node-2']) {
      const { flows } = await callNode<{ flows?: { hits: number; misses: number; recorded: number } }>(stateDir, node, 'stats', {});
      process.stderr.write(`${node} flow cache: ${flows ? `${flows.hits} hits, ${flows.misses} misses, ${flows.recorded} recorded` : 'off'}\n`);
    }

    let pingOut = '';
    await execInPod(stateDir, 'pod-1a', ['ping', '-q', '-c', String(PINGS), '-i', '0.01', '10.244.2.2'], { stdout: (s) => (pingOut += s), stderr: quiet.stderr });
    const m = /rtt min\/avg\/max\/mdev = [\d.]+\/([\d.]+)\//.exec(pingOut);
    const podRtt = m ? Number(m[1]) : NaN;

    measures.push(measure('cross-node pod UDP echo throughput (VXLAN)', podPps, 'packets/s', 'raw Node UDP echo between two processes', rawPps, `${N} datagrams of 64 bytes, ${WINDOW} in flight`));
    measures.push(measure('cross-node pod ping RTT (VXLAN)', podRtt, 'ms', 'raw Node UDP ping-pong between two processes', rawRtt, `${PINGS} pings, 10 ms apart; ratio > 1 = slower`));
  } finally {
    echo.stop();
    await down(stateDir);
    fs.rmSync(stateDir, { recursive: true, force: true });
  }
  if (process.argv.includes('--echo')) return report(measures);
  measures.push(...(await benchBackends(backendOpts)));
  measures.push(...(await benchCapture()));
  measures.push(...(await benchBgp()));
  measures.push(...(await benchTcp()));
  measures.push(...(await benchServicesApart()));
  measures.push(...(await benchSyncStall()));
  measures.push(...(await benchNetnsWire()));
  measures.push(...(await benchStore()));
  report(measures);
}

await main();
