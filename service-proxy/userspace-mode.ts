/**
 * kube-proxy `--proxy-mode=userspace` (pkg/proxy/userspace, removed in
 * Kubernetes v1.26): every service port gets a proxy port on the node; iptables
 * only redirects the ClusterIP (and NodePort) to it, and kube-proxy itself
 * accepts the connection and opens a second one to a backend chosen by its
 * LoadBalancerRR: round robin over the ready endpoints (shuffled whenever they
 * change), with ClientIP affinity remembered per client for
 * `timeoutSeconds`.
 *
 * Rules, as its iptablesInit / openPortal / openNodePort write them:
 *   nat PREROUTING -> KUBE-PORTALS-CONTAINER: -d <clusterIP>/32 --dport <port> -j REDIRECT --to-ports <proxyPort>
 *       then (dst-type LOCAL) -> KUBE-NODEPORT-CONTAINER: --dport <nodePort> -j REDIRECT --to-ports <proxyPort>
 *   nat OUTPUT -> KUBE-PORTALS-HOST / KUBE-NODEPORT-HOST: the same with -j DNAT --to-destination <nodeIP>:<proxyPort>
 *   filter INPUT -> KUBE-NODEPORT-NON-LOCAL: --dport <proxyPort> -m state --state NEW -j ACCEPT
 *
 * `decide()` walks those rules; a REDIRECT/DNAT to a proxy port answers
 * `{kind: 'userspace', proxyPort}` and the data path's listener on that port
 * calls {@link UserspaceProxier.pickBackend} for the second connection. A
 * service port without endpoints still has its portal, as in the real proxy:
 * the connection is accepted and then closed (pickBackend returns null).
 */
import { ipv4ToInt } from '../packet/addr.ts';
import { ipToUint, RuleWalker, type WalkPacket } from './iptables/evaluate.ts';
import { addrMatch, formatIptablesSave, inAddr, rule, type AddrMatch, type SaveFormatOptions, type TableData, type TableName } from './iptables/rules.ts';
import { buildModel, type ServicePortInfo } from './model.ts';
import type { BackendChoice, Decision, EngineOptions, EngineViews, ProxyPort, ServicePacket, ServiceProxyEngine } from './types.ts';
import type { KubeObject } from '../control-plane/types.ts';

export type { BackendChoice, ProxyPort } from './types.ts';

interface LbState {
  sp: ServicePortInfo;
  proxyPort: number;
  endpoints: string[];
  index: number;
  affinity: Map<string, { endpoint: string; lastUsed: number }>;
}

/** The userspace-mode engine. */
export class UserspaceProxier implements ServiceProxyEngine {
  readonly mode = 'userspace' as const;
  private readonly opts: EngineOptions;
  private readonly walker: RuleWalker;
  private readonly range: [number, number];
  private readonly local = new Set<number>();
  private readonly loopback: AddrMatch;
  private states = new Map<string, LbState>();
  private byPort = new Map<number, LbState>();
  private bySpn = new Map<string, LbState>();
  private tables: { nat: TableData; filter: TableData } = { nat: emptyTable('nat'), filter: emptyTable('filter') };
  model: ServicePortInfo[] = [];

  constructor(opts: EngineOptions) {
    this.opts = opts;
    this.range = opts.userspacePortRange ?? [32768, 60999];
    this.walker = new RuleWalker(opts.rng, opts.clock);
    for (const a of [opts.nodeIP, ...(opts.localAddresses ?? [])]) this.local.add(ipv4ToInt(a));
    this.loopback = addrMatch(opts.loopbackCidr ?? '127.0.0.0/8');
    this.update([], []);
  }

  update(services: readonly KubeObject[], slices: readonly KubeObject[]): void {
    this.apply(buildModel(services, slices, this.opts.nodeName));
  }

  apply(model: ServicePortInfo[]): void {
    this.model = model;
    const next = new Map<string, LbState>();
    const used = new Set<number>([...this.byPort.keys()]);
    for (const sp of model) {
      const key = `${sp.spn}|${sp.protocol}`;
      let st = this.states.get(key);
      if (!st) st = { sp, proxyPort: this.allocatePort(used), endpoints: [], index: 0, affinity: new Map() };
      st.sp = sp;
      const ready = sp.endpoints.filter((e) => e.ready).map((e) => e.str);
      const same = ready.length === st.endpoints.length && [...ready].sort().join() === [...st.endpoints].sort().join();
      if (!same) {
        // LoadBalancerRR.OnEndpointsUpdate: shuffle the new list, restart at index 0, forget affinity to vanished endpoints.
        st.endpoints = this.shuffle(ready);
        st.index = 0;
        for (const [ip, a] of st.affinity) if (!ready.includes(a.endpoint)) st.affinity.delete(ip);
      }
      next.set(key, st);
    }
    this.states = next;
    this.byPort = new Map([...next.values()].map((s) => [s.proxyPort, s]));
    this.bySpn = new Map([...next.values()].map((s) => [s.sp.spn, s]));
    this.render();
  }

  private allocatePort(used: Set<number>): number {
    const [lo, hi] = this.range;
    for (let attempt = 0; attempt < 1000; attempt++) {
      const p = this.opts.rng.int(lo, hi);
      if (!used.has(p)) {
        used.add(p);
        return p;
      }
    }
    for (let p = lo; p <= hi; p++) {
      if (!used.has(p)) {
        used.add(p);
        return p;
      }
    }
    throw new Error(`userspace proxy: no free port in ${lo}-${hi}`);
  }

  private shuffle(list: string[]): string[] {
    const a = [...list];
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.opts.rng.int(0, i);
      [a[i], a[j]] = [a[j], a[i]];
    }
    return a;
  }

  private render(): void {
    const nat = emptyTable('nat');
    const filter = emptyTable('filter');
    nat.chains.push('KUBE-PORTALS-CONTAINER', 'KUBE-PORTALS-HOST', 'KUBE-NODEPORT-CONTAINER', 'KUBE-NODEPORT-HOST');
    filter.chains.push('KUBE-NODEPORT-NON-LOCAL');
    const host = this.opts.nodeIP;
    for (const st of [...this.states.values()].sort((a, b) => (a.sp.spn < b.sp.spn ? -1 : 1))) {
      const { sp, proxyPort } = st;
      const p = sp.protocol;
      nat.rules.push(rule('nat', 'KUBE-PORTALS-CONTAINER').comment(sp.spn, false).p(p).m(p).dport(sp.port).d(`${sp.clusterIP}/32`).redirect(proxyPort));
      nat.rules.push(rule('nat', 'KUBE-PORTALS-HOST').comment(sp.spn, false).p(p).m(p).dport(sp.port).d(`${sp.clusterIP}/32`).dnat(host, proxyPort));
      if (sp.nodePort) {
        nat.rules.push(rule('nat', 'KUBE-NODEPORT-CONTAINER').comment(sp.spn, false).p(p).m(p).dport(sp.nodePort).redirect(proxyPort));
        nat.rules.push(rule('nat', 'KUBE-NODEPORT-HOST').comment(sp.spn, false).p(p).m(p).dport(sp.nodePort).dnat(host, proxyPort));
        filter.rules.push(rule('filter', 'KUBE-NODEPORT-NON-LOCAL').comment(sp.spn, false).p(p).m(p).dport(proxyPort).state(['NEW']).verdict('ACCEPT'));
      }
    }
    const portals = 'handle ClusterIPs; NOTE: this must be before the NodePort rules';
    const nodeports = 'handle service NodePorts; NOTE: this must be the last rule in the chain';
    nat.builtinRules = [
      rule('nat', 'PREROUTING').comment(portals, true).jump('KUBE-PORTALS-CONTAINER'),
      rule('nat', 'PREROUTING').addrtype('dst').comment(nodeports, true).jump('KUBE-NODEPORT-CONTAINER'),
      rule('nat', 'OUTPUT').comment(portals, true).jump('KUBE-PORTALS-HOST'),
      rule('nat', 'OUTPUT').addrtype('dst').comment(nodeports, true).jump('KUBE-NODEPORT-HOST'),
    ];
    filter.builtinRules = [rule('filter', 'INPUT').comment('Ensure that non-local NodePort traffic can flow', true).jump('KUBE-NODEPORT-NON-LOCAL')];
    this.tables = { nat, filter };
    this.walker.load('nat', [...nat.builtinRules, ...nat.rules]);
    this.walker.load('filter', [...filter.builtinRules, ...filter.rules]);
  }

  decide(pkt: ServicePacket): Decision | null {
    const steps: string[] | null = pkt.trace === false ? null : [`${pkt.protocol} ${pkt.src}:${pkt.sport} > ${pkt.dst}:${pkt.dport} enters nat ${pkt.fromHost ? 'OUTPUT (from the node)' : 'PREROUTING'}`];
    const origDst = ipToUint(pkt.dst);
    const w: WalkPacket = { src: ipToUint(pkt.src), srcStr: pkt.src, dst: origDst, dstStr: pkt.dst, proto: pkt.protocol, sport: pkt.sport, dport: pkt.dport, mark: 0, ctDnat: false };
    const env = { isLocal: (ip: number) => (ip === origDst && pkt.localDst) || this.local.has(ip) || inAddr(this.loopback, ip) };
    const v = this.walker.walk('nat', pkt.fromHost ? 'OUTPUT' : 'PREROUTING', w, env, steps);
    let port: number | undefined;
    if (v.kind === 'redirect') port = v.port;
    else if (v.kind === 'dnat' && v.ip === this.opts.nodeIP) port = v.port;
    const st = port === undefined ? undefined : this.byPort.get(port);
    if (!st) return null;
    steps?.push(`userspace proxy: ${st.sp.spn} listens on ${this.opts.nodeIP}:${st.proxyPort}/${st.sp.protocol}; it accepts and dials a backend`);
    return { kind: 'userspace', proxyPort: st.proxyPort, service: st.sp.spn, steps: steps ?? [] };
  }

  /**
   * The backend for the proxy's second connection (LoadBalancerRR.NextEndpoint):
   * `service` is the ServicePortName from the decision (or its proxy port as a
   * string). Null when the service port has no ready endpoint.
   */
  pickBackend(service: string, clientIp: string): BackendChoice | null {
    const st = this.bySpn.get(service) ?? this.byPort.get(Number(service));
    if (!st || st.endpoints.length === 0) return null;
    const now = this.opts.clock.now();
    if (st.sp.affinity) {
      const a = st.affinity.get(clientIp);
      if (a && Math.floor((now - a.lastUsed) / 1000) < st.sp.affinitySeconds && st.endpoints.includes(a.endpoint)) {
        a.lastUsed = now;
        return toChoice(a.endpoint, `ClientIP affinity: ${clientIp} stays on ${a.endpoint}`);
      }
    }
    const endpoint = st.endpoints[st.index];
    const why = `round robin: endpoint ${st.index + 1} of ${st.endpoints.length}`;
    st.index = (st.index + 1) % st.endpoints.length;
    if (st.sp.affinity) st.affinity.set(clientIp, { endpoint, lastUsed: now });
    return toChoice(endpoint, why);
  }

  /** Every proxy port the node must listen on. */
  proxyPorts(): ProxyPort[] {
    return [...this.states.values()].map((s) => ({ servicePort: s.sp.spn, protocol: s.sp.protocol, port: s.proxyPort })).sort((a, b) => a.port - b.port);
  }

  iptablesSave(table: TableName = 'nat', opts: SaveFormatOptions = {}): string {
    return formatIptablesSave(this.tables[table], opts);
  }

  connectionOpened(): void {}

  connectionClosed(): void {}

  /** No IPVS, no ipsets. */
  readonly views: EngineViews = {};
}

function toChoice(endpoint: string, reason: string): BackendChoice {
  const i = endpoint.lastIndexOf(':');
  return { ip: endpoint.slice(0, i), port: Number(endpoint.slice(i + 1)), reason };
}

function emptyTable(name: TableName): TableData {
  return { name, chains: [], rules: [], builtinRules: [], extraChains: [] };
}
