/**
 * The commands `podlab exec POD -- ...` can run in a pod, by name.
 */
import { hey } from './hey.ts';
import { runIp } from '../netstack/ip-command.ts';
import { ping } from './ping.ts';
import type { ExecContext, PodCommand } from './types.ts';
import { udp } from './udp.ts';
import { curl } from './curl.ts';
import { nc } from './nc.ts';
import { ps, ss } from './ss.ts';
import { transfer } from './transfer.ts';
import { probe } from './probe.ts';
import { cat, dig, nslookup } from './dns-tools.ts';

/** `ip ...` as seen from inside the pod's namespace (iproute2's forms: netstack/ip-command.ts). */
export function ip(ctx: ExecContext): Promise<number> {
  const r = runIp(ctx.argv.slice(1), { stack: ctx.pod.stack, links: [ctx.pod.lo, ctx.pod.eth0] });
  if (r.stdout) ctx.stdout(r.stdout);
  if (r.stderr) ctx.stderr(r.stderr);
  return Promise.resolve(r.code);
}

export function hostname(ctx: ExecContext): Promise<number> {
  ctx.stdout(ctx.pod.opts.name + '\n');
  return Promise.resolve(0);
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
  cat,
  nslookup,
  dig,
};
