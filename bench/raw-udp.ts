/**
 * The raw Node UDP baselines the pod figures are set against: an echo server
 * in its own process (bench/udp-echo-server.ts), echo throughput with a window
 * in flight, and a ping-pong round trip at a given gap.
 */
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT } from '../lab/lab.ts';
import { hopTrace } from '../common/hop-trace.ts';
import { benchChild } from './interrupt.ts';
import { floorEchoRequest, isFloorEchoReply } from './vxlan-floor-frame.ts';

export interface EchoServer {
  port: number;
  pid: number;
  stop(): void;
}

/** Starts the echo server; its stderr goes to `log` if given (the profiler reads the inspector's URL there). */
export function startEchoServer(log?: string): Promise<EchoServer> {
  return startServer('bench/udp-echo-server.ts', [], log);
}

/** Starts the ping floor's far end (bench/vxlan-echo-floor.ts): the least JavaScript that answers a ping in VXLAN. */
export function startVxlanFloor(): Promise<EchoServer> {
  return startServer('bench/vxlan-echo-floor.ts', []);
}

/** Starts the acknowledging receiver of {@link rawUdpBulk}, answering every `ackEvery`-th datagram. */
export function startAckServer(ackEvery: number): Promise<EchoServer> {
  return startServer('bench/udp-ack-server.ts', [String(ackEvery)]);
}

async function startServer(script: string, args: string[], log?: string): Promise<EchoServer> {
  const err = log ? fs.openSync(log, 'w') : 'inherit';
  const child = benchChild(spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, script), '127.0.0.1', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', err] }));
  const port = await new Promise<number>((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (d) => {
      buf += d;
      const m = /"port":(\d+)/.exec(buf);
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', () => reject(new Error('echo server exited')));
  });
  return { port, pid: child.pid!, stop: () => child.kill('SIGTERM') };
}

/** Echo throughput (datagrams echoed per second): `n` datagrams of 64 bytes, `window` in flight. */
export async function rawUdpPps(port: number, n: number, window: number): Promise<number> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  const payload = Buffer.alloc(64, 0x61);
  let sent = 0;
  let received = 0;
  const start = performance.now();
  await new Promise<void>((resolve) => {
    let last = 0;
    // A lost datagram would stall the window: refilled when nothing came back for 50 ms.
    const watchdog = setInterval(() => {
      if (received === last && sent < n) {
        sent++;
        sock.send(payload, port, '127.0.0.1');
      }
      last = received;
    }, 50);
    sock.on('message', () => {
      received++;
      if (received >= n) {
        clearInterval(watchdog);
        resolve();
      } else if (sent < n) {
        sent++;
        sock.send(payload, port, '127.0.0.1');
      }
    });
    for (; sent < window; sent++) sock.send(payload, port, '127.0.0.1');
  });
  const pps = received / ((performance.now() - start) / 1000);
  sock.close();
  return pps;
}

/**
 * One-way bulk in raw Node, shaped as a TCP transfer between agents is on the wire: `n` datagrams of `size`
 * bytes to the acknowledging receiver, at most `window` unacknowledged, the receiver answering every
 * `ackEvery`-th with the count it has. Datagrams received per second: what raw Node carries one way in
 * full-size datagrams, where the echo's pps (the TCP goal's ceiling) pays two sends and two receives each.
 */
export async function rawUdpBulk(port: number, n: number, window: number, size: number, ackEvery: number): Promise<number> {
  const sock = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20 });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  sock.connect(port, '127.0.0.1');
  await new Promise<void>((r) => sock.once('connect', () => r()));
  const payload = Buffer.alloc(size, 0x61);
  let sent = 0;
  let acked = 0;
  const start = performance.now();
  let lastAckAt = start;
  await new Promise<void>((resolve) => {
    const fill = () => {
      for (; sent < n && sent - acked < window; sent++) sock.send(payload);
    };
    let last = 0;
    // A lost datagram would hold the count below what was sent: after 50 ms without an answer, all is taken as come.
    const watchdog = setInterval(() => {
      if (acked === last) {
        acked = sent;
        progress();
      }
      last = acked;
    }, 50);
    const progress = () => {
      if (acked < n) return fill();
      clearInterval(watchdog);
      resolve();
    };
    sock.on('message', (m) => {
      acked = Math.max(acked, m.readDoubleBE(0));
      lastAckAt = performance.now();
      progress();
    });
    fill();
  });
  // The last few datagrams past the receiver's last multiple of ackEvery were taken by the watchdog's wait: not counted.
  const pps = Math.floor(n / ackEvery) * ackEvery / ((lastAckAt - start) / 1000);
  sock.close();
  return pps;
}

/** Ping-pong: mean round trip (ms) of `n` datagrams of 64 bytes, one at a time, `gapMs` apart (as `ping -i`). */
export function rawUdpRtt(port: number, n: number, gapMs: number): Promise<number> {
  return pingPong(port, n, gapMs, () => Buffer.alloc(64));
}

/**
 * The ping floor's round trip (ms), timed as {@link rawUdpRtt}'s: `n` VXLAN-wrapped ICMP echoes to
 * bench/vxlan-echo-floor.ts, each built inside the timing as ping builds its own, each reply checked (type, id,
 * sequence, checksum).
 */
export function floorPingRtt(port: number, n: number, gapMs: number): Promise<number> {
  const id = process.pid & 0xffff;
  return pingPong(port, n, gapMs, (i) => floorEchoRequest(id, i & 0xffff), (m, i) => isFloorEchoReply(m, id, i & 0xffff));
}

/**
 * Mean round trip (ms) of `n` datagrams, one at a time, `gapMs` apart: `request(i)` is built inside the timing;
 * a reply that `answers` refuses fails the run.
 */
async function pingPong(port: number, n: number, gapMs: number, request: (i: number) => Buffer, answers?: (reply: Buffer, i: number) => boolean): Promise<number> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  let sum = 0;
  // bench/hop-trace.mjs's hook, when preloaded (bench/ping-hops.ts): stamps where the timing starts and ends, as ping's.
  const trace = hopTrace();
  try {
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      trace?.('send', i);
      await new Promise<void>((resolve, reject) => {
        sock.once('message', (m: Buffer) => (!answers || answers(m, i) ? resolve() : reject(new Error(`bench: datagram ${i} answered wrongly from port ${port}`))));
        sock.send(request(i), port, '127.0.0.1');
      });
      sum += performance.now() - t0;
      trace?.('reply', i);
      await new Promise((r) => setTimeout(r, gapMs));
    }
  } finally {
    sock.close();
  }
  return sum / n;
}
