/**
 * TCP (RFC 9293) over IPv4: the segment header and the options podlab reads
 * and writes (MSS, window scale and timestamps from RFC 7323, SACK-permitted
 * from RFC 2018).
 *
 * ```text
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |          Source Port          |       Destination Port        |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                        Sequence Number                        |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                    Acknowledgment Number                      |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |  Data |       |C|E|U|A|P|R|S|F|                               |
 * | Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
 * |       |       |R|E|G|K|H|T|N|N|                               |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |           Checksum            |         Urgent Pointer        |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                           [Options]                           |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                                                               :
 * :                             Data                              :
 * :                                                               |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * Checksum pseudo-header (RFC 9293 §3.1, not transmitted):
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                        Source Address                         |
 * |                     Destination Address                       |
 * |     zero      |  Protocol 6   |   TCP Length (header + data)  |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * Options (kind, length, value):      0 End of Option List  (1 byte)
 *                                     1 No-Operation        (1 byte)
 *   2 MSS            len 4  u16       3 Window Scale     len 3  u8 shift
 *   4 SACK-permitted len 2            8 Timestamps       len 10 TSval u32, TSecr u32
 * ```
 *
 * Parsing is lenient where RFC 9293 §3.1 asks for it: reserved bits are
 * ignored, unknown options are skipped by their length, a known option with
 * the wrong length is ignored, and a malformed option list (length < 2 or
 * running past the header) ends option parsing, as Linux's tcp_parse_options
 * does; none of these reject the segment. Data offset, length and checksum
 * are derived on serialize, never stored.
 */
import { foldChecksum, onesComplementSum, pseudoHeaderSum } from './checksum.ts';
import { WireError } from './errors.ts';

/** Length of a TCP header without options (data offset 5). */
export const TCP_HEADER_LEN = 20;
/** Longest TCP header: data offset 15, i.e. 40 bytes of options. */
export const TCP_MAX_HEADER_LEN = 60;

/** Flag bits of byte 13. */
export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;
export const TCP_URG = 0x20;
export const TCP_ECE = 0x40;
export const TCP_CWR = 0x80;

/** Option kinds (IANA "TCP Option Kind Numbers"). */
export const TCPOPT_EOL = 0;
export const TCPOPT_NOP = 1;
export const TCPOPT_MSS = 2;
export const TCPOPT_WSCALE = 3;
export const TCPOPT_SACK_PERMITTED = 4;
export const TCPOPT_TIMESTAMP = 8;

/** RFC 7323 §2.3: a shift count above 14 is used as 14. */
export const TCP_MAX_WSCALE = 14;

const SRC_PORT = 0;
const DST_PORT = 2;
const SEQ = 4;
const ACK = 8;
const OFFSET = 12;
const FLAGS = 13;
const WINDOW = 14;
const CHECKSUM = 16;
const URGENT = 18;
const IPPROTO_TCP = 6;

/** The eight control bits, by name. */
export interface TcpFlags {
  fin: boolean;
  syn: boolean;
  rst: boolean;
  psh: boolean;
  ack: boolean;
  urg: boolean;
  ece: boolean;
  cwr: boolean;
}

/** The options podlab understands; absent means "not in the segment". */
export interface TcpOptions {
  mss?: number;
  /** The shift count as sent (0-255 on the wire; receivers clamp to 14). */
  windowScale?: number;
  sackPermitted?: boolean;
  timestamp?: { value: number; echo: number };
}

/** A decoded TCP segment. Data offset, padding and checksum are derived on serialize. */
export interface TcpRepr {
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  flags: TcpFlags;
  /** The raw 16-bit window field (unscaled). */
  window: number;
  urgent: number;
  options: TcpOptions;
  /** A view into the parsed buffer. */
  payload: Buffer;
}

/** Options for `parseTcp`. */
export interface ParseTcpOptions {
  /** Verify the checksum (default true). */
  verifyChecksum?: boolean;
}

/** Flags from the byte-13 bit field. */
export function tcpFlagsFromBits(b: number): TcpFlags {
  return {
    fin: (b & TCP_FIN) !== 0,
    syn: (b & TCP_SYN) !== 0,
    rst: (b & TCP_RST) !== 0,
    psh: (b & TCP_PSH) !== 0,
    ack: (b & TCP_ACK) !== 0,
    urg: (b & TCP_URG) !== 0,
    ece: (b & TCP_ECE) !== 0,
    cwr: (b & TCP_CWR) !== 0,
  };
}

/** The byte-13 bit field from flags (missing flags are clear). */
export function tcpFlagsToBits(f: Partial<TcpFlags>): number {
  return (
    (f.fin ? TCP_FIN : 0) |
    (f.syn ? TCP_SYN : 0) |
    (f.rst ? TCP_RST : 0) |
    (f.psh ? TCP_PSH : 0) |
    (f.ack ? TCP_ACK : 0) |
    (f.urg ? TCP_URG : 0) |
    (f.ece ? TCP_ECE : 0) |
    (f.cwr ? TCP_CWR : 0)
  );
}

/** Flags as tcpdump prints them: `[S.]`, `[P.]`, `[F.]`, `[R]`... */
export function formatTcpFlags(bits: number): string {
  let s = '';
  if (bits & TCP_SYN) s += 'S';
  if (bits & TCP_FIN) s += 'F';
  if (bits & TCP_PSH) s += 'P';
  if (bits & TCP_RST) s += 'R';
  if (bits & TCP_URG) s += 'U';
  if (bits & TCP_ECE) s += 'E';
  if (bits & TCP_CWR) s += 'W';
  if (bits & TCP_ACK) s += '.';
  return `[${s || 'none'}]`;
}

const u32 = (b: Buffer, o: number): number => ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;

/** Reads the option list in `buf[start, end)` leniently (see the file header). */
function parseOptions(buf: Buffer, start: number, end: number): TcpOptions {
  const o: TcpOptions = {};
  let i = start;
  while (i < end) {
    const kind = buf[i];
    if (kind === TCPOPT_EOL) break;
    if (kind === TCPOPT_NOP) {
      i++;
      continue;
    }
    if (i + 1 >= end) break; // a kind byte with no room for its length
    const len = buf[i + 1];
    if (len < 2 || i + len > end) break; // "silly options": stop, keep the segment
    switch (kind) {
      case TCPOPT_MSS:
        if (len === 4) o.mss = (buf[i + 2] << 8) | buf[i + 3];
        break;
      case TCPOPT_WSCALE:
        if (len === 3) o.windowScale = buf[i + 2];
        break;
      case TCPOPT_SACK_PERMITTED:
        if (len === 2) o.sackPermitted = true;
        break;
      case TCPOPT_TIMESTAMP:
        if (len === 10) o.timestamp = { value: u32(buf, i + 2), echo: u32(buf, i + 6) };
        break;
      default:
        break; // unknown (SACK blocks, MD5, TFO, MPTCP...): skipped by length
    }
    i += len;
  }
  return o;
}

/**
 * Parses a TCP segment; `buf` is the IPv4 payload, `src`/`dst` the IPv4
 * addresses for the pseudo-header (dotted quads or unsigned 32-bit integers).
 * Rejects: fewer than 20 bytes ('truncated'), a data offset below 5
 * ('bad-length') or past the end of `buf` ('truncated'), a checksum that does
 * not verify ('bad-checksum'). `payload` is a view into `buf`.
 */
export function parseTcp(buf: Buffer, src: string | number, dst: string | number, opts?: ParseTcpOptions): TcpRepr | WireError {
  if (buf.length < TCP_HEADER_LEN) {
    return new WireError('tcp', 'truncated', `TCP segment of ${buf.length} bytes is shorter than the 20-byte header`);
  }
  const hlen = (buf[OFFSET] >> 4) * 4;
  if (hlen < TCP_HEADER_LEN) {
    return new WireError('tcp', 'bad-length', `TCP data offset ${hlen >> 2} is below the minimum of 5`);
  }
  if (hlen > buf.length) {
    return new WireError('tcp', 'truncated', `TCP header of ${hlen} bytes exceeds the ${buf.length} bytes present`);
  }
  if (opts?.verifyChecksum !== false && buf.length <= 0xffff) {
    const sum = foldChecksum(onesComplementSum(buf, 0, buf.length, pseudoHeaderSum(src, dst, IPPROTO_TCP, buf.length)));
    if (sum !== 0xffff) {
      const ck = (buf[CHECKSUM] << 8) | buf[CHECKSUM + 1];
      return new WireError('tcp', 'bad-checksum', `checksum 0x${ck.toString(16).padStart(4, '0')} does not verify`);
    }
  }
  return {
    srcPort: (buf[SRC_PORT] << 8) | buf[SRC_PORT + 1],
    dstPort: (buf[DST_PORT] << 8) | buf[DST_PORT + 1],
    seq: u32(buf, SEQ),
    ack: u32(buf, ACK),
    flags: tcpFlagsFromBits(buf[FLAGS]),
    window: (buf[WINDOW] << 8) | buf[WINDOW + 1],
    urgent: (buf[URGENT] << 8) | buf[URGENT + 1],
    options: hlen > TCP_HEADER_LEN ? parseOptions(buf, TCP_HEADER_LEN, hlen) : {},
    payload: buf.subarray(hlen),
  };
}

/**
 * Bytes the options take on the wire, padded to 32 bits, in the layout
 * `writeTcpOptions` uses (Linux's tcp_options_write order).
 */
export function tcpOptionsLength(o: TcpOptions): number {
  let n = 0;
  if (o.mss !== undefined) n += 4;
  if (o.timestamp) n += 12; // SACK-permitted rides in the timestamp's two NOPs
  if (o.windowScale !== undefined) n += 4;
  if (o.sackPermitted && !o.timestamp) n += 4;
  return n;
}

/**
 * Writes options at `buf[off]` exactly as Linux lays out a SYN:
 * `MSS | SACK_PERM TS (or NOP NOP TS) | NOP WS | NOP NOP SACK_PERM (without TS)`.
 * Returns the bytes written (a multiple of 4).
 */
export function writeTcpOptions(buf: Buffer, off: number, o: TcpOptions): number {
  let i = off;
  if (o.mss !== undefined) {
    if (!Number.isInteger(o.mss) || o.mss < 0 || o.mss > 0xffff) throw new RangeError(`invalid TCP MSS ${o.mss}`);
    buf[i++] = TCPOPT_MSS;
    buf[i++] = 4;
    buf[i++] = o.mss >> 8;
    buf[i++] = o.mss & 0xff;
  }
  if (o.timestamp) {
    const { value, echo } = o.timestamp;
    if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) throw new RangeError(`invalid TCP TSval ${value}`);
    if (!Number.isInteger(echo) || echo < 0 || echo > 0xffffffff) throw new RangeError(`invalid TCP TSecr ${echo}`);
    if (o.sackPermitted) {
      buf[i++] = TCPOPT_SACK_PERMITTED;
      buf[i++] = 2;
    } else {
      buf[i++] = TCPOPT_NOP;
      buf[i++] = TCPOPT_NOP;
    }
    buf[i++] = TCPOPT_TIMESTAMP;
    buf[i++] = 10;
    buf.writeUInt32BE(value, i);
    buf.writeUInt32BE(echo, i + 4);
    i += 8;
  }
  if (o.windowScale !== undefined) {
    if (!Number.isInteger(o.windowScale) || o.windowScale < 0 || o.windowScale > 0xff) throw new RangeError(`invalid TCP window scale ${o.windowScale}`);
    buf[i++] = TCPOPT_NOP;
    buf[i++] = TCPOPT_WSCALE;
    buf[i++] = 3;
    buf[i++] = o.windowScale;
  }
  if (o.sackPermitted && !o.timestamp) {
    buf[i++] = TCPOPT_NOP;
    buf[i++] = TCPOPT_NOP;
    buf[i++] = TCPOPT_SACK_PERMITTED;
    buf[i++] = 2;
  }
  return i - off;
}

/** The header fields `writeTcpHeader` needs: a TcpRepr without payload, flags as bits. */
export interface TcpHeaderFields {
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  /** Byte 13: TCP_SYN | TCP_ACK ... */
  flags: number;
  window: number;
  urgent?: number;
  options?: TcpOptions;
}

/**
 * Writes a TCP header at `buf[off]` for a segment whose `payloadLen` data
 * bytes are *already* in place right after the header (at `off +
 * tcpHeaderLength(fields)`), computing the data offset and the checksum over
 * the pseudo-header, header and data. The hot path of the TCP stack: one
 * buffer per segment, no Repr. `pseudoSeed` may pass a precomputed
 * `pseudoHeaderSum(src, dst, 6, 0)` to skip address parsing (the segment
 * length is added here). Returns the header length.
 * Throws RangeError on a field out of range or a segment over 65535 bytes.
 */
export function writeTcpHeader(
  buf: Buffer,
  off: number,
  f: TcpHeaderFields,
  payloadLen: number,
  src: string | number,
  dst: string | number,
  pseudoSeed?: number,
): number {
  if (!Number.isInteger(f.srcPort) || f.srcPort < 0 || f.srcPort > 0xffff) throw new RangeError(`invalid TCP source port ${f.srcPort}`);
  if (!Number.isInteger(f.dstPort) || f.dstPort < 0 || f.dstPort > 0xffff) throw new RangeError(`invalid TCP destination port ${f.dstPort}`);
  if (!Number.isInteger(f.window) || f.window < 0 || f.window > 0xffff) throw new RangeError(`invalid TCP window ${f.window}`);
  const urgent = f.urgent ?? 0;
  if (!Number.isInteger(urgent) || urgent < 0 || urgent > 0xffff) throw new RangeError(`invalid TCP urgent pointer ${urgent}`);
  if (!Number.isInteger(f.seq) || f.seq < 0 || f.seq > 0xffffffff) throw new RangeError(`invalid TCP sequence number ${f.seq}`);
  if (!Number.isInteger(f.ack) || f.ack < 0 || f.ack > 0xffffffff) throw new RangeError(`invalid TCP acknowledgment number ${f.ack}`);
  const optLen = f.options ? tcpOptionsLength(f.options) : 0;
  if (optLen > 40) throw new RangeError(`TCP options of ${optLen} bytes exceed 40`);
  const hlen = TCP_HEADER_LEN + optLen;
  const total = hlen + payloadLen;
  if (total > 0xffff) throw new RangeError(`TCP segment of ${total} bytes exceeds 65535`);
  const seed = pseudoSeed !== undefined ? pseudoSeed + total : pseudoHeaderSum(src, dst, IPPROTO_TCP, total);
  buf[off + SRC_PORT] = f.srcPort >> 8;
  buf[off + SRC_PORT + 1] = f.srcPort & 0xff;
  buf[off + DST_PORT] = f.dstPort >> 8;
  buf[off + DST_PORT + 1] = f.dstPort & 0xff;
  buf.writeUInt32BE(f.seq, off + SEQ);
  buf.writeUInt32BE(f.ack, off + ACK);
  buf[off + OFFSET] = (hlen >> 2) << 4;
  buf[off + FLAGS] = f.flags & 0xff;
  buf[off + WINDOW] = f.window >> 8;
  buf[off + WINDOW + 1] = f.window & 0xff;
  buf[off + CHECKSUM] = 0;
  buf[off + CHECKSUM + 1] = 0;
  buf[off + URGENT] = urgent >> 8;
  buf[off + URGENT + 1] = urgent & 0xff;
  if (optLen) writeTcpOptions(buf, off + TCP_HEADER_LEN, f.options!);
  const sum = ~foldChecksum(onesComplementSum(buf, off, off + total, seed)) & 0xffff;
  buf[off + CHECKSUM] = sum >> 8;
  buf[off + CHECKSUM + 1] = sum & 0xff;
  return hlen;
}

/** Header length (20 + padded options) a segment with these options serializes to. */
export function tcpHeaderLength(options?: TcpOptions): number {
  return TCP_HEADER_LEN + (options ? tcpOptionsLength(options) : 0);
}

/**
 * Serializes a segment for IPv4 `src` -> `dst`, computing data offset,
 * option padding and checksum. Throws RangeError on an unencodable Repr.
 */
export function serializeTcp(repr: TcpRepr, src: string | number, dst: string | number): Buffer {
  const hlen = tcpHeaderLength(repr.options);
  const buf = Buffer.allocUnsafe(hlen + repr.payload.length);
  repr.payload.copy(buf, hlen);
  writeTcpHeader(buf, 0, { ...repr, flags: tcpFlagsToBits(repr.flags) }, repr.payload.length, src, dst);
  return buf;
}

/** An empty flag set, to spread: `{ ...NO_FLAGS, syn: true }`. */
export const NO_FLAGS: Readonly<TcpFlags> = Object.freeze({ fin: false, syn: false, rst: false, psh: false, ack: false, urg: false, ece: false, cwr: false });
