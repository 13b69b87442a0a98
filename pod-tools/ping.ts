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
import type { IcmpEvent, PmtuDisc } from '../netstack/ipv4/ip-stack.ts';
import { UsageError, type ExecContext } from './types.ts';
import { resolveName } from './resolver.ts';
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

  const sentAt = new Map<number, number>();
  const received = new Set<number>();
  const rtts: number[] = [];
  let transmitted = 0;
  let errors = 0;
  let lastActivity = ctx.clock.now();
  const start = ctx.clock.now();
  let wake: (() => void) | undefined;
  const kick = () => wake?.();

  ctx.stdout(`PING ${shown} (${dest}) ${size}(${size + 28}) bytes of data.\n`);

  function onEvent(e: IcmpEvent): void {
    lastActivity = ctx.clock.now();
    if (e.kind === 'echo-reply') {
      const t0 = sentAt.get(e.seq);
      if (t0 === undefined) return;
      const rtt = ctx.clock.now() - t0;
      trace?.('reply', e.seq);
      const dup = received.has(e.seq);
      if (!dup) {
        received.add(e.seq);
        rtts.push(rtt);
      }
      if (!quiet) ctx.stdout(`${e.bytes} bytes from ${e.from}: icmp_seq=${e.seq} ttl=${e.ttl} time=${formatRtt(rtt)} ms${dup ? ' (DUP!)' : ''}\n`);
    } else {
      errors++;
      if (!quiet) ctx.stdout(`From ${e.from} icmp_seq=${e.seq} ${errorText(e)}\n`);
    }
    kick();
  }

  const payload = (seq: number): Buffer => {
    const b = Buffer.alloc(size);
    const now = Date.now();
    if (size >= 16) {
      b.writeBigUInt64LE(BigInt(Math.floor(now / 1000)), 0);
      b.writeBigUInt64LE(BigInt((now % 1000) * 1000), 8);
    }
    for (let i = Math.min(16, size); i < size; i++) b[i] = (0x10 + i - 16) & 0xff;
    void seq;
    return b;
  };

  /** Sleeps `ms`, or until aborted; with `untilReply`, also until the next reply or error comes. */
  const sleep = (ms: number, untilReply: boolean) =>
    new Promise<void>((resolve) => {
      if (ctx.signal.aborted) return resolve();
      const t = ctx.clock.setTimeout(done, ms);
      function done() {
        t.cancel();
        wake = undefined;
        ctx.signal.removeEventListener('abort', done);
        resolve();
      }
      if (untilReply) wake = done;
      ctx.signal.addEventListener('abort', done, { once: true });
    });

  let localError = false;
  try {
    for (let seq = 1; seq <= count && !ctx.signal.aborted; seq++) {
      if (ctx.clock.now() - start >= deadlineMs) break;
      sentAt.set(seq & 0xffff, ctx.clock.now());
      trace?.('send', seq & 0xffff);
      const r = stack.sendEcho(dest, id, seq & 0xffff, payload(seq), { ttl, pmtudisc: mode });
      transmitted++;
      if (!r.ok) {
        errors++;
        if (r.error === 'EMSGSIZE') ctx.stdout(`ping: local error: message too long, mtu=${r.mtu}\n`);
        else if (r.error === 'ENETUNREACH') {
          ctx.stderr('ping: connect: Network is unreachable\n');
          localError = true;
          break;
        }
      }
      if (seq < count) {
        // The next echo goes after the interval. A reply, printed as it comes, does not cut this wait short:
        // that cancelled and re-armed the timer and the abort listener once per reply, for nothing.
        const due = ctx.clock.now() + intervalMs;
        while (!ctx.signal.aborted && ctx.clock.now() < due) await sleep(due - ctx.clock.now(), false);
      }
    }
    // After the last echo: wait for outstanding replies (up to -W, or the -w deadline).
    const waitUntil = Math.min(ctx.clock.now() + timeoutMs, start + deadlineMs);
    while (!ctx.signal.aborted && received.size + errors < transmitted && ctx.clock.now() < waitUntil) {
      await sleep(waitUntil - ctx.clock.now(), true);
    }
  } finally {
    sock.close();
  }
  void lastActivity;

  const elapsed = Math.round(ctx.clock.now() - start);
  const nrecv = received.size;
  const loss = transmitted ? Math.round(((transmitted - nrecv) * 100) / transmitted) : 0;
  ctx.stdout(`\n--- ${shown} ping statistics ---\n`);
  const errs = errors ? `, +${errors} errors` : '';
  ctx.stdout(`${transmitted} packets transmitted, ${nrecv} received${errs}, ${loss}% packet loss, time ${elapsed}ms\n`);
  if (rtts.length) {
    const min = Math.min(...rtts);
    const max = Math.max(...rtts);
    const avg = rtts.reduce((a, b) => a + b, 0) / rtts.length;
    const mdev = Math.sqrt(rtts.reduce((a, b) => a + b * b, 0) / rtts.length - avg * avg);
    ctx.stdout(`rtt min/avg/max/mdev = ${min.toFixed(3)}/${avg.toFixed(3)}/${max.toFixed(3)}/${(Number.isFinite(mdev) ? mdev : 0).toFixed(3)} ms\n`);
  }
  if (localError) return 2;
  if (nrecv === 0) return 1;
  if (deadlineMs !== Infinity && nrecv < Math.min(count, transmitted)) return 1;
  return 0;
}
