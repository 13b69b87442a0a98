/**
 * Calico IPIP: BGP as the `bgp` backend, but learned routes go through the
 * IP-in-IP device, as calico-node installs them for a pool with ipipMode:
 *   <block> via <node IP> dev tunl0 proto bird onlink
 * (CrossSubnet: only towards nodes outside eth0's subnet; the others stay
 * `via <node IP> dev eth0`). The outer packets (IPv4 protocol 4) leave eth0
 * like any packet of the node: the routed wire carries them (local mode: bare
 * IPv4 over UDP 8473; `--wire raw`: real frames). Pods get MTU 1480.
 */
import { Cidr } from '../../packet/cidr.ts';
import { IPIP_OVERHEAD } from '../../packet/ipip.ts';
import type { IpPool } from '../../control-plane/calico.ts';
import type { Lease, LearnedRoute, NetworkBackend } from '../backend.ts';
import { diffPeers, eth0NeighbourAdd, eth0NeighbourDel, gatewayOf } from '../plan.ts';
import { attachRoutedWire } from '../routed-wire.ts';
import { calicoAnnotations, readCalicoLease } from '../bgp/index.ts';
import { IpipTunnel, TUNL_DEV } from './tunnel.ts';

const NAME = 'ipip';
/** The marker an ipip node's Node carries (control-plane/annotations.ts PODLAB_CALICO_ENCAP). */
const ENCAP = 'IPIP';

const peers = {
  accepts: (l: Lease) => l.backend === NAME,
  add: eth0NeighbourAdd,
  remove: eth0NeighbourDel,
};

/** The pool a block belongs to (the most specific one), if any. */
export function poolOf(prefix: string, pools: IpPool[]): IpPool | undefined {
  const block = Cidr.parse(prefix);
  let best: { pool: IpPool; len: number } | undefined;
  for (const pool of pools) {
    const c = Cidr.tryParse(pool.spec?.cidr ?? '');
    if (c?.covers(block) && (!best || c.prefixLen > best.len)) best = { pool, len: c.prefixLen };
  }
  return best?.pool;
}

/**
 * Where a learned block's route goes: tunl0 (onlink: the next hop is on eth0,
 * not on tunl0) when the block's pool encapsulates towards that next hop. No
 * pool: Always, as calico.yaml's default pool (CALICO_IPV4POOL_IPIP=Always).
 */
export function ipipRoute(r: LearnedRoute): { dev: string; onlink: boolean } {
  const mode = poolOf(r.prefix, r.pools)?.spec?.ipipMode ?? 'Always';
  const sameSubnet = Cidr.of(r.self.ip, r.self.underlayPrefixLen).contains(r.nextHop);
  const encap = mode === 'Always' || (mode === 'CrossSubnet' && !sameSubnet);
  return encap ? { dev: TUNL_DEV, onlink: true } : { dev: 'eth0', onlink: false };
}

export const ipip: NetworkBackend = {
  name: NAME,
  help: 'Calico IPIP (BGP routes through tunl0, IP protocol 4)',
  mtuOverhead: IPIP_OVERHEAD,
  tunnelDevice: TUNL_DEV,
  ipUnderlay: true,
  bgp: true,
  annotations: (self) => calicoAnnotations(self, ENCAP),
  readLease: (node) => readCalicoLease(node, NAME, ENCAP),
  accepts: peers.accepts,
  plan: (desired, current, self) => diffPeers(desired, current, self, peers),
  learnedRoute: ipipRoute,
  attach(ctx) {
    const wire = attachRoutedWire(ctx);
    const tun = new IpipTunnel({ stack: ctx.stack, localIp: ctx.ip, mtu: ctx.podMtu, ifindexes: ctx.ifindexes });
    ctx.stack.addInterface(tun.dev, { arp: false });
    // calico-node gives tunl0 an address of the node's block (/32), so the node has a source inside the pool.
    ctx.stack.addAddress(TUNL_DEV, gatewayOf(ctx.podCIDR), 32);
    return { ...wire, devices: [...wire.devices, { dev: tun.dev, description: `IPIP tunnel ${TUNL_DEV} (IP protocol 4, no remote: the route's next hop)` }] };
  },
  // No kernel-node form yet: it needs BIRD to install learned routes `dev tunl0 onlink` (Calico's BIRD has a
  // tunnel attribute; BIRD 2 would set ifname and onlink in the kernel export) and a kernel with the ipip module.
};
