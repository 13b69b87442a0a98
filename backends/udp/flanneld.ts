/**
 * flanneld's UDP backend in user space (flannel's pkg/backend/udp, proxy.c):
 * flannel0 is a TUN device (no Ethernet header, point-to-point, MTU 1472);
 * the kernel routes 10.244.0.0/16 into it, flanneld read()s each packet from
 * the TUN file descriptor, looks the destination up in its table of subnets
 * (from the leases: subnet -> the peer's public IP) and sendto()s the bare
 * packet, with no header of its own, in a UDP datagram to the peer's port 8285.
 * The peer's flanneld recvfrom()s it and write()s it into its flannel0, from
 * where its kernel routes it to the pod.
 *
 * Every packet crosses the kernel/user boundary twice per node (TUN read and
 * socket send; socket receive and TUN write): the copies that made the backend
 * slow. They are counted (`podlab node NODE stats`), not slept for: the cost
 * shows as the extra per-packet work an emulated node does, as it showed on
 * real ones.
 */
import { NetDevice, type IfindexAllocator } from '../../netstack/link/netdev.ts';
import type { Tracer } from '../../netstack/trace.ts';
import { isWireError } from '../../packet/errors.ts';
import { writeEthernetHeader } from '../../packet/ethernet.ts';
import { parseIpv4, readIpv4Dst } from '../../packet/ipv4.ts';
import { Cidr } from '../../packet/cidr.ts';
import { flowHash } from '../../packet/flow-hash.ts';
import type { Eth0Sockets } from '../../overlay/eth0-sockets.ts';

export const TUN_DEV = 'flannel0';
/** flanneld's UDP port (flannel's `Port` default for the udp backend). */
export const FLANNEL_UDP_PORT = 8285;

/** The user-space copies of one flanneld, as `stats` shows them. */
export interface FlanneldCopies {
  /** Packets read from flannel0: kernel -> flanneld. */
  tunReads: number;
  /** Packets written into flannel0: flanneld -> kernel. */
  tunWrites: number;
  /** Datagrams flanneld sent (flanneld -> kernel again, into a socket). */
  sent: number;
  /** Datagrams flanneld received (kernel -> flanneld, out of a socket). */
  received: number;
  /** Bytes copied across the boundary, all four ways together. */
  bytesCopied: number;
  /** Packets flanneld could not place: no subnet for the destination, or not IPv4. */
  noRoute: number;
  malformed: number;
}

export class Flanneld {
  readonly dev: NetDevice;
  /** Subnet -> peer public IP (flanneld's in-memory route table, from the leases). */
  readonly routes = new Map<string, { cidr: Cidr; publicIp: string }>();
  readonly copies: FlanneldCopies = { tunReads: 0, tunWrites: 0, sent: 0, received: 0, bytesCopied: 0, noRoute: 0, malformed: 0 };
  private readonly tracer: Tracer;

  constructor(private readonly o: { sockets: Eth0Sockets; port: number; mtu: number; ifindexes: IfindexAllocator; tracer: Tracer }) {
    this.tracer = o.tracer;
    this.dev = new NetDevice(TUN_DEV, 'tun', '00:00:00:00:00:00', o.mtu, { ifindexes: o.ifindexes, tracer: o.tracer });
    this.dev.connect((frame) => this.fromTun(frame.subarray(14)));
    o.sockets.bind({ port: o.port, innerFrame: (buf) => this.framed(buf), receive: (buf, from) => this.fromSocket(buf, from) });
  }

  /** The route step of a plan: `ip route` has only 10.244.0.0/16 dev flannel0; the per-node table lives here. */
  setRoute(cidr: string, publicIp: string): void {
    this.routes.set(cidr, { cidr: Cidr.parse(cidr), publicIp });
  }

  deleteRoute(cidr: string): boolean {
    return this.routes.delete(cidr);
  }

  private lookup(dst: string): string | undefined {
    let best: { len: number; ip: string } | undefined;
    for (const r of this.routes.values()) if (r.cidr.contains(dst) && (!best || r.cidr.prefixLen > best.len)) best = { len: r.cidr.prefixLen, ip: r.publicIp };
    return best?.ip;
  }

  /** flanneld's tun-to-UDP loop: one read() and one sendto() per packet. */
  private fromTun(packet: Buffer): void {
    this.copies.tunReads++;
    this.copies.bytesCopied += packet.length;
    if (packet.length < 20 || packet[0] >> 4 !== 4) {
      this.copies.malformed++;
      this.dev.counters.drop('flanneld-not-ipv4');
      return;
    }
    const dst = readIpv4Dst(packet);
    const peer = this.lookup(dst);
    if (!peer) {
      // flanneld logs "No route found for ..." and drops it.
      this.copies.noRoute++;
      this.dev.counters.drop('flanneld-no-route');
      if (this.tracer.current) this.tracer.hop('node', 'flanneld', `read ${packet.length} bytes from ${TUN_DEV}: no subnet for ${dst} in flanneld's table: dropped`, { drop: 'flanneld-no-route' });
      return;
    }
    if (this.tracer.current) {
      this.tracer.hop('node', 'flanneld', `read ${packet.length} bytes from ${TUN_DEV} (kernel -> user space); ${dst} is in a subnet of ${peer}; sendto ${peer}:${this.o.port} UDP, no header added (user space -> kernel)`, {
        detail: { flanneld: { dst, peer, port: this.o.port } },
      });
    }
    this.copies.sent++;
    this.copies.bytesCopied += packet.length;
    this.o.sockets.send(peer, this.o.port, Buffer.from(packet), flowHash(this.framed(packet)));
  }

  /** flanneld's UDP-to-tun loop: one recvfrom() and one write() per packet. */
  private fromSocket(buf: Buffer, from: { address: string; port: number }): void {
    this.copies.received++;
    this.copies.bytesCopied += buf.length;
    const ip = parseIpv4(buf);
    if (isWireError(ip)) {
      this.copies.malformed++;
      this.o.sockets.drop(`malformed-flannel-udp:${ip.reason}`);
      if (this.tracer.current) this.tracer.hop('node', 'flanneld', `datagram from ${from.address}:${from.port} is not an IPv4 packet (${ip.reason}): dropped`, { drop: `malformed-flannel-udp:${ip.reason}` });
      return;
    }
    if (this.tracer.current) this.tracer.hop('node', 'flanneld', `recvfrom ${from.address}:${from.port} (kernel -> user space): ${ip.src} > ${ip.dst}; written to ${TUN_DEV} (user space -> kernel)`);
    this.copies.tunWrites++;
    this.copies.bytesCopied += buf.length;
    this.dev.receive(this.framed(buf.subarray(0, 20 + (ip.options?.length ?? 0) + ip.payload.length)));
  }

  /** podlab moves packets as frames: a zero Ethernet header in front (captures of flannel0 strip it). */
  private framed(packet: Buffer): Buffer {
    const frame = Buffer.allocUnsafe(14 + packet.length);
    writeEthernetHeader(frame, 0, '00:00:00:00:00:00', '00:00:00:00:00:00', 0x0800);
    packet.copy(frame, 14);
    return frame;
  }
}
