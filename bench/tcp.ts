/**
 * TCP through the emulator versus Node's own TCP, measured in the same run.
 *
 * - Bulk throughput: a pod on node-1 sends BENCH_TCP_BYTES (default 32 MiB)
 *   to a discard listener in a pod on node-2, through the pod stacks' TCP,
 *   veth, cni0, flannel.1 and real VXLAN datagrams on UDP (two in-process
 *   NodeDataPlanes on 127.0.93.0/24, as test/dataplane.test.ts builds them),
 *   until the receiver has seen the FIN. Baseline: the same bytes over a raw
 *   Node TCP connection to a discard server in another process on loopback.
 * - Request round trip: connect, one small request, the reply, close
 *   (what `curl` does), median of BENCH_TCP_RPCS; the same against a raw
 *   Node TCP echo-once server.
 *
 * The emulated side runs both nodes in this one process (one event loop for
 * sender, receiver and both underlays), the baseline two processes; the
 * ratio is what matters, and it is meant to be read, not thresholded.
 *
 * Plug in: `import { benchTcp } from './tcp.ts'; writeResults(await benchTcp())`.
 */
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PodNet } from '../netstack/pod-net.ts';
import type { TcpSocket } from '../netstack/tcp/socket.ts';
import { measure, type Measure } from './results.ts';
import { rawUdpPps, startEchoServer } from './raw-udp.ts';
import { twoNodes } from './two-nodes.ts';
import { benchChild } from './interrupt.ts';

export const BYTES = Number(process.env.BENCH_TCP_BYTES ?? 32 * 1024 * 1024);
const RPCS = Number(process.env.BENCH_TCP_RPCS ?? 200);
const CHUNK = 64 * 1024;
export const NET = '127.0.93.0/24';
const HERE = path.dirname(fileURLToPath(import.meta.url));

const payload = Buffer.alloc(CHUNK, 0x5a);

/** Bytes per second from pod a to a discard listener in pod b, until b sees the FIN. */
export async function emulatedThroughput(a: PodNet, b: PodNet, port: number): Promise<number> {
  let t0 = 0;
  const done = new Promise<number>((resolve, reject) => {
    const server = b.tcp.listen(port, {}, (s) => {
      let got = 0;
      s.on('data', (d) => (got += d.length));
      s.on('end', () => {
        server.close();
        if (got !== BYTES) reject(new Error(`received ${got} of ${BYTES} bytes`));
        resolve(performance.now() - t0);
      });
    });
  });
  const c = a.tcp.connect({ host: b.ip, port });
  c.on('error', (e) => {
    throw e;
  });
  let sent = 0;
  const pump = () => {
    while (sent < BYTES) {
      const n = Math.min(CHUNK, BYTES - sent);
      sent += n;
      if (!c.write(n === CHUNK ? payload : payload.subarray(0, n))) return;
    }
    c.end();
  };
  c.on('drain', pump);
  c.on('connect', () => {
    t0 = performance.now();
    pump();
  });
  const ms = await done;
  return (BYTES * 1000) / ms;
}

/** Median ms of connect + 16-byte request + reply + close, pod a -> pod b. */
async function emulatedRpc(a: PodNet, b: PodNet, port: number): Promise<number> {
  const server = b.tcp.listen(port, {}, (s) => s.on('data', (d) => s.end(d)));
  const times: number[] = [];
  let last: TcpSocket | undefined;
  for (let i = 0; i < RPCS; i++) {
    const t0 = performance.now();
    await new Promise<void>((resolve, reject) => {
      const c = a.tcp.connect({ host: b.ip, port });
      last = c;
      c.on('connect', () => c.write('ping-ping-ping!\n'));
      c.on('data', () => {});
      c.on('end', () => resolve());
      c.on('error', reject);
    });
    times.push(performance.now() - t0);
  }
  // The last exchange's closing segments are still on their way (the client ACKs the server's FIN at the end of
  // its receive batch): closing the nodes before they land left the server retransmitting its FIN into a closed
  // lab until its user timeout, an ETIMEDOUT printed 15 s into the next figures.
  await new Promise<void>((r) => (!last || last.conn.state === 'CLOSED' ? r() : last.once('close', () => r())));
  server.close();
  return median(times);
}

function median(xs: number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  return s[s.length >> 1];
}

async function startChild(script: string, ...args: string[]): Promise<{ port: number; stop(): void }> {
  const child = benchChild(spawn(process.execPath, ['--import', 'tsx', path.join(HERE, script), '127.0.0.1', ...args], { cwd: path.join(HERE, '..'), stdio: ['ignore', 'pipe', 'inherit'] }));
  const port = await new Promise<number>((resolve, reject) => {
    let buf = '';
    child.stdout.on('data', (d) => {
      buf += d;
      const m = /"port":(\d+)/.exec(buf);
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', () => reject(new Error(`${script} exited`)));
  });
  return { port, stop: () => child.kill('SIGTERM') };
}

/** Bytes per second over raw Node TCP to the discard server, until it closes after our FIN. */
async function rawThroughput(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    let t0 = 0;
    let sent = 0;
    const pump = () => {
      while (sent < BYTES) {
        const n = Math.min(CHUNK, BYTES - sent);
        sent += n;
        if (!c.write(n === CHUNK ? payload : payload.subarray(0, n))) return;
      }
      c.end();
    };
    c.on('connect', () => {
      t0 = performance.now();
      pump();
    });
    c.on('drain', pump);
    c.on('data', () => {});
    c.on('end', () => resolve((BYTES * 1000) / (performance.now() - t0)));
    c.on('error', reject);
  });
}

async function rawRpc(port: number): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < RPCS; i++) {
    const t0 = performance.now();
    await new Promise<void>((resolve, reject) => {
      const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      c.on('connect', () => c.write('ping-ping-ping!\n'));
      c.on('data', () => {});
      c.on('end', () => {
        c.end();
        resolve();
      });
      c.on('error', reject);
    });
    times.push(performance.now() - t0);
  }
  return median(times);
}

/**
 * TCP measures, each against Node's own TCP measured in the same run; and the
 * goodput against the ceiling a datagram rate sets: the raw Node UDP echo's
 * datagrams per second (`rawUdpEchoPps`, from the same run; measured here if
 * not given) times the pods' MSS, as if every echoed datagram were a full segment.
 */
export async function benchTcp(rawUdpEchoPps?: number): Promise<Measure[]> {
  if (!rawUdpEchoPps) {
    const echo = await startEchoServer();
    try {
      rawUdpEchoPps = await rawUdpPps(echo.port, 20_000, 32);
    } finally {
      echo.stop();
    }
  }
  const sink = await startChild('tcp-sink-server.ts', 'discard');
  const replier = await startChild('tcp-sink-server.ts', 'reply');
  let rawBps: number;
  let rawMs: number;
  try {
    rawBps = await rawThroughput(sink.port);
    rawMs = await rawRpc(replier.port);
  } finally {
    sink.stop();
    replier.stop();
  }
  const lab = await twoNodes(NET, 93);
  let emuBps: number;
  let emuMs: number;
  // The pods' MSS: their MTU (the lab's, less VXLAN's 50 bytes) less the IPv4 and TCP headers.
  const mss = lab.a.eth0.mtu - 40;
  try {
    await emulatedThroughput(lab.a, lab.b, 5000); // warm-up: ARP, JIT
    emuBps = await emulatedThroughput(lab.a, lab.b, 5001);
    emuMs = await emulatedRpc(lab.a, lab.b, 5002);
  } finally {
    await lab.close();
  }
  const mb = (bps: number) => bps / 1e6;
  return [
    measure(
      'tcp.cross-node.throughput',
      mb(emuBps),
      'MB/s',
      'raw Node TCP, two processes on loopback',
      mb(rawBps),
      `${BYTES} bytes pod -> pod across VXLAN (two in-process nodes); higher is better`,
    ),
    measure(
      'tcp.cross-node.throughput vs UDP echo ceiling',
      mb(emuBps),
      'MB/s',
      `raw Node UDP echo pps x MSS (${Math.round(rawUdpEchoPps)} x ${mss} B)`,
      mb(rawUdpEchoPps * mss),
      'the goodput above against what the raw UDP echo rate of this run would carry in full segments; higher is better',
    ),
    measure(
      'tcp.cross-node.request-rtt',
      emuMs,
      'ms',
      'raw Node TCP connect + request + reply + close',
      rawMs,
      `median of ${RPCS}: SYN, SYN-ACK, ACK, 16 B each way, FINs; above 1 = slower`,
    ),
  ];
}

// `node --import tsx bench/tcp.ts` runs it alone.
if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  benchTcp().then(
    (ms) => {
      for (const m of ms) console.log(`${m.name}: ${m.value} ${m.unit} (baseline ${m.baseline} ${m.unit}: ${m.baselineName}; ratio ${m.ratio})`);
    },
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}
