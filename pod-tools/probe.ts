/**
 * `probe tcp HOST PORT | probe http URL [-c COUNT] [-i INTERVAL] [-W TIMEOUT]`:
 * one new connection per tick, in the manner of a blackbox prober. Each probe
 * prints one line with its sequence number, so a scenario's flow can tell
 * exactly which probes failed and how long each took:
 *
 *   seq=1 connected time=0.412 ms                       (tcp: the handshake completed)
 *   seq=2 status=200 time=1.307 ms body=pod-2a on node-2 (http: a GET / on a fresh connection)
 *   seq=3 error=ECONNREFUSED time=0.388 ms
 *
 * A new connection per probe is the point: kube-proxy balances and conntrack
 * tracks per connection, so every probe takes the Service path afresh.
 */
import { parseArgs } from 'node:util';
import { connect, exchange } from './hey.ts';
import { sleep } from './net-util.ts';
import { resolveForTool } from './resolver.ts';
import { UsageError, type ExecContext } from './types.ts';

const USAGE = 'Usage: probe tcp HOST PORT | probe http URL [-c COUNT] [-i INTERVAL_SEC] [-W TIMEOUT_SEC]';

interface Target {
  kind: 'tcp' | 'http';
  host: string;
  port: number;
  request?: Buffer;
}

async function parseTarget(ctx: ExecContext, positionals: string[]): Promise<Target> {
  const [kind, a, b] = positionals;
  if (kind === 'tcp') {
    const host = a ? await resolveForTool(ctx, a) : undefined;
    const port = Number(b);
    if (!a || !b) throw new UsageError(USAGE);
    if (!host) throw new UsageError(`probe: cannot resolve ${a}`);
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new UsageError(`probe: bad port '${b}'`);
    return { kind, host, port };
  }
  if (kind === 'http') {
    const m = a ? /^http:\/\/([^/:]+)(?::(\d+))?(\/.*)?$/.exec(a) : null;
    if (!m) throw new UsageError(USAGE);
    const host = await resolveForTool(ctx, m[1]);
    if (!host) throw new UsageError(`probe: cannot resolve ${m[1]}`);
    const request = Buffer.from(`GET ${m[3] ?? '/'} HTTP/1.1\r\nHost: ${m[1]}${m[2] ? ':' + m[2] : ''}\r\nUser-Agent: podlab-probe\r\nConnection: close\r\n\r\n`);
    return { kind, host, port: Number(m[2] ?? 80), request };
  }
  throw new UsageError(USAGE);
}

const ms3 = (ms: number) => (Math.round(ms * 1000) / 1000).toFixed(3);

export async function probe(ctx: ExecContext): Promise<number> {
  const { values, positionals } = parseArgs({
    args: ctx.argv.slice(1),
    allowPositionals: true,
    options: { c: { type: 'string' }, i: { type: 'string' }, W: { type: 'string' } },
  });
  const target = await parseTarget(ctx, positionals);
  const count = Number(values.c ?? 1);
  const intervalMs = Number(values.i ?? 1) * 1000;
  const timeoutMs = Number(values.W ?? 2) * 1000;
  if (!Number.isInteger(count) || count < 1) throw new UsageError(`probe: -c must be a positive integer\n${USAGE}`);
  if (!(intervalMs >= 0) || !(timeoutMs > 0)) throw new UsageError(`probe: -i and -W take seconds\n${USAGE}`);

  let ok = 0;
  const inFlight: Promise<void>[] = [];
  // Probes go out on the tick whether or not the previous one has finished, so a
  // stalled path shows as a run of failed sequence numbers rather than a pause.
  for (let seq = 1; seq <= count && !ctx.signal.aborted; seq++) {
    inFlight.push(
      one(ctx, target, timeoutMs).then((r) => {
        if (r.ok) ok++;
        ctx.stdout(`seq=${seq} ${r.text} time=${ms3(r.ms)} ms${r.body === undefined ? '' : ` body=${r.body}`}\n`);
      }),
    );
    if (seq < count) await sleep(ctx, intervalMs);
  }
  await Promise.all(inFlight);
  ctx.stdout(`--- ${target.kind}://${target.host}:${target.port} probe statistics ---\n${inFlight.length} probes, ${ok} ok, ${inFlight.length - ok} failed\n`);
  return ok === inFlight.length ? 0 : 1;
}

async function one(ctx: ExecContext, t: Target, timeoutMs: number): Promise<{ ok: boolean; text: string; ms: number; body?: string }> {
  const t0 = ctx.clock.now();
  let timer: { cancel(): void } | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = ctx.clock.setTimeout(() => reject(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })), timeoutMs)));
  let sock: Awaited<ReturnType<typeof connect>> | undefined;
  let finished = false;
  try {
    const pending = connect(ctx, t.host, t.port);
    // A connection that completes after the deadline is closed, never leaked.
    pending.then((s) => finished && s.destroy(), () => {});
    sock = await Promise.race([pending, timeout]);
    if (t.kind === 'tcp') return { ok: true, text: 'connected', ms: ctx.clock.now() - t0 };
    const r = await exchange(sock, t.request!, Math.max(1, timeoutMs - (ctx.clock.now() - t0)), ctx);
    return { ok: r.status < 500, text: `status=${r.status}`, ms: ctx.clock.now() - t0, body: r.body.split('\n')[0].slice(0, 80) };
  } catch (e) {
    return { ok: false, text: `error=${(e as Error & { code?: string }).code ?? (e as Error).message}`, ms: ctx.clock.now() - t0 };
  } finally {
    finished = true;
    timer?.cancel();
    sock?.destroy();
  }
}
