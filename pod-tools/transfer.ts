/**
 * `transfer --bytes N [--seed S] [--chunk BYTES] [-m SECONDS] [--discard] HOST:PORT`:
 * sends N pseudo-random bytes (xorshift32, seeded: the same seed sends the
 * same stream) over one TCP connection to an echo service (podlab/echo),
 * half-closes, reads the echoed stream to its end and checks that its
 * SHA-256 equals that of what was sent. Prints bytes, duration, throughput,
 * the connection's retransmission counters and `verified` (exit 0) or
 * `CORRUPTED` (exit 1); a connection error exits 1 with the error.
 * With `--discard` the peer is a discard service (podlab/sink): one-way
 * goodput, until the peer closes after our FIN (so it has read every byte);
 * anything it sends back is an error. Nothing is hashed then: nothing comes
 * back to compare, and the digest was ~5% of a sending agent's CPU.
 */
import { createHash } from 'node:crypto';
import { endianness } from 'node:os';
import { parseArgs } from 'node:util';
import type { TcpError } from '../netstack/tcp/errors.ts';
import { formatRate, parseBytes } from './net-util.ts';
import { resolveForTool } from './resolver.ts';
import { UsageError, type ExecContext } from './types.ts';

const LITTLE_ENDIAN = endianness() === 'LE';

const USAGE = 'Usage: transfer --bytes N [--seed S] [--chunk BYTES] [-m SECONDS] [--discard] HOST:PORT   (N like 5M, 64k, 1000)';

/** A seeded byte stream (xorshift32 words): the same seed gives the same bytes, fast enough for 100 MB. */
export class StreamGenerator {
  private s: number;

  constructor(seed: number) {
    // Scramble the seed (murmur3's finaliser) so nearby seeds give unrelated streams.
    let h = (seed ^ 0x9e3779b9) >>> 0;
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    this.s = (h ^ (h >>> 16)) >>> 0 || 0x9e3779b9;
  }

  /** The next `n` bytes of the stream. */
  fill(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    let s = this.s;
    const words = n >> 2;
    let i = 0;
    if (LITTLE_ENDIAN && b.byteOffset % 4 === 0) {
      // Words stored through a typed array: a quarter of writeInt32LE's cost, which was a
      // sixth of a sending agent's CPU in a bulk transfer. The same little-endian bytes.
      const w = new Int32Array(b.buffer, b.byteOffset, words);
      for (; i < words; i++) {
        s ^= s << 13;
        s ^= s >>> 17;
        s ^= s << 5;
        w[i] = s;
      }
    }
    for (; i < words; i++) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      b.writeInt32LE(s | 0, i * 4);
    }
    for (let i = words * 4; i < n; i++) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      b[i] = s & 0xff;
    }
    this.s = s;
    return b;
  }
}

export async function transfer(ctx: ExecContext): Promise<number> {
  const { values, positionals } = parseArgs({
    args: ctx.argv.slice(1),
    allowPositionals: true,
    options: {
      bytes: { type: 'string', short: 'n' },
      seed: { type: 'string' },
      chunk: { type: 'string' },
      'max-time': { type: 'string', short: 'm' },
      discard: { type: 'boolean' },
    },
  });
  if (positionals.length !== 1 || values.bytes === undefined) throw new UsageError(USAGE);
  const total = parseBytes(values.bytes);
  if (total === undefined || total < 0) throw new UsageError(`transfer: invalid --bytes '${values.bytes}'`);
  const chunk = values.chunk !== undefined ? parseBytes(values.chunk) : 64 * 1024;
  if (!chunk || chunk < 1 || chunk > 16 * 1024 * 1024) throw new UsageError(`transfer: invalid --chunk '${values.chunk}'`);
  const seed = values.seed !== undefined ? Number(values.seed) : ctx.rng.int(1, 0x7fffffff);
  if (!Number.isInteger(seed)) throw new UsageError(`transfer: invalid --seed '${values.seed}'`);
  const maxMs = values['max-time'] !== undefined ? Number(values['max-time']) * 1000 : undefined;
  const m = /^(.+):(\d{1,5})$/.exec(positionals[0]);
  if (!m) throw new UsageError(USAGE);
  const host = await resolveForTool(ctx, m[1]);
  const port = Number(m[2]);
  if (!host) {
    ctx.stderr(`transfer: ${m[1]}: Name or service not known\n`);
    return 1;
  }

  const gen = new StreamGenerator(seed);
  const sentHash = createHash('sha256');
  const recvHash = createHash('sha256');
  let sent = 0;
  let received = 0;
  const start = ctx.clock.now();
  let connectedAt = 0;
  const sock = ctx.pod.tcp.connect({ host, port, allowHalfOpen: true });
  const discard = values.discard === true;
  ctx.stdout(`transfer: ${total} bytes to ${host}:${port}${discard ? ', discarded there' : ' and back'} (seed ${seed})\n`);

  const outcome = await new Promise<{ ok: true } | { ok: false; message: string }>((resolve) => {
    let settled = false;
    const finish = (r: { ok: true } | { ok: false; message: string }) => {
      if (settled) return;
      settled = true;
      timer?.cancel();
      ctx.signal.removeEventListener('abort', onAbort);
      resolve(r);
    };
    const onAbort = () => finish({ ok: false, message: `interrupted after ${sent} bytes sent, ${received} received` });
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    const timer = maxMs !== undefined ? ctx.clock.setTimeout(() => finish({ ok: false, message: `timed out after ${maxMs / 1000} s (${sent} bytes sent, ${received} received)` }), maxMs) : undefined;
    const pump = () => {
      while (sent < total) {
        const b = gen.fill(Math.min(chunk, total - sent));
        if (!discard) sentHash.update(b);
        sent += b.length;
        if (!sock.write(b)) return; // 'drain' resumes
      }
      sock.end();
    };
    sock.on('connect', () => {
      connectedAt = ctx.clock.now();
      pump();
    });
    sock.on('drain', pump);
    sock.on('data', (d) => {
      recvHash.update(d);
      received += d.length;
    });
    sock.on('end', () => finish({ ok: true }));
    sock.on('error', (e: TcpError) => finish({ ok: false, message: `${e.message} (${e.text}) after ${Math.round(ctx.clock.now() - start)} ms, ${sent} bytes sent, ${received} received` }));
  });
  const elapsed = ctx.clock.now() - start;
  const st = sock.conn.stats;
  if (!sock.destroyed) sock.destroy();
  if (!outcome.ok) {
    ctx.stderr(`transfer: ${outcome.message}\n`);
    return 1;
  }
  const xfer = elapsed - (connectedAt - start);
  if (discard) {
    ctx.stdout(`sent     ${sent} bytes\n`);
    ctx.stdout(`duration ${(elapsed / 1000).toFixed(3)} s (connect ${(connectedAt - start).toFixed(1)} ms), throughput ${formatRate(total, xfer)} one way\n`);
    ctx.stdout(`tcp: ${st.segsOut} segments out, ${st.retransmits} retransmitted (${st.fastRetransmits} fast retransmits, ${st.timeouts} timeouts), ${st.oooSegments} out-of-order in\n`);
    if (received === 0) {
      ctx.stdout('delivered\n');
      return 0;
    }
    ctx.stdout(`UNEXPECTED: a discard service sent ${received} bytes back\n`);
    return 1;
  }
  const a = sentHash.digest('hex');
  const b = recvHash.digest('hex');
  ctx.stdout(`sent     ${sent} bytes  sha256 ${a}\n`);
  ctx.stdout(`received ${received} bytes  sha256 ${b}\n`);
  ctx.stdout(
    `duration ${(elapsed / 1000).toFixed(3)} s (connect ${(connectedAt - start).toFixed(1)} ms), throughput ${formatRate(total, xfer)} each way (${formatRate(2 * total, xfer)} total)\n`,
  );
  ctx.stdout(`tcp: ${st.segsOut} segments out, ${st.retransmits} retransmitted (${st.fastRetransmits} fast retransmits, ${st.timeouts} timeouts), ${st.oooSegments} out-of-order in\n`);
  if (received === total && a === b) {
    ctx.stdout('verified\n');
    return 0;
  }
  ctx.stdout(`CORRUPTED (${received === total ? 'same length, different bytes' : `expected ${total} bytes back, got ${received}`})\n`);
  return 1;
}
