/**
 * VXLAN encapsulation header (RFC 7348 §5).
 *
 * ```text
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |R|R|R|R|I|R|R|R|            Reserved                           |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                VXLAN Network Identifier (VNI) |   Reserved    |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |              Inner Ethernet frame (no FCS) ...                |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * ```
 *
 * Carried in UDP: IANA port 4789, but Linux (and hence flannel) defaults to
 * the pre-standard 8472. RFC 7348 says receivers MUST ignore the R bits; we
 * instead reject them, as Linux's vxlan_rcv does when no extension (GBP, GPE,
 * RCO) is configured ("unprocessed flags ... treat as malformed"), because a
 * peer that sets them expects semantics we do not implement.
 */
import { WireError } from './errors.ts';

/** Length of the VXLAN header. */
export const VXLAN_HEADER_LEN = 8;
/** UDP port Linux's vxlan driver (and flannel) uses by default. */
export const VXLAN_PORT_LINUX = 8472;
/** IANA-assigned VXLAN UDP port (RFC 7348 §5). */
export const VXLAN_PORT_IANA = 4789;
/** The I flag: "VNI is valid", the only flag RFC 7348 defines. */
export const VXLAN_FLAG_I = 0x08;
/** Largest 24-bit VNI. */
export const VXLAN_MAX_VNI = 0xffffff;

const FLAGS = 0;
const RESERVED1 = 1; // 3 bytes
const VNI = 4; // 3 bytes
const RESERVED2 = 7;

/** A decoded VXLAN header. */
export interface VxlanRepr {
  vni: number;
  /** The inner Ethernet frame, a view into the parsed buffer. */
  payload: Buffer;
}

/** Parses a VXLAN header (the UDP payload). Flags must be exactly 0x08 and reserved fields zero. */
export function parseVxlan(buf: Buffer): VxlanRepr | WireError {
  if (buf.length < VXLAN_HEADER_LEN) {
    return new WireError('vxlan', 'truncated', `VXLAN datagram of ${buf.length} bytes is shorter than the 8-byte header`);
  }
  if (buf[FLAGS] !== VXLAN_FLAG_I) {
    return new WireError('vxlan', 'bad-flags', `flags 0x${buf[FLAGS].toString(16).padStart(2, '0')}, expected 0x08 (I flag only)`);
  }
  if ((buf[RESERVED1] | buf[RESERVED1 + 1] | buf[RESERVED1 + 2] | buf[RESERVED2]) !== 0) {
    return new WireError('vxlan', 'reserved-bits', 'reserved VXLAN header bits are set');
  }
  return {
    vni: (buf[VNI] << 16) | (buf[VNI + 1] << 8) | buf[VNI + 2],
    payload: buf.subarray(VXLAN_HEADER_LEN),
  };
}

/** Writes the 8-byte VXLAN header (flags 0x08, VNI) at `buf[off]`. Throws RangeError if the VNI is not 24-bit. */
export function writeVxlanHeader(buf: Buffer, off: number, vni: number): void {
  if (!Number.isInteger(vni) || vni < 0 || vni > VXLAN_MAX_VNI) throw new RangeError(`invalid VNI ${vni}`);
  buf[off + FLAGS] = VXLAN_FLAG_I;
  buf[off + RESERVED1] = 0;
  buf[off + RESERVED1 + 1] = 0;
  buf[off + RESERVED1 + 2] = 0;
  buf[off + VNI] = vni >> 16;
  buf[off + VNI + 1] = (vni >> 8) & 0xff;
  buf[off + VNI + 2] = vni & 0xff;
  buf[off + RESERVED2] = 0;
}

/** Serializes a VXLAN header followed by the inner frame. Throws RangeError if the VNI is not 24-bit. */
export function serializeVxlan(repr: VxlanRepr): Buffer {
  const buf = Buffer.allocUnsafe(VXLAN_HEADER_LEN + repr.payload.length);
  writeVxlanHeader(buf, 0, repr.vni);
  repr.payload.copy(buf, VXLAN_HEADER_LEN);
  return buf;
}
