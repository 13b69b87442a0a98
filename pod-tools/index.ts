/**
 * The commands `podlab exec POD -- ...` can run in a pod, by name.
 */
import { hey } from './hey.ts';
import { formatIpAddr, formatIpLink, formatIpNeigh, formatIpRoute } from '../netstack/iproute2.ts';
import { ping } from './ping.ts';
import type { ExecContext, PodCommand } from './types.ts';
import { UsageError } from './types.ts';
import { udp } from './udp.ts';
import { curl } from './curl.ts';
import { nc } from './nc.ts';
import { ps, ss } from './ss.ts';
import { transfer } from './transfer.ts';
import { probe } from './probe.ts';

/** `ip addr|route|neigh|link` as seen from inside the pod's namespace. */
export async function ip(ctx: ExecContext): Promise<number> {
  const obj = ctx.argv[1] ?? '';
  const stack = ctx.pod.stack;
  const out = matchIpObject(obj, {
    addr: () => formatIpAddr(stack),
    route: () => formatIpRoute(stack),
    neigh: () => formatIpNeigh(stack),
    link: () => formatIpLink([ctx.pod.lo, ctx.pod.eth0]),
  });
  if (out === undefined) throw new UsageError('Usage: ip { addr | route | neigh | link }');
  ctx.stdout(out);
  return 0;
}

/** Resolves iproute2's abbreviations (`a`, `r`, `n`, `l`, `address`, `neighbour`...). */
export function matchIpObject(word: string, table: Record<'addr' | 'route' | 'neigh' | 'link', () => string>): string | undefined {
  const aliases: Record<string, 'addr' | 'route' | 'neigh' | 'link'> = {
    a: 'addr', ad: 'addr', addr: 'addr', address: 'addr',
    r: 'route', ro: 'route', route: 'route',
    n: 'neigh', ne: 'neigh', nei: 'neigh', neigh: 'neigh', neighbor: 'neigh', neighbour: 'neigh',
    l: 'link', li: 'link', link: 'link',
  };
  const k = aliases[word];
  return k ? table[k]() : undefined;
}

export async function hostname(ctx: ExecContext): Promise<number> {
  ctx.stdout(ctx.pod.opts.name + '\n');
  return 0;
}

export const podCommands: Record<string, PodCommand> = {
  hey,
  ping,
  udp,
  ip,
  hostname,
  curl,
  nc,
  transfer,
  probe,
  ss,
  ps,
};
