/**
 * The flow hash of an Ethernet frame carrying IPv4, in the manner of the
 * kernel's skb flow hash (net/core/flow_dissector.c) that `udp_flow_src_port`
 * turns into a VXLAN source port: the protocol and both addresses, plus
 *   - TCP, UDP, SCTP, UDP-Lite: the two ports;
 *   - ICMP: type, code and (for echo and echo reply) the identifier;
 *   - fragments: nothing beyond the addresses, so every fragment of a
 *     datagram (only the first carries ports) takes the same source port.
 * Checksums, sequence numbers and TTLs are left out: one flow keeps one hash
 * for its whole life, as one ping keeps one source port on a Linux node.
 */
const ETH_LEN = 14;
const IPPROTO_ICMP = 1;
const PORT_PROTOCOLS = new Set([6, 17, 132, 136]);

/** FNV-1a's offset basis (32-bit). */
export const FNV1A_OFFSET = 0x811c9dc5;

/** One FNV-1a step: the hash `h` with one more byte. */
export function fnv1aByte(h: number, byte: number): number {
  return Math.imul(h ^ byte, 0x01000193);
}
const mix = fnv1aByte;

/** FNV-1a over the flow's fields; 0 for a frame that is not IPv4. */
export function flowHash(frame: Buffer): number {
  if (frame.length < ETH_LEN + 20 || frame.readUInt16BE(12) !== 0x0800) return 0;
  const ip = ETH_LEN;
  const ihl = (frame[ip] & 0x0f) * 4;
  const proto = frame[ip + 9];
  let h = FNV1A_OFFSET;
  h = mix(h, proto);
  for (let i = ip + 12; i < ip + 20; i++) h = mix(h, frame[i]);
  const fragmented = (frame.readUInt16BE(ip + 6) & 0x3fff) !== 0;
  const l4 = ip + ihl;
  if (fragmented || ihl < 20) return h >>> 0;
  if (PORT_PROTOCOLS.has(proto) && frame.length >= l4 + 4) {
    for (let i = l4; i < l4 + 4; i++) h = mix(h, frame[i]);
  } else if (proto === IPPROTO_ICMP && frame.length >= l4 + 2) {
    const type = frame[l4];
    h = mix(mix(h, type), frame[l4 + 1]);
    if ((type === 0 || type === 8) && frame.length >= l4 + 6) h = mix(mix(h, frame[l4 + 4]), frame[l4 + 5]);
  }
  return h >>> 0;
}
