/**
 * `hey -n N [-c C] [-disable-keepalive] [-m METHOD] [-t TIMEOUT] [-o json] URL`:
 * the well-known HTTP load generator, over the pod's own TCP. Its summary
 * also counts the responses per distinct body, which for podlab's apps names
 * the backend pod that answered, so a Service's load balancing is visible.
 *
 * kube-proxy balances per connection: with keep-alive (the default) each of
 * the C workers keeps one connection, so at most C backends answer;
 * `-disable-keepalive` opens a new connection per request.
 */
import { parseArgs } from 'node:util';
import type { TcpSocket } from '../netstack/tcp/socket.ts';
import { resolveForTool } from './resolver.ts';
import { UsageError, type ExecContext } from './types.ts';

const USAGE = 'Usage: hey -n N [-c C] [-disable-keepalive] [-m METHOD] [-t TIMEOUT] [-o json] URL';

/** The `-o json` summary: counts per status code and per distinct body, latency percentiles in ms. */
export interface HeyJson {
  requests: number;
  errors: number;
  statusCodes: Record<string, number>;
  bodies: Record<string, number>;
  latency: { p50: number; p99: number };
}

interface Result {
  ms: number;
  status?: number;
  body?: string;
  error?: string;
}

/** One HTTP/1.1 exchange on an open connection; resolves with status and body. */
export function exchange(sock: TcpSocket, req: Buffer, timeoutMs: number, ctx: ExecContext): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const t = ctx.clock.setTimeout(() => finish(new Error('timeout')), timeoutMs);
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.subarray(0, end).toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(head);
      if (!m) return finish(new Error('malformed response'));
      const len = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
      if (buf.length - end - 4 < len) return;
      finish(undefined, { status: Number(m[1]), body: buf.subarray(end + 4, end + 4 + len).toString('utf8').trim() });
    };
    const onEnd = () => finish(new Error('connection closed'));
    const onError = (e: Error) => finish(e);
    function finish(err?: Error, r?: { status: number; body: string }) {
      t.cancel();
      sock.off('data', onData);
      sock.off('end', onEnd);
      sock.off('error', onError);
      if (err) reject(err);
      else resolve(r!);
    }
    sock.on('data', onData);
    sock.on('end', onEnd);
    sock.on('error', onError);
    sock.write(req);
  });
}

/** Opens a TCP connection from the pod; rejects with the socket's error (ECONNREFUSED, ETIMEDOUT...). */
export function connect(ctx: ExecContext, host: string, port: number): Promise<TcpSocket> {
  return new Promise((resolve, reject) => {
    const s = ctx.pod.tcp.connect({ host, port });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

export async function hey(ctx: ExecContext): Promise<number> {
  // hey's own flags are single-dash words (-disable-keepalive): accept them as such.
  const args = ctx.argv.slice(1).map((a) => (a === '-disable-keepalive' ? '--disable-keepalive' : a));
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { n: { type: 'string' }, c: { type: 'string' }, m: { type: 'string' }, t: { type: 'string' }, o: { type: 'string' }, 'disable-keepalive': { type: 'boolean' } },
  });
  const url = positionals[0];
  const m = url ? /^http:\/\/([^/:]+)(?::(\d+))?(\/.*)?$/.exec(url) : null;
  if (!m) throw new UsageError(USAGE);
  const host = await resolveForTool(ctx, m[1]);
  if (!host) throw new UsageError(`hey: cannot resolve ${m[1]}: no such host`);
  const port = Number(m[2] ?? 80);
  const path = m[3] ?? '/';
  const n = Number(values.n ?? 200);
  const c = Math.min(Number(values.c ?? 50), n);
  const timeoutMs = Number(values.t ?? 20) * 1000;
  if (!Number.isInteger(n) || n < 1 || !Number.isInteger(c) || c < 1) throw new UsageError(`hey: -n and -c must be positive integers\n${USAGE}`);
  const keepAlive = !values['disable-keepalive'];
  const req = Buffer.from(`${values.m ?? 'GET'} ${path} HTTP/1.1\r\nHost: ${m[1]}${m[2] ? ':' + m[2] : ''}\r\nUser-Agent: hey/0.0.1\r\nConnection: ${keepAlive ? 'keep-alive' : 'close'}\r\n\r\n`);

  const results: Result[] = [];
  let next = 0;
  const start = ctx.clock.now();
  const worker = async () => {
    let sock: TcpSocket | undefined;
    while (next < n && !ctx.signal.aborted) {
      next++;
      const t0 = ctx.clock.now();
      try {
        if (!sock) sock = await connect(ctx, host, port);
        const r = await exchange(sock, req, timeoutMs, ctx);
        results.push({ ms: ctx.clock.now() - t0, status: r.status, body: r.body });
      } catch (e) {
        results.push({ ms: ctx.clock.now() - t0, error: (e as Error & { code?: string }).code ?? (e as Error).message });
        sock?.destroy();
        sock = undefined;
        continue;
      }
      if (!keepAlive) {
        sock.end();
        sock = undefined;
      }
    }
    sock?.end();
  };
  await Promise.all(Array.from({ length: c }, worker));
  const totalMs = ctx.clock.now() - start;

  const ok = results.filter((r) => r.status !== undefined);
  const lat = ok.map((r) => r.ms).sort((a, b) => a - b);
  const pct = (p: number) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))] : 0);
  const statusCodes: Record<string, number> = {};
  const bodies: Record<string, number> = {};
  const errors: Record<string, number> = {};
  for (const r of results) {
    if (r.status !== undefined) {
      statusCodes[r.status] = (statusCodes[r.status] ?? 0) + 1;
      bodies[r.body ?? ''] = (bodies[r.body ?? ''] ?? 0) + 1;
    } else errors[r.error ?? 'error'] = (errors[r.error ?? 'error'] ?? 0) + 1;
  }
  const errorCount = results.length - ok.length;
  if (values.o === 'json') {
    const out: HeyJson = { requests: results.length, errors: errorCount, statusCodes, bodies, latency: { p50: round(pct(50)), p99: round(pct(99)) } };
    ctx.stdout(JSON.stringify(out) + '\n');
    return errorCount ? 1 : 0;
  }
  const secs = (ms: number) => (ms / 1000).toFixed(4);
  const lines = [
    '',
    'Summary:',
    `  Total:\t${secs(totalMs)} secs`,
    `  Slowest:\t${secs(lat[lat.length - 1] ?? 0)} secs`,
    `  Fastest:\t${secs(lat[0] ?? 0)} secs`,
    `  Average:\t${secs(lat.reduce((a, b) => a + b, 0) / (lat.length || 1))} secs`,
    `  Requests/sec:\t${(results.length / (totalMs / 1000)).toFixed(4)}`,
    '',
    'Latency distribution:',
    ...[10, 25, 50, 75, 90, 95, 99].map((p) => `  ${p}% in ${secs(pct(p))} secs`),
    '',
    'Status code distribution:',
    ...Object.entries(statusCodes).map(([code, k]) => `  [${code}]\t${k} responses`),
    '',
    'Responses by body (which backend answered):',
    ...Object.entries(bodies)
      .sort((a, b) => b[1] - a[1])
      .map(([body, k]) => `  ${k}\t${body.length > 60 ? body.slice(0, 57) + '...' : body}`),
  ];
  if (errorCount) lines.push('', 'Error distribution:', ...Object.entries(errors).map(([e, k]) => `  [${k}]\t${e}`));
  ctx.stdout(lines.join('\n') + '\n');
  return errorCount ? 1 : 0;
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
