/**
 * Convenience builders for whole frames, for stacks and tests. Each is a thin
 * composition of the per-protocol header writers with Linux-like defaults
 * (TTL 64, DF set on locally originated ICMP/UDP as with Linux's default
 * path-MTU discovery, DF clear on the VXLAN outer header as Linux's vxlan
 * driver sends it unless `df set`).
 *
 * The IP builders allocate the frame once and copy the payload once, writing
 * each header in place (no per-layer Buffer), since the overlay calls
 * `buildVxlanFrame` for every encapsulated packet.
 */
import { BROADCAST_MAC, ZERO_MAC } from './addr.ts';
import { ARP_REQUEST, serializeArp } from './arp.ts';
import { ETHERNET_HEADER_LEN, ETHERNET_MIN_FRAME_LEN, ETHERTYPE_ARP, ETHERTYPE_IPV4, serializeEthernet, writeEthernetHeader } from './ethernet.ts';
import { serializeIcmp } from './icmp.ts';
import { IPPROTO_ICMP, IPPROTO_UDP, IPV4_HEADER_LEN, type Ipv4Repr, writeIpv4Header } from './ipv4.ts';
import { UDP_HEADER_LEN, writeUdpHeader } from './udp.ts';
import { VXLAN_HEADER_LEN, VXLAN_PORT_LINUX, writeVxlanHeader } from './vxlan.ts';

/** Link and network addresses of a frame. */
export interface FrameAddrs {
  srcMac: string;
  dstMac: string;
  srcIp: string;
  dstIp: string;
}

/** IPv4 header knobs the builders expose; everything else is defaulted. */
export interface Ipv4Knobs {
  ttl?: number;
  id?: number;
  dontFragment?: boolean;
  dscp?: number;
}

/** Builds an Ipv4Repr with Linux-like defaults (TTL 64, id 0, DF set, DSCP/ECN 0). */
export function ipv4Repr(src: string, dst: string, protocol: number, payload: Buffer, knobs: Ipv4Knobs = {}): Ipv4Repr {
  return {
    src,
    dst,
    protocol,
    ttl: knobs.ttl ?? 64,
    id: knobs.id ?? 0,
    dontFragment: knobs.dontFragment ?? true,
    moreFragments: false,
    fragmentOffset: 0,
    dscp: knobs.dscp ?? 0,
    ecn: 0,
    payload,
  };
}

/** Allocates an Ethernet/IPv4 frame for `l4Len` bytes of IPv4 payload, zero-padded to 60 unless `pad` is false. */
function allocIpv4Frame(l4Len: number, pad: boolean): Buffer {
  const len = ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + l4Len;
  if (!pad || len >= ETHERNET_MIN_FRAME_LEN) return Buffer.allocUnsafe(len);
  return Buffer.alloc(ETHERNET_MIN_FRAME_LEN);
}

/** Writes the Ethernet and (option-less) IPv4 headers of a frame whose IPv4 payload is `l4Len` bytes at offset 34. */
function writeEthIpv4(buf: Buffer, a: FrameAddrs, protocol: number, l4Len: number, knobs?: Ipv4Knobs): void {
  writeEthernetHeader(buf, 0, a.dstMac, a.srcMac, ETHERTYPE_IPV4);
  writeIpv4Header(buf, ETHERNET_HEADER_LEN, ipv4Repr(a.srcIp, a.dstIp, protocol, EMPTY, knobs), l4Len);
}

const EMPTY = Buffer.alloc(0);
const L4 = ETHERNET_HEADER_LEN + IPV4_HEADER_LEN;

/** Ethernet + IPv4 around an already-serialized IPv4 payload (padded to 60 bytes unless `pad` is false). */
export function buildIpv4Frame(a: FrameAddrs, protocol: number, payload: Buffer, knobs?: Ipv4Knobs, pad = true): Buffer {
  const buf = allocIpv4Frame(payload.length, pad);
  writeEthIpv4(buf, a, protocol, payload.length, knobs);
  payload.copy(buf, L4);
  return buf;
}

/** Ethernet/IPv4/ICMP echo request (or `reply: true`) frame. `id` is the IPv4 id, `echoId` the ICMP identifier. */
export function buildIcmpEchoFrame(
  a: FrameAddrs & Ipv4Knobs & { reply?: boolean; echoId: number; seq: number; data?: Buffer },
): Buffer {
  const icmp = serializeIcmp({
    kind: a.reply ? 'echo-reply' : 'echo-request',
    id: a.echoId,
    seq: a.seq,
    data: a.data ?? EMPTY,
  });
  return buildIpv4Frame(a, IPPROTO_ICMP, icmp, a);
}

/** Ethernet/IPv4/UDP frame with a checksummed UDP header. */
export function buildUdpFrame(a: FrameAddrs & Ipv4Knobs & { srcPort: number; dstPort: number; payload: Buffer }): Buffer {
  const udpLen = UDP_HEADER_LEN + a.payload.length;
  const buf = allocIpv4Frame(udpLen, true);
  a.payload.copy(buf, L4 + UDP_HEADER_LEN);
  writeUdpHeader(buf, L4, a, a.payload.length, a.srcIp, a.dstIp);
  writeEthIpv4(buf, a, IPPROTO_UDP, udpLen, a);
  return buf;
}

/**
 * Ethernet/ARP frame. A request goes to the broadcast MAC with an all-zero
 * target MAC (RFC 826); a reply is unicast to `targetMac`.
 */
export function buildArpFrame(a: { op: 1 | 2; senderMac: string; senderIp: string; targetMac?: string; targetIp: string }): Buffer {
  const request = a.op === ARP_REQUEST;
  const targetMac = request ? ZERO_MAC : a.targetMac ?? ZERO_MAC;
  const arp = serializeArp({ op: a.op, senderMac: a.senderMac, senderIp: a.senderIp, targetMac, targetIp: a.targetIp });
  return serializeEthernet({ dst: request ? BROADCAST_MAC : targetMac, src: a.senderMac, etherType: ETHERTYPE_ARP, payload: arp });
}

/**
 * Outer Ethernet/IPv4/UDP/VXLAN frame around `inner` (an Ethernet frame),
 * in one allocation with one copy of `inner`.
 * Defaults: UDP dst port 8472 (Linux), UDP checksum on, outer DF clear.
 */
export function buildVxlanFrame(
  a: FrameAddrs & Ipv4Knobs & { srcPort: number; dstPort?: number; vni: number; inner: Buffer; udpChecksum?: boolean },
): Buffer {
  const vxOff = L4 + UDP_HEADER_LEN;
  const udpLen = UDP_HEADER_LEN + VXLAN_HEADER_LEN + a.inner.length;
  const buf = allocIpv4Frame(udpLen, true);
  writeVxlanHeader(buf, vxOff, a.vni);
  a.inner.copy(buf, vxOff + VXLAN_HEADER_LEN);
  writeUdpHeader(buf, L4, { srcPort: a.srcPort, dstPort: a.dstPort ?? VXLAN_PORT_LINUX }, udpLen - UDP_HEADER_LEN, a.srcIp, a.dstIp, {
    checksum: a.udpChecksum ?? true,
  });
  writeEthIpv4(buf, a, IPPROTO_UDP, udpLen, { ...a, dontFragment: a.dontFragment ?? false });
  return buf;
}
