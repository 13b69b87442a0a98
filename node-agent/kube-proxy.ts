/**
 * kube-proxy on one node: the glue between the watched Services and
 * EndpointSlices, the decision engine of the chosen mode (service-proxy/),
 * the node's netfilter hooks (conntrack, DNAT, masquerade) and the sockets a
 * real kube-proxy would own:
 *
 * - `decide()` is offered the first packet of every new connection entering
 *   the node (PREROUTING) or sent by it (OUTPUT); its answer becomes the
 *   conntrack entry every later packet follows;
 * - userspace mode: the legacy proxy's listeners on the node (a second TCP
 *   connection from the node to the backend, so traces show the extra hop);
 * - NodePorts from the real world: a real TCP/UDP socket on the node's IP at
 *   every NodePort; each accepted connection is carried into the emulated
 *   network as a connection from the node to its own NodePort, so
 *   KUBE-NODEPORTS / the IPVS NodePort virtual server decide as for any other;
 * - endpoint churn: UDP conntrack entries to endpoints that disappeared are
 *   flushed, as kube-proxy runs `conntrack -D` for them.
 *
 * The engine runs on this thread, or in a worker thread
 * (service-proxy/engine-worker.ts): its syncs then never hold up a packet of
 * an established connection; a first packet waits in the NAT hook's queue
 * for its decision, and each sync sends back the summary this side needs
 * (service addresses, NodePorts, endpoints gone). A worker costs an agent
 * about 11 MB RSS (17 MB without the agents' V8 flags), so agents (`worker: 'auto'`) move the engine there when the
 * node's Services reach WORKER_AT_SERVICES: below, a whole sync takes less
 * than the data plane's 5 ms budget.
 *
 * Given the apiserver (`api`), the worker is kube-proxy's own process as in a
 * real cluster: it lists and watches Services and EndpointSlices itself.
 * This side's informers (`watch`) serve only until the engine moves there
 * (they count the Services and feed the engine below the threshold): at the
 * move they are stopped and dropped, and the worker lists afresh, so no change
 * between the two is lost and this thread keeps no Service or EndpointSlice
 * from then on, only the summaries, the LoadBalancer Services' among them
 * (edge/lb-services.ts; the speaker's input, `onLoadBalancers`).
 */
import dgram from 'node:dgram';
import net from 'node:net';
import type { Clock } from '../common/clock.ts';
import { createLogger } from '../common/log.ts';
import type { SeededRng } from '../common/rng.ts';
import type { ClientCredentials } from '../control-plane/credentials.ts';
import { objectKey } from '../control-plane/informer.ts';
import type { KubeObject } from '../control-plane/types.ts';
import { LbIndex, loadBalancerServices, type LbService } from '../edge/lb-services.ts';
import { isValidIpv4 } from '../packet/addr.ts';
import type { Decision, EngineOptions, IpvsSchedulerName, ProxyMode, ServicePacket, ServiceProxyEngine } from '../service-proxy/types.ts';
import type { EngineFactory } from '../service-proxy/load-engine.ts';
import { engineCommand } from '../service-proxy/commands.ts';
import type { SharedThread } from '../common/module-worker.ts';
import { EngineWorker } from '../service-proxy/engine-worker.ts';
import { liveEndpoints, ServiceAddressSet, serviceAddresses, type EngineObjectKind, type EngineSummary, type NodePortSocket } from '../service-proxy/worker-protocol.ts';
import type { NodeDataPlane } from './dataplane.ts';
import type { NatDecision, NatEngine, ServiceNat } from '../netstack/netfilter/service-nat.ts';
import { TcpStack } from '../netstack/tcp/stack.ts';
import type { TcpSocket } from '../netstack/tcp/socket.ts';
import { SeededRng as Rng } from '../common/rng.ts';
import { Cidr } from '../packet/cidr.ts';

const log = createLogger('podlab:kube-proxy');

/**
 * The source address of a client outside the cluster whose own address cannot
 * be carried in (TEST-NET-3, RFC 5737), for connections from a real NodePort
 * or LoadBalancer socket. It exists only inside the lab, on the node's lo, so
 * that the rules see an external client (not the node itself) and a backend
 * behind externalTrafficPolicy Local sees a client address it can answer, as
 * on a real node. See {@link ExternalClients} for how real addresses map to it.
 */
export const EXTERNAL_CLIENT = '203.0.113.1';
/** How many distinct outside clients get their own inside address. */
const MAX_EXTERNAL_CLIENTS = 250;

/**
 * The inside address of a real client. A client address that can exist in
 * the lab (not a node's or the underlay's, not a pod's) is carried in as it
 * is: the node holds it on its lo (so the emulated connection to the Service
 * starts from it and the reply, un-DNATed by conntrack, is delivered back to
 * the node's socket), and a backend behind externalTrafficPolicy: Local sees
 * the real client, as kube-proxy promises (Cluster masquerades it to the
 * node, as kube-proxy does). That includes a host client on loopback outside
 * the lab's underlay (`curl --interface 127.0.9.9`): a pod answers 127.x
 * other than its own 127.0.0.1 through its default route (netstack/pod-net.ts).
 * Two kinds cannot be carried and get a TEST-NET-3 stand-in each, in order
 * of arrival: 127.0.0.1 (curl's default source; every pod's own loopback
 * address, so a pod would answer itself) is 203.0.113.1; an address inside
 * the underlay would shadow a node's. `podlab node N lb` lists the mapping.
 */
export class ExternalClients {
  private readonly standIns = new Map<string, string>();
  private readonly carried = new Set<string>();

  constructor(
    private readonly stack: NodeDataPlane['stack'],
    private readonly foreign: (ip: string) => boolean,
  ) {
    this.standIns.set('127.0.0.1', EXTERNAL_CLIENT);
  }

  /** The inside address for a real client (added to the node's lo when new). */
  inside(real: string | undefined): string {
    const ip = real?.startsWith('::ffff:') ? real.slice(7) : real;
    if (!ip || !isValidIpv4(ip)) return EXTERNAL_CLIENT;
    if (ip !== '127.0.0.1' && this.foreign(ip)) {
      if (this.carried.has(ip)) return ip;
      if (!this.stack.isLocal(ip) && this.carried.size < MAX_EXTERNAL_CLIENTS) {
        this.stack.addAddress('lo', ip, 32);
        this.carried.add(ip);
        return ip;
      }
    }
    let s = this.standIns.get(ip);
    if (s) return s;
    if (this.standIns.size >= MAX_EXTERNAL_CLIENTS) return EXTERNAL_CLIENT;
    s = `203.0.113.${this.standIns.size + 1}`;
    if (!this.stack.isLocal(s)) this.stack.addAddress('lo', s, 32);
    this.standIns.set(ip, s);
    return s;
  }

  /** `real → inside` lines for the views. */
  view(): string {
    return [...[...this.standIns].map(([r, i]) => `${r} -> ${i}`), ...[...this.carried].map((ip) => `${ip} (carried in)`)].join('\n');
  }
}

/** Services from which `worker: 'auto'` runs the engine in its worker: a full sync of 100 takes about 5 ms on the thread. */
export const WORKER_AT_SERVICES = 100;

/** Connections (or UDP clients) one proxy path carries at most: the userspace proxy, a real NodePort listener. */
const MAX_PROXIED_CONNECTIONS = 1024;
/** A real UDP client of a NodePort is forgotten after conntrack's unreplied-UDP timeout. */
const UDP_CLIENT_IDLE_MS = 30_000;

export interface KubeProxyOptions {
  /** The `--proxy-mode` and its engines (`loadEngineFactory(mode)`: only that mode's code is loaded). */
  engine: EngineFactory;
  node: string;
  /** The node's underlay IP: NodePorts listen here for real. */
  nodeIp: string;
  clusterCidr: string;
  ipvsScheduler?: IpvsSchedulerName;
  clock: Clock;
  rng: SeededRng;
  /** Real sockets may only be bound inside this range (local mode: the lab's 127.x network). */
  allowRealBind: (ip: string) => boolean;
  /**
   * Run the engine in a worker thread (iptables and ipvs modes; the legacy
   * userspace proxy picks backends per accepted connection and stays here):
   * from the first Service (true), from WORKER_AT_SERVICES Services on ('auto'),
   * or never (false, the default). Its time is the worker's monotonic clock,
   * so only with `monotonicClock`.
   */
  worker?: boolean | 'auto';
  /** The engine's worker died (it is restarted after `retryMs`): the agent reports it. */
  onEngineDown?: (reason: string, retryMs: number) => void;
  /** The apiserver: the worker watches it itself, and the followed informers are stopped when the engine moves there. */
  api?: { url: string; credentials: ClientCredentials };
  /** The thread the worker's code runs on with the agent's other workers' (default: a thread of its own). */
  thread?: SharedThread;
}

/** What informers look like to kube-proxy. */
interface ObjectSource {
  list(): KubeObject[];
  on(ev: 'add' | 'delete', fn: (o: KubeObject) => void): unknown;
  on(ev: 'update', fn: (old: KubeObject, o: KubeObject) => void): unknown;
  /** Informers: stopped when the worker takes over (with `api`), or at close. */
  stop?(): unknown;
}

export class KubeProxy implements NatEngine {
  /** The engine on this thread (absent when it runs in the worker). */
  private engine?: ServiceProxyEngine;
  /** The engine's worker, once the first Service exists. */
  private remote?: EngineWorker;
  private readonly engineOptions: EngineOptions;
  /**
   * The informers, once `watch` follows them: a worker started later begins
   * from their lists; with `api`, until the worker watches for itself.
   */
  private sources?: { services: ObjectSource; slices: ObjectSource };
  /** The LoadBalancer Services kept from the followed objects; absent once the worker sends them. */
  private lbIndex? = new LbIndex();
  private lb: LbService[] = [];
  private readonly lbListeners: ((lbs: readonly LbService[]) => void)[] = [];
  /** The node's own TCP, for the userspace proxy and the NodePort edge. */
  readonly tcp: TcpStack;
  private readonly userspaceListeners = new Map<number, { close(): void }>();
  /** Userspace-proxied connections open now. */
  private proxied = 0;
  private readonly nodePorts = new Map<string, net.Server | dgram.Socket>();
  private services: readonly KubeObject[] = [];
  private slices: readonly KubeObject[] = [];
  private pending?: NodeJS.Immediate;
  /** ClusterIPs (as integers) and NodePorts of the current Services: the netfilter hooks' pre-filter. */
  private readonly addresses = new ServiceAddressSet();
  private readonly nat?: ServiceNat;
  /** Inside addresses of real clients of the NodePort and LoadBalancer edges. */
  readonly clients: ExternalClients;

  constructor(
    private readonly dp: NodeDataPlane,
    private readonly o: KubeProxyOptions,
  ) {
    this.engineOptions = {
      nodeName: o.node,
      nodeIP: o.nodeIp,
      localAddresses: [...dp.stack.interfaces.values()].flatMap((i) => i.addrs.map((a) => a.ip)).filter((ip) => !ip.startsWith('127.0.0.1')),
      clusterCidr: o.clusterCidr,
      clock: o.clock,
      rng: o.rng,
      // Node addresses are 127.0.0.x in local mode: only 127.0.0.1 is "localhost" to the rules.
      loopbackCidr: '127.0.0.1/32',
      ipvsScheduler: o.ipvsScheduler,
    };
    if (o.worker !== true || o.engine.mode === 'userspace') this.engine = o.engine.create(this.engineOptions);
    this.tcp = new TcpStack(dp.stack, { clock: o.clock, rng: new Rng(o.rng.int(1, 0x7fffffff)) });
    // After the engine took its list of local addresses: the stand-in external client is not one of them.
    if (!dp.stack.isLocal(EXTERNAL_CLIENT)) dp.stack.addAddress('lo', EXTERNAL_CLIENT, 32);
    const cluster = Cidr.parse(o.clusterCidr);
    this.clients = new ExternalClients(dp.stack, (ip) => !cluster.contains(ip) && !o.allowRealBind(ip));
    // kube-proxy's rules, at the hook points and priorities where iptables keeps them.
    this.nat = dp.installServiceNat(this);
  }

  get mode(): ProxyMode {
    return this.o.engine.mode;
  }

  /** The engine's worker once started (tests make it fail). */
  get engineWorker(): EngineWorker | undefined {
    return this.remote;
  }

  /** Where the engine runs: `worker` or `thread` (the data plane's). */
  get engineHost(): 'worker' | 'thread' {
    return this.engine ? 'thread' : 'worker';
  }

  /**
   * True when `services` Services put the engine in a worker that watches
   * the apiserver itself: then this side need not even list EndpointSlices.
   */
  watchesInWorker(services: number): boolean {
    if (!this.o.api || this.o.engine.mode === 'userspace') return false;
    if (this.o.worker === true) return services > 0;
    return this.o.worker === 'auto' && services >= WORKER_AT_SERVICES;
  }

  /**
   * Follows the Service and EndpointSlice informers: with the engine in the
   * worker, each change goes to it as it comes (one object, a cheap message);
   * on this thread, the lists are applied once per tick.
   */
  watch(services: ObjectSource, slices: ObjectSource): void {
    this.sources = { services, slices };
    for (const [kind, inf] of [['services', services], ['endpointslices', slices]] as const) {
      inf.on('add', (o) => this.changed(kind, o));
      inf.on('update', (_old, o) => this.changed(kind, o));
      inf.on('delete', (o) => this.changed(kind, o, true));
    }
    const ix = this.lbIndex;
    for (const o of services.list()) ix?.putService(objectKey(o), o);
    for (const o of slices.list()) ix?.putSlice(objectKey(o), o);
    this.lbChanged(ix?.take());
    this.update(services.list(), slices.list());
    this.sync();
  }

  /** The LoadBalancer Services with an address (MetalLB's speaker's input), as last known. */
  get loadBalancers(): readonly LbService[] {
    return this.lb;
  }

  /** Calls `fn` whenever the LoadBalancer Services change (a Service's address, ports, policy, ready nodes). */
  onLoadBalancers(fn: (lbs: readonly LbService[]) => void): void {
    this.lbListeners.push(fn);
  }

  private lbChanged(lbs: LbService[] | undefined): void {
    if (!lbs) return;
    this.lb = lbs;
    for (const fn of this.lbListeners) fn(lbs);
  }

  private changed(kind: EngineObjectKind, o: KubeObject, deleted = false): void {
    const src = this.sources;
    // A late event of informers already handed over to the worker.
    if (!src) return;
    const ix = this.lbIndex;
    if (ix) {
      const k = objectKey(o);
      if (kind === 'services') {
        if (deleted) ix.deleteService(k);
        else ix.putService(k, o);
      } else if (deleted) ix.deleteSlice(k);
      else ix.putSlice(k, o);
      this.lbChanged(ix.take());
    }
    if (this.engine) return this.update(src.services.list(), src.slices.list());
    // A worker not started yet starts from the informers' lists (or its own), this change included.
    const w = this.remote ?? this.worker(kind === 'services' && !deleted);
    if (!w || w !== this.remote || this.o.api) return;
    if (deleted) w.delete(kind, objectKey(o));
    else w.put(kind, objectKey(o), o);
  }

  /**
   * The engine's worker; started by the first Service (a node without
   * Services has nothing to decide). Objects seen before it are in the lists
   * it is started with.
   */
  private worker(start: boolean): EngineWorker | undefined {
    if (this.remote || !start) return this.remote;
    const e = this.engineOptions;
    this.remote = new EngineWorker(
      {
        mode: this.o.engine.mode,
        nodeName: e.nodeName,
        nodeIP: e.nodeIP,
        localAddresses: e.localAddresses ?? [],
        clusterCidr: e.clusterCidr ?? '',
        loopbackCidr: e.loopbackCidr ?? '',
        ipvsScheduler: e.ipvsScheduler,
        seed: this.o.rng.int(1, 0x7fffffff),
        ...(this.o.api ? { api: this.o.api } : {}),
      },
      {
        summary: (s) => this.applySummary(s),
        informer: (kind, state, error) => log.info(`kube-proxy worker's ${kind} informer ${state}`, { node: this.o.node, ...(error ? { error } : {}) }),
        down: (reason, retryMs) => {
          log.error('kube-proxy engine worker failed: new connections to Services are dropped until it is back', { node: this.o.node, reason, retryMs });
          this.o.onEngineDown?.(reason, retryMs);
        },
        up: (restarts) => {
          if (restarts) log.info('kube-proxy engine worker restarted', { node: this.o.node, restarts });
        },
      },
      this.o.thread,
    );
    if (this.o.api) {
      this.handOver();
      return this.remote;
    }
    this.remote.replace('services', this.sources?.services.list() ?? this.services);
    this.remote.replace('endpointslices', this.sources?.slices.list() ?? this.slices);
    return this.remote;
  }

  /**
   * The worker watches the apiserver from now on: this side's informers stop
   * and every object they held is let go. The worker lists after this
   * moment, so whatever changes in between is in its list; until its first
   * summary the last LoadBalancer list and service addresses stand.
   */
  private handOver(): void {
    const src = this.sources;
    this.sources = undefined;
    this.services = [];
    this.slices = [];
    this.lbIndex = undefined;
    void src?.services.stop?.();
    void src?.slices.stop?.();
    log.info('kube-proxy worker watches Services and EndpointSlices itself; the data plane dropped its copies', { node: this.o.node });
  }

  /** New Services/EndpointSlices; applied once per tick however many events arrive. */
  update(services: readonly KubeObject[], slices: readonly KubeObject[]): void {
    this.services = services;
    this.slices = slices;
    // Lists given directly (no informers followed): the LoadBalancer Services are theirs.
    if (!this.sources && !this.o.api) this.lbChanged(loadBalancerServices(services, slices));
    if (this.engine && this.o.worker === 'auto' && this.o.engine.mode !== 'userspace' && services.length >= WORKER_AT_SERVICES) {
      log.info('kube-proxy engine moves to a worker thread', { node: this.o.node, services: services.length });
      this.engine = undefined;
      if (this.pending) clearImmediate(this.pending);
      this.pending = undefined;
    }
    if (!this.engine) {
      // The worker diffs the lists against what it has by object identity: only changes are sent.
      const w = this.worker(services.length > 0);
      if (this.o.api) return;
      w?.replace('services', services);
      w?.replace('endpointslices', slices);
      return;
    }
    if (this.pending) return;
    this.pending = setImmediate(() => {
      this.pending = undefined;
      this.sync();
    });
  }

  /** Applies the current state now (also used by tests); with the worker, sends what changed. */
  sync(): void {
    const e = this.engine;
    if (!e) {
      // The worker watches for itself (or will, from the first Service).
      if (this.o.api) return;
      // Followed informers are newer than the last lists given (their changes went to the worker one by one).
      const src = this.sources;
      this.update(src ? src.services.list() : this.services, src ? src.slices.list() : this.slices);
      return;
    }
    e.update(this.services, this.slices);
    this.nat?.rulesChanged();
    const { vips, nodePorts, sockets } = serviceAddresses(this.services, e.proxyPorts());
    this.addresses.set(vips, nodePorts);
    this.flushStaleUdp(liveEndpoints(this.slices));
    this.syncUserspaceListeners(e);
    void this.syncNodePorts(sockets);
  }

  /** A sync in the worker finished: what this side keeps of it. */
  private applySummary(s: EngineSummary): void {
    this.addresses.apply(s);
    if (!this.lbIndex) this.lbChanged(s.lb);
    this.nat?.rulesChanged();
    if (s.goneEndpoints.length) this.flushStaleUdp(undefined, new Set(s.goneEndpoints));
    if (s.sockets) void this.syncNodePorts(s.sockets);
  }

  /** Where the engine is and what it did, for `podlab node NODE stats`. */
  stats(): Record<string, unknown> {
    const r = this.remote;
    const held = r?.objectsHeld;
    return {
      mode: this.o.engine.mode,
      engine: this.engineHost,
      // Services and EndpointSlices this thread holds (its informers' caches and the worker's feed): none once the worker watches.
      onThread: { services: (this.sources?.services.list().length ?? 0) + (held?.services ?? 0), endpointslices: (this.sources?.slices.list().length ?? 0) + (held?.endpointslices ?? 0) },
      loadBalancers: this.lb.length,
      ...(r?.lastSummary ? { services: r.lastSummary.services, endpointslices: r.lastSummary.slices } : {}),
      ...(r ? { worker: r.state, restarts: r.restarts, decisions: r.decisions, lastSyncMs: r.lastSummary && Math.round(r.lastSummary.syncMs * 10) / 10, ...(r.lastError ? { lastError: r.lastError.split('\n')[0] } : {}) } : {}),
      ...(this.nat ? { queue: { waiting: this.nat.waiting, ...this.nat.queueStats } } : {}),
    };
  }

  wants(dst: number, dport: number, isLocal: () => boolean): boolean {
    return this.addresses.wants(dst, dport, isLocal);
  }

  /** The netfilter hooks' question: what to do with the first packet of a connection (later, from the worker). */
  decide(pkt: Parameters<NatEngine['decide']>[0]): NatDecision | null | Promise<NatDecision | null> {
    // The human-readable rule path costs 15-30% of a decision: built only while a trace runs.
    const q: ServicePacket = { ...pkt, fromHost: !pkt.fromLocalPod && pkt.src === this.o.nodeIp, ...(this.dp.tracer.current ? {} : { trace: false as const }) };
    if (this.engine) return this.toNat(this.engine.decide(q), pkt.src);
    const r = this.remote;
    // No worker yet: no Service either, so nothing is a service address.
    if (!r) return null;
    return r.decide(q).then((d) => this.toNat(d, pkt.src));
  }

  /** An engine's decision as the NAT hooks apply it. */
  private toNat(d: Decision | null, src: string): NatDecision | null {
    if (!d) return null;
    switch (d.kind) {
      case 'dnat':
        return {
          kind: 'dnat',
          to: d.to,
          masquerade: d.masquerade,
          service: d.servicePort,
          steps: d.steps,
          onOpen: () => {
            const e = this.engine;
            if (e) {
              e.connectionOpened(d.key);
              return { onClose: () => e.connectionClosed(d.key) };
            }
            // Only IPVS counts connections (lc, wlc, sed, nq, persistence): the other engines need no message.
            const r = this.remote;
            if (this.o.engine.mode !== 'ipvs' || !r) return;
            r.opened(d.key);
            return { onClose: () => r.closed(d.key) };
          },
        };
      case 'reject':
        return { kind: 'reject', reason: `${d.reason}: ${d.steps[d.steps.length - 1] ?? ''}`.trim(), steps: d.steps };
      case 'drop':
        return { kind: 'drop', reason: d.reason, steps: d.steps };
      case 'userspace':
        // The legacy proxy: the connection is redirected to the node's own listener.
        return { kind: 'redirect', to: { ip: this.gatewayFor(src), port: d.proxyPort }, service: d.service, steps: d.steps };
    }
  }

  /** The node address a client reaches the userspace proxy on: cni0's for local pods, the node IP otherwise. */
  private gatewayFor(src: string): string {
    const r = this.dp.stack.routes.lookup(src);
    return (r && this.dp.stack.sourceFor(r)) || this.o.nodeIp;
  }

  /**
   * kube-proxy flushes UDP conntrack entries of endpoints that are gone (TCP
   * ones fail on their own): those not `live`, or those `gone` (the worker's
   * summary names the endpoints that went since its last one).
   */
  private flushStaleUdp(live?: Set<string>, gone?: Set<string>): void {
    const stale = (ep: string) => (live ? !live.has(ep) : !!gone?.has(ep));
    const n = this.dp.netfilter.conntrack.deleteWhere((e) => e.orig.proto === 'udp' && !!e.dnat && stale(`${e.dnat.ip}:${e.dnat.port}`));
    if (n) log.info('flushed UDP conntrack entries of removed endpoints', { node: this.o.node, entries: n });
  }

  private syncUserspaceListeners(engine: ServiceProxyEngine): void {
    const want = new Map(engine.proxyPorts().filter((p) => p.protocol === 'tcp').map((p) => [p.port, p.servicePort]));
    for (const [port, l] of this.userspaceListeners) {
      if (want.has(port)) continue;
      l.close();
      this.userspaceListeners.delete(port);
    }
    for (const [port, spn] of want) {
      if (this.userspaceListeners.has(port)) continue;
      const server = this.tcp.listen(port, {}, (client) => this.proxyUserspace(client, spn));
      this.userspaceListeners.set(port, server);
    }
  }

  /** One proxied connection: the node opens a second connection to a backend and copies both ways. */
  private proxyUserspace(client: TcpSocket, spn: string): void {
    const choice = this.engine?.pickBackend(spn, client.remoteAddress) ?? null;
    // Each proxied connection costs two sockets: past the limit new ones are refused, as a proxy out of fds would.
    if (!choice || this.proxied >= MAX_PROXIED_CONNECTIONS) {
      if (choice) this.dp.stack.counters.drop('userspace-proxy-full');
      client.destroy();
      return;
    }
    const upstream = this.tcp.connect({ host: choice.ip, port: choice.port });
    this.proxied++;
    let done = false;
    const release = () => {
      if (done) return;
      done = true;
      this.proxied--;
    };
    client.once('close', release);
    upstream.once('close', release);
    splice(client, upstream);
  }

  /** Real sockets on the node IP at every NodePort (TCP and UDP), opened and closed as Services change. */
  private async syncNodePorts(sockets: NodePortSocket[]): Promise<void> {
    const want = new Map<string, { port: number; proto: 'tcp' | 'udp' }>();
    for (const s of sockets) want.set(`${s.proto}:${s.port}`, s);
    for (const [k, sock] of this.nodePorts) {
      if (want.has(k)) continue;
      sock.close();
      this.nodePorts.delete(k);
    }
    if (!this.o.allowRealBind(this.o.nodeIp)) return;
    for (const [k, { port, proto }] of want) {
      if (this.nodePorts.has(k)) continue;
      try {
        this.nodePorts.set(k, proto === 'tcp' ? await this.openTcpNodePort(port) : await this.openUdpNodePort(port));
        log.info('NodePort open', { node: this.o.node, address: `${this.o.nodeIp}:${port}/${proto}` });
      } catch (e) {
        log.warn('cannot open NodePort', { address: `${this.o.nodeIp}:${port}/${proto}`, error: String(e) });
      }
    }
  }

  /** A real TCP listener whose connections continue inside the lab as node → own NodePort. */
  private openTcpNodePort(port: number): Promise<net.Server> {
    return this.openRealTcp(this.o.nodeIp, port, { ip: this.o.nodeIp, port });
  }

  /**
   * A real TCP listener on `bindIp:port` whose connections continue inside
   * the lab as (inside client address) → `to`, entering the node's rules.
   */
  openRealTcp(bindIp: string, port: number, to: { ip: string; port: number }): Promise<net.Server> {
    const server = net.createServer((real) => {
      real.pause();
      this.carryIn(real, real.remoteAddress, to);
    });
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      // Real clients beyond this are refused by Node (the socket is closed), not queued without end.
      server.maxConnections = MAX_PROXIED_CONNECTIONS;
      server.listen(port, bindIp, () => resolve(server));
    });
  }

  /**
   * Carries a real connection on into the node: a connection of the node's
   * TCP from the client's inside address to `to`, spliced to `real` (which
   * the caller paused); `head` is what was already read from it.
   */
  carryIn(real: net.Socket, client: string | undefined, to: { ip: string; port: number }, head?: Buffer): void {
    const inner = this.tcp.connect({ host: to.ip, port: to.port, localAddress: this.clients.inside(client) });
    if (head?.length) inner.write(head);
    spliceReal(real, inner);
  }

  /**
   * Where a connection to a LoadBalancer address goes inside the node: the
   * address itself (kube-proxy's "loadbalancer IP" rule or IPVS's virtual
   * server takes it), or under the legacy userspace proxy, which has no rule
   * for it, the Service's NodePort on the node. Undefined when no
   * LoadBalancer Service has that address and port.
   */
  loadBalancerTarget(ip: string, port: number, protocol: 'tcp' | 'udp'): { ip: string; port: number } | undefined {
    for (const s of this.lb) {
      if (!s.ingress.includes(ip)) continue;
      const p = s.ports.find((x) => x.port === port && x.protocol === protocol);
      if (!p) continue;
      return this.o.engine.mode === 'userspace' && p.nodePort ? { ip: this.o.nodeIp, port: p.nodePort } : { ip, port };
    }
    return undefined;
  }

  /** A real UDP socket on the node IP at a NodePort. */
  private openUdpNodePort(port: number): Promise<dgram.Socket> {
    return this.openRealUdp(this.o.nodeIp, port, { ip: this.o.nodeIp, port });
  }

  /**
   * A real UDP socket on `bindIp:port`: each client gets its own emulated
   * socket on the node sending to `to`, replies go back to it.
   */
  openRealUdp(bindIp: string, port: number, to: { ip: string; port: number }): Promise<dgram.Socket> {
    const sock = dgram.createSocket('udp4');
    const table = this.udpClients();
    sock.on('message', (msg, rinfo) => table.send(`${rinfo.address}:${rinfo.port}`, rinfo.address, to, msg, (d) => sock.send(d, rinfo.port, rinfo.address)));
    sock.on('close', () => table.close());
    return new Promise((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(port, bindIp, () => resolve(sock));
    });
  }

  /** A table of emulated UDP sockets standing in for real clients (see {@link UdpClients}). */
  udpClients(): UdpClients {
    return new UdpClients(this.dp.stack, this.clients);
  }

  /** `podlab node NODE iptables-save|ipvsadm|ipset|conntrack ...` (the engine's views from wherever it runs). */
  async command(argv: string[]): Promise<string | undefined> {
    const tool = argv[0];
    if (tool === 'conntrack') return this.dp.netfilter.conntrack.format();
    if (tool !== 'iptables-save' && tool !== 'ipvsadm' && tool !== 'ipset') return undefined;
    const stamp = new Date();
    if (this.engine) return engineCommand(this.engine, argv, stamp);
    // A node without Services has no worker yet: asking for its rules starts it.
    return this.worker(true)!.command(argv, stamp);
  }

  close(): void {
    void this.sources?.services.stop?.();
    void this.sources?.slices.stop?.();
    void this.remote?.close();
    this.nat?.close();
    if (this.pending) clearImmediate(this.pending);
    for (const l of this.userspaceListeners.values()) l.close();
    for (const s of this.nodePorts.values()) s.close();
    this.userspaceListeners.clear();
    this.nodePorts.clear();
  }
}

/** Copies two emulated TCP sockets into each other, closing both together. */
function splice(a: TcpSocket, b: TcpSocket): void {
  a.on('data', (d) => b.write(d));
  b.on('data', (d) => a.write(d));
  a.on('end', () => b.end());
  b.on('end', () => a.end());
  a.on('error', () => b.destroy());
  b.on('error', () => a.destroy());
}

/** Copies a real socket and an emulated one into each other. */
function spliceReal(real: net.Socket, inner: TcpSocket): void {
  inner.on('connect', () => real.resume());
  real.on('data', (d) => {
    if (!inner.write(d)) {
      real.pause();
      inner.once('drain', () => real.resume());
    }
  });
  inner.on('data', (d) => {
    if (!real.write(d)) {
      inner.pause();
      real.once('drain', () => inner.resume());
    }
  });
  real.on('end', () => inner.end());
  inner.on('end', () => real.end());
  real.on('error', () => inner.destroy());
  inner.on('error', () => real.destroy());
  real.on('close', () => inner.destroy());
}

/**
 * Emulated UDP sockets on the node, one per real client of a real UDP socket
 * (a NodePort, an LB IP, a router's hand-off): the client's datagrams leave
 * from it, from the client's inside address, and what comes back to it is
 * handed to `reply`. Forgotten after conntrack's UDP timeout and bounded in
 * number (least recently used first), so a scan of source ports cannot grow
 * the node without end.
 */
export class UdpClients {
  private readonly clients = new Map<string, { port: number; close(): void; lastSeen: number }>();
  private readonly sweep: NodeJS.Timeout;

  constructor(
    private readonly stack: NodeDataPlane['stack'],
    private readonly inside: ExternalClients,
  ) {
    this.sweep = setInterval(() => {
      const idle = Date.now() - UDP_CLIENT_IDLE_MS;
      for (const [k, c] of this.clients) if (c.lastSeen < idle) {
        c.close();
        this.clients.delete(k);
      }
    }, UDP_CLIENT_IDLE_MS / 2);
    this.sweep.unref();
  }

  /** Sends `data` from the client known by `key` (real address `client`) to `to`; the first datagram binds its socket with `reply`. */
  send(key: string, client: string | undefined, to: { ip: string; port: number }, data: Buffer, reply: (data: Buffer) => void): void {
    let inner = this.clients.get(key);
    if (inner) this.clients.delete(key); // re-inserted below: the map's order is least recently used first
    else {
      if (this.clients.size >= MAX_PROXIED_CONNECTIONS) {
        const [oldest, c] = this.clients.entries().next().value!;
        c.close();
        this.clients.delete(oldest);
      }
      inner = { ...this.stack.bindUdp(0, { message: (m) => reply(m.data) }), lastSeen: 0 };
    }
    inner.lastSeen = Date.now();
    this.clients.set(key, inner);
    this.stack.sendUdp(inner.port, to.ip, to.port, data, { src: this.inside.inside(client) });
  }

  close(): void {
    clearInterval(this.sweep);
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}
