/**
 * The kernel node agent process (`podlab kernel-node ...`, root only):
 *
 *   podlab kernel-node --name knode-1 --netns podlab-knode-1 --ip 10.250.0.14
 *       --api unix:/path/.podlab/api.sock --state-dir .podlab [--vxlan-port 8472] [--vni 1] [--mtu 1500]
 *       [--backend NAME (backends/registry.ts)] [--bgp-port 179] [--bgp-hold-time 9] [--bgp-topology full-mesh|route-reflector]
 *       [--cluster-cidr 10.244.0.0/16 (the IP pool BGP filters check)]
 *
 * The namespace must exist with eth0 carrying --ip (the netns lab creates it).
 * Prints `{"event":"ready",...}` once the node is Ready, or `{"event":"error"}`
 * and exits 1 (2 for bad flags), like node-agent/main.ts.
 */
import { parseArgs } from 'node:util';
import { failDaemon, helpIfAsked, runDaemon } from '../common/daemon.ts';
import { agentCredentials, type ClientCredentials } from '../control-plane/credentials.ts';
import { createLogger } from '../common/log.ts';
import { isValidIpv4 } from '../packet/addr.ts';
import { KernelNodeAgent } from './agent.ts';
import { BACKEND_NAMES, DEFAULT_BACKEND, findBackend } from '../backends/registry.ts';

const log = createLogger('podlab:kernel-node');

function fail(msg: string, code = 2): never {
  return failDaemon('kernel-node', msg, code);
}

const OPTIONS = {
  name: { type: 'string' },
  netns: { type: 'string' },
  ip: { type: 'string' },
  api: { type: 'string' },
  'state-dir': { type: 'string' },
  'token-file': { type: 'string' },
  'ca-file': { type: 'string' },
  'vxlan-port': { type: 'string', default: '8472' },
  vni: { type: 'string', default: '1' },
  mtu: { type: 'string', default: '1500' },
  backend: { type: 'string', default: DEFAULT_BACKEND },
  'bgp-port': { type: 'string', default: '179' },
  'bgp-hold-time': { type: 'string', default: '9' },
  'bgp-topology': { type: 'string', default: 'full-mesh' },
  'cluster-cidr': { type: 'string', default: '10.244.0.0/16' },
} as const;
helpIfAsked('kernel-node', 'One kernel node of a netns lab: configures a real network namespace as a node (kernel-node/).', OPTIONS);

let parsed;
try {
  parsed = parseArgs({ options: OPTIONS });
} catch (e) {
  fail((e as Error).message);
}
const v = parsed.values;
for (const req of ['name', 'netns', 'ip', 'api', 'state-dir'] as const) if (!v[req]) fail(`--${req} is required`);
if (process.getuid?.() !== 0) fail('a kernel node needs root (it creates network namespaces and a kernel vxlan device)');
if (!v.netns!.startsWith('podlab-')) fail(`--netns: lab namespaces are named podlab-..., got '${v.netns}'`);
if (!isValidIpv4(v.ip!)) fail(`--ip: not an IPv4 address: '${v.ip}'`);
const int = (flag: string, s: string, min: number, max: number) => {
  const n = Number(s);
  if (!Number.isInteger(n) || n < min || n > max) fail(`--${flag}: '${s}' must be an integer from ${min} to ${max}`);
  return n;
};

const backend = findBackend(v.backend) ?? fail(`--backend: must be one of ${BACKEND_NAMES.join(', ')}, got '${v.backend}'`);
if (!backend.kernel) fail(`--backend ${backend.name}: kernel nodes cannot run it (they run ${BACKEND_NAMES.filter((n) => findBackend(n)!.kernel).join(', ')})`);
if (v['bgp-topology'] !== 'full-mesh' && v['bgp-topology'] !== 'route-reflector') fail(`--bgp-topology: must be full-mesh or route-reflector, got '${v['bgp-topology']}'`);
function holdTime(s: string): number {
  const n = Number(s);
  if (!Number.isInteger(n) || (n !== 0 && (n < 3 || n > 65535))) fail(`--bgp-hold-time: '${s}' must be 0 or 3-65535 seconds (RFC 4271)`);
  return n;
}

// A node authenticates as itself: --token-file, else the environment or the lab's PKI directory.
let credentials: ClientCredentials;
try {
  credentials = agentCredentials({ stateDir: v['state-dir']!, name: v.name!, tokenFile: v['token-file'], caFile: v['ca-file'] });
} catch (e) {
  fail((e as Error).message, 1);
}
const agent = new KernelNodeAgent({
  name: v.name!,
  netns: v.netns!,
  ip: v.ip!,
  apiUrl: v.api!,
  credentials,
  stateDir: v['state-dir']!,
  vxlanPort: int('vxlan-port', v['vxlan-port'], 1, 65535),
  vni: int('vni', v.vni, 0, 0xffffff),
  mtu: int('mtu', v.mtu, 576, 9000),
  backend: backend.name,
  bgpPort: int('bgp-port', v['bgp-port'], 1, 65535),
  bgpHoldTime: holdTime(v['bgp-hold-time']),
  bgpTopology: v['bgp-topology'],
  clusterCidr: v['cluster-cidr'],
});

await runDaemon('kernel-node', agent, log, () => ({ node: agent.name, podCIDR: agent.podCIDR, vtepMac: agent.vtepMac, control: agent.controlSocketPath, kind: 'kernel' }));
