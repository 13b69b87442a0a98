/**
 * ARP for IPv4 over Ethernet (RFC 826).
 *
 * ```text
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |     Hardware type (HTYPE)     |     Protocol type (PTYPE)     |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |  HLEN (6)     |  PLEN (4)     |        Operation (OPER)       |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |              Sender hardware address (SHA, 6 bytes)           |
 * +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                               |  Sender protocol addr (SPA)   |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |   SPA (cont.)                 |  Target hardware addr (THA)   |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
 * |                      THA (cont., 6 bytes total)               |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |              Target protocol address (TPA, 4 bytes)           |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * ```
 *
 * Only the Ethernet/IPv4 instantiation (28 bytes) exists in a pod network;
 * any other HTYPE/PTYPE/HLEN/PLEN is `unsupported`, as are opcodes other than
 * request/reply (RARP, InARP).
 */
import { readIpv4, readMac, writeIpv4, writeMac } from './addr.ts';
import { WireError } from './errors.ts';

/** ARP request opcode (RFC 826). */
export const ARP_REQUEST = 1;
/** ARP reply opcode (RFC 826). */
export const ARP_REPLY = 2;
/** HTYPE for Ethernet (IANA ARP parameters). */
export const ARP_HTYPE_ETHERNET = 1;
/** Length of an Ethernet/IPv4 ARP packet. */
export const ARP_LEN = 28;

const HTYPE = 0;
const PTYPE = 2;
const HLEN = 4;
const PLEN = 5;
const OPER = 6;
const SHA = 8;
const SPA = 14;
const THA = 18;
const TPA = 24;

/** An Ethernet/IPv4 ARP packet. */
export interface ArpRepr {
  op: 1 | 2;
  senderMac: string;
  senderIp: string;
  /** All zeros in a request (RFC 5227 §2.1.1 / common practice): it is what is being asked. */
  targetMac: string;
  targetIp: string;
}

/**
 * Parses an Ethernet/IPv4 ARP packet. Trailing bytes (Ethernet padding) are
 * ignored, since ARP has no length field of its own.
 */
export function parseArp(buf: Buffer): ArpRepr | WireError {
  if (buf.length < ARP_LEN) {
    return new WireError('arp', 'truncated', `ARP packet of ${buf.length} bytes is shorter than ${ARP_LEN}`);
  }
  const htype = (buf[HTYPE] << 8) | buf[HTYPE + 1];
  const ptype = (buf[PTYPE] << 8) | buf[PTYPE + 1];
  if (htype !== ARP_HTYPE_ETHERNET || ptype !== 0x0800 || buf[HLEN] !== 6 || buf[PLEN] !== 4) {
    return new WireError(
      'arp',
      'unsupported',
      `only Ethernet/IPv4 ARP is supported (htype ${htype}, ptype 0x${ptype.toString(16)}, hlen ${buf[HLEN]}, plen ${buf[PLEN]})`,
    );
  }
  const op = (buf[OPER] << 8) | buf[OPER + 1];
  if (op !== ARP_REQUEST && op !== ARP_REPLY) {
    return new WireError('arp', 'unsupported', `ARP opcode ${op} is not request (1) or reply (2)`);
  }
  return {
    op,
    senderMac: readMac(buf, SHA),
    senderIp: readIpv4(buf, SPA),
    targetMac: readMac(buf, THA),
    targetIp: readIpv4(buf, TPA),
  };
}

/** Serializes a 28-byte Ethernet/IPv4 ARP packet. Throws RangeError on an invalid field. */
export function serializeArp(repr: ArpRepr): Buffer {
  if (repr.op !== ARP_REQUEST && repr.op !== ARP_REPLY) throw new RangeError(`invalid ARP opcode ${String(repr.op)}`);
  const buf = Buffer.allocUnsafe(ARP_LEN);
  buf[HTYPE] = 0;
  buf[HTYPE + 1] = ARP_HTYPE_ETHERNET;
  buf[PTYPE] = 0x08;
  buf[PTYPE + 1] = 0x00;
  buf[HLEN] = 6;
  buf[PLEN] = 4;
  buf[OPER] = 0;
  buf[OPER + 1] = repr.op;
  writeMac(buf, SHA, repr.senderMac);
  writeIpv4(buf, SPA, repr.senderIp);
  writeMac(buf, THA, repr.targetMac);
  writeIpv4(buf, TPA, repr.targetIp);
  return buf;
}
