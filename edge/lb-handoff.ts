/**
 * Where a lab router hands a LoadBalancer connection to a node (BGP mode in
 * local labs, router/): a TCP port on every BGP node's own address, whose
 * streams start with a PROXY protocol v2 header (packet/proxy-protocol.ts)
 * naming the real client and the LB address and port it dialled. The node
 * carries the rest in as that client's connection to the LB IP, as a real
 * node receives a packet its upstream router forwarded by a /32 route.
 *
 * A real router forwards IP packets; a local lab has no kernel route to an
 * LB IP on a node process, so the router terminates the host's TCP and hands
 * the stream on, the way an L4 load balancer with proxy-protocol does.
 */
import { isWireError, parseProxyV2, type ProxyV2Parsed, PROXY_V2_MAX_LEN } from '../packet/index.ts';

/** The hand-off port (next to VXLAN's 8472 and the bare wire's 8473). */
export const DEFAULT_LB_HANDOFF_PORT = 8474;

/** How long a node waits for the header of a hand-off before closing it. */
export const HANDOFF_HEADER_TIMEOUT_MS = 5000;

/**
 * Reads a PROXY v2 header off the front of a stream, chunk by chunk (pure):
 * `more` until it is complete, then the header and the bytes after it, or
 * why the stream is refused.
 */
export class HandoffHeaderReader {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): { more: true } | { header: ProxyV2Parsed; rest: Buffer } | { error: string } {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const p = parseProxyV2(this.buf);
    if (isWireError(p)) {
      if (p.reason === 'truncated' && this.buf.length < PROXY_V2_MAX_LEN) return { more: true };
      return { error: p.message };
    }
    if (p.command !== 'proxy' || p.family !== 'inet' || p.transport !== 'stream') return { error: `PROXY v2 ${p.command} ${p.family} ${p.transport}: a hand-off is PROXY, AF_INET, STREAM` };
    return { header: p, rest: this.buf.subarray(p.headerLength) };
  }
}

/**
 * A UDP hand-off datagram: the PROXY v2 header (DGRAM) in front of every
 * datagram, as the spec has it for datagram transports; the rest is the
 * client's payload. Replies go back bare to the socket that sent it (the
 * router keeps one per client).
 */
export function parseHandoffDatagram(buf: Buffer): { header: ProxyV2Parsed; payload: Buffer } | { error: string } {
  const p = parseProxyV2(buf);
  if (isWireError(p)) return { error: p.message };
  if (p.command !== 'proxy' || p.family !== 'inet' || p.transport !== 'dgram') return { error: `PROXY v2 ${p.command} ${p.family} ${p.transport}: a UDP hand-off is PROXY, AF_INET, DGRAM` };
  return { header: p, payload: buf.subarray(p.headerLength) };
}
