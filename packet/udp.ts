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
import { internetChecksumSeeded, pseudoHeaderSum } from './checksum.ts';
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
 * addresses for the pseudo-header. The Length field must be >= 8
 * ('bad-length') and fit in `buf` ('truncated'); bytes beyond it are ignored,
 * as Linux's __udp4_lib_rcv trims to it. `payload` is a view into `buf`.
 */
export function parseUdp(buf: Buffer, src: string, dst: string, opts?: ParseUdpOptions): UdpRepr | WireError {
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
  if (cksum !== 0 && opts?.verifyChecksum !== false) {
    const dgram = len === buf.length ? buf : buf.subarray(0, len);
    if (internetChecksumSeeded(pseudoHeaderSum(src, dst, IPPROTO_UDP, len), dgram) !== 0) {
      return new WireError('udp', 'bad-checksum', `checksum 0x${cksum.toString(16).padStart(4, '0')} does not verify`);
    }
  }
  return {
    srcPort: (buf[SRC_PORT] << 8) | buf[SRC_PORT + 1],
    dstPort: (buf[DST_PORT] << 8) | buf[DST_PORT + 1],
    payload: buf.subarray(UDP_HEADER_LEN, len),
  };
}

/**
 * Serializes a UDP datagram for IPv4 `src` -> `dst`, computing Length and
 * (unless `checksum: false`) the checksum. Throws RangeError on a bad port,
 * address, or a datagram over 65535 bytes.
 */
export function serializeUdp(repr: UdpRepr, src: string, dst: string, opts?: SerializeUdpOptions): Buffer {
  const { srcPort, dstPort, payload } = repr;
  if (!Number.isInteger(srcPort) || srcPort < 0 || srcPort > 0xffff) throw new RangeError(`invalid UDP source port ${srcPort}`);
  if (!Number.isInteger(dstPort) || dstPort < 0 || dstPort > 0xffff) throw new RangeError(`invalid UDP destination port ${dstPort}`);
  const len = UDP_HEADER_LEN + payload.length;
  if (len > 0xffff) throw new RangeError(`UDP datagram of ${len} bytes exceeds 65535`);
  const buf = Buffer.allocUnsafe(len);
  buf[SRC_PORT] = srcPort >> 8;
  buf[SRC_PORT + 1] = srcPort & 0xff;
  buf[DST_PORT] = dstPort >> 8;
  buf[DST_PORT + 1] = dstPort & 0xff;
  buf[LENGTH] = len >> 8;
  buf[LENGTH + 1] = len & 0xff;
  buf[CHECKSUM] = 0;
  buf[CHECKSUM + 1] = 0;
  payload.copy(buf, UDP_HEADER_LEN);
  // Addresses are validated even without a checksum, so a bad Repr fails the same way either way.
  const seed = pseudoHeaderSum(src, dst, IPPROTO_UDP, len);
  if (opts?.checksum !== false) {
    const sum = internetChecksumSeeded(seed, buf) || 0xffff;
    buf[CHECKSUM] = sum >> 8;
    buf[CHECKSUM + 1] = sum & 0xff;
  }
  return buf;
}
