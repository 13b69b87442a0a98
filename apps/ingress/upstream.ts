/**
 * The proxy's side towards the endpoints: HTTP/1.1 requests over the pod's
 * TCP, with a pool of idle keep-alive connections per endpoint as nginx's
 * `keepalive` upstream directive keeps them (ingress-nginx's defaults:
 * upstream-keepalive-connections 320, -timeout 60 s, -requests 10000).
 *
 * A response is read whole (Content-Length, chunked, or up to the close) and
 * handed back buffered, as nginx buffers a proxied response by default; one
 * larger than `maxBodyBytes` fails the request. A connection goes back to the
 * pool only when its response was complete and neither side said `close`. A
 * request that dies on a reused connection before any byte of an answer is
 * retried once on a fresh one: the endpoint may have closed the idle
 * connection as it was taken (nginx does the same).
 */
import type { Clock, Timer } from '../../common/clock.ts';
import type { TcpSocket } from '../../netstack/tcp/socket.ts';
import type { TcpStack } from '../../netstack/tcp/stack.ts';
import { ResponseReader, type ResponseHead } from '../http-response.ts';
import type { Endpoint } from './routing.ts';

export interface UpstreamOptions {
  clock: Clock;
  /** Idle connections kept per endpoint (nginx `keepalive`). */
  keepaliveConnections?: number;
  /** How long an idle connection is kept (`keepalive_timeout`). */
  keepaliveTimeoutMs?: number;
  /** Requests one connection carries before it is closed (`keepalive_requests`). */
  keepaliveRequests?: number;
  connectTimeoutMs?: number;
  /** From the request sent to the end of the response (`proxy_read_timeout`, per request here). */
  readTimeoutMs?: number;
  maxBodyBytes?: number;
}

export interface UpstreamResponse {
  status: number;
  reason: string;
  /** Header fields in the order received, names as sent. */
  headers: [string, string][];
  body: Buffer;
  /** The connection was a reused keep-alive one. */
  reused: boolean;
}

/** Why a request to one endpoint failed: nginx's 502 (connect, reset, bad answer) or 504 (timeout). */
export interface UpstreamFailure {
  failure: 'connect' | 'reset' | 'invalid' | 'timeout' | 'too-large';
  detail: string;
}

export const isUpstreamFailure = (r: UpstreamResponse | UpstreamFailure): r is UpstreamFailure => 'failure' in r;

export interface UpstreamStats {
  /** TCP connections opened to endpoints. */
  connections: number;
  /** Requests sent on a connection that had carried one before. */
  reused: number;
  requests: number;
  failures: number;
}

interface Idle {
  sock: TcpSocket;
  served: number;
  timer: Timer;
  /** Drops the entry when the endpoint closes the idle connection. */
  gone: () => void;
}

const ignore = () => {};

const MAX_HEAD = 64 * 1024;

export class UpstreamPool {
  readonly stats: UpstreamStats = { connections: 0, reused: 0, requests: 0, failures: 0 };
  private readonly idle = new Map<string, Idle[]>();
  private readonly o: Required<UpstreamOptions>;

  constructor(
    private readonly tcp: TcpStack,
    opts: UpstreamOptions,
  ) {
    this.o = { keepaliveConnections: 320, keepaliveTimeoutMs: 60_000, keepaliveRequests: 10_000, connectTimeoutMs: 5_000, readTimeoutMs: 60_000, maxBodyBytes: 64 * 1024 * 1024, ...opts };
  }

  /** Idle connections held now, over all endpoints. */
  get idleCount(): number {
    let n = 0;
    for (const l of this.idle.values()) n += l.length;
    return n;
  }

  /** Sends one request (`head` ends with the blank line) to `ep` and reads the answer. */
  async request(ep: Endpoint, head: string, body: Buffer, method: string): Promise<UpstreamResponse | UpstreamFailure> {
    this.stats.requests++;
    const taken = this.take(ep);
    if (taken) {
      this.stats.reused++;
      const r = await this.exchange(ep, taken.sock, taken.served, true, head, body, method);
      if (!('retry' in r)) return this.count(r);
    }
    const sock = this.tcp.connect({ host: ep.ip, port: ep.port, allowHalfOpen: true });
    this.stats.connections++;
    const r = await this.exchange(ep, sock, 0, false, head, body, method);
    return this.count('retry' in r ? r.failure : r);
  }

  /** Closes every idle connection (the app stops). */
  close(): void {
    for (const list of this.idle.values()) {
      for (const i of list) {
        i.timer.cancel();
        i.sock.end();
      }
    }
    this.idle.clear();
  }

  private count<T extends UpstreamResponse | UpstreamFailure>(r: T): T {
    if (isUpstreamFailure(r)) this.stats.failures++;
    return r;
  }

  private take(ep: Endpoint): Idle | undefined {
    const list = this.idle.get(`${ep.ip}:${ep.port}`);
    while (list?.length) {
      const i = list.pop()!;
      i.timer.cancel();
      i.sock.off('end', i.gone).off('close', i.gone).off('error', ignore);
      if (!i.sock.destroyed && !i.sock.writableEnded && i.sock.state === 'ESTABLISHED') return i;
      i.sock.destroy();
    }
    return undefined;
  }

  private release(ep: Endpoint, sock: TcpSocket, served: number): void {
    const key = `${ep.ip}:${ep.port}`;
    const list = this.idle.get(key) ?? [];
    if (served >= this.o.keepaliveRequests || list.length >= this.o.keepaliveConnections) return void sock.end();
    const drop = () => {
      const at = list.indexOf(entry);
      if (at >= 0) list.splice(at, 1);
      entry.timer.cancel();
    };
    const entry: Idle = {
      sock,
      served,
      timer: this.o.clock.setTimeout(() => (drop(), sock.end()), this.o.keepaliveTimeoutMs),
      gone: () => (drop(), sock.end()),
    };
    sock.on('end', entry.gone).on('close', entry.gone).on('error', ignore);
    list.push(entry);
    this.idle.set(key, list);
  }

  /** One request and response on `sock`; `retry` when a reused connection died before answering. */
  private exchange(
    ep: Endpoint,
    sock: TcpSocket,
    served: number,
    reused: boolean,
    head: string,
    body: Buffer,
    method: string,
  ): Promise<UpstreamResponse | UpstreamFailure | { retry: true; failure: UpstreamFailure }> {
    return new Promise((resolve) => {
      const reader = new ResponseReader({ method, maxHead: MAX_HEAD, strict: true });
      let parsed: ResponseHead | undefined;
      const parts: Buffer[] = [];
      let size = 0;
      let gotAny = false;
      let settled = false;
      const timers: Timer[] = [];
      const cleanup = () => {
        timers.forEach((t) => t.cancel());
        sock.off('data', onData);
        sock.off('end', onEnd);
        sock.off('error', onError);
        sock.off('close', onClose);
        sock.off('connect', onConnect);
      };
      const fail = (failure: UpstreamFailure['failure'], detail: string) => {
        if (settled) return;
        settled = true;
        cleanup();
        sock.destroy();
        const f = { failure, detail };
        resolve(reused && !gotAny && failure !== 'timeout' ? { retry: true, failure: f } : f);
      };
      const done = () => {
        if (settled || !parsed) return;
        settled = true;
        cleanup();
        const res: UpstreamResponse = { status: parsed.status, reason: parsed.reason, headers: parsed.headers, body: Buffer.concat(parts), reused };
        // Reusable only when the message ended by its framing and nobody asked to close.
        if (reader.framed) {
          if (parsed.close || sock.destroyed || sock.writableEnded) sock.end();
          else this.release(ep, sock, served + 1);
        } else sock.end();
        resolve(res);
      };
      const take = (d: Buffer) => {
        size += d.length;
        if (size > this.o.maxBodyBytes) return fail('too-large', `upstream response over ${this.o.maxBodyBytes} bytes`);
        parts.push(d);
      };
      const onData = (d: Buffer) => {
        gotAny = true;
        const r = reader.push(d);
        if (r.head) parsed = r.head;
        for (const b of r.body) take(b);
        if (settled) return; // too large
        if (r.error?.kind === 'head-too-long') return fail('invalid', 'upstream sent too big header');
        if (r.error?.kind === 'bad-head') return fail('invalid', 'upstream sent invalid header');
        if (r.error) return fail('invalid', `upstream sent invalid chunked response: ${r.error.detail}`);
        if (r.done) done();
      };
      const onEnd = () => {
        if (parsed && reader.end().state === 'complete' && !reader.framed) return done();
        fail(gotAny ? 'invalid' : 'reset', gotAny ? 'upstream prematurely closed connection while reading upstream' : 'upstream prematurely closed connection while reading response header from upstream');
      };
      const onError = (e: Error & { code?: string }) =>
        fail(!reused && !gotAny && e.code !== 'ECONNRESET' && sock.state !== 'ESTABLISHED' ? 'connect' : 'reset', `${e.message}`);
      const onConnect = () => timers.push(this.o.clock.setTimeout(() => fail('timeout', 'upstream timed out while reading response header from upstream'), this.o.readTimeoutMs));
      const onClose = () => fail('reset', 'upstream connection closed');
      sock.on('data', onData);
      sock.on('end', onEnd);
      sock.on('error', onError);
      sock.on('close', onClose);
      if (reused) onConnect();
      else {
        sock.once('connect', onConnect);
        timers.push(this.o.clock.setTimeout(() => !settled && sock.state !== 'ESTABLISHED' && fail('timeout', 'upstream timed out while connecting to upstream'), this.o.connectTimeoutMs));
      }
      sock.write(body.length ? Buffer.concat([Buffer.from(head, 'latin1'), body]) : Buffer.from(head, 'latin1'));
    });
  }
}

/** `HTTP/1.1 200 OK` and its fields; undefined when it is not a response head. */
