/**
 * The narrow command interface between a node's data plane and kube-proxy's
 * engine running in a worker thread (./worker.ts), and the worker's side of
 * it (`EngineServer`, pure: no worker API, so tests drive it directly).
 *
 * Nothing is shared: the data plane sends the informers' changes as deltas
 * (one structured clone per changed object, never the whole state, which
 * costs the sender ~100 ms for 10,000 EndpointSlices), asks for first-packet
 * decisions and views, and gets back after every sync a summary of what it
 * needs on its own thread (the service addresses its hooks pre-filter on,
 * the NodePorts to open real sockets for, the endpoints that went away).
 *
 * In a node agent the worker does not even need the deltas: given the
 * apiserver's address and the agent's credentials (`api`), it lists and
 * watches Services and EndpointSlices itself (./worker.ts), so their JSON is
 * decoded, and the objects live, only here; the data plane's thread then
 * also gets the LoadBalancer Services' summary (edge/lb-services.ts) for the
 * speaker, whenever it changes.
 */
import { runSteps } from '../common/run-steps.ts';
import type { ClientCredentials } from '../control-plane/credentials.ts';
import { objectKey } from '../control-plane/informer.ts';
import type { KubeObject } from '../control-plane/types.ts';
import { LbIndex, type LbService } from '../edge/lb-services.ts';
import { ipv4ToInt, isValidIpv4 } from '../packet/addr.ts';
import { engineCommand } from './commands.ts';
import type { AnyProxier } from './index.ts';
import type { Decision, IpvsSchedulerName, ProxyMode, ServicePacket } from './types.ts';

/** What the worker is started with (`workerData`). */
export interface EngineWorkerInit {
  mode: ProxyMode;
  nodeName: string;
  nodeIP: string;
  localAddresses: string[];
  clusterCidr: string;
  loopbackCidr: string;
  ipvsScheduler?: IpvsSchedulerName;
  /** The engine's RNG seed, drawn from the agent's seeded RNG. */
  seed: number;
  /** Given: the worker lists and watches Services and EndpointSlices itself, with these credentials; no deltas come. */
  api?: { url: string; credentials: ClientCredentials };
}

/** Which informer an object comes from. */
export type EngineObjectKind = 'services' | 'endpointslices';

/** Data plane → worker. */
export type ToEngine =
  /** Informer changes: objects added or updated, keys (`namespace/name`) deleted. */
  | { t: 'objects'; kind: EngineObjectKind; put: KubeObject[]; del: string[] }
  /** Apply what arrived so far (sent after the last chunk of a batch, so a half-sent list is never synced). */
  | { t: 'sync' }
  | { t: 'decide'; id: number; pkt: ServicePacket }
  | { t: 'opened'; key: string }
  | { t: 'closed'; key: string }
  | { t: 'command'; id: number; argv: string[]; stamp: number };

/** A NodePort that gets a real socket on the node IP. */
export interface NodePortSocket {
  port: number;
  proto: 'tcp' | 'udp';
}

/**
 * Numbers (IPv4 addresses, ports: unsigned 32-bit) added and removed since
 * the worker's last summary; `reset`: the worker's first (a restarted worker
 * knows nothing of what the thread holds), `add` is then the whole set.
 * Typed arrays: their structured clone is a copy of bytes, where 10,000
 * numbers in an array cost the receiving thread ~0.9 ms to deserialize.
 */
export interface NumberSetDelta {
  add: Uint32Array;
  del: Uint32Array;
  reset?: true;
}

/**
 * What the data plane keeps on its own thread, sent after each sync: only
 * what changed, so that a resync of 10,000 Services sends the thread (and
 * has it rebuild) nothing of the unchanged ones.
 */
export interface EngineSummary {
  /** Service addresses (ClusterIPs and LoadBalancer ingress IPs) as integers; absent when unchanged. */
  vips?: NumberSetDelta;
  /** NodePort numbers (the hooks' pre-filter for node addresses); absent when unchanged. */
  nodePorts?: NumberSetDelta;
  /** NodePorts of NodePort/LoadBalancer Services, real sockets on the node IP: the whole list, absent when unchanged. */
  sockets?: NodePortSocket[];
  /** `ip:port` of ready endpoints gone since the last summary: their UDP conntrack entries are flushed. */
  goneEndpoints: string[];
  /** How long the sync took in the worker (ms of work: a sync in steps counts its steps). */
  syncMs: number;
  /** From the sync's start to its summary (ms): its steps and the messages handled between them. */
  spanMs?: number;
  /** The longest step (ms, wall clock): the longest a decision waited on the sync's own work. */
  longestStepMs?: number;
  services: number;
  /** EndpointSlices the worker holds. */
  slices: number;
  /** The LoadBalancer Services with an address; absent when unchanged since the last summary. */
  lb?: LbService[];
}

/** Worker → data plane. */
export type FromEngine =
  /** Started; its scheduling (common/thread-priority.ts) and kernel thread id. */
  | { t: 'ready'; priority?: string; tid?: number }
  | { t: 'decision'; id: number; d: Decision | null }
  | { t: 'command'; id: number; out?: string; error?: string }
  | { t: 'summary'; s: EngineSummary }
  /** The worker's own informers (`api` given): connected, disconnected, relisted. */
  | { t: 'informer'; kind: EngineObjectKind; state: string; error?: string };

/**
 * What the data plane's thread keeps of the summaries: the service addresses
 * and NodePorts its netfilter hooks pre-filter on (one lookup per packet).
 */
export class ServiceAddressSet {
  private vips = new Set<number>();
  private nodePorts = new Set<number>();

  /** A sync's summary: its changes applied in place. */
  apply(s: EngineSummary): void {
    if (s.vips) this.vips = applyDelta(this.vips, s.vips);
    if (s.nodePorts) this.nodePorts = applyDelta(this.nodePorts, s.nodePorts);
  }

  /** The thread's own sync (the engine on this thread). */
  set(vips: Set<number>, nodePorts: Set<number>): void {
    this.vips = vips;
    this.nodePorts = nodePorts;
  }

  /** A service address, or a NodePort on one of the node's addresses. */
  wants(dst: number, dport: number, isLocal: () => boolean): boolean {
    return this.vips.has(dst) || (this.nodePorts.has(dport) && isLocal());
  }
}

/** The set after `d`: a new one on a reset (building it at once costs a third of clearing and adding to the old). */
function applyDelta(set: Set<number>, d: NumberSetDelta): Set<number> {
  if (d.reset) return new Set(d.add);
  for (const n of d.del) set.delete(n);
  for (const n of d.add) set.add(n);
  return set;
}

/** What changed from `last` to `now` (undefined: nothing); `last` undefined: a reset. */
function deltaOf(last: ReadonlySet<number> | undefined, now: ReadonlySet<number>): NumberSetDelta | undefined {
  if (!last) return { add: Uint32Array.from(now), del: new Uint32Array(0), reset: true };
  const add: number[] = [];
  const del: number[] = [];
  for (const n of now) if (!last.has(n)) add.push(n);
  for (const n of last) if (!now.has(n)) del.push(n);
  return add.length || del.length ? { add: Uint32Array.from(add), del: Uint32Array.from(del) } : undefined;
}

interface SpecLite {
  type?: string;
  clusterIP?: string;
  clusterIPs?: string[];
  ports?: { port: number; nodePort?: number; protocol?: string }[];
}


/**
 * The worker's state: the informers' objects as the deltas left them (the
 * unchanged ones keep their identity, which the engines' partial sync relies
 * on) and the engine they feed.
 */
export class EngineServer {
  private readonly services = new Map<string, KubeObject>();
  private readonly slices = new Map<string, KubeObject>();
  private lastVips?: Set<number>;
  private lastNodePorts?: Set<number>;
  private lastSockets?: string;
  private live = new Set<string>();
  private readonly lb = new LbIndex();

  constructor(
    private readonly engine: AnyProxier,
    private readonly post: (m: FromEngine) => void,
  ) {}

  handle(m: ToEngine): void {
    switch (m.t) {
      case 'objects': {
        for (const k of m.del) this.delete(m.kind, k);
        for (const o of m.put) this.put(m.kind, objectKey(o), o);
        return;
      }
      case 'sync':
        return this.sync();
      case 'decide':
        return this.post({ t: 'decision', id: m.id, d: this.engine.decide(m.pkt) });
      case 'opened':
        return this.engine.connectionOpened(m.key);
      case 'closed':
        return this.engine.connectionClosed(m.key);
      case 'command':
        try {
          this.post({ t: 'command', id: m.id, out: engineCommand(this.engine, m.argv, new Date(m.stamp)) });
        } catch (e) {
          this.post({ t: 'command', id: m.id, error: String(e) });
        }
        return;
    }
  }

  /** An object added or changed. */
  put(kind: EngineObjectKind, key: string, o: KubeObject): void {
    if (kind === 'services') {
      this.services.set(key, o);
      this.lb.putService(key, o);
    } else {
      this.slices.set(key, o);
      this.lb.putSlice(key, o);
    }
  }

  /** An object deleted. */
  delete(kind: EngineObjectKind, key: string): void {
    if (kind === 'services') {
      this.services.delete(key);
      this.lb.deleteService(key);
    } else {
      this.slices.delete(key);
      this.lb.deleteSlice(key);
    }
  }

  /** One sync of the engine from the current objects, and the summary the data plane needs. */
  sync(): void {
    runSteps(this.syncSteps(Infinity));
  }

  /**
   * sync() in steps of about `budgetMs` of work (the iterator yields between
   * them, for the caller to handle messages meanwhile): with the iptables
   * engine a decision between steps comes from the previous, complete rules
   * and the last step swaps the new ones in (other engines sync in one step).
   * Objects that arrive meanwhile wait for the next sync.
   */
  *syncSteps(budgetMs = 4): Generator<void, void, void> {
    const t0 = performance.now();
    let work = 0;
    let from = t0;
    const services = [...this.services.values()];
    const slices = [...this.slices.values()];
    let longest = 0;
    /** Ends a step (before a yield): its length counts. */
    const stepDone = () => {
      const now = performance.now();
      longest = Math.max(longest, now - from);
      return now - from;
    };
    if (this.engine.mode === 'iptables' && budgetMs !== Infinity) {
      for (const steps = this.engine.updateSteps(services, slices, budgetMs); !steps.next().done; ) {
        work += stepDone();
        yield;
        from = performance.now();
      }
    } else this.engine.update(services, slices);
    const syncMs = work + performance.now() - from;
    // The summary's endpoints (100,000 of them at 10,000 Services) in steps too.
    let until = performance.now() + budgetMs;
    const pause = () => performance.now() >= until;
    const next = () => ((from = until = performance.now()), (until += budgetMs));
    const { vips, nodePorts, sockets } = serviceAddresses(services, this.engine.proxyPorts());
    const live = new Set<string>();
    for (let i = 0; i < slices.length; i++) {
      if ((i & 255) === 255 && pause()) {
        stepDone();
        yield;
        next();
      }
      addLiveEndpoints(live, slices[i]);
    }
    const goneEndpoints: string[] = [];
    let n = 0;
    for (const e of this.live) {
      if ((++n & 4095) === 0 && pause()) {
        stepDone();
        yield;
        next();
      }
      if (!live.has(e)) goneEndpoints.push(e);
    }
    this.live = live;
    const vipDelta = deltaOf(this.lastVips, vips);
    const portDelta = deltaOf(this.lastNodePorts, nodePorts);
    this.lastVips = vips;
    this.lastNodePorts = nodePorts;
    const socketsKey = sockets.map((x) => `${x.proto}:${x.port}`).sort().join(',');
    const socketsChanged = socketsKey !== this.lastSockets;
    this.lastSockets = socketsKey;
    stepDone();
    const lb = this.lb.take();
    this.post({
      t: 'summary',
      s: {
        ...(vipDelta ? { vips: vipDelta } : {}),
        ...(portDelta ? { nodePorts: portDelta } : {}),
        ...(socketsChanged ? { sockets } : {}),
        goneEndpoints,
        syncMs,
        spanMs: performance.now() - t0,
        longestStepMs: longest,
        services: services.length,
        slices: this.slices.size,
        ...(lb ? { lb } : {}),
      },
    });
  }
}

/**
 * What the data plane's hooks and sockets need from the Services: the
 * addresses KUBE-SERVICES captures (ClusterIPs, LoadBalancer ingress IPs) as
 * integers, every NodePort (and userspace proxy port), and the NodePorts that
 * get real sockets.
 */
export function serviceAddresses(services: Iterable<KubeObject>, proxyPorts: readonly { port: number }[]): { vips: Set<number>; nodePorts: Set<number>; sockets: NodePortSocket[] } {
  const vips = new Set<number>();
  const nodePorts = new Set<number>();
  const sockets: NodePortSocket[] = [];
  for (const s of services) {
    const spec = (s.spec ?? {}) as SpecLite;
    for (const ip of [spec.clusterIP, ...(spec.clusterIPs ?? [])]) if (ip && ip !== 'None' && isValidIpv4(ip)) vips.add(ipv4ToInt(ip));
    const lb = (s.status as { loadBalancer?: { ingress?: { ip?: string }[] } } | undefined)?.loadBalancer?.ingress ?? [];
    if (spec.type === 'LoadBalancer') for (const i of lb) if (i.ip && isValidIpv4(i.ip)) vips.add(ipv4ToInt(i.ip));
    for (const p of spec.ports ?? []) {
      if (!p.nodePort) continue;
      nodePorts.add(p.nodePort);
      if (spec.type === 'NodePort' || spec.type === 'LoadBalancer') sockets.push({ port: p.nodePort, proto: (p.protocol ?? 'TCP').toLowerCase() === 'udp' ? 'udp' : 'tcp' });
    }
  }
  // userspace mode: connections redirected to the node's proxy ports are services too.
  for (const p of proxyPorts) nodePorts.add(p.port);
  return { vips, nodePorts, sockets };
}

/** `ip:port` of every ready endpoint of the slices (kube-proxy flushes UDP conntrack entries of the others). */
export function liveEndpoints(slices: Iterable<KubeObject>): Set<string> {
  const live = new Set<string>();
  for (const s of slices) addLiveEndpoints(live, s);
  return live;
}

function addLiveEndpoints(live: Set<string>, s: KubeObject): void {
  const sl = s as unknown as { endpoints?: { addresses?: string[]; conditions?: { ready?: boolean } }[]; ports?: { port?: number }[] };
  for (const e of sl.endpoints ?? []) if (e.conditions?.ready !== false) for (const a of e.addresses ?? []) for (const p of sl.ports ?? []) live.add(`${a}:${p.port}`);
}
