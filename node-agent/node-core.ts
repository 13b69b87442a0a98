/**
 * A node agent's own work, for every node kind (./runtime.ts): what kubelet,
 * the CNI's host-local IPAM, flanneld and calico-node's confd do on a real node.
 *
 * - Registers its Node (like kubelet) with an InternalIP and the backend's
 *   annotations; the apiserver's node IPAM gives it a podCIDR. A restarted
 *   agent finds its Node and keeps the podCIDR and tunnel MAC, as flanneld
 *   keeps its lease, so peers need not change.
 * - Watches Nodes and applies the backend's plan (one entry set per remote
 *   node); with a BGP backend also the BGPConfiguration, BGPPeers and BGPFilters, and
 *   reconciles the node's speaker.
 * - Watches its Pods and gives each a network and an address from host-local
 *   IPAM, reports them Running, and posts Ready with a heartbeat.
 */
import fs from 'node:fs';
import path from 'node:path';
import { createLogger } from '../common/log.ts';
import { FLANNEL_KUBE_SUBNET_MANAGER, FLANNEL_PUBLIC_IP, PODLAB_ETH0_MAC } from '../control-plane/annotations.ts';
import type { ApiClient } from '../control-plane/client.ts';
import { Informer } from '../control-plane/informer.ts';
import { renewNodeLease } from '../control-plane/node-lease.ts';
import { postEvent } from '../control-plane/event-client.ts';
import { parsePeerIP, type BgpConfiguration, type BgpFilter, type BgpPeer, type IpPool } from '../control-plane/calico.ts';
import type { Node, NodeAddress, Pod } from '../control-plane/types.ts';
import { Cidr } from '../packet/cidr.ts';
import type { Lease, NetworkBackend } from '../backends/backend.ts';
import { sameLease } from '../backends/plan.ts';
import { leaseFromNode } from '../backends/registry.ts';
import type { BgpRouting } from '../backends/bgp/bgp-backend.ts';
import type { LbRoute } from '../edge/bgp-advertiser.ts';
import { HostLocalIpam, IpamError } from './ipam.ts';
import { runningPodStatus, sandboxFailedPodStatus } from './pod-status.ts';
import type { NodeRuntime } from './runtime.ts';
import { formatTimestamp } from '../control-plane/timestamp.ts';


/** The kubelet's nodeStatusReportFrequency: how often an unchanged Node status is posted again. */
const STATUS_REPORT_MS = 5 * 60_000;
/** Backoff of a failed pod sync: first retry, and the longest wait between tries. */
const POD_RETRY_FIRST_MS = 1000;
const POD_RETRY_MAX_MS = 30_000;

export interface NodeCoreOptions {
  name: string;
  /** The node's underlay address: InternalIP, the backend's public IP. */
  ip: string;
  stateDir: string;
  backend: NetworkBackend;
  vni: number;
  heartbeatMs: number;
  /** What this node kind adds to its Node object. */
  kind: {
    labels: Record<string, string>;
    /** Labels also refreshed on an existing Node. */
    patchLabels?: Record<string, string>;
    annotations?: Record<string, string>;
    nodeInfo?: Record<string, string>;
    readyMessage: string;
  };
  /** Re-applies the plan periodically (flanneld's lease resync), when someone changed the tables. */
  resyncMs?: number;
  /** Where the control channel is served over TCP (the kubelet's port, in Node status.daemonEndpoints), if it is. */
  controlPort?: number;
}

/** Peer plans a node computed from its Node events, and those that changed its tables (`podlab node NODE stats`). */
export interface PeerPlanCounts {
  plans: number;
  applied: number;
}

export class NodeCore {
  podCIDR = '';
  vtepMac = '';
  /** Peer node name → underlay IP, from the last lease reconcile. */
  readonly peersByName = new Map<string, string>();
  nodeInformer?: Informer<Node>;
  bgp?: BgpRouting;
  private podInformer?: Informer<Pod>;
  private bgpConfigInformer?: Informer<BgpConfiguration>;
  private bgpPeerInformer?: Informer<BgpPeer>;
  private bgpFilterInformer?: Informer<BgpFilter>;
  private ipPoolInformer?: Informer<IpPool>;
  private ipam!: HostLocalIpam;
  private readonly programmed = new Map<string, Lease>();
  /**
   * Each Node object's lease, read once: the informer keeps an unchanged Node's object, and every plan
   * reads all of them (at 100 nodes a plan per burst of Node events made parsing the same annotations
   * and addresses again a few percent of an agent's start-up CPU).
   */
  private readonly leaseOf = new WeakMap<Node, Lease | string>();
  /** Pods whose sandbox could not get an address (`namespace/name` → uid and the CNI error), retried when one frees. */
  private readonly sandboxFailed = new Map<string, { uid: string; message: string }>();
  /** Plans and pod changes are applied one at a time, in order, so IPAM never races. */
  private queue: Promise<void> = Promise.resolve();
  private bgpQueue: Promise<void> = Promise.resolve();
  /**
   * A peer (or BGP) reconcile is queued and has not started: later Node
   * events need no run of their own, since a run reads the informer's whole
   * list when it starts. While a 100-node lab comes up every agent sees some
   * 400 Node events; one run each made that 400 plans over 100 nodes.
   */
  private peersQueued = false;
  /** The last plan failed for some peer (runtime.applyPlan): every Node event tries again. */
  private peersFailed = false;
  /** Peer plans computed, and those with actions (the node's stats: what the Node events cost it). */
  readonly planCounts: PeerPlanCounts = { plans: 0, applied: 0 };
  private bgpQueued = false;
  /** LoadBalancer routes (MetalLB's BGP mode): what each node announces, by node name; this node's own. */
  private lbByNode = new Map<string, string[]>();
  private lbOwn: readonly LbRoute[] = [];
  private lbKey = '';
  private timers: NodeJS.Timeout[] = [];
  private stopped = false;
  private statusReportedAt = -Infinity;
  private readonly log;

  constructor(
    private readonly o: NodeCoreOptions,
    readonly api: ApiClient,
    readonly runtime: NodeRuntime,
    logName: string,
  ) {
    this.log = createLogger(logName);
  }

  get name(): string {
    return this.o.name;
  }

  /**
   * Registers and builds the node; `watching` runs once the peers are
   * programmed (kube-proxy starts there), `serve` once the pods are (the
   * control socket opens there); then the node posts Ready.
   */
  async start(hooks: { watching?: () => Promise<void>; serve?: () => Promise<void> } = {}): Promise<void> {
    fs.mkdirSync(path.join(this.o.stateDir, 'nodes', this.name), { recursive: true, mode: 0o700 });
    // The runtime first: a raw wire changes which local ports the namespace's kernel keeps, so the
    // apiserver's connection must be opened after it (fetchNode), never carried across.
    let existing: Node | undefined;
    const id = await this.runtime.identity(async () => (existing = (await this.api.get<Node>('nodes', this.name)) ?? undefined));
    this.vtepMac = id.vtepMac;
    const node = await this.register(existing, id.eth0Mac, id.underlayPrefixLen);
    this.podCIDR = node.spec!.podCIDR!;
    await this.runtime.build(this.podCIDR);
    this.ipam = new HostLocalIpam(this.o.stateDir, this.name, this.podCIDR);

    this.nodeInformer = new Informer<Node>(this.api, 'nodes');
    const resync = () => {
      if (this.peersQueued) return;
      this.peersQueued = true;
      this.enqueue(() => {
        this.peersQueued = false;
        return this.reconcilePeers();
      });
    };
    // A Node update that leaves its lease as the plan compares it (sameLease; the Node's status: addresses,
    // conditions, heartbeats; labels) changes no plan: at 100 nodes most of the Node events an agent sees while the
    // lab comes up are such. A Node without a lease is skipped whatever the reason. A plan that failed for some peer
    // is tried again on every event, as before.
    const leaseMoved = (old: Node, cur: Node) => {
      const [a, b] = [this.leaseOfNode(old), this.leaseOfNode(cur)];
      if (typeof a === 'string' || typeof b === 'string') return this.peersFailed || typeof a !== typeof b;
      return this.peersFailed || !sameLease(a, b);
    };
    this.nodeInformer.on('add', resync).on('update', (old: Node, cur: Node) => leaseMoved(old, cur) && resync()).on('delete', resync);
    this.nodeInformer.on('status', (s: unknown) => this.log.debug('node watch', { status: s }));
    await this.nodeInformer.start();
    resync();
    if (this.o.backend.bgp) await this.startBgp();
    await this.queue;
    await hooks.watching?.();

    this.podInformer = new Informer<Pod>(this.api, 'pods', { fieldSelector: `spec.nodeName=${this.name}` });
    this.podInformer.on('add', (p: Pod) => this.enqueueSync(p));
    this.podInformer.on('update', (_o: Pod, p: Pod) => this.enqueueSync(p));
    this.podInformer.on('delete', (p: Pod) => this.enqueue(() => this.removePod(p)));
    await this.podInformer.start();
    for (const p of this.podInformer.list()) this.enqueueSync(p);
    await this.queue;
    this.releaseOrphanAddresses();
    if (this.o.resyncMs) this.timers.push(setInterval(resync, this.o.resyncMs));

    await hooks.serve?.();
    await this.setReady();
    await renewNodeLease(this.api, this.name).catch(() => {});
    this.timers.push(setInterval(() => void Promise.all([this.reportStatusIfDue(), renewNodeLease(this.api, this.name)]).catch(() => {}), this.o.heartbeatMs));
    for (const t of this.timers) t.unref();
  }

  /**
   * syncPod in the queue; a failed one (the apiserver too slow to answer, say)
   * is tried again with backoff while the pod still exists, as the kubelet's pod
   * workers requeue, rather than waiting for the pod's next change.
   */
  private enqueueSync(p: Pod, attempt = 0): void {
    this.enqueue(async () => {
      try {
        await this.syncPodOrReport(p);
      } catch (e) {
        const key = this.podKey(p);
        const delayMs = Math.min(POD_RETRY_MAX_MS, POD_RETRY_FIRST_MS * 2 ** attempt);
        this.log.error('sync failed', { node: this.name, pod: key, retryInMs: delayMs, error: String(e) });
        const t = setTimeout(() => {
          const now = this.podInformer?.get(key);
          if (!this.stopped && now && now.metadata.uid === p.metadata.uid) this.enqueueSync(now, attempt + 1);
        }, delayMs);
        t.unref();
        this.timers.push(t);
      }
    });
  }

  private enqueue(fn: () => Promise<void>): void {
    this.queue = this.queue.then(fn).catch((e) => this.log.error('sync failed', { node: this.name, error: String(e) }));
  }

  // ------------------------------------------------------------ Node (kubelet + the backend's agent)

  /** Creates the Node or, when it exists (made by `up`, or an agent restart), refreshes its annotations (its addresses go with Ready). */
  private async register(existing: Node | undefined, eth0Mac: string | undefined, underlayPrefixLen: number): Promise<Node> {
    const annotations: Record<string, string | null> = {
      ...(eth0Mac ? { [PODLAB_ETH0_MAC]: eth0Mac } : {}),
      [FLANNEL_PUBLIC_IP]: this.o.ip,
      [FLANNEL_KUBE_SUBNET_MANAGER]: 'true',
      ...this.o.kind.annotations,
      ...this.o.backend.annotations({ ip: this.o.ip, underlayPrefixLen, vni: this.o.vni, vtepMac: this.vtepMac }),
    };
    if (existing) {
      // The addresses go with the Ready status (setReady): posted here as well, they were one more event for
      // every node's Node watch while a lab comes up (a hundred nodes: a hundred events each).
      const labels = this.o.kind.patchLabels;
      const patched = await this.api.patch<Node>('nodes', this.name, { metadata: { annotations, ...(labels ? { labels } : {}) } });
      if (!patched.spec?.podCIDR) throw new Error(`node ${this.name} has no podCIDR`);
      return patched;
    }
    const { addresses, daemonEndpoints, nodeInfo } = this.statusFields();
    const created = await this.api.create<Node>('nodes', {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: this.name, labels: this.o.kind.labels, annotations: Object.fromEntries(Object.entries(annotations).filter(([, v]) => v !== null)) },
      spec: {},
      status: { addresses, conditions: [], ...(nodeInfo ? { nodeInfo } : {}), ...(daemonEndpoints ? { daemonEndpoints } : {}) },
    });
    if (!created.spec?.podCIDR) throw new Error(`apiserver gave node ${this.name} no podCIDR`);
    return created;
  }

  /** What the node reports of itself in every status post besides its conditions, as the kubelet's setters do. */
  private statusFields(): { addresses: NodeAddress[]; daemonEndpoints: { kubeletEndpoint: { Port: number } } | null; nodeInfo?: Record<string, string> } {
    return {
      addresses: [
        { type: 'InternalIP', address: this.o.ip },
        { type: 'Hostname', address: this.name },
      ],
      // Where the control channel is served over TCP, if it is (control-remote.ts); null clears an old one.
      daemonEndpoints: this.o.controlPort ? { kubeletEndpoint: { Port: this.o.controlPort } } : null,
      ...(this.o.kind.nodeInfo ? { nodeInfo: this.o.kind.nodeInfo } : {}),
    };
  }

  /**
   * The kubelet's status loop: the Lease renewed beside this is the heartbeat;
   * the Node's status is posted when it differs from what the apiserver holds
   * (not Ready, say, after the lifecycle controller marked it Unknown) or every
   * nodeStatusReportFrequency. Posting it every 10 s would send every Node
   * change to every node's watch: 100 nodes make 1,000 events a second.
   */
  private async reportStatusIfDue(): Promise<void> {
    const ready = this.readyCondition();
    if (ready?.status === 'True' && ready.message === this.o.kind.readyMessage && Date.now() - this.statusReportedAt < STATUS_REPORT_MS) return;
    await this.setReady();
  }

  private readyCondition(): { status?: string; message?: string; lastTransitionTime?: string } | undefined {
    return this.nodeInformer?.get(this.name)?.status?.conditions?.find((c) => c.type === 'Ready');
  }

  private async setReady(): Promise<void> {
    const now = formatTimestamp(Date.now());
    const ready = this.readyCondition();
    // The transition time moves only when the status does.
    const since = ready?.status === 'True' && ready.lastTransitionTime ? ready.lastTransitionTime : now;
    await this.api.patchStatus<Node>('nodes', this.name, {
      status: { ...this.statusFields(), conditions: [{ type: 'Ready', status: 'True', lastHeartbeatTime: now, lastTransitionTime: since, reason: 'KubeletReady', message: this.o.kind.readyMessage }] },
    });
    this.statusReportedAt = Date.now();
  }

  // ------------------------------------------------------------ peers (the backend's plan)

  /** A Node's lease (or why it has none), read once per Node object. */
  private leaseOfNode(n: Node): Lease | string {
    let l = this.leaseOf.get(n);
    if (l === undefined) this.leaseOf.set(n, (l = leaseFromNode(n)));
    return l;
  }

  /** flanneld's loop body: compute the plan from the leases, then have the runtime apply it. */
  private async reconcilePeers(): Promise<void> {
    if (!this.nodeInformer || this.stopped) return;
    const leases: Lease[] = [];
    this.peersByName.clear();
    for (const n of this.nodeInformer.list()) {
      const l = this.leaseOfNode(n);
      if (typeof l === 'string') {
        this.log.debug('skipping node', { reason: l });
        continue;
      }
      this.peersByName.set(l.node, l.publicIp);
      leases.push(l);
    }
    const self = { node: this.name, vni: this.o.vni };
    const actions = this.o.backend.plan(leases, this.programmed, self);
    this.planCounts.plans++;
    if (actions.length) this.planCounts.applied++;
    const failed = await this.runtime.applyPlan(actions);
    this.peersFailed = failed.size > 0;
    for (const l of leases) {
      if (l.node === this.name || !this.o.backend.accepts(l, self)) continue;
      if (failed.has(l.node)) this.programmed.delete(l.node);
      else this.programmed.set(l.node, l);
    }
    const leased = new Set(leases.map((l) => l.node));
    for (const name of [...this.programmed.keys()]) if (!leased.has(name)) this.programmed.delete(name);
    if (actions.length) this.log.info('plan applied', { node: this.name, backend: this.o.backend.name, actions: actions.length });
  }

  // ------------------------------------------------------------ BGP (calico-node)

  /** calico-node's role: the node's speaker fed by Nodes, the BGPConfiguration, BGPPeers, BGPFilters and IPPools. */
  private async startBgp(): Promise<void> {
    this.bgp = await this.runtime.bgpRouting(this.podCIDR);
    this.bgpConfigInformer = new Informer<BgpConfiguration>(this.api, 'bgpconfigurations');
    this.bgpPeerInformer = new Informer<BgpPeer>(this.api, 'bgppeers');
    this.bgpFilterInformer = new Informer<BgpFilter>(this.api, 'bgpfilters');
    this.ipPoolInformer = new Informer<IpPool>(this.api, 'ippools');
    const again = () => this.reconcileBgp();
    for (const inf of [this.bgpConfigInformer, this.bgpPeerInformer, this.bgpFilterInformer, this.ipPoolInformer, this.nodeInformer!] as Informer[]) inf.on('add', again).on('update', again).on('delete', again);
    await Promise.all([this.bgpConfigInformer.start(), this.bgpPeerInformer.start(), this.bgpFilterInformer.start(), this.ipPoolInformer.start()]);
    if (this.o.resyncMs) this.timers.push(setInterval(again, this.o.resyncMs));
    this.reconcileBgp();
    await this.bgpQueue;
  }

  /** The addresses of the BGPPeers this node peers with (external routers): who may hand it routed connections. */
  bgpPeerAddresses(): string[] {
    return (this.bgpPeerInformer?.list() ?? [])
      .filter((p) => !p.spec?.node || p.spec.node === this.name)
      .map((p) => parsePeerIP(p.spec?.peerIP ?? '')?.ip)
      .filter((ip): ip is string => !!ip);
  }

  /** Reconciles BGP peers, one run at a time, in order. */
  reconcileBgp(): void {
    const bgp = this.bgp;
    if (!bgp || this.stopped || !this.bgpConfigInformer || this.bgpQueued) return;
    this.bgpQueued = true;
    this.bgpQueue = this.bgpQueue
      .then(async () => {
        this.bgpQueued = false;
        await bgp.reconcile({ nodes: this.nodeInformer!.list(), config: this.bgpConfigInformer!.list().find((c) => c.metadata.name === 'default'), peers: this.bgpPeerInformer!.list(), filters: this.bgpFilterInformer!.list(), pools: this.ipPoolInformer!.list(), lb: this.lbByNode });
        bgp.advertise?.(this.lbOwn);
      })
      .catch((e) => this.log.error('bgp reconcile failed', { node: this.name, error: String(e) }));
  }

  /**
   * MetalLB's BGP mode: the LoadBalancer routes this node announces and what
   * every node announces (the node peers' filters accept each node's own).
   */
  setLoadBalancerRoutes(own: readonly LbRoute[], byNode: Map<string, string[]>): void {
    const key = JSON.stringify([own, [...byNode]]);
    if (key === this.lbKey) return;
    this.lbKey = key;
    this.lbOwn = own;
    this.lbByNode = byNode;
    this.reconcileBgp();
  }

  // ------------------------------------------------------------ pods (kubelet + CNI)

  /** The Pod object of a pod on this node, as the informer has it (`namespace/name`). */
  podObject(key: string): Pod | undefined {
    return this.podInformer?.get(key);
  }

  private podKey(p: Pod): string {
    return `${p.metadata.namespace ?? 'default'}/${p.metadata.name}`;
  }

  /**
   * syncPod, and what the kubelet reports when CNI cannot give the sandbox an
   * address: a FailedCreatePodSandBox Event and a Pending status saying why
   * (./pod-status.ts). Written once per distinct error, so the status patch
   * this causes (an informer update, synced again) does not loop; the pod is
   * retried when an address frees on this node.
   */
  private async syncPodOrReport(p: Pod): Promise<void> {
    const key = this.podKey(p);
    try {
      await this.syncPod(p);
      this.sandboxFailed.delete(key);
    } catch (e) {
      if (!(e instanceof IpamError)) throw e;
      const message = `Failed to create pod sandbox: plugin type="host-local" failed (add): ${e.message}`;
      const had = this.sandboxFailed.get(key);
      this.sandboxFailed.set(key, { uid: p.metadata.uid, message });
      if (had?.uid === p.metadata.uid && had.message === message) return;
      this.log.warn('pod sandbox failed', { node: this.name, pod: key, error: e.message });
      await postEvent(this.api, p, 'Warning', 'FailedCreatePodSandBox', message, { component: 'kubelet', host: this.name }).catch(() => {});
      await this.api.patchStatus<Pod>('pods', p.metadata.name, sandboxFailedPodStatus(p, this.o.ip, message), p.metadata.namespace);
    }
  }

  /** An address freed: the pods that found the range exhausted try again, in the order they failed. */
  private retrySandboxes(): void {
    for (const key of this.sandboxFailed.keys()) {
      this.enqueue(async () => {
        const p = this.podInformer?.get(key);
        if (!p || p.metadata.uid !== this.sandboxFailed.get(key)?.uid) {
          this.sandboxFailed.delete(key);
          return;
        }
        await this.syncPodOrReport(p);
      });
    }
  }

  private async syncPod(p: Pod): Promise<void> {
    if (this.stopped || p.metadata.deletionTimestamp) return;
    const key = this.podKey(p);
    const have = this.runtime.pod(key);
    let ip: string;
    if (have && have.uid === p.metadata.uid) ip = have.ip;
    else {
      if (have) await this.teardown(key, have.uid);
      ip = this.ipam.allocate(p.metadata.uid, p.status?.podIP && this.inPodCidr(p.status.podIP) ? p.status.podIP : undefined);
    }
    await this.runtime.addPod(p, key, ip);
    if (p.status?.phase !== 'Running' || p.status?.podIP !== ip) await this.reportRunning(p, key, ip);
  }

  private inPodCidr(ip: string): boolean {
    return Cidr.parse(this.podCIDR).contains(ip);
  }

  private async reportRunning(p: Pod, key: string, ip: string): Promise<void> {
    const rt = this.runtime;
    await this.api.patchStatus<Pod>('pods', p.metadata.name, runningPodStatus(p, ip, this.o.ip, (name) => rt.containerState?.(key, name) ?? {}), p.metadata.namespace);
  }

  private async removePod(p: Pod): Promise<void> {
    const key = this.podKey(p);
    const have = this.runtime.pod(key);
    if (have && have.uid === p.metadata.uid) await this.teardown(key, have.uid);
    this.ipam.release(p.metadata.uid);
    if (this.sandboxFailed.get(key)?.uid === p.metadata.uid) this.sandboxFailed.delete(key);
    this.retrySandboxes();
  }

  private async teardown(key: string, uid: string): Promise<void> {
    await this.runtime.removePod(key);
    this.ipam.release(uid);
  }

  /** Frees addresses whose pods no longer exist (a pod deleted while the agent was down). */
  private releaseOrphanAddresses(): void {
    const live = new Set(this.runtime.pods().map((p) => p.uid));
    let freed = false;
    for (const [ip, owner] of this.ipam.allocations()) {
      if (!live.has(owner)) {
        this.ipam.release(owner);
        this.log.info('released orphan address', { ip, owner });
        freed = true;
      }
    }
    if (freed) this.retrySandboxes();
  }

  /** Stops watching; a clean stop tells BGP peers at once (Cease), so they withdraw our routes without waiting for the hold time. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    void this.nodeInformer?.stop();
    void this.podInformer?.stop();
    void this.bgpConfigInformer?.stop();
    void this.bgpPeerInformer?.stop();
    void this.bgpFilterInformer?.stop();
    void this.ipPoolInformer?.stop();
    await this.queue.catch(() => {});
    await this.bgpQueue.catch(() => {});
    await this.bgp?.stop().catch(() => {});
  }
}
