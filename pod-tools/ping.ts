/**
 * `ping` as iputils prints it: the header line, one line per reply or ICMP
 * error, the statistics and rtt summary, and iputils' exit codes (0 if any reply
 * came back, 1 if none, 2 on error). Options: -c count, -i interval, -W reply
 * timeout, -w deadline, -s size, -t ttl, -M do|want|dont, -q quiet.
 *
 * The payload starts with a 16-byte timeval as iputils writes it, so Wireshark
 * shows the echo's timestamp, then the bytes 0x10, 0x11, ... as iputils fills.
 */
import { parseArgs } from 'node:util';
import { isValidIpv4 } from '../packet/addr.ts';
import type { IcmpEvent, IpStack, PmtuDisc } from '../netstack/ipv4/ip-stack.ts';
import { UsageError, type ExecContext } from './types.ts';
import { resolveName } from './resolver.ts';
import { Waits } from './net-util.ts';
import { hopTrace } from '../common/hop-trace.ts';

const USAGE = 'Usage: ping [-c count] [-i interval] [-W timeout] [-w deadline] [-s size] [-t ttl] [-M do|want|dont] [-q] DEST';

/** iputils' adaptive precision for one reply's time. */
export function formatRtt(ms: number): string {
  if (ms >= 100) return String(Math.floor(ms));
  if (ms >= 10) return ms.toFixed(1);
  if (ms >= 1) return ms.toFixed(2);
  return ms.toFixed(3);
}

function num(v: string | undefined, flag: string, min: number, max: number, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || n > max) throw new UsageError(`ping: invalid argument: '${v}' for -${flag}: out of range: ${min} <= value <= ${max}`);
  return n;
}

function errorText(e: Extract<IcmpEvent, { kind: 'error' }>): string {
  if (e.type === 'time-exceeded') return e.code === 0 ? 'Time to live exceeded' : 'Frag reassembly time exceeded';
  switch (e.code) {
    case 0:
      return 'Destination Net Unreachable';
    case 1:
      return 'Destination Host Unreachable';
    case 2:
      return 'Destination Protocol Unreachable';
    case 3:
      return 'Destination Port Unreachable';
    case 4:
      return `Frag needed and DF set (mtu = ${e.nextHopMtu ?? 0})`;
    default:
      return `Dest Unreachable, Bad Code: ${e.code}`;
  }
}

/** What a run has sent and heard. */
interface Tally {
  readonly sentAt: Map<number, number>;
  readonly received: Set<number>;
  readonly rtts: number[];
  transmitted: number;
  errors: number;
  /** When the last echo went (the context's clock). */
  lastSentAt: number;
}

/** How early a timer may fire on the context's clock (Node's timers count whole milliseconds of the event loop's time). */
const TIMER_GRANULARITY_MS = 1;

/** One run's echoes, fixed by its options. */
interface Echoes {
  readonly stack: IpStack;
  readonly dest: string;
  readonly id: number;
  readonly size: number;
  readonly send: { ttl: number; pmtudisc: PmtuDisc };
  readonly count: number;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly deadlineMs: number;
  readonly start: number;
}

/** iputils' payload, filled once per run as iputils fills it: room for a timeval, then 0x10, 0x11, ... */
function echoPattern(size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = Math.min(16, size); i < size; i++) b[i] = (0x10 + i - 16) & 0xff;
  return b;
}

/**
 * The send time as a 64-bit struct timeval (seconds, microseconds; little-endian, each 8 bytes), written over
 * the payload's first 16 bytes before each echo (the stack copies the payload into the frame it sends).
 */
function stampTimeval(b: Buffer): void {
  if (b.length < 16) return;
  const now = Date.now();
  b.writeUInt32LE(Math.floor(now / 1000) >>> 0, 0);
  b.writeUInt32LE(Math.floor(now / 1000 / 2 ** 32), 4);
  b.writeUInt32LE((now % 1000) * 1000, 8);
  b.writeUInt32LE(0, 12);
}

/**
 * Sends the echoes at their interval, then waits for the replies still out.
 * A function of its own, apart from the options and the statistics: the
 * optimized code of a long-running loop then stays valid from one run to the
 * next, where a whole `ping` recompiled in every run. True on a local error
 * that ends the run (no route).
 */
async function sendEchoes(ctx: ExecContext, e: Echoes, tally: Tally, waits: Waits, trace: ReturnType<typeof hopTrace>): Promise<boolean> {
  const { clock, signal } = ctx;
  const payload = echoPattern(e.size);
  let due = clock.now();
  for (let seq = 1; seq <= e.count && !signal.aborted; seq++) {
    const now = clock.now();
    // Not one that falls due at the deadline, even when its timer fired early (iputils: `-w 1 -i 0.2` sends 5).
    if (Math.max(now, due) - e.start >= e.deadlineMs) break;
    // The wait for the next echo is armed before this one goes: the peer, woken by the send onto this thread's core,
    // waits there until this thread sleeps, so what follows the send is on the round trip.
    let wait: Promise<void> | undefined;
    let notBefore = 0;
    if (seq < e.count) {
      // As iputils keeps `-c 200 -i 0.005` to ~995 ms, the echoes keep the interval on average: the next one is due
      // an interval after this one was due, or after it went when it went late (no burst to make up for a stall).
      // It goes once the timer fires: a Node timer counts whole milliseconds of the event loop's time, taken when
      // the loop last woke, so it may fire up to TIMER_GRANULARITY_MS before the interval is over. Sleeping again
      // for that remainder cost a second wake-up per echo and stretched every 5 ms interval by ~10%. Two echoes are
      // never closer than the interval less that granularity. A reply, printed as it comes, does not cut a wait short.
      due = now <= due + TIMER_GRANULARITY_MS ? due + e.intervalMs : now + e.intervalMs;
      notBefore = now + e.intervalMs - TIMER_GRANULARITY_MS;
      wait = waits.sleep(Math.max(due, notBefore) - now, false);
    }
    // Stamped after the timer is armed, right before the echo goes, as iputils stamps it.
    const sentAt = clock.now();
    tally.sentAt.set(seq & 0xffff, sentAt);
    tally.lastSentAt = sentAt;
    trace?.('send', seq & 0xffff);
    stampTimeval(payload);
    const r = e.stack.sendEcho(e.dest, e.id, seq & 0xffff, payload, e.send);
    tally.transmitted++;
    if (!r.ok) {
      tally.errors++;
      if (r.error === 'EMSGSIZE') ctx.stdout(`ping: local error: message too long, mtu=${r.mtu}\n`);
      else if (r.error === 'ENETUNREACH') {
        ctx.stderr('ping: connect: Network is unreachable\n');
        return true;
      }
    }
    if (wait) {
      await wait;
      for (let t = clock.now(); !signal.aborted && (t < due - TIMER_GRANULARITY_MS || t < notBefore); t = clock.now()) {
        await waits.sleep(Math.max(due, notBefore) - t, false);
      }
    }
  }
  // After the last echo: wait for outstanding replies (up to -W, or the -w deadline).
  const waitUntil = Math.min(clock.now() + e.timeoutMs, e.start + e.deadlineMs);
  while (!signal.aborted && tally.received.size + tally.errors < tally.transmitted && clock.now() < waitUntil) {
    await waits.sleep(waitUntil - clock.now(), true);
  }
  return false;
}

/** iputils' closing lines. */
function printStatistics(ctx: ExecContext, shown: string, tally: Tally, elapsed: number): void {
  const { transmitted, errors, rtts } = tally;
  const nrecv = tally.received.size;
  const loss = transmitted ? Math.round(((transmitted - nrecv) * 100) / transmitted) : 0;
  ctx.stdout(`\n--- ${shown} ping statistics ---\n`);
  const errs = errors ? `, +${errors} errors` : '';
  ctx.stdout(`${transmitted} packets transmitted, ${nrecv} received${errs}, ${loss}% packet loss, time ${elapsed}ms\n`);
  if (rtts.length) ctx.stdout(`${rttSummary(rtts)}\n`);
}

/**
 * iputils' `rtt min/avg/max/mdev` line, in one pass: `Math.min(...rtts)` spreads every round trip onto the stack,
 * and a run of ~130,000 replies overflowed it at the very end.
 */
export function rttSummary(rtts: readonly number[]): string {
  let min = Infinity;
  let max = -Infinity;
  let sum = 0;
  let sumSq = 0;
  for (const r of rtts) {
    if (r < min) min = r;
    if (r > max) max = r;
    sum += r;
    sumSq += r * r;
  }
  const avg = sum / rtts.length;
  const mdev = Math.sqrt(Math.max(0, sumSq / rtts.length - avg * avg));
  return `rtt min/avg/max/mdev = ${min.toFixed(3)}/${avg.toFixed(3)}/${max.toFixed(3)}/${mdev.toFixed(3)} ms`;
}

export async function ping(ctx: ExecContext): Promise<number> {
  const { values, positionals } = parseArgs({
    args: ctx.argv.slice(1),
    allowPositionals: true,
    options: {
      c: { type: 'string' },
      i: { type: 'string' },
      W: { type: 'string' },
      w: { type: 'string' },
      s: { type: 'string' },
      t: { type: 'string' },
      M: { type: 'string' },
      q: { type: 'boolean' },
    },
  });
  if (positionals.length !== 1) throw new UsageError(USAGE);
  const target = positionals[0];
  const resolved = await resolveName(ctx, target);
  if (!resolved.ok) {
    ctx.stderr(`ping: ${target}: ${resolved.error === 'NXDOMAIN' ? 'Name or service not known' : 'Temporary failure in name resolution'}\n`);
    return 2;
  }
  const dest = resolved.address;
  // iputils prints the name as resolved (the search suffix included), or the address given.
  const shown = isValidIpv4(target) ? dest : resolved.name;
  const count = num(values.c, 'c', 1, 1e9, Infinity);
  const intervalMs = num(values.i, 'i', 0.002, 3600, 1) * 1000;
  const timeoutMs = num(values.W, 'W', 0, 3600, 10) * 1000;
  const deadlineMs = values.w === undefined ? Infinity : num(values.w, 'w', 0, 1e6, 0) * 1000;
  const size = num(values.s, 's', 0, 65507, 56);
  const ttl = num(values.t, 't', 1, 255, 64);
  const mode = (values.M ?? 'want') as PmtuDisc;
  if (!['do', 'want', 'dont'].includes(mode)) throw new UsageError(`ping: invalid -M argument: ${values.M}`);
  const quiet = !!values.q;
  // A diagnostic preload's hook (bench/hop-trace.mjs), when one is loaded: it stamps each echo and reply.
  const trace = hopTrace();

  const stack = ctx.pod.stack;
  let id = 0;
  let sock: { close(): void } | undefined;
  for (let tries = 0; tries < 100 && !sock; tries++) {
    id = ctx.rng.int(1, 0xffff);
    try {
      sock = stack.openIcmp(id, (e) => onEvent(e));
    } catch {
      sock = undefined;
    }
  }
  if (!sock) {
    ctx.stderr('ping: no free ICMP identifier\n');
    return 2;
  }

  const start = ctx.clock.now();
  const tally: Tally = { sentAt: new Map(), received: new Set(), rtts: [], transmitted: 0, errors: 0, lastSentAt: start };
  const waits = new Waits(ctx.clock, ctx.signal);

  ctx.stdout(`PING ${shown} (${dest}) ${size}(${size + 28}) bytes of data.\n`);

  function onEvent(e: IcmpEvent): void {
    if (e.kind === 'echo-reply') {
      const t0 = tally.sentAt.get(e.seq);
      if (t0 === undefined) return;
      const rtt = ctx.clock.now() - t0;
      trace?.('reply', e.seq);
      const dup = tally.received.has(e.seq);
      if (!dup) {
        tally.received.add(e.seq);
        tally.rtts.push(rtt);
      }
      if (!quiet) ctx.stdout(`${e.bytes} bytes from ${e.from}: icmp_seq=${e.seq} ttl=${e.ttl} time=${formatRtt(rtt)} ms${dup ? ' (DUP!)' : ''}\n`);
    } else {
      tally.errors++;
      if (!quiet) ctx.stdout(`From ${e.from} icmp_seq=${e.seq} ${errorText(e)}\n`);
    }
    waits.replied();
  }

  const echoes: Echoes = { stack, dest, id, size, send: { ttl, pmtudisc: mode }, count, intervalMs, timeoutMs, deadlineMs, start };
  let localError: boolean;
  try {
    localError = await sendEchoes(ctx, echoes, tally, waits, trace);
  } finally {
    waits.close();
    sock.close();
  }

  // iputils' `time` runs from the start to the last echo sent, in whole milliseconds: 0 ms for `-c 1`, not the
  // wait for replies after it (`-w 1 -i 0.2` prints ~800 ms, not 1,000).
  printStatistics(ctx, shown, tally, Math.floor(tally.lastSentAt - start));
  const nrecv = tally.received.size;
  if (localError) return 2;
  if (nrecv === 0) return 1;
  if (deadlineMs !== Infinity && nrecv < Math.min(count, tally.transmitted)) return 1;
  return 0;
}
