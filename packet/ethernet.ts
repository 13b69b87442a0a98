/**
 * Ethernet II framing (IEEE 802.3-2018 §3.2, "DIX" EtherType encoding).
 *
 * ```text
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                    Destination MAC address                    |
 * +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                               |                               |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
 * |                      Source MAC address                       |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |           EtherType           |   Payload ... (46..1500 B)    |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * ```
 *
 * The preamble, SFD and FCS never reach software (nor a pcap), so they are
 * not modelled. No 802.1Q parsing: a tagged frame parses with EtherType 0x8100
 * and the tag left at the start of the payload.
 */
import { readMac, writeMac } from './addr.ts';
import { WireError } from './errors.ts';

/** EtherType for IPv4 (RFC 894). */
export const ETHERTYPE_IPV4 = 0x0800;
/** EtherType for ARP (RFC 826). */
export const ETHERTYPE_ARP = 0x0806;
/** EtherType for an 802.1Q VLAN tag (recognised only as a number). */
export const ETHERTYPE_VLAN = 0x8100;

/** Length of the Ethernet II header: two MACs and the EtherType. */
export const ETHERNET_HEADER_LEN = 14;
/**
 * Minimum frame length without FCS (64 bytes on the wire minus the 4-byte FCS).
 * Shorter frames are padded by the sender (IEEE 802.3 §4.2.3.3).
 */
export const ETHERNET_MIN_FRAME_LEN = 60;

const DST = 0;
const SRC = 6;
const ETHERTYPE = 12;
const PAYLOAD = 14;

/** Values below this in the type/length field are 802.3 lengths, not EtherTypes (IEEE 802.3 §3.2.6). */
const MIN_ETHERTYPE = 0x0600;

/** A decoded Ethernet II frame header. */
export interface EthernetRepr {
  dst: string;
  src: string;
  etherType: number;
  /** Everything after the header, including any padding (upper layers use their own length fields). */
  payload: Buffer;
}

/**
 * Parses an Ethernet II frame. `payload` is a view into `buf` (no copy).
 * Frames whose type field is an 802.3 length (< 0x0600, i.e. LLC framing)
 * are `unsupported`: nothing in a pod network speaks them.
 */
export function parseEthernet(buf: Buffer): EthernetRepr | WireError {
  const etherType = ethernetType(buf);
  if (typeof etherType !== 'number') return etherType;
  return {
    dst: readMac(buf, DST),
    src: readMac(buf, SRC),
    etherType,
    payload: buf.subarray(PAYLOAD),
  };
}

/**
 * The EtherType of a frame, after the same checks as `parseEthernet`, without
 * reading the MACs into strings: for receive paths that compare MACs as bytes.
 */
export function ethernetType(buf: Buffer): number | WireError {
  if (buf.length < ETHERNET_HEADER_LEN) {
    return new WireError('ethernet', 'truncated', `frame of ${buf.length} bytes is shorter than the 14-byte header`);
  }
  const etherType = (buf[ETHERTYPE] << 8) | buf[ETHERTYPE + 1];
  if (etherType < MIN_ETHERTYPE) {
    return new WireError('ethernet', 'unsupported', `802.3 length field 0x${etherType.toString(16)} (LLC framing) is not supported`);
  }
  return etherType;
}

/** Writes a 14-byte Ethernet II header at `buf[off]`. Throws RangeError on an invalid MAC or EtherType. */
export function writeEthernetHeader(buf: Buffer, off: number, dst: string, src: string, etherType: number): void {
  if (!Number.isInteger(etherType) || etherType < MIN_ETHERTYPE || etherType > 0xffff) {
    throw new RangeError(`invalid EtherType ${etherType}`);
  }
  writeMac(buf, off + DST, dst);
  writeMac(buf, off + SRC, src);
  buf[off + ETHERTYPE] = etherType >>> 8;
  buf[off + ETHERTYPE + 1] = etherType & 0xff;
}

/**
 * Serializes a frame. By default it is zero-padded to the 60-byte minimum as
 * a NIC does, so captures look like real wire traffic. Pass `{ pad: false }`
 * for frames that never touch a wire segment by themselves, e.g. the inner
 * frame of a VXLAN datagram, which Linux leaves unpadded.
 * Throws RangeError on an invalid MAC or EtherType.
 */
export function serializeEthernet(repr: EthernetRepr, opts?: { pad?: boolean }): Buffer {
  const { payload } = repr;
  const len = PAYLOAD + payload.length;
  const total = opts?.pad === false ? len : Math.max(len, ETHERNET_MIN_FRAME_LEN);
  const buf = Buffer.allocUnsafe(total);
  writeEthernetHeader(buf, 0, repr.dst, repr.src, repr.etherType);
  payload.copy(buf, PAYLOAD);
  if (total > len) buf.fill(0, len);
  return buf;
}
