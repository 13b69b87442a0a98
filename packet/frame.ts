/**
 * Convenience builders for whole frames, for stacks and tests. Each is a thin
 * composition of the per-protocol serializers with Linux-like defaults
 * (TTL 64, DF set on locally originated ICMP/UDP as with Linux's default
 * path-MTU discovery, DF clear on the VXLAN outer header as Linux's vxlan
 * driver sends it unless `df set`).
 */
import { BROADCAST_MAC, ZERO_MAC } from './addr.ts';
import { ARP_REQUEST, serializeArp } from './arp.ts';
import { ETHERTYPE_ARP, ETHERTYPE_IPV4, serializeEthernet } from './ethernet.ts';
import { serializeIcmp } from './icmp.ts';
import { IPPROTO_ICMP, IPPROTO_UDP, type Ipv4Repr, serializeIpv4 } from './ipv4.ts';
import { serializeUdp } from './udp.ts';
import { VXLAN_PORT_LINUX, serializeVxlan } from './vxlan.ts';

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

/** Ethernet + IPv4 around an already-serialized IPv4 payload. */
export function buildIpv4Frame(a: FrameAddrs, protocol: number, payload: Buffer, knobs?: Ipv4Knobs, pad = true): Buffer {
  const ip = serializeIpv4(ipv4Repr(a.srcIp, a.dstIp, protocol, payload, knobs));
  return serializeEthernet({ dst: a.dstMac, src: a.srcMac, etherType: ETHERTYPE_IPV4, payload: ip }, { pad });
}

/** Ethernet/IPv4/ICMP echo request (or reply) frame. */
export function buildIcmpEchoFrame(
  a: FrameAddrs & Ipv4Knobs & { reply?: boolean; echoId: number; seq: number; data?: Buffer },
): Buffer {
  const icmp = serializeIcmp({
    kind: a.reply ? 'echo-reply' : 'echo-request',
    id: a.echoId,
    seq: a.seq,
    data: a.data ?? Buffer.alloc(0),
  });
  return buildIpv4Frame(a, IPPROTO_ICMP, icmp, a);
}

/** Ethernet/IPv4/UDP frame with a checksummed UDP header. */
export function buildUdpFrame(a: FrameAddrs & Ipv4Knobs & { srcPort: number; dstPort: number; payload: Buffer }): Buffer {
  const udp = serializeUdp({ srcPort: a.srcPort, dstPort: a.dstPort, payload: a.payload }, a.srcIp, a.dstIp);
  return buildIpv4Frame(a, IPPROTO_UDP, udp, a);
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
 * Outer Ethernet/IPv4/UDP/VXLAN frame around `inner` (an Ethernet frame).
 * Defaults: UDP dst port 8472 (Linux), UDP checksum on, outer DF clear.
 */
export function buildVxlanFrame(
  a: FrameAddrs & Ipv4Knobs & { srcPort: number; dstPort?: number; vni: number; inner: Buffer; udpChecksum?: boolean },
): Buffer {
  const vxlan = serializeVxlan({ vni: a.vni, payload: a.inner });
  const udp = serializeUdp({ srcPort: a.srcPort, dstPort: a.dstPort ?? VXLAN_PORT_LINUX, payload: vxlan }, a.srcIp, a.dstIp, {
    checksum: a.udpChecksum ?? true,
  });
  return buildIpv4Frame(a, IPPROTO_UDP, udp, { ...a, dontFragment: a.dontFragment ?? false });
}
