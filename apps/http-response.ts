/**
 * Reading an HTTP/1.x response off a byte stream (RFC 9112 §6.3), for the
 * clients inside the lab: the pod's `curl` and the ingress controller's
 * upstream connections. Both need the same framing decisions (no body for
 * HEAD, 1xx, 204 and 304; chunked before Content-Length; otherwise the body
 * runs until the server closes), and a connection can only be reused when
 * the message ended by its framing.
 */

export interface ResponseHead {
  status: number;
  reason: string;
  headers: [string, string][];
  /** The server will close after this response (HTTP/1.0 without keep-alive, or `Connection: close`). */
  close: boolean;
  /** Bytes of the status line and headers, the blank line included. */
  headerBytes: number;
  /** Those bytes as text (what `curl -i` prints). */
  text: string;
}

/**
 * Parses a response head (without the blank line). `strict` refuses a header
 * line without a colon, as nginx refuses such an upstream; curl skips it.
 */
export function parseResponseHead(text: string, strict = true): Omit<ResponseHead, 'headerBytes' | 'text'> | undefined {
  const lines = text.split('\r\n');
  const m = /^HTTP\/(\d)(?:\.(\d))? (\d{3})(?: (.*))?$/.exec(lines[0]);
  if (!m) return undefined;
  const headers: [string, string][] = [];
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    if (i <= 0) {
      if (strict) return undefined;
      continue;
    }
    headers.push([l.slice(0, i).trim(), l.slice(i + 1).trim()]);
  }
  const conn = headers
    .filter(([k]) => k.toLowerCase() === 'connection')
    .map(([, v]) => v.toLowerCase())
    .join(',');
  // HTTP/1.0 closes unless it says keep-alive; 1.1 keeps unless it says close.
  const http10 = m[1] === '1' && m[2] === '0';
  const close = http10 ? !/\bkeep-alive\b/.test(conn) : /\bclose\b/.test(conn);
  return { status: Number(m[3]), reason: m[4] ?? '', headers, close };
}

/** Decodes `Transfer-Encoding: chunked` (RFC 9112 §7.1) incrementally. */
export class ChunkDecoder {
  private buf: Buffer = Buffer.alloc(0);
  private left = -1; // bytes left in the current chunk; -1: expecting a size line
  finished = false;

  push(d: Buffer): { data: Buffer[]; done: boolean; error?: string } {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    const data: Buffer[] = [];
    for (;;) {
      if (this.finished) return { data, done: true };
      if (this.left < 0) {
        const eol = this.buf.indexOf('\r\n');
        if (eol < 0) return { data, done: false };
        const size = parseInt(this.buf.subarray(0, eol).toString('latin1').split(';')[0].trim(), 16);
        if (!Number.isFinite(size) || size < 0) return { data, done: false, error: 'bad chunk size' };
        this.buf = this.buf.subarray(eol + 2);
        if (size === 0) {
          this.finished = true; // trailers, if any, are ignored
          return { data, done: true };
        }
        this.left = size;
      }
      if (this.left > 0) {
        if (!this.buf.length) return { data, done: false };
        const take = this.buf.subarray(0, this.left);
        data.push(take);
        this.left -= take.length;
        this.buf = this.buf.subarray(take.length);
      }
      if (this.left === 0) {
        if (this.buf.length < 2) return { data, done: false };
        this.buf = this.buf.subarray(2);
        this.left = -1;
      }
    }
  }
}

/** What one `push` found. */
export interface ResponseProgress {
  /** Set on the push that completed the head. */
  head?: ResponseHead;
  /** Body bytes, de-chunked. */
  body: Buffer[];
  /** The message ended by its framing. */
  done: boolean;
  error?: { kind: 'head-too-long' | 'bad-head' | 'bad-chunk'; detail: string };
}

/** How a response stood when the server closed the connection. */
export type ResponseAtEnd =
  | { state: 'complete' } // framed and finished, or delimited by the close
  | { state: 'no-head' }
  | { state: 'short'; remaining: number } // Content-Length not reached
  | { state: 'open-chunk' }; // the terminating chunk never came

/** One response's framing: feed it the connection's bytes until `done`, or tell it of the close. */
export class ResponseReader {
  head?: ResponseHead;
  private buf: Buffer = Buffer.alloc(0);
  private remaining: number | undefined; // Content-Length left to read
  private chunked: ChunkDecoder | undefined;

  constructor(private readonly o: { method: string; maxHead: number; strict: boolean }) {}

  /** The message ended by its framing (not by the close), so the connection may carry another. */
  get framed(): boolean {
    return this.remaining === 0 || !!this.chunked?.finished;
  }

  push(d: Buffer): ResponseProgress {
    const body: Buffer[] = [];
    let head: ResponseHead | undefined;
    if (!this.head) {
      this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
      const end = this.buf.indexOf('\r\n\r\n');
      if (end < 0) {
        if (this.buf.length > this.o.maxHead) return { body, done: false, error: { kind: 'head-too-long', detail: `header over ${this.o.maxHead} bytes` } };
        return { body, done: false };
      }
      const p = parseResponseHead(this.buf.subarray(0, end).toString('latin1'), this.o.strict);
      if (!p) return { body, done: false, error: { kind: 'bad-head', detail: 'invalid status line or header' } };
      head = this.head = { ...p, headerBytes: end + 4, text: this.buf.subarray(0, end + 4).toString('latin1') };
      const get = (n: string) => p.headers.find(([k]) => k.toLowerCase() === n)?.[1];
      const te = get('transfer-encoding');
      const cl = get('content-length');
      if (this.o.method === 'HEAD' || p.status === 204 || p.status === 304 || (p.status >= 100 && p.status < 200)) this.remaining = 0;
      else if (te && /chunked/i.test(te)) this.chunked = new ChunkDecoder();
      else if (cl !== undefined && /^\d+$/.test(cl.trim())) this.remaining = Number(cl);
      d = this.buf.subarray(end + 4);
      this.buf = Buffer.alloc(0);
      if (this.remaining === 0) return { head, body, done: true };
    }
    if (this.chunked) {
      const r = this.chunked.push(d);
      body.push(...r.data);
      return { head, body, done: r.done, error: r.error ? { kind: 'bad-chunk', detail: r.error } : undefined };
    }
    if (this.remaining !== undefined) {
      const take = d.subarray(0, this.remaining);
      if (take.length) body.push(take);
      this.remaining -= take.length;
      return { head, body, done: this.remaining === 0 };
    }
    if (d.length) body.push(d); // delimited by the close
    return { head, body, done: false };
  }

  /** The server closed the connection. */
  end(): ResponseAtEnd {
    if (!this.head) return { state: 'no-head' };
    if (this.remaining !== undefined && this.remaining > 0) return { state: 'short', remaining: this.remaining };
    if (this.chunked && !this.chunked.finished) return { state: 'open-chunk' };
    return { state: 'complete' };
  }
}
