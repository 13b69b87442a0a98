/**
 * Flannel's vxlan backend on a kernel node (pkg/backend/vxlan/device.go,
 * vxlan_network.go): the kernel's own vxlan device `flannel.1` (VNI 1, dstport
 * 8472, nolearning, MTU 1450), its MAC published as the VtepMAC, `<podCIDR>.0/32`
 * on it; per remote node one permanent neighbour, one FDB entry and one route
 * through it (the plan, as iproute2 commands).
 */
import { gatewayOf } from '../plan.ts';
import { iproute2Command } from '../kernel-iproute2.ts';
import type { KernelArgv, KernelSupport, PlanAction } from '../backend.ts';

/** The VTEP device Flannel creates. */
export const VTEP_DEV = 'flannel.1';

/** The VTEP as flanneld creates it: `ip link add flannel.1 type vxlan id 1 local <ip> dev eth0 dstport 8472 nolearning`. */
export function vtepCommands(ns: string, o: { vni: number; localIp: string; port: number; mtu: number }): KernelArgv[] {
  return [
    ['ip', '-n', ns, 'link', 'add', VTEP_DEV, 'type', 'vxlan', 'id', String(o.vni), 'local', o.localIp, 'dev', 'eth0', 'dstport', String(o.port), 'nolearning'],
    ['ip', '-n', ns, 'link', 'set', VTEP_DEV, 'mtu', String(o.mtu), 'up'],
  ];
}

/** The command that applies one vxlan plan step in namespace `ns`. */
export function planCommand(ns: string, a: PlanAction): KernelArgv {
  return iproute2Command(ns, a, VTEP_DEV);
}

export const vxlanKernel: KernelSupport = {
  async setup(ns, o, run) {
    if (!o.exists(VTEP_DEV)) for (const c of vtepCommands(ns, { vni: o.vni, localIp: o.ip, port: o.vxlanPort, mtu: o.podMtu })) await run(c);
    const [vtep] = JSON.parse((await run(['ip', '-n', ns, '-j', 'link', 'show', VTEP_DEV])) || '[]') as { address: string }[];
    return { vtepMac: vtep?.address };
  },
  async configure(ns, podCIDR, run) {
    await run(['ip', '-n', ns, 'addr', 'replace', `${gatewayOf(podCIDR)}/32`, 'dev', VTEP_DEV]);
  },
  command: (ns, a) => (a.op === 'add-neigh' || a.op === 'del-neigh') && a.dev === 'eth0' ? undefined : planCommand(ns, a),
  captureHint: (ns, o) => `run: ip netns exec ${ns} tshark -i eth0 -d udp.port==${o.vxlanPort},vxlan (or -i flannel.1, cni0)`,
};
