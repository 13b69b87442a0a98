/**
 * Linux network namespaces for netns labs, through iproute2 (`ip`, `bridge`).
 *
 * Safety is structural, not a matter of care at each call site:
 * - every namespace this module creates or deletes is named `podlab-...`
 *   ({@link assertLabNamespace}); anything else is refused;
 * - addresses, routes, links and neighbours are only ever changed with
 *   `ip -n <podlab-namespace> ...` ({@link ipIn}); there is no helper that
 *   changes the root namespace, so nothing here can add an address or route
 *   to the host's own network;
 * - veth pairs are created inside a lab namespace with the peer placed
 *   directly into another lab namespace (`ip -n A link add x type veth peer
 *   name y netns B`): no interface ever appears in, or moves through, the root
 *   namespace, and deleting either namespace destroys the pair.
 *
 * The layout of a lab network (see lab/netns-lab.ts):
 *
 *     <prefix>-underlay    bridge podlab0 10.250.0.10/24 (the apiserver listens here)
 *        ├── v-node-1 ─veth─ eth0 10.250.0.11/24  in <prefix>-node-1   (an emulated node agent)
 *        ├── v-node-2 ─veth─ eth0 10.250.0.12/24  in <prefix>-node-2
 *        └── v-knode-1 ─veth─ eth0 10.250.0.14/24 in <prefix>-knode-1  (a kernel node: flannel.1, cni0)
 *                                                      └── veth ─ eth0 in <prefix>-knode-1-<pod> (a kernel pod)
 */
import { childProcess } from '../common/lazy-builtins.ts';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { systemTool } from '../common/system-tool.ts';

/** A namespace operation failed; the message names the command and iproute2's complaint. */
export class NetnsError extends Error {
  override name = 'NetnsError';
}

/** Every namespace of every netns lab starts with this. */
export const NETNS_ROOT_PREFIX = 'podlab';

/** The lab bridge inside `<prefix>-underlay`. */
export const LAB_BRIDGE = 'podlab0';

/** Linux interface names: at most 15 bytes (IFNAMSIZ - 1). */
export const IFNAMSIZ_MAX = 15;

/** True when the process may create namespaces (root; CAP_SYS_ADMIN in practice). */
export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** True when `ip` (iproute2) is on PATH. */
export function hasIproute2(): boolean {
  return hasTool('ip');
}

/** Whether a system program is installed (by absolute path: npm's .bin may shadow names like nft). */
export function hasTool(tool: string): boolean {
  return systemTool(tool) !== undefined;
}

/** A namespace prefix: `podlab` or `podlab-<word>`, lower-case letters, digits and dashes. */
export function validatePrefix(prefix: string): string | undefined {
  if (!/^podlab(-[a-z0-9]+)*$/.test(prefix) || prefix.length > 40) {
    return `--netns-prefix: must be 'podlab' or start with 'podlab-' (letters, digits, dashes; at most 40 characters), got '${prefix}'`;
  }
  return undefined;
}

/** Refuses any namespace name that is not a lab's (`podlab-...`). */
export function assertLabNamespace(ns: string): void {
  if (!/^podlab-[A-Za-z0-9][A-Za-z0-9._-]*$/.test(ns) || ns.length > 200) throw new NetnsError(`refusing to touch network namespace '${ns}': lab namespaces are named podlab-...`);
}

/** The namespace names of a lab. */
export const netnsNames = {
  underlay: (prefix: string) => `${prefix}-underlay`,
  node: (prefix: string, node: string) => `${prefix}-${node}`,
  /** A kernel node's pod: `<prefix>-<node>-<pod>`; `<ns>.<pod>` outside the default namespace (names have no dots). */
  kernelPod: (nodeNs: string, namespace: string, pod: string) => {
    const base = `${nodeNs}-${namespace === 'default' ? pod : `${namespace}.${pod}`}`;
    return base.length <= 200 ? base : `${base.slice(0, 180)}-${createHash('sha256').update(base).digest('hex').slice(0, 12)}`;
  },
};

/** An interface name that fits IFNAMSIZ: `<prefix><name>`, or a hash when too long. */
export function ifname(prefix: string, name: string): string {
  const n = `${prefix}${name}`;
  return n.length <= IFNAMSIZ_MAX ? n : `${prefix}${createHash('sha256').update(name).digest('hex').slice(0, IFNAMSIZ_MAX - prefix.length)}`;
}

/** Where `ip netns add` mounts named namespaces. */
const NETNS_RUN_DIR = '/run/netns';

/**
 * The name of the network namespace this process runs in ('' when unnamed, e.g. the root one): the
 * name under /run/netns bound to the same namespace as /proc/self/ns/net, found as `ip netns identify`
 * finds it, without starting it (every agent asks at start, and a hundred forks were CPU for nothing).
 */
export function ownNetnsName(): string {
  try {
    const self = fs.statSync('/proc/self/ns/net');
    for (const name of fs.readdirSync(NETNS_RUN_DIR)) {
      const st = fs.statSync(`${NETNS_RUN_DIR}/${name}`, { throwIfNoEntry: false });
      if (st && st.dev === self.dev && st.ino === self.ino) return name;
    }
  } catch {
    /* no named namespaces here (or not readable): unnamed */
  }
  return '';
}

/** Runs a command; resolves with its output, rejects with a NetnsError naming it. */
export function run(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = childProcess().execFile(cmd, args, { timeout: opts.timeoutMs ?? 20_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new NetnsError(`${cmd} ${args.join(' ')}: ${String(stderr).trim() || err.message}`));
      else resolve({ stdout: String(stdout), stderr: String(stderr) });
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** `ip -n <ns> ...`: the only way this module changes links, addresses, routes or neighbours. */
export function ipIn(ns: string, ...args: string[]): Promise<{ stdout: string; stderr: string }> {
  assertLabNamespace(ns);
  return run('ip', ['-n', ns, ...args]);
}

/** `bridge -n <ns> ...` (FDB entries). */
export function bridgeIn(ns: string, ...args: string[]): Promise<{ stdout: string; stderr: string }> {
  assertLabNamespace(ns);
  return run('bridge', ['-n', ns, ...args]);
}

/** `ip -n <ns> -j ...`, parsed. */
export async function ipJson<T = unknown>(ns: string, ...args: string[]): Promise<T> {
  const { stdout } = await ipIn(ns, '-j', ...args);
  return JSON.parse(stdout || '[]') as T;
}

/** Writes sysctls inside a namespace (`net.*` is per network namespace). */
export async function sysctlIn(ns: string, settings: Record<string, string | number>): Promise<void> {
  assertLabNamespace(ns);
  await run('ip', ['netns', 'exec', ns, 'sysctl', '-q', '-w', ...Object.entries(settings).map(([k, v]) => `${k}=${v}`)]);
}

/**
 * Makes a veth put on the bridge what a real NIC puts on a wire (best effort;
 * needs ethtool):
 * - transmit checksum offload off: a veth otherwise hands over UDP/TCP with
 *   only the pseudo-header sum in the checksum field (CHECKSUM_PARTIAL), and a
 *   capture on the bridge shows "bad checksum" where a NIC would have put the
 *   right one;
 * - TSO/GSO/GRO off: a veth otherwise passes 64 KB TCP super-packets, which
 *   no Ethernet carries (and libpcap, seeing segmentation offload, sizes its
 *   ring slots for them: 64 slots where MTU-sized frames get thousands).
 */
export async function wireLikeOffloads(ns: string, dev: string): Promise<boolean> {
  assertLabNamespace(ns);
  const ethtool = systemTool('ethtool');
  if (!ethtool) return false;
  try {
    await run('ip', ['netns', 'exec', ns, ethtool, '-K', dev, 'tx', 'off', 'tso', 'off', 'gso', 'off', 'gro', 'off']);
    return true;
  } catch {
    return false;
  }
}

/** Names of the existing network namespaces. */
export async function listNetns(): Promise<string[]> {
  const { stdout } = await run('ip', ['netns', 'list']);
  return stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0])
    .filter((n): n is string => !!n);
}

/** Same, synchronously (tests, teardown assertions). */
export function listNetnsSync(): string[] {
  try {
    return childProcess().execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
      .split('\n')
      .map((l) => l.trim().split(/\s+/)[0])
      .filter((n): n is string => !!n);
  } catch {
    return [];
  }
}

/** Creates a lab namespace with lo up and IPv6 off (keeps the underlay capture free of RS/MLD chatter). */
export async function addNetns(ns: string): Promise<void> {
  assertLabNamespace(ns);
  await run('ip', ['netns', 'add', ns]);
  await ipIn(ns, 'link', 'set', 'lo', 'up');
  await sysctlIn(ns, { 'net.ipv6.conf.all.disable_ipv6': 1, 'net.ipv6.conf.default.disable_ipv6': 1 });
}

/** Deletes a lab namespace (its veths go with it); a missing one is fine. Returns whether it existed. */
export async function delNetns(ns: string): Promise<boolean> {
  assertLabNamespace(ns);
  try {
    await run('ip', ['netns', 'del', ns]);
    return true;
  } catch (e) {
    if (/No such file|not exist|Invalid argument/i.test((e as Error).message)) return false;
    throw e;
  }
}

/**
 * A veth pair between two lab namespaces, created in `aNs` with its peer
 * placed straight into `bNs`. Both ends get `mtu`; `bMac` sets the B end's MAC.
 */
export async function addVethPair(aNs: string, aName: string, bNs: string, bName: string, mtu: number, bMac?: string): Promise<void> {
  assertLabNamespace(aNs);
  assertLabNamespace(bNs);
  await ipIn(aNs, 'link', 'add', aName, 'mtu', String(mtu), 'type', 'veth', 'peer', 'name', bName, 'mtu', String(mtu), ...(bMac ? ['address', bMac] : []), 'netns', bNs);
}

/** Files where a kernel node agent records the pod namespaces it creates (write-ahead). */
export function kernelPodNetnsFile(stateDir: string, node: string): string {
  return path.join(stateDir, 'nodes', node, 'netns.json');
}

/** The pod namespaces a kernel node agent recorded. */
export function readKernelPodNetns(stateDir: string, node: string): string[] {
  try {
    const v = JSON.parse(fs.readFileSync(kernelPodNetnsFile(stateDir, node), 'utf8')) as unknown;
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
  } catch {
    return [];
  }
}

/** Replaces the record of a kernel node's pod namespaces (atomically). */
export function writeKernelPodNetns(stateDir: string, node: string, names: string[]): void {
  const f = kernelPodNetnsFile(stateDir, node);
  fs.mkdirSync(path.dirname(f), { recursive: true, mode: 0o700 });
  fs.writeFileSync(f + '.tmp', JSON.stringify([...new Set(names)].sort()) + '\n', { mode: 0o600 });
  fs.renameSync(f + '.tmp', f);
}

/**
 * Every namespace a lab owns, for teardown, in deletion order (kernel pods,
 * nodes, underlay last): what lab.json lists, what kernel node agents
 * recorded, and any `<kernel-node-ns>-*` left by a crash between a
 * namespace's creation and its record.
 */
export async function labNamespaces(stateDir: string, rec: { netns?: { prefix: string; namespaces: string[] } }, existing?: string[]): Promise<string[]> {
  if (!rec.netns) return [];
  const { prefix } = rec.netns;
  const listed = rec.netns.namespaces.filter((n) => n.startsWith('podlab-'));
  const have = existing ?? (await listNetns());
  const pods = new Set<string>();
  const nodeNs = new Set(listed);
  for (const ns of listed) {
    // Pods of a kernel node (`knode-N`) are `<node-ns>-<pod>`; no other namespace has children.
    if (!ns.startsWith(`${prefix}-`) || !/^knode-\d+$/.test(ns.slice(prefix.length + 1))) continue;
    for (const p of readKernelPodNetns(stateDir, ns.slice(prefix.length + 1))) pods.add(p);
    for (const h of have) if (h.startsWith(`${ns}-`) && !nodeNs.has(h)) pods.add(h);
  }
  const underlay = listed.filter((n) => n.endsWith('-underlay'));
  const nodes = listed.filter((n) => !underlay.includes(n));
  return [...[...pods].filter((p) => p.startsWith('podlab-')), ...nodes, ...underlay];
}

/** Deletes every namespace of a lab; returns the ones still there afterwards (none when all went well). */
export async function removeLabNamespaces(stateDir: string, rec: Parameters<typeof labNamespaces>[1]): Promise<string[]> {
  const have = await listNetns().catch(() => [] as string[]);
  const all = await labNamespaces(stateDir, rec, have);
  for (const ns of all) {
    if (have.includes(ns)) await delNetns(ns).catch(() => false);
  }
  const after = await listNetns().catch(() => have);
  return all.filter((ns) => after.includes(ns));
}
