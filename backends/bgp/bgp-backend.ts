/**
 * The Calico-style backend: what calico-node's BIRD does on a real node.
 *
 * The node announces its podCIDR with itself as next hop and installs what it
 * learns as `<podCIDR> via <peer IP> dev eth0 proto bird`; packets then cross
 * the underlay with pod addresses untouched. Who peers with whom is computed
 * from the watched Nodes, the `default` BGPConfiguration and BGPPeers, then
 * applied to the speaker as a diff (compute a plan, then apply it):
 *
 * The peers come from ./peers.ts; of each pair the node whose IP compares
 * greater as a string dials (Calico's `passive on` rule, in bgp/speaker.ts).
 * What the speaker accepts from each peer is Calico's filters (./filters.ts),
 * given to it as the RIB's policy and replaced whenever Nodes, BGPPeers,
 * BGPFilters or IPPools change.
 */
import type { Clock } from '../../common/clock.ts';
import { createLogger } from '../../common/log.ts';
import { BgpSpeaker, formatSummary, type RibPolicy, type RouteSummary } from '../../bgp/index.ts';
import { exportVerdict, importVerdict, ipPoolCidrs, lbPrefixes, nodeOwners, peerKinds, type FilterContext, type PeerKind } from './filters.ts';
import type { LbRoute } from '../../edge/bgp-advertiser.ts';
import { formatLargeCommunity } from '../../bgp/codec/index.ts';
import type { PlanAction } from '../backend.ts';
import type { IpPool } from '../../control-plane/calico.ts';
import { clusterAsn, desiredPeers, reflectorClusterId, type BgpInputs, type BgpTopology, type DesiredPeer } from './peers.ts';

export { RR_LABEL, RR_CLUSTER_ANNOTATION, DEFAULT_RR_CLUSTER_ID, type BgpTopology } from './peers.ts';

/** A node's BGP, whichever speaker runs it: reconciled from the cluster, with its views. */
export interface BgpRouting {
  reconcile(input: BgpInputs): Promise<void>;
  /** Resets sessions (all, or towards one peer address); the addresses reset. */
  reset?(peer?: string): string[];
  /** Sets the LoadBalancer routes this node originates (MetalLB's BGP mode); the speaker announces the difference. */
  advertise?(routes: readonly LbRoute[]): void;
  summary(): Promise<string> | string;
  routes(): Promise<string> | string;
  stop(): Promise<void>;
}

export interface BgpBackendOptions {
  node: string;
  ip: string;
  podCIDR: string;
  /** The BGP port every podlab node listens on (179 when it may, else e.g. 1179). */
  port: number;
  holdTime: number;
  topology: BgpTopology;
  /** The default IP pool (the cluster CIDR); the IPPool objects join it (./filters.ts ipPoolCidrs). */
  pools: string[];
  clock: Clock;
  seed: number;
  /** Installs or removes a learned route in the node's table. */
  apply: (a: PlanAction) => void;
  /** The device a learned route goes out of (default eth0); the pools as last reconciled. */
  routeVia?: (prefix: string, nextHop: string, pools: IpPool[]) => { dev: string; onlink: boolean };
}

interface Learned {
  nextHop: string;
  peer: string;
  dev: string;
  onlink: boolean;
}


const log = createLogger('podlab:bgp');

export class CalicoBgp implements BgpRouting {
  speaker?: BgpSpeaker;
  private asn = clusterAsn(undefined);
  private clusterId: string | undefined;
  private readonly configured = new Map<string, DesiredPeer>();
  private readonly learned = new Map<string, Learned>();
  private pools: IpPool[] = [];
  private starting?: Promise<void>;
  private policyKey = '';
  private policy: RibPolicy = { import: () => ({ accept: false, rule: 'no policy yet' }) };
  /** Every LoadBalancer route some node announces: never installed in the table. */
  private lb = new Set<string>();
  /** The LoadBalancer routes this node originates, by prefix. */
  private readonly own = new Map<string, LbRoute>();

  constructor(private readonly o: BgpBackendOptions) {}

  /** Recomputes peers from the cluster's state and applies the difference. */
  async reconcile(input: BgpInputs): Promise<void> {
    this.pools = input.pools ?? [];
    // A pool's ipipMode changed: routes already learned move between eth0 and the tunnel.
    for (const [prefix, l] of this.learned) this.install(prefix, l.nextHop, l.peer);
    const asn = clusterAsn(input.config);
    const clusterId = reflectorClusterId(this.o.node, this.o.topology, input.nodes);
    if (!this.speaker || asn !== this.asn || clusterId !== this.clusterId) await this.restart(asn, clusterId);
    const want = desiredPeers({ self: this.o.node, port: this.o.port, topology: this.o.topology, reflector: clusterId !== undefined }, input);
    const speaker = this.speaker!;
    this.updatePolicy(input, want);
    for (const [addr, have] of this.configured) {
      const w = want.get(addr);
      if (!w || JSON.stringify(w) !== JSON.stringify(have)) {
        speaker.removePeer(addr);
        this.configured.delete(addr);
      }
    }
    for (const [addr, w] of want) {
      if (this.configured.has(addr)) continue;
      speaker.addPeer({ address: w.address, port: w.port, asn: w.asn, rrClient: w.rrClient, passive: w.passive, description: w.description, localAddress: this.o.ip, holdTime: this.o.holdTime });
      this.configured.set(addr, w);
    }
  }

  /** Rebuilds the filters from the cluster's state; the speaker re-judges what it holds when they changed. */
  private updatePolicy(input: BgpInputs, want: Map<string, DesiredPeer>): void {
    const ctx: FilterContext = { pools: ipPoolCidrs(input, this.o.pools), nodes: nodeOwners(input) };
    const kinds = peerKinds(want, input.filters ?? []);
    const key = JSON.stringify([ctx.pools, [...ctx.nodes], [...kinds]]);
    if (key === this.policyKey) return;
    this.policyKey = key;
    this.lb = lbPrefixes(ctx);
    // A route installed before it was known as a LoadBalancer route leaves the table.
    for (const prefix of [...this.learned.keys()]) if (this.lb.has(prefix)) this.forget(prefix);
    this.policy = calicoPolicy(ctx, kinds);
    this.speaker?.setPolicy(this.policy);
  }

  private async restart(asn: number, clusterId: string | undefined): Promise<void> {
    await this.stop();
    this.asn = asn;
    this.clusterId = clusterId;
    const speaker = new BgpSpeaker({
      asn,
      routerId: this.o.ip,
      listen: { host: this.o.ip, port: this.o.port },
      holdTime: this.o.holdTime,
      routeReflector: clusterId ? { clusterId } : undefined,
      clock: this.o.clock,
      seed: this.o.seed,
      policy: this.policy,
    });
    speaker.on('route-add', (prefix, r) => this.install(prefix, r.nextHop, r.peer));
    speaker.on('route-del', (prefix) => {
      if (this.learned.has(prefix)) this.forget(prefix);
    });
    speaker.on('peer-state', (peer, state, reason) => log.info('bgp peer', { node: this.o.node, peer, state, reason }));
    speaker.announce(this.o.podCIDR, { nextHop: this.o.ip });
    for (const r of this.own.values()) speaker.announce(r.prefix, lbAnnounceOptions(r, this.o.ip));
    this.speaker = speaker;
    this.starting = speaker.start();
    await this.starting;
  }

  /** Installs (or moves) a learned route as the backend shapes it: `via NEXT-HOP dev eth0`, or `dev tunl0 onlink`. */
  private install(prefix: string, nextHop: string, peer: string): void {
    // kube-proxy serves LoadBalancer addresses on every node: a route to another node's would only bypass it.
    if (this.lb.has(prefix)) return;
    const { dev, onlink } = this.o.routeVia?.(prefix, nextHop, this.pools) ?? { dev: 'eth0', onlink: false };
    const have = this.learned.get(prefix);
    if (have && have.nextHop === nextHop && have.dev === dev && have.onlink === onlink) return;
    this.learned.set(prefix, { nextHop, peer, dev, onlink });
    this.o.apply({ op: 'add-route', cidr: prefix, via: nextHop, dev, onlink, proto: 'bird', node: peer });
  }

  private forget(prefix: string): void {
    this.learned.delete(prefix);
    this.o.apply({ op: 'del-route', cidr: prefix, node: '' });
  }

  /** MetalLB's BGP mode: announces new and changed LoadBalancer routes, withdraws those gone. */
  advertise(routes: readonly LbRoute[]): void {
    const want = new Map(routes.map((r) => [r.prefix, r]));
    for (const [prefix] of this.own) {
      if (want.has(prefix)) continue;
      this.own.delete(prefix);
      this.speaker?.withdraw(prefix);
      log.info('LoadBalancer route withdrawn', { node: this.o.node, prefix });
    }
    for (const [prefix, r] of want) {
      if (JSON.stringify(this.own.get(prefix)) === JSON.stringify(r)) continue;
      this.own.set(prefix, r);
      this.speaker?.announce(prefix, lbAnnounceOptions(r, this.o.ip));
      log.info('LoadBalancer route announced', { node: this.o.node, prefix, services: r.services, localPref: r.localPref, communities: r.communities.length + r.largeCommunities.length });
    }
  }

  /**
   * Resets BGP sessions (all, or towards one peer address), as `birdc restart`
   * does: the session goes down with Cease, routes learned over it are
   * withdrawn, and the next reconcile brings it up again.
   */
  reset(peer?: string): string[] {
    const gone = [...this.configured.keys()].filter((a) => !peer || a === peer);
    for (const a of gone) {
      this.speaker?.removePeer(a);
      this.configured.delete(a);
    }
    return gone;
  }

  /** `podlab node NODE bgp summary`: like `birdc show protocols` / `calicoctl node status`. */
  summary(): string {
    if (!this.speaker) return 'BGP speaker not running\n';
    const s = this.speaker.summary();
    return `BGP router identifier ${s.routerId}, local AS number ${s.asn}${s.clusterId ? `, route reflector (cluster ${s.clusterId})` : ''}\n${formatSummary(s)}\n`;
  }

  /** `podlab node NODE bgp routes`: the Loc-RIB, best paths first, with the reason each won; then what was filtered and by which rule (`birdc show route filtered`). */
  routes(): string {
    if (!this.speaker) return '';
    const filtered = this.speaker.rejected();
    const tail = filtered.length
      ? `Filtered (received, not installed):\n${filtered.map((r) => `${r.prefix.padEnd(18)}   via ${r.nextHop ?? '?'} from ${r.peer} as-path [${r.asPathText}]${r.localPref !== undefined ? ` local-pref ${r.localPref}` : ''} (${r.reason === 'filtered' ? `filtered: ${r.rule}` : `rejected: ${r.reason}`})`).join('\n')}\n`
      : '';
    return this.loc() + tail;
  }

  private loc(): string {
    if (!this.speaker) return '';
    const lbNote = (prefix: string) => (this.own.has(prefix) ? `  LoadBalancer ${this.own.get(prefix)!.services.join(', ')}` : this.lb.has(prefix) ? '  LoadBalancer (another node\'s: not installed)' : '');
    return this.speaker
      .routes()
      .map((r: RouteSummary) =>
        r.paths
          .map((p, i) => {
            const head = i === 0 ? r.prefix.padEnd(18) : ''.padEnd(18);
            const via = p.source === 'local' ? 'local' : `via ${p.nextHop} from ${p.peer}`;
            const attrs = [
              `as-path [${p.asPathText}]`,
              p.localPref !== undefined ? `local-pref ${p.localPref}` : '',
              p.communities.length ? `communities ${p.communities.map((c) => `(${c >>> 16}, ${c & 0xffff})`).join(' ')}` : '',
              p.largeCommunities.length ? `large-communities ${p.largeCommunities.map(formatLargeCommunity).join(' ')}` : '',
              p.originatorId ? `originator ${p.originatorId}` : '',
              p.clusterList.length ? `cluster-list ${p.clusterList.join(' ')}` : '',
            ].filter(Boolean);
            return `${head} ${p.best ? '*' : ' '} ${via} ${attrs.join(' ')}${p.best && p.reason ? ` (best: ${p.reason})` : !p.best && p.reason ? ` (lost: ${p.reason})` : ''}${i === 0 ? lbNote(r.prefix) : ''}`;
          })
          .join('\n'),
      )
      .join('\n') + '\n';
  }

  async stop(): Promise<void> {
    const s = this.speaker;
    this.speaker = undefined;
    this.configured.clear();
    for (const prefix of this.learned.keys()) this.o.apply({ op: 'del-route', cidr: prefix, node: '' });
    this.learned.clear();
    if (s) await s.stop();
  }
}

/** What the speaker announces for a LoadBalancer route: the node as next hop, the advertisement's attributes. */
function lbAnnounceOptions(r: LbRoute, nextHop: string) {
  return { nextHop, ...(r.localPref !== undefined ? { localPref: r.localPref } : {}), communities: r.communities, largeCommunities: r.largeCommunities };
}

/** The RIB policy of Calico's filters: import by ./filters.ts, export through BGPFilter exportV4 to external peers. */
export function calicoPolicy(ctx: FilterContext, kinds: Map<string, PeerKind>): RibPolicy {
  const lb = lbPrefixes(ctx);
  return {
    import: (peer, prefix, a) => {
      const kind = kinds.get(peer.address);
      if (!kind) return { accept: false, rule: `${peer.address} is not a configured peer` };
      return importVerdict(ctx, kind, prefix, kind.kind === 'node' ? (a.originatorId ?? peer.address) : peer.address);
    },
    export: (peer, prefix, best) => {
      const kind = kinds.get(peer.address);
      return kind ? exportVerdict(kind, prefix, lb.has(prefix) ? { local: best.source === 'local' } : undefined) : undefined;
    },
  };
}
