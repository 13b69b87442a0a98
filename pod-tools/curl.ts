/**
 * `curl [-s] [-S] [-v] [-f] [-i] [-I] [-m SECONDS] [--connect-timeout SECONDS]
 *       [-o FILE] [-w FORMAT] [-H 'Name: value'] [-X METHOD] URL`
 * over the pod's own TCP: one HTTP/1.1 request, the body on stdout, curl's
 * messages and exit codes:
 *   0 ok;  1 unsupported protocol;  3 malformed URL;  6 host not resolvable
 *   (names resolve through the pod's resolver, pod-tools/resolver.ts);  7 couldn't connect (refused,
 *   unreachable, SYN timeout);  18 partial body;  22 HTTP >= 400 with -f;
 *   23 write error (-o to a file: pods have no filesystem);  28 -m or
 *   --connect-timeout expired;  52 empty reply;  56 receive failure (reset).
 * `-o /dev/null` discards the body and (unless -s) reports the size and
 * speed on stderr; `-o -` is stdout. `-w` knows %{http_code},
 * %{size_download}, %{size_header}, %{time_connect}, %{time_total},
 * %{speed_download}, %{remote_ip}, %{remote_port}, %{local_ip},
 * %{local_port}, %{num_connects} and \n, \t.
 */
import { parseArgs } from 'node:util';
import { TcpError } from '../netstack/tcp/errors.ts';
import type { TcpSocket } from '../netstack/tcp/socket.ts';
import { ResponseReader, type ResponseHead } from '../apps/http-response.ts';
import { textOut } from './net-util.ts';
import { resolveForTool } from './resolver.ts';
import { UsageError, type ExecContext } from './types.ts';

const USAGE = 'Usage: curl [-s] [-S] [-v] [-f] [-i] [-I] [-m SECONDS] [--connect-timeout SECONDS] [-o /dev/null] [-w FORMAT] [-H HEADER] [-X METHOD] URL';

/** A curl failure: exit code and message (`curl: (7) Failed to connect...`). */
class CurlError extends Error {
  constructor(
    readonly exitCode: number,
    message: string,
  ) {
    super(message);
  }
}

export async function curl(ctx: ExecContext): Promise<number> {
  const { values, positionals } = parseArgs({
    args: ctx.argv.slice(1),
    allowPositionals: true,
    options: {
      silent: { type: 'boolean', short: 's' },
      'show-error': { type: 'boolean', short: 'S' },
      verbose: { type: 'boolean', short: 'v' },
      fail: { type: 'boolean', short: 'f' },
      include: { type: 'boolean', short: 'i' },
      head: { type: 'boolean', short: 'I' },
      'max-time': { type: 'string', short: 'm' },
      'connect-timeout': { type: 'string' },
      output: { type: 'string', short: 'o' },
      'write-out': { type: 'string', short: 'w' },
      header: { type: 'string', short: 'H', multiple: true },
      request: { type: 'string', short: 'X' },
    },
  });
  if (positionals.length !== 1) throw new UsageError(USAGE);
  const silent = !!values.silent;
  const showErrors = !silent || !!values['show-error'];
  const verbose = !!values.verbose;
  const err = (code: number, msg: string): number => {
    if (showErrors) ctx.stderr(`curl: (${code}) ${msg}\n`);
    return code;
  };
  const seconds = (v: string | undefined, flag: string): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new UsageError(`curl: option ${flag}: expected a positive number of seconds, got '${v}'`);
    return n * 1000;
  };
  const maxMs = seconds(values['max-time'], '-m');
  const connectMs = seconds(values['connect-timeout'], '--connect-timeout');
  const output = values.output;
  if (output !== undefined && output !== '/dev/null' && output !== '-') {
    return err(23, `Failure writing output to destination: ${output}: a podlab pod has no filesystem (use -o /dev/null or -o -)`);
  }
  const discard = output === '/dev/null';

  // URL
  let url = positionals[0];
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(url);
  if (scheme && scheme[1].toLowerCase() !== 'http') return err(1, `Protocol "${scheme[1]}" not supported`);
  if (!scheme) url = `http://${url}`;
  const m = /^http:\/\/([^/:?#\s]+)(?::(\d{1,5}))?([/?][^\s#]*)?(?:#.*)?$/i.exec(url);
  if (!m) return err(3, `URL rejected: Malformed input to a URL function`);
  const hostName = m[1];
  const port = m[2] ? Number(m[2]) : 80;
  if (port < 1 || port > 65535) return err(3, `URL rejected: Port number was not a decimal number between 0 and 65535`);
  let path = m[3] ?? '/';
  if (path.startsWith('?')) path = `/${path}`;
  const host = await resolveForTool(ctx, hostName);
  if (!host) return err(6, `Could not resolve host: ${hostName}`);

  const method = values.request ?? (values.head ? 'HEAD' : 'GET');
  const hostHeader = port === 80 ? hostName : `${hostName}:${port}`;
  const extra = (values.header ?? []).filter((h) => /^[^:\s]+:/.test(h));
  const userHeaders = new Set(extra.map((h) => h.slice(0, h.indexOf(':')).toLowerCase()));
  const reqLines = [`${method} ${path} HTTP/1.1`];
  if (!userHeaders.has('host')) reqLines.push(`Host: ${hostHeader}`);
  if (!userHeaders.has('user-agent')) reqLines.push('User-Agent: curl/8.5.0 (podlab)');
  if (!userHeaders.has('accept')) reqLines.push('Accept: */*');
  reqLines.push(...extra);
  const request = reqLines.join('\r\n') + '\r\n\r\n';

  const start = ctx.clock.now();
  let connectedAt = 0;
  let sock: TcpSocket | undefined;
  let parsed: ResponseHead | undefined;
  let bodyBytes = 0;
  const out = textOut(ctx.stdout);
  const writeBody = (b: Buffer) => {
    bodyBytes += b.length;
    // -f: an error status fails before any of its body is written, as curl does.
    if (!discard && method !== 'HEAD' && !(values.fail && parsed && parsed.status >= 400)) out.write(b);
  };

  if (verbose) ctx.stderr(`*   Trying ${host}:${port}...\n`);
  try {
    await new Promise<void>((resolve, reject) => {
      let settled = false;
      const finish = (e?: Error) => {
        if (settled) return;
        settled = true;
        timers.forEach((t) => t.cancel());
        ctx.signal.removeEventListener('abort', onAbort);
        if (e) reject(e);
        else resolve();
      };
      const onAbort = () => finish(new CurlError(130, 'Interrupted'));
      ctx.signal.addEventListener('abort', onAbort, { once: true });
      const timers = [
        ...(maxMs !== undefined
          ? [ctx.clock.setTimeout(() => finish(new CurlError(28, `Operation timed out after ${Math.round(ctx.clock.now() - start)} milliseconds with ${bodyBytes} bytes received`)), maxMs)]
          : []),
        ...(connectMs !== undefined
          ? [
              ctx.clock.setTimeout(() => {
                if (!connectedAt) finish(new CurlError(28, `Failed to connect to ${hostName} port ${port} after ${Math.round(ctx.clock.now() - start)} ms: Timeout was reached`));
              }, connectMs),
            ]
          : []),
      ];

      const s = ctx.pod.tcp.connect({ host, port, allowHalfOpen: true });
      sock = s;
      const reader = new ResponseReader({ method, maxHead: 64 * 1024, strict: false });
      const complete = () => finish();
      s.on('connect', () => {
        connectedAt = ctx.clock.now();
        if (verbose) {
          ctx.stderr(`* Connected to ${hostName} (${host}) port ${port}\n`);
          for (const l of reqLines) ctx.stderr(`> ${l}\n`);
          ctx.stderr('> \n');
        }
        s.write(request);
      });
      s.on('data', (d: Buffer) => {
        const r = reader.push(d);
        if (r.head) {
          const p = (parsed = r.head);
          if (verbose) {
            ctx.stderr(`< HTTP/1.1 ${p.status} ${p.reason}\n`);
            for (const [k, v] of p.headers) ctx.stderr(`< ${k}: ${v}\n`);
            ctx.stderr('< \n');
          }
          if (values.include || values.head) ctx.stdout(p.text);
        }
        for (const b of r.body) writeBody(b);
        if (r.error?.kind === 'head-too-long') return finish(new CurlError(8, 'Weird server reply: header too long'));
        if (r.error?.kind === 'bad-head') return finish(new CurlError(8, 'Weird server reply'));
        if (r.error) return finish(new CurlError(56, `Failure when receiving data from the peer: ${r.error.detail}`));
        if (r.done) complete();
      });
      s.on('end', () => {
        const at = reader.end();
        if (at.state === 'no-head') return finish(new CurlError(52, 'Empty reply from server'));
        if (at.state === 'short') return finish(new CurlError(18, `transfer closed with ${at.remaining} bytes remaining to read`));
        if (at.state === 'open-chunk') return finish(new CurlError(18, 'transfer closed with outstanding read data remaining'));
        complete();
      });
      s.on('error', (e: TcpError) => {
        if (!connectedAt) {
          const after = Math.round(ctx.clock.now() - start);
          return finish(new CurlError(7, `Failed to connect to ${hostName} port ${port} after ${after} ms: ${e.code === 'ECONNREFUSED' ? "Couldn't connect to server" : e.text}`));
        }
        finish(new CurlError(56, `Recv failure: ${e.text}`));
      });
      s.on('close', () => finish(parsed ? undefined : new CurlError(52, 'Empty reply from server')));
    });
  } catch (e) {
    if (sock && !sock.destroyed) sock.destroy();
    out.end();
    if (e instanceof CurlError) return e.exitCode === 130 ? 130 : err(e.exitCode, e.message);
    throw e;
  }
  out.end();
  sock?.end();
  if (verbose) ctx.stderr(`* Connection #0 to host ${hostName} left intact\n`);
  const total = ctx.clock.now() - start;
  const p = parsed!;
  if (discard && !silent) {
    ctx.stderr(`curl: ${bodyBytes} bytes received (HTTP ${p.status}) in ${(total / 1000).toFixed(3)} s, ${formatSpeed(bodyBytes, total)}; body discarded (-o /dev/null)\n`);
  }
  if (values['write-out'] !== undefined) {
    const vars: Record<string, string> = {
      http_code: String(p.status).padStart(3, '0'),
      response_code: String(p.status),
      size_download: String(bodyBytes),
      size_header: String(p.headerBytes),
      time_connect: ((connectedAt - start) / 1000).toFixed(6),
      time_total: (total / 1000).toFixed(6),
      speed_download: String(Math.round(total > 0 ? (bodyBytes * 1000) / total : 0)),
      remote_ip: host,
      remote_port: String(port),
      local_ip: sock?.localAddress ?? '',
      local_port: String(sock?.localPort ?? ''),
      num_connects: '1',
    };
    ctx.stdout(
      values['write-out']
        .replace(/%\{([a-z_]+)\}/g, (all, k: string) => vars[k] ?? all)
        .replace(/\\n/g, '\n')
        .replace(/\\t/g, '\t')
        .replace(/\\r/g, '\r'),
    );
  }
  if (values.fail && p.status >= 400) return err(22, `The requested URL returned error: ${p.status}`);
  return 0;
}

function formatSpeed(bytes: number, ms: number): string {
  if (ms <= 0) return 'n/a';
  const bps = (bytes * 1000) / ms;
  return bps >= 1e6 ? `${(bps / 1e6).toFixed(2)} MB/s` : bps >= 1e3 ? `${(bps / 1e3).toFixed(1)} kB/s` : `${bps.toFixed(0)} B/s`;
}
