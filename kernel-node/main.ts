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
import { failDaemon, parseDaemonFlags, runDaemon } from '../common/daemon.ts';
import { agentCredentials, type ClientCredentials } from '../control-plane/credentials.ts';
import { createLogger } from '../common/log.ts';
import { isValidIpv4 } from '../packet/addr.ts';
import { KernelNodeAgent } from './agent.ts';
import { BACKEND_NAMES, DEFAULT_BACKEND, findBackend } from '../backends/registry.ts';

const log = createLogger('podlab:kernel-node');

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
const flags = parseDaemonFlags('kernel-node', 'One kernel node of a netns lab: configures a real network namespace as a node (kernel-node/).', OPTIONS, ['name', 'netns', 'ip', 'api', 'state-dir']);
const v = flags.values;
const int = flags.int.bind(flags);
function fail(msg: string, code = 2): never {
  return failDaemon('kernel-node', msg, code);
}
if (process.getuid?.() !== 0) fail('a kernel node needs root (it creates network namespaces and a kernel vxlan device)');
if (!v.netns!.startsWith('podlab-')) fail(`--netns: lab namespaces are named podlab-..., got '${v.netns}'`);
if (!isValidIpv4(v.ip!)) fail(`--ip: not an IPv4 address: '${v.ip}'`);

const backend = findBackend(v.backend) ?? fail(`--backend: must be one of ${BACKEND_NAMES.join(', ')}, got '${v.backend}'`);
if (!backend.kernel) fail(`--backend ${backend.name}: kernel nodes cannot run it (they run ${BACKEND_NAMES.filter((n) => findBackend(n)!.kernel).join(', ')})`);

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
  bgpHoldTime: flags.holdTime('bgp-hold-time', v['bgp-hold-time']),
  bgpTopology: flags.oneOf('bgp-topology', v['bgp-topology'], ['full-mesh', 'route-reflector'] as const),
  clusterCidr: v['cluster-cidr'],
});

await runDaemon('kernel-node', agent, log, () => ({ node: agent.name, podCIDR: agent.podCIDR, vtepMac: agent.vtepMac, control: agent.controlSocketPath, kind: 'kernel' }));
