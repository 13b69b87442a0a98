/**
 * Flannel's vxlan backend (pkg/backend/vxlan; its design note: "one route, one
 * ARP entry and one FDB entry per remote host"). Per remote node:
 *   ip neigh replace <podCIDR.0> lladdr <VtepMAC> dev flannel.1 nud permanent
 *   bridge fdb replace <VtepMAC> dev flannel.1 dst <public IP> self permanent
 *   ip route replace <podCIDR> via <podCIDR.0> dev flannel.1 onlink
 * Pod packets cross the underlay inside VXLAN datagrams on UDP 8472
 * (./vtep.ts), so eth0 only ever carries the nodes' own addresses.
 */
import { FLANNEL_BACKEND_DATA, FLANNEL_BACKEND_TYPE, parseFlannelBackendData } from '../../control-plane/annotations.ts';
import { isValidMac } from '../../packet/addr.ts';
import type { Lease, NetworkBackend, PlanAction } from '../backend.ts';
import { Eth0Sockets } from '../../overlay/eth0-sockets.ts';
import { diffPeers, flannelPublicIp, gatewayOf, publishedEth0Mac } from '../plan.ts';
import { Vtep } from './vtep.ts';
import { VTEP_DEV, vxlanKernel } from './kernel.ts';

const NAME = 'vxlan';

/** VXLAN over IPv4 costs 50 bytes: outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8. */
export const VXLAN_OVERHEAD = 50;

const peers = {
  accepts: (l: Lease, self: { vni: number }) => l.backend === NAME && l.vni === self.vni,
  add(l: Lease): PlanAction[] {
    const via = gatewayOf(l.podCIDR);
    return [
      { op: 'add-neigh', dev: VTEP_DEV, ip: via, mac: l.vtepMac!, node: l.node },
      { op: 'add-fdb', mac: l.vtepMac!, dst: l.publicIp, node: l.node },
      { op: 'add-route', cidr: l.podCIDR, via, dev: VTEP_DEV, onlink: true, proto: 'boot', node: l.node },
    ];
  },
  remove(l: Lease): PlanAction[] {
    return [
      { op: 'del-route', cidr: l.podCIDR, node: l.node },
      { op: 'del-fdb', mac: l.vtepMac!, node: l.node },
      { op: 'del-neigh', dev: VTEP_DEV, ip: gatewayOf(l.podCIDR), node: l.node },
    ];
  },
};

export const vxlan: NetworkBackend = {
  name: NAME,
  help: 'Flannel VXLAN overlay (flannel.1, UDP 8472)',
  mtuOverhead: VXLAN_OVERHEAD,
  tunnelDevice: VTEP_DEV,
  ipUnderlay: false,
  bgp: false,

  annotations: (self) => ({
    [FLANNEL_BACKEND_TYPE]: NAME,
    [FLANNEL_BACKEND_DATA]: JSON.stringify({ VNI: self.vni, VtepMAC: self.vtepMac }),
  }),

  readLease(node) {
    const ann = node.metadata.annotations ?? {};
    // Flannel before backend-type annotations: backend data alone means vxlan.
    const ip = flannelPublicIp(node, (type) => type === NAME || (type === undefined && !!ann[FLANNEL_BACKEND_DATA]));
    if (ip === undefined || typeof ip === 'string') return ip;
    const d = parseFlannelBackendData(ann[FLANNEL_BACKEND_DATA]);
    if (!d || !isValidMac(d.VtepMAC.toLowerCase())) return `node ${node.metadata.name}: bad ${FLANNEL_BACKEND_DATA} annotation`;
    return { node: node.metadata.name, podCIDR: node.spec!.podCIDR!, publicIp: ip.publicIp, backend: NAME, vtepMac: d.VtepMAC.toLowerCase(), vni: d.VNI, eth0Mac: publishedEth0Mac(node) };
  },

  knownVtepMac: (node) => parseFlannelBackendData(node?.metadata.annotations?.[FLANNEL_BACKEND_DATA])?.VtepMAC,
  accepts: peers.accepts,
  plan: (desired, current, self) => diffPeers(desired, current, self, peers),

  attach(ctx) {
    const underlay = ctx.underlay({ port: ctx.vxlanPort });
    const sockets = new Eth0Sockets(ctx.eth0, underlay);
    const vtep = new Vtep({
      name: VTEP_DEV,
      vni: ctx.vni,
      mac: ctx.vtepMac,
      mtu: ctx.podMtu,
      port: ctx.vxlanPort,
      sockets,
      ifindex: ctx.ifindexes.take(),
      tracer: ctx.eth0.tracer,
      onFdbChange: () => ctx.stack.generation.bump('fdb'),
    });
    ctx.stack.addInterface(vtep.dev, { arp: false });
    ctx.stack.addAddress(VTEP_DEV, gatewayOf(ctx.podCIDR), 32);
    return {
      underlay,
      wireKind: NAME,
      sockets,
      devices: [{ dev: vtep.dev, description: `VXLAN device ${VTEP_DEV} (VNI ${vtep.vni})` }],
      apply(a) {
        if (a.op === 'add-fdb') vtep.setFdb(a.mac, a.dst);
        else if (a.op === 'del-fdb') vtep.deleteFdb(a.mac);
        else return false;
        return true;
      },
      fdb: () => ({ dev: VTEP_DEV, fdb: vtep.fdb }),
      linkDetails: () => ({ vxlan: { vni: ctx.vni, port: ctx.vxlanPort, local: ctx.ip } }),
    };
  },

  kernel: vxlanKernel,
};
