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
import { failDaemon, parseDaemonFlags, runDaemon } from '../common/daemon.ts';
import { agentCredentials, type ClientCredentials } from '../control-plane/credentials.ts';
import { createLogger } from '../common/log.ts';
import { BACKEND_NAMES, DEFAULT_BACKEND, findBackend } from '../backends/registry.ts';
import { NodeAgent } from './agent.ts';
import { DEFAULT_LB_HANDOFF_PORT } from '../edge/lb-handoff.ts';
import { isIpv4Address, isIpv4Cidr } from '../packet/ip-input.ts';
import { tierUpLater, tierUpOnceSettled, tierUpSooner } from './tiering.ts';
import { lowerV8PlatformThreads } from '../common/thread-priority.ts';

const log = createLogger('podlab:agent');

const OPTIONS = {
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
  backend: { type: 'string', default: DEFAULT_BACKEND },
  'wire-port': { type: 'string', default: '8473' },
  wire: { type: 'string', default: 'udp' },
  'bgp-port': { type: 'string', default: '179' },
  'bgp-hold-time': { type: 'string', default: '9' },
  'bgp-topology': { type: 'string', default: 'full-mesh' },
  'proxy-mode': { type: 'string', default: 'iptables' },
  'ipvs-scheduler': { type: 'string', default: 'rr' },
  seed: { type: 'string', default: '1' },
  mtu: { type: 'string', default: '1500' },
  'control-port': { type: 'string', default: '0' },
  'lb-handoff-port': { type: 'string', default: String(DEFAULT_LB_HANDOFF_PORT) },
} as const;
const flags = parseDaemonFlags('node-agent', 'One emulated node: kubelet, the CNI plugins, the backend agent and kube-proxy in one process (node-agent/).', OPTIONS, ['name', 'ip', 'api', 'state-dir'], 'agent');
const v = flags.values;
const int = flags.int.bind(flags);
// The modules are loaded: V8 may now tier up the start-up's code more slowly (./tiering.ts).
tierUpLater();
function fail(msg: string, code = 2): never {
  return failDaemon('node-agent', msg, code);
}
if (!isIpv4Address(v.ip)) fail(`--ip: not an IPv4 address: '${v.ip}'`);
for (const flag of ['underlay', 'cluster-cidr'] as const) if (!isIpv4Cidr(v[flag])) fail(`--${String(flag)}: not an IPv4 CIDR: '${String(v[flag])}'`);

const backend = findBackend(v.backend) ?? fail(`--backend: must be one of ${BACKEND_NAMES.join(', ')}, got '${v.backend}'`);
if (v.wire === 'raw' && !backend.ipUnderlay) {
  const routed = BACKEND_NAMES.filter((n) => findBackend(n)!.ipUnderlay);
  fail(`--wire raw: only the unencapsulated backends (${routed.join(', ')}) put raw frames on eth0; ${backend.name} always rides its own tunnel`);
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
  ip: v.ip,
  underlayCidr: v.underlay,
  apiUrl: v.api!,
  credentials,
  stateDir: v['state-dir']!,
  clusterCidr: v['cluster-cidr'],
  vxlanPort: int('vxlan-port', v['vxlan-port'], 1, 65535),
  vni: int('vni', v.vni, 0, 0xffffff),
  backend: backend.name,
  wirePort: int('wire-port', v['wire-port'], 1, 65535),
  wire: flags.oneOf('wire', v.wire, ['udp', 'raw'] as const),
  bgpPort: int('bgp-port', v['bgp-port'], 1, 65535),
  bgpHoldTime: flags.holdTime('bgp-hold-time', v['bgp-hold-time']),
  bgpTopology: flags.oneOf('bgp-topology', v['bgp-topology'], ['full-mesh', 'route-reflector'] as const),
  proxyMode: flags.oneOf('proxy-mode', v['proxy-mode'], ['iptables', 'ipvs', 'userspace'] as const),
  ipvsScheduler: flags.oneOf('ipvs-scheduler', v['ipvs-scheduler'], ['rr', 'wrr', 'lc', 'wlc', 'sh', 'dh', 'sed', 'nq'] as const),
  seed: int('seed', v.seed, -(2 ** 31), 2 ** 31 - 1),
  mtu: int('mtu', v.mtu, 576, 65535),
  controlPort: int('control-port', v['control-port'], 0, 65535),
  lbHandoffPort: int('lb-handoff-port', v['lb-handoff-port'], 0, 65535),
  // Off only to measure what the flow cache saves (bench/README.md); nothing else should need it.
  fastPath: process.env.PODLAB_FAST_PATH !== 'off',
});

/** Serves until stopped. (No top-level await: the agent's bundle is a CommonJS script, for its code cache.) */
async function serve(): Promise<void> {
  // V8 compiles the code of every isolate in the process (kube-proxy's worker's too) on its platform thread: at the
  // worker's priority, below the data plane's thread, not beside it (common/thread-priority.ts).
  const lowered = await lowerV8PlatformThreads(10);
  log.debug(`V8's platform threads at nice 10: ${lowered.join(', ') || 'none found'}`);
  await runDaemon('node-agent', agent, log, () => ({ node: agent.name, podCIDR: agent.podCIDR, vtepMac: agent.vtepMac, control: agent.controlSocketPath }));
  tierUpOnceSettled(agent.nodeEvents, {
    tierUp: () => {
      tierUpSooner();
      log.debug("V8's tier-up thresholds lowered (node-agent/tiering.ts)");
    },
  });
}
void serve();
