/**
 * The iproute2 commands that make a network namespace a Flannel node, as pure
 * functions returning argv lists (no side effects here: the kernel node agent
 * runs them, tests read them).
 *
 * flanneld's vxlan backend (pkg/backend/vxlan/device.go, vxlan_network.go)
 * programs, per remote node, through netlink:
 *   - a permanent neighbour `<podCIDR>.0 → VtepMAC` on flannel.1 (NeighSet),
 *   - an FDB entry `VtepMAC → public IP` on flannel.1 (NeighSet, AF_BRIDGE,
 *     NTF_SELF, NUD_PERMANENT: a create-or-replace, so `bridge fdb replace ...
 *     self permanent` is its iproute2 spelling; `append` would add a second
 *     destination if a node's IP ever changed),
 *   - the route `<podCIDR> via <podCIDR>.0 dev flannel.1 onlink` (RouteReplace).
 * The plan (backends/plan.ts) orders them: neighbour and FDB first,
 * route last; on removal the route goes first.
 */
import type { PlanAction } from '../backends/plan.ts';

/** A command: the program (`ip` or `bridge`) and its arguments. */
export type Argv = [program: 'ip' | 'bridge', ...args: string[]];

/** The VTEP device Flannel creates. */
export const VTEP_DEV = 'flannel.1';
/** The CNI bridge (Flannel's CNI config delegates to the bridge plugin with `cni0`). */
export const CNI_BRIDGE = 'cni0';

/** The command that applies one plan action in namespace `ns`. */
export function planCommand(ns: string, a: PlanAction): Argv {
  switch (a.op) {
    case 'add-neigh':
      return ['ip', '-n', ns, 'neigh', 'replace', a.ip, 'lladdr', a.mac, 'dev', a.dev, 'nud', 'permanent'];
    case 'del-neigh':
      return ['ip', '-n', ns, 'neigh', 'del', a.ip, 'dev', a.dev];
    case 'add-fdb':
      return ['bridge', '-n', ns, 'fdb', 'replace', a.mac, 'dev', VTEP_DEV, 'dst', a.dst, 'self', 'permanent'];
    case 'del-fdb':
      return ['bridge', '-n', ns, 'fdb', 'del', a.mac, 'dev', VTEP_DEV, 'self'];
    case 'add-route':
      return ['ip', '-n', ns, 'route', 'replace', a.cidr, 'via', a.via, 'dev', a.dev, ...(a.onlink ? ['onlink'] : [])];
    case 'del-route':
      return ['ip', '-n', ns, 'route', 'del', a.cidr];
  }
}

/** True when a failed removal only means the entry was already gone. */
export function isAlreadyGone(message: string): boolean {
  return /No such (file|process)|Cannot find|not found|does not exist|RTNETLINK answers: No such/i.test(message);
}

/** The VTEP as flanneld creates it: `ip link add flannel.1 type vxlan id 1 local <ip> dev eth0 dstport 8472 nolearning`. */
export function vtepCommands(ns: string, o: { vni: number; localIp: string; port: number; mtu: number }): Argv[] {
  return [
    ['ip', '-n', ns, 'link', 'add', VTEP_DEV, 'type', 'vxlan', 'id', String(o.vni), 'local', o.localIp, 'dev', 'eth0', 'dstport', String(o.port), 'nolearning'],
    ['ip', '-n', ns, 'link', 'set', VTEP_DEV, 'mtu', String(o.mtu), 'up'],
  ];
}

/** A kernel pod: its namespace's eth0 (a veth into cni0), its address and default route via the gateway. */
export function podCommands(nodeNs: string, podNs: string, o: { hostVeth: string; ip: string; prefixLen: number; gateway: string; mtu: number }): Argv[] {
  return [
    ['ip', '-n', nodeNs, 'link', 'add', o.hostVeth, 'mtu', String(o.mtu), 'type', 'veth', 'peer', 'name', 'eth0', 'mtu', String(o.mtu), 'netns', podNs],
    ['ip', '-n', nodeNs, 'link', 'set', o.hostVeth, 'master', CNI_BRIDGE, 'up'],
    ['ip', '-n', podNs, 'addr', 'add', `${o.ip}/${o.prefixLen}`, 'dev', 'eth0'],
    ['ip', '-n', podNs, 'link', 'set', 'eth0', 'up'],
    ['ip', '-n', podNs, 'route', 'add', 'default', 'via', o.gateway, 'dev', 'eth0'],
  ];
}

/** Commands `podlab exec` may run in a kernel pod (for real, via `ip netns exec`). */
export const KERNEL_POD_COMMANDS = ['ping', 'ip', 'ss', 'tracepath', 'traceroute', 'arping', 'nc', 'curl', 'tcpdump'] as const;

/**
 * `podlab node <kernel node> ...` views, mapped to the real iproute2 commands
 * in the node's namespace: the display flags and `show`/`get` forms pass
 * through; anything that would change the namespace is shown instead.
 */
export function nodeViewCommand(ns: string, argv: string[]): Argv | undefined {
  const [tool, obj] = argv;
  if (tool === 'bridge' && (obj === 'fdb' || obj === 'f')) return ['bridge', '-n', ns, 'fdb', 'show'];
  if (tool !== 'ip') return undefined;
  let i = 1;
  const flags: string[] = [];
  while (i < argv.length && /^-(d|details|s|stats|4|br|brief|j|json|p|pretty)$/.test(argv[i])) flags.push(argv[i++]);
  const objects: Record<string, string> = { r: 'route', ro: 'route', route: 'route', n: 'neigh', neigh: 'neigh', neighbor: 'neigh', neighbour: 'neigh', l: 'link', link: 'link', a: 'addr', addr: 'addr', address: 'addr' };
  const o = objects[argv[i] ?? ''];
  if (!o) return undefined;
  const rest = argv.slice(i + 1);
  const words = (xs: string[]) => xs.every((x) => /^[\w.:/@-]+$/.test(x));
  if (o === 'route' && (rest[0] === 'get' || rest[0] === 'g') && words(rest)) return ['ip', '-n', ns, ...flags, o, 'get', ...rest.slice(1)];
  const shown = rest[0] === 'show' || rest[0] === 'list' ? rest.slice(1) : [];
  return ['ip', '-n', ns, ...flags, o, 'show', ...(words(shown) ? shown : [])];
}
