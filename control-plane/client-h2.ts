/**
 * One HTTP/2 connection to the apiserver that all of an ApiClient's requests
 * and watches share, as client-go's do. Over HTTP/1.1 each watch holds a TLS
 * connection of its own (a node agent has about ten), each a handshake on both
 * sides. The connection is made when first needed, and again after it closed
 * (an apiserver restart, a GOAWAY). It keeps the process alive only while a
 * request or a watch is open on it, as HTTP/1.1's kept-alive sockets do.
 */
import { connect, constants, type ClientHttp2Session, type ClientHttp2Stream, type OutgoingHttpHeaders } from 'node:http2';
import type { SecureContext } from 'node:tls';

/**
 * What the server may send before this client reads on (per stream, and for the whole connection): wide enough
 * that a large list or a burst of watch events does not wait on WINDOW_UPDATEs, as HTTP/1.1 over TCP does not.
 */
const STREAM_WINDOW = 4 * 1024 * 1024;
const CONNECTION_WINDOW = 16 * 1024 * 1024;

/** Failures that mean the request never reached a live connection: sent again once on a fresh one, as HTTP/1.1 does for a dead kept-alive socket. */
const CONNECTION_GONE = new Set(['ECONNRESET', 'EPIPE', 'ERR_HTTP2_GOAWAY_SESSION', 'ERR_HTTP2_INVALID_SESSION', 'ERR_HTTP2_STREAM_CANCEL', 'REFUSED_STREAM']);

/** The server's TLS refused h2 (it speaks HTTP/1.1 only): the client goes on over HTTP/1.1. */
export const NO_H2 = 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL';

/** A response's status and its body, readable as a stream. */
export interface H2Response {
  status: number;
  body: ClientHttp2Stream;
}

/** Why a request failed before its response: `retryable` when it went out on an earlier request's connection, which had gone. */
export class H2RequestError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
    readonly retryable: boolean,
    cause?: unknown,
  ) {
    super(message, { cause });
  }
}

export class H2Connection {
  private session?: ClientHttp2Session;
  /** Streams open on each session: it is referenced while there are any. */
  private readonly open = new WeakMap<ClientHttp2Session, number>();

  constructor(
    private readonly authority: string,
    private readonly secureContext: SecureContext,
  ) {}

  /**
   * Sends a request; resolves with the response's headers and its body, or
   * null when `signal` aborted first. `timeoutMs` ends a request idle that long.
   */
  request(headers: OutgoingHttpHeaders, payload: string | undefined, signal: AbortSignal | undefined, timeoutMs: number | undefined): Promise<H2Response | null> {
    const { session, reused } = this.current();
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (message: string, code: string | undefined, cause?: unknown): void => {
        if (settled) return;
        settled = true;
        if (signal?.aborted) resolve(null);
        else reject(new H2RequestError(message, code, reused && code !== undefined && CONNECTION_GONE.has(code), cause));
      };
      let stream: ClientHttp2Stream;
      try {
        stream = session.request(headers, { endStream: payload === undefined, ...(signal ? { signal } : {}) });
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        fail(e.message, e.code, err);
        return;
      }
      this.track(session, stream);
      stream.on('response', (h) => {
        if (settled) return;
        settled = true;
        resolve({ status: Number(h[':status']), body: stream });
      });
      // A stream cancelled because its connection failed carries the connection's error as its cause.
      stream.on('error', (err: NodeJS.ErrnoException) => {
        const cause = err.cause as NodeJS.ErrnoException | undefined;
        if (err.code === 'ERR_HTTP2_STREAM_CANCEL' && cause?.code) fail(cause.message, cause.code, cause);
        else fail(err.message, err.code, err);
      });
      // Refused, or cancelled with the connection it went out on (which had closed, unknown to this client yet).
      stream.on('close', () => {
        const gone = stream.rstCode === constants.NGHTTP2_REFUSED_STREAM || session.closed || session.destroyed;
        fail(`stream closed before the response (HTTP/2 error code ${stream.rstCode})`, gone ? 'REFUSED_STREAM' : undefined);
      });
      if (timeoutMs !== undefined) stream.setTimeout(timeoutMs, () => {
        fail(`no response within ${timeoutMs} ms`, 'ETIMEDOUT');
        stream.close(constants.NGHTTP2_CANCEL);
      });
      if (payload !== undefined) stream.end(payload);
    });
  }

  /** Closes the connection once its open streams end. The next request makes a new one. */
  close(): void {
    this.session?.close();
    this.session = undefined;
  }

  private current(): { session: ClientHttp2Session; reused: boolean } {
    const live = this.session;
    if (live && !live.closed && !live.destroyed) return { session: live, reused: true };
    const session = connect(this.authority, { secureContext: this.secureContext, settings: { initialWindowSize: STREAM_WINDOW } });
    // Each open stream gets the connection's failure as its own error.
    session.on('error', () => {});
    const forget = (): void => {
      if (this.session === session) this.session = undefined;
    };
    session.on('goaway', forget);
    session.on('close', forget);
    session.once('connect', () => session.setLocalWindowSize(CONNECTION_WINDOW));
    session.unref();
    this.open.set(session, 0);
    this.session = session;
    return { session, reused: false };
  }

  private track(session: ClientHttp2Session, stream: ClientHttp2Stream): void {
    const n = this.open.get(session) ?? 0;
    if (n === 0) session.ref();
    this.open.set(session, n + 1);
    stream.once('close', () => {
      const left = (this.open.get(session) ?? 1) - 1;
      this.open.set(session, left);
      if (left === 0) session.unref();
    });
  }
}
