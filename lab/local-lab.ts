/**
 * Bringing a local lab up: the apiserver and one node-agent per node, each
 * its own OS process, on loopback addresses (no root): the apiserver on
 * `<net>.10`, node-N on `<net>.(10+N)`, every node's underlay socket on its
 * own address. Startup is all-or-nothing.
 */
import net from 'node:net';
import { ApiClient } from '../control-plane/client.ts';
import type { Pod } from '../control-plane/types.ts';
import path from 'node:path';
import { nodeArgsFor, ROOT } from '../common/compiled.js';
import { backendNamed } from '../backends/registry.ts';
import {
  LabError,
  agentFeatureArgs,
  applyObjects,
  defaultLoadBalancerObjects,
  claimStateDir,
  controllerArgs,
  defaultBgpPort,
  routerAddress,
  routerPeerObject,
  demoPods,
  down,
  labAddresses,
  labApi,
  nodeObject,
  nodeTokenPath,
  prepareLabPki,
  spawnLogged,
  validateUpOptions,
  waitForEvent,
  waitPodsRunning,
  waitRoutesConverged,
  writeKubeconfig,
  type UpOptions,
} from './launch.ts';
import { installClusterDns } from './cluster-dns.ts';
import { writeLab, type LabRecord, type ProcRecord } from './state.ts';
import type { LoadedObject } from './manifest.ts';
import { DEFAULT_ROUTER_ASN } from '../router/flags.ts';

/** The preload that keeps heap-size flags out of V8's flag hash once the heap is sized (see the file). */
const HEAP_FLAGS_RESET = ['--require', path.join(ROOT, 'common/heap-flags-reset.cjs')];

/**
 * V8 flags of every agent, for memory: a young generation of 1 MB semi-spaces
 * (V8 grows them to 16 MB on a busy heap), garbage collection and compilation
 * without helper threads (a hundred agents on two cores gain nothing from
 * them, and each thread is memory). At 6 nodes x 10 pods they took the median
 * agent from 62.4 to 57.0 MB RSS; pod UDP echo did not measurably change
 * (7.3k vs 7.4k pps, interleaved runs that varied ±25% on a shared machine).
 * The preload sets the heap size back to V8's default once the heap is made, so the code cache of Node's
 * built-ins still applies (common/heap-flags-reset.cjs).
 */
export const AGENT_NODE_FLAGS = ['--max-semi-space-size=1', '--single-threaded-gc', '--v8-pool-size=1', ...HEAP_FLAGS_RESET];

/**
 * V8 flags of the apiserver: a young generation of 2 MB semi-spaces. Left alone,
 * V8 grew them towards 16 MB during a big `up` (every watch event and request
 * is short-lived garbage), and the pages it had grown stayed resident until
 * its memory reducer ran after some seconds idle: at 30 nodes x 10 pods the
 * apiserver read 137-140 MB right after `up` against 116-118 MB with 1 or 2 MB
 * semi-spaces, its CPU unchanged (1.7-2.2 s against 1.95-1.96 s). Not the agents'
 * other flags: the apiserver is the lab's busiest thread, and its GC may use helpers.
 * PODLAB_APISERVER_FLAGS (space-separated, empty for none) replaces them, to measure.
 */
export const APISERVER_NODE_FLAGS = ['--max-semi-space-size=2'];

/** The apiserver's command-line flags: APISERVER_NODE_FLAGS or their replacement, with the heap flags' preload. */
export function apiserverNodeFlags(): string[] {
  const env = process.env.PODLAB_APISERVER_FLAGS;
  return [...(env === undefined ? APISERVER_NODE_FLAGS : env.split(' ').filter((f) => f !== '')), ...HEAP_FLAGS_RESET];
}

/**
 * The agents' environment: glibc malloc's trim threshold fixed at its initial 128 KiB. Left alone, glibc raises
 * it to twice the largest block it has handed back to the kernel (a bundle read, a big list response: up to 64
 * MiB), and then keeps that much free memory at the top of each arena: of the main thread's, and of V8's
 * platform thread's, where TurboFan's compile zones come and go (1-2 MB in a 100-node lab's heaviest agents).
 * Setting it also fixes the mmap threshold at 128 KiB, above the 64 KiB receive buffers of the data path, so
 * a datagram costs no extra syscall (strace of an agent through 20,000 pod UDP echoes: 40,000 sendmsg and recvmsg,
 * 22 madvise against 1 without, no brk). At 6 nodes x 10 pods it took 1.0 MB off the median agent.
 * MALLOC_TRIM_THRESHOLD_ in the launcher's environment wins.
 */
function agentEnv(): Record<string, string> {
  return { MALLOC_TRIM_THRESHOLD_: process.env.MALLOC_TRIM_THRESHOLD_ ?? '131072' };
}

/** More V8 flags for the agents from PODLAB_AGENT_V8_FLAGS (space-separated): for benchmarks comparing them. */
function extraAgentFlags(): string[] {
  return (process.env.PODLAB_AGENT_V8_FLAGS ?? '').split(/\s+/).filter((f) => f.startsWith('--'));
}

/** The arguments of one node agent; kept in lab.json so `podlab node NODE restart` can reuse them. */
function agentArgs(o: UpOptions, name: string, ip: string, apiUrl: string): string[] {
  return [
    ...AGENT_NODE_FLAGS,
    ...extraAgentFlags(),
    ...nodeArgsFor('node-agent/main.ts'),
    '--name', name, '--ip', ip, '--underlay', o.labNet, '--api', apiUrl, '--state-dir', o.stateDir, '--token-file', nodeTokenPath(o.stateDir, name),
    '--cluster-cidr', o.clusterCidr, '--vxlan-port', String(o.vxlanPort), '--seed', String(o.seed), '--mtu', String(o.mtu),
    ...agentFeatureArgs(o),
  ];
}

async function portFree(host: string, port: number): Promise<boolean> {
  if (port === 0) return true;
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, host, () => s.close(() => resolve(true)));
  });
}

export async function upLocal(o: UpOptions): Promise<LabRecord> {
  validateUpOptions(o);
  const say = o.onProgress ?? (() => {});
  const timeout = o.timeoutMs ?? 30_000;
  await claimStateDir(o.stateDir, say);
  const addrs = labAddresses(o.labNet, o.nodes);
  if (!(await portFree(addrs.api, o.apiPort))) throw new LabError(`--api-port: ${addrs.api}:${o.apiPort} is already in use (choose another with --api-port, or 0 for any)`);

  const rec: LabRecord = {
    version: 1,
    status: 'starting',
    stateDir: o.stateDir,
    startedAt: new Date().toISOString(),
    ownerPid: o.ownerPid,
    options: { nodes: o.nodes, labNet: o.labNet, apiPort: o.apiPort, clusterCidr: o.clusterCidr, vxlanPort: o.vxlanPort, wirePort: o.wirePort, seed: o.seed, mtu: o.mtu, backend: backendNamed(o.backend).name },
    procs: [],
    nodes: [],
  };
  writeLab(rec);
  try {
    prepareLabPki(o.stateDir, addrs.api, addrs.nodes.map((_, i) => `node-${i + 1}`));
    const apiArgs = [...apiserverNodeFlags(), ...nodeArgsFor('control-plane/main.ts'), '--host', addrs.api, '--port', String(o.apiPort), '--state-dir', o.stateDir, '--cluster-cidr', o.clusterCidr, ...controllerArgs(o.controllerFlags)];
    if (o.store) apiArgs.push('--store', o.store);
    if (o.nodeCidrMaskSize !== undefined) apiArgs.push('--node-cidr-mask-size', String(o.nodeCidrMaskSize));
    const api = spawnLogged(o.stateDir, 'apiserver', apiArgs);
    rec.procs.push({ role: 'apiserver', name: 'apiserver', pid: api.pid, args: apiArgs, log: api.log });
    writeLab(rec);
    const listening = await waitForEvent(api.log, 'listening', api.pid, timeout, api.offset);
    rec.apiUrl = String(listening.url);
    // Pin the port actually bound, so a restarted apiserver comes back where the agents look.
    apiArgs[apiArgs.indexOf('--port') + 1] = new URL(rec.apiUrl).port;
    writeLab(rec);
    say(`apiserver listening on ${rec.apiUrl}`);

    // Nodes are registered in order before their agents start, so node-N always
    // gets the N-th podCIDR and a seed replays the same lab (agents race otherwise).
    const api1 = labApi(rec);
    for (let i = 0; i < addrs.nodes.length; i++) await api1.create('nodes', nodeObject(`node-${i + 1}`, i, o));
    const started = addrs.nodes.map((ip, i) => {
      const name = `node-${i + 1}`;
      const args = agentArgs(o, name, ip, rec.apiUrl!);
      const env = agentEnv();
      const p = spawnLogged(o.stateDir, name, args, undefined, env);
      const pr: ProcRecord = { role: 'node', name, pid: p.pid, args, env, log: p.log };
      rec.procs.push(pr);
      return { name, ip, pr, offset: p.offset };
    });
    writeLab(rec);
    for (const s of started) {
      const ready = await waitForEvent(s.pr.log, 'ready', s.pr.pid, timeout, s.offset);
      rec.nodes.push({ name: s.name, ip: s.ip, control: String(ready.control) });
      say(`${String(s.name)} ready: ${String(s.ip)}, podCIDR ${String(ready.podCIDR)}, VtepMAC ${String(ready.vtepMac)}`);
    }
    writeLab(rec);
    const routerObjects = o.lbRouter ? await startRouter(o, rec, timeout, say) : [];

    const api2 = labApi(rec);
    await createWorkload(api2, o, routerObjects);
    if (o.waitReady) await waitPodsRunning(api2, timeout);
    // With pods on the underlay, traffic needs the routes to every peer (BGP learns them a moment later).
    if (o.waitReady && backendNamed(o.backend).ipUnderlay) await waitRoutesConverged(rec, timeout, say);
    rec.status = 'running';
    writeLab(rec);
    writeKubeconfig(o.stateDir, rec.apiUrl);
    return rec;
  } catch (e) {
    await down(o.stateDir).catch(() => {});
    throw e instanceof LabError ? e : new LabError((e as Error).message);
  }
}

/**
 * `--lb-router`: the lab's upstream router (router/) on `<net>.9`, recorded
 * like the agents (so `podlab down` and a failed start stop it); returns the
 * BGPPeer that makes the nodes peer with it.
 */
async function startRouter(o: UpOptions, rec: LabRecord, timeout: number, say: (m: string) => void): Promise<LoadedObject[]> {
  const ip = routerAddress(o.labNet);
  const port = o.bgpPort ?? defaultBgpPort();
  const asn = o.lbRouterAsn ?? DEFAULT_ROUTER_ASN;
  if (!(await portFree(ip, port))) throw new LabError(`--lb-router: ${ip}:${port} (the router's BGP) is already in use`);
  const args = [
    ...nodeArgsFor('router/main.ts'),
    '--ip', ip, '--asn', String(asn), '--bgp-port', String(port), '--hold-time', String(o.bgpHoldTime ?? 9),
    '--bind-net', o.labNet, '--seed', String(o.seed), '--api', rec.apiUrl!, '--state-dir', o.stateDir,
  ];
  const p = spawnLogged(o.stateDir, 'lb-router', args);
  rec.procs.push({ role: 'router', name: 'lb-router', pid: p.pid, args, log: p.log });
  writeLab(rec);
  await waitForEvent(p.log, 'ready', p.pid, timeout, p.offset);
  say(`lb-router ready: BGP ${ip}:${port} AS ${asn}, binds BGP-advertised LoadBalancer addresses in ${o.labNet}`);
  return [routerPeerObject(ip, port, asn)];
}

/** Nodes whose pods are created at once by `up`. */
const POD_CREATE_CONCURRENCY = 16;

async function createWorkload(api: ApiClient, o: UpOptions, routerObjects: LoadedObject[] = []): Promise<void> {
  // Several nodes' pods at once (the apiserver commits what arrives together in one transaction), each
  // node's in order, so every pod still gets the address it always had from its node's IPAM.
  const byNode = new Map<string, Pod[]>();
  for (const p of demoPods(o.nodes, o.podsPerNode)) byNode.set(p.spec!.nodeName!, [...(byNode.get(p.spec!.nodeName!) ?? []), p]);
  const queue = [...byNode.values()];
  const worker = async (): Promise<void> => {
    for (let pods = queue.shift(); pods; pods = queue.shift()) for (const p of pods) await api.create('pods', p, 'default');
  };
  await Promise.all(Array.from({ length: Math.min(POD_CREATE_CONCURRENCY, queue.length) }, worker));
  await applyObjects(api, [...routerObjects, ...defaultLoadBalancerObjects(o.labNet, o.lbRouter ? 'bgp' : 'l2'), ...o.manifests]);
  // kubeadm's addon: kube-dns at 10.96.0.10 and the CoreDNS Deployment (lab/cluster-dns.ts). Last, so the
  // demo's and the manifests' pods keep the addresses they had before the lab had DNS.
  await installClusterDns(api);
}

