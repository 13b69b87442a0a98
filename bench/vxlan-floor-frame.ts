/**
 * The frame of the ping floor (bench/vxlan-echo-floor.ts): a VXLAN header (VNI 1),
 * an Ethernet header, IPv4 and an ICMP echo of 64 bytes, as pod-1a's ping to
 * pod-2a goes between the nodes, with the offsets both ends use.
 */
export const FLOOR_ETH = 8;
export const FLOOR_IP = FLOOR_ETH + 14;
export const FLOOR_ICMP = FLOOR_IP + 20;
export const FLOOR_LEN = FLOOR_ICMP + 64;

/** The one's complement sum of the 16-bit words in [from, to), folded. */
export function onesComplement16(b: Buffer, from: number, to: number): number {
  let s = 0;
  for (let i = from; i < to; i += 2) s += (b[i] << 8) | b[i + 1];
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

/** An echo request from 10.244.1.2 to 10.244.2.2 with `id` and `seq`, checksums filled in. */
export function floorEchoRequest(id: number, seq: number): Buffer {
  const b = Buffer.alloc(FLOOR_LEN);
  b[0] = 0x08;
  b.writeUIntBE(1, 4, 3);
  b.writeUIntBE(0x0200_0000_0202, FLOOR_ETH, 6);
  b.writeUIntBE(0x0200_0000_0102, FLOOR_ETH + 6, 6);
  b.writeUInt16BE(0x0800, FLOOR_ETH + 12);
  b[FLOOR_IP] = 0x45;
  b.writeUInt16BE(20 + 64, FLOOR_IP + 2);
  b[FLOOR_IP + 8] = 64;
  b[FLOOR_IP + 9] = 1;
  b.writeUInt32BE(0x0af4_0102, FLOOR_IP + 12);
  b.writeUInt32BE(0x0af4_0202, FLOOR_IP + 16);
  b.writeUInt16BE(~onesComplement16(b, FLOOR_IP, FLOOR_IP + 20) & 0xffff, FLOOR_IP + 10);
  b[FLOOR_ICMP] = 8;
  b.writeUInt16BE(id, FLOOR_ICMP + 4);
  b.writeUInt16BE(seq, FLOOR_ICMP + 6);
  b.writeUInt16BE(~onesComplement16(b, FLOOR_ICMP, FLOOR_LEN) & 0xffff, FLOOR_ICMP + 2);
  return b;
}

/** Whether `m` is the echo reply to (`id`, `seq`) with a good ICMP checksum. */
export function isFloorEchoReply(m: Buffer, id: number, seq: number): boolean {
  return m.length >= FLOOR_LEN && m[FLOOR_ICMP] === 0 && m.readUInt16BE(FLOOR_ICMP + 4) === id && m.readUInt16BE(FLOOR_ICMP + 6) === seq && onesComplement16(m, FLOOR_ICMP, FLOOR_LEN) === 0xffff;
}
