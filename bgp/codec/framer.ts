/**
 * Streaming framer: turns the bytes of a TCP stream into BGP messages.
 *
 * The header is validated as soon as its 19 bytes arrive (marker, length,
 * type), so garbage is rejected without waiting for a body that may never
 * come; at most one 4096-byte message is ever buffered beyond the chunk
 * being processed. After a BgpError the stream cannot be resynchronized (BGP
 * has no resync point), so the framer stays broken and returns that error.
 *
 * Two ways to drive it:
 *  - `push(chunk)` then `next()` until undefined: one message at a time, so
 *    the caller can change `options.as4` right after the OPEN exchange and
 *    have the following UPDATEs of the same chunk decoded with it (the
 *    speaker does this);
 *  - `write(chunk)`: everything decodable at once, `BgpMessage[] | BgpError`.
 *    An error wins over messages framed before it in the same chunk: the
 *    session is about to be reset with a NOTIFICATION, and a reset withdraws
 *    everything the peer sent anyway.
 */
import { BGP_HEADER_LEN } from './constants.ts';
import type { AttrCodecOptions } from './attributes.ts';
import { BgpError, isBgpError } from './error.ts';
import { parseHeaderAt } from './header.ts';
import { type BgpMessage, parseBody } from './message.ts';

/** Splits a TCP byte stream into decoded BGP messages. */
export class BgpFramer {
  private buf: Buffer = Buffer.alloc(0);
  private broken: BgpError | undefined;
  /** Decoding context; flip `as4` once both OPENs advertised the 4-octet AS capability. */
  readonly options: AttrCodecOptions;

  constructor(options: AttrCodecOptions = {}) {
    this.options = { ...options };
  }

  /** Bytes received but not yet returned as a message. */
  get buffered(): number {
    return this.buf.length;
  }

  /** The error that broke the stream, if any. */
  get error(): BgpError | undefined {
    return this.broken;
  }

  /** Appends received bytes. */
  push(chunk: Buffer): void {
    if (this.broken || chunk.length === 0) return;
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
  }

  /** The next complete message, a BgpError (then forever the same one), or undefined if more bytes are needed. */
  next(): BgpMessage | BgpError | undefined {
    if (this.broken) return this.broken;
    if (this.buf.length < BGP_HEADER_LEN) return undefined;
    const h = parseHeaderAt(this.buf, 0);
    if (isBgpError(h)) return (this.broken = h);
    if (this.buf.length < h.length) return undefined;
    const body = this.buf.subarray(BGP_HEADER_LEN, h.length);
    this.buf = this.buf.subarray(h.length);
    const msg = parseBody(h.type, body, this.options);
    if (isBgpError(msg)) this.broken = msg;
    return msg;
  }

  /** Appends `chunk` and returns every message now complete, or the error that broke the stream. */
  write(chunk: Buffer): BgpMessage[] | BgpError {
    this.push(chunk);
    const out: BgpMessage[] = [];
    for (;;) {
      const m = this.next();
      if (m === undefined) return out;
      if (isBgpError(m)) return m;
      out.push(m);
    }
  }
}
