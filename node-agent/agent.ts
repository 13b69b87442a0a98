/**
 * The emulated node kind's agent process: kubelet, the CNI plugins, the
 * backend's agent (flanneld or calico-node) and kube-proxy, in one process,
 * over podlab's own data plane (./emulated-runtime.ts).
 *
 * The agent's work shared with kernel nodes (registration, informers,
 * host-local IPAM, status, heartbeats, the backend's plan, BGP) is in
 * ./node-core.ts. This file adds kube-proxy and serves the CLI on a Unix
 * socket: exec in pods, iproute2 views, counters, impairments, capture, trace.
 */
import { v8, vm } from '../common/lazy-builtins.ts';
import { formatLine, type LogQuery } from './pod-logs.ts';
import { monotonicClock, type Clock } from '../common/clock.ts';
import { createLogger } from '../common/log.ts';
import { SharedThread } from '../common/module-worker.ts';
import { SeededRng, seedFrom } from '../common/rng.ts';
import { ApiClient } from '../control-plane/client.ts';
import { agentCredentials, type ClientCredentials } from '../control-plane/credentials.ts';
import { Informer } from '../control-plane/informer.ts';
import type { Node } from '../control-plane/types.ts';
import type { BackendName, NetworkBackend } from '../backends/backend.ts';
import { DEFAULT_BACKEND, backendNamed } from '../backends/registry.ts';
import { validateImpairment, type ImpairmentSpec } from '../overlay/impairment.ts';
import { claimFilter } from '../overlay/underlay-raw.ts';
import { ControlError, ControlServer, controlSocketPath, type CallContext } from './control-server.ts';
import { UsageError } from '../pod-tools/types.ts';
import { captureTargets, runCapture } from './capture/session.ts';
import { FilterError } from './capture/filter.ts';
import { sendProbe } from '../netstack/trace-probe.ts';
import type { TraceFilter } from '../netstack/trace.ts';
import { formatBridgeFdb } from '../netstack/iproute2.ts';
import { runIp } from '../netstack/ip-command.ts';
import { DEFAULT_WIRE_PORT, type NodeDataPlane } from './dataplane.ts';
import type { BgpTopology } from '../backends/bgp/bgp-backend.ts';
import { bgpView } from '../backends/bgp/views.ts';
import { KubeProxy } from './kube-proxy.ts';
import { loadEngineFactory } from '../service-proxy/load-engine.ts';
import { postEvent } from '../control-plane/event-client.ts';
import { NetworkPolicyAgent } from './network-policy.ts';
import type { IpvsSchedulerName, ProxyMode } from '../service-proxy/index.ts';
import type { NetDevice } from '../netstack/link/netdev.ts';
import type { PodNet } from '../netstack/pod-net.ts';
import { Cidr } from '../packet/cidr.ts';
import { listenRemoteControl } from './control-remote.ts';
import type net from 'node:net';
import { EMPTY_STDIN } from './stdin-queue.ts';
import { forwardPodPort } from './port-forward.ts';
import { NodeCore } from './node-core.ts';
import { GcPauses } from '../common/gc-pauses.ts';
import { EmulatedRuntime } from './emulated-runtime.ts';
import { L2Speaker, L2_ADDRESS_LIFETIME_S, L2_TIMING, l2Candidates } from '../edge/l2-speaker.ts';
import { holdLbAddress, inLabNamespace } from '../hostnet/lb-address.ts';
import { DEFAULT_LB_HANDOFF_PORT } from '../edge/lb-handoff.ts';
import { listenLbHandoff, type HandoffCounters } from './lb-handoff.ts';
import { bgpLbRoutes, type LbRoute } from '../edge/bgp-advertiser.ts';
import type { Advertisement, IpAddressPool } from '../control-plane/metallb.ts';

const NODE_DEFAULT_LABELS = (name: string) => ({ 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'amd64' });

export interface AgentOptions {
  name: string;
  /** The node's underlay address (`InternalIP`, Flannel's public-ip). */
  ip: string;
  /** The underlay network the node sits on, e.g. 127.0.0.0/24 in local mode. */
  underlayCidr: string;
  apiUrl: string;
  /** Token and CA for the apiserver; default: found from the state directory (control-plane/credentials.ts). */
  credentials?: ClientCredentials;
  stateDir: string;
  clusterCidr?: string;
  vxlanPort?: number;
  /** The node's flow cache for established forwarded flows (netstack/flow/); default on. */
  fastPath?: boolean;
  vni?: number;
  /** The pod-network backend (backends/registry.ts). */
  backend?: BackendName;
  /** UDP port of the bare-IPv4 wire (backends with pods on the underlay, local mode). */
  wirePort?: number;
  /** Backends with pods on the underlay: 'udp' (the bare-IPv4 wire, any mode) or 'raw' (real frames on eth0, root modes). */
  wire?: 'udp' | 'raw';
  /** BGP (backends that speak it): listen/peer port, hold time (s), topology. */
  bgpPort?: number;
  bgpHoldTime?: number;
  bgpTopology?: BgpTopology;
  /** kube-proxy's mode, and the IPVS scheduler in ipvs mode. */
  proxyMode?: ProxyMode;
  ipvsScheduler?: IpvsSchedulerName;
  seed?: number;
  /** Underlay MTU; tunnel devices and the pods get this minus the backend's overhead. */
  mtu?: number;
  clock?: Clock;
  heartbeatMs?: number;
  /** Container labs: also serve the control channel on TCP <ip>:<port> (0 = Unix socket only; control-remote.ts). */
  controlPort?: number;
  /** BGP nodes: where a lab router hands LoadBalancer connections over (edge/lb-handoff.ts); 0 = none. */
  lbHandoffPort?: number;
}

const log = createLogger('podlab:agent');

/** What `pod.logs` takes: the pod, the container (optional with one), kubectl's query options. */
interface PodLogsParams extends LogQuery {
  pod: string;
  container?: string;
  follow?: boolean;
}

/** Checks `pod.logs`' parameters at the boundary; every problem is named in the error. */
function podLogsParams(params: unknown): PodLogsParams {
  const p = (typeof params === 'object' && params !== null ? params : {}) as Record<string, unknown>;
  const problems: string[] = [];
  const check = (key: string, ok: (v: unknown) => boolean, want: string, required = false) => {
    if (p[key] === undefined ? required : !ok(p[key])) problems.push(`${key}: ${p[key] === undefined ? 'Required' : `expected ${want}`}`);
  };
  const text = (v: unknown) => typeof v === 'string' && v.length > 0;
  const flag = (v: unknown) => typeof v === 'boolean';
  const int = (v: unknown) => Number.isInteger(v);
  const positive = (v: unknown) => Number.isInteger(v) && (v as number) > 0;
  check('pod', text, 'a non-empty string', true);
  check('container', text, 'a non-empty string');
  check('follow', flag, 'a boolean');
  check('tailLines', int, 'an integer');
  check('sinceSeconds', positive, 'a positive integer');
  check('timestamps', flag, 'a boolean');
  check('limitBytes', positive, 'a positive integer');
  if (problems.length) throw new ControlError(`pod.logs: ${problems.join('; ')}`);
  const { pod, container, follow, tailLines, sinceSeconds, timestamps, limitBytes } = p as unknown as PodLogsParams;
  return { pod, container, follow, tailLines, sinceSeconds, timestamps, limitBytes };
}

/** What `pod.portforward` takes: the pod and the port to dial on its localhost. */
function portForwardParams(params: unknown): { pod: string; port: number } {
  const p = (params ?? {}) as Record<string, unknown>;
  const problems: string[] = [];
  if (typeof p.pod !== 'string' || p.pod.length === 0) problems.push(`pod: ${p.pod === undefined ? 'Required' : 'expected a non-empty string'}`);
  if (!Number.isInteger(p.port) || (p.port as number) < 1 || (p.port as number) > 65535) problems.push(`port: ${p.port === undefined ? 'Required' : 'expected an integer from 1 to 65535'}`);
  if (problems.length) throw new ControlError(`pod.portforward: ${problems.join('; ')}`);
  return { pod: p.pod as string, port: p.port as number };
}

let gcFn: (() => void) | undefined;
/** A full garbage collection on request: V8's gc(), exposed at the first call rather than by a flag on every agent. */
function fullGc(): void {
  if (!gcFn) {
    v8().setFlagsFromString('--expose-gc');
    gcFn = vm().runInNewContext('gc') as () => void;
  }
  gcFn();
}

export class NodeAgent {
  readonly name: string;
  readonly clock: Clock;
  readonly rng: SeededRng;
  readonly backend: NetworkBackend;
  private readonly opts: Required<Omit<AgentOptions, 'clock' | 'credentials'>> & Pick<AgentOptions, 'credentials'>;
  private readonly runtime: EmulatedRuntime;
  private readonly credentials: ClientCredentials;
  private readonly core: NodeCore;
  private control?: ControlServer;
  private remoteControl?: net.Server;
  private kubeProxy?: KubeProxy;
  /**
   * The one worker thread that kube-proxy's engine and the CoreDNS pods' code share (node-agent/threads.ts):
   * a thread each cost a CoreDNS node ~10 MB RSS more than the others (a whole Node environment).
   */
  // Its code optimized on it, below the data plane, not on V8's platform thread (common/module-worker.ts ownCompiles).
  private readonly thread = new SharedThread('node-agent/threads.ts', "the agent's worker thread", { name: 'agent-worker', ownCompiles: process.env.PODLAB_ENGINE_COMPILES !== 'shared' });
  private policy?: NetworkPolicyAgent;
  private poolInformer?: Informer<IpAddressPool>;
  private l2AdvInformer?: Informer<Advertisement>;
  private bgpAdvInformer?: Informer<Advertisement>;
  /** The LoadBalancer routes this node announces in BGP mode, as last computed. */
  private bgpLb: LbRoute[] = [];
  private speaker?: L2Speaker;
  private handoff?: { close(): void };
  private handoffCounters?: HandoffCounters;
  private execCount = 0;
  private readonly gcPauses = new GcPauses();

  constructor(opts: AgentOptions) {
    this.opts = {
      clusterCidr: '10.244.0.0/16',
      vxlanPort: 8472,
      vni: 1,
      backend: DEFAULT_BACKEND,
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
      controlPort: 0,
      lbHandoffPort: DEFAULT_LB_HANDOFF_PORT,
      fastPath: true,
      ...opts,
    };
    this.name = opts.name;
    this.backend = backendNamed(this.opts.backend);
    this.clock = opts.clock ?? monotonicClock;
    this.rng = new SeededRng(seedFrom(this.opts.seed, `node:${opts.name}`));
    const o = this.opts;
    const credentials = opts.credentials ?? agentCredentials({ stateDir: opts.stateDir, name: opts.name });
    this.credentials = credentials;
    this.runtime = new EmulatedRuntime({
      name: o.name,
      ip: o.ip,
      underlayCidr: o.underlayCidr,
      clusterCidr: o.clusterCidr,
      backend: this.backend,
      vxlanPort: o.vxlanPort,
      vni: o.vni,
      wirePort: o.wirePort,
      wire: o.wire,
      bgp: { port: o.bgpPort, holdTime: o.bgpHoldTime, topology: o.bgpTopology },
      seed: o.seed,
      mtu: o.mtu,
      fastPath: o.fastPath,
      clock: this.clock,
      rng: this.rng,
      api: { url: opts.apiUrl, credentials },
      thread: this.thread,
    });
    this.core = new NodeCore(
      {
        name: o.name,
        ip: o.ip,
        stateDir: o.stateDir,
        backend: this.backend,
        vni: o.vni,
        heartbeatMs: o.heartbeatMs,
        controlPort: o.controlPort,
        // kubelet's default labels, set again on a Node the lab pre-registered (kubelet's reconcileDefaultLabels).
        kind: { labels: NODE_DEFAULT_LABELS(o.name), patchLabels: NODE_DEFAULT_LABELS(o.name), readyMessage: 'podlab node agent is posting ready status' },
      },
      new ApiClient(opts.apiUrl, { credentials }),
      this.runtime,
      'podlab:agent',
    );
  }

  /** The node's namespace, underlay and pods (once started). */
  get dp(): NodeDataPlane {
    return this.runtime.dp;
  }

  get podCIDR(): string {
    return this.core.podCIDR;
  }

  get vtepMac(): string {
    return this.core.vtepMac;
  }

  private get peersByName(): Map<string, string> {
    return this.core.peersByName;
  }

  /** The Node informer (add, update, delete); the agent must have started. */
  get nodeEvents(): Informer<Node> {
    const nodes = this.core.nodeInformer;
    if (!nodes) throw new Error('the node agent has not started: no Node informer yet');
    return nodes;
  }

  /** This node's control socket (see controlSocketPath in control-server.ts). */
  get controlSocketPath(): string {
    return controlSocketPath(this.opts.stateDir, this.name);
  }

  /** Registers, builds the data plane, starts watching and serving. */
  async start(): Promise<void> {
    await this.core.start({
      watching: async () => {
        await this.startKubeProxy();
        await this.startPolicy();
      },
      serve: async () => {
        this.control = new ControlServer(this.controlSocketPath);
        this.registerHandlers(this.control);
        await this.control.listen();
        if (this.opts.controlPort) this.remoteControl = await listenRemoteControl(this.control, { host: this.opts.ip, port: this.opts.controlPort, allow: this.opts.underlayCidr });
      },
    });
    log.info('node ready', { node: this.name, ip: this.opts.ip, podCIDR: this.podCIDR, vtepMac: this.vtepMac });
  }

  /** kube-proxy's role: Services and EndpointSlices into the node's netfilter hooks. */
  private async startKubeProxy(): Promise<void> {
    const under = Cidr.parse(this.opts.underlayCidr);
    const kp = new KubeProxy(this.dp, {
      // Syncs of many Services run in a worker thread, off the packets' path (PODLAB_KUBE_PROXY_WORKER=on: from the
      // first Service, off: never); the worker's time is the real clock. The worker watches the apiserver itself.
      worker: this.clock !== monotonicClock ? false : ({ on: true, off: false } as Record<string, boolean>)[process.env.PODLAB_KUBE_PROXY_WORKER ?? ''] ?? 'auto',
      api: { url: this.opts.apiUrl, credentials: this.credentials },
      thread: this.thread,
      onEngineDown: (reason, retryMs) => void this.reportEngineDown(reason, retryMs),
      engine: await loadEngineFactory(this.opts.proxyMode),
      node: this.name,
      nodeIp: this.opts.ip,
      clusterCidr: this.opts.clusterCidr,
      ipvsScheduler: this.opts.ipvsScheduler,
      clock: this.clock,
      rng: this.rng.fork('kube-proxy'),
      allowRealBind: (ip) => under.contains(ip),
    });
    this.kubeProxy = kp;
    const api = this.core.api;
    // Only until the engine moves to its worker (kube-proxy.ts): kube-proxy owns them, and stops them then. A
    // node (re)starting among many Services lists only the Services here: EndpointSlices, the bulk, never.
    const services = new Informer(api, 'services');
    const slices = new Informer(api, 'endpointslices');
    await services.start();
    if (!kp.watchesInWorker(services.list().length)) await slices.start();
    kp.watch(services, slices);
    await this.startSpeaker(kp, under);
  }

  /**
   * kube-proxy's engine worker died: connections to Services fail until it is
   * back, so the node says so, in its log and as a Warning Event on the Node
   * (once per failure; the worker is restarted with backoff).
   */
  private async reportEngineDown(reason: string, retryMs: number): Promise<void> {
    const node = this.core.nodeInformer?.get(this.name);
    if (!node) return;
    const message = `kube-proxy's ${this.opts.proxyMode} engine stopped (${reason}); new connections to Services are dropped until it restarts in ${retryMs} ms`;
    await postEvent(this.core.api, node, 'Warning', 'KubeProxyEngineFailed', message, { component: 'kube-proxy', host: this.name }).catch((e: unknown) => log.warn('cannot post the kube-proxy engine event', { error: String(e) }));
  }

  /**
   * MetalLB's speaker role (layer 2): elected per address, the owner opens real sockets on it. In a
   * netns lab the owner's namespace must hold the address first: it goes on eth0 (so the kernel
   * answers ARP on the bridge) with a gratuitous ARP, and comes off when the node gives it up.
   */
  private async startSpeaker(kp: KubeProxy, under: Cidr): Promise<void> {
    const api = this.core.api;
    const onEth0 = inLabNamespace();
    const speaker = new L2Speaker({
      api,
      node: this.name,
      firstTryDelayMs: this.rng.fork('l2-speaker').int(0, L2_TIMING.retryPeriodMs),
      log: (msg, fields) => log.info(msg, fields),
      announce: async (a) => {
        if (!under.contains(a.ip)) throw new Error(`${a.ip} is outside the underlay ${under.toString()}: no real socket may hold it`);
        const held = onEth0 ? await holdLbAddress(a.ip, { dev: 'eth0', lifetimeS: L2_ADDRESS_LIFETIME_S }) : undefined;
        const socks: { close(): void }[] = [];
        try {
          for (const p of a.ports) {
            // Into the node addressed to the LB IP itself, as the elected node receives it: kube-proxy's
            // KUBE-SERVICES "loadbalancer IP" rule (or IPVS's virtual server on kube-ipvs0) takes it from there.
            // The legacy userspace proxy has no rule for LB IPs: there the NodePort carries it.
            const to = kp.mode === 'userspace' && p.nodePort ? { ip: this.opts.ip, port: p.nodePort } : { ip: a.ip, port: p.port };
            socks.push(p.protocol === 'tcp' ? await kp.openRealTcp(a.ip, p.port, to) : await kp.openRealUdp(a.ip, p.port, to));
          }
        } catch (e) {
          for (const s of socks) s.close();
          await held?.release();
          throw e;
        }
        if (held) void held.announce().then((result) => log.info('gratuitous ARP', { ip: a.ip, dev: 'eth0', result }));
        return {
          close: async () => {
            socks.forEach((s) => s.close());
            await held?.release();
          },
          renew: held && (() => held.renew()),
        };
      },
    });
    this.speaker = speaker;
    this.poolInformer = new Informer<IpAddressPool>(api, 'ipaddresspools');
    this.l2AdvInformer = new Informer<Advertisement>(api, 'l2advertisements');
    // Over the LoadBalancer Services only (kube-proxy keeps their summary, or its worker sends it when it changes).
    const again = () => {
      const me = this.core.nodeInformer?.get(this.name);
      speaker.setCandidates(l2Candidates(this.name, me?.metadata.labels ?? {}, kp.loadBalancers, this.poolInformer!.list(), this.l2AdvInformer!.list()));
    };
    kp.onLoadBalancers(again);
    for (const inf of [this.poolInformer, this.l2AdvInformer] as Informer[]) inf.on('add', again).on('update', again).on('delete', again);
    await Promise.all([this.poolInformer.start(), this.l2AdvInformer.start()]);
    again();
    speaker.start();
    if (this.core.bgp) {
      await this.startBgpAdvertiser();
      await this.startLbHandoff(kp, under);
    }
  }

  /**
   * BGP mode's data path in a lab: a router that learned an LB route with
   * this node as a next hop hands its connections over here (edge/lb-handoff.ts).
   * Only from a BGPPeer's address inside the underlay; a taken port costs the
   * hand-off, not the node.
   */
  private async startLbHandoff(kp: KubeProxy, under: Cidr): Promise<void> {
    if (!this.opts.lbHandoffPort || !under.contains(this.opts.ip)) return;
    try {
      const h = await listenLbHandoff({
        host: this.opts.ip,
        port: this.opts.lbHandoffPort,
        kubeProxy: kp,
        allowed: (ip) => under.contains(ip) && this.core.bgpPeerAddresses().includes(ip),
      });
      this.handoff = h;
      this.handoffCounters = h.counters;
    } catch (e) {
      log.warn('cannot open the LoadBalancer hand-off port', { address: `${this.opts.ip}:${this.opts.lbHandoffPort}`, error: String(e) });
    }
  }

  /**
   * MetalLB's speaker role in BGP mode, through the node's own BGP speaker:
   * the routes every node announces (its own for the speaker, everyone's for
   * the node peers' filters), recomputed as Services, endpoints, pools,
   * BGPAdvertisements and Node labels change.
   */
  private async startBgpAdvertiser(): Promise<void> {
    this.bgpAdvInformer = new Informer<Advertisement>(this.core.api, 'bgpadvertisements');
    const kp = this.kubeProxy!;
    const again = () => {
      const lbs = kp.loadBalancers;
      const pools = this.poolInformer!.list();
      const advs = this.bgpAdvInformer!.list();
      const byNode = new Map<string, string[]>();
      let own = bgpLbRoutes(this.name, {}, lbs, pools, advs);
      for (const n of this.core.nodeInformer?.list() ?? []) {
        const routes = bgpLbRoutes(n.metadata.name, n.metadata.labels ?? {}, lbs, pools, advs);
        if (n.metadata.name === this.name) own = routes;
        if (routes.length) byNode.set(n.metadata.name, routes.map((r) => r.prefix));
      }
      this.bgpLb = own;
      this.core.setLoadBalancerRoutes(own, byNode);
    };
    kp.onLoadBalancers(again);
    for (const inf of [this.poolInformer!, this.bgpAdvInformer, this.core.nodeInformer!] as Informer[]) inf.on('add', again).on('update', again).on('delete', again);
    await this.bgpAdvInformer.start();
    again();
  }

  /** calico-node's policy role: NetworkPolicies, pods and namespaces into the node's policy hooks. */
  private async startPolicy(): Promise<void> {
    this.policy = new NetworkPolicyAgent(this.dp, this.core.api, this.clock);
    await this.policy.start();
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
  async nodeCommand(argv: string[]): Promise<string> {
    const [tool, obj] = argv;
    const kp = await this.kubeProxy?.command(argv);
    // Policy's chains live in the filter table beside kube-proxy's.
    if (kp !== undefined && tool === 'iptables-save' && this.policy) return this.policy.filterView(kp);
    if (kp !== undefined) return kp;
    if (tool === 'lb') {
      const clients = this.kubeProxy?.clients.view() ?? '';
      const bgp = this.bgpLb.map((r) => `${r.prefix}\t${r.services.join(',')}\tbgp\tannouncing${r.localPref !== undefined ? ` local-pref ${r.localPref}` : ''}\n`).join('');
      const handoff = this.handoffCounters ? `router hand-offs: ${this.handoffCounters.accepted} accepted, ${this.handoffCounters.refused} refused\n` : '';
      return (this.speaker?.view() ?? 'no speaker\n') + bgp + handoff + (clients ? `outside clients (real -> inside):\n${clients}\n` : '');
    }
    const view = bgpView(argv, this.core.bgp, { node: this.name, backend: this.backend.name });
    if (view && 'error' in view) throw new ControlError(view.error);
    if (view) return view.out;
    if (tool === 'bridge' && (obj === 'fdb' || obj === 'f')) {
      const all = formatBridgeFdb(this.dp.bridge, this.dp.link.fdb?.());
      const i = argv.indexOf('dev');
      const dev = i >= 0 ? argv[i + 1] : undefined;
      return dev === undefined ? all : all.split('\n').filter((l) => l.split(' ')[2] === dev).map((l) => l + '\n').join('');
    }
    if (tool === 'ip') {
      const vx = this.dp.link.linkDetails?.().vxlan;
      const r = runIp(argv.slice(1), {
        stack: this.dp.stack,
        links: this.devices(),
        linkDetail: (d) => (vx && d.kind === 'vxlan' ? `vxlan id ${vx.vni} local ${vx.local} dev eth0 srcport 0 0 dstport ${vx.port} nolearning ttl auto ageing 300 udpcsum noudp6zerocsumtx noudp6zerocsumrx` : undefined),
      });
      if (r.code !== 0) throw new ControlError(r.stderr.trimEnd());
      return r.stdout;
    }
    throw new ControlError(`unsupported node command '${argv.join(' ')}': try ip route | ip neigh | ip link | ip addr | bridge fdb | bgp summary | iptables-save [-t nat|filter] | ipvsadm -Ln | ipset list | conntrack -L`);
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
      ...(this.dp.stack.flows ? { flows: this.dp.stack.flows.stats() } : {}),
      underlay: {
        wire: this.dp.wireKind,
        ...(this.dp.link.wireText ? { text: this.dp.link.wireText } : {}),
        ...this.dp.link.stats?.(),
        refused: this.dp.underlay.refused,
        sendErrors: this.dp.underlay.sendErrors,
        sourcePorts: this.dp.underlay.sourcePortList,
        connectedSockets: this.dp.underlay.connectedSockets,
        resent: this.dp.underlay.resent,
        ...(this.runtime.rawWire ? { raw: rawStats(this.runtime.rawWire) } : {}),
      },
      impairments,
      peerPlans: { ...this.core.planCounts },
      ...(this.kubeProxy ? { kubeProxy: this.kubeProxy.stats() } : {}),
      ...(this.policy ? { policy: this.policy.stats() } : {}),
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
    c.handle('info', () => ({
      name: this.name,
      ip: this.opts.ip,
      podCIDR: this.podCIDR,
      vtepMac: this.vtepMac,
      pid: process.pid,
      pods: [...this.dp.pods.values()].map((p) => ({ key: p.key, ip: p.ip, veth: p.hostVeth.name, mac: p.eth0.mac })),
    }));
    c.handle('node.cmd', async (params) => ({ stdout: await this.nodeCommand((params as { argv: string[] }).argv) }));
    c.handle('stats', () => this.stats());
    // What the process holds; with gc, after a full collection, so garbage not yet collected does not count.
    // `gcPauses`: this thread's GC pauses since the last such call (the first starts watching), `reset` opens a new window.
    // `workerThread`: what runs on the agent's shared worker thread (none: no such thread), the heap above being this thread's.
    c.handle('memory', (params) => {
      const p = (params ?? {}) as { gc?: boolean; gcPauses?: boolean; reset?: boolean };
      if (p.gc === true) fullGc();
      return { ...process.memoryUsage(), workerThread: this.thread.entries, ...(p.gcPauses === true ? { gcPauses: this.gcPauses.read(p.reset === true) } : {}) };
    });
    c.handle('exec', async (params, ctx) => this.exec(params as { pod: string; argv: string[]; stdin?: boolean }, ctx));
    c.handle('pod.logs', async (params, ctx) => {
      return this.podLogs(podLogsParams(params), ctx);
    });
    c.handle('pod.portforward', async (params, ctx) => {
      const p = portForwardParams(params);
      return forwardPodPort(this.findPod(p.pod), p.port, ctx);
    });
    c.handle('impair.set', (params) => {
      const { peer, spec } = params as { peer: string; spec: ImpairmentSpec };
      const bad = validateImpairment(spec);
      if (bad) throw new ControlError(bad);
      const ip = this.peerIp(peer);
      const name = [...this.peersByName].find(([, v]) => v === ip)?.[0] ?? ip;
      this.dp.underlay.setImpairment(ip, spec, name);
      return { peer, ip, spec };
    });
    c.handle('impair.clear', (params) => {
      const { peer } = (params ?? {}) as { peer?: string };
      const peers = peer ? [this.peerIp(peer)] : [...this.dp.underlay.impairmentsByPeer().keys()];
      for (const ip of peers) this.dp.underlay.setImpairment(ip, null);
      return { cleared: peers };
    });
    c.handle('capture.list', () => {
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
      ctx.emit({ type: 'interfaces', list: chosen.map((t) => ({ name: t.name, description: t.description, link: t.link })) });
      try {
        return await runCapture(chosen, { filter, count, signal: ctx.signal, emit: (e) => ctx.emit(e) });
      } catch (e) {
        if (e instanceof FilterError) throw new ControlError(e.message);
        throw e;
      }
    });
    c.handle('trace.start', (params) => {
      this.dp.tracer.start((params as { filter: TraceFilter }).filter);
      return { node: this.name };
    });
    c.handle('trace.probe', async (params) => {
      const { filter, pod, ...opts } = params as { filter: TraceFilter; pod: string; timeoutMs?: number; size?: number; ttl?: number };
      return sendProbe(this.findPod(pod), filter, this.clock, opts);
    });
    c.handle('trace.collect', (params) => {
      const { id } = params as { id: string };
      const hops = this.dp.tracer.collect(id);
      this.dp.tracer.stop(id);
      return hops;
    });
    c.handle('bgp.reset', (params) => {
      const bgp = this.core.bgp;
      if (!bgp?.reset) throw new ControlError(`${this.name} runs the ${this.backend.name} backend: no BGP sessions to reset`);
      const { peer } = (params ?? {}) as { peer?: string };
      const reset = bgp.reset(peer ? this.peersByName.get(peer) ?? peer : undefined);
      if (peer && !reset.length) throw new ControlError(`${this.name} has no BGP session with ${peer}`);
      this.core.reconcileBgp();
      return { reset };
    });
    c.handle('stack.mtu', (params) => {
      const { dev, mtu } = params as { dev: string; mtu: number };
      const iface = this.dp.stack.interfaces.get(dev);
      if (!iface) throw new ControlError(`no device ${dev} on ${this.name}`);
      if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) throw new ControlError(`mtu ${mtu}: must be 68-65535`);
      iface.dev.mtu = mtu;
      return { dev, mtu };
    });
  }

  /**
   * `kubectl logs`: a container's output, chosen as the kubelet chooses it
   * (the only container, or the one named), with kubectl's query options;
   * `follow` streams new lines until the caller cancels or the pod goes.
   */
  private async podLogs(params: PodLogsParams, ctx: CallContext): Promise<{ container: string }> {
    const key = params.pod.includes('/') ? params.pod : `default/${params.pod}`;
    const logs = this.runtime.logs;
    const pod = this.core.podObject(key);
    if (!pod || !this.runtime.pod(key)) throw new ControlError(`pods "${key.split('/')[1]}" not found on node ${this.name}`);
    if (!logs) throw new ControlError(`${this.name} keeps no container logs`);
    const names = (pod.spec?.containers ?? []).map((c) => c.name);
    const container = params.container ?? (names.length === 1 ? names[0] : undefined);
    if (!container) throw new ControlError(`a container name must be specified for pod ${pod.metadata.name}, choose one of: [${names.join(' ')}]`);
    if (!names.includes(container)) throw new ControlError(`container ${container} is not valid for pod ${pod.metadata.name}`);
    ctx.stdout(logs.text(key, container, params));
    if (!params.follow) return { container };
    await new Promise<void>((resolve) => {
      const stop = logs.follow(key, container, (l) => ctx.stdout(formatLine(l, params.timestamps)));
      const done = () => {
        stop();
        clearInterval(gone);
        resolve();
      };
      // A deleted pod ends the stream, as the kubelet closes a removed container's log.
      const gone = setInterval(() => !this.runtime.pod(key) && done(), 500);
      ctx.signal.addEventListener('abort', done, { once: true });
    });
    return { container };
  }

  private async exec(params: { pod: string; argv: string[]; stdin?: boolean }, ctx: CallContext): Promise<{ exitCode: number }> {
    const pod = this.findPod(params.pod);
    const argv = params.argv;
    // The pod tools (ping, curl, dig, hey...) load with the node's first exec: most nodes of a big lab never see one.
    const { podCommands } = await import('../pod-tools/index.ts');
    const cmd = podCommands[argv[0] ?? ''];
    if (!cmd) {
      ctx.stderr(`exec: "${argv[0] ?? ''}": executable file not found in $PATH (podlab pods have: ${Object.keys(podCommands).join(', ')})\n`);
      return { exitCode: 127 };
    }
    try {
      const exitCode = await cmd({ pod, argv, stdout: (t) => ctx.stdout(t), stderr: (t) => ctx.stderr(t), signal: ctx.signal, clock: this.clock, rng: this.rng.fork(`exec:${pod.key}:${this.execCount++}`), stdin: params.stdin ? ctx.stdin : EMPTY_STDIN });
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
    await this.core.stop();
    void this.poolInformer?.stop();
    void this.l2AdvInformer?.stop();
    void this.bgpAdvInformer?.stop();
    await this.speaker?.stop();
    this.handoff?.close();
    this.kubeProxy?.close();
    this.policy?.stop();
    this.gcPauses.stop();
    this.remoteControl?.close();
    await this.control?.close();
    await this.runtime.stop();
  }
}

function rawStats(raw: NonNullable<EmulatedRuntime['rawWire']>): Record<string, unknown> {
  return { sent: raw.sent, received: raw.received, sendErrors: raw.sendErrors, handlerErrors: raw.handlerErrors, claim: claimFilter(raw.owned!) };
}
