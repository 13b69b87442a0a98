/**
 * IP in IP encapsulation (RFC 2003): an IPv4 datagram carried whole as the
 * payload of an outer IPv4 header with protocol 4. There is no header of its
 * own: the codec is packet/ipv4's, and this module says how the outer header
 * is made from the inner one and what a receiver accepts.
 *
 * The outer header follows Linux's fallback tunnel `tunl0` as Calico uses it
 * (no remote, no fixed TTL, pmtudisc left as the module creates it):
 * - source: the node's address; destination: the route's next hop (the peer node);
 * - TTL inherited from the inner packet (`ttl inherit`, RFC 2003 §3.1 allows either);
 * - DF copied from the inner packet, so path MTU discovery reaches the sender;
 * - TOS 0 apart from the ECN bits, copied (RFC 6040's normal mode);
 * - IP ID from the node's own counter, as for any packet the node originates.
 */
import { WireError, isWireError } from './errors.ts';
import { IPV4_HEADER_LEN, parseIpv4, type Ipv4Repr } from './ipv4.ts';

/** IP protocol number of IPv4-in-IPv4 (IANA "IPv4", RFC 2003). */
export const IPPROTO_IPIP = 4;
/** What the outer header costs: pods behind tunl0 get the underlay MTU minus this. */
export const IPIP_OVERHEAD = IPV4_HEADER_LEN;

/** The outer header of `inner` (a complete IPv4 datagram) from `src` to `dst`, as tunl0 writes it. */
export function ipipOuter(inner: Buffer, o: { src: string; dst: string; id: number }): Ipv4Repr | WireError {
  const ip = parseIpv4(inner, { verifyChecksum: false });
  if (isWireError(ip)) return ip;
  return {
    src: o.src,
    dst: o.dst,
    protocol: IPPROTO_IPIP,
    ttl: ip.ttl,
    id: o.id,
    dontFragment: ip.dontFragment,
    moreFragments: false,
    fragmentOffset: 0,
    dscp: 0,
    ecn: ip.ecn,
    payload: inner.subarray(0, 20 + (ip.options?.length ?? 0) + ip.payload.length),
  };
}

/**
 * The inner datagram of a received outer packet (already reassembled), or a
 * typed error: not protocol 4 (`unsupported`), or an inner packet that is not
 * well-formed IPv4 (its own checksum verified, as ip_rcv does after decap).
 */
export function decapIpip(outer: Pick<Ipv4Repr, 'protocol' | 'payload'>): { inner: Ipv4Repr; bytes: Buffer } | WireError {
  if (outer.protocol !== IPPROTO_IPIP) return new WireError('ipip', 'unsupported', `protocol ${outer.protocol} is not IP in IP (4)`);
  const inner = parseIpv4(outer.payload);
  if (isWireError(inner)) return new WireError('ipip', inner.reason, `inner packet: ${inner.message}`);
  const bytes = outer.payload.subarray(0, 20 + (inner.options?.length ?? 0) + inner.payload.length);
  return { inner, bytes };
}
