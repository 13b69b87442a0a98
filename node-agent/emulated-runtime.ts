/**
 * The emulated node kind: podlab's own data plane (./dataplane.ts) in this
 * process, pods as emulated namespaces running podlab's apps, BGP through
 * podlab's speaker. With `--wire raw` (root, inside a podlab namespace or a
 * container) pod packets leave as real frames on the real eth0.
 */
import fs from 'node:fs';
import type { Clock } from '../common/clock.ts';
import { createLogger } from '../common/log.ts';
import { deriveMac, type SeededRng } from '../common/rng.ts';
import type { Node, Pod } from '../control-plane/types.ts';
import { DEFAULT_NODE_PORT_RANGE } from '../control-plane/service-allocator.ts';
import type { NetworkBackend, PlanAction } from '../backends/backend.ts';
import type { BgpTopology, CalicoBgp } from '../backends/bgp/bgp-backend.ts';
import { RawWire, RawWireError, claimFilter, pcapImmediateModeLikely } from '../overlay/underlay-raw.ts';
import { containerStateOverride, startPodApps, stopPodApps, type AppContext } from '../apps/index.ts';
import { NodeDataPlane } from './dataplane.ts';
import type { NodeRuntime, RuntimeIdentity, RuntimePod } from './runtime.ts';
import { ContainerLogs } from './pod-logs.ts';
import { Cidr } from '../packet/cidr.ts';

const log = createLogger('podlab:agent');

export interface EmulatedRuntimeOptions {
  name: string;
  ip: string;
  underlayCidr: string;
  clusterCidr: string;
  backend: NetworkBackend;
  vxlanPort: number;
  vni: number;
  wirePort: number;
  /** 'raw': real frames on eth0 (backends with pods on the underlay, root modes). */
  wire: 'udp' | 'raw';
  bgp: { port: number; holdTime: number; topology: BgpTopology };
  seed: number;
  mtu: number;
  /** The flow cache for established forwarded flows; default on. */
  fastPath?: boolean;
  clock: Clock;
  rng: SeededRng;
  /** Handed to pod apps that watch the cluster (CoreDNS). */
  /** The apiserver and the node's credentials, for apps that watch the cluster (CoreDNS). */
  api?: AppContext['api'];
  /** The agent's shared worker thread, for pod apps with work off the data plane (CoreDNS). */
  thread?: AppContext['thread'];
}

export class EmulatedRuntime implements NodeRuntime {
  /** Set once built: the node's namespace, underlay and pods. */
  dp!: NodeDataPlane;
  rawWire?: RawWire;
  readonly logs = new ContainerLogs();
  private eth0Mac = '';
  /** The tunnel MAC the node registers with: kept from its Node on a restart. */
  private vtepMac = '';

  constructor(private readonly o: EmulatedRuntimeOptions) {}

  async identity(fetchNode: () => Promise<Node | undefined>): Promise<RuntimeIdentity> {
    this.eth0Mac = deriveMac(this.o.seed, `eth0:${this.o.name}`);
    if (this.o.wire === 'raw' && this.o.backend.ipUnderlay) await this.startRawWire();
    const existing = await fetchNode();
    this.vtepMac = this.o.backend.knownVtepMac?.(existing) ?? deriveMac(this.o.seed, `vtep:${this.o.name}`);
    return {
      eth0Mac: this.eth0Mac,
      vtepMac: this.vtepMac,
      underlayPrefixLen: Number(this.o.underlayCidr.split('/')[1]),
    };
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
    const [under, cluster] = [Cidr.parse(this.o.underlayCidr), Cidr.parse(this.o.clusterCidr)];
    const underlay = under.overlaps(cluster) ? undefined : under.toString();
    const raw = new RawWire({ dev, mac, nodeIp: this.o.ip, bgpPort: this.o.bgp.port, nodePorts: [lo, hi], clusterCidr: this.o.clusterCidr, underlay });
    await raw.start();
    this.rawWire = raw;
    this.eth0Mac = mac;
    log.info('raw wire up', { dev, mac, claim: claimFilter(raw.owned!) });
    if (!pcapImmediateModeLikely()) log.warn('libpcap.so (libpcap-dev) not found: cap cannot turn on immediate mode, raw frames may arrive up to a second late');
  }

  async build(podCIDR: string): Promise<void> {
    this.dp = new NodeDataPlane({
      name: this.o.name,
      ip: this.o.ip,
      underlayCidr: this.o.underlayCidr,
      podCIDR,
      vtepMac: this.vtepMac,
      clusterCidr: this.o.clusterCidr,
      vxlanPort: this.o.vxlanPort,
      vni: this.o.vni,
      backend: this.o.backend.name,
      wirePort: this.o.wirePort,
      rawWire: this.rawWire,
      eth0Mac: this.eth0Mac,
      seed: this.o.seed,
      mtu: this.o.mtu,
      fastPath: this.o.fastPath,
      clock: this.o.clock,
      rng: this.o.rng,
    });
    await this.dp.start();
  }

  applyPlan(actions: PlanAction[]): Promise<Set<string>> {
    for (const a of actions) this.dp.applyPlan(a);
    return Promise.resolve(new Set());
  }

  async bgpRouting(podCIDR: string): Promise<CalicoBgp> {
    // The BGP-4 speaker (codec, FSM, RIB) loads only on nodes of a backend that speaks BGP.
    const { CalicoBgp } = await import('../backends/bgp/bgp-backend.ts');
    return new CalicoBgp({
      node: this.o.name,
      ip: this.o.ip,
      podCIDR,
      port: this.o.bgp.port,
      holdTime: this.o.bgp.holdTime,
      topology: this.o.bgp.topology,
      pools: [this.o.clusterCidr],
      clock: this.o.clock,
      seed: this.o.seed,
      apply: (a) => this.dp.applyPlan(a),
      routeVia: (prefix, nextHop, pools) =>
        this.o.backend.learnedRoute?.({ prefix, nextHop, pools, self: { ip: this.o.ip, underlayPrefixLen: Number(this.o.underlayCidr.split('/')[1]) } }) ?? { dev: 'eth0', onlink: false },
    });
  }

  pod(key: string): RuntimePod | undefined {
    const p = this.dp.pods.get(key);
    return p ? { uid: p.opts.uid, ip: p.ip } : undefined;
  }

  pods(): RuntimePod[] {
    return [...this.dp.pods.values()].map((p) => ({ uid: p.opts.uid, ip: p.ip }));
  }

  addPod(p: Pod, key: string, ip: string): Promise<void> {
    if (this.dp.pods.get(key)?.opts.uid === p.metadata.uid) return Promise.resolve();
    const net = this.dp.addPod({ namespace: p.metadata.namespace ?? 'default', name: p.metadata.name, uid: p.metadata.uid, ip });
    log.info('pod network ready', { pod: key, ip, veth: net.hostVeth.name });
    // The containers' built-in apps by image (apps/); a failure is logged and shown in the container's status.
    startPodApps(net, p.spec?.containers ?? [], { podName: p.metadata.name, nodeName: this.o.name, api: this.o.api, thread: this.o.thread, log: (m, f) => (/fail/.test(m) ? log.error(m, f) : log.info(m, f)) }, (c) => this.logs.writer(key, c));
    return Promise.resolve();
  }

  removePod(key: string): Promise<void> {
    const net = this.dp.pods.get(key);
    if (!net) return Promise.resolve();
    stopPodApps(net);
    this.logs.drop(key);
    this.dp.removePod(net);
    log.info('pod network removed', { pod: net.key, ip: net.ip });
    return Promise.resolve();
  }

  containerState(key: string, container: string): Record<string, unknown> {
    return containerStateOverride(this.dp.pods.get(key), container);
  }

  async stop(): Promise<void> {
    await this.dp?.close();
    await this.rawWire?.close();
  }
}
