/**
 * calico-node's confd + BIRD on a kernel node: the peers (./peers.ts) rendered
 * into bird.conf and (re)loaded; BIRD installs what it learns into the
 * namespace's table itself (`proto bird`). A kernel node never reflects: with
 * route reflectors it is a client and peers with the reflectors only.
 */
import { BirdProcess, birdConfig } from './bird.ts';
import type { BgpRouting } from './bgp-backend.ts';
import { clusterAsn, desiredPeers, type BgpInputs, type BgpTopology } from './peers.ts';
import { ipPoolCidrs, nodeOwners, peerKinds } from './filters.ts';

export interface BirdRoutingOptions {
  node: string;
  netns: string;
  stateDir: string;
  ip: string;
  podCIDR: string;
  port: number;
  holdTime: number;
  topology: BgpTopology;
  /** The default IP pool (the cluster CIDR); IPPool objects join it (filters: ./filters.ts). */
  pools: string[];
}

export class BirdRouting implements BgpRouting {
  private readonly bird: BirdProcess;

  constructor(private readonly o: BirdRoutingOptions) {
    this.bird = new BirdProcess({ stateDir: o.stateDir, node: o.node, netns: o.netns });
  }

  async reconcile(input: BgpInputs): Promise<void> {
    const want = desiredPeers({ self: this.o.node, port: this.o.port, topology: this.o.topology, reflector: false }, input);
    const kinds = peerKinds(want, input.filters ?? []);
    const peers = [...want.values()].map((p) => {
      const k = kinds.get(p.address);
      return { name: p.name, ip: p.address, asn: p.asn, port: p.port, ...(k?.kind === 'external' ? { external: { name: k.name, filters: k.filters } } : {}) };
    });
    const owners = [...nodeOwners(input).values()];
    const text = birdConfig({ node: this.o.node, routerId: this.o.ip, asn: clusterAsn(input.config), podCIDR: this.o.podCIDR, port: this.o.port, holdTime: this.o.holdTime, peers, pools: ipPoolCidrs(input, this.o.pools), owners });
    await this.bird.apply(text);
  }

  summary(): Promise<string> {
    return this.bird.summary();
  }

  routes(): Promise<string> {
    return this.bird.routes();
  }

  stop(): Promise<void> {
    return this.bird.stop();
  }
}
