/**
 * The frame of the ping floor (bench/vxlan-echo-floor.ts): a VXLAN header (VNI 1),
 * an Ethernet header, IPv4 and an ICMP echo of 64 bytes, as pod-1a's ping to
 * pod-2a goes between the nodes, with the offsets the floor answers at.
 */
import { buildIcmpEchoFrame, foldChecksum, onesComplementSum, serializeVxlan } from '../packet/index.ts';

export const FLOOR_ETH = 8;
export const FLOOR_IP = FLOOR_ETH + 14;
export const FLOOR_ICMP = FLOOR_IP + 20;
export const FLOOR_LEN = FLOOR_ICMP + 64;

/** Whether the 16-bit words of `b[from, to)` sum to 0xffff, as a range with its checksum in it does. */
export function checksumGood(b: Buffer, from: number, to: number): boolean {
  return foldChecksum(onesComplementSum(b, from, to)) === 0xffff;
}

/** The echo request, built once by podlab's serializers: each ping copies it and writes its own id and sequence. */
const TEMPLATE = serializeVxlan({
  vni: 1,
  payload: buildIcmpEchoFrame({ srcMac: '02:00:00:00:01:02', dstMac: '02:00:00:00:02:02', srcIp: '10.244.1.2', dstIp: '10.244.2.2', echoId: 0, seq: 0, data: Buffer.alloc(FLOOR_LEN - FLOOR_ICMP - 8) }),
});

/**
 * An echo request from pod-1a (10.244.1.2) to pod-2a (10.244.2.2) with `id` and `seq`, as a VXLAN datagram's
 * payload: the least work per ping (a copy, two fields, the ICMP checksum), as the floor's answer is the least.
 */
export function floorEchoRequest(id: number, seq: number): Buffer {
  const b = Buffer.from(TEMPLATE);
  b.writeUInt16BE(id, FLOOR_ICMP + 4);
  b.writeUInt16BE(seq, FLOOR_ICMP + 6);
  b.writeUInt16BE(0, FLOOR_ICMP + 2);
  b.writeUInt16BE(~foldChecksum(onesComplementSum(b, FLOOR_ICMP, FLOOR_LEN)) & 0xffff, FLOOR_ICMP + 2);
  return b;
}

/** Whether `m` is the echo reply to (`id`, `seq`) with a good ICMP checksum. */
export function isFloorEchoReply(m: Buffer, id: number, seq: number): boolean {
  return m.length >= FLOOR_LEN && m[FLOOR_ICMP] === 0 && m.readUInt16BE(FLOOR_ICMP + 4) === id && m.readUInt16BE(FLOOR_ICMP + 6) === seq && checksumGood(m, FLOOR_ICMP, FLOOR_LEN);
}
