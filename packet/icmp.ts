/**
 * ICMP for IPv4 (RFC 792), with the RFC 1191 next-hop MTU field.
 *
 * ```text
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |     Type      |     Code      |           Checksum            |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * | echo (0/8):       Identifier  |        Sequence Number        |
 * | unreach (3):      unused (0)  |  Next-Hop MTU (code 4 only)   |
 * | time exceeded (11):           unused (0)                      |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * | echo: data ...  /  errors: original IP header + leading data  |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * ```
 *
 * The checksum covers the whole ICMP message (RFC 792). Messages podlab does
 * not model are kept losslessly as `kind: 'other'`.
 */
import { foldChecksum, internetChecksum, onesComplementSum } from './checksum.ts';
import { WireError } from './errors.ts';

/** ICMP type: echo reply (RFC 792). */
export const ICMP_ECHO_REPLY = 0;
/** ICMP type: destination unreachable (RFC 792). */
export const ICMP_DEST_UNREACH = 3;
/** ICMP type: echo request (RFC 792). */
export const ICMP_ECHO_REQUEST = 8;
/** ICMP type: time exceeded (RFC 792). */
export const ICMP_TIME_EXCEEDED = 11;

/** Dest-unreachable code: network unreachable. */
export const ICMP_UNREACH_NET = 0;
/** Dest-unreachable code: host unreachable. */
export const ICMP_UNREACH_HOST = 1;
/** Dest-unreachable code: protocol unreachable. */
export const ICMP_UNREACH_PROTOCOL = 2;
/** Dest-unreachable code: port unreachable. */
export const ICMP_UNREACH_PORT = 3;
/** Dest-unreachable code: fragmentation needed and DF set (carries next-hop MTU, RFC 1191). */
export const ICMP_UNREACH_NEEDFRAG = 4;
/** Time-exceeded code: TTL exceeded in transit. */
export const ICMP_TIMXCEED_INTRANS = 0;
/** Time-exceeded code: fragment reassembly time exceeded. */
export const ICMP_TIMXCEED_REASS = 1;

/** Length of the fixed ICMP header (type, code, checksum, 4 type-specific bytes). */
export const ICMP_HEADER_LEN = 8;
/**
 * Most bytes of the offending datagram an ICMP error quotes. Linux's
 * icmp_send caps the whole error datagram at 576 bytes (RFC 1812 §4.3.2.3),
 * leaving 576 - 20 (IP) - 8 (ICMP) = 548 bytes of quote.
 */
export const ICMP_QUOTE_MAX = 548;

const TYPE = 0;
const CODE = 1;
const CHECKSUM = 2;
const REST = 4;
const ID = 4;
const SEQ = 6;
const MTU = 6;
const BODY = 8;

/** A decoded ICMP message. Buffers are views into the parsed buffer. */
export type IcmpRepr =
  | { kind: 'echo-request' | 'echo-reply'; id: number; seq: number; data: Buffer }
  | {
      kind: 'dest-unreachable';
      code: number;
      /** RFC 1191 next-hop MTU; set (possibly 0, from pre-RFC 1191 routers) only for code 4. */
      nextHopMtu?: number;
      /** The quoted original datagram (see `icmpErrorQuote`). */
      original: Buffer;
    }
  | { kind: 'time-exceeded'; code: number; original: Buffer }
  | {
      kind: 'other';
      type: number;
      code: number;
      /** Everything after the checksum field. */
      rest: Buffer;
    };

/** Options for `parseIcmp`. */
export interface ParseIcmpOptions {
  /** Verify the checksum (default true). */
  verifyChecksum?: boolean;
}

/**
 * Parses an ICMP message: `buf` is exactly the IPv4 payload. Echo messages
 * with a nonzero code, and the unused bytes of unreach/time-exceeded, are not
 * what RFC 792 specifies; the former parse as `other` (lossless), the latter
 * are ignored on receipt (robustness principle, RFC 1122 §1.2.2).
 */
export function parseIcmp(buf: Buffer, opts?: ParseIcmpOptions): IcmpRepr | WireError {
  if (buf.length < ICMP_HEADER_LEN) {
    return new WireError('icmp', 'truncated', `ICMP message of ${buf.length} bytes is shorter than 8`);
  }
  if (opts?.verifyChecksum !== false && foldChecksum(onesComplementSum(buf)) !== 0xffff) {
    const got = (buf[CHECKSUM] << 8) | buf[CHECKSUM + 1];
    return new WireError('icmp', 'bad-checksum', `checksum 0x${got.toString(16).padStart(4, '0')} does not verify`);
  }
  const type = buf[TYPE];
  const code = buf[CODE];
  switch (type) {
    case ICMP_ECHO_REQUEST:
    case ICMP_ECHO_REPLY:
      if (code !== 0) break;
      return {
        kind: type === ICMP_ECHO_REQUEST ? 'echo-request' : 'echo-reply',
        id: (buf[ID] << 8) | buf[ID + 1],
        seq: (buf[SEQ] << 8) | buf[SEQ + 1],
        data: buf.subarray(BODY),
      };
    case ICMP_DEST_UNREACH:
      if (code === ICMP_UNREACH_NEEDFRAG) {
        return { kind: 'dest-unreachable', code, nextHopMtu: (buf[MTU] << 8) | buf[MTU + 1], original: buf.subarray(BODY) };
      }
      return { kind: 'dest-unreachable', code, original: buf.subarray(BODY) };
    case ICMP_TIME_EXCEEDED:
      return { kind: 'time-exceeded', code, original: buf.subarray(BODY) };
  }
  return { kind: 'other', type, code, rest: buf.subarray(REST) };
}

function checkByte(name: string, v: number, max: number): void {
  if (!Number.isInteger(v) || v < 0 || v > max) throw new RangeError(`ICMP ${name} ${v} out of range 0..${max}`);
}

/** Serializes an ICMP message and computes its checksum. Throws RangeError on an out-of-range field. */
export function serializeIcmp(repr: IcmpRepr): Buffer {
  return serializeIcmpFramed(repr, 0);
}

function messageLength(repr: IcmpRepr): number {
  switch (repr.kind) {
    case 'echo-request':
    case 'echo-reply':
      return BODY + repr.data.length;
    case 'dest-unreachable':
    case 'time-exceeded':
      return BODY + repr.original.length;
    case 'other':
      return REST + repr.rest.length;
  }
}

/**
 * `serializeIcmp` into a new buffer that starts with `room` bytes left for
 * the caller (the headers a stack puts in front: the message is written once,
 * into the frame it leaves in). Returns the whole buffer; the message is
 * `buf.subarray(room)`.
 */
export function serializeIcmpFramed(repr: IcmpRepr, room: number): Buffer {
  const whole = Buffer.allocUnsafe(room + messageLength(repr));
  const buf = room === 0 ? whole : whole.subarray(room);
  switch (repr.kind) {
    case 'echo-request':
    case 'echo-reply': {
      checkByte('id', repr.id, 0xffff);
      checkByte('seq', repr.seq, 0xffff);
      buf[TYPE] = repr.kind === 'echo-request' ? ICMP_ECHO_REQUEST : ICMP_ECHO_REPLY;
      buf[CODE] = 0;
      buf.writeUInt16BE(repr.id, ID);
      buf.writeUInt16BE(repr.seq, SEQ);
      repr.data.copy(buf, BODY);
      break;
    }
    case 'dest-unreachable':
    case 'time-exceeded': {
      checkByte('code', repr.code, 0xff);
      buf[TYPE] = repr.kind === 'dest-unreachable' ? ICMP_DEST_UNREACH : ICMP_TIME_EXCEEDED;
      buf[CODE] = repr.code;
      buf.writeUInt32BE(0, REST);
      if (repr.kind === 'dest-unreachable' && repr.nextHopMtu !== undefined) {
        checkByte('nextHopMtu', repr.nextHopMtu, 0xffff);
        buf.writeUInt16BE(repr.nextHopMtu, MTU);
      }
      repr.original.copy(buf, BODY);
      break;
    }
    case 'other': {
      checkByte('type', repr.type, 0xff);
      checkByte('code', repr.code, 0xff);
      if (repr.rest.length < ICMP_HEADER_LEN - REST) throw new RangeError('ICMP rest must hold at least the 4 header bytes after the checksum');
      buf[TYPE] = repr.type;
      buf[CODE] = repr.code;
      repr.rest.copy(buf, REST);
      break;
    }
  }
  buf[CHECKSUM] = 0;
  buf[CHECKSUM + 1] = 0;
  const sum = internetChecksum(buf);
  buf[CHECKSUM] = sum >> 8;
  buf[CHECKSUM + 1] = sum & 0xff;
  return whole;
}

/**
 * The bytes an ICMP error about `originalIpPacket` quotes: its IP header and
 * leading payload. RFC 792 requires the header + 64 bits of data; RFC 1812
 * §4.3.2.3 lets routers quote as much as fits in 576 bytes, and Linux does
 * exactly that (548 bytes of quote). We do what Linux does, because
 * traceroute/MTU-discovery tooling and Wireshark are used to it and a fuller
 * quote carries the whole inner UDP/ICMP header even with IP options.
 *
 * The quote ends at the datagram's Total Length (so trailing Ethernet padding
 * is not quoted), then at `maxBytes`. Its Total Length field is left as it
 * was, i.e. possibly larger than the quote: that is how errors look on the
 * wire, and Wireshark decodes such a quote without complaint.
 * Returns a view into `originalIpPacket` (no copy).
 */
export function icmpErrorQuote(originalIpPacket: Buffer, maxBytes: number = ICMP_QUOTE_MAX): Buffer {
  let len = originalIpPacket.length;
  if (len >= 4 && originalIpPacket[0] >> 4 === 4) {
    const totalLen = (originalIpPacket[2] << 8) | originalIpPacket[3];
    if (totalLen >= 20 && totalLen < len) len = totalLen;
  }
  return originalIpPacket.subarray(0, Math.min(len, maxBytes));
}
