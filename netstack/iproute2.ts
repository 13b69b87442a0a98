/**
 * iproute2's own output formats (`ip route`, `ip neigh`, `ip link`, `ip addr`,
 * `bridge fdb`), so what a learner sees in podlab reads like a real node.
 * Formats follow iproute2 6.x as shipped by Debian 12.
 */
import type { Bridge } from './link/bridge.ts';
import type { IpStack } from './ipv4/ip-stack.ts';
import type { NetDevice } from './link/netdev.ts';
import { formatRoute } from './ipv4/route-table.ts';
import { Cidr } from '../packet/cidr.ts';

/** `ip route`: the main table (iproute2's trailing spaces left out, here and in every view). */
export function formatIpRoute(stack: IpStack): string {
  return stack.routes
    .list()
    .filter((r) => r.dev !== 'lo')
    .map((r) => formatRoute(r) + '\n')
    .join('');
}

/** `ip neigh [show dev DEV]`. */
export function formatIpNeigh(stack: IpStack, dev?: string): string {
  return stack.neigh
    .list()
    .filter((e) => dev === undefined || e.dev === dev)
    .map((e) => {
      const ll = e.mac && e.state !== 'INCOMPLETE' && e.state !== 'FAILED' ? ` lladdr ${e.mac}` : '';
      return `${e.ip} dev ${e.dev}${ll} ${e.state}\n`;
    })
    .join('');
}

function linkFlags(d: NetDevice, carrier: boolean): string[] {
  const f: string[] = [];
  if (d.kind === 'loopback') f.push('LOOPBACK');
  // tunl0 shows only NOARP; a TUN device (flannel0) is point-to-point.
  else if (d.kind === 'ipip') f.push('NOARP');
  else if (d.kind === 'tun') f.push('POINTOPOINT', 'MULTICAST', 'NOARP');
  else f.push('BROADCAST', 'MULTICAST');
  // flannel.1 resolves no neighbours (they are programmed), yet flanneld creates it without
  // IFF_NOARP, so the kernel shows no NOARP flag: neither does podlab.
  if (d.up) f.push('UP');
  if (d.up && carrier) f.push('LOWER_UP');
  return f;
}

function linkName(d: NetDevice): string {
  // The fallback tunnel has no underlying device: `tunl0@NONE`.
  return d.peer ? `${d.name}@if${d.peer.ifindex}` : d.kind === 'ipip' ? `${d.name}@NONE` : d.name;
}

/** A TUN device gets qdisc fq_codel and txqueuelen 500 from the kernel; everything else here noqueue and 1000. */
function qdiscOf(d: NetDevice): { qdisc: string; qlen: number } {
  return d.kind === 'tun' ? { qdisc: 'fq_codel', qlen: 500 } : { qdisc: 'noqueue', qlen: 1000 };
}

/** The `state` iproute2 shows for a device. */
export function operState(d: NetDevice): string {
  return d.kind === 'loopback' || d.kind === 'vxlan' || d.kind === 'ipip' || d.kind === 'tun' ? 'UNKNOWN' : d.up ? 'UP' : 'DOWN';
}

function linkHeader(d: NetDevice): string {
  const master = d.master ? ` master ${d.master.name}` : '';
  const q = qdiscOf(d);
  return `${d.ifindex}: ${linkName(d)}: <${linkFlags(d, true).join(',')}> mtu ${d.mtu} qdisc ${q.qdisc}${master} state ${operState(d)} mode DEFAULT group default qlen ${q.qlen}`;
}

function linkLine(d: NetDevice): string {
  if (d.kind === 'ipip') return '    link/ipip 0.0.0.0 brd 0.0.0.0';
  if (d.kind === 'tun') return '    link/none';
  const kind = d.kind === 'loopback' ? 'loopback' : 'ether';
  const brd = d.kind === 'loopback' ? '00:00:00:00:00:00' : 'ff:ff:ff:ff:ff:ff';
  const netns = d.peer ? ` link-netns ${d.peer.netns}` : '';
  return `    link/${kind} ${d.mac} brd ${brd}${netns}`;
}

/** `ip -j link`'s object for a device (iproute2's JSON keys). */
export function linkHeaderFields(d: NetDevice, withLinkmode = true): { flags: string[] } & Record<string, unknown> {
  const q = qdiscOf(d);
  const o: { flags: string[] } & Record<string, unknown> = { ifindex: d.ifindex, ifname: d.name, flags: linkFlags(d, true), mtu: d.mtu, qdisc: q.qdisc };
  if (d.kind === 'ipip') o.link = null;
  if (d.peer) o.link_index = d.peer.ifindex;
  if (d.master) o.master = d.master.name;
  o.operstate = operState(d);
  if (withLinkmode) o.linkmode = 'DEFAULT';
  if (d.kind === 'tun') Object.assign(o, { group: 'default', txqlen: q.qlen, link_type: 'none' });
  else if (d.kind === 'ipip') Object.assign(o, { group: 'default', txqlen: q.qlen, link_type: 'ipip', address: '0.0.0.0', broadcast: '0.0.0.0' });
  else Object.assign(o, { group: 'default', txqlen: q.qlen, link_type: d.kind === 'loopback' ? 'loopback' : 'ether', address: d.mac, broadcast: d.kind === 'loopback' ? '00:00:00:00:00:00' : 'ff:ff:ff:ff:ff:ff' });
  if (d.peer) o.link_netnsid = 0;
  return o;
}

const LINK_TAIL = 'addrgenmode eui64 numtxqueues 1 numrxqueues 1 gso_max_size 65536 gso_max_segs 65535 tso_max_size 65536 tso_max_segs 65535 gro_max_size 65536';

/**
 * `ip -d link`'s extra lines for a device: the promiscuity/MTU range on the
 * link line, then the link kind's own attributes (`owner` is the device
 * owner's line, e.g. flannel.1's vxlan id, local, dev and dstport).
 */
export function linkDetails(d: NetDevice, owner?: string): { linkSuffix: string; lines: string[] } {
  const linkSuffix = ` promiscuity ${d.master ? 1 : 0}  allmulti 0 minmtu ${d.kind === 'loopback' ? 0 : 68} maxmtu ${d.kind === 'loopback' ? 0 : 65535}`;
  const lines: string[] = [];
  if (owner) lines.push(`    ${owner} ${LINK_TAIL}`);
  else if (d.kind === 'bridge') lines.push(`    bridge forward_delay 1500 hello_time 200 max_age 2000 ageing_time 30000 stp_state 0 priority 32768 vlan_filtering 0 vlan_protocol 802.1Q ${LINK_TAIL}`);
  else if (d.kind === 'veth' && d.master) lines.push('    veth', `    bridge_slave state forwarding priority 32 cost 2 hairpin off guard off root_block off fastleave off learning on flood on ${LINK_TAIL}`);
  else if (d.kind === 'veth') lines.push(`    veth ${LINK_TAIL}`);
  else if (d.kind !== 'loopback') lines.push(`    ${LINK_TAIL}`);
  return { linkSuffix, lines };
}

/** `ip -s link`'s counters block for a device. */
export function linkStats(d: NetDevice): string {
  const c = d.counters;
  const row = (vals: number[]) => '    ' + vals.map((v, i) => String(v).padStart(i === 0 ? 10 : 7)).join(' ') + '\n';
  return (
    '    RX:  bytes packets errors dropped  missed   mcast\n' +
    row([c.rxBytes, c.rxPackets, 0, c.dropped, 0, 0]) +
    '    TX:  bytes packets errors dropped carrier collsns\n' +
    row([c.txBytes, c.txPackets, 0, 0, 0, 0])
  );
}

/** `ip link` for a list of devices (ordered by ifindex); with `details`, `ip -d link`. */
export function formatIpLink(devs: NetDevice[], opts: { details?: { linkSuffix: string; lines: string[] } } = {}): string {
  return devs
    .slice()
    .sort((a, b) => a.ifindex - b.ifindex)
    .map((d) => {
      if (!opts.details) return `${linkHeader(d)}\n${linkLine(d)}\n`;
      return `${linkHeader(d)}\n${linkLine(d)}${opts.details.linkSuffix}\n${opts.details.lines.map((l) => l + '\n').join('')}`;
    })
    .join('');
}

/** `ip addr` for a namespace's devices (those named in `only`, when given). */
export function formatIpAddr(stack: IpStack, only?: Set<string>): string {
  const ifaces = [...stack.interfaces.values()].filter((i) => !only || only.has(i.dev.name)).sort((a, b) => a.dev.ifindex - b.dev.ifindex);
  return ifaces
    .map(({ dev, addrs }) => {
      let s = `${linkHeader(dev).replace(' mode DEFAULT', '')}\n${linkLine(dev)}\n`;
      for (const a of addrs) {
        const scope = a.ip.startsWith('127.') && dev.kind === 'loopback' ? 'host' : 'global';
        // `ip addr add` on a point-to-point or tunnel device sets no broadcast address.
        const brd = a.prefixLen < 31 && !dev.headerless ? ` brd ${broadcastOf(a.ip, a.prefixLen)}` : '';
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
