/**
 * `nc` (OpenBSD netcat flavour) over the pod's own sockets:
 *   nc [-v] [-z] [-w SECONDS] HOST PORT       connect; stdin -> peer, peer -> stdout;
 *                                             at stdin EOF, half-close (as -N) and
 *                                             print the rest until the peer closes
 *   nc -l [-k] [-v] [-w SECONDS] [-p] PORT    listen, serve one connection (-k: keep
 *                                             accepting), stdin -> the client
 *   nc -u [-v] [-w SECONDS] HOST PORT         each stdin chunk as one datagram, print
 *                                             replies until -w (default 1 s) after EOF
 *   nc -u -l [-k] PORT                        print datagrams as they come
 * Standard input comes from the CLI (`echo hi | podlab exec POD -- nc ...`
 * or `podlab exec -i`); without it, stdin is at EOF at once. Exit 0 on
 * success, 1 on a failed connect (`nc: connect to H port P (tcp) failed:
 * Connection refused`) or a timeout.
 */
import { parseArgs } from 'node:util';
import type { TcpError } from '../netstack/tcp/errors.ts';
import type { TcpSocket } from '../netstack/tcp/socket.ts';
import { UdpSocket } from '../netstack/tcp/udp-socket.ts';
import { sleep, textOut } from './net-util.ts';
import { resolveForTool } from './resolver.ts';
import { UsageError, type ExecContext } from './types.ts';

const USAGE = 'Usage: nc [-u] [-v] [-z] [-w SECONDS] HOST PORT\n       nc -l [-u] [-k] [-v] [-w SECONDS] [-p] PORT';

function portOf(v: string | undefined): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new UsageError(`nc: port number invalid: ${v ?? ''}`);
  return n;
}

/** Pumps the command's stdin into `write`, then calls `eof`; stops early when `stop()` says so. */
async function pumpStdin(ctx: ExecContext, write: (b: Buffer) => void, eof: () => void, stop: () => boolean): Promise<void> {
  if (ctx.stdin) {
    for await (const chunk of ctx.stdin) {
      if (stop() || ctx.signal.aborted) return;
      write(chunk);
    }
  }
  if (!stop()) eof();
}

export async function nc(ctx: ExecContext): Promise<number> {
  const { values, positionals } = parseArgs({
    args: ctx.argv.slice(1),
    allowPositionals: true,
    options: {
      u: { type: 'boolean' },
      l: { type: 'boolean' },
      k: { type: 'boolean' },
      v: { type: 'boolean' },
      z: { type: 'boolean' },
      n: { type: 'boolean' },
      N: { type: 'boolean' },
      w: { type: 'string' },
      p: { type: 'string' },
      q: { type: 'string' },
    },
  });
  const timeoutMs = values.w !== undefined ? Number(values.w) * 1000 : undefined;
  if (timeoutMs !== undefined && !(timeoutMs > 0)) throw new UsageError(`nc: timeout invalid: ${values.w}`);
  const verbose = !!values.v;
  const out = textOut(ctx.stdout);

  if (values.l) {
    const port = portOf(values.p ?? positionals[positionals.length - 1]);
    return values.u ? udpListen(ctx, port, verbose, out) : tcpListen(ctx, port, !!values.k, verbose, timeoutMs, out);
  }
  if (positionals.length !== 2) throw new UsageError(USAGE);
  const [hostArg, portArg] = positionals;
  const host = await resolveForTool(ctx, hostArg);
  if (!host) {
    ctx.stderr(`nc: getaddrinfo for host "${hostArg}" port ${portArg}: Name or service not known\n`);
    return 1;
  }
  const port = portOf(portArg);
  if (values.u) return udpClient(ctx, host, port, verbose, timeoutMs ?? 1000, out);
  return tcpClient(ctx, hostArg, host, port, { verbose, scan: !!values.z, timeoutMs }, out);
}

async function tcpClient(
  ctx: ExecContext,
  hostArg: string,
  host: string,
  port: number,
  o: { verbose: boolean; scan: boolean; timeoutMs?: number },
  out: ReturnType<typeof textOut>,
): Promise<number> {
  const sock = ctx.pod.tcp.connect({ host, port, allowHalfOpen: true });
  let closed = false;
  let failure: string | undefined;
  const finished = new Promise<void>((resolve) => {
    sock.on('close', () => {
      closed = true;
      resolve();
    });
    ctx.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  const connected = await new Promise<boolean>((resolve) => {
    const timer = o.timeoutMs !== undefined ? ctx.clock.setTimeout(() => {
      failure = `nc: connect to ${hostArg} port ${port} (tcp) timed out: Operation now in progress`;
      resolve(false);
    }, o.timeoutMs) : undefined;
    sock.once('connect', () => {
      timer?.cancel();
      resolve(true);
    });
    sock.once('error', (e: TcpError) => {
      timer?.cancel();
      failure = `nc: connect to ${hostArg} port ${port} (tcp) failed: ${e.text}`;
      resolve(false);
    });
    ctx.signal.addEventListener('abort', () => resolve(false), { once: true });
  });
  if (!connected) {
    sock.destroy();
    if (failure) ctx.stderr(failure + '\n');
    return 1;
  }
  if (o.verbose) ctx.stderr(`Connection to ${hostArg} ${port} port [tcp/*] succeeded!\n`);
  if (o.scan) {
    sock.destroy();
    return 0;
  }
  sock.on('data', (d) => out.write(d));
  sock.on('error', (e: TcpError) => ctx.stderr(`nc: ${e.text}\n`));
  let error = false;
  sock.on('error', () => (error = true));
  // Peer closed its side: like OpenBSD nc, stop reading stdin and close ours.
  sock.on('end', () => sock.end());
  void pumpStdin(
    ctx,
    (b) => sock.write(b),
    () => sock.end(),
    () => closed || sock.writableEnded,
  );
  if (o.timeoutMs !== undefined) {
    // -w: give up when the connection has been idle that long.
    let last = ctx.clock.now();
    sock.on('data', () => (last = ctx.clock.now()));
    void (async () => {
      while (!closed && !ctx.signal.aborted) {
        await sleep(ctx, Math.max(1, last + o.timeoutMs! - ctx.clock.now()));
        if (!closed && ctx.clock.now() - last >= o.timeoutMs!) sock.destroy();
      }
    })();
  }
  await finished;
  if (!closed) sock.destroy();
  out.end();
  return error ? 1 : 0;
}

async function tcpListen(ctx: ExecContext, port: number, keep: boolean, verbose: boolean, timeoutMs: number | undefined, out: ReturnType<typeof textOut>): Promise<number> {
  let server;
  try {
    server = ctx.pod.tcp.listen(port, { allowHalfOpen: true });
  } catch (e) {
    ctx.stderr(`nc: ${(e as TcpError).text ?? (e as Error).message}\n`);
    return 1;
  }
  if (verbose) ctx.stderr(`Listening on 0.0.0.0 ${port}\n`);
  let current: TcpSocket | undefined;
  let served = 0;
  const done = new Promise<void>((resolve) => {
    ctx.signal.addEventListener('abort', () => resolve(), { once: true });
    if (timeoutMs !== undefined) ctx.clock.setTimeout(() => served === 0 && resolve(), timeoutMs);
    server.on('connection', (s) => {
      if (current) {
        s.destroy(); // one client at a time
        return;
      }
      current = s;
      served++;
      if (verbose) ctx.stderr(`Connection received on ${s.remoteAddress} ${s.remotePort}\n`);
      s.on('data', (d) => out.write(d));
      s.on('end', () => s.end());
      s.on('error', () => {});
      s.on('close', () => {
        current = undefined;
        if (!keep) resolve();
      });
      if (served === 1) {
        void pumpStdin(
          ctx,
          (b) => current?.write(b),
          () => current?.end(),
          () => !current,
        );
      }
    });
  });
  await done;
  server.close();
  current?.destroy();
  out.end();
  return 0;
}

async function udpClient(ctx: ExecContext, host: string, port: number, verbose: boolean, waitMs: number, out: ReturnType<typeof textOut>): Promise<number> {
  const u = new UdpSocket(ctx.pod.stack).bind(0);
  let refused = false;
  u.on('message', (d) => out.write(d));
  u.on('error', (e) => {
    if (e.code === 'ECONNREFUSED') refused = true;
    ctx.stderr(`nc: ${e.text}\n`);
  });
  if (verbose) ctx.stderr(`Connection to ${host} ${port} port [udp/*] succeeded!\n`);
  await pumpStdin(
    ctx,
    (b) => u.send(b, port, host),
    () => {},
    () => false,
  );
  await sleep(ctx, waitMs);
  u.close();
  out.end();
  return refused ? 1 : 0;
}

async function udpListen(ctx: ExecContext, port: number, verbose: boolean, out: ReturnType<typeof textOut>): Promise<number> {
  let u: UdpSocket;
  try {
    u = new UdpSocket(ctx.pod.stack).bind(port);
  } catch (e) {
    ctx.stderr(`nc: ${(e as TcpError).text ?? (e as Error).message}\n`);
    return 1;
  }
  if (verbose) ctx.stderr(`Bound on 0.0.0.0 ${port}\n`);
  let last: { address: string; port: number } | undefined;
  u.on('message', (d, from) => {
    last = from;
    out.write(d);
  });
  void pumpStdin(
    ctx,
    (b) => last && u.send(b, last.port, last.address),
    () => {},
    () => false,
  );
  await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
  u.close();
  out.end();
  return 0;
}
