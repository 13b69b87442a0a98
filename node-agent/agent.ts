/**
 * One node of the lab: what kubelet, the CNI plugins and flanneld do on a real
 * node, in one process.
 *
 * - Registers its Node (like kubelet) with an InternalIP and Flannel's
 *   annotations (backend-data with VNI and VtepMAC, public-ip); the apiserver's
 *   node IPAM gives it a podCIDR. A restarted agent finds its Node and keeps the
 *   podCIDR and VtepMAC, as flanneld keeps its lease, so peers need not change.
 * - Builds the node's namespace: eth0 on the underlay (the node IP), the cni0
 *   bridge (`<podCIDR>.1/24`), flannel.1 (`<podCIDR>.0/32`, MTU 1450).
 * - Watches Nodes and programs one neighbour + FDB entry + route per remote
 *   node (overlay/flannel-plan.ts); watches its Pods and gives each a network
 *   namespace with a veth into cni0 and an address from host-local IPAM.
 * - Serves the CLI on a Unix socket: exec in pods, iproute2 views, counters,
 *   impairments.
 */
import fs from 'node:fs';
import path from 'node:path';
import { systemClock, type Clock } from '../common/clock.ts';
import { createLogger } from '../common/log.ts';
import { SeededRng, deriveMac, seedFrom } from '../common/rng.ts';
import {
  FLANNEL_BACKEND_DATA,
  FLANNEL_BACKEND_TYPE,
  FLANNEL_BACKEND_TYPE_VXLAN,
  FLANNEL_KUBE_SUBNET_MANAGER,
  FLANNEL_PUBLIC_IP,
  CALICO_IPV4_ADDRESS,
  PODLAB_ETH0_MAC,
  parseFlannelBackendData,
} from '../control-plane/annotations.ts';
import { renewNodeLease } from '../control-plane/node-lease.ts';
import { ApiClient } from '../control-plane/client.ts';
import { Informer } from '../control-plane/informer.ts';
import type { Node, Pod } from '../control-plane/types.ts';
import { ipv4ToInt } from '../packet/addr.ts';
import { leaseFromNode, planFlannel, type Backend, type Lease } from '../overlay/flannel-plan.ts';
import { validateImpairment, type ImpairmentSpec } from '../overlay/impairment.ts';
import { ControlError, ControlServer, controlSocketPath, type CallContext } from './control-server.ts';
import { podCommands, matchIpObject } from './exec/index.ts';
import { UsageError } from './exec/types.ts';
import { captureTargets, runCapture } from './capture/session.ts';
import { FilterError } from './capture/filter.ts';
import { sendProbe } from './trace-probe.ts';
import { tracer, type TraceFilter } from './trace.ts';
import { HostLocalIpam, IpamError } from './ipam.ts';
import { postEvent } from '../control-plane/event-client.ts';
import { formatBridgeFdb, formatIpAddr, formatIpLink, formatIpNeigh, formatIpRoute } from './iproute2.ts';
import { DEFAULT_WIRE_PORT, NodeDataPlane } from './dataplane.ts';
import { RawWire, RawWireError, claimFilter, pcapImmediateModeLikely } from '../overlay/underlay-raw.ts';
import { DEFAULT_NODE_PORT_RANGE } from '../control-plane/service-allocator.ts';
import { CalicoBgp, type BgpTopology } from './bgp-backend.ts';
import { KubeProxy } from './kube-proxy.ts';
import { runningPodStatus } from './pod-status.ts';
import type { IpvsSchedulerName, ProxyMode } from '../service-proxy/index.ts';
import type { BgpConfiguration, BgpPeer } from '../control-plane/calico.ts';
import type { NetDevice } from './netdev.ts';
import type { PodNet } from './pod-net.ts';
import { containerStateOverride, startPodApps, stopPodApps } from './apps/index.ts';
import { EMPTY_STDIN } from './stdin-queue.ts';
import { parseCidr } from './route-table.ts';

export interface AgentOptions {
  name: string;
  /** The node's underlay address (`InternalIP`, Flannel's public-ip). */
  ip: string;
  /** The underlay network the node sits on, e.g. 127.0.0.0/24 in local mode. */
  underlayCidr: string;
  apiUrl: string;
  stateDir: string;
  clusterCidr?: string;
  vxlanPort?: number;
  vni?: number;
  /** vxlan (Flannel VXLAN), host-gw (Flannel host-gw) or bgp (Calico-style). */
  backend?: Backend;
  /** UDP port of the bare-IPv4 wire (host-gw, bgp in local mode). */
  wirePort?: number;
  /** host-gw, bgp: 'udp' (the bare-IPv4 wire, any mode) or 'raw' (real frames on eth0, root modes). */
  wire?: 'udp' | 'raw';
  /** BGP (backend bgp): listen/peer port, hold time (s), topology. */
  bgpPort?: number;
  bgpHoldTime?: number;
  bgpTopology?: BgpTopology;
  /** kube-proxy's mode, and the IPVS scheduler in ipvs mode. */
  proxyMode?: ProxyMode;
  ipvsScheduler?: IpvsSchedulerName;
  seed?: number;
  /** Underlay MTU; flannel.1 and the pods get this minus 50 (VXLAN's overhead). */
  mtu?: number;
  clock?: Clock;
  heartbeatMs?: number;
}

const log = createLogger('podlab:agent');

export class NodeAgent {
  readonly name: string;
  readonly clock: Clock;
  readonly rng: SeededRng;
  /** Set once registered: the node's namespace, underlay and pods. */
  dp!: NodeDataPlane;
  podCIDR = '';
  vtepMac = '';
  private readonly opts: Required<Omit<AgentOptions, 'clock'>>;
  private readonly api: ApiClient;
  private nodeInformer?: Informer<Node>;
  private podInformer?: Informer<Pod>;
  private control?: ControlServer;
  private ipam!: HostLocalIpam;
  private readonly programmed = new Map<string, Lease>();
  private readonly peersByName = new Map<string, string>();
  private heartbeat?: NodeJS.Timeout;
  private bgp?: CalicoBgp;
  private bgpConfigInformer?: Informer<BgpConfiguration>;
  private bgpPeerInformer?: Informer<BgpPeer>;
  private bgpQueue: Promise<void> = Promise.resolve();
  private kubeProxy?: KubeProxy;
  private serviceInformer?: Informer;
  private sliceInformer?: Informer;
  private stopped = false;
  private rawWire?: RawWire;
  private eth0Mac = '';
  private execCount = 0;
  private podQueue: Promise<void> = Promise.resolve();

  constructor(opts: AgentOptions) {
    this.opts = {
      clusterCidr: '10.244.0.0/16',
      vxlanPort: 8472,
      vni: 1,
      backend: 'vxlan',
      wirePort: DEFAULT_WIRE_PORT,
      wire: 'udp',
      bgpPort: 179,
      bgpHoldTime: 9,
      bgpTopology: 'full-mesh',
      proxyMode: 'iptables',
      ipvsScheduler: 'rr',
      seed: 1,
      mtu: 1500,
      heartbeatMs: 10_000,
      ...opts,
    };
    this.name = opts.name;
    this.clock = opts.clock ?? systemClock;
    this.rng = new SeededRng(seedFrom(this.opts.seed, `node:${opts.name}`));
    this.api = new ApiClient(opts.apiUrl);
  }

  /** This node's control socket (see controlSocketPath in control-server.ts). */
  get controlSocketPath(): string {
    return controlSocketPath(this.opts.stateDir, this.name);
  }

  /** Registers, builds the data plane, starts watching and serving. */
  async start(): Promise<void> {
    fs.mkdirSync(path.join(this.opts.stateDir, 'nodes', this.name), { recursive: true, mode: 0o700 });
    this.eth0Mac = deriveMac(this.opts.seed, `eth0:${this.name}`);
    if (this.opts.wire === 'raw' && this.opts.backend !== 'vxlan') await this.startRawWire();
    const node = await this.register();
    this.podCIDR = node.spec!.podCIDR!;
    tracer.node = this.name;
    this.dp = new NodeDataPlane({
      name: this.name,
      ip: this.opts.ip,
      underlayCidr: this.opts.underlayCidr,
      podCIDR: this.podCIDR,
      vtepMac: this.vtepMac,
      clusterCidr: this.opts.clusterCidr,
      vxlanPort: this.opts.vxlanPort,
      vni: this.opts.vni,
      backend: this.opts.backend,
      wirePort: this.opts.wirePort,
      rawWire: this.rawWire,
      eth0Mac: this.eth0Mac,
      seed: this.opts.seed,
      mtu: this.opts.mtu,
      clock: this.clock,
      rng: this.rng,
    });
    await this.dp.start();
    this.ipam = new HostLocalIpam(this.opts.stateDir, this.name, this.podCIDR);

    this.nodeInformer = new Informer<Node>(this.api, 'nodes');
    const resync = () => this.reconcilePeers();
    this.nodeInformer.on('add', resync);
    this.nodeInformer.on('update', resync);
    this.nodeInformer.on('delete', resync);
    this.nodeInformer.on('status', (s: unknown) => log.debug('node watch', { status: s }));
    await this.nodeInformer.start();
    this.reconcilePeers();
    if (this.opts.backend === 'bgp') await this.startBgp();
    await this.startKubeProxy();

    this.podInformer = new Informer<Pod>(this.api, 'pods', { fieldSelector: `spec.nodeName=${this.name}` });
    this.podInformer.on('add', (p: Pod) => this.enqueuePod(p));
    this.podInformer.on('update', (_o: Pod, p: Pod) => this.enqueuePod(p));
    this.podInformer.on('delete', (p: Pod) => this.enqueuePodDelete(p));
    await this.podInformer.start();
    for (const p of this.podInformer.list()) this.enqueuePod(p);
    await this.podQueue;
    this.releaseOrphanAddresses();

    this.control = new ControlServer(this.controlSocketPath);
    this.registerHandlers(this.control);
    await this.control.listen();

    await this.setReady(true);
    await renewNodeLease(this.api, this.name).catch(() => {});
    this.heartbeat = setInterval(() => void Promise.all([this.setReady(true), renewNodeLease(this.api, this.name)]).catch(() => {}), this.opts.heartbeatMs);
    this.heartbeat.unref();
    log.info('node ready', { node: this.name, ip: this.opts.ip, podCIDR: this.podCIDR, vtepMac: this.vtepMac });
  }

  /**
   * Real frames on the real eth0 (root modes): the emulated eth0 takes the
   * real one's MAC, so peers (kernel or emulated) address it as they would
   * any node, and the namespace's kernel keeps only its own traffic.
   */
  private async startRawWire(): Promise<void> {
    const dev = 'eth0';
    let mac: string;
    try {
      mac = fs.readFileSync(`/sys/class/net/${dev}/address`, 'utf8').trim().toLowerCase();
    } catch {
      throw new RawWireError(`--wire raw: this namespace has no ${dev}`);
    }
    const [lo, hi] = DEFAULT_NODE_PORT_RANGE.split('-').map(Number);
    const raw = new RawWire({ dev, mac, nodeIp: this.opts.ip, bgpPort: this.opts.bgpPort, nodePorts: [lo, hi], clusterCidr: this.opts.clusterCidr });
    await raw.start();
    this.rawWire = raw;
    this.eth0Mac = mac;
    log.info('raw wire up', { dev, mac, claim: claimFilter(raw.owned!) });
    if (!pcapImmediateModeLikely()) log.warn('libpcap.so (libpcap-dev) not found: cap cannot turn on immediate mode, raw frames may arrive up to a second late');
  }

  /**
   * Creates the Node or, when it exists (agent restart), reuses its VtepMAC
   * and podCIDR and refreshes the annotations and addresses.
   */
  private async register(): Promise<Node> {
    const existing = await this.api.get<Node>('nodes', this.name);
    const known = parseFlannelBackendData(existing?.metadata.annotations?.[FLANNEL_BACKEND_DATA]);
    this.vtepMac = known?.VtepMAC ?? deriveMac(this.opts.seed, `vtep:${this.name}`);
    const annotations: Record<string, string | null> = {
      [PODLAB_ETH0_MAC]: this.eth0Mac,
      [FLANNEL_PUBLIC_IP]: this.opts.ip,
      [FLANNEL_KUBE_SUBNET_MANAGER]: 'true',
    };
    if (this.opts.backend === 'vxlan') {
      annotations[FLANNEL_BACKEND_TYPE] = FLANNEL_BACKEND_TYPE_VXLAN;
      annotations[FLANNEL_BACKEND_DATA] = JSON.stringify({ VNI: this.opts.vni, VtepMAC: this.vtepMac });
    } else if (this.opts.backend === 'host-gw') {
      // flanneld's host-gw backend publishes no backend data.
      annotations[FLANNEL_BACKEND_TYPE] = 'host-gw';
      annotations[FLANNEL_BACKEND_DATA] = 'null';
    } else {
      // calico-node announces the node's address; flannel's annotations are not there.
      annotations[FLANNEL_BACKEND_TYPE] = null;
      annotations[FLANNEL_BACKEND_DATA] = null;
      annotations[CALICO_IPV4_ADDRESS] = `${this.opts.ip}/${this.opts.underlayCidr.split('/')[1]}`;
    }
    const addresses = [
      { type: 'InternalIP' as const, address: this.opts.ip },
      { type: 'Hostname' as const, address: this.name },
    ];
    if (existing) {
      const patched = await this.api.patch<Node>('nodes', this.name, { metadata: { annotations } });
      await this.api.patchStatus<Node>('nodes', this.name, { status: { addresses } });
      if (!patched.spec?.podCIDR) throw new Error(`node ${this.name} has no podCIDR`);
      return patched;
    }
    const created = await this.api.create<Node>('nodes', {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: {
        name: this.name,
        labels: { 'kubernetes.io/hostname': this.name, 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'amd64' },
        annotations: Object.fromEntries(Object.entries(annotations).filter(([, v]) => v !== null)),
      },
      spec: {},
      status: { addresses, conditions: [] },
    } as unknown as Node);
    if (!created.spec?.podCIDR) throw new Error(`apiserver gave node ${this.name} no podCIDR`);
    return created;
  }

  // ------------------------------------------------------------ peers (flanneld)

  private reconcilePeers(): void {
    if (!this.nodeInformer) return;
    const leases: Lease[] = [];
    this.peersByName.clear();
    for (const n of this.nodeInformer.list()) {
      const l = leaseFromNode(n);
      if (typeof l === 'string') {
        log.debug('skipping node', { reason: l });
        continue;
      }
      this.peersByName.set(l.node, l.publicIp);
      leases.push(l);
    }
    const self = { node: this.name, vni: this.opts.vni, backend: this.opts.backend };
    const actions = planFlannel(leases, this.programmed, self);
    for (const a of actions) this.dp.applyPlan(a);
    for (const l of leases) if (l.node !== this.name && l.backend === self.backend && (l.backend !== 'vxlan' || l.vni === self.vni)) this.programmed.set(l.node, l);
    for (const name of [...this.programmed.keys()]) if (!leases.some((l) => l.node === name)) this.programmed.delete(name);
    if (actions.length) log.info('flannel plan applied', { actions: actions.length });
  }

  /** kube-proxy's role: Services and EndpointSlices into the node's netfilter hooks. */
  private async startKubeProxy(): Promise<void> {
    const under = parseCidr(this.opts.underlayCidr);
    const mask = under.prefixLen === 0 ? 0 : (0xffffffff << (32 - under.prefixLen)) >>> 0;
    const kp = new KubeProxy(this.dp, {
      mode: this.opts.proxyMode,
      node: this.name,
      nodeIp: this.opts.ip,
      clusterCidr: this.opts.clusterCidr,
      ipvsScheduler: this.opts.ipvsScheduler,
      clock: this.clock,
      rng: this.rng.fork('kube-proxy'),
      allowRealBind: (ip) => ((ipv4ToInt(ip) & mask) >>> 0) === under.net,
    });
    this.kubeProxy = kp;
    this.dp.netfilter.engine = kp;
    this.serviceInformer = new Informer(this.api, 'services');
    this.sliceInformer = new Informer(this.api, 'endpointslices');
    const again = () => kp.update(this.serviceInformer!.list(), this.sliceInformer!.list());
    for (const inf of [this.serviceInformer, this.sliceInformer]) {
      inf.on('add', again);
      inf.on('update', again);
      inf.on('delete', again);
    }
    await Promise.all([this.serviceInformer.start(), this.sliceInformer.start()]);
    kp.update(this.serviceInformer.list(), this.sliceInformer.list());
    kp.sync();
  }

  /** calico-node's role: a BGP speaker fed by Nodes, the BGPConfiguration and BGPPeers. */
  private async startBgp(): Promise<void> {
    this.bgp = new CalicoBgp({
      node: this.name,
      ip: this.opts.ip,
      podCIDR: this.podCIDR,
      port: this.opts.bgpPort,
      holdTime: this.opts.bgpHoldTime,
      topology: this.opts.bgpTopology,
      clock: this.clock,
      seed: this.opts.seed,
      apply: (a) => this.dp.applyPlan(a),
    });
    this.bgpConfigInformer = new Informer<BgpConfiguration>(this.api, 'bgpconfigurations');
    this.bgpPeerInformer = new Informer<BgpPeer>(this.api, 'bgppeers');
    const again = () => this.reconcileBgp();
    for (const inf of [this.bgpConfigInformer, this.bgpPeerInformer, this.nodeInformer!] as Informer[]) {
      inf.on('add', again);
      inf.on('update', again);
      inf.on('delete', again);
    }
    await Promise.all([this.bgpConfigInformer.start(), this.bgpPeerInformer.start()]);
    this.reconcileBgp();
    await this.bgpQueue;
  }

  /** Reconciles BGP peers, one run at a time, in order. */
  private reconcileBgp(): void {
    const bgp = this.bgp;
    if (!bgp || this.stopped) return;
    this.bgpQueue = this.bgpQueue
      .then(() => bgp.reconcile(this.nodeInformer!.list(), this.bgpConfigInformer!.list().find((c) => c.metadata.name === 'default'), this.bgpPeerInformer!.list()))
      .catch((e) => log.error('bgp reconcile failed', { error: String(e) }));
  }

  // ------------------------------------------------------------ pods (kubelet + CNI)

  /** Pod changes are applied one at a time, in order, so IPAM never races. */
  private enqueuePod(p: Pod): void {
    this.podQueue = this.podQueue
      .then(() => this.syncPod(p))
      .catch((e) => {
        log.error('pod sync failed', { pod: p.metadata.name, error: String(e) });
        // The kubelet's event when CNI cannot give the sandbox an address.
        if (e instanceof IpamError) void postEvent(this.api, p, 'Warning', 'FailedCreatePodSandBox', `Failed to create pod sandbox: plugin type="host-local" failed (add): ${e.message}`, { component: 'kubelet', host: this.name }).catch(() => {});
      });
  }

  private enqueuePodDelete(p: Pod): void {
    this.podQueue = this.podQueue.then(() => this.removePod(p)).catch((e) => log.error('pod delete failed', { pod: p.metadata.name, error: String(e) }));
  }

  private async syncPod(p: Pod): Promise<void> {
    if (this.stopped) return;
    const key = `${p.metadata.namespace}/${p.metadata.name}`;
    const have = this.dp.pods.get(key);
    if (have && have.opts.uid === p.metadata.uid) {
      if (p.status?.phase !== 'Running' || p.status?.podIP !== have.ip) await this.reportRunning(p, have.ip);
      return;
    }
    if (have) this.teardownPod(have);
    const ip = this.ipam.allocate(p.metadata.uid, p.status?.podIP && this.inPodCidr(p.status.podIP) ? p.status.podIP : undefined);
    const net = this.dp.addPod({ namespace: p.metadata.namespace ?? 'default', name: p.metadata.name, uid: p.metadata.uid, ip });
    log.info('pod network ready', { pod: key, ip, veth: net.hostVeth.name });
    // Issue 4: run the containers' built-in apps by image (node-agent/apps/); a failure is logged, not thrown.
    startPodApps(net, p.spec?.containers ?? [], { podName: p.metadata.name, nodeName: this.name, log: (m, f) => (/fail/.test(m) ? log.error(m, f) : log.info(m, f)) });
    if (p.status?.phase !== 'Running' || p.status?.podIP !== ip) await this.reportRunning(p, ip);
  }

  private inPodCidr(ip: string): boolean {
    const { net, prefixLen } = parseCidr(this.podCIDR);
    const mask = prefixLen === 0 ? 0 : (0xffffffff << (32 - prefixLen)) >>> 0;
    return ((ipv4ToInt(ip) & mask) >>> 0) === net;
  }

  private async reportRunning(p: Pod, ip: string): Promise<void> {
    const net = this.dp.pods.get(`${p.metadata.namespace ?? 'default'}/${p.metadata.name}`);
    // issue 4: an app that failed to start shows in its container's status
    await this.api.patchStatus<Pod>('pods', p.metadata.name, runningPodStatus(p, ip, this.opts.ip, (name) => containerStateOverride(net, name)), p.metadata.namespace);
  }


  private async removePod(p: Pod): Promise<void> {
    const key = `${p.metadata.namespace}/${p.metadata.name}`;
    const have = this.dp.pods.get(key);
    if (have && have.opts.uid === p.metadata.uid) this.teardownPod(have);
    this.ipam.release(p.metadata.uid);
  }

  private teardownPod(net: PodNet): void {
    stopPodApps(net); // issue 4: stop the pod's apps and its TCP
    this.dp.removePod(net);
    log.info('pod network removed', { pod: net.key, ip: net.ip });
  }

  /** Frees addresses whose pods no longer exist (a pod deleted while the agent was down). */
  private releaseOrphanAddresses(): void {
    const live = new Set([...this.dp.pods.values()].map((p) => p.opts.uid));
    for (const [ip, owner] of this.ipam.allocations()) {
      if (!live.has(owner)) {
        this.ipam.release(owner);
        log.info('released orphan address', { ip, owner });
      }
    }
  }

  private async setReady(ready: boolean): Promise<void> {
    const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    await this.api.patchStatus<Node>('nodes', this.name, {
      status: {
        conditions: [
          {
            type: 'Ready',
            status: ready ? 'True' : 'False',
            lastHeartbeatTime: now,
            lastTransitionTime: now,
            reason: ready ? 'KubeletReady' : 'KubeletNotReady',
            message: ready ? 'podlab node agent is posting ready status' : 'podlab node agent stopped',
          },
        ],
      },
    });
  }

  // ------------------------------------------------------------ control channel

  /** Finds a pod of this node by `name` or `namespace/name`. */
  findPod(ref: string): PodNet {
    const key = ref.includes('/') ? ref : `default/${ref}`;
    const pod = this.dp.pods.get(key);
    if (!pod) throw new ControlError(`pod ${key} is not on node ${this.name}`);
    return pod;
  }

  /** Devices of the node's namespace, for `ip link`. */
  devices(): NetDevice[] {
    return this.dp.devices();
  }

  /** Runs `ip ...` / `bridge fdb` against the node's namespace. */
  nodeCommand(argv: string[]): string {
    const [tool, obj] = argv;
    const kp = this.kubeProxy?.command(argv);
    if (kp !== undefined) return kp;
    if (tool === 'bgp') {
      if (!this.bgp) throw new ControlError(`${this.name} runs the ${this.opts.backend} backend: no BGP speaker (start the lab with --backend bgp)`);
      if (obj === 'summary' || obj === 'protocols' || obj === undefined) return this.bgp.summary();
      if (obj === 'routes' || obj === 'route') return this.bgp.routes();
      throw new ControlError('usage: bgp summary | bgp routes');
    }
    if (tool === 'bridge' && (obj === 'fdb' || obj === 'f')) return formatBridgeFdb(this.dp.bridge, this.dp.vtep ? { dev: 'flannel.1', fdb: this.dp.vtep.fdb } : undefined);
    if (tool === 'ip') {
      const out = matchIpObject(obj ?? '', {
        addr: () => formatIpAddr(this.dp.stack),
        route: () => formatIpRoute(this.dp.stack),
        neigh: () => formatIpNeigh(this.dp.stack),
        link: () => formatIpLink(this.devices(), this.dp.vtep ? { vxlan: { vni: this.opts.vni, port: this.opts.vxlanPort, local: this.opts.ip } } : {}),
      });
      if (out !== undefined) return out;
    }
    throw new ControlError(`unsupported node command '${argv.join(' ')}': try ip route | ip neigh | ip link | ip addr | bridge fdb | bgp summary | iptables-save [-t nat] | ipvsadm -Ln | ipset list | conntrack -L`);
  }

  /** Per-interface counters and drop reasons. */
  stats(): Record<string, unknown> {
    const ifaces: Record<string, unknown> = {};
    for (const d of this.devices()) ifaces[d.name] = d.counters.toJSON();
    const pods: Record<string, unknown> = {};
    for (const p of this.dp.pods.values()) pods[p.key] = { eth0: p.eth0.counters.toJSON(), ip: p.stack.counters.toJSON() };
    const impairments: Record<string, unknown> = {};
    for (const [peer, imp] of this.dp.underlay.impairmentsByPeer()) impairments[peer] = { spec: imp.spec, stats: imp.stats };
    return {
      node: this.name,
      interfaces: ifaces,
      ip: this.dp.stack.counters.toJSON(),
      underlay: {
        wire: this.dp.wireKind,
        refused: this.dp.underlay.refused,
        sendErrors: this.dp.underlay.sendErrors,
        sourcePorts: this.dp.underlay.sourcePortList,
        ...(this.rawWire ? { raw: { sent: this.rawWire.sent, received: this.rawWire.received, sendErrors: this.rawWire.sendErrors, handlerErrors: this.rawWire.handlerErrors, claim: claimFilter(this.rawWire.owned!) } } : {}),
      },
      impairments,
      pods,
    };
  }

  private captureTargets() {
    return captureTargets(this.dp, this.name, this.opts.seed, (ip) => [...this.peersByName].find(([, v]) => v === ip)?.[0]);
  }

  private peerIp(peer: string): string {
    const ip = this.peersByName.get(peer) ?? (/^\d+\.\d+\.\d+\.\d+$/.test(peer) ? peer : undefined);
    if (!ip) throw new ControlError(`unknown peer node '${peer}' (known: ${[...this.peersByName.keys()].join(', ')})`);
    return ip;
  }

  private registerHandlers(c: ControlServer): void {
    c.handle('info', async () => ({
      name: this.name,
      ip: this.opts.ip,
      podCIDR: this.podCIDR,
      vtepMac: this.vtepMac,
      pid: process.pid,
      pods: [...this.dp.pods.values()].map((p) => ({ key: p.key, ip: p.ip, veth: p.hostVeth.name, mac: p.eth0.mac })),
    }));
    c.handle('node.cmd', async (params) => ({ stdout: this.nodeCommand((params as { argv: string[] }).argv) }));
    c.handle('stats', async () => this.stats());
    c.handle('exec', async (params, ctx) => this.exec(params as { pod: string; argv: string[]; stdin?: boolean }, ctx));
    c.handle('impair.set', async (params) => {
      const { peer, spec } = params as { peer: string; spec: ImpairmentSpec };
      const bad = validateImpairment(spec);
      if (bad) throw new ControlError(bad);
      const ip = this.peerIp(peer);
      const name = [...this.peersByName].find(([, v]) => v === ip)?.[0] ?? ip;
      this.dp.underlay.setImpairment(ip, spec, name);
      return { peer, ip, spec };
    });
    c.handle('impair.clear', async (params) => {
      const { peer } = (params ?? {}) as { peer?: string };
      const peers = peer ? [this.peerIp(peer)] : [...this.dp.underlay.impairmentsByPeer().keys()];
      for (const ip of peers) this.dp.underlay.setImpairment(ip, null);
      return { cleared: peers };
    });
    c.handle('capture.list', async () => {
      const seen = new Set<unknown>();
      return [...this.captureTargets().entries()].filter(([, t]) => !seen.has(t) && seen.add(t)).map(([k, t]) => ({ ref: k, name: t.name, description: t.description }));
    });
    c.handle('capture', async (params, ctx) => {
      const { ifaces, all, filter, count } = params as { ifaces?: string[]; all?: boolean; filter?: string; count?: number };
      const targets = this.captureTargets();
      const chosen = all
        ? [...new Set(targets.values())]
        : (ifaces ?? []).map((name) => {
            const t = targets.get(name);
            if (!t) throw new ControlError(`${this.name} has no interface '${name}' (it has: ${[...targets.keys()].join(', ')})`);
            return t;
          });
      if (!chosen.length) throw new ControlError('capture: name an interface, or --all');
      ctx.emit({ type: 'interfaces', list: chosen.map((t) => ({ name: t.name, description: t.description })) });
      try {
        return await runCapture(chosen, { filter, count, signal: ctx.signal, emit: (e) => ctx.emit(e) });
      } catch (e) {
        if (e instanceof FilterError) throw new ControlError(e.message);
        throw e;
      }
    });
    c.handle('trace.start', async (params) => {
      tracer.start((params as { filter: TraceFilter }).filter);
      return { node: this.name };
    });
    c.handle('trace.probe', async (params) => {
      const { filter, pod, ...opts } = params as { filter: TraceFilter; pod: string; timeoutMs?: number; size?: number; ttl?: number };
      return sendProbe(this.findPod(pod), filter, this.clock, opts);
    });
    c.handle('trace.collect', async (params) => {
      const { id } = params as { id: string };
      const hops = tracer.collect(id);
      tracer.stop(id);
      return hops;
    });
    c.handle('bgp.reset', async (params) => {
      if (!this.bgp) throw new ControlError(`${this.name} runs the ${this.opts.backend} backend: no BGP sessions to reset`);
      const { peer } = (params ?? {}) as { peer?: string };
      const reset = this.bgp.reset(peer ? this.peersByName.get(peer) ?? peer : undefined);
      if (peer && !reset.length) throw new ControlError(`${this.name} has no BGP session with ${peer}`);
      this.reconcileBgp();
      return { reset };
    });
    c.handle('stack.mtu', async (params) => {
      const { dev, mtu } = params as { dev: string; mtu: number };
      const iface = this.dp.stack.interfaces.get(dev);
      if (!iface) throw new ControlError(`no device ${dev} on ${this.name}`);
      if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) throw new ControlError(`mtu ${mtu}: must be 68-65535`);
      iface.dev.mtu = mtu;
      return { dev, mtu };
    });
  }

  private async exec(params: { pod: string; argv: string[]; stdin?: boolean }, ctx: CallContext): Promise<{ exitCode: number }> {
    const pod = this.findPod(params.pod);
    const argv = params.argv;
    const cmd = podCommands[argv[0] ?? ''];
    if (!cmd) {
      ctx.stderr(`exec: "${argv[0] ?? ''}": executable file not found in $PATH (podlab pods have: ${Object.keys(podCommands).join(', ')})\n`);
      return { exitCode: 127 };
    }
    try {
      const exitCode = await cmd({ pod, argv, stdout: ctx.stdout, stderr: ctx.stderr, signal: ctx.signal, clock: this.clock, rng: this.rng.fork(`exec:${pod.key}:${this.execCount++}`), stdin: params.stdin ? ctx.stdin : EMPTY_STDIN });
      return { exitCode };
    } catch (e) {
      if (e instanceof UsageError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
        ctx.stderr(`${(e as Error).message}\n`);
        return { exitCode: 2 };
      }
      throw e;
    }
  }

  /** Stops serving and closes sockets; the Node object stays (a restart resumes it). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.nodeInformer?.stop();
    this.podInformer?.stop();
    this.bgpConfigInformer?.stop();
    this.bgpPeerInformer?.stop();
    this.serviceInformer?.stop();
    this.sliceInformer?.stop();
    this.kubeProxy?.close();
    // A clean stop tells BGP peers at once (Cease), so they withdraw our routes without waiting for the hold time.
    await this.bgpQueue.catch(() => {});
    await this.bgp?.stop().catch(() => {});
    await this.control?.close();
    await this.dp?.close();
    await this.rawWire?.close();
  }
}
