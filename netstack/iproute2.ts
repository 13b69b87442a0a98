/**
 * iproute2's own output formats (`ip route`, `ip neigh`, `ip link`, `ip addr`,
 * `bridge fdb`), so what a learner sees in podlab reads like a real node.
 * Formats follow iproute2 6.x as shipped by Debian 12.
 */
import type { Bridge } from './link/bridge.ts';
import type { IpStack } from './ipv4/ip-stack.ts';
import type { NetDevice } from './link/netdev.ts';
import type { Route } from './ipv4/route-table.ts';
import { Cidr } from '../packet/cidr.ts';

/** One `ip route` line. */
export function formatRoute(r: Route): string {
  const dst = r.prefixLen === 0 ? 'default' : r.prefixLen === 32 ? r.dst : `${r.dst}/${r.prefixLen}`;
  const parts = [dst];
  if (r.gateway) parts.push('via', r.gateway);
  parts.push('dev', r.dev);
  if (r.proto !== 'boot') parts.push('proto', r.proto);
  if (r.scope === 'link' && !r.gateway) parts.push('scope', 'link');
  if (r.src) parts.push('src', r.src);
  if (r.metric) parts.push('metric', String(r.metric));
  if (r.onlink) parts.push('onlink');
  return parts.join(' ');
}

export function formatIpRoute(stack: IpStack): string {
  return stack.routes
    .list()
    .filter((r) => r.dev !== 'lo')
    .map((r) => formatRoute(r) + '\n')
    .join('');
}

export function formatIpNeigh(stack: IpStack): string {
  return stack.neigh
    .list()
    .map((e) => {
      const ll = e.mac && e.state !== 'INCOMPLETE' && e.state !== 'FAILED' ? ` lladdr ${e.mac}` : '';
      return `${e.ip} dev ${e.dev}${ll} ${e.state}\n`;
    })
    .join('');
}

function linkFlags(d: NetDevice, carrier: boolean): string {
  const f: string[] = [];
  if (d.kind === 'loopback') f.push('LOOPBACK');
  else f.push('BROADCAST', 'MULTICAST');
  if (d.kind === 'vxlan') f.push('NOARP');
  if (d.up) f.push('UP');
  if (d.up && carrier) f.push('LOWER_UP');
  return `<${f.join(',')}>`;
}

function linkName(d: NetDevice): string {
  return d.peer ? `${d.name}@if${d.peer.ifindex}` : d.name;
}

function linkHeader(d: NetDevice): string {
  const state = d.kind === 'loopback' || d.kind === 'vxlan' ? 'UNKNOWN' : d.up ? 'UP' : 'DOWN';
  const master = d.master ? ` master ${d.master.name}` : '';
  const qlen = d.kind === 'ether' || d.kind === 'bridge' || d.kind === 'loopback' ? ' qlen 1000' : '';
  return `${d.ifindex}: ${linkName(d)}: ${linkFlags(d, true)} mtu ${d.mtu} qdisc noqueue${master} state ${state} mode DEFAULT group default${qlen}`;
}

function linkLine(d: NetDevice): string {
  const kind = d.kind === 'loopback' ? 'loopback' : 'ether';
  const brd = d.kind === 'loopback' ? '00:00:00:00:00:00' : 'ff:ff:ff:ff:ff:ff';
  const netns = d.peer ? ` link-netns ${d.peer.netns}` : '';
  return `    link/${kind} ${d.mac} brd ${brd}${netns}`;
}

/** `ip link` for a list of devices (ordered by ifindex). */
export function formatIpLink(devs: NetDevice[], opts: { vxlan?: { vni: number; port: number; local: string } } = {}): string {
  return devs
    .slice()
    .sort((a, b) => a.ifindex - b.ifindex)
    .map((d) => {
      let s = `${linkHeader(d)}\n${linkLine(d)}\n`;
      if (d.kind === 'vxlan' && opts.vxlan) {
        s += `    vxlan id ${opts.vxlan.vni} local ${opts.vxlan.local} dev eth0 srcport 0 0 dstport ${opts.vxlan.port} nolearning ttl auto ageing 300\n`;
      }
      return s;
    })
    .join('');
}

/** `ip addr` for a namespace's devices. */
export function formatIpAddr(stack: IpStack): string {
  const ifaces = [...stack.interfaces.values()].sort((a, b) => a.dev.ifindex - b.dev.ifindex);
  return ifaces
    .map(({ dev, addrs }) => {
      let s = `${linkHeader(dev).replace(' mode DEFAULT', '')}\n${linkLine(dev)}\n`;
      for (const a of addrs) {
        const scope = a.ip.startsWith('127.') && dev.kind === 'loopback' ? 'host' : 'global';
        const brd = a.prefixLen < 31 ? ` brd ${broadcastOf(a.ip, a.prefixLen)}` : '';
        s += `    inet ${a.ip}/${a.prefixLen}${brd && dev.kind !== 'loopback' ? brd : ''} scope ${scope} ${dev.name}\n`;
        s += `       valid_lft forever preferred_lft forever\n`;
      }
      return s;
    })
    .join('');
}

function broadcastOf(ip: string, prefixLen: number): string {
  return Cidr.of(ip, prefixLen).broadcastAddress;
}

/** `bridge fdb show`: cni0's learned and permanent entries, then flannel.1's FDB. */
export function formatBridgeFdb(bridge: Bridge, vxlan?: { dev: string; fdb: Map<string, string> }): string {
  let s = '';
  for (const e of bridge.entries()) {
    s += e.permanent
      ? `${e.mac} dev ${e.port.name} vlan 1 master ${bridge.dev.name} permanent\n${e.mac} dev ${e.port.name} master ${bridge.dev.name} permanent\n`
      : `${e.mac} dev ${e.port.name} master ${bridge.dev.name}\n`;
  }
  s += `${bridge.dev.mac} dev ${bridge.dev.name} vlan 1 master ${bridge.dev.name} permanent\n`;
  s += `${bridge.dev.mac} dev ${bridge.dev.name} master ${bridge.dev.name} permanent\n`;
  if (vxlan) for (const [mac, dst] of vxlan.fdb) s += `${mac} dev ${vxlan.dev} dst ${dst} self permanent\n`;
  return s;
}
