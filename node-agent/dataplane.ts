/**
 * A node's data plane, without any control plane: the node's namespace (lo,
 * eth0 on the underlay, cni0, flannel.1), the real UDP underlay, and the pods'
 * namespaces hanging off cni0. The agent drives it from the apiserver; tests
 * and benchmarks drive it directly.
 */
import type { Clock } from '../common/clock.ts';
import { SeededRng, deriveMac } from '../common/rng.ts';
import { intToIpv4 } from '../packet/addr.ts';
import { gatewayOf, type FlannelAction } from '../overlay/flannel-plan.ts';
import { UdpUnderlay } from '../overlay/underlay-udp.ts';
import { Vtep } from '../overlay/vtep.ts';
import { Bridge } from './bridge.ts';
import { IpStack } from './ip-stack.ts';
import { NetDevice } from './netdev.ts';
import { PodNet } from './pod-net.ts';
import { parseCidr } from './route-table.ts';

/** VXLAN over IPv4 costs 50 bytes: outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8. */
export const VXLAN_OVERHEAD = 50;

export interface DataPlaneOptions {
  name: string;
  ip: string;
  underlayCidr: string;
  podCIDR: string;
  vtepMac: string;
  clusterCidr: string;
  vxlanPort: number;
  vni: number;
  seed: number;
  mtu: number;
  clock: Clock;
  rng: SeededRng;
}

export class NodeDataPlane {
  readonly stack: IpStack;
  readonly eth0: NetDevice;
  readonly bridge: Bridge;
  readonly vtep: Vtep;
  readonly underlay: UdpUnderlay;
  readonly pods = new Map<string, PodNet>();

  constructor(readonly opts: DataPlaneOptions) {
    const { name, seed, clock } = opts;
    this.stack = new IpStack(`node ${name}`, { clock, forwarding: true, idSeed: opts.rng.int(0, 0xffff), traceNs: 'node' });
    const lo = new NetDevice('lo', 'loopback', '00:00:00:00:00:00', 65536);
    this.stack.addInterface(lo, { arp: false });
    this.stack.addAddress('lo', '127.0.0.1', 8);

    this.eth0 = new NetDevice('eth0', 'ether', deriveMac(seed, `eth0:${name}`), opts.mtu);
    this.stack.addInterface(this.eth0, { arp: true });
    const under = parseCidr(opts.underlayCidr);
    this.stack.addAddress('eth0', opts.ip, under.prefixLen);

    this.underlay = new UdpUnderlay({
      localIp: opts.ip,
      port: opts.vxlanPort,
      allowed: { net: intToIpv4(under.net), prefixLen: under.prefixLen },
      clock,
      rng: opts.rng.fork('underlay'),
    });
    this.vtep = new Vtep({ vni: opts.vni, mac: opts.vtepMac, mtu: this.podMtu, port: opts.vxlanPort, underlay: this.underlay, eth0: this.eth0 });
    this.underlay.onDatagram = (buf, from) => this.vtep.decap(buf, from);
    this.stack.addInterface(this.vtep.dev, { arp: false });
    this.stack.addAddress('flannel.1', gatewayOf(opts.podCIDR), 32);

    this.bridge = new Bridge('cni0', deriveMac(seed, `cni0:${name}`), this.podMtu, clock);
    this.stack.addInterface(this.bridge.dev, { arp: true });
    this.stack.addAddress('cni0', this.gateway, parseCidr(opts.podCIDR).prefixLen);
  }

  get podMtu(): number {
    return this.opts.mtu - VXLAN_OVERHEAD;
  }

  /** cni0's address: the pods' default gateway (`<podCIDR>.1`). */
  get gateway(): string {
    return intToIpv4((parseCidr(this.opts.podCIDR).net + 1) >>> 0);
  }

  /** Binds the underlay sockets. */
  start(): Promise<void> {
    return this.underlay.start();
  }

  close(): Promise<void> {
    return this.underlay.close();
  }

  /** Creates a pod's namespace and plugs its veth into cni0 (the CNI ADD). */
  addPod(p: { namespace: string; name: string; uid: string; ip: string }): PodNet {
    const net = new PodNet({
      ...p,
      podCIDR: this.opts.podCIDR,
      gateway: this.gateway,
      clusterCidr: this.opts.clusterCidr,
      mtu: this.podMtu,
      seed: this.opts.seed,
      clock: this.opts.clock,
      nodeName: this.opts.name,
    });
    this.bridge.addPort(net.hostVeth);
    this.pods.set(net.key, net);
    return net;
  }

  /** Unplugs and forgets a pod (the CNI DEL). */
  removePod(net: PodNet): void {
    this.bridge.removePort(net.hostVeth);
    this.stack.neigh.delete('cni0', net.ip);
    this.pods.delete(net.key);
  }

  /** Applies one step of a Flannel plan to the kernel-like tables. */
  applyFlannel(a: FlannelAction): void {
    switch (a.op) {
      case 'add-neigh':
        return this.stack.neigh.setPermanent('flannel.1', a.ip, a.mac);
      case 'del-neigh':
        this.stack.neigh.delete('flannel.1', a.ip);
        return;
      case 'add-fdb':
        this.vtep.fdb.set(a.mac, a.dst);
        return;
      case 'del-fdb':
        this.vtep.fdb.delete(a.mac);
        return;
      case 'add-route': {
        const [dst, len] = a.cidr.split('/');
        this.stack.routes.replace({ dst, prefixLen: Number(len), gateway: a.via, dev: 'flannel.1', onlink: true, proto: 'boot', scope: 'global' });
        return;
      }
      case 'del-route': {
        const [dst, len] = a.cidr.split('/');
        this.stack.routes.delete(dst, Number(len));
        return;
      }
    }
  }

  /** Devices of the node's namespace, for `ip link`. */
  devices(): NetDevice[] {
    return [...[...this.stack.interfaces.values()].map((i) => i.dev), ...[...this.pods.values()].map((p) => p.hostVeth)];
  }
}
