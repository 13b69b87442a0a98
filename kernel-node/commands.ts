/**
 * The iproute2 commands of a kernel node's CNI side, as pure functions
 * returning argv lists (no side effects here: the kernel node agent runs them,
 * tests read them): the pods' veths and addresses, and the `podlab node`
 * views. The backend's own commands (flanneld's VTEP and plan) live with the
 * backend (backends/<name>/kernel.ts).
 */
import type { KernelArgv } from '../backends/backend.ts';

/** A command: the program (`ip` or `bridge`) and its arguments. */
export type Argv = KernelArgv;

/** The CNI bridge (Flannel's CNI config delegates to the bridge plugin with `cni0`). */
export const CNI_BRIDGE = 'cni0';

/** True when a failed removal only means the entry was already gone. */
export function isAlreadyGone(message: string): boolean {
  return /No such (file|process)|Cannot find|not found|does not exist|RTNETLINK answers: No such/i.test(message);
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
