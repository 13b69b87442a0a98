/**
 * The underlay of the backends that put pod packets on the wire as they are
 * (host-gw, Calico-style BGP): eth0 transmits to the peer that owns the
 * destination MAC (the plan's eth0 neighbours), with no encapsulation.
 *
 * - Local mode: what eth0 transmits goes, minus its Ethernet header, as a bare
 *   IPv4 packet over the node's UDP "wire" socket to that peer; what arrives
 *   is framed again for eth0.
 * - Root modes (`--wire raw`): eth0's frames go out as they are on the real
 *   eth0 (overlay/underlay-raw.ts); frames the raw wire claims come in on eth0.
 *
 * Both pass the per-peer impairments of the UDP underlay.
 */
import { readMac } from '../packet/addr.ts';
import { writeEthernetHeader } from '../packet/ethernet.ts';
import { IPPROTO_IPIP } from '../packet/ipip.ts';
import type { EmulatedLink, EmulatedNodeContext } from './backend.ts';

/** The bare-IPv4 wire's default port in local mode (next to VXLAN's 8472). */
export const DEFAULT_WIRE_PORT = 8473;

/** An IP-in-IP packet's inner datagram passed to `match` (a trace filter names pods, not the nodes outside). */
function innerOfIpip<T>(ipPacket: Buffer, match: (inner: Buffer) => T | null): T | null {
  if (ipPacket.length < 20 || ipPacket[9] !== IPPROTO_IPIP) return null;
  const ihl = (ipPacket[0] & 0x0f) * 4;
  return ipPacket.length > ihl ? match(ipPacket.subarray(ihl)) : null;
}

export function attachRoutedWire(ctx: EmulatedNodeContext): EmulatedLink {
  const raw = ctx.rawWire;
  const underlay = ctx.underlay({
    port: 0,
    wirePort: raw ? undefined : ctx.wirePort,
    // Raw frames need no sending sockets: the impairments are all that is used.
    sourcePorts: raw ? 0 : undefined,
  });
  const eth0 = ctx.eth0;
  const tracer = eth0.tracer;
  /** eth0 neighbours' MAC → underlay IP (kept from the plan). */
  const wirePeers = new Map<string, string>();

  /** Delivers what a wire received, inside the trace it belongs to (if a trace filter matches its IPv4 packet). */
  const receiveTraced = (ipPacket: Buffer, hop: string, deliver: () => void): void => {
    const trace = tracer.filters.size ? (tracer.matchIpv4(ipPacket) ?? innerOfIpip(ipPacket, (inner) => tracer.matchIpv4(inner))) : null;
    const run = () => {
      if (tracer.current) tracer.hop('node', 'underlay', hop);
      deliver();
    };
    if (trace) tracer.run(trace, run);
    else run();
  };

  /** eth0's transmit: the peer that owns the destination MAC gets the frame through `send`. */
  const wireTransmit = (kind: string, send: (peer: string, frame: Buffer) => string, describe: (verdict: string, peer: string, dst: string) => string) => (frame: Buffer) => {
    const dst = readMac(frame, 0);
    const peer = wirePeers.get(dst);
    if (!peer) {
      eth0.counters.drop('no-wire-peer');
      if (tracer.current) tracer.hop('node', 'eth0', `no underlay peer owns ${dst}: dropped`, { drop: 'no-wire-peer' });
      return;
    }
    const verdict = send(peer, frame);
    if (!tracer.current) return;
    const lost = verdict === 'lost' || verdict === 'blackholed' || verdict === 'refused';
    tracer.hop('node', 'underlay', lost ? `${kind} ${verdict} (towards ${peer})` : describe(verdict, peer, dst), {
      drop: lost ? (verdict === 'refused' ? 'underlay-refused' : `impairment-${verdict}`) : undefined,
    });
  };

  if (raw) {
    const put = (f: Buffer) => {
      if (!raw.send(f)) eth0.counters.drop('raw-send-failed');
    };
    eth0.connect(wireTransmit(
      'raw frame',
      (peer, frame) => underlay.throughImpairment(peer, frame, put),
      (verdict, peer, dst) => `raw frame on the real eth0 to ${dst} (${peer}), pod addresses intact, no encapsulation${verdict === 'sent' ? '' : ` (impairment: ${verdict})`}`,
    ));
    raw.attach((frame) => receiveTraced(frame.subarray(14), `raw frame from ${readMac(frame, 6)} on the real eth0, ${frame.length} bytes`, () => eth0.receive(frame)));
  } else {
    eth0.connect(wireTransmit(
      'bare IPv4 packet',
      (peer, frame) => underlay.sendBare(peer, frame.subarray(14)),
      (verdict, peer) => `bare IPv4 packet (pod addresses intact, no encapsulation) sent to ${peer}:${underlay.wirePort} UDP${verdict === 'sent' ? '' : ` (impairment: ${verdict})`}`,
    ));
    underlay.attach({
      bare: (buf, from) =>
        receiveTraced(buf, `bare IPv4 packet from ${from.address}:${from.port}, ${buf.length} bytes`, () => {
          const frame = Buffer.allocUnsafe(14 + buf.length);
          const srcMac = [...wirePeers].find(([, ip]) => ip === from.address)?.[0] ?? '02:00:00:00:00:00';
          writeEthernetHeader(frame, 0, eth0.mac, srcMac, 0x0800);
          buf.copy(frame, 14);
          eth0.receive(frame);
        }),
    });
  }

  return {
    underlay,
    wireKind: raw ? 'raw' : 'udp',
    devices: [],
    apply: () => false,
    neighbour(op, ip, mac) {
      if (op === 'add' && mac) wirePeers.set(mac, ip);
      else for (const [m, peerIp] of wirePeers) if (peerIp === ip) wirePeers.delete(m);
    },
  };
}
