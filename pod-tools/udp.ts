/**
 * `udp send DEST PORT [MESSAGE] [-n COUNT] [-i INTERVAL] [-p SRCPORT]` and
 * `udp listen PORT [-n COUNT] [-w TIMEOUT] [--echo] [-q]`: datagrams over the pod's
 * own UDP sockets. `send` reports ICMP errors (port unreachable, ...) that come
 * back for its datagrams; `listen` prints each datagram with its source, or
 * with -q only how many it got when it ends (an echo server for `udp bench`,
 * which would otherwise spend most of its time streaming one line per datagram).
 */
import { parseArgs } from 'node:util';
import { isValidIpv4 } from '../packet/addr.ts';
import type { UdpError } from '../netstack/ipv4/ip-stack.ts';
import { sleep } from './net-util.ts';
import { UsageError, type ExecContext } from './types.ts';

const USAGE =
  'Usage: udp send DEST PORT [MESSAGE] [-n COUNT] [-i INTERVAL] [-p SRCPORT] [-s SIZE]\n' +
  '       udp listen PORT [-n COUNT] [-w TIMEOUT] [--echo] [-q]\n' +
  '       udp bench DEST PORT [-n COUNT] [-W WINDOW] [-s SIZE]   (against `udp listen PORT --echo`; prints JSON)';

function port(v: string | undefined, what: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new UsageError(`udp: invalid ${what} '${v ?? ''}': must be 1-65535`);
  return n;
}


export async function udp(ctx: ExecContext): Promise<number> {
  const [sub, ...rest] = ctx.argv.slice(1);
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: { n: { type: 'string' }, i: { type: 'string' }, p: { type: 'string' }, w: { type: 'string' }, W: { type: 'string' }, s: { type: 'string' }, echo: { type: 'boolean' }, q: { type: 'boolean' } },
  });
  const stack = ctx.pod.stack;
  if (sub === 'send') {
    const [dest, dport, ...msg] = positionals;
    if (!dest || !isValidIpv4(dest)) throw new UsageError(USAGE);
    const dstPort = port(dport, 'port');
    const count = values.n ? Number(values.n) : 1;
    const intervalMs = (values.i ? Number(values.i) : 1) * 1000;
    if (!Number.isInteger(count) || count < 1) throw new UsageError(`udp: invalid count '${values.n}'`);
    // -s pads each message with '.' to SIZE bytes (the default text keeps its sequence number first).
    const size = values.s === undefined ? 0 : Number(values.s);
    if (!Number.isInteger(size) || size < 0 || size > 65507) throw new UsageError(`udp: invalid size '${values.s}': must be 0-65507`);
    const errors: UdpError[] = [];
    const sock = stack.bindUdp(values.p ? port(values.p, 'source port') : 0, {
      message: (m) => ctx.stdout(`reply from ${m.srcIp}:${m.srcPort}: ${m.data.toString()}\n`),
      error: (e) => {
        errors.push(e);
        ctx.stdout(`From ${e.from}: ${e.type === 'time-exceeded' ? 'Time to live exceeded' : e.code === 3 ? 'Destination Port Unreachable' : `Destination Unreachable (code ${e.code})`}\n`);
      },
    });
    try {
      for (let i = 1; i <= count && !ctx.signal.aborted; i++) {
        const text = (msg.length ? msg.join(' ') : `hello ${i} from ${ctx.pod.opts.name}`).padEnd(size, '.');
        const r = stack.sendUdp(sock.port, dest, dstPort, Buffer.from(text));
        if (!r.ok) {
          ctx.stderr(`udp: send: ${r.error === 'ENETUNREACH' ? 'Network is unreachable' : r.error === 'EMSGSIZE' ? `Message too long (mtu ${r.mtu})` : r.error}\n`);
          return 1;
        }
        ctx.stdout(`sent ${text.length} bytes to ${dest}:${dstPort} from port ${sock.port}\n`);
        await sleep(ctx, i < count ? intervalMs : 200);
      }
    } finally {
      sock.close();
    }
    return errors.length ? 1 : 0;
  }
  if (sub === 'listen') {
    const p = port(positionals[0], 'port');
    const count = values.n ? Number(values.n) : Infinity;
    const timeoutMs = values.w ? Number(values.w) * 1000 : Infinity;
    let got = 0;
    let done: () => void = () => {};
    const finished = new Promise<void>((r) => (done = r));
    let sock: { port: number; close(): void };
    try {
      sock = stack.bindUdp(p, {
        message: (m) => {
          got++;
          if (!values.q) ctx.stdout(`from ${m.srcIp}:${m.srcPort}: ${m.data.toString()}\n`);
          if (values.echo) stack.sendUdp(p, m.srcIp, m.srcPort, m.data);
          if (got >= count) done();
        },
      });
    } catch (e) {
      ctx.stderr(`udp: ${(e as Error).message}\n`);
      return 1;
    }
    ctx.stdout(`listening on ${ctx.pod.ip}:${p}/udp\n`);
    const timer = Number.isFinite(timeoutMs) ? ctx.clock.setTimeout(done, timeoutMs) : undefined;
    ctx.signal.addEventListener('abort', () => done(), { once: true });
    await finished;
    timer?.cancel();
    sock.close();
    if (values.q) ctx.stdout(`${got} datagrams received\n`);
    return got > 0 || count === Infinity ? 0 : 1;
  }
  if (sub === 'bench') return udpBench(ctx, positionals, values);
  throw new UsageError(USAGE);
}

/**
 * Echo throughput with a window of datagrams in flight: the same measurement
 * bench/ makes over raw Node sockets, so the two can be compared as a ratio.
 */
async function udpBench(ctx: ExecContext, positionals: string[], values: { n?: string; W?: string; s?: string }): Promise<number> {
  const [dest, dport] = positionals;
  if (!dest || !isValidIpv4(dest)) throw new UsageError(USAGE);
  const dstPort = port(dport, 'port');
  const total = values.n ? Number(values.n) : 10_000;
  const window = values.W ? Number(values.W) : 32;
  const size = values.s ? Number(values.s) : 64;
  const stack = ctx.pod.stack;
  const payload = Buffer.alloc(size, 0x61);
  let sent = 0;
  let received = 0;
  let finish: () => void = () => {};
  const done = new Promise<void>((r) => (finish = r));
  const sock = stack.bindUdp(0, {
    message: () => {
      received++;
      if (received >= total) finish();
      else if (sent < total) {
        sent++;
        stack.sendUdp(sock.port, dest, dstPort, payload);
      }
    },
  });
  const start = ctx.clock.now();
  // Losses would stall a window: a watchdog refills it when nothing came back for 50 ms.
  let last = received;
  const watchdog = setInterval(() => {
    if (received === last && sent < total) {
      sent++;
      stack.sendUdp(sock.port, dest, dstPort, payload);
    }
    last = received;
  }, 50);
  ctx.signal.addEventListener('abort', () => finish(), { once: true });
  const timeout = setTimeout(() => finish(), 60_000);
  for (; sent < Math.min(window, total); sent++) stack.sendUdp(sock.port, dest, dstPort, payload);
  await done;
  clearInterval(watchdog);
  clearTimeout(timeout);
  sock.close();
  const secs = (ctx.clock.now() - start) / 1000;
  ctx.stdout(JSON.stringify({ sent, received, seconds: secs, pps: received / secs }) + '\n');
  return received >= total ? 0 : 1;
}
