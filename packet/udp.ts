/**
 * UDP (RFC 768) over IPv4.
 *
 * ```text
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |          Source Port          |       Destination Port        |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |            Length             |           Checksum            |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                          data ...                             |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * Checksum pseudo-header (not transmitted):
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                        Source Address                         |
 * |                     Destination Address                       |
 * |     zero      |  Protocol 17  |          UDP Length           |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * ```
 *
 * A transmitted checksum of 0 means "none" (RFC 768); a computed 0 is
 * therefore sent as 0xffff, its one's complement twin.
 */
import { foldChecksum, onesComplementSum, pseudoHeaderSum } from './checksum.ts';
import { WireError } from './errors.ts';

/** Length of the UDP header. */
export const UDP_HEADER_LEN = 8;

const SRC_PORT = 0;
const DST_PORT = 2;
const LENGTH = 4;
const CHECKSUM = 6;
const IPPROTO_UDP = 17;

/** A decoded UDP datagram. Length and checksum are derived on serialize. */
export interface UdpRepr {
  srcPort: number;
  dstPort: number;
  payload: Buffer;
}

/** Options for `parseUdp`. */
export interface ParseUdpOptions {
  /** Verify a nonzero checksum (default true). */
  verifyChecksum?: boolean;
}

/** Options for `serializeUdp`. */
export interface SerializeUdpOptions {
  /**
   * Compute the checksum (default true). `false` sends 0 ("no checksum"),
   * which RFC 768 allows over IPv4; Linux VXLAN does that unless `udpcsum`.
   */
  checksum?: boolean;
}

/**
 * Parses a UDP datagram; `buf` is the IPv4 payload, `src`/`dst` the IPv4
 * addresses for the pseudo-header (dotted quads, or unsigned 32-bit integers
 * to skip string parsing on hot paths). The Length field must be >= 8
 * ('bad-length') and fit in `buf` ('truncated'); bytes beyond it are ignored,
 * as Linux's __udp4_lib_rcv trims to it. `payload` is a view into `buf`.
 */
export function parseUdp(buf: Buffer, src: string | number, dst: string | number, opts?: ParseUdpOptions): UdpRepr | WireError {
  if (buf.length < UDP_HEADER_LEN) {
    return new WireError('udp', 'truncated', `UDP datagram of ${buf.length} bytes is shorter than the 8-byte header`);
  }
  const len = (buf[LENGTH] << 8) | buf[LENGTH + 1];
  if (len < UDP_HEADER_LEN) {
    return new WireError('udp', 'bad-length', `UDP length ${len} is smaller than the header`);
  }
  if (len > buf.length) {
    return new WireError('udp', 'truncated', `UDP length ${len} exceeds the ${buf.length} bytes present`);
  }
  const cksum = (buf[CHECKSUM] << 8) | buf[CHECKSUM + 1];
  // A correct datagram (with pseudo-header) sums to 0xffff.
  if (cksum !== 0 && opts?.verifyChecksum !== false && foldChecksum(onesComplementSum(buf, 0, len, pseudoHeaderSum(src, dst, IPPROTO_UDP, len))) !== 0xffff) {
    return new WireError('udp', 'bad-checksum', `checksum 0x${cksum.toString(16).padStart(4, '0')} does not verify`);
  }
  return {
    srcPort: (buf[SRC_PORT] << 8) | buf[SRC_PORT + 1],
    dstPort: (buf[DST_PORT] << 8) | buf[DST_PORT + 1],
    payload: buf.subarray(UDP_HEADER_LEN, len),
  };
}

/**
 * Writes the UDP header for a datagram occupying `buf[off, off + 8 + payloadLen)`
 * whose payload is *already* in place at `off + 8`, computing Length and
 * (unless `checksum: false`) the checksum over the pseudo-header and payload.
 * The building block of `serializeUdp`, for single-copy encapsulation.
 * Throws RangeError on a bad port or address, or a datagram over 65535 bytes.
 */
export function writeUdpHeader(
  buf: Buffer,
  off: number,
  ports: { srcPort: number; dstPort: number },
  payloadLen: number,
  src: string | number,
  dst: string | number,
  opts?: SerializeUdpOptions,
): void {
  const { srcPort, dstPort } = ports;
  if (!Number.isInteger(srcPort) || srcPort < 0 || srcPort > 0xffff) throw new RangeError(`invalid UDP source port ${srcPort}`);
  if (!Number.isInteger(dstPort) || dstPort < 0 || dstPort > 0xffff) throw new RangeError(`invalid UDP destination port ${dstPort}`);
  const len = UDP_HEADER_LEN + payloadLen;
  if (len > 0xffff) throw new RangeError(`UDP datagram of ${len} bytes exceeds 65535`);
  // Addresses are validated even without a checksum, so a bad Repr fails the same way either way.
  const seed = pseudoHeaderSum(src, dst, IPPROTO_UDP, len);
  buf[off + SRC_PORT] = srcPort >> 8;
  buf[off + SRC_PORT + 1] = srcPort & 0xff;
  buf[off + DST_PORT] = dstPort >> 8;
  buf[off + DST_PORT + 1] = dstPort & 0xff;
  buf[off + LENGTH] = len >> 8;
  buf[off + LENGTH + 1] = len & 0xff;
  buf[off + CHECKSUM] = 0;
  buf[off + CHECKSUM + 1] = 0;
  if (opts?.checksum !== false) {
    const sum = ~foldChecksum(onesComplementSum(buf, off, off + len, seed)) & 0xffff || 0xffff;
    buf[off + CHECKSUM] = sum >> 8;
    buf[off + CHECKSUM + 1] = sum & 0xff;
  }
}

/**
 * Serializes a UDP datagram for IPv4 `src` -> `dst`, computing Length and
 * (unless `checksum: false`) the checksum. Throws RangeError on a bad port,
 * address, or a datagram over 65535 bytes.
 */
export function serializeUdp(repr: UdpRepr, src: string | number, dst: string | number, opts?: SerializeUdpOptions): Buffer {
  const buf = Buffer.allocUnsafe(UDP_HEADER_LEN + repr.payload.length);
  repr.payload.copy(buf, UDP_HEADER_LEN);
  writeUdpHeader(buf, 0, repr, repr.payload.length, src, dst, opts);
  return buf;
}
