/**
 * Plan steps as iproute2 commands in a kernel node's namespace (pure: the
 * kernel node agent runs them, tests read them). Flannel programs the same
 * entries through netlink: NeighSet, RouteReplace, and for VXLAN an FDB entry
 * (NeighSet with AF_BRIDGE, NTF_SELF, NUD_PERMANENT: a create-or-replace, so
 * `bridge fdb replace ... self permanent` is its iproute2 spelling; `append`
 * would add a second destination if a node's IP ever changed).
 */
import type { KernelArgv, KernelSupport, PlanAction } from './backend.ts';

/** The command that applies one plan step in namespace `ns`; FDB entries go on `fdbDev`. */
export function iproute2Command(ns: string, a: PlanAction, fdbDev: string): KernelArgv {
  switch (a.op) {
    case 'add-neigh':
      return ['ip', '-n', ns, 'neigh', 'replace', a.ip, 'lladdr', a.mac, 'dev', a.dev, 'nud', 'permanent'];
    case 'del-neigh':
      return ['ip', '-n', ns, 'neigh', 'del', a.ip, 'dev', a.dev];
    case 'add-fdb':
      return ['bridge', '-n', ns, 'fdb', 'replace', a.mac, 'dev', fdbDev, 'dst', a.dst, 'self', 'permanent'];
    case 'del-fdb':
      return ['bridge', '-n', ns, 'fdb', 'del', a.mac, 'dev', fdbDev, 'self'];
    case 'add-route':
      return ['ip', '-n', ns, 'route', 'replace', a.cidr, 'via', a.via, 'dev', a.dev, ...(a.onlink ? ['onlink'] : [])];
    case 'del-route':
      return ['ip', '-n', ns, 'route', 'del', a.cidr];
  }
}

/**
 * A routed backend's step on a kernel node: the kernel resolves its next hops
 * by ARP, so the permanent eth0 neighbours (for podlab's ARP-less wire) are skipped.
 */
export function routedKernelCommand(ns: string, a: PlanAction): KernelArgv | undefined {
  if ((a.op === 'add-neigh' || a.op === 'del-neigh') && a.dev === 'eth0') return undefined;
  return iproute2Command(ns, a, 'eth0');
}

/** A routed backend cannot reach a kernel node over podlab's UDP wire. */
export function routedWireProblem(name: string) {
  return (wire: 'udp' | 'raw'): string | undefined =>
    wire === 'udp' ? `--kernel-nodes: with --backend ${name} kernel nodes need --wire raw (the kernel does not speak podlab's UDP wire)` : undefined;
}

/**
 * How a kernel node runs a backend whose packets cross the underlay as they
 * are (host-gw, Calico BGP): no devices to set up, routes via the peers on
 * eth0, the raw wire required; `tools` names what else the node needs.
 */
export function routedKernelSupport(name: string, tools?: KernelSupport['tools']): KernelSupport {
  return {
    setup: () => Promise.resolve({}),
    command: routedKernelCommand,
    wireProblem: routedWireProblem(name),
    ...(tools ? { tools } : {}),
    captureHint: (ns) => `run: ip netns exec ${ns} tshark -i eth0 (or -i cni0)`,
  };
}
