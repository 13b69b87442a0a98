/**
 * SPDY/3.1 framing (draft-mbelshe-httpbis-spdy-00, SPDY/3 plus 3.1's
 * session flow-control window), the transport kubectl's `port-forward`
 * speaks to the apiserver and the kubelet: on its own after an HTTP
 * `Upgrade: SPDY/3.1`, or inside WebSocket binary messages
 * (subprotocol `SPDY/3.1+portforward.k8s.io`, kubectl 1.31+).
 *
 * ```text
 * control frame                            data frame
 * +-+-------------+---------------+        +-+-----------------------------+
 * |1|  version 3  |     type      |        |0|         stream id           |
 * +---------------+---------------+        +---------------+---------------+
 * |    flags      |  length (24)  |        |    flags      |  length (24)  |
 * +---------------+---------------+        +---------------+---------------+
 * |  type-specific data ...       |        |  data ...                     |
 * ```
 *
 * SYN_STREAM, SYN_REPLY and HEADERS carry a name/value header block
 * compressed with one zlib stream per direction and the spec's dictionary
 * (./spdy-headers.ts); here it stays the opaque compressed bytes, so the
 * frame codec is pure and the stateful (de)compression lives with the
 * connection. Parsing is incremental: a buffer holding a partial frame is
 * `need`, not an error.
 */
import { WireError } from './errors.ts';

export const SPDY_VERSION = 3;
export const SPDY_HEADER_LEN = 8;
/** A frame's length field is 24 bits. */
export const SPDY_MAX_LENGTH = 0xffffff;

export const SpdyType = { SYN_STREAM: 1, SYN_REPLY: 2, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, HEADERS: 8, WINDOW_UPDATE: 9 } as const;
/** FLAG_FIN on data and stream frames; FLAG_UNIDIRECTIONAL on SYN_STREAM. */
export const SpdyFlag = { FIN: 0x01, UNIDIRECTIONAL: 0x02 } as const;

/** RST_STREAM status codes (section 2.4.2). */
export const SpdyRstStatus = {
  PROTOCOL_ERROR: 1,
  INVALID_STREAM: 2,
  REFUSED_STREAM: 3,
  UNSUPPORTED_VERSION: 4,
  CANCEL: 5,
  INTERNAL_ERROR: 6,
  FLOW_CONTROL_ERROR: 7,
  STREAM_IN_USE: 8,
  STREAM_ALREADY_CLOSED: 9,
  FRAME_TOO_LARGE: 11,
} as const;

/** GOAWAY status codes (section 2.6.6). */
export const SpdyGoAwayStatus = { OK: 0, PROTOCOL_ERROR: 1, INTERNAL_ERROR: 2 } as const;

export interface SpdySetting {
  flags: number;
  id: number;
  value: number;
}

export type SpdyFrame =
  | { kind: 'data'; streamId: number; flags: number; data: Buffer }
  | { kind: 'syn_stream'; flags: number; streamId: number; associatedTo: number; priority: number; slot: number; headerBlock: Buffer }
  | { kind: 'syn_reply'; flags: number; streamId: number; headerBlock: Buffer }
  | { kind: 'rst_stream'; flags: number; streamId: number; status: number }
  | { kind: 'settings'; flags: number; entries: SpdySetting[] }
  | { kind: 'ping'; flags: number; id: number }
  | { kind: 'goaway'; flags: number; lastGoodStreamId: number; status: number }
  | { kind: 'headers'; flags: number; streamId: number; headerBlock: Buffer }
  | { kind: 'window_update'; flags: number; streamId: number; delta: number }
  /** A control frame of a type this codec does not know: section 2.2 says ignore it. */
  | { kind: 'unknown'; version: number; type: number; flags: number; payload: Buffer };

/** One parsed frame and the bytes it took, or how many bytes are needed before it can be. */
export type SpdyParse = { frame: SpdyFrame; length: number } | { need: number };

const u31 = (b: Buffer, off: number): number => b.readUInt32BE(off) & 0x7fffffff;

function bad(reason: 'truncated' | 'bad-length' | 'bad-value' | 'bad-version' | 'reserved-bits', msg: string): WireError {
  return new WireError('spdy', reason, msg);
}

/**
 * Parses the frame at the start of `buf`. `maxLength` bounds a frame's
 * length field (the caller's memory budget; the protocol allows 16 MiB):
 * a longer frame is a `bad-length` error, not a wait for 16 MiB.
 */
export function parseSpdyFrame(buf: Buffer, maxLength = SPDY_MAX_LENGTH): SpdyParse | WireError {
  if (buf.length < SPDY_HEADER_LEN) return { need: SPDY_HEADER_LEN - buf.length };
  const word = buf.readUInt32BE(4);
  const flags = word >>> 24;
  const len = word & 0xffffff;
  if (len > maxLength) return bad('bad-length', `frame length ${len} exceeds the limit ${maxLength}`);
  const total = SPDY_HEADER_LEN + len;
  if (buf.length < total) return { need: total - buf.length };
  const p = buf.subarray(SPDY_HEADER_LEN, total);
  const done = (frame: SpdyFrame): SpdyParse => ({ frame, length: total });
  if ((buf[0] & 0x80) === 0) {
    const streamId = u31(buf, 0);
    if (streamId === 0) return bad('bad-value', 'data frame on stream 0');
    return done({ kind: 'data', streamId, flags, data: Buffer.from(p) });
  }
  const version = buf.readUInt16BE(0) & 0x7fff;
  const type = buf.readUInt16BE(2);
  if (version !== SPDY_VERSION) return bad('bad-version', `SPDY version ${version}, expected ${SPDY_VERSION}`);
  const need = (n: number, what: string): WireError | undefined => (len < n ? bad('truncated', `${what}: length ${len} < ${n}`) : undefined);
  const exact = (n: number, what: string): WireError | undefined => (len !== n ? bad('bad-length', `${what}: length ${len} != ${n}`) : undefined);
  switch (type) {
    case SpdyType.SYN_STREAM: {
      const e = need(10, 'SYN_STREAM');
      if (e) return e;
      const streamId = u31(p, 0);
      if (streamId === 0) return bad('bad-value', 'SYN_STREAM for stream 0');
      return done({ kind: 'syn_stream', flags, streamId, associatedTo: u31(p, 4), priority: p[8] >>> 5, slot: p[9], headerBlock: Buffer.from(p.subarray(10)) });
    }
    case SpdyType.SYN_REPLY:
    case SpdyType.HEADERS: {
      const what = type === SpdyType.SYN_REPLY ? 'SYN_REPLY' : 'HEADERS';
      const e = need(4, what);
      if (e) return e;
      const streamId = u31(p, 0);
      if (streamId === 0) return bad('bad-value', `${what} for stream 0`);
      return done({ kind: type === SpdyType.SYN_REPLY ? 'syn_reply' : 'headers', flags, streamId, headerBlock: Buffer.from(p.subarray(4)) });
    }
    case SpdyType.RST_STREAM: {
      const e = exact(8, 'RST_STREAM');
      if (e) return e;
      const status = p.readUInt32BE(4);
      if (status === 0) return bad('bad-value', 'RST_STREAM status 0');
      return done({ kind: 'rst_stream', flags, streamId: u31(p, 0), status });
    }
    case SpdyType.SETTINGS: {
      const e = need(4, 'SETTINGS');
      if (e) return e;
      const n = p.readUInt32BE(0);
      if (len !== 4 + 8 * n) return bad('bad-length', `SETTINGS: ${n} entries need ${4 + 8 * n} bytes, frame has ${len}`);
      const entries: SpdySetting[] = [];
      for (let i = 0; i < n; i++) {
        const off = 4 + 8 * i;
        entries.push({ flags: p[off], id: p.readUIntBE(off + 1, 3), value: p.readUInt32BE(off + 4) });
      }
      return done({ kind: 'settings', flags, entries });
    }
    case SpdyType.PING: {
      const e = exact(4, 'PING');
      return e ?? done({ kind: 'ping', flags, id: p.readUInt32BE(0) });
    }
    case SpdyType.GOAWAY: {
      const e = exact(8, 'GOAWAY');
      return e ?? done({ kind: 'goaway', flags, lastGoodStreamId: u31(p, 0), status: p.readUInt32BE(4) });
    }
    case SpdyType.WINDOW_UPDATE: {
      const e = exact(8, 'WINDOW_UPDATE');
      if (e) return e;
      const delta = u31(p, 4);
      if (delta === 0) return bad('bad-value', 'WINDOW_UPDATE with delta 0');
      return done({ kind: 'window_update', flags, streamId: u31(p, 0), delta });
    }
    default:
      return done({ kind: 'unknown', version, type, flags, payload: Buffer.from(p) });
  }
}

function checkU31(v: number, what: string): number {
  if (!Number.isInteger(v) || v < 0 || v > 0x7fffffff) throw new RangeError(`${what} ${v} is not a 31-bit value`);
  return v;
}

function control(type: number, flags: number, payload: Buffer): Buffer {
  if (payload.length > SPDY_MAX_LENGTH) throw new RangeError(`control frame payload ${payload.length} > ${SPDY_MAX_LENGTH}`);
  const b = Buffer.alloc(SPDY_HEADER_LEN + payload.length);
  b.writeUInt16BE(0x8000 | SPDY_VERSION, 0);
  b.writeUInt16BE(type, 2);
  b.writeUInt32BE(((flags & 0xff) << 24) | payload.length, 4);
  payload.copy(b, SPDY_HEADER_LEN);
  return b;
}

function words(...v: number[]): Buffer {
  const b = Buffer.alloc(4 * v.length);
  v.forEach((x, i) => b.writeUInt32BE(x >>> 0, 4 * i));
  return b;
}

/** Serializes one frame (header blocks already compressed). Throws RangeError on a value the format cannot carry. */
export function serializeSpdyFrame(f: SpdyFrame): Buffer {
  switch (f.kind) {
    case 'data': {
      if (f.data.length > SPDY_MAX_LENGTH) throw new RangeError(`data frame of ${f.data.length} bytes > ${SPDY_MAX_LENGTH}`);
      if (checkU31(f.streamId, 'stream id') === 0) throw new RangeError('data frame on stream 0');
      const b = Buffer.alloc(SPDY_HEADER_LEN + f.data.length);
      b.writeUInt32BE(f.streamId, 0);
      b.writeUInt32BE(((f.flags & 0xff) << 24) | f.data.length, 4);
      f.data.copy(b, SPDY_HEADER_LEN);
      return b;
    }
    case 'syn_stream': {
      const head = Buffer.alloc(10);
      head.writeUInt32BE(checkU31(f.streamId, 'stream id'), 0);
      head.writeUInt32BE(checkU31(f.associatedTo, 'associated stream id'), 4);
      head[8] = (f.priority & 0x07) << 5;
      head[9] = f.slot & 0xff;
      return control(SpdyType.SYN_STREAM, f.flags, Buffer.concat([head, f.headerBlock]));
    }
    case 'syn_reply':
    case 'headers':
      return control(f.kind === 'syn_reply' ? SpdyType.SYN_REPLY : SpdyType.HEADERS, f.flags, Buffer.concat([words(checkU31(f.streamId, 'stream id')), f.headerBlock]));
    case 'rst_stream':
      return control(SpdyType.RST_STREAM, f.flags, words(checkU31(f.streamId, 'stream id'), f.status));
    case 'settings': {
      const b = Buffer.alloc(4 + 8 * f.entries.length);
      b.writeUInt32BE(f.entries.length, 0);
      f.entries.forEach((e, i) => {
        b[4 + 8 * i] = e.flags & 0xff;
        b.writeUIntBE(e.id & 0xffffff, 5 + 8 * i, 3);
        b.writeUInt32BE(e.value >>> 0, 8 + 8 * i);
      });
      return control(SpdyType.SETTINGS, f.flags, b);
    }
    case 'ping':
      return control(SpdyType.PING, f.flags, words(f.id));
    case 'goaway':
      return control(SpdyType.GOAWAY, f.flags, words(checkU31(f.lastGoodStreamId, 'last good stream id'), f.status));
    case 'window_update':
      return control(SpdyType.WINDOW_UPDATE, f.flags, words(checkU31(f.streamId, 'stream id'), checkU31(f.delta, 'delta')));
    case 'unknown': {
      const b = control(f.type, f.flags, f.payload);
      b.writeUInt16BE(0x8000 | (f.version & 0x7fff), 0);
      return b;
    }
  }
}

/** Name/value pairs of a header block; a name's several values travel NUL-separated in one value (section 2.6.10). */
export type SpdyHeaders = [name: string, value: string][];

/** The uncompressed header block: a 32-bit count, then length-prefixed names and values. */
export function serializeHeaderBlock(headers: SpdyHeaders): Buffer {
  const parts: Buffer[] = [words(headers.length)];
  for (const [name, value] of headers) {
    if (name !== name.toLowerCase() || name.length === 0) throw new RangeError(`header name ${JSON.stringify(name)} must be non-empty lower case`);
    const n = Buffer.from(name);
    const v = Buffer.from(value);
    parts.push(words(n.length), n, words(v.length), v);
  }
  return Buffer.concat(parts);
}

/** Parses an uncompressed header block; names must be lower case and unique, as the spec and Go's framer require. */
export function parseHeaderBlock(b: Buffer): SpdyHeaders | WireError {
  if (b.length < 4) return bad('truncated', 'header block shorter than its count');
  const n = b.readUInt32BE(0);
  // Each pair takes at least 8 bytes of lengths: a count beyond that is a lie, not a reason to loop.
  if (n > (b.length - 4) / 8) return bad('bad-length', `header block claims ${n} pairs in ${b.length} bytes`);
  const out: SpdyHeaders = [];
  const seen = new Set<string>();
  let off = 4;
  const str = (): string | WireError => {
    if (off + 4 > b.length) return bad('truncated', 'header block ends inside a length');
    const l = b.readUInt32BE(off);
    off += 4;
    if (off + l > b.length) return bad('truncated', `header block ends inside a ${l}-byte string`);
    const s = b.toString('utf8', off, off + l);
    off += l;
    return s;
  };
  for (let i = 0; i < n; i++) {
    const name = str();
    if (typeof name !== 'string') return name;
    const value = str();
    if (typeof value !== 'string') return value;
    if (name.length === 0) return bad('bad-value', 'empty header name');
    if (name !== name.toLowerCase()) return bad('bad-value', `header name ${JSON.stringify(name)} is not lower case`);
    if (seen.has(name)) return bad('bad-value', `header ${JSON.stringify(name)} appears twice`);
    seen.add(name);
    out.push([name, value]);
  }
  if (off !== b.length) return bad('bad-length', `${b.length - off} bytes after the header block's last pair`);
  return out;
}
