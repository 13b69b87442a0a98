/**
 * A small HTTP/1.1 server over the pod's TCP (RFC 9112 message syntax):
 * requests parsed incrementally (request line, headers, Content-Length
 * bodies skipped), persistent connections by default in HTTP/1.1 and on
 * request in HTTP/1.0, pipelined requests answered in order, large bodies
 * streamed with backpressure, an idle keep-alive timeout. The apps (nginx,
 * podlab/http, hashicorp/http-echo) only supply a handler.
 */
import type { Clock, Timer } from '../common/clock.ts';
import type { TcpServer, TcpSocket } from '../netstack/tcp/socket.ts';
import type { TcpStack } from '../netstack/tcp/stack.ts';
import { imfFixdate, utcMonthName } from '../common/utc-time.ts';

export interface HttpRequest {
  method: string;
  target: string;
  path: string;
  version: '1.0' | '1.1';
  headers: Map<string, string>;
  remoteAddress: string;
  remotePort: number;
  /** The request's body (Content-Length bytes; empty without one). */
  body: Buffer;
  /** Bytes the request took on the wire: request line, headers and body (nginx's `$request_length`). */
  length: number;
  /** The port the request arrived on (nginx's `$server_port`). */
  localPort: number;
}

export interface HttpResponse {
  status: number;
  /** The reason phrase, when not the one STATUS_TEXT gives (a proxy passes its upstream's). */
  reason?: string;
  headers?: Record<string, string>;
  /** A body in one piece, or `length` bytes produced by `chunk(offset, n)` and streamed. */
  body?: Buffer | string | { length: number; chunk(offset: number, n: number): Buffer };
}

/** Answers a request at once, or later (a proxy waits for its upstream; the connection answers in order meanwhile). */
export type HttpHandler = (req: HttpRequest) => HttpResponse | Promise<HttpResponse>;

export interface HttpServerOptions {
  serverName: string;
  clock: Clock;
  /** Idle time before a kept-alive connection is closed (nginx: keepalive_timeout 75s). */
  keepAliveMs?: number;
  /** One line per answered request, in nginx's `combined` format: the container's access log (`kubectl logs`). */
  accessLog?: (line: string) => void;
}

/** nginx's `$time_local`: `04/Dec/2026:12:00:00 +0000`. */
export function timeLocal(d: Date): string {
  const mon = utcMonthName(d);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${p(d.getUTCDate())}/${mon}/${d.getUTCFullYear()}:${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
}

/** nginx's `combined` log line for one request (`$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"`). */
export function combinedLogLine(req: HttpRequest, status: number, bytes: number, now = new Date()): string {
  const h = (name: string) => req.headers.get(name) ?? '-';
  return `${req.remoteAddress} - - [${timeLocal(now)}] "${req.method} ${req.target} HTTP/${req.version}" ${status} ${bytes} "${h('referer')}" "${h('user-agent')}"`;
}

export const STATUS_TEXT: Record<number, string> = {
  200: 'OK',
  400: 'Bad Request',
  404: 'Not Found',
  405: 'Method Not Allowed',
  413: 'Content Too Large',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  // nginx's own wording for the proxy errors (ngx_http_header_filter_module.c).
  502: 'Bad Gateway',
  503: 'Service Temporarily Unavailable',
  504: 'Gateway Time-out',
  505: 'HTTP Version Not Supported',
};

const MAX_HEADER = 16 * 1024;
const STREAM_CHUNK = 64 * 1024;

/** IMF-fixdate (RFC 9110 §5.6.7), as servers send in Date. */
export function httpDate(d = new Date()): string {
  return imfFixdate(d);
}

export interface HttpServerStats {
  connections: number;
  requests: number;
  bytesOut: number;
}

/** Serves HTTP on `port` of `tcp`; throws TcpError EADDRINUSE if taken. */
export function serveHttp(tcp: TcpStack, port: number, handler: HttpHandler, opts: HttpServerOptions): { server: TcpServer; stats: HttpServerStats; close(): void } {
  const stats: HttpServerStats = { connections: 0, requests: 0, bytesOut: 0 };
  const socks = new Set<TcpSocket>();
  // Half-open allowed: a client's FIN must not cut a response still being streamed.
  const server = tcp.listen(port, { allowHalfOpen: true }, (sock) => {
    stats.connections++;
    socks.add(sock);
    sock.on('close', () => socks.delete(sock));
    new HttpConnection(sock, handler, opts, stats);
  });
  return {
    server,
    stats,
    close() {
      server.close();
      for (const s of socks) s.destroy();
    },
  };
}

class HttpConnection {
  private buf: Buffer = Buffer.alloc(0);
  private busy = false;
  private closing = false;
  private idle: Timer | null = null;

  constructor(
    private readonly sock: TcpSocket,
    private readonly handler: HttpHandler,
    private readonly opts: HttpServerOptions,
    private readonly stats: HttpServerStats,
  ) {
    sock.on('data', (d) => {
      this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
      this.pump();
    });
    sock.on('end', () => {
      this.closing = true;
      if (!this.busy) sock.end();
    });
    sock.on('error', () => {});
    sock.on('close', () => this.idle?.cancel());
    this.armIdle();
  }

  private armIdle(): void {
    this.idle?.cancel();
    this.idle = this.opts.clock.setTimeout(() => {
      if (!this.busy) this.sock.end();
    }, this.opts.keepAliveMs ?? 75_000);
  }

  /** Parses and answers as many complete requests as are buffered. */
  private pump(): void {
    while (!this.busy && !this.closing) {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end < 0) {
        if (this.buf.length > MAX_HEADER) this.fail(431);
        return;
      }
      if (end > MAX_HEADER) return this.fail(431);
      const head = this.buf.subarray(0, end).toString('latin1');
      const lines = head.split('\r\n');
      const m = /^([A-Z]+) (\S+) HTTP\/(\d)\.(\d)$/.exec(lines[0]);
      if (!m) return this.fail(400);
      if (m[3] !== '1') return this.fail(505);
      const headers = new Map<string, string>();
      for (const line of lines.slice(1)) {
        const i = line.indexOf(':');
        if (i <= 0 || /\s/.test(line[i - 1])) return this.fail(400);
        const name = line.slice(0, i).toLowerCase();
        const value = line.slice(i + 1).trim();
        headers.set(name, headers.has(name) ? `${headers.get(name)}, ${value}` : value);
      }
      if (headers.has('transfer-encoding')) return this.fail(501);
      const cl = headers.get('content-length');
      const bodyLen = cl === undefined ? 0 : /^\d+$/.test(cl) ? Number(cl) : -1;
      if (bodyLen < 0) return this.fail(400);
      if (bodyLen > 16 * 1024 * 1024) return this.fail(413);
      if (this.buf.length < end + 4 + bodyLen) return; // wait for the whole body
      const body = Buffer.from(this.buf.subarray(end + 4, end + 4 + bodyLen));
      this.buf = this.buf.subarray(end + 4 + bodyLen);
      const version = m[4] === '0' ? '1.0' : '1.1';
      const conn = (headers.get('connection') ?? '').toLowerCase();
      const keepAlive = version === '1.1' ? !/\bclose\b/.test(conn) : /\bkeep-alive\b/.test(conn);
      const target = m[2];
      const req: HttpRequest = {
        method: m[1],
        target,
        path: target.split('?')[0],
        version,
        headers,
        remoteAddress: this.sock.remoteAddress,
        remotePort: this.sock.remotePort,
        body,
        length: end + 4 + bodyLen,
        localPort: this.sock.localPort,
      };
      this.stats.requests++;
      let res: HttpResponse | Promise<HttpResponse>;
      try {
        res = this.handler(req);
      } catch {
        res = { status: 500, body: 'internal error\n' };
      }
      if (res instanceof Promise) {
        // Later requests on this connection wait: responses go out in request order (RFC 9112 §9.3.2).
        this.busy = true;
        res.then(
          (r) => this.respond(req, r, keepAlive),
          () => this.respond(req, { status: 500, body: 'internal error\n' }, keepAlive),
        );
        return;
      }
      this.respond(req, res, keepAlive);
    }
  }

  private fail(status: number): void {
    this.respond(null, { status, body: `${status} ${STATUS_TEXT[status] ?? ''}\n` }, false);
  }

  private respond(req: HttpRequest | null, res: HttpResponse, keepAlive: boolean): void {
    if (this.sock.destroyed) return; // the client went away while an answer was pending
    const body = res.body ?? '';
    const length = typeof body === 'string' ? Buffer.byteLength(body) : body.length;
    const headers: Record<string, string> = {
      Server: this.opts.serverName,
      Date: httpDate(),
      'Content-Type': 'text/plain; charset=utf-8',
      ...res.headers,
      'Content-Length': String(length),
      Connection: keepAlive ? 'keep-alive' : 'close',
    };
    const head =
      `HTTP/1.1 ${res.status} ${res.reason ?? STATUS_TEXT[res.status] ?? 'Unknown'}\r\n` +
      Object.entries(headers)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('') +
      '\r\n';
    const headOnly = req?.method === 'HEAD';
    if (req) this.opts.accessLog?.(combinedLogLine(req, res.status, headOnly ? 0 : length));
    this.busy = true;
    const finish = () => {
      this.busy = false;
      if (!keepAlive || this.closing) {
        this.closing = true;
        this.sock.end();
        return;
      }
      this.armIdle();
      if (this.buf.length) this.pump();
    };
    if (headOnly || length === 0) {
      this.write(Buffer.from(head, 'latin1'));
      return finish();
    }
    if (typeof body === 'string' || Buffer.isBuffer(body)) {
      this.write(Buffer.concat([Buffer.from(head, 'latin1'), typeof body === 'string' ? Buffer.from(body) : body]));
      return finish();
    }
    // Streamed: write chunks while the socket takes them, resume on 'drain'.
    this.write(Buffer.from(head, 'latin1'));
    let off = 0;
    const pump = () => {
      while (off < body.length) {
        if (this.sock.destroyed) return;
        const n = Math.min(STREAM_CHUNK, body.length - off);
        const ok = this.write(body.chunk(off, n));
        off += n;
        if (!ok) return void this.sock.once('drain', pump);
      }
      finish();
    };
    pump();
  }

  private write(b: Buffer): boolean {
    this.stats.bytesOut += b.length;
    return this.sock.write(b);
  }
}
