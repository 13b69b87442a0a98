/**
 * An IPv4 routing table with longest-prefix match, shaped like the kernel's
 * main table so `ip route` output reads the same as on a real node.
 */
import { intToIpv4, ipv4ToInt } from '../../packet/addr.ts';
import { Cidr, maskOf } from '../../packet/cidr.ts';
import type { FlowGeneration } from '../flow/generation.ts';

export type RouteProto = 'kernel' | 'boot' | 'static' | 'bird';

export interface Route {
  /** Network address, dotted; `0.0.0.0` with prefixLen 0 is the default route. */
  dst: string;
  prefixLen: number;
  gateway?: string;
  dev: string;
  /** `onlink`: the gateway is reachable on dev even if no address covers it (Flannel's `.0` next hops). */
  onlink?: boolean;
  proto: RouteProto;
  scope: 'link' | 'global';
  /** Preferred source address. */
  src?: string;
  metric?: number;
}

/** Parses `a.b.c.d/n` into a network address (host bits cleared) and prefix length. Throws RangeError when malformed. */
export function parseCidr(cidr: string): { net: number; prefixLen: number } {
  const c = Cidr.parse(cidr);
  return { net: c.network, prefixLen: c.prefixLen };
}

interface Entry {
  route: Route;
  net: number;
  mask: number;
}

export class RouteTable {
  private entries: Entry[] = [];
  /** The last destination looked up as a string and its route: a socket sends to one peer over and over. Reset on every change. */
  private lastDst: string | undefined;
  private lastRoute: Route | undefined;

  /** `generation`: the namespace's, moved by every change (cached flows read routes). */
  constructor(private readonly generation?: FlowGeneration) {}

  /** Adds or replaces (same dst/len/metric) a route; `ip route replace`. */
  replace(route: Route): void {
    const net = Cidr.of(route.dst, route.prefixLen).network;
    const r = { ...route, dst: intToIpv4(net) };
    this.entries = this.entries.filter(
      (e) => !(e.net === net && e.route.prefixLen === r.prefixLen && (e.route.metric ?? 0) === (r.metric ?? 0)),
    );
    this.entries.push({ route: r, net, mask: maskOf(r.prefixLen) });
    // Longest prefix first, then lowest metric: lookup takes the first match.
    this.entries.sort((a, b) => b.route.prefixLen - a.route.prefixLen || (a.route.metric ?? 0) - (b.route.metric ?? 0));
    this.lastDst = undefined;
    this.generation?.bump('route');
  }

  /** Removes the route for dst/prefixLen; returns whether one existed. */
  delete(dst: string, prefixLen: number): boolean {
    const net = Cidr.of(dst, prefixLen).network;
    const before = this.entries.length;
    this.entries = this.entries.filter((e) => !(e.net === net && e.route.prefixLen === prefixLen));
    if (this.entries.length === before) return false;
    this.lastDst = undefined;
    this.generation?.bump('route');
    return true;
  }

  /** Removes every route through a device (the device went away). */
  deleteByDev(dev: string): void {
    this.entries = this.entries.filter((e) => e.route.dev !== dev);
    this.lastDst = undefined;
    this.generation?.bump('route');
  }

  /** Longest-prefix match for a destination. */
  lookup(dst: string | number): Route | undefined {
    if (dst === this.lastDst) return this.lastRoute;
    const ip = typeof dst === 'number' ? dst : ipv4ToInt(dst);
    let found: Route | undefined;
    for (const e of this.entries) {
      if (((ip & e.mask) >>> 0) === e.net) {
        found = e.route;
        break;
      }
    }
    if (typeof dst === 'string') {
      this.lastDst = dst;
      this.lastRoute = found;
    }
    return found;
  }

  /** Every route, in `ip route` order (by destination address, default first). */
  list(): Route[] {
    return this.entries
      .slice()
      .sort((a, b) => a.net - b.net || a.route.prefixLen - b.route.prefixLen)
      .map((e) => e.route);
  }
}

/**
 * One `ip route` line (without iproute2's trailing space). With `details`, as
 * `ip -d route` prints it: the protocol and scope the default view leaves out.
 */
export function formatRoute(r: Route, opts: { details?: boolean } = {}): string {
  const dst = r.prefixLen === 0 ? 'default' : r.prefixLen === 32 ? r.dst : `${r.dst}/${r.prefixLen}`;
  const parts = [dst];
  if (r.gateway) parts.push('via', r.gateway);
  parts.push('dev', r.dev);
  if (r.proto !== 'boot' || opts.details) parts.push('proto', r.proto);
  if (r.scope === 'link' && !r.gateway) parts.push('scope', 'link');
  else if (opts.details) parts.push('scope', r.scope);
  if (r.src) parts.push('src', r.src);
  if (r.metric) parts.push('metric', String(r.metric));
  if (r.onlink) parts.push('onlink');
  return parts.join(' ');
}
