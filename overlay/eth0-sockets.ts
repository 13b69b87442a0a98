/**
 * eth0's path for underlay traffic that rides the node's real UDP sockets
 * (VXLAN on 8472 today; flannel's UDP backend on 8285 would use the same
 * path). A tunnel device hands it an outer UDP payload for a peer; the path
 * accounts it on eth0 as the kernel would (the payload plus the outer UDP,
 * IPv4 and Ethernet headers), shows it to capture taps, traces the hop and
 * sends it through the peer's impairment. Received datagrams take the same
 * path the other way before the tunnel device sees them.
 *
 * The tunnel device never touches eth0's counters itself: this is the one
 * place that does, so every socket-carried backend is counted alike.
 */
import type { NetDevice } from '../netstack/link/netdev.ts';
import type { UdpUnderlay } from './underlay-udp.ts';

/** Outer Ethernet 14 + IPv4 20 + UDP 8: what the kernel adds around a UDP payload on eth0. */
export const OUTER_UDP_FRAME_OVERHEAD = 42;
/** Outer IPv4 20 + UDP 8: the IP packet's length over the payload. */
const OUTER_UDP_PACKET_OVERHEAD = 28;

/** Observes outer datagrams on eth0 (for capture): direction, peer address and port, local port, UDP payload. */
export type OuterTap = (dir: 'in' | 'out', peer: { ip: string; port: number }, localPort: number, udpPayload: Buffer) => void;

/** A tunnel's receive side: where datagrams for its port go, and the inner frame a trace filter matches. */
export interface SocketReceiver {
  port: number;
  /** The inner Ethernet frame of a datagram, for matching trace filters. */
  innerFrame(buf: Buffer): Buffer | undefined;
  receive(buf: Buffer, from: { address: string; port: number }): void;
}

export class Eth0Sockets {
  readonly outerTaps = new Set<OuterTap>();

  constructor(
    readonly eth0: NetDevice,
    readonly underlay: UdpUnderlay,
  ) {}

  /** Takes the datagrams that arrive on the underlay's listening port. */
  bind(rx: SocketReceiver): void {
    this.underlay.attach({
      datagram: (buf, from) => {
        const inner = this.eth0.tracer.filters.size ? rx.innerFrame(buf) : undefined;
        const ctx = inner ? this.eth0.tracer.matchFrame(inner) : null;
        if (ctx) this.eth0.tracer.run(ctx, () => this.received(rx, buf, from));
        else this.received(rx, buf, from);
      },
    });
  }

  private received(rx: SocketReceiver, buf: Buffer, from: { address: string; port: number }): void {
    if (this.eth0.tracer.current) this.eth0.tracer.hop('node', this.eth0.name, `underlay: UDP datagram from ${from.address}:${from.port} to ${this.underlay.localIp}:${rx.port}, ${buf.length + OUTER_UDP_PACKET_OVERHEAD} bytes`, { dir: 'rx' });
    const c = this.eth0.counters;
    c.rxPackets++;
    c.rxBytes += buf.length + OUTER_UDP_FRAME_OVERHEAD;
    if (this.outerTaps.size) for (const tap of this.outerTaps) tap('in', { ip: from.address, port: from.port }, rx.port, buf);
    rx.receive(buf, from);
  }

  /** A peer left: the underlay lets go of what it kept for it. */
  forgetPeer(remote: string): void {
    this.underlay.forgetPeer(remote);
  }

  /** The source port of a flow, as the kernel derives it from the inner headers. */
  sourcePortFor(flowHash: number): number {
    return this.underlay.sourcePortFor(flowHash);
  }

  /** Sends one outer UDP payload to `remote:port` out of eth0; returns the underlay's verdict. */
  send(remote: string, port: number, payload: Buffer, flowHash: number): string {
    const c = this.eth0.counters;
    c.txPackets++;
    c.txBytes += payload.length + OUTER_UDP_FRAME_OVERHEAD;
    if (this.outerTaps.size) {
      const sport = this.underlay.sourcePortFor(flowHash);
      for (const tap of this.outerTaps) tap('out', { ip: remote, port }, sport, payload);
    }
    const verdict = this.underlay.send(remote, port, payload, flowHash);
    if (this.eth0.tracer.current) {
      const lost = verdict === 'lost' || verdict === 'blackholed' || verdict === 'refused';
      this.eth0.tracer.hop('node', this.eth0.name, lost ? `underlay: datagram ${verdict} (impairment towards ${remote})` : `underlay: real UDP datagram sent to ${remote}:${port}${verdict === 'sent' ? '' : ` (impairment: ${verdict})`}`, {
        dir: 'tx',
        drop: lost ? (verdict === 'refused' ? 'underlay-refused' : `impairment-${verdict}`) : undefined,
      });
    }
    return verdict;
  }

  /** Counts a datagram eth0 received but could not hand on (malformed outer payload). */
  drop(reason: string): void {
    this.eth0.counters.drop(reason);
  }
}
