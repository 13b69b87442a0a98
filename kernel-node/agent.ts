/**
 * A kernel node: a network namespace configured exactly as flanneld and the
 * CNI bridge plugin configure a real Kubernetes node, kept in sync from the
 * apiserver by this small agent, so the Linux kernel itself is a peer of the
 * emulated nodes (same VXLAN on UDP 8472, same Node annotations).
 *
 * With `--backend host-gw` it is flanneld's host-gw instead (no flannel.1:
 * routes `<podCIDR> via <node IP> dev eth0`, pods at the full MTU), and with
 * `--backend bgp` calico-node: a real BIRD in the namespace (./bird.ts)
 * peering with podlab's speakers, its routes installed by BIRD itself
 * (`proto bird`). Emulated nodes meet it there through their raw-frame wire
 * (overlay/underlay-raw.ts).
 *
 * What it does, in the roles of a real node (vxlan):
 * - flanneld: creates `flannel.1` (kernel vxlan, VNI 1, dstport 8472,
 *   nolearning, MTU 1450), publishes its VtepMAC (read back from the kernel)
 *   in the Node's `flannel.alpha.coreos.com/backend-data`, puts
 *   `<podCIDR>.0/32` on it, sets ip_forward=1 and rp_filter=0; watches Nodes
 *   and applies overlay/flannel-plan.ts's plan with `ip`/`bridge -n <ns>`
 *   (kernel-node/commands.ts): one neighbour, one FDB entry, one route per
 *   remote node, removed when the node goes.
 * - the CNI bridge plugin + host-local IPAM: `cni0` with `<podCIDR>.1/24`;
 *   each Pod bound to this node gets a namespace `<node-ns>-<pod>` with a veth
 *   into cni0, an address from node-agent/ipam.ts (the same host-local files)
 *   and a default route via `.1`.
 * - kubelet: registers the Node, posts Ready, reports pods Running with their
 *   podIP, runs nginx/podlab-http containers as real servers (./pod-apps.ts); serves the CLI's control socket: `podlab exec` runs the real
 *   command (`ip netns exec <pod-ns> ping ...`), `podlab node` shows the real
 *   `ip route` / `ip neigh` / `bridge fdb`.
 *
 * It runs in the root namespace (it must: `ip netns add` from inside `ip netns
 * exec` would bind-mount the new namespace into a private mount namespace) and
 * talks to the apiserver over its Unix socket; every change it makes goes
 * through `ip -n <podlab-namespace>`, never to the root namespace. Pod
 * namespaces are recorded (before creation) in `nodes/<node>/netns.json`, so
 * `podlab down` removes them even after a crash.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createLogger } from '../common/log.ts';
import { deriveMac } from '../common/rng.ts';
import { CALICO_IPV4_ADDRESS, FLANNEL_BACKEND_DATA, FLANNEL_BACKEND_TYPE, FLANNEL_BACKEND_TYPE_VXLAN, FLANNEL_KUBE_SUBNET_MANAGER, FLANNEL_PUBLIC_IP, PODLAB_ETH0_MAC } from '../control-plane/annotations.ts';
import { CALICO_DEFAULT_ASN, parsePeerIP, type BgpConfiguration, type BgpPeer } from '../control-plane/calico.ts';
import { RR_LABEL, type BgpTopology } from '../node-agent/bgp-backend.ts';
import { BirdProcess, birdConfig, type BirdPeer } from './bird.ts';
import { startKernelPodApps, stopKernelPodApps } from './pod-apps.ts';
import { ApiClient } from '../control-plane/client.ts';
import { renewNodeLease } from '../control-plane/node-lease.ts';
import { Informer } from '../control-plane/informer.ts';
import type { Node, Pod } from '../control-plane/types.ts';
import { gatewayOf, leaseFromNode, planFlannel, type Backend, type Lease, type PlanAction } from '../overlay/flannel-plan.ts';
import { intToIpv4, ipv4ToInt } from '../packet/addr.ts';
import { ControlError, ControlServer, controlSocketPath, type CallContext } from '../node-agent/control-server.ts';
import { HostLocalIpam } from '../node-agent/ipam.ts';
import { parseCidr } from '../node-agent/route-table.ts';
import { NetnsError, delNetns, ipIn, ipJson, listNetns, netnsNames, readKernelPodNetns, run, sysctlIn, writeKernelPodNetns, addNetns } from '../cli/netns.ts';
import { CNI_BRIDGE, KERNEL_POD_COMMANDS, VTEP_DEV, isAlreadyGone, nodeViewCommand, planCommand, podCommands, vtepCommands, type Argv } from './commands.ts';
import { runningPodStatus } from '../node-agent/pod-status.ts';

const log = createLogger('podlab:kernel-node');

export interface KernelNodeOptions {
  name: string;
  /** The node's network namespace (created by the lab, with eth0 on the underlay). */
  netns: string;
  /** eth0's address: InternalIP, Flannel's public-ip, the VTEP's local address. */
  ip: string;
  apiUrl: string;
  stateDir: string;
  vxlanPort?: number;
  vni?: number;
  /** Underlay MTU; with vxlan flannel.1, cni0 and pods get 50 less. */
  mtu?: number;
  /**
   * vxlan: flanneld's kernel VTEP; host-gw: flanneld's host-gw routes via the
   * peers' IPs; bgp: a real BIRD in the namespace peering with podlab's speakers.
   */
  backend?: Backend;
  /** bgp: the port every node's BGP listens on, the hold time, the topology. */
  bgpPort?: number;
  bgpHoldTime?: number;
  bgpTopology?: BgpTopology;
  heartbeatMs?: number;
}

interface KernelPod {
  key: string;
  uid: string;
  ip: string;
  netns: string;
  hostVeth: string;
}

const VXLAN_OVERHEAD = 50;

export class KernelNodeAgent {
  readonly name: string;
  podCIDR = '';
  vtepMac = '';
  private readonly o: Required<KernelNodeOptions>;
  private readonly api: ApiClient;
  private nodeInformer?: Informer<Node>;
  private podInformer?: Informer<Pod>;
  private control?: ControlServer;
  private ipam!: HostLocalIpam;
  private readonly programmed = new Map<string, Lease>();
  private readonly pods = new Map<string, KernelPod>();
  private queue: Promise<void> = Promise.resolve();
  private timers: NodeJS.Timeout[] = [];
  private bird?: BirdProcess;
  private underlayPrefixLen = 24;
  private bgpConfigInformer?: Informer<BgpConfiguration>;
  private bgpPeerInformer?: Informer<BgpPeer>;
  private stopped = false;

  constructor(opts: KernelNodeOptions) {
    this.o = { vxlanPort: 8472, vni: 1, mtu: 1500, heartbeatMs: 10_000, backend: 'vxlan', bgpPort: 179, bgpHoldTime: 9, bgpTopology: 'full-mesh', ...opts };
    this.name = opts.name;
    this.api = new ApiClient(opts.apiUrl);
  }

  /** Without encapsulation pods get the full underlay MTU. */
  get podMtu(): number {
    return this.o.backend === 'vxlan' ? this.o.mtu - VXLAN_OVERHEAD : this.o.mtu;
  }

  /** This node's control socket (see controlSocketPath in control-server.ts). */
  get controlSocketPath(): string {
    return controlSocketPath(this.o.stateDir, this.name);
  }

  async start(): Promise<void> {
    fs.mkdirSync(path.join(this.o.stateDir, 'nodes', this.name), { recursive: true, mode: 0o700 });
    const ns = this.o.netns;
    const addrs = await ipJson<{ addr_info?: { local: string; prefixlen?: number }[] }[]>(ns, 'addr', 'show', 'dev', 'eth0').catch((e: Error) => {
      throw new NetnsError(`kernel node ${this.name}: namespace ${ns} has no eth0 (${e.message})`);
    });
    const mine = addrs.flatMap((a) => a.addr_info ?? []).find((i) => i.local === this.o.ip);
    if (!mine) throw new NetnsError(`kernel node ${this.name}: eth0 in ${ns} does not have ${this.o.ip}`);
    this.underlayPrefixLen = mine.prefixlen ?? 24;

    // flanneld: routing on, no reverse-path filtering (VXLAN replies arrive on flannel.1).
    await sysctlIn(ns, { 'net.ipv4.ip_forward': 1, 'net.ipv4.conf.all.rp_filter': 0, 'net.ipv4.conf.default.rp_filter': 0 });
    const links = await ipJson<{ ifname: string; address: string }[]>(ns, 'link', 'show');
    const vxlan = this.o.backend === 'vxlan';
    if (vxlan) {
      if (!links.some((l) => l.ifname === VTEP_DEV)) {
        for (const c of vtepCommands(ns, { vni: this.o.vni, localIp: this.o.ip, port: this.o.vxlanPort, mtu: this.podMtu })) await this.exec(c);
      }
      const [vtep] = await ipJson<{ address: string }[]>(ns, 'link', 'show', VTEP_DEV);
      this.vtepMac = vtep.address;
    }
    const eth0Mac = links.find((l) => l.ifname === 'eth0')?.address;

    const node = await this.register(eth0Mac);
    this.podCIDR = node.spec!.podCIDR!;
    const { prefixLen } = parseCidr(this.podCIDR);
    if (vxlan) await ipIn(ns, 'addr', 'replace', `${gatewayOf(this.podCIDR)}/32`, 'dev', VTEP_DEV);
    if (!links.some((l) => l.ifname === CNI_BRIDGE)) await ipIn(ns, 'link', 'add', CNI_BRIDGE, 'type', 'bridge');
    // A bridge whose MAC was never set takes its lowest port's, and changes it when that pod goes: every
    // other pod's ARP entry for the gateway then points nowhere until it probes again (seconds of loss).
    // A set MAC stays put: the CNI bridge plugin sets the bridge's MAC to itself for this reason.
    await ipIn(ns, 'link', 'set', CNI_BRIDGE, 'address', deriveMac(0, `cni0:${this.name}`));
    await ipIn(ns, 'addr', 'replace', `${this.gateway}/${prefixLen}`, 'dev', CNI_BRIDGE);
    await ipIn(ns, 'link', 'set', CNI_BRIDGE, 'mtu', String(this.podMtu), 'up');
    this.ipam = new HostLocalIpam(this.o.stateDir, this.name, this.podCIDR);

    this.nodeInformer = new Informer<Node>(this.api, 'nodes');
    const resync = () => this.enqueue(() => this.reconcilePeers());
    this.nodeInformer.on('add', resync).on('update', resync).on('delete', resync);
    await this.nodeInformer.start();
    if (this.o.backend === 'bgp') {
      this.bird = new BirdProcess({ stateDir: this.o.stateDir, node: this.name, netns: ns });
      this.bgpConfigInformer = new Informer<BgpConfiguration>(this.api, 'bgpconfigurations');
      this.bgpPeerInformer = new Informer<BgpPeer>(this.api, 'bgppeers');
      for (const inf of [this.bgpConfigInformer, this.bgpPeerInformer] as Informer[]) inf.on('add', resync).on('update', resync).on('delete', resync);
      await Promise.all([this.bgpConfigInformer.start(), this.bgpPeerInformer.start()]);
    }
    resync();

    this.podInformer = new Informer<Pod>(this.api, 'pods', { fieldSelector: `spec.nodeName=${this.name}` });
    this.podInformer.on('add', (p: Pod) => this.enqueue(() => this.syncPod(p)));
    this.podInformer.on('update', (_o: Pod, p: Pod) => this.enqueue(() => this.syncPod(p)));
    this.podInformer.on('delete', (p: Pod) => this.enqueue(() => this.removePod(p)));
    await this.podInformer.start();
    for (const p of this.podInformer.list()) this.enqueue(() => this.syncPod(p));
    // Like flanneld's periodic lease resync: re-apply the plan if someone changed the tables.
    this.timers.push(setInterval(resync, 30_000));
    await this.queue;

    this.control = new ControlServer(this.controlSocketPath);
    this.registerHandlers(this.control);
    await this.control.listen();
    await this.setReady();
    await renewNodeLease(this.api, this.name).catch(() => {});
    this.timers.push(setInterval(() => void Promise.all([this.setReady(), renewNodeLease(this.api, this.name)]).catch(() => {}), this.o.heartbeatMs));
    for (const t of this.timers) t.unref();
    log.info('kernel node ready', { node: this.name, netns: ns, ip: this.o.ip, podCIDR: this.podCIDR, vtepMac: this.vtepMac });
  }

  get gateway(): string {
    return intToIpv4((parseCidr(this.podCIDR).net + 1) >>> 0);
  }

  /** Changes are applied one at a time, in order (plans, pods, IPAM). */
  private enqueue(fn: () => Promise<void>): void {
    this.queue = this.queue.then(fn).catch((e) => log.error('sync failed', { node: this.name, error: String(e) }));
  }

  private async exec(argv: Argv): Promise<string> {
    const [cmd, ...args] = argv;
    const ns = args[1];
    if (args[0] !== '-n' || !ns?.startsWith('podlab-')) throw new NetnsError(`refusing a command outside the lab's namespaces: ${argv.join(' ')}`);
    return (await run(cmd, args)).stdout;
  }

  // ------------------------------------------------------------ Node (kubelet + flanneld)

  private async register(eth0Mac: string | undefined): Promise<Node> {
    const annotations: Record<string, string> = {
      [FLANNEL_PUBLIC_IP]: this.o.ip,
      [FLANNEL_KUBE_SUBNET_MANAGER]: 'true',
      'podlab.io/node-kind': 'kernel',
      ...(eth0Mac ? { [PODLAB_ETH0_MAC]: eth0Mac } : {}),
      // The same annotations as an emulated node of the backend (node-agent/agent.ts register).
      ...(this.o.backend === 'vxlan'
        ? { [FLANNEL_BACKEND_TYPE]: FLANNEL_BACKEND_TYPE_VXLAN, [FLANNEL_BACKEND_DATA]: JSON.stringify({ VNI: this.o.vni, VtepMAC: this.vtepMac }) }
        : this.o.backend === 'host-gw'
          ? { [FLANNEL_BACKEND_TYPE]: 'host-gw', [FLANNEL_BACKEND_DATA]: 'null' }
          : { [CALICO_IPV4_ADDRESS]: `${this.o.ip}/${this.underlayPrefixLen}` }),
    };
    const addresses = [
      { type: 'InternalIP' as const, address: this.o.ip },
      { type: 'Hostname' as const, address: this.name },
    ];
    // What `kubectl get nodes -o wide` shows: this node is the host's own kernel.
    const nodeInfo = { osImage: `Linux kernel (netns ${this.o.netns})`, kernelVersion: os.release(), containerRuntimeVersion: 'netns://ip-netns', operatingSystem: 'linux', architecture: os.arch() };
    const existing = await this.api.get<Node>('nodes', this.name);
    let node: Node;
    if (existing) {
      node = await this.api.patch<Node>('nodes', this.name, { metadata: { annotations, labels: { 'kubernetes.io/os': 'linux', 'podlab.io/kernel-node': 'true' } } });
      await this.api.patchStatus<Node>('nodes', this.name, { status: { addresses, nodeInfo } });
    } else {
      node = await this.api.create<Node>('nodes', {
        apiVersion: 'v1',
        kind: 'Node',
        metadata: { name: this.name, labels: { 'kubernetes.io/hostname': this.name, 'kubernetes.io/os': 'linux', 'podlab.io/kernel-node': 'true' }, annotations },
        spec: {},
        status: { addresses, conditions: [], nodeInfo },
      } as unknown as Node);
    }
    if (!node.spec?.podCIDR) throw new Error(`apiserver gave kernel node ${this.name} no podCIDR`);
    return node;
  }

  private async setReady(): Promise<void> {
    const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    await this.api.patchStatus<Node>('nodes', this.name, {
      status: {
        conditions: [{ type: 'Ready', status: 'True', lastHeartbeatTime: now, lastTransitionTime: now, reason: 'KubeletReady', message: 'podlab kernel node agent is posting ready status' }],
      },
    });
  }

  /** flanneld's loop body: compute the plan from the leases, then apply it with iproute2 (bgp: BIRD's config). */
  private async reconcilePeers(): Promise<void> {
    if (!this.nodeInformer || this.stopped) return;
    if (this.o.backend === 'bgp') return this.reconcileBird();
    const leases: Lease[] = [];
    for (const n of this.nodeInformer.list()) {
      const l = leaseFromNode(n);
      if (typeof l !== 'string') leases.push(l);
    }
    const self = { node: this.name, vni: this.o.vni, backend: this.o.backend };
    // The kernel resolves its next hops by ARP: the permanent eth0 neighbours are for podlab's ARP-less wire only.
    const actions = planFlannel(leases, this.programmed, self).filter((a) => !((a.op === 'add-neigh' || a.op === 'del-neigh') && a.dev === 'eth0'));
    const failed = new Set<string>();
    for (const a of actions) {
      if (failed.has(a.node)) continue;
      try {
        await this.exec(planCommand(this.o.netns, a));
      } catch (e) {
        if (a.op.startsWith('del-') && isAlreadyGone((e as Error).message)) continue;
        failed.add(a.node);
        log.error('plan step failed', { node: this.name, action: describe(a), error: (e as Error).message });
      }
    }
    for (const l of leases) {
      if (l.node === this.name || l.backend !== this.o.backend || (l.backend === 'vxlan' && l.vni !== this.o.vni)) continue;
      if (failed.has(l.node)) this.programmed.delete(l.node);
      else this.programmed.set(l.node, l);
    }
    for (const name of [...this.programmed.keys()]) if (!leases.some((l) => l.node === name)) this.programmed.delete(name);
    if (actions.length) log.info('flannel plan applied', { actions: actions.map(describe) });
  }

  /** calico-node's confd + BIRD: the peers from the Nodes (and BGPPeers), rendered and (re)loaded. */
  private async reconcileBird(): Promise<void> {
    if (!this.bird) return;
    const config = this.bgpConfigInformer?.list().find((c) => c.metadata.name === 'default');
    const asn = config?.spec?.asNumber ?? CALICO_DEFAULT_ASN;
    const peers: BirdPeer[] = [];
    const rrOnly = this.o.bgpTopology === 'route-reflector';
    if (rrOnly || config?.spec?.nodeToNodeMeshEnabled !== false) {
      for (const n of this.nodeInformer!.list()) {
        const ip = n.metadata.annotations?.[CALICO_IPV4_ADDRESS]?.split('/')[0];
        if (n.metadata.name === this.name || !ip) continue;
        // A kernel node is a route reflector client: it peers with the reflectors only.
        if (rrOnly && n.metadata.labels?.[RR_LABEL] !== 'true') continue;
        peers.push({ name: n.metadata.name, ip, asn, port: this.o.bgpPort });
      }
    }
    for (const p of this.bgpPeerInformer?.list() ?? []) {
      if (p.spec?.node && p.spec.node !== this.name) continue;
      const addr = parsePeerIP(p.spec?.peerIP ?? '');
      if (addr && !peers.some((x) => x.ip === addr.ip)) peers.push({ name: `BGPPeer ${p.metadata.name}`, ip: addr.ip, asn: p.spec!.asNumber, port: addr.port ?? 179 });
    }
    const text = birdConfig({ node: this.name, routerId: this.o.ip, asn, podCIDR: this.podCIDR, port: this.o.bgpPort, holdTime: this.o.bgpHoldTime, peers });
    await this.bird.apply(text);
  }

  // ------------------------------------------------------------ pods (CNI bridge + host-local)

  private podKey(p: Pod): string {
    return `${p.metadata.namespace ?? 'default'}/${p.metadata.name}`;
  }

  private inPodCidr(ip: string): boolean {
    const { net, prefixLen } = parseCidr(this.podCIDR);
    const mask = prefixLen === 0 ? 0 : (0xffffffff << (32 - prefixLen)) >>> 0;
    return ((ipv4ToInt(ip) & mask) >>> 0) === net;
  }

  private recordPodNetns(add?: string, remove?: string): void {
    const names = readKernelPodNetns(this.o.stateDir, this.name).filter((n) => n !== remove);
    if (add) names.push(add);
    writeKernelPodNetns(this.o.stateDir, this.name, names);
  }

  private async syncPod(p: Pod): Promise<void> {
    if (this.stopped || p.metadata.deletionTimestamp) return;
    const key = this.podKey(p);
    const have = this.pods.get(key);
    if (have && have.uid !== p.metadata.uid) await this.teardown(have);
    const ns = netnsNames.kernelPod(this.o.netns, p.metadata.namespace ?? 'default', p.metadata.name);
    const ip = this.ipam.allocate(p.metadata.uid, p.status?.podIP && this.inPodCidr(p.status.podIP) ? p.status.podIP : undefined);
    const hostVeth = `veth${createHash('sha256').update(p.metadata.uid).digest('hex').slice(0, 8)}`;
    const pod: KernelPod = { key, uid: p.metadata.uid, ip, netns: ns, hostVeth };
    if (!(await this.podNetnsReady(pod))) {
      this.recordPodNetns(ns);
      // A server left in an old namespace of this pod would answer nobody: it goes with the namespace.
      await stopKernelPodApps({ stateDir: this.o.stateDir, node: this.name }, { namespace: p.metadata.namespace ?? 'default', name: p.metadata.name });
      if ((await listNetns()).includes(ns)) await delNetns(ns);
      await addNetns(ns);
      const { prefixLen } = parseCidr(this.podCIDR);
      for (const c of podCommands(this.o.netns, ns, { hostVeth, ip, prefixLen, gateway: this.gateway, mtu: this.podMtu })) await this.exec(c);
      log.info('pod network ready', { pod: key, ip, netns: ns, veth: hostVeth });
    }
    this.pods.set(key, pod);
    const failed = await startKernelPodApps({ stateDir: this.o.stateDir, node: this.name }, { namespace: p.metadata.namespace ?? 'default', name: p.metadata.name, netns: ns }, p.spec?.containers ?? []);
    for (const f of failed) log.error('container failed to start', { pod: key, error: f });
    if (p.status?.phase !== 'Running' || p.status?.podIP !== ip) await this.reportRunning(p, ip);
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

  private async reportRunning(p: Pod, ip: string): Promise<void> {
    await this.api.patchStatus<Pod>('pods', p.metadata.name, runningPodStatus(p, ip, this.o.ip), p.metadata.namespace);
  }


  private async removePod(p: Pod): Promise<void> {
    const have = this.pods.get(this.podKey(p));
    if (have && have.uid === p.metadata.uid) await this.teardown(have);
    this.ipam.release(p.metadata.uid);
  }

  private async teardown(pod: KernelPod): Promise<void> {
    const [namespace, name] = pod.key.split('/');
    await stopKernelPodApps({ stateDir: this.o.stateDir, node: this.name }, { namespace, name });
    await delNetns(pod.netns);
    this.recordPodNetns(undefined, pod.netns);
    this.ipam.release(pod.uid);
    this.pods.delete(pod.key);
    log.info('pod network removed', { pod: pod.key, netns: pod.netns });
  }

  // ------------------------------------------------------------ control channel (the CLI)

  private findPod(ref: string): KernelPod {
    const key = ref.includes('/') ? ref : `default/${ref}`;
    const pod = this.pods.get(key);
    if (!pod) throw new ControlError(`pod ${key} is not on node ${this.name}`);
    return pod;
  }

  private registerHandlers(c: ControlServer): void {
    const kernelOnly = (what: string, hint: string) => async () => {
      throw new ControlError(`${this.name} is a kernel node: ${what} is not available through podlab; ${hint}`);
    };
    c.handle('info', async () => ({
      name: this.name,
      kind: 'kernel',
      netns: this.o.netns,
      ip: this.o.ip,
      podCIDR: this.podCIDR,
      vtepMac: this.vtepMac,
      pid: process.pid,
      pods: [...this.pods.values()].map((p) => ({ key: p.key, ip: p.ip, veth: p.hostVeth, netns: p.netns })),
    }));
    c.handle('node.cmd', async (params) => {
      const argv = (params as { argv: string[] }).argv;
      if (argv[0] === 'bgp') {
        if (!this.bird) throw new ControlError(`${this.name} runs the ${this.o.backend} backend: no BGP (start the lab with --backend bgp)`);
        if (argv[1] === 'summary' || argv[1] === 'protocols' || argv[1] === undefined) return { stdout: await this.bird.summary() };
        if (argv[1] === 'routes' || argv[1] === 'route') return { stdout: await this.bird.routes() };
        throw new ControlError('usage: bgp summary | bgp routes (birdc show protocols | show route)');
      }
      const cmd = nodeViewCommand(this.o.netns, argv);
      if (!cmd) throw new ControlError(`unsupported node command '${argv.join(' ')}': try ip route | ip neigh | ip link | ip addr | bridge fdb${this.bird ? ' | bgp summary | bgp routes' : ''}`);
      return { stdout: await this.exec(cmd) };
    });
    c.handle('stats', async () => this.stats());
    c.handle('exec', async (params, ctx) => this.execInPod(params as { pod: string; argv: string[]; stdin?: boolean }, ctx));
    // A trace through a kernel node shows the emulated nodes' hops; the kernel reports none.
    c.handle('trace.start', async () => ({ node: this.name }));
    c.handle('trace.collect', async () => []);
    c.handle('trace.probe', kernelOnly('trace from a kernel pod', `run: podlab exec POD -- tracepath -n DEST (or ip netns exec <pod-ns> ...)`));
    c.handle('capture.list', kernelOnly('capture', `run: ip netns exec ${this.o.netns} tshark -i eth0 -d udp.port==${this.o.vxlanPort},vxlan (or -i flannel.1, cni0)`));
    c.handle('capture', kernelOnly('capture', `run: ip netns exec ${this.o.netns} tshark -i eth0 -d udp.port==${this.o.vxlanPort},vxlan (or -i flannel.1, cni0)`));
    c.handle('impair.set', kernelOnly('impair', 'impair the emulated side (podlab impair NODE --peer ' + this.name + ' ...)'));
    c.handle('impair.clear', kernelOnly('impair', 'nothing to clear'));
    c.handle('stack.mtu', async (params) => {
      const { dev, mtu } = params as { dev: string; mtu: number };
      if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) throw new ControlError(`mtu ${mtu}: must be 68-65535`);
      await ipIn(this.o.netns, 'link', 'set', 'dev', dev, 'mtu', String(mtu)).catch((e: Error) => {
        throw new ControlError(e.message);
      });
      return { dev, mtu };
    });
  }

  /** Counters from the kernel (`ip -s -j link`), in the shape `podlab node NODE stats` prints. */
  private async stats(): Promise<Record<string, unknown>> {
    type L = { ifname: string; stats64?: { rx: { bytes: number; packets: number; dropped: number; errors: number }; tx: { bytes: number; packets: number; dropped: number; errors: number } } };
    const links = await ipJson<L[]>(this.o.netns, '-s', 'link', 'show');
    const interfaces: Record<string, unknown> = {};
    for (const l of links) {
      const s = l.stats64;
      if (!s) continue;
      const drops: Record<string, number> = {};
      if (s.rx.dropped) drops['rx-dropped'] = s.rx.dropped;
      if (s.tx.dropped) drops['tx-dropped'] = s.tx.dropped;
      if (s.rx.errors) drops['rx-errors'] = s.rx.errors;
      if (s.tx.errors) drops['tx-errors'] = s.tx.errors;
      interfaces[l.ifname] = { rxPackets: s.rx.packets, rxBytes: s.rx.bytes, txPackets: s.tx.packets, txBytes: s.tx.bytes, drops };
    }
    return { node: this.name, kind: 'kernel', interfaces, ip: { drops: {} }, impairments: {}, pods: {} };
  }

  /** `podlab exec` on a kernel pod: the real program, in the pod's namespace. */
  private async execInPod(params: { pod: string; argv: string[]; stdin?: boolean }, ctx: CallContext): Promise<{ exitCode: number }> {
    const pod = this.findPod(params.pod);
    const [prog, ...rest] = params.argv;
    if (prog === 'hostname') {
      ctx.stdout(`${pod.key.split('/')[1]}\n`);
      return { exitCode: 0 };
    }
    if (!prog || !(KERNEL_POD_COMMANDS as readonly string[]).includes(prog)) {
      ctx.stderr(`exec: "${prog ?? ''}": not available in kernel pods (podlab runs these for real in the pod's namespace: ${KERNEL_POD_COMMANDS.join(', ')}, hostname)\n`);
      return { exitCode: 127 };
    }
    const child = spawn('ip', ['netns', 'exec', pod.netns, prog, ...rest], { stdio: ['pipe', 'pipe', 'pipe'] });
    child.stdout.setEncoding('utf8').on('data', (s: string) => ctx.stdout(s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => ctx.stderr(s));
    child.stdin.on('error', () => {});
    // Ctrl-C in the CLI: SIGINT, so ping prints its summary as it would in a terminal.
    const onAbort = () => child.kill('SIGINT');
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    if (params.stdin && ctx.stdin) {
      void (async () => {
        for await (const chunk of ctx.stdin!) if (!child.stdin.destroyed) child.stdin.write(chunk);
        child.stdin.end();
      })().catch(() => child.stdin.end());
    } else child.stdin.end();
    return new Promise((resolve) => {
      child.on('error', (e) => {
        ctx.stderr(`exec: ${prog}: ${e.message}\n`);
        resolve({ exitCode: 127 });
      });
      child.on('close', (code, signal) => {
        ctx.signal.removeEventListener('abort', onAbort);
        resolve({ exitCode: code ?? (signal === 'SIGINT' ? 130 : 1) });
      });
    });
  }

  /** Stops serving; the namespaces stay (a restarted agent adopts them; `podlab down` removes them). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    await this.nodeInformer?.stop();
    await this.podInformer?.stop();
    this.bgpConfigInformer?.stop();
    this.bgpPeerInformer?.stop();
    await this.queue.catch(() => {});
    // calico-node's BIRD stops with it (its peers withdraw our block); a restarted agent starts it again.
    await this.bird?.stop();
    await this.control?.close();
  }
}

function describe(a: PlanAction): string {
  return planCommand('NS', a).join(' ').replace(' -n NS', '');
}
