/**
 * Node IPAM, as kube-controller-manager does with `--allocate-node-cidrs`:
 * every Node gets a `--node-cidr-mask-size` slice of `--cluster-cidr` in
 * `spec.podCIDR` (and `spec.podCIDRs`), which flannel then uses as the node's
 * subnet lease.
 *
 * Two deliberate choices:
 * - It runs at Node create time (admission-style) rather than as an async
 *   controller, so the agent's create response already carries its podCIDR.
 * - Subnet 0 (10.244.0.0/24 by default) is handed out last: node-1 gets
 *   10.244.1.0/24, node-2 10.244.2.0/24, which reads nicely in a lesson.
 *   Like k8s' cidrset, a rotating "next candidate" pointer (persisted)
 *   avoids reusing a just-freed subnet while peers may still route to it.
 *
 * The set of used subnets is derived from the live Node objects every time,
 * so deleting a Node frees its subnet and a restart needs no extra state
 * beyond the pointer.
 */
import { invalid } from './errors.ts';
import { NODES, resourceKeyOf } from './resources.ts';
import type { Store } from './store.ts';
import type { KubeObject, NodeSpec } from './types.ts';
import { isIPv4Cidr } from './validation.ts';
import { parseIpv4CidrInput } from '../packet/ip-input.ts';
import { Cidr } from '../packet/cidr.ts';

/** Default `--cluster-cidr`. */
export const DEFAULT_CLUSTER_CIDR = '10.244.0.0/16';
/** Default `--node-cidr-mask-size`. */
export const DEFAULT_NODE_CIDR_MASK_SIZE = 24;

/** A bad `--cluster-cidr` / `--node-cidr-mask-size` combination. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  /** The flag at fault, e.g. `--cluster-cidr`. */
  readonly flag: string;
  constructor(flag: string, message: string) {
    super(`${flag}: ${message}`);
    this.flag = flag;
  }
}

/** A parsed IPv4 range. */
export interface Ipv4Range {
  /** First address as an unsigned 32-bit number. */
  start: number;
  prefix: number;
  /** Number of addresses. */
  size: number;
}

/** Validated IPAM parameters. */
export interface IpamConfig {
  cluster: Ipv4Range;
  maskSize: number;
  /** Number of node subnets in the cluster CIDR. */
  count: number;
}

/** Parses `a.b.c.d/n` (host bits are masked off, as Go's net.ParseCIDR does). Returns null if malformed. */
export function parseIpv4Cidr(cidr: string): Ipv4Range | null {
  const c = parseIpv4CidrInput(cidr.trim());
  return c ? rangeOf(c) : null;
}

function rangeOf(c: Cidr): Ipv4Range {
  return { start: c.network, prefix: c.prefixLen, size: c.size };
}

/** Formats a range as CIDR. */
export function formatCidr(r: Ipv4Range): string {
  return Cidr.of(r.start, r.prefix).format();
}

/**
 * Validates the flags: the cluster CIDR must be IPv4, and the node mask
 * longer than the cluster prefix and at most /30 (a node needs room for a
 * gateway and at least one pod).
 */
export function parseIpamConfig(clusterCidr = DEFAULT_CLUSTER_CIDR, maskSize = DEFAULT_NODE_CIDR_MASK_SIZE): IpamConfig {
  const cluster = parseIpv4Cidr(clusterCidr);
  if (!cluster) throw new ConfigError('--cluster-cidr', `${JSON.stringify(clusterCidr)} is not a valid IPv4 CIDR (e.g. 10.244.0.0/16)`);
  if (!Number.isInteger(maskSize)) throw new ConfigError('--node-cidr-mask-size', `${maskSize} is not an integer`);
  if (maskSize <= cluster.prefix) {
    throw new ConfigError('--node-cidr-mask-size', `/${maskSize} must be longer than the cluster CIDR's /${cluster.prefix}`);
  }
  if (maskSize > 30) throw new ConfigError('--node-cidr-mask-size', `/${maskSize} is too small for a node; use at most /30`);
  return { cluster, maskSize, count: 2 ** (maskSize - cluster.prefix) };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The node CIDR allocator. Install it on a store with {@link NodeIpam.install}. */
export class NodeIpam {
  readonly config: IpamConfig;
  /** Position in the allocation order (1, 2, ..., count-1, 0) where the next search starts. */
  private next = 0;

  constructor(config: IpamConfig) {
    this.config = config;
  }

  /** Subnet number `index` of the cluster CIDR, as CIDR text. */
  subnet(index: number): string {
    return Cidr.of(this.config.cluster.start, this.config.cluster.prefix).subnet(this.config.maskSize, index).format();
  }

  /** The cluster CIDR as text. */
  clusterCidr(): string {
    return formatCidr(this.config.cluster);
  }

  /** Subnet indices overlapped by `cidr` (empty when it lies outside the cluster CIDR). */
  private indicesOf(cidr: string): number[] {
    const r = parseIpv4Cidr(cidr);
    if (!r) return [];
    const c = this.config.cluster;
    const lo = Math.max(r.start, c.start);
    const hi = Math.min(r.start + r.size, c.start + c.size) - 1;
    if (lo > hi) return [];
    const sub = Cidr.of(c.start, this.config.maskSize).size;
    const out: number[] = [];
    for (let i = Math.floor((lo - c.start) / sub); i <= Math.floor((hi - c.start) / sub); i++) out.push(i);
    return out;
  }

  /** Maps subnet index → owning node name for the given nodes. */
  usedBy(nodes: readonly KubeObject[], except?: string): Map<number, string> {
    const used = new Map<number, string>();
    for (const n of nodes) {
      if (n.metadata.name === except) continue;
      const spec = n.spec as NodeSpec | undefined;
      for (const cidr of new Set([spec?.podCIDR, ...(spec?.podCIDRs ?? [])])) {
        if (typeof cidr !== 'string') continue;
        for (const i of this.indicesOf(cidr)) used.set(i, n.metadata.name);
      }
    }
    return used;
  }

  /**
   * Picks the next free subnet, or null when the cluster CIDR is exhausted.
   * Advances the rotating pointer.
   */
  allocate(used: ReadonlyMap<number, string>): string | null {
    const { count } = this.config;
    for (let step = 0; step < count; step++) {
      const pos = (this.next + step) % count;
      const index = (pos + 1) % count; // order 1, 2, ..., count-1, then 0
      if (!used.has(index)) {
        this.next = (pos + 1) % count;
        return this.subnet(index);
      }
    }
    return null;
  }

  /** Wires the allocator into a store: admission on Node create, pointer persisted with the store. */
  install(store: Store): void {
    store.registerSection('nodeIpam', {
      save: () => ({ clusterCidr: this.clusterCidr(), maskSize: this.config.maskSize, next: this.next }),
      load: (data) => {
        // A pointer from a different CIDR layout means nothing; start over (allocations themselves live on the Nodes).
        if (isRecord(data) && data.clusterCidr === this.clusterCidr() && data.maskSize === this.config.maskSize && typeof data.next === 'number') {
          this.next = data.next % this.config.count;
        }
      },
    });
    store.addAdmission((ctx) => {
      if (ctx.op !== 'create' || resourceKeyOf(ctx.rt) !== resourceKeyOf(NODES)) return;
      const node = ctx.obj;
      const spec = (isRecord(node.spec) ? node.spec : {}) as NodeSpec;
      node.spec = spec;
      const used = this.usedBy(store.objectsOf(NODES));
      if (typeof spec.podCIDR === 'string' && spec.podCIDR !== '') {
        // A pre-set podCIDR is honoured but must not collide with another node's.
        if (!isIPv4Cidr(spec.podCIDR)) return; // validation already reported it
        for (const i of this.indicesOf(spec.podCIDR)) {
          const owner = used.get(i);
          if (owner !== undefined) {
            throw invalid('Node', node.metadata.name, [
              { field: 'spec.podCIDR', type: 'FieldValueInvalid', value: spec.podCIDR, detail: `overlaps the pod CIDR of node "${owner}"` },
            ]);
          }
        }
        spec.podCIDRs ??= [spec.podCIDR];
        return;
      }
      const cidr = this.allocate(used);
      if (cidr === null) {
        throw invalid('Node', node.metadata.name, [
          {
            field: 'spec.podCIDR',
            type: 'FieldValueInvalid',
            value: '',
            detail: `no free /${this.config.maskSize} left in cluster CIDR ${this.clusterCidr()}: all ${this.config.count} node subnets are allocated (delete a Node or use a larger --cluster-cidr)`,
          },
        ]);
      }
      spec.podCIDR = cidr;
      spec.podCIDRs = [cidr];
    });
  }
}
