/**
 * tunl0: Linux's fallback IP-in-IP device (`ipip` module), as Calico uses it.
 * It has no remote of its own: routes `<block> via <node IP> dev tunl0 onlink`
 * name the peer, and the device takes the outer destination from the route's
 * next hop (the kernel reads it from the skb's dst). The outer header follows
 * packet/ipip.ts; the outer packet is then routed by the node like any packet
 * it originates (out of eth0 to the peer).
 *
 * Receive: protocol 4 delivered to the node (any source, as the fallback
 * device accepts) is decapsulated and the inner packet received on tunl0,
 * from where the node forwards it to the pod. A bad inner packet is counted
 * on tunl0 and dropped.
 */
import { NetDevice, type IfindexAllocator } from '../../netstack/link/netdev.ts';
import type { IpStack } from '../../netstack/ipv4/ip-stack.ts';
import { isWireError } from '../../packet/errors.ts';
import { writeEthernetHeader } from '../../packet/ethernet.ts';
import { IPPROTO_IPIP, decapIpip, ipipOuter } from '../../packet/ipip.ts';

export const TUNL_DEV = 'tunl0';

export class IpipTunnel {
  readonly dev: NetDevice;

  constructor(private readonly o: { stack: IpStack; localIp: string; mtu: number; ifindexes: IfindexAllocator }) {
    this.dev = new NetDevice(TUNL_DEV, 'ipip', '00:00:00:00:00:00', o.mtu, { ifindexes: o.ifindexes, tracer: o.stack.tracer });
    this.dev.connect((frame, _dev, nextHop) => this.encap(frame.subarray(14), nextHop));
    o.stack.registerProtocol(IPPROTO_IPIP, { input: (ip) => this.decap(ip) });
  }

  private encap(inner: Buffer, nextHop: string | undefined): void {
    const tracer = this.dev.tracer;
    if (!nextHop || nextHop === '0.0.0.0') {
      // A route `dev tunl0` without a gateway gives the fallback device no remote: the kernel drops it.
      this.dev.counters.drop('no-tunnel-remote');
      if (tracer.current) tracer.hop('node', 'ipip-encap', `no next hop for ${TUNL_DEV} (route without via): dropped`, { drop: 'no-tunnel-remote' });
      return;
    }
    const outer = ipipOuter(inner, { src: this.o.localIp, dst: nextHop, id: 0 });
    if (isWireError(outer)) {
      this.dev.counters.drop(`malformed-inner:${outer.reason}`);
      return;
    }
    if (tracer.current) {
      tracer.hop('node', 'ipip-encap', `${TUNL_DEV}: outer IPv4 ${this.o.localIp} > ${nextHop} proto 4 (IPIP), ttl ${outer.ttl} inherited${outer.dontFragment ? ', DF copied' : ''}, ${outer.payload.length + 20} bytes`, {
        detail: { outer: { src: this.o.localIp, dst: nextHop, protocol: IPPROTO_IPIP, ttl: outer.ttl } },
      });
    }
    const r = this.o.stack.send({ dst: nextHop, src: this.o.localIp, protocol: IPPROTO_IPIP, payload: outer.payload, ttl: outer.ttl, pmtudisc: outer.dontFragment ? 'do' : 'dont' });
    if (!r.ok) this.dev.counters.drop(`outer-${r.error.toLowerCase()}`);
  }

  private decap(outer: Parameters<typeof decapIpip>[0] & { src: string }): void {
    const d = decapIpip(outer);
    const tracer = this.dev.tracer;
    if (isWireError(d)) {
      this.dev.counters.drop(`malformed-ipip:${d.reason}`);
      if (tracer.current) tracer.hop('node', 'ipip-decap', `bad inner packet from ${outer.src} (${d.reason}): dropped`, { drop: `malformed-ipip:${d.reason}` });
      return;
    }
    if (tracer.current) tracer.hop('node', 'ipip-decap', `IPIP from ${outer.src}: inner ${d.inner.src} > ${d.inner.dst} received on ${TUNL_DEV}`);
    const frame = Buffer.allocUnsafe(14 + d.bytes.length);
    writeEthernetHeader(frame, 0, '00:00:00:00:00:00', '00:00:00:00:00:00', 0x0800);
    d.bytes.copy(frame, 14);
    this.dev.receive(frame);
  }
}
