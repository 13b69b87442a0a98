/**
 * The lab router's flags, checked one by one: a bad value is an error that
 * names the flag (the launcher checks its own `--lb-router-*` flags with the
 * same rules before it starts anything: `checkRouterAsn`).
 */
import { parseArgs } from 'node:util';
import { isIpv4Address, parseIpv4CidrInput } from '../packet/ip-input.ts';
import { Cidr } from '../packet/cidr.ts';
import type { LbRouterOptions } from './lb-router.ts';

/** The router's AS when none is given: a private AS next to Calico's default 64512, so the nodes peer over eBGP as with a ToR. */
export const DEFAULT_ROUTER_ASN = 64513;
/** The router's control socket is `controlSocketPath(stateDir, this)`. */
export const ROUTER_CONTROL_NAME = 'lb-router';

export const ROUTER_OPTIONS = {
  ip: { type: 'string' },
  asn: { type: 'string', default: String(DEFAULT_ROUTER_ASN) },
  'bgp-port': { type: 'string', default: '1179' },
  'node-bgp-port': { type: 'string' },
  'hold-time': { type: 'string', default: '9' },
  'handoff-port': { type: 'string' },
  'bind-net': { type: 'string' },
  seed: { type: 'string', default: '1' },
  api: { type: 'string' },
  'state-dir': { type: 'string' },
} as const;

/** The router's options as its flags give them: the apiserver as a URL, with the lab's state directory (its credentials). */
export type RouterFlags = Omit<LbRouterOptions, 'api' | 'clock' | 'log'> & { api: string; stateDir: string };

/** A flag whose value is wrong; the message starts with the flag. */
export class RouterFlagError extends Error {
  override name = 'RouterFlagError';
}

/** `undefined` when `v` is a valid AS number (1 to 4294967295), else why not, naming `flag`. */
export function checkRouterAsn(flag: string, v: unknown): string | undefined {
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  return Number.isInteger(n) && (n as number) >= 1 && (n as number) <= 0xffffffff ? undefined : `${flag}: must be an AS number from 1 to 4294967295, got '${String(v)}'`;
}

function int(flag: string, s: string, min: number, max: number): number {
  const n = /^-?\d+$/.test(s) ? Number(s) : NaN;
  if (!Number.isInteger(n) || n < min || n > max) throw new RouterFlagError(`--${flag}: must be an integer from ${min} to ${max}, got '${s}'`);
  return n;
}

/** Parses and checks the router's argv (throws RouterFlagError naming the flag). */
export function parseRouterFlags(argv: string[], defaults: { handoffPort: number }): RouterFlags {
  let v;
  try {
    v = parseArgs({ args: argv, options: ROUTER_OPTIONS }).values;
  } catch (e) {
    throw new RouterFlagError((e as Error).message);
  }
  for (const req of ['ip', 'bind-net', 'api', 'state-dir'] as const) if (!v[req]) throw new RouterFlagError(`--${req} is required`);
  if (!isIpv4Address(v.ip!)) throw new RouterFlagError(`--ip: not an IPv4 address: '${v.ip}'`);
  const bindNet = parseIpv4CidrInput(v['bind-net']!);
  if (!bindNet) throw new RouterFlagError(`--bind-net: not an IPv4 CIDR: '${v['bind-net']}'`);
  // Real sockets on LB addresses: only on loopback, never on a real network.
  if (!Cidr.parse('127.0.0.0/8').covers(bindNet)) throw new RouterFlagError(`--bind-net: must be inside 127.0.0.0/8 (the router binds real sockets there), got '${v['bind-net']}'`);
  if (!bindNet.contains(v.ip)) throw new RouterFlagError(`--ip: ${v.ip} is outside --bind-net ${bindNet.toString()}`);
  const asnErr = checkRouterAsn('--asn', v.asn);
  if (asnErr) throw new RouterFlagError(asnErr);
  const hold = int('hold-time', v['hold-time'], 0, 65535);
  if (hold !== 0 && hold < 3) throw new RouterFlagError(`--hold-time: must be 0 or 3-65535 seconds (RFC 4271), got '${v['hold-time']}'`);
  const bgpPort = int('bgp-port', v['bgp-port'], 1, 65535);
  return {
    ip: v.ip,
    asn: Number(v.asn),
    bgpPort,
    nodeBgpPort: v['node-bgp-port'] === undefined ? bgpPort : int('node-bgp-port', v['node-bgp-port'], 1, 65535),
    holdTime: hold,
    handoffPort: v['handoff-port'] === undefined ? defaults.handoffPort : int('handoff-port', v['handoff-port'], 1, 65535),
    bindNet,
    seed: int('seed', v.seed, -(2 ** 31), 2 ** 31 - 1),
    api: v.api!,
    stateDir: v['state-dir']!,
  };
}
