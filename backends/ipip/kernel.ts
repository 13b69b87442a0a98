/**
 * Calico IPIP on a kernel node: the kernel's own fallback tunnel tunl0
 * (`ip tunnel add tunl0 mode ipip` where the module has not created it yet),
 * MTU 1480, the block's first address on it (/32), and BIRD as for `bgp`
 * installing learned blocks through it (bird.ts: `krt` export with ifname
 * tunl0 and onlink, as Calico's BIRD does with its tunnel attribute).
 */
import type { KernelArgv, KernelSupport } from '../backend.ts';
import { gatewayOf } from '../plan.ts';
import { routedKernelCommand, routedWireProblem } from '../kernel-iproute2.ts';
import { TUNL_DEV } from './tunnel.ts';

/** The commands that create and raise tunl0 in namespace `ns` (`exists`: the module already made it). */
export function tunlCommands(ns: string, o: { mtu: number; exists: boolean }): KernelArgv[] {
  return [...(o.exists ? [] : [['ip', '-n', ns, 'tunnel', 'add', TUNL_DEV, 'mode', 'ipip'] as KernelArgv]), ['ip', '-n', ns, 'link', 'set', TUNL_DEV, 'mtu', String(o.mtu), 'up']];
}

export const ipipKernel: KernelSupport = {
  async setup(ns, o, run) {
    for (const c of tunlCommands(ns, { mtu: o.podMtu, exists: o.exists(TUNL_DEV) })) await run(c);
    return {};
  },
  async configure(ns, podCIDR, run) {
    await run(['ip', '-n', ns, 'addr', 'replace', `${gatewayOf(podCIDR)}/32`, 'dev', TUNL_DEV]);
  },
  command: routedKernelCommand,
  wireProblem: routedWireProblem('ipip'),
  tools: { names: ['bird', 'birdc'], hint: '--kernel-nodes with --backend ipip runs BIRD in each kernel node (apt-get install bird2) and needs the ipip kernel module' },
  captureHint: (ns) => `run: ip netns exec ${ns} tshark -i eth0 (IPIP: ip.proto==4), or -i tunl0, cni0`,
};
