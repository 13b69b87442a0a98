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
import { VXLAN_HEADER_LEN, parseVxlan, writeVxlanHeader } from '../../packet/vxlan.ts';
import { NetDevice, type LinkTemplate } from '../../netstack/link/netdev.ts';
import type { Tracer } from '../../netstack/trace.ts';
import { flowHash } from '../../packet/flow-hash.ts';
import type { Eth0Sockets } from '../../overlay/eth0-sockets.ts';

export interface VtepOptions {
  name?: string;
  vni: number;
  mac: string;
  mtu: number;
  /** Destination UDP port (8472 for Flannel; 4789 is IANA's). */
  port: number;
  /** eth0's socket path: outer datagrams leave and arrive through it (and its counters). */
  sockets: Eth0Sockets;
  /** flannel.1's interface number in the node's namespace. */
  ifindex?: number;
  /** The node's tracer. */
  tracer?: Tracer;
  /** Called when the FDB changes (cached flows carry the peer it gave). */
  onFdbChange?: () => void;
}

export class Vtep {
  readonly dev: NetDevice;
  readonly vni: number;
  readonly port: number;
  /** VtepMAC → remote public IP (changed through setFdb / deleteFdb). */
  readonly fdb = new Map<string, string>();
  private readonly sockets: Eth0Sockets;
  private readonly onFdbChange: () => void;
  /** The VXLAN header's two words (flags 0x08 and reserved bytes; the VNI and a reserved byte), the same for every datagram of ours. */
  private readonly flagsWord: number;
  private readonly vniWord: number;

  constructor(opts: VtepOptions) {
    this.dev = new NetDevice(opts.name ?? 'flannel.1', 'vxlan', opts.mac, opts.mtu, { ifindex: opts.ifindex, tracer: opts.tracer });
    this.vni = opts.vni;
    this.port = opts.port;
    this.sockets = opts.sockets;
    this.onFdbChange = opts.onFdbChange ?? (() => {});
    const header = Buffer.alloc(VXLAN_HEADER_LEN);
    writeVxlanHeader(header, 0, this.vni);
    this.flagsWord = header.readUInt32BE(0);
    this.vniWord = header.readUInt32BE(4);
    this.dev.connect((frame) => this.encap(frame));
    this.dev.linkTemplate = (frame) => this.template(frame);
    opts.sockets.bind({ port: opts.port, innerFrame: (buf) => (buf.length > VXLAN_HEADER_LEN ? buf.subarray(VXLAN_HEADER_LEN) : undefined), receive: (buf) => this.decap(buf) });
  }

  /** `bridge fdb replace MAC dev flannel.1 dst IP self permanent`. */
  setFdb(mac: string, dst: string): void {
    const old = this.fdb.get(mac);
    this.fdb.set(mac, dst);
    if (old !== undefined && old !== dst) this.forgetIfUnused(old);
    this.onFdbChange();
  }

  /** `bridge fdb del MAC dev flannel.1`. */
  deleteFdb(mac: string): void {
    const old = this.fdb.get(mac);
    if (!this.fdb.delete(mac)) return;
    if (old !== undefined) this.forgetIfUnused(old);
    this.onFdbChange();
  }

  /** A peer address no FDB entry points at any more: eth0's sockets need keep nothing for it. */
  private forgetIfUnused(dst: string): void {
    for (const d of this.fdb.values()) if (d === dst) return;
    this.sockets.forgetPeer(dst);
  }

  /**
   * What encap does for this frame's flow, worked out once for a flow cache:
   * the VXLAN header, the peer from the FDB and the source socket from the
   * inner flow's hash (the same for every packet of the flow).
   */
  template(frame: Buffer): LinkTemplate | undefined {
    const remote = this.fdb.get(readMac(frame, 0));
    if (!remote) return undefined;
    const hash = flowHash(frame);
    const { sockets, port } = this;
    return { send: (frame) => void sockets.send(remote, port, this.withHeader(frame), hash) };
  }

  /**
   * The datagram: the VXLAN header, then the frame, in one new buffer. Handing
   * dgram the two as a list instead (one `sendmsg` with two iovecs, no copy)
   * cost more than the copy: Node wraps each element in a new Buffer and reads
   * the list through V8's API in its native send.
   */
  private withHeader(frame: Buffer): Buffer {
    const out = Buffer.allocUnsafe(VXLAN_HEADER_LEN + frame.length);
    out.writeUInt32BE(this.flagsWord, 0);
    out.writeUInt32BE(this.vniWord, 4);
    frame.copy(out, VXLAN_HEADER_LEN);
    return out;
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
    const hash = flowHash(frame);
    if (this.dev.tracer.current) {
      const sport = this.sockets.sourcePortFor(hash);
      const local = this.sockets.underlay.localIp;
      this.dev.tracer.hop('node', 'vxlan-encap', `fdb ${dstMac} dev ${this.dev.name} dst ${remote}; VXLAN flags 0x08 VNI ${this.vni}; outer ${local}:${sport} > ${remote}:${this.port} UDP, ${VXLAN_HEADER_LEN + frame.length + 28} bytes`, {
        detail: { fdb: { mac: dstMac, dst: remote }, vni: this.vni, outer: { src: local, sport, dst: remote, dport: this.port } },
      });
    }
    this.sockets.send(remote, this.port, this.withHeader(frame), hash);
  }

  /** Handles one datagram that eth0 received on the VXLAN port. */
  decap(buf: Buffer): void {
    // A well-formed header of our VNI, read in place (no object per datagram); anything else is parsed for its reason.
    if (buf.length >= VXLAN_HEADER_LEN + 14 && buf.readUInt32BE(0) === this.flagsWord && buf.readUInt32BE(4) === this.vniWord && this.dev.tracer.current === null) {
      this.dev.receive(buf.subarray(VXLAN_HEADER_LEN));
      return;
    }
    const vx = parseVxlan(buf);
    if (isWireError(vx)) {
      this.sockets.drop(`malformed-vxlan:${vx.reason}`);
      if (this.dev.tracer.current) this.dev.tracer.hop('node', 'vxlan-decap', `malformed VXLAN header (${vx.reason}): dropped`, { drop: `malformed-vxlan:${vx.reason}` });
      return;
    }
    if (vx.vni !== this.vni) {
      this.sockets.drop('wrong-vni');
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
