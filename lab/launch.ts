/**
 * What both lab launchers (./local-lab.ts on loopback, ./netns-lab.ts in
 * network namespaces) share: the options and their checks, the Node objects a
 * lab pre-registers, the agents' flags, starting detached processes with their
 * logs and waiting for their events, applying the workload, waiting for pods
 * and routes, and stopping: `down`, restarting and killing recorded
 * processes.
 *
 * Processes are started detached (own process group, output to
 * `<stateDir>/logs/`) and recorded in lab.json as they start, so that a
 * failure at any step, a Ctrl-C, or a later `podlab down` stops exactly them
 * and nothing else.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { stopAllRecorded } from '../common/recorded-process.ts';
import { ROOT } from '../common/compiled.js';
import { ApiClient } from '../control-plane/client.ts';
import { adminCredentials } from '../control-plane/credentials.ts';
import { apiserverCertHosts, defaultPkiDir, ensurePki, writeNodeTokenFile } from '../control-plane/pki.ts';
import { ControlClient } from '../control-plane/node-control-client.ts';
import { registry } from '../control-plane/resources.ts';
import type { KubeObject, Node, Pod } from '../control-plane/types.ts';
import { intToIpv4 } from '../packet/addr.ts';
import { Cidr } from '../packet/cidr.ts';
import { isIpv4Cidr, parseIpv4CidrInput } from '../packet/ip-input.ts';
import type { LoadedObject } from './manifest.ts';
import { METALLB_NAMESPACE, defaultLabPool } from '../control-plane/metallb.ts';
import type { BackendName } from '../backends/backend.ts';
import { BACKEND_NAMES, DEFAULT_BACKEND, backendNamed, bgpBackendNames, findBackend } from '../backends/registry.ts';
import { DEFAULT_WIRE_PORT } from '../backends/routed-wire.ts';
import { DEFAULT_RR_CLUSTER_ID, RR_CLUSTER_ANNOTATION, RR_LABEL } from '../backends/bgp/bgp-backend.ts';
import { parseEtcdUrl } from '../control-plane/etcd-persister.ts';
import { DEFAULT_ROUTER_ASN, checkRouterAsn } from '../router/flags.ts';


/** Backends `up` offers in this build (the registry's). */
export const SUPPORTED_BACKENDS: readonly BackendName[] = BACKEND_NAMES;

/** BGP's own port when the process may bind it (root), else 1179; every node has its own address, so they can share it. */
export function defaultBgpPort(): number {
  return process.getuid?.() === 0 ? 179 : 1179;
}
import { isOurProcess, labIsLive, readLab, withLabLock, writeLab, type LabRecord } from './state.ts';
import { isRoot, removeLabNamespaces } from '../hostnet/netns.ts';

/** A lab-level failure with a message meant for the user. */
export class LabError extends Error {
  override name = 'LabError';
}

export interface UpOptions {
  stateDir: string;
  nodes: number;
  podsPerNode: number;
  manifests: LoadedObject[];
  /** Loopback network for the lab, e.g. 127.0.0.0/24. */
  labNet: string;
  apiPort: number;
  clusterCidr: string;
  /** The size of each node's podCIDR (the apiserver's --node-cidr-mask-size; default 24). */
  nodeCidrMaskSize?: number;
  /** The apiserver's --store: `sqlite` (default, in the state dir) or `etcd://HOST:PORT`. */
  store?: string;
  vxlanPort: number;
  /** A registered backend (default: the registry's default, vxlan). */
  backend?: BackendName;
  /** The bare-IPv4 wire's UDP port (host-gw, bgp). */
  wirePort?: number;
  /**
   * host-gw, bgp: what carries pod packets between nodes: 'udp' (the bare-IPv4
   * wire; the only one in local mode) or 'raw' (real frames on eth0 through
   * libpcap; netns labs, where it is the default).
   */
  wire?: 'udp' | 'raw';
  /** BGP (backend bgp): port (default 179 as root, else 1179), hold time, topology, reflectors. */
  bgpPort?: number;
  bgpHoldTime?: number;
  bgpTopology?: 'full-mesh' | 'route-reflector';
  bgpReflectors?: number;
  /**
   * Start the lab's upstream router (router/, local labs on a BGP backend):
   * it peers with every node as the BGPPeer `lb-router`, and the default
   * LoadBalancer pool is advertised over BGP instead of layer 2.
   */
  lbRouter?: boolean;
  /** The router's AS (default 64513: eBGP towards the nodes' 64512). */
  lbRouterAsn?: number;
  /** kube-proxy: iptables (default), ipvs or userspace; the IPVS scheduler. */
  proxyMode?: 'iptables' | 'ipvs' | 'userspace';
  ipvsScheduler?: string;
  seed: number;
  mtu: number;
  /** Wait for every node Ready and pod Running before returning. */
  waitReady: boolean;
  /** The process that owns the lab (foreground `up`, a scenario run): with `supervise`, the lab stops when it dies. */
  ownerPid?: number;
  /** Start a supervisor (lab/supervisor.ts) that restarts crashed agents and the apiserver with backoff. */
  supervise?: boolean;
  timeoutMs?: number;
  onProgress?: (msg: string) => void;
  // netns labs (lab/netns-lab.ts)
  /** local (default: loopback addresses) or netns (root: network namespaces, a bridge, kernel nodes). */
  mode?: 'local' | 'netns';
  /** netns: the underlay subnet inside the lab's namespaces (default 10.250.0.0/24). */
  underlayNet?: string;
  /** netns: nodes that are the Linux kernel itself (kernel vxlan flannel.1), knode-1..K. */
  kernelNodes?: number;
  /** netns: every namespace is `<prefix>-...` (default podlab). */
  netnsPrefix?: string;
  /** The apiserver's controller durations (Go durations such as `15s`), so scenarios can shorten them. */
  controllerFlags?: ControllerFlags;
}

/** Controller-manager durations passed to the apiserver process. */
export interface ControllerFlags {
  nodeMonitorPeriod?: string;
  nodeMonitorGracePeriod?: string;
  podTerminationDrain?: string;
  defaultNotReadyTolerationSeconds?: number;
  defaultUnreachableTolerationSeconds?: number;
}

/** The apiserver flags for {@link ControllerFlags}. */
export function controllerArgs(f: ControllerFlags | undefined): string[] {
  if (!f) return [];
  const out: string[] = [];
  if (f.nodeMonitorPeriod !== undefined) out.push('--node-monitor-period', f.nodeMonitorPeriod);
  if (f.nodeMonitorGracePeriod !== undefined) out.push('--node-monitor-grace-period', f.nodeMonitorGracePeriod);
  if (f.podTerminationDrain !== undefined) out.push('--pod-termination-drain', f.podTerminationDrain);
  if (f.defaultNotReadyTolerationSeconds !== undefined) out.push('--default-not-ready-toleration-seconds', String(f.defaultNotReadyTolerationSeconds));
  if (f.defaultUnreachableTolerationSeconds !== undefined) out.push('--default-unreachable-toleration-seconds', String(f.defaultUnreachableTolerationSeconds));
  return out;
}

export { ROOT };

/** Node addresses of a lab network: the apiserver and node-i. */
export function labAddresses(labNet: string, nodes: number): { api: string; nodes: string[] } {
  const cidr = Cidr.parse(labNet);
  const net = cidr.network;
  if (10 + nodes >= cidr.size - 1) throw new LabError(`--lab-net ${labNet} is too small for ${nodes} nodes (node addresses start at .11)`);
  return { api: intToIpv4(net + 10), nodes: Array.from({ length: nodes }, (_, i) => intToIpv4(net + 11 + i)) };
}

/** Local labs live on loopback only. */
const LOOPBACK = Cidr.of('127.0.0.0', 8);

/** Checks the option values, naming the flag at fault. */
export function validateUpOptions(o: UpOptions): void {
  if (!Number.isInteger(o.nodes) || o.nodes < 1 || o.nodes > 200) throw new LabError(`--nodes: must be an integer from 1 to 200, got ${o.nodes}`);
  if (!Number.isInteger(o.podsPerNode) || o.podsPerNode < 0 || o.podsPerNode > 250) throw new LabError(`--pods-per-node: must be an integer from 0 to 250, got ${o.podsPerNode}`);
  const labNet = parseIpv4CidrInput(o.labNet);
  if (!labNet || labNet.prefixLen < 8 || labNet.prefixLen > 28 || !LOOPBACK.covers(labNet)) {
    // Local mode lives on loopback only: it must never bind or send to a real network.
    throw new LabError(`--lab-net: must be a CIDR inside 127.0.0.0/8 with a prefix from /8 to /28, got '${o.labNet}'`);
  }
  if (!Number.isInteger(o.apiPort) || o.apiPort < 0 || o.apiPort > 65535) throw new LabError(`--api-port: must be 0-65535, got ${o.apiPort}`);
  if (!Number.isInteger(o.vxlanPort) || o.vxlanPort < 1 || o.vxlanPort > 65535) throw new LabError(`--vxlan-port: must be 1-65535, got ${o.vxlanPort}`);
  if (!isIpv4Cidr(o.clusterCidr)) throw new LabError(`--cluster-cidr: not an IPv4 CIDR: '${String(o.clusterCidr)}'`);
  if (o.nodeCidrMaskSize !== undefined) {
    const clusterLen = Number(o.clusterCidr.split('/')[1]);
    // /30 is the smallest that leaves a pod an address (network, cni0's gateway and broadcast are taken).
    if (!Number.isInteger(o.nodeCidrMaskSize) || o.nodeCidrMaskSize < clusterLen || o.nodeCidrMaskSize > 30) {
      throw new LabError(`--node-cidr-mask-size: must be an integer from the cluster CIDR's /${clusterLen} to 30, got ${o.nodeCidrMaskSize}`);
    }
  }
  if (o.store !== undefined && o.store !== 'sqlite') {
    try {
      parseEtcdUrl(o.store);
    } catch (err) {
      throw new LabError((err as Error).message);
    }
  }
  if (!Number.isInteger(o.mtu) || o.mtu < 576 || o.mtu > 9000) throw new LabError(`--mtu: must be 576-9000, got ${o.mtu}`);
  if (o.backend !== undefined && !SUPPORTED_BACKENDS.includes(o.backend)) {
    throw new LabError(`--backend: must be one of ${SUPPORTED_BACKENDS.join(', ')}, got '${o.backend}'`);
  }
  if (o.wirePort !== undefined && (!Number.isInteger(o.wirePort) || o.wirePort < 1 || o.wirePort > 65535)) throw new LabError(`--wire-port: must be 1-65535, got ${o.wirePort}`);
  if (o.wire !== undefined && o.wire !== 'udp' && o.wire !== 'raw') throw new LabError(`--wire: must be udp or raw, got '${String(o.wire)}'`);
  if (o.wire === 'raw' && (o.mode ?? 'local') !== 'netns') throw new LabError('--wire raw: raw frames need a real eth0: use --mode netns (root); local labs on loopback use the UDP wire');
  if (o.bgpPort !== undefined && (!Number.isInteger(o.bgpPort) || o.bgpPort < 1 || o.bgpPort > 65535)) throw new LabError(`--bgp-port: must be 1-65535, got ${o.bgpPort}`);
  if (o.bgpPort !== undefined && o.bgpPort < 1024 && process.getuid?.() !== 0) throw new LabError(`--bgp-port: ${o.bgpPort} needs root; use e.g. --bgp-port 1179`);
  if (o.bgpHoldTime !== undefined && (!Number.isInteger(o.bgpHoldTime) || (o.bgpHoldTime !== 0 && (o.bgpHoldTime < 3 || o.bgpHoldTime > 65535)))) {
    throw new LabError(`--bgp-hold-time: must be 0 or 3-65535 seconds (RFC 4271), got ${o.bgpHoldTime}`);
  }
  if (o.bgpTopology !== undefined && o.bgpTopology !== 'full-mesh' && o.bgpTopology !== 'route-reflector') {
    throw new LabError(`--bgp-topology: must be full-mesh or route-reflector, got '${String(o.bgpTopology)}'`);
  }
  if (o.bgpReflectors !== undefined && (!Number.isInteger(o.bgpReflectors) || o.bgpReflectors < 1 || o.bgpReflectors > o.nodes)) {
    throw new LabError(`--bgp-reflectors: must be 1 to --nodes (${o.nodes}), got ${o.bgpReflectors}`);
  }
  if ((o.bgpTopology || o.bgpReflectors) && !findBackend(o.backend ?? DEFAULT_BACKEND)?.bgp) throw new LabError(`--bgp-topology/--bgp-reflectors need --backend ${bgpBackendNames().join(' or ')}`);
  if (o.proxyMode !== undefined && !['iptables', 'ipvs', 'userspace'].includes(o.proxyMode)) throw new LabError(`--proxy-mode: must be iptables, ipvs or userspace, got '${o.proxyMode}'`);
  if (o.ipvsScheduler !== undefined && !['rr', 'wrr', 'lc', 'wlc', 'sh', 'dh', 'sed', 'nq'].includes(o.ipvsScheduler)) {
    throw new LabError(`--ipvs-scheduler: must be one of rr, wrr, lc, wlc, sh, dh, sed, nq, got '${o.ipvsScheduler}'`);
  }
  if (o.lbRouterAsn !== undefined && !o.lbRouter) throw new LabError('--lb-router-asn: only with --lb-router');
  if (o.lbRouter) {
    if ((o.mode ?? 'local') !== 'local') throw new LabError('--lb-router: local labs only (a netns lab\'s nodes have real addresses a router namespace could route to; not built)');
    if (!findBackend(o.backend ?? DEFAULT_BACKEND)?.bgp) throw new LabError(`--lb-router: the router learns LoadBalancer routes over BGP: needs --backend ${bgpBackendNames().join(' or ')}`);
    const asnError = checkRouterAsn('--lb-router-asn', o.lbRouterAsn ?? DEFAULT_ROUTER_ASN);
    if (asnError) throw new LabError(asnError);
  }
  labAddresses(o.labNet, o.nodes);
}

/** The lab router's address: `<net>.9`, just below the apiserver's `.10`. */
export function routerAddress(labNet: string): string {
  return intToIpv4(Cidr.parse(labNet).network + 9);
}

/** The BGPPeer that makes every node peer with the lab router (`--lb-router`). */
export function routerPeerObject(ip: string, port: number, asn: number): LoadedObject {
  return {
    obj: { apiVersion: 'projectcalico.org/v3', kind: 'BGPPeer', metadata: { name: 'lb-router' }, spec: { peerIP: `${ip}:${port}`, asNumber: asn } } as unknown as KubeObject,
    file: '<lab defaults>',
    line: 1,
  };
}

/**
 * The Node object a lab pre-registers (so node-N gets the N-th podCIDR): with
 * `--bgp-topology route-reflector` the first `--bgp-reflectors` nodes are
 * labelled as route reflectors, as Calico's docs do.
 */
export function nodeObject(name: string, index: number, o: Pick<UpOptions, 'bgpTopology' | 'bgpReflectors' | 'nodes'>): object {
  const reflectors = o.bgpTopology === 'route-reflector' ? (o.bgpReflectors ?? Math.min(2, o.nodes)) : 0;
  const rr = index < reflectors;
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels: { 'kubernetes.io/hostname': name, ...(rr ? { [RR_LABEL]: 'true' } : {}) }, annotations: rr ? { [RR_CLUSTER_ANNOTATION]: DEFAULT_RR_CLUSTER_ID } : {} },
    spec: {},
  };
}

/** The flags every node agent gets for the backend, BGP and kube-proxy (local and netns labs alike). */
export function agentFeatureArgs(o: UpOptions): string[] {
  return [
    '--backend', backendNamed(o.backend).name, '--wire-port', String(o.wirePort ?? DEFAULT_WIRE_PORT), '--wire', backendNamed(o.backend).ipUnderlay ? (o.wire ?? 'udp') : 'udp',
    '--bgp-port', String(o.bgpPort ?? defaultBgpPort()), '--bgp-hold-time', String(o.bgpHoldTime ?? 9), '--bgp-topology', o.bgpTopology ?? 'full-mesh',
    '--proxy-mode', o.proxyMode ?? 'iptables', '--ipvs-scheduler', o.ipvsScheduler ?? 'rr',
  ];
}

/** Where a node's bearer token is written for its agent (pki.ts issues it). */
export function nodeTokenPath(stateDir: string, name: string): string {
  return path.join(defaultPkiDir(stateDir), 'nodes', `${name}.token`);
}

/**
 * Creates the lab's CA, serving certificate, admin token and node-token key
 * (pki.ts) before the apiserver starts, and one token file per node.
 */
export function prepareLabPki(stateDir: string, apiHost: string, nodeNames: string[]): void {
  const dir = defaultPkiDir(stateDir);
  ensurePki(dir, apiserverCertHosts(apiHost));
  for (const n of nodeNames) writeNodeTokenFile(dir, n);
}

/** An admin client of a running lab (its URL, the CA and the admin token from its state directory). */
export function labApi(rec: { apiUrl?: string; stateDir: string }): ApiClient {
  if (!rec.apiUrl) throw new LabError(`the lab in ${rec.stateDir} has no apiserver URL yet`);
  return new ApiClient(rec.apiUrl, { credentials: adminCredentials(rec.stateDir) });
}

/** Why this process starts no more lab processes (see refuseLaunches), once it was told. */
let launchesRefused: string | undefined;

/**
 * From now on spawnLogged refuses: for a launcher interrupted while a lab comes up. Every process it started is in
 * lab.json before the next await, so a `down` after this stops them all, and none can start behind its back.
 */
function refuseLaunches(reason: string): void {
  launchesRefused = reason;
}

/** The state directories of the labs this process brought up (or began to) and has not taken down. */
const labsUp = new Set<string>();

/**
 * Until the returned function is called, SIGINT or SIGTERM make this process a launcher interrupted: nothing more
 * starts (refuseLaunches), every lab it brought up is taken down, `also` runs (for children of its own), and it
 * exits 130. A lab's processes are detached, in sessions of their own, so a Ctrl-C at the terminal reaches the
 * launcher only: without this they would outlive it.
 */
export function stopLabsOnInterrupt(say: (msg: string) => void, also: () => void = () => {}): () => void {
  let stopping = false;
  const interrupted = (signal: NodeJS.Signals) => {
    // The other signal while stopping (a child gets the terminal's SIGINT and its parent's SIGTERM): one stop.
    if (stopping) return;
    stopping = true;
    refuseLaunches(`interrupted (${signal})`);
    say(`${signal}: ${labsUp.size ? `stopping the lab${labsUp.size > 1 ? 's' : ''} in ${[...labsUp].join(', ')}` : 'no lab to stop'}`);
    try {
      also();
    } finally {
      void Promise.allSettled([...labsUp].map((dir) => down(dir))).finally(() => process.exit(130));
    }
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  return () => {
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
  };
}

/**
 * The environment of the lab's processes: the user's, without NODE_EXTRA_CA_CERTS and with OpenSSL's default
 * certificate paths pointing at nothing (for LAB_TLS_FLAGS, which spawnLogged gives every lab process). They trust no CA but the lab's own, which each is
 * given by path, yet Node read the extra certificates into every process it started, before any code ran (with a
 * distribution's bundle of 225 KB, 50 ms of CPU: `node -e 0` took 124 ms against 72 ms), and parsed its own
 * ~140 root certificates at the first TLS context a process made, whatever that context trusted (22 ms of CPU
 * against 2.5 ms from the empty default paths). A hundred agents: seven seconds.
 */
export function labProcessEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, SSL_CERT_FILE: '/dev/null', SSL_CERT_DIR: '/dev/null', ...extra };
  delete env.NODE_EXTRA_CA_CERTS;
  return env;
}

/** Node flags that go with labProcessEnv: root certificates from OpenSSL's default paths, not Node's bundle. */
const LAB_TLS_FLAGS = ['--use-openssl-ca'];

/**
 * Starts a detached child with output to a log file; resolves with its pid.
 * With `netns` (netns labs) it runs inside that network namespace through
 * `ip netns exec`, which execs: the pid is still the node process's own.
 * `env` is added to the environment the lab's processes get (labProcessEnv; ProcRecord.env, for restarts).
 */
export function spawnLogged(stateDir: string, name: string, args: string[], netns?: string, env?: Record<string, string>): { pid: number; log: string; offset: number } {
  if (launchesRefused !== undefined) throw new LabError(`${name} not started: ${launchesRefused}`);
  const logDir = path.join(stateDir, 'logs');
  fs.mkdirSync(logDir, { recursive: true });
  const log = path.join(logDir, `${name}.log`);
  const fd = fs.openSync(log, 'a');
  // Logs outlive labs: readers start at what this run appends.
  const offset = fs.fstatSync(fd).size;
  const node = [...LAB_TLS_FLAGS, ...args];
  const [cmd, argv] = netns ? ['ip', ['netns', 'exec', netns, process.execPath, ...node]] : [process.execPath, node];
  const child = spawn(cmd, argv, { detached: true, stdio: ['ignore', fd, fd], cwd: ROOT, env: labProcessEnv(env) });
  fs.closeSync(fd);
  child.unref();
  if (!child.pid) throw new LabError(`could not start ${name}`);
  return { pid: child.pid, log, offset };
}

/** Waits until a JSON event line with `event` (or an error line) appears in a log, from `offset`. */
export async function waitForEvent(
  logFile: string,
  event: string,
  pid: number,
  timeoutMs: number,
  offset = 0,
): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let text = '';
    try {
      text = fs.readFileSync(logFile).subarray(offset).toString('utf8');
    } catch {
      /* not yet */
    }
    for (const line of text.split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        const j = JSON.parse(line) as Record<string, unknown>;
        if (j.event === event) return j;
        if (j.event === 'error') throw new LabError(String(j.message));
      } catch (e) {
        if (e instanceof LabError) throw e;
      }
    }
    let alive = true;
    try {
      process.kill(pid, 0);
    } catch {
      alive = false;
    }
    if (!alive) throw new LabError(`process ${pid} exited during startup; last log lines:\n${tail(text, 8)}`);
    if (Date.now() > deadline) throw new LabError(`timed out waiting for "${event}" from pid ${pid} (log: ${logFile}):\n${tail(text, 8)}`);
    await sleep(50);
  }
}

function tail(text: string, n: number): string {
  return text.trim().split('\n').slice(-n).map((l) => '  ' + l).join('\n');
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * `<stateDir>/kubeconfig` (mode 0600), so a real kubectl or
 * @kubernetes/client-node talks to the lab's apiserver unmodified: the
 * server URL, the lab CA (certificate-authority-data) and the admin token.
 * `KUBECONFIG=.podlab/kubeconfig kubectl get pods -o wide`.
 */
export function writeKubeconfig(stateDir: string, apiUrl: string): void {
  const creds = adminCredentials(stateDir, {});
  const text = [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: podlab',
    '  cluster:',
    `    server: ${apiUrl}`,
    `    certificate-authority-data: ${Buffer.from(creds.ca).toString('base64')}`,
    'contexts:',
    '- name: podlab',
    '  context: {cluster: podlab, user: admin, namespace: default}',
    'current-context: podlab',
    'users:',
    '- name: admin',
    '  user:',
    `    token: ${creds.token}`,
    '',
  ].join('\n');
  const file = path.join(stateDir, 'kubeconfig');
  fs.writeFileSync(file, text, { mode: 0o600 });
  fs.chmodSync(file, 0o600);
}

/** Removes everything of a lab but its logs. */
export function cleanState(stateDir: string): void {
  if (!fs.existsSync(stateDir)) return;
  for (const entry of fs.readdirSync(stateDir)) {
    if (entry === 'logs') continue;
    fs.rmSync(path.join(stateDir, entry), { recursive: true, force: true });
  }
}

/** Brings a lab up; on any failure everything started so far is stopped again. */
/** The pods of `--pods-per-node M`: pod-<node><letter>, pinned to their node. */
export function demoPods(nodes: number, perNode: number): Pod[] {
  const pods: Pod[] = [];
  for (let n = 1; n <= nodes; n++) {
    for (let k = 0; k < perNode; k++) {
      const suffix = k < 26 ? String.fromCharCode(97 + k) : `x${k}`;
      pods.push({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: `pod-${n}${suffix}`, namespace: 'default', labels: { app: 'podlab-demo' } } as unknown as Pod['metadata'],
        spec: { nodeName: `node-${n}`, containers: [{ name: 'main', image: 'busybox' }] },
      });
    }
  }
  return pods;
}

/**
 * MetalLB's configuration a local lab starts with: the namespace, an
 * IPAddressPool `default` of `<net>.200/29` (loopback, so the host reaches LB
 * IPs with a real socket) and an L2Advertisement for it (a BGPAdvertisement
 * with the lab router, `--lb-router`, which binds them). Nothing when the lab
 * net is smaller than a /24; a user's manifests may replace both.
 */
export function defaultLoadBalancerObjects(labNet: string, mode: 'l2' | 'bgp' = 'l2'): LoadedObject[] {
  const cidr = defaultLabPool(labNet);
  if (!cidr) return [];
  const meta = { name: 'default', namespace: METALLB_NAMESPACE };
  const at = (obj: unknown): LoadedObject => ({ obj: obj as KubeObject, file: '<lab defaults>', line: 1 });
  return [
    at({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: METALLB_NAMESPACE } }),
    at({ apiVersion: 'metallb.io/v1beta1', kind: 'IPAddressPool', metadata: meta, spec: { addresses: [cidr] } }),
    at({ apiVersion: 'metallb.io/v1beta1', kind: mode === 'bgp' ? 'BGPAdvertisement' : 'L2Advertisement', metadata: meta, spec: { ipAddressPools: ['default'] } }),
  ];
}

/**
 * `kubectl apply` for manifest objects, in order, namespaces first: creates
 * what is missing, updates what differs (spec, labels, annotations), leaves the
 * rest. Kinds resolve through the apiserver's resource registry.
 */
export async function applyObjects(api: ApiClient, objs: LoadedObject[]): Promise<string[]> {
  const done: string[] = [];
  // Namespaces before what lives in them; IngressClasses before Ingresses (the default class is given at creation).
  const rank = (k: string) => (k === 'Namespace' ? 0 : k === 'IngressClass' ? 1 : 2);
  const ordered = [...objs].sort((a, b) => rank(a.obj.kind) - rank(b.obj.kind));
  for (const { obj, file, line } of ordered) {
    const rt = registry.byKind(obj.apiVersion, obj.kind);
    if (!rt) throw new LabError(`${file}:${line}: kind ${obj.kind} (${obj.apiVersion}) is not served by podlab`);
    const ns = rt.namespaced ? (obj.metadata.namespace ?? 'default') : undefined;
    const label = `${rt.singular}/${obj.metadata.name}`;
    try {
      const existing = await api.get<KubeObject>(rt.plural, obj.metadata.name, ns);
      if (!existing) {
        await api.create(rt.plural, obj, ns);
        done.push(`${label} created`);
        continue;
      }
      const same = (a: unknown, b: unknown) => JSON.stringify(a ?? {}) === JSON.stringify(b ?? {});
      const want = { spec: obj.spec, labels: obj.metadata.labels, annotations: obj.metadata.annotations };
      const have = { spec: existing.spec, labels: existing.metadata.labels, annotations: existing.metadata.annotations };
      // Only fields the manifest sets count (the server defaults the rest).
      const wantSpec = JSON.parse(JSON.stringify(want.spec ?? {})) as Record<string, unknown>;
      const haveSpec = (have.spec ?? {}) as Record<string, unknown>;
      const specSame = Object.keys(wantSpec).every((k) => same(wantSpec[k], haveSpec[k]));
      if (specSame && (!want.labels || same(want.labels, have.labels)) && (!want.annotations || same(want.annotations, have.annotations))) {
        done.push(`${label} unchanged`);
        continue;
      }
      await api.patch(rt.plural, obj.metadata.name, { metadata: { labels: obj.metadata.labels, annotations: obj.metadata.annotations }, spec: obj.spec }, ns);
      done.push(`${label} configured`);
    } catch (e) {
      throw new LabError(`${file}:${line}: ${obj.kind} ${obj.metadata.name}: ${(e as Error).message}`);
    }
  }
  return done;
}

/** Polls until every pod is Running with an IP. */
/**
 * After an apply: every pod Running with an IP, and every applied Service's
 * EndpointSlices listing as many ready endpoints as it selects Running pods.
 */
export async function waitApplied(api: ApiClient, objs: LoadedObject[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  await waitPodsRunning(api, timeoutMs);
  for (const { obj } of objs.filter((o) => o.obj.kind === 'Service')) {
    const ns = obj.metadata.namespace ?? 'default';
    const selector = (obj as { spec?: { selector?: Record<string, string> } }).spec?.selector;
    if (!selector) continue;
    for (;;) {
      const pods = (await api.list<Pod>('pods', { namespace: ns })).items.filter((p) => p.status?.phase === 'Running' && Object.entries(selector).every(([k, v]) => p.metadata.labels?.[k] === v));
      const slices = (await api.list<{ endpoints?: { conditions?: { ready?: boolean } }[] } & KubeObject>('endpointslices', { namespace: ns, labelSelector: `kubernetes.io/service-name=${obj.metadata.name}` })).items;
      const ready = slices.flatMap((sl) => sl.endpoints ?? []).filter((e) => e.conditions?.ready !== false).length;
      if (ready >= pods.length && pods.length > 0) break;
      if (Date.now() > deadline) throw new LabError(`Service ${ns}/${obj.metadata.name}: ${ready} ready endpoints of ${pods.length} selected pods after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

export async function waitPodsRunning(api: ApiClient, timeoutMs: number): Promise<Pod[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    // Polls ask only for the pods not yet Running: a full list of 1,000 pods ten times a
    // second was a good share of the apiserver's CPU while a big lab came up.
    const notRunning = (await api.list<Pod>('pods', { fieldSelector: 'status.phase!=Running' })).items;
    if (notRunning.length > 0 && Date.now() <= deadline) {
      await sleep(100);
      continue;
    }
    const pods = (await api.list<Pod>('pods')).items;
    const pending = pods.filter((p) => p.status?.phase !== 'Running' || !p.status?.podIP);
    if (!pending.length) return pods;
    if (Date.now() > deadline) throw new LabError(`pods not Running after ${timeoutMs} ms: ${pending.map((p) => p.metadata.name).join(', ')}`);
    await sleep(100);
  }
}

/**
 * Polls every node's routing table until it has a route to every other
 * node's podCIDR (a BGP mesh or reflector topology has converged; host-gw's
 * static routes are in), as calico-node's readiness waits for BIRD.
 */
export async function waitRoutesConverged(rec: LabRecord, timeoutMs: number, say: (m: string) => void = () => {}): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const api = labApi(rec);
  const cidrs = (await api.list<Node>('nodes')).items.map((n) => ({ name: n.metadata.name, cidr: n.spec?.podCIDR ?? '' }));
  const t0 = Date.now();
  for (const n of rec.nodes) {
    for (;;) {
      const c = await ControlClient.connect(n.control);
      let table = '';
      try {
        table = ((await c.call<{ stdout: string }>('node.cmd', { argv: ['ip', 'route'] })).stdout);
      } finally {
        c.close();
      }
      const missing = cidrs.filter((x) => x.name !== n.name && x.cidr && !table.includes(`${x.cidr} via`));
      if (!missing.length) break;
      if (Date.now() > deadline) throw new LabError(`${n.name} has no route to ${missing.map((m) => `${m.cidr} (${m.name})`).join(', ')} after ${timeoutMs} ms`);
      await sleep(100);
    }
  }
  say(`routes converged on every node in ${Date.now() - t0} ms`);
}

/** Stops a process of ours by pid: SIGTERM, then SIGKILL after `graceMs`. */
export async function stopProcess(pid: number, stateDir: string, graceMs = 4000): Promise<void> {
  if (!isOurProcess(pid, stateDir)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!isOurProcess(pid, stateDir)) return;
    await sleep(25);
  }
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* gone */
  }
  while (isOurProcess(pid, stateDir)) await sleep(10);
}

/**
 * Refuses to start over a live lab; a dead one's records (every pid gone) are
 * cleaned up as `podlab down` would (a leftover supervisor, a kernel node's
 * BIRD, a netns lab's namespaces), and the user is told.
 */
export async function claimStateDir(stateDir: string, say: (msg: string) => void): Promise<void> {
  const old = readLab(stateDir);
  if (old && labIsLive(old)) {
    throw new LabError(`a lab is already running (state dir ${stateDir}, started ${old.startedAt}); run 'podlab down' first, or set PODLAB_HOME for a second lab`);
  }
  if (old) await down(stateDir);
  else cleanState(stateDir);
  // Ours from here: an interrupt stops it even half started (stopLabsOnInterrupt).
  labsUp.add(path.resolve(stateDir));
  if (old) say(`cleaned up a dead lab's records in ${stateDir} (started ${old.startedAt}; pids ${old.procs.map((p) => p.pid).join(', ') || 'none'} gone)`);
}

/**
 * Stops every process of the lab (agents first, then the apiserver) and
 * removes its state but the logs. Safe to run on a half-started or crashed lab.
 */
export async function down(stateDir: string, opts: { keepSupervisor?: boolean } = {}): Promise<{ stopped: number }> {
  let rec = readLab(stateDir);
  if (!rec) {
    cleanState(stateDir);
    labsUp.delete(path.resolve(stateDir));
    return { stopped: 0 };
  }
  // The supervisor goes first, so it does not restart what is being stopped (it calls down itself with keepSupervisor).
  if (rec.supervisor && !opts.keepSupervisor && rec.supervisor.pid !== process.pid) {
    await stopProcess(rec.supervisor.pid, stateDir);
    // It may have restarted a crashed process while it was being stopped: stop the pids on record now.
    rec = readLab(stateDir) ?? rec;
  }
  const order = [...rec.procs.filter((p) => p.role !== 'apiserver'), ...rec.procs.filter((p) => p.role === 'apiserver')];
  const alive = order.filter((p) => isOurProcess(p.pid, stateDir));
  await Promise.all(alive.filter((p) => p.role !== 'apiserver').map((p) => stopProcess(p.pid, stateDir)));
  await Promise.all(alive.filter((p) => p.role === 'apiserver').map((p) => stopProcess(p.pid, stateDir)));
  // netns labs: delete every namespace lab.json and the kernel nodes recorded; their veths go with them.
  if (rec.netns) {
    // A kernel node's BIRD and its pods' servers would outlive their namespaces (and a killed agent): stop them by pid file.
    await stopAllRecorded(stateDir);
    // Kept when a namespace could not be deleted (not root?), so a second `podlab down` can finish the job.
    const left = await removeLabNamespaces(stateDir, rec);
    if (left.length) throw new LabError(`could not delete network namespaces ${left.join(', ')}${isRoot() ? '' : ' (run podlab down as root)'}; lab.json is kept for another 'podlab down'`);
  }
  cleanState(stateDir);
  labsUp.delete(path.resolve(stateDir));
  return { stopped: alive.length };
}

/**
 * Restarts one process of the lab (a node agent by node name, or `apiserver`)
 * with its recorded arguments; `kill` sends SIGKILL first, as a crash would.
 */
export async function restartProcess(stateDir: string, name: string, opts: { kill?: boolean; timeoutMs?: number } = {}): Promise<{ pid: number }> {
  const { pr, p } = await withLabLock(stateDir, async () => {
    const rec = readLab(stateDir);
    if (!rec) throw new LabError(`no lab in ${stateDir}`);
    const pr = rec.procs.find((x) => x.name === name);
    if (!pr) throw new LabError(`no process ${name} in this lab (${rec.procs.map((x) => x.name).join(', ')})`);
    await signalAndWait(stateDir, pr.pid, opts.kill);
    const p = spawnLogged(stateDir, name, pr.args, pr.netns, pr.env);
    pr.pid = p.pid;
    // A restart ends a deliberate stop: the supervisor watches it again.
    delete pr.held;
    writeLab(rec);
    return { pr, p };
  });
  await waitForEvent(pr.log, pr.role === 'apiserver' ? 'listening' : 'ready', p.pid, opts.timeoutMs ?? 30_000, p.offset);
  return { pid: p.pid };
}

/**
 * Stops one process of the lab without restarting it (SIGKILL with `kill`,
 * else SIGTERM). It is marked held first, so a supervisor leaves it down
 * until `restartProcess`.
 */
export async function killProcess(stateDir: string, name: string, opts: { kill?: boolean } = {}): Promise<void> {
  await withLabLock(stateDir, async () => {
    const rec = readLab(stateDir);
    const pr = rec?.procs.find((p) => p.name === name);
    if (!rec || !pr) throw new LabError(`no process ${name} in the lab in ${stateDir}`);
    pr.held = true;
    writeLab(rec);
    await signalAndWait(stateDir, pr.pid, opts.kill);
  });
}

/** SIGKILL (a crash) or SIGTERM then SIGKILL (a stop), and waits until the process is gone. */
async function signalAndWait(stateDir: string, pid: number, kill?: boolean): Promise<void> {
  if (!kill) return stopProcess(pid, stateDir);
  try {
    if (isOurProcess(pid, stateDir)) process.kill(pid, 'SIGKILL');
  } catch {
    /* already gone */
  }
  while (isOurProcess(pid, stateDir)) await sleep(10);
}

/** The running lab, or a LabError telling the user to start one. */
export function requireLab(stateDir: string): LabRecord & { apiUrl: string } {
  const rec = readLab(stateDir);
  if (!rec || !rec.apiUrl || !labIsLive(rec)) throw new LabError(`no running lab in ${stateDir}: start one with 'podlab up' (or set PODLAB_HOME)`);
  return rec as LabRecord & { apiUrl: string };
}
