/**
 * The node-agent process: `node --import tsx node-agent/main.ts --name node-1
 * --ip 127.0.0.11 --underlay 127.0.0.0/24 --api https://127.0.0.10:6443
 * --state-dir .podlab`. Prints one JSON line `{"event":"ready",...}` on stdout
 * once the node is Ready (the launcher waits for it), or `{"event":"error"}`
 * and exits 1.
 *
 * `--wire raw` (host-gw, bgp; root, inside a podlab namespace or a container):
 * pod packets leave as real frames on eth0 instead of the UDP wire
 * (overlay/underlay-raw.ts).
 */
import { parseArgs } from 'node:util';
import { agentCredentials, type ClientCredentials } from '../control-plane/credentials.ts';
import { runDaemon, failDaemon } from '../common/daemon.ts';
import { createLogger } from '../common/log.ts';
import { BACKENDS, type Backend } from '../overlay/flannel-plan.ts';
import { NodeAgent } from './agent.ts';

const log = createLogger('podlab:agent');

function fail(msg: string, code = 2): never {
  return failDaemon('node-agent', msg, code);
}

let parsed;
try {
  parsed = parseArgs({
    options: {
      name: { type: 'string' },
      ip: { type: 'string' },
      underlay: { type: 'string', default: '127.0.0.0/24' },
      api: { type: 'string' },
      'state-dir': { type: 'string' },
      'token-file': { type: 'string' },
      'ca-file': { type: 'string' },
      'cluster-cidr': { type: 'string', default: '10.244.0.0/16' },
      'vxlan-port': { type: 'string', default: '8472' },
      vni: { type: 'string', default: '1' },
      backend: { type: 'string', default: 'vxlan' },
      'wire-port': { type: 'string', default: '8473' },
      wire: { type: 'string', default: 'udp' },
      'bgp-port': { type: 'string', default: '179' },
      'bgp-hold-time': { type: 'string', default: '9' },
      'bgp-topology': { type: 'string', default: 'full-mesh' },
      'proxy-mode': { type: 'string', default: 'iptables' },
      'ipvs-scheduler': { type: 'string', default: 'rr' },
      seed: { type: 'string', default: '1' },
      mtu: { type: 'string', default: '1500' },
    },
  });
} catch (e) {
  fail((e as Error).message);
}
const v = parsed.values;
for (const req of ['name', 'ip', 'api', 'state-dir'] as const) if (!v[req]) fail(`--${req} is required`);
const int = (flag: string, s: string, min: number, max: number) => {
  const n = Number(s);
  if (!Number.isInteger(n) || n < min || n > max) fail(`--${flag}: '${s}' must be an integer from ${min} to ${max}`);
  return n;
};

if (!(BACKENDS as string[]).includes(v.backend!)) fail(`--backend: must be one of ${BACKENDS.join(', ')}, got '${v.backend}'`);
if (v.wire === 'raw' && v.backend === 'vxlan') fail('--wire raw: only the unencapsulated backends (host-gw, bgp) put raw frames on eth0; vxlan always rides UDP 8472');

function holdTime(s: string): number {
  const n = Number(s);
  if (!Number.isInteger(n) || (n !== 0 && (n < 3 || n > 65535))) fail(`--bgp-hold-time: '${s}' must be 0 or 3-65535 seconds (RFC 4271)`);
  return n;
}
function oneOf<T extends string>(flag: string, s: string, values: readonly T[]): T {
  if (!(values as readonly string[]).includes(s)) fail(`--${flag}: must be one of ${values.join(', ')}, got '${s}'`);
  return s as T;
}
function topology(s: string): 'full-mesh' | 'route-reflector' {
  if (s !== 'full-mesh' && s !== 'route-reflector') fail(`--bgp-topology: must be full-mesh or route-reflector, got '${s}'`);
  return s;
}

// A node authenticates as itself: --token-file, else the environment or the lab's PKI directory.
let credentials: ClientCredentials;
try {
  credentials = agentCredentials({ stateDir: v['state-dir']!, name: v.name!, tokenFile: v['token-file'], caFile: v['ca-file'] });
} catch (e) {
  fail((e as Error).message, 1);
}
const agent = new NodeAgent({
  name: v.name!,
  ip: v.ip!,
  underlayCidr: v.underlay!,
  apiUrl: v.api!,
  credentials,
  stateDir: v['state-dir']!,
  clusterCidr: v['cluster-cidr'],
  vxlanPort: int('vxlan-port', v['vxlan-port']!, 1, 65535),
  vni: int('vni', v.vni!, 0, 0xffffff),
  backend: v.backend as Backend,
  wirePort: int('wire-port', v['wire-port']!, 1, 65535),
  wire: oneOf('wire', v.wire!, ['udp', 'raw'] as const),
  bgpPort: int('bgp-port', v['bgp-port']!, 1, 65535),
  bgpHoldTime: holdTime(v['bgp-hold-time']!),
  bgpTopology: topology(v['bgp-topology']!),
  proxyMode: oneOf('proxy-mode', v['proxy-mode']!, ['iptables', 'ipvs', 'userspace'] as const),
  ipvsScheduler: oneOf('ipvs-scheduler', v['ipvs-scheduler']!, ['rr', 'wrr', 'lc', 'wlc', 'sh', 'dh', 'sed', 'nq'] as const),
  seed: int('seed', v.seed!, -(2 ** 31), 2 ** 31 - 1),
  mtu: int('mtu', v.mtu!, 576, 65535),
});

await runDaemon('node-agent', agent, log, () => ({ node: agent.name, podCIDR: agent.podCIDR, vtepMac: agent.vtepMac, control: agent.controlSocketPath }));
