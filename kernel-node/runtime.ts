/**
 * The kernel node kind: a network namespace configured exactly as flanneld
 * (or calico-node) and the CNI bridge plugin configure a real Kubernetes node,
 * so the Linux kernel itself is a peer of the emulated nodes.
 *
 * - the backend's devices and plan through its kernel support
 *   (backends/<name>/: flannel.1 for vxlan, nothing for host-gw, a real BIRD
 *   for bgp), applied with `ip`/`bridge -n <ns>`; ip_forward=1, rp_filter=0;
 * - the CNI bridge plugin + host-local IPAM: `cni0` with `<podCIDR>.1/24`;
 *   each Pod gets a namespace `<node-ns>-<pod>` with a veth into cni0, its
 *   address and a default route via `.1`, and its nginx/podlab-http containers
 *   as real servers (./pod-apps.ts).
 *
 * It runs in the root namespace (it must: `ip netns add` from inside `ip netns
 * exec` would bind-mount the new namespace into a private mount namespace);
 * every change goes through `ip -n <podlab-namespace>`, never to the root
 * namespace. Pod namespaces are recorded (before creation) in
 * `nodes/<node>/netns.json`, so `podlab down` removes them even after a crash.
 */
import { createHash } from 'node:crypto';
import { createLogger } from '../common/log.ts';
import { deriveMac } from '../common/rng.ts';
import type { Pod } from '../control-plane/types.ts';
import type { KernelArgv, KernelSupport, NetworkBackend, PlanAction } from '../backends/backend.ts';
import type { BgpTopology } from '../backends/bgp/bgp-backend.ts';
import { BirdRouting } from '../backends/bgp/bird-routing.ts';
import { intToIpv4 } from '../packet/addr.ts';
import { parseCidr } from '../netstack/ipv4/route-table.ts';
import { NetnsError, addNetns, delNetns, ipIn, ipJson, listNetns, netnsNames, readKernelPodNetns, run, sysctlIn, writeKernelPodNetns } from '../hostnet/netns.ts';
import { CNI_BRIDGE, isAlreadyGone, podCommands } from './commands.ts';
import { startKernelPodApps, stopKernelPodApps } from './pod-apps.ts';
import type { NodeRuntime, RuntimeIdentity, RuntimePod } from '../node-agent/runtime.ts';

const log = createLogger('podlab:kernel-node');

export interface KernelPod {
  key: string;
  uid: string;
  ip: string;
  netns: string;
  hostVeth: string;
}

export interface KernelRuntimeOptions {
  name: string;
  netns: string;
  ip: string;
  stateDir: string;
  backend: NetworkBackend;
  vxlanPort: number;
  vni: number;
  mtu: number;
  bgp: { port: number; holdTime: number; topology: BgpTopology; pools: string[] };
}

export class KernelRuntime implements NodeRuntime {
  readonly podMap = new Map<string, KernelPod>();
  private readonly kernel: KernelSupport;
  private podCIDR = '';

  constructor(private readonly o: KernelRuntimeOptions) {
    if (!o.backend.kernel) throw new NetnsError(`kernel nodes cannot run the ${o.backend.name} backend`);
    this.kernel = o.backend.kernel;
  }

  /** Without encapsulation pods get the full underlay MTU. */
  get podMtu(): number {
    return this.o.mtu - this.o.backend.mtuOverhead;
  }

  get gateway(): string {
    return intToIpv4((parseCidr(this.podCIDR).net + 1) >>> 0);
  }

  /** Runs one command, only ever against the lab's namespaces. */
  async exec(argv: KernelArgv): Promise<string> {
    const [cmd, ...args] = argv;
    const ns = args[1];
    if (args[0] !== '-n' || !ns?.startsWith('podlab-')) throw new NetnsError(`refusing a command outside the lab's namespaces: ${argv.join(' ')}`);
    return (await run(cmd, args)).stdout;
  }

  async identity(fetchNode: () => Promise<unknown>): Promise<RuntimeIdentity> {
    const ns = this.o.netns;
    const addrs = await ipJson<{ addr_info?: { local: string; prefixlen?: number }[] }[]>(ns, 'addr', 'show', 'dev', 'eth0').catch((e: Error) => {
      throw new NetnsError(`kernel node ${this.o.name}: namespace ${ns} has no eth0 (${e.message})`);
    });
    const mine = addrs.flatMap((a) => a.addr_info ?? []).find((i) => i.local === this.o.ip);
    if (!mine) throw new NetnsError(`kernel node ${this.o.name}: eth0 in ${ns} does not have ${this.o.ip}`);
    // flanneld: routing on, no reverse-path filtering (VXLAN replies arrive on flannel.1).
    await sysctlIn(ns, { 'net.ipv4.ip_forward': 1, 'net.ipv4.conf.all.rp_filter': 0, 'net.ipv4.conf.default.rp_filter': 0 });
    const links = await ipJson<{ ifname: string; address: string }[]>(ns, 'link', 'show');
    const dev = await this.kernel.setup(ns, { ip: this.o.ip, vni: this.o.vni, vxlanPort: this.o.vxlanPort, podMtu: this.podMtu, exists: (d) => links.some((l) => l.ifname === d) }, (c) => this.exec(c));
    await fetchNode();
    return { eth0Mac: links.find((l) => l.ifname === 'eth0')?.address, vtepMac: dev.vtepMac ?? '', underlayPrefixLen: mine.prefixlen ?? 24 };
  }

  async build(podCIDR: string): Promise<void> {
    this.podCIDR = podCIDR;
    const ns = this.o.netns;
    const { prefixLen } = parseCidr(podCIDR);
    await this.kernel.configure?.(ns, podCIDR, (c) => this.exec(c));
    const links = await ipJson<{ ifname: string }[]>(ns, 'link', 'show');
    if (!links.some((l) => l.ifname === CNI_BRIDGE)) await ipIn(ns, 'link', 'add', CNI_BRIDGE, 'type', 'bridge');
    // A bridge whose MAC was never set takes its lowest port's, and changes it when that pod goes: every
    // other pod's ARP entry for the gateway then points nowhere until it probes again (seconds of loss).
    // A set MAC stays put: the CNI bridge plugin sets the bridge's MAC to itself for this reason.
    await ipIn(ns, 'link', 'set', CNI_BRIDGE, 'address', deriveMac(0, `cni0:${this.o.name}`));
    await ipIn(ns, 'addr', 'replace', `${this.gateway}/${prefixLen}`, 'dev', CNI_BRIDGE);
    await ipIn(ns, 'link', 'set', CNI_BRIDGE, 'mtu', String(this.podMtu), 'up');
  }

  /** The plan as iproute2 commands; a failed step skips the rest of that peer's steps. */
  async applyPlan(actions: PlanAction[]): Promise<Set<string>> {
    const failed = new Set<string>();
    const done: string[] = [];
    for (const a of actions) {
      if (failed.has(a.node)) continue;
      const cmd = this.kernel.command(this.o.netns, a);
      if (!cmd) continue;
      try {
        await this.exec(cmd);
        done.push(describe(cmd));
      } catch (e) {
        if (a.op.startsWith('del-') && isAlreadyGone((e as Error).message)) continue;
        failed.add(a.node);
        log.error('plan step failed', { node: this.o.name, action: describe(cmd), error: (e as Error).message });
      }
    }
    if (done.length) log.info('plan applied', { node: this.o.name, actions: done });
    return failed;
  }

  bgpRouting(podCIDR: string): Promise<BirdRouting> {
    return Promise.resolve(new BirdRouting({ node: this.o.name, netns: this.o.netns, stateDir: this.o.stateDir, ip: this.o.ip, podCIDR, port: this.o.bgp.port, holdTime: this.o.bgp.holdTime, topology: this.o.bgp.topology, pools: this.o.bgp.pools }));
  }

  pod(key: string): RuntimePod | undefined {
    return this.podMap.get(key);
  }

  pods(): RuntimePod[] {
    return [...this.podMap.values()];
  }

  private recordPodNetns(add?: string, remove?: string): void {
    const names = readKernelPodNetns(this.o.stateDir, this.o.name).filter((n) => n !== remove);
    if (add) names.push(add);
    writeKernelPodNetns(this.o.stateDir, this.o.name, names);
  }

  async addPod(p: Pod, key: string, ip: string): Promise<void> {
    const namespace = p.metadata.namespace ?? 'default';
    const ns = netnsNames.kernelPod(this.o.netns, namespace, p.metadata.name);
    const hostVeth = `veth${createHash('sha256').update(p.metadata.uid).digest('hex').slice(0, 8)}`;
    const pod: KernelPod = { key, uid: p.metadata.uid, ip, netns: ns, hostVeth };
    if (!(await this.podNetnsReady(pod))) {
      this.recordPodNetns(ns);
      // A server left in an old namespace of this pod would answer nobody: it goes with the namespace.
      await stopKernelPodApps({ stateDir: this.o.stateDir, node: this.o.name }, { namespace, name: p.metadata.name });
      if ((await listNetns()).includes(ns)) await delNetns(ns);
      await addNetns(ns);
      const { prefixLen } = parseCidr(this.podCIDR);
      for (const c of podCommands(this.o.netns, ns, { hostVeth, ip, prefixLen, gateway: this.gateway, mtu: this.podMtu })) await this.exec(c);
      log.info('pod network ready', { pod: key, ip, netns: ns, veth: hostVeth });
    }
    this.podMap.set(key, pod);
    const failed = await startKernelPodApps({ stateDir: this.o.stateDir, node: this.o.name }, { namespace, name: p.metadata.name, netns: ns }, p.spec?.containers ?? []);
    for (const f of failed) log.error('container failed to start', { pod: key, error: f });
  }

  /** A pod namespace survives an agent restart: reuse it when eth0 already has the address. */
  private async podNetnsReady(pod: KernelPod): Promise<boolean> {
    try {
      const a = await ipJson<{ addr_info?: { local: string }[] }[]>(pod.netns, 'addr', 'show', 'dev', 'eth0');
      return a.some((x) => x.addr_info?.some((i) => i.local === pod.ip));
    } catch {
      return false;
    }
  }

  async removePod(key: string): Promise<void> {
    const pod = this.podMap.get(key);
    if (!pod) return;
    const [namespace, name] = pod.key.split('/');
    await stopKernelPodApps({ stateDir: this.o.stateDir, node: this.o.name }, { namespace, name });
    await delNetns(pod.netns);
    this.recordPodNetns(undefined, pod.netns);
    this.podMap.delete(pod.key);
    log.info('pod network removed', { pod: pod.key, netns: pod.netns });
  }

  /** The namespaces stay (a restarted agent adopts them; `podlab down` removes them). */
  async stop(): Promise<void> {}
}

function describe(cmd: KernelArgv): string {
  return cmd.join(' ').replace(/ -n \S+/, '');
}
