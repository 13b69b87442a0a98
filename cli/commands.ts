/**
 * What the CLI verbs do against a running lab, as functions that return text
 * (or stream it), so `podlab` itself, the demo walkthrough and the tests all go
 * through the same code.
 */
import type { KubeObject, Node, Pod } from '../control-plane/types.ts';
import type { FlowCacheStats } from '../netstack/flow/flow-cache.ts';
import type { PeerPlanCounts } from '../node-agent/node-core.ts';
import type { ImpairmentSpec } from '../overlay/impairment.ts';
import type { FlanneldCopies } from '../backends/udp/flanneld.ts';
import { connectNode } from '../lab/node-endpoint.ts';
import { ControlClient } from '../control-plane/node-control-client.ts';
import { controlSocketPath } from '../control-plane/node-control-protocol.ts';
import { ROUTER_CONTROL_NAME } from '../router/flags.ts';
import { execThroughApiserver } from '../control-plane/exec-client.ts';
import { adminCredentials } from '../control-plane/credentials.ts';
import { JsonPathError, formatJsonPath, formatNodes, formatObjects, formatPods } from './format.ts';
import { formatEndpointSlices, formatServices } from './format-services.ts';
import type { EndpointSlice, Service } from '../control-plane/service-resources.ts';
import { formatLabelSelector } from '../control-plane/network-policy.ts';
import { humanDuration } from '../control-plane/tables.ts';
import { LabError, labApi, requireLab } from '../lab/lab.ts';
import type { LabRecord } from '../lab/state.ts';

/** `-o`: a table, or `json`, `yaml`, `jsonpath=TEMPLATE`. */
export type Output = 'table' | 'wide' | 'json' | 'yaml' | `jsonpath=${string}`;

/** The node record of a running lab. */
export function nodeOf(rec: LabRecord, name: string): LabRecord['nodes'][number] {
  const n = rec.nodes.find((x) => x.name === name);
  if (!n) throw new LabError(`no node "${name}" in this lab (nodes: ${rec.nodes.map((x) => x.name).join(', ')})`);
  return n;
}

/** One control call to a node agent. */
export async function callNode<T>(stateDir: string, node: string, method: string, params: unknown): Promise<T> {
  const rec = requireLab(stateDir);
  const c = await connectNode(rec, node);
  try {
    return await c.call<T>(method, params);
  } finally {
    c.close();
  }
}

export async function getResources(stateDir: string, kind: string, opts: { name?: string; namespace?: string; all?: boolean; output: Output }): Promise<string> {
  const rec = requireLab(stateDir);
  const api = labApi(rec);
  const wide = opts.output === 'wide';
  const k = normalizeKind(kind);
  if (k === 'nodes') {
    let nodes = (await api.list<Node>('nodes')).items;
    if (opts.name) nodes = nodes.filter((n) => n.metadata.name === opts.name);
    if (opts.name && !nodes.length) throw new LabError(`Error from server (NotFound): nodes "${opts.name}" not found`);
    nodes.sort((a, b) => a.metadata.name.localeCompare(b.metadata.name, undefined, { numeric: true }));
    // Agent restarts live in the lab's records, not in the API: a supervised lab shows them.
    const restarts = rec.supervisor ? new Map(rec.procs.map((p) => [p.name, p.restarts ?? 0])) : undefined;
    return structured(nodes, opts.output, !!opts.name) ?? formatNodes(nodes, wide, restarts);
  }
  const ns = opts.all ? undefined : (opts.namespace ?? 'default');
  if (k === 'services' || k === 'endpointslices') {
    let items = (await api.list<KubeObject>(k, { namespace: ns })).items;
    if (opts.name) items = items.filter((x) => x.metadata.name === opts.name);
    if (opts.name && !items.length) throw new LabError(`Error from server (NotFound): ${k === 'services' ? 'services' : 'endpointslices.discovery.k8s.io'} "${opts.name}" not found`);
    items.sort((a, b) => (a.metadata.namespace ?? '').localeCompare(b.metadata.namespace ?? '') || a.metadata.name.localeCompare(b.metadata.name, undefined, { numeric: true }));
    const asked = structured(items, opts.output, !!opts.name);
    if (asked !== undefined) return asked;
    return k === 'services' ? formatServices(items as Service[], wide, !!opts.all, ns) : formatEndpointSlices(items as EndpointSlice[], !!opts.all, ns);
  }
  if (k === 'networkpolicies') {
    let items = (await api.list<KubeObject>(k, { namespace: ns })).items;
    if (opts.name) items = items.filter((x) => x.metadata.name === opts.name);
    if (opts.name && !items.length) throw new LabError(`Error from server (NotFound): networkpolicies.networking.k8s.io "${opts.name}" not found`);
    items.sort((a, b) => (a.metadata.namespace ?? '').localeCompare(b.metadata.namespace ?? '') || a.metadata.name.localeCompare(b.metadata.name));
    return structured(items, opts.output, !!opts.name) ?? formatNetworkPolicies(items, !!opts.all, ns);
  }
  let pods = (await api.list<Pod>('pods', { namespace: ns })).items;
  if (opts.name) pods = pods.filter((p) => p.metadata.name === opts.name);
  if (opts.name && !pods.length) throw new LabError(`Error from server (NotFound): pods "${opts.name}" not found`);
  pods.sort((a, b) => (a.metadata.namespace ?? '').localeCompare(b.metadata.namespace ?? '') || a.metadata.name.localeCompare(b.metadata.name, undefined, { numeric: true }));
  return structured(pods, opts.output, !!opts.name) ?? formatPods(pods, wide, !!opts.all);
}

/** kubectl's NetworkPolicy columns: [NAMESPACE] NAME POD-SELECTOR AGE. */
function formatNetworkPolicies(items: KubeObject[], all: boolean, ns: string | undefined): string {
  if (!items.length) return all ? 'No resources found\n' : `No resources found in ${ns ?? 'default'} namespace.\n`;
  const now = Date.now();
  const rows = items.map((p) => [...(all ? [p.metadata.namespace ?? ''] : []), p.metadata.name, formatLabelSelector((p.spec as { podSelector?: unknown } | undefined)?.podSelector), humanDuration(now - Date.parse(p.metadata.creationTimestamp))]);
  const head = [...(all ? ['NAMESPACE'] : []), 'NAME', 'POD-SELECTOR', 'AGE'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  return [head, ...rows].map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] + 3))).join('')).join('\n') + '\n';
}

/** json, yaml or jsonpath output of what a get found (undefined for the table forms). */
function structured(items: KubeObject[], output: Output, named: boolean): string | undefined {
  if (output === 'json' || output === 'yaml') return formatObjects(items, output, named);
  if (output.startsWith('jsonpath=')) {
    const value = named && items.length === 1 ? items[0] : { apiVersion: 'v1', kind: 'List', items };
    try {
      return formatJsonPath(value, output.slice('jsonpath='.length));
    } catch (e) {
      if (e instanceof JsonPathError) throw new LabError(e.message);
      throw e;
    }
  }
  return undefined;
}

/** kubectl's kind aliases for what podlab serves. */
export function normalizeKind(kind: string): 'nodes' | 'pods' | 'services' | 'endpointslices' | 'networkpolicies' {
  const k = kind.toLowerCase();
  if (['node', 'nodes', 'no'].includes(k)) return 'nodes';
  if (['pod', 'pods', 'po'].includes(k)) return 'pods';
  if (['service', 'services', 'svc'].includes(k)) return 'services';
  if (['endpointslice', 'endpointslices', 'endpointslice.discovery.k8s.io', 'endpointslices.discovery.k8s.io'].includes(k)) return 'endpointslices';
  if (['networkpolicy', 'networkpolicies', 'netpol', 'networkpolicies.networking.k8s.io'].includes(k)) return 'networkpolicies';
  throw new LabError(`error: the server doesn't have a resource type "${kind}" (podlab serves: nodes, pods, services, endpointslices, networkpolicies)`);
}

/** Finds which node runs a pod: from the apiserver, or, while it is down, by asking the agents. */
export async function locatePod(stateDir: string, ref: string, namespace = 'default'): Promise<{ rec: LabRecord & { apiUrl: string }; key: string; node: string }> {
  const rec = requireLab(stateDir);
  const api = labApi(rec);
  const [ns, name] = ref.includes('/') ? ref.split('/', 2) : [namespace, ref.replace(/^pods?\//, '')];
  const key = `${ns}/${name}`;
  let pod: Pod | null;
  try {
    pod = await api.get<Pod>('pods', name, ns);
  } catch (e) {
    if ((e as Error).name !== 'ApiConnectionError') throw e;
    // The data plane does not need the apiserver, and neither does exec.
    for (const n of rec.nodes) {
      const info = await callNode<{ pods: { key: string }[] }>(stateDir, n.name, 'info', {}).catch(() => null);
      if (info?.pods.some((p) => p.key === key)) return { rec, key, node: n.name };
    }
    throw new LabError(`the apiserver is not answering and no node has pod ${key}`);
  }
  if (!pod) throw new LabError(`Error from server (NotFound): pods "${name}" not found in namespace "${ns}"`);
  const node = pod.spec?.nodeName;
  if (!node) throw new LabError(`pod ${key} is not scheduled to a node yet`);
  if (pod.status?.phase !== 'Running') throw new LabError(`pod ${key} is ${pod.status?.phase ?? 'Pending'}, not Running`);
  return { rec, key, node };
}

/**
 * Runs a command in a pod, streaming its output; resolves with its exit code.
 * `signal` aborting (Ctrl-C) asks the command to stop and print its summary,
 * as SIGINT does to ping. With `stdin`, its chunks are forwarded as the
 * command's standard input (then EOF); without, the command sees EOF at once.
 */
export async function execInPod(
  stateDir: string,
  ref: string,
  argv: string[],
  io: { stdout(s: string): void; stderr(s: string): void; signal?: AbortSignal; namespace?: string; stdin?: AsyncIterable<Uint8Array | string>; viaApiserver?: boolean },
): Promise<number> {
  // Through the apiserver's pods/exec, as kubectl exec goes: asked for, or when the pod's agent cannot be reached
  // from here (another container of a compose lab) and nothing ran yet.
  const viaApiserver = async (rec: LabRecord & { apiUrl: string }, key: string): Promise<number> => {
    const [namespace, name] = key.split('/', 2);
    return execThroughApiserver({ apiUrl: rec.apiUrl, credentials: adminCredentials(stateDir), namespace, name, argv, stdout: (s) => io.stdout(s), stderr: (s) => io.stderr(s), stdin: io.stdin, signal: io.signal });
  };
  if (io.viaApiserver) {
    const { rec, key } = await locatePod(stateDir, ref, io.namespace);
    return viaApiserver(rec, key);
  }
  return podCall(stateDir, ref, io, async (c, key, call) => {
    const res = call<{ exitCode: number }>('exec', { pod: key, argv, stdin: !!io.stdin }, (fd, s) => (fd === 1 ? io.stdout(s) : io.stderr(s)));
    let done = false;
    let it: AsyncIterator<Uint8Array | string> | undefined;
    if (io.stdin) {
      // Forward stdin until EOF or until the command exits (then stop reading it).
      it = io.stdin[Symbol.asyncIterator]();
      void (async () => {
        try {
          for (;;) {
            const r = await it.next();
            if (done) return;
            if (r.done) break;
            void c.sendStdin(res.id, typeof r.value === 'string' ? Buffer.from(r.value) : r.value);
          }
          c.endStdin(res.id);
        } catch {
          if (!done) c.endStdin(res.id);
        }
      })();
    }
    try {
      return (await res.result).exitCode;
    } finally {
      done = true;
      void it?.return?.();
      // A stream (process.stdin) must stop being read, or it keeps the CLI alive after the command exits.
      (io.stdin as { destroy?: () => void } | undefined)?.destroy?.();
    }
  }, viaApiserver);
}

/** `podlab logs POD [-c C] [-f] [--tail N] [--since S] [--timestamps]`: a container's output, from its node. */
export async function podLogs(
  stateDir: string,
  ref: string,
  q: { container?: string; follow?: boolean; tailLines?: number; sinceSeconds?: number; timestamps?: boolean; limitBytes?: number },
  io: { stdout(s: string): void; signal?: AbortSignal; namespace?: string },
): Promise<void> {
  await podCall(stateDir, ref, io, async (_c, key, call) => {
    await call('pod.logs', { pod: key, ...q }, (_fd, s) => io.stdout(s)).result;
  });
}

/**
 * One streamed call about a pod to the agent of its node: the connection,
 * `signal` (Ctrl-C) cancelling the call, and the cleanup, shared by exec and logs.
 */
async function podCall<T>(
  stateDir: string,
  ref: string,
  io: { signal?: AbortSignal; namespace?: string },
  run: (c: ControlClient, key: string, call: <R>(method: string, params: unknown, out: (fd: 1 | 2, s: string) => void) => { result: Promise<R>; id: number }) => Promise<T>,
  /** What to do instead when the node's agent cannot be reached from here (nothing was sent to it). */
  unreachable?: (rec: LabRecord & { apiUrl: string }, key: string) => Promise<T>,
): Promise<T> {
  const { rec, key, node } = await locatePod(stateDir, ref, io.namespace);
  let c: ControlClient;
  try {
    c = await connectNode(rec, node);
  } catch (e) {
    if (!unreachable || !rec.apiUrl) throw e;
    return unreachable(rec, key);
  }
  let id = 0;
  const onAbort = () => c.cancel(id);
  io.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    return await run(c, key, <R>(method: string, params: unknown, out: (fd: 1 | 2, s: string) => void) => {
      const result = c.call<R>(method, params, out, (i) => (id = i));
      return { result, get id() { return id; } };
    });
  } finally {
    io.signal?.removeEventListener('abort', onAbort);
    c.close();
  }
}

/** `podlab node NODE ...`: iproute2 views, `ip link set dev D mtu N`, `stats`. */
/** `podlab router`: the lab router's view (or its counters as JSON), over its control socket. */
export async function routerCommand(stateDir: string, json: boolean): Promise<string> {
  const rec = requireLab(stateDir);
  if (!rec.procs.some((p) => p.role === 'router')) throw new LabError("this lab has no router: start one with 'podlab up --backend bgp --lb-router'");
  const c = await ControlClient.connect(controlSocketPath(rec.stateDir, ROUTER_CONTROL_NAME));
  try {
    if (json) return JSON.stringify(await c.call('router.stats', {}), null, 2) + '\n';
    return (await c.call<{ stdout: string }>('router.view', {})).stdout;
  } finally {
    c.close();
  }
}

export async function nodeCommand(stateDir: string, node: string, argv: string[]): Promise<string> {
  if (argv[0] === 'stats') {
    const s = await callNode<Record<string, unknown>>(stateDir, node, 'stats', {});
    return formatStats(s);
  }
  const set = argv.join(' ').match(/^ip link set (?:dev )?(\S+) mtu (\d+)$/);
  if (set) {
    await callNode(stateDir, node, 'stack.mtu', { dev: set[1], mtu: Number(set[2]) });
    return '';
  }
  const r = await callNode<{ stdout: string }>(stateDir, node, 'node.cmd', { argv });
  return r.stdout;
}

function formatStats(s: Record<string, unknown>): string {
  const lines: string[] = [`node ${String(s.node)}`];
  const ifaces = s.interfaces as Record<string, { rxPackets: number; rxBytes: number; txPackets: number; txBytes: number; drops: Record<string, number> }>;
  lines.push('INTERFACE        RX-PACKETS   RX-BYTES     TX-PACKETS   TX-BYTES     DROPS');
  for (const [name, c] of Object.entries(ifaces)) {
    const drops = Object.entries(c.drops).map(([r, n]) => `${r}=${n}`).join(' ') || '0';
    lines.push(`${name.padEnd(16)} ${String(c.rxPackets).padEnd(12)} ${String(c.rxBytes).padEnd(12)} ${String(c.txPackets).padEnd(12)} ${String(c.txBytes).padEnd(12)} ${drops}`);
  }
  const ip = s.ip as { drops: Record<string, number> };
  lines.push(`ip drops: ${Object.entries(ip.drops).map(([r, n]) => `${r}=${n}`).join(' ') || 'none'}`);
  // Emulated nodes say what carries their pod traffic; kernel nodes report no underlay.
  const u = s.underlay as { wire?: string; text?: string; raw?: { sent: number; received: number; sendErrors: number; claim: string }; flanneld?: FlanneldCopies } | undefined;
  if (u?.wire) lines.push(`underlay: ${u.text ?? (u.wire === 'raw' ? 'raw frames on eth0' : u.wire === 'udp' ? 'bare-IPv4 UDP wire' : 'VXLAN')}${u.raw ? `, ${u.raw.sent} sent, ${u.raw.received} received, ${u.raw.sendErrors} send errors; claimed: ${u.raw.claim}` : ''}`);
  const f = u?.flanneld;
  if (f) {
    lines.push(`flanneld copies: ${f.tunReads} packets read from flannel0 (kernel -> flanneld), ${f.sent} sent to UDP sockets (flanneld -> kernel), ${f.received} received from UDP sockets (kernel -> flanneld), ${f.tunWrites} written to flannel0 (flanneld -> kernel); ${f.bytesCopied} bytes copied`);
    if (f.noRoute || f.malformed) lines.push(`flanneld drops: no-route=${f.noRoute} malformed=${f.malformed}`);
    if (f.thread) lines.push(`flanneld thread: id ${f.thread.id}, event loop busy ${f.thread.busyMs} ms, restarted ${f.thread.restarts} times`);
  }
  const fl = s.flows as FlowCacheStats | undefined;
  if (fl) {
    const why = Object.entries(fl.invalidations).map(([r, n]) => `${r}=${n}`).join(' ') || 'nothing';
    lines.push(`flow cache: ${fl.entries} entries, ${fl.hits} hits, ${fl.misses} misses, ${fl.recorded} recorded, ${fl.refused} refused; generation ${fl.generation}, moved by ${why}`);
  }
  const pp = s.peerPlans as PeerPlanCounts | undefined;
  if (pp) lines.push(`peer plans: ${pp.plans} computed from Node events, ${pp.applied} changed routes, neighbours or FDB entries`);
  const imp = s.impairments as Record<string, { spec: ImpairmentSpec; stats: Record<string, number> }>;
  for (const [peer, v] of Object.entries(imp)) lines.push(`impairment to ${peer}: ${JSON.stringify(v.spec)} ${JSON.stringify(v.stats)}`);
  const kp = s.kubeProxy as { mode: string; engine: string; worker?: string; restarts?: number; decisions?: number; lastSyncMs?: number; lastError?: string; queue?: { waiting: number; queued: number; max: number; failed: number } } | undefined;
  if (kp) {
    const w = kp.engine === 'worker' ? `its worker thread (${kp.worker ?? 'not started'}${kp.restarts ? `, ${kp.restarts} restarts` : ''}${kp.lastSyncMs !== undefined ? `, last sync ${kp.lastSyncMs} ms` : ''}${kp.decisions !== undefined ? `, ${kp.decisions} decisions` : ''})` : 'the data plane thread';
    lines.push(`kube-proxy: ${kp.mode} engine on ${w}${kp.queue ? `; first packets queued for a decision: ${kp.queue.queued} (most at once ${kp.queue.max}, waiting now ${kp.queue.waiting}, failed ${kp.queue.failed})` : ''}${kp.lastError ? `; last error: ${kp.lastError}` : ''}`);
  }
  const pol = s.policy as { policies: number; acceptedConnections: number; drops: number; dropsByPolicy: Record<string, number>; trackedConnections: number } | undefined;
  if (pol) {
    lines.push(`network policy: ${pol.policies} policies, ${pol.acceptedConnections} connections accepted, ${pol.drops} packets dropped, ${pol.trackedConnections} connections tracked`);
    if (Object.keys(pol.dropsByPolicy).length) lines.push('POLICY                           DROPS');
    for (const [p, n] of Object.entries(pol.dropsByPolicy)) lines.push(`${p.padEnd(32)} ${n}`);
  }
  return lines.join('\n') + '\n';
}

/** Parses `5%` or `5` as a fraction (0.05); names the flag when it is not a percentage. */
export function parsePercent(v: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)%?$/.exec(v.trim());
  if (!m || Number(m[1]) > 100) throw new LabError(`${flag}: '${v}' is not a percentage from 0% to 100%`);
  return Number(m[1]) / 100;
}

/** Parses `20ms`, `1.5s`, `20` (ms). */
export function parseDuration(v: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(us|ms|s)?$/.exec(v.trim());
  if (!m) throw new LabError(`${flag}: '${v}' is not a duration like 20ms or 1s`);
  const n = Number(m[1]);
  return m[2] === 's' ? n * 1000 : m[2] === 'us' ? n / 1000 : n;
}
