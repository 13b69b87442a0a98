/**
 * The `ip` command of iproute2 6.1 (Debian 12) over an emulated namespace:
 * the objects and flags people type to ask "where does this packet go" and
 * "what is this interface", printed as the real tool prints them. Anything
 * else is refused with a message that lists what works, never answered with
 * some other view.
 *
 *   ip [-d] [-s] [-4] [-br] [-j [-p]] link [show] [[dev] NAME] [type vxlan|veth|bridge]
 *   ip [-4] [-br] [-j [-p]] addr [show] [dev NAME]
 *   ip [-d] [-j [-p]] route [show|list] [PREFIX]
 *   ip [-j [-p]] route get ADDRESS [from ADDRESS]
 *   ip [-j [-p]] neigh [show] [dev NAME]
 */
import { isValidIpv4 } from '../packet/addr.ts';
import type { IpStack } from './ipv4/ip-stack.ts';
import type { Route } from './ipv4/route-table.ts';
import type { NetDevice } from './link/netdev.ts';
import { formatRoute } from './ipv4/route-table.ts';
import { formatIpAddr, formatIpLink, formatIpNeigh, linkDetails, linkHeaderFields, linkStats, operState } from './iproute2.ts';

/** What `ip` sees of a namespace. */
export interface IpView {
  stack: IpStack;
  /** Every link of the namespace, in any order (printed by ifindex). */
  links: NetDevice[];
  /** The `-d` line of a device whose details only its owner knows (flannel.1's vxlan id, local, dstport). */
  linkDetail?: (dev: NetDevice) => string | undefined;
}

/** What one `ip` invocation printed and its exit status (2 for RTNETLINK errors and bad usage, as iproute2). */
export interface IpResult {
  stdout: string;
  stderr: string;
  code: number;
}

export const IP_USAGE = `Usage: ip [ OPTIONS ] OBJECT { COMMAND }
podlab's ip supports:
  ip [-d] [-s] [-br] [-j [-p]] link [show] [[dev] NAME] [type vxlan|veth|bridge]
  ip [-4] [-br] [-j [-p]] addr [show] [dev NAME]
  ip [-d] [-j [-p]] route [show|list] [PREFIX]
  ip [-j [-p]] route get ADDRESS [from ADDRESS]
  ip [-j [-p]] neigh [show] [dev NAME]
OPTIONS := -d[etails] | -s[tatistics] | -4 | -br[ief] | -j[son] | -p[retty]  (IPv4 only: -6 is refused)`;

interface Flags {
  details: boolean;
  stats: number;
  brief: boolean;
  json: boolean;
  pretty: boolean;
}

class IpUsageError extends Error {
  override name = 'IpUsageError';
}

/** Runs `ip ARGS` (argv without the leading `ip`) against a namespace. */
export function runIp(args: string[], view: IpView): IpResult {
  try {
    return { stdout: dispatch(args, view), stderr: '', code: 0 };
  } catch (e) {
    if (e instanceof RtnetlinkError) return { stdout: '', stderr: e.message + '\n', code: 2 };
    if (e instanceof IpUsageError) return { stdout: '', stderr: `${e.message}\n${IP_USAGE}\n`, code: 255 };
    if (e instanceof NoDeviceError) return { stdout: '', stderr: e.message + '\n', code: 1 };
    throw e;
  }
}

class RtnetlinkError extends Error {
  override name = 'RtnetlinkError';
}

class NoDeviceError extends Error {
  override name = 'NoDeviceError';
}

const OBJECTS: Record<string, 'addr' | 'route' | 'neigh' | 'link'> = {
  a: 'addr', ad: 'addr', addr: 'addr', address: 'addr',
  r: 'route', ro: 'route', rou: 'route', route: 'route',
  n: 'neigh', ne: 'neigh', nei: 'neigh', neigh: 'neigh', neighbor: 'neigh', neighbour: 'neigh',
  l: 'link', li: 'link', lin: 'link', link: 'link',
};

function dispatch(args: string[], view: IpView): string {
  const flags: Flags = { details: false, stats: 0, brief: false, json: false, pretty: false };
  let i = 0;
  for (; i < args.length && args[i].startsWith('-'); i++) {
    const a = args[i].replace(/^--?/, '');
    if ('details'.startsWith(a) && a.length >= 1 && a[0] === 'd') flags.details = true;
    else if (a === 's' || a === 'stats' || a === 'statistics') flags.stats++;
    else if (a === '4' || a === 'family=inet') continue;
    else if (a === '6') throw new IpUsageError('ip: podlab emulates IPv4 only (-6 has nothing to show)');
    else if (a === 'br' || a === 'brief') flags.brief = true;
    else if (a === 'j' || a === 'json') flags.json = true;
    else if (a === 'p' || a === 'pretty') flags.pretty = true;
    else throw new IpUsageError(`Option "${args[i]}" is unknown to podlab's ip.`);
  }
  const objWord = args[i++];
  if (objWord === undefined) throw new IpUsageError('ip: which object?');
  const obj = OBJECTS[objWord];
  if (!obj) throw new IpUsageError(`Object "${objWord}" is unknown to podlab's ip.`);
  const rest = args.slice(i);
  switch (obj) {
    case 'link':
      return link(rest, view, flags);
    case 'addr':
      return addr(rest, view, flags);
    case 'route':
      return route(rest, view, flags);
    case 'neigh':
      return neigh(rest, view, flags);
  }
}

/** Drops a leading `show`/`list`/`lst`; anything else that is a command word is refused. */
function showArgs(rest: string[], obj: string): string[] {
  const [cmd, ...more] = rest;
  if (cmd === undefined) return [];
  if (['show', 'list', 'lst', 'sh', 'ls', 'l', 's'].includes(cmd)) return more;
  if (['add', 'del', 'delete', 'change', 'replace', 'set', 'flush', 'append'].includes(cmd)) {
    throw new IpUsageError(`ip ${obj} ${cmd}: podlab's namespaces are programmed by the agent from the apiserver; the ip command only shows them.`);
  }
  return rest;
}

function json(flags: Flags, value: unknown): string {
  return (flags.pretty ? JSON.stringify(value, null, 4) : JSON.stringify(value)) + '\n';
}

/** `[dev] NAME` and `type KIND` selectors of `link show` / `addr show` / `neigh show`. */
function selectors(args: string[], what: string): { dev?: string; type?: string } {
  const out: { dev?: string; type?: string } = {};
  for (let k = 0; k < args.length; k++) {
    const a = args[k];
    if (a === 'dev') out.dev = args[++k];
    else if (a === 'type') out.type = args[++k];
    else if (out.dev === undefined && !['up', 'down'].includes(a)) out.dev = a;
    else throw new IpUsageError(`ip ${what} show: "${a}" is not understood.`);
  }
  return out;
}

const KIND_OF: Record<string, string> = { vxlan: 'vxlan', veth: 'veth', bridge: 'bridge', ether: 'ether', loopback: 'loopback', ipip: 'ipip', tun: 'tun' };

function pickLinks(view: IpView, sel: { dev?: string; type?: string }): NetDevice[] {
  let devs = [...view.links].sort((a, b) => a.ifindex - b.ifindex);
  if (sel.dev !== undefined) {
    devs = devs.filter((d) => d.name === sel.dev);
    if (!devs.length) throw new NoDeviceError(`Device "${sel.dev}" does not exist.`);
  }
  if (sel.type !== undefined) {
    if (!KIND_OF[sel.type]) throw new IpUsageError(`ip link show type ${sel.type}: podlab's links are vxlan, ipip, tun, veth, bridge, ether or loopback`);
    devs = devs.filter((d) => d.kind === sel.type);
  }
  return devs;
}

function link(rest: string[], view: IpView, flags: Flags): string {
  const devs = pickLinks(view, selectors(showArgs(rest, 'link'), 'link'));
  if (flags.json) return json(flags, devs.map((d) => linkHeaderFields(d)));
  if (flags.brief) return devs.map((d) => briefLink(d)).join('');
  return devs
    .map((d) => {
      let s = formatIpLink([d], { details: flags.details ? linkDetails(d, view.linkDetail?.(d)) : undefined });
      if (flags.stats) s += linkStats(d);
      return s;
    })
    .join('');
}

function briefName(d: NetDevice): string {
  return d.peer ? `${d.name}@if${d.peer.ifindex}` : d.kind === 'ipip' ? `${d.name}@NONE` : d.name;
}


function briefLink(d: NetDevice): string {
  const flags = String(linkHeaderFields(d).flags.join(','));
  const addr = d.kind === 'ipip' ? '0.0.0.0' : d.kind === 'tun' ? '' : d.mac;
  return `${briefName(d).padEnd(16)} ${operState(d).padEnd(14)} ${addr ? `${addr} ` : ''}<${flags}>\n`;
}

function addr(rest: string[], view: IpView, flags: Flags): string {
  const sel = selectors(showArgs(rest, 'addr'), 'addr');
  const devs = pickLinks(view, sel);
  const names = new Set(devs.map((d) => d.name));
  const ifaces = [...view.stack.interfaces.values()].filter((i) => names.has(i.dev.name)).sort((a, b) => a.dev.ifindex - b.dev.ifindex);
  if (flags.json) {
    return json(
      flags,
      ifaces.map((i) => ({
        ...linkHeaderFields(i.dev, false),
        addr_info: i.addrs.map((a) => ({ family: 'inet', local: a.ip, prefixlen: a.prefixLen, scope: i.dev.kind === 'loopback' ? 'host' : 'global', label: i.dev.name, valid_life_time: 4294967295, preferred_life_time: 4294967295 })),
      })),
    );
  }
  if (flags.brief) return ifaces.map((i) => `${briefName(i.dev).padEnd(16)} ${operState(i.dev).padEnd(14)} ${i.addrs.map((a) => `${a.ip}/${a.prefixLen}`).join(' ')}\n`).join('');
  return formatIpAddr(view.stack, names);
}

function routeJson(r: Route): Record<string, unknown> {
  const o: Record<string, unknown> = { dst: r.prefixLen === 0 ? 'default' : r.prefixLen === 32 ? r.dst : `${r.dst}/${r.prefixLen}` };
  if (r.gateway) o.gateway = r.gateway;
  o.dev = r.dev;
  if (r.proto !== 'boot') o.protocol = r.proto;
  if (r.scope === 'link' && !r.gateway) o.scope = 'link';
  if (r.src) o.prefsrc = r.src;
  if (r.metric) o.metric = r.metric;
  o.flags = r.onlink ? ['onlink'] : [];
  return o;
}

function route(rest: string[], view: IpView, flags: Flags): string {
  if (rest[0] === 'get' || rest[0] === 'g') return routeGet(rest.slice(1), view, flags);
  const args = showArgs(rest, 'route');
  if (args.length > 1) throw new IpUsageError(`ip route show: podlab selects by one PREFIX only ("${args.join(' ')}")`);
  let routes = view.stack.routes.list().filter((r) => r.dev !== 'lo');
  if (args[0] !== undefined) {
    const [dst, len] = args[0] === 'default' ? ['0.0.0.0', '0'] : args[0].split('/');
    if (!isValidIpv4(dst)) throw new IpUsageError(`ip route show: "${args[0]}" is not a prefix`);
    const prefixLen = len === undefined ? 32 : Number(len);
    routes = routes.filter((r) => r.dst === dst && r.prefixLen === prefixLen);
  }
  if (flags.json) return json(flags, routes.map(routeJson));
  // -d prints the route type and what the default display leaves out (proto boot, scope global).
  if (flags.details) return routes.map((r) => `unicast ${formatRoute(r, { details: true })}\n`).join('');
  return routes.map((r) => formatRoute(r) + '\n').join('');
}

/** `ip route get`: the route the namespace's own lookup picks, with the source it would use. */
function routeGet(args: string[], view: IpView, flags: Flags): string {
  const dst = args[0];
  if (dst === undefined || !isValidIpv4(dst)) throw new IpUsageError(`ip route get: "${dst ?? ''}" is not an IPv4 address`);
  let from: string | undefined;
  for (let k = 1; k < args.length; k++) {
    if (args[k] === 'from' && args[k + 1] !== undefined && isValidIpv4(args[k + 1])) from = args[++k];
    else throw new IpUsageError(`ip route get: "${args[k]}" is not understood (podlab takes ADDRESS [from ADDRESS])`);
  }
  const stack = view.stack;
  if (stack.isLocal(dst)) {
    if (flags.json) return json(flags, [{ type: 'local', dst, dev: 'lo', prefsrc: dst, flags: [], uid: 0, cache: ['local'] }]);
    return `local ${dst} dev lo src ${dst} uid 0\n    cache <local>\n`;
  }
  const r = stack.routes.lookup(dst);
  if (!r) throw new RtnetlinkError('RTNETLINK answers: Network is unreachable');
  const src = from ? undefined : stack.sourceFor(r);
  if (flags.json) {
    const o: Record<string, unknown> = { dst };
    if (from) o.from = from;
    if (r.gateway) o.gateway = r.gateway;
    o.dev = r.dev;
    if (src) o.prefsrc = src;
    Object.assign(o, { flags: [], uid: 0, cache: [] });
    return json(flags, [o]);
  }
  const parts = [dst];
  if (from) parts.push('from', from);
  if (r.gateway) parts.push('via', r.gateway);
  parts.push('dev', r.dev);
  if (src) parts.push('src', src);
  parts.push('uid', '0');
  return `${parts.join(' ')}\n    cache\n`;
}

function neigh(rest: string[], view: IpView, flags: Flags): string {
  const sel = selectors(showArgs(rest, 'neigh'), 'neigh');
  if (sel.dev !== undefined && !view.links.some((d) => d.name === sel.dev)) throw new NoDeviceError(`Cannot find device "${sel.dev}"`);
  const entries = view.stack.neigh.list().filter((e) => sel.dev === undefined || e.dev === sel.dev);
  if (flags.json) {
    return json(
      flags,
      entries.map((e) => ({ dst: e.ip, dev: e.dev, ...(e.mac && e.state !== 'INCOMPLETE' && e.state !== 'FAILED' ? { lladdr: e.mac } : {}), state: [e.state] })),
    );
  }
  return formatIpNeigh(view.stack, sel.dev);
}
