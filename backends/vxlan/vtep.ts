/**
 * flannel.1: the VXLAN tunnel endpoint (VTEP), as the Linux `vxlan` device that
 * Flannel creates (`ip link add flannel.1 type vxlan id 1 dstport 8472 nolearning`).
 *
 * Transmit: the node's stack has already resolved the next hop (`<podCIDR>.0`)
 * to the remote VtepMAC through a permanent neighbour entry and written it as
 * the inner destination MAC. The VTEP looks that MAC up in its FDB
 * (`<VtepMAC> dev flannel.1 dst <public IP> self permanent`), prepends the
 * 8-byte VXLAN header (flags 0x08, VNI) and sends the result as a real UDP
 * datagram to `<public IP>:8472`.
 *
 * Receive: a datagram on :8472 is parsed; a malformed header or a VNI other
 * than ours is counted and dropped (as the kernel's vxlan_rcv does), otherwise
 * the inner frame is received on flannel.1 by the node's stack.
 */
import { readMac } from '../../packet/addr.ts';
import { isWireError } from '../../packet/errors.ts';
import { VXLAN_HEADER_LEN, parseVxlan } from '../../packet/vxlan.ts';
import { flowHash } from '../../packet/flow-hash.ts';
import { NetDevice } from '../../netstack/link/netdev.ts';
import type { UdpUnderlay } from '../../overlay/underlay-udp.ts';

export interface VtepOptions {
  name?: string;
  vni: number;
  mac: string;
  mtu: number;
  /** Destination UDP port (8472 for Flannel; 4789 is IANA's). */
  port: number;
  underlay: UdpUnderlay;
  /** The node's underlay interface, whose counters see the outer datagrams. */
  eth0: NetDevice;
  /** flannel.1's interface number in the node's namespace. */
  ifindex?: number;
}

/** Observes outer datagrams on eth0 (for capture): direction, peer address and port, local port, UDP payload. */
export type OuterTap = (dir: 'in' | 'out', peer: { ip: string; port: number }, localPort: number, udpPayload: Buffer) => void;

export class Vtep {
  readonly dev: NetDevice;
  readonly vni: number;
  readonly port: number;
  /** VtepMAC → remote public IP. */
  readonly fdb = new Map<string, string>();
  readonly outerTaps = new Set<OuterTap>();
  private readonly underlay: UdpUnderlay;
  private readonly eth0: NetDevice;

  constructor(opts: VtepOptions) {
    this.dev = new NetDevice(opts.name ?? 'flannel.1', 'vxlan', opts.mac, opts.mtu, { ifindex: opts.ifindex, tracer: opts.eth0.tracer });
    this.vni = opts.vni;
    this.port = opts.port;
    this.underlay = opts.underlay;
    this.eth0 = opts.eth0;
    this.dev.wire = (frame) => this.encap(frame);
  }

  /** Encapsulates an inner frame towards the VTEP that owns its destination MAC. */
  encap(frame: Buffer): void {
    const dstMac = readMac(frame, 0);
    const remote = this.fdb.get(dstMac);
    if (!remote) {
      this.dev.counters.drop('fdb-miss');
      if (this.dev.tracer.current) this.dev.tracer.hop('node', 'vxlan-encap', `no fdb entry for ${dstMac} on ${this.dev.name}: dropped`, { drop: 'fdb-miss' });
      return;
    }
    const out = Buffer.allocUnsafe(VXLAN_HEADER_LEN + frame.length);
    out.writeUInt32BE(0x08000000, 0); // flags: I (VNI valid); reserved zero
    out.writeUInt32BE((this.vni & 0xffffff) << 8, 4); // VNI, reserved byte zero
    frame.copy(out, VXLAN_HEADER_LEN);
    const hash = flowHash(frame);
    this.eth0.counters.txPackets++;
    this.eth0.counters.txBytes += out.length + 42;
    const sport = this.underlay.sourcePortFor(hash);
    if (this.outerTaps.size) for (const tap of this.outerTaps) tap('out', { ip: remote, port: this.port }, sport, out);
    if (this.dev.tracer.current) {
      this.dev.tracer.hop('node', 'vxlan-encap', `fdb ${dstMac} dev ${this.dev.name} dst ${remote}; VXLAN flags 0x08 VNI ${this.vni}; outer ${this.underlay.localIp}:${sport} > ${remote}:${this.port} UDP, ${out.length + 28} bytes`, {
        detail: { fdb: { mac: dstMac, dst: remote }, vni: this.vni, outer: { src: this.underlay.localIp, sport, dst: remote, dport: this.port } },
      });
    }
    const verdict = this.underlay.send(remote, this.port, out, hash);
    if (this.dev.tracer.current) {
      const lost = verdict === 'lost' || verdict === 'blackholed' || verdict === 'refused';
      this.dev.tracer.hop('node', 'eth0', lost ? `underlay: datagram ${verdict} (impairment towards ${remote})` : `underlay: real UDP datagram sent to ${remote}:${this.port}${verdict === 'sent' ? '' : ` (impairment: ${verdict})`}`, {
        dir: 'tx',
        drop: lost ? (verdict === 'refused' ? 'underlay-refused' : `impairment-${verdict}`) : undefined,
      });
    }
  }

  /** Handles one datagram that arrived on the VXLAN port (traced if its inner packet is followed). */
  decap(buf: Buffer, from: { address: string; port: number }): void {
    const ctx = this.dev.tracer.filters.size && buf.length > 8 ? this.dev.tracer.matchFrame(buf.subarray(8)) : null;
    if (ctx) return this.dev.tracer.run(ctx, () => this.decapTraced(buf, from));
    this.decapTraced(buf, from);
  }

  private decapTraced(buf: Buffer, from: { address: string; port: number }): void {
    if (this.dev.tracer.current) this.dev.tracer.hop('node', 'eth0', `underlay: UDP datagram from ${from.address}:${from.port} to ${this.underlay.localIp}:${this.port}, ${buf.length + 28} bytes`, { dir: 'rx' });
    this.eth0.counters.rxPackets++;
    this.eth0.counters.rxBytes += buf.length + 42;
    if (this.outerTaps.size) for (const tap of this.outerTaps) tap('in', { ip: from.address, port: from.port }, this.port, buf);
    const vx = parseVxlan(buf);
    if (isWireError(vx)) {
      this.eth0.counters.drop(`malformed-vxlan:${vx.reason}`);
      if (this.dev.tracer.current) this.dev.tracer.hop('node', 'vxlan-decap', `malformed VXLAN header (${vx.reason}): dropped`, { drop: `malformed-vxlan:${vx.reason}` });
      return;
    }
    if (vx.vni !== this.vni) {
      this.eth0.counters.drop('wrong-vni');
      if (this.dev.tracer.current) this.dev.tracer.hop('node', 'vxlan-decap', `VNI ${vx.vni} is not ${this.dev.name}'s VNI ${this.vni}: dropped`, { drop: 'wrong-vni' });
      return;
    }
    if (this.dev.tracer.current) this.dev.tracer.hop('node', 'vxlan-decap', `VXLAN VNI ${vx.vni} matches ${this.dev.name}: inner frame of ${vx.payload.length} bytes received on ${this.dev.name}`);
    if (vx.payload.length < 14) {
      this.dev.counters.drop('runt-frame');
      return;
    }
    this.dev.receive(vx.payload);
  }
}
