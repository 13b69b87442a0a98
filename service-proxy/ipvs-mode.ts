/**
 * kube-proxy `--proxy-mode=ipvs` (pkg/proxy/ipvs/proxier.go, Kubernetes
 * v1.30/v1.31): one IPVS virtual server per ClusterIP:port (the VIP bound to
 * the dummy device kube-ipvs0) and per node address:NodePort, real servers in
 * masquerading (NAT) mode with weight 1, scheduler `--ipvs-scheduler` (rr by
 * default), `persistent <timeoutSeconds>` for ClientIP affinity. iptables only
 * glues: ipsets of cluster IPs / node ports / local endpoints, and a handful of
 * rules that mark off-cluster or NodePort traffic for masquerade, masquerade
 * hairpin traffic (KUBE-LOOP-BACK) and reject packets to a VIP on a port no
 * service has (KUBE-IPVS-FILTER).
 *
 * A first packet walks the rendered glue rules (nat PREROUTING/OUTPUT, filter
 * INPUT/OUTPUT) with the same rule walker as iptables mode, then the IPVS
 * lookup and scheduler, then nat POSTROUTING (masquerade). Connection counts
 * (ActiveConn/InActConn) follow the data path's callbacks: a new connection is
 * inactive (TCP SYN_RECV, or UDP), connectionOpened() makes it active
 * (ESTABLISHED), connectionClosed() removes it. A persistence template
 * (client, VIP, port) lives `timeout` seconds after its last use and never
 * expires while it still controls a connection (the kernel re-arms its timer).
 *
 * Differences from a real node worth knowing: destinations are added in
 * `ip:port` order (kube-proxy adds them in Go map order); `externalTrafficPolicy:
 * Local` NodePorts fall back to all endpoints when the node has none, exactly as
 * kube-proxy's ipvs mode does (kubernetes#97081), unlike iptables mode's DROP.
 */
import { ipv4ToInt } from '../packet/addr.ts';
import { ipToUint, RuleWalker, type WalkPacket } from './iptables/evaluate.ts';
import { addrMatch, formatIptablesRestore, formatIptablesSave, inAddr, rule, type AddrMatch, type Rule, type SaveFormatOptions, type TableData, type TableName } from './iptables/rules.ts';
import { makeScheduler, type RealServer, type Scheduler } from './ipvs/schedulers.ts';
import { ModelCache, categorizeEndpoints, type EndpointInfo, type ServicePortInfo } from './model.ts';
import { connectionKey, type BackendChoice, type Decision, type EngineOptions, type EngineViews, type IpvsSchedulerName, type L4Protocol, type ProxyPort, type ServicePacket, type ServiceProxyEngine } from './types.ts';
import type { KubeObject } from '../control-plane/types.ts';

/** One IPVS virtual server. */
export interface VirtualServer {
  protocol: L4Protocol;
  ip: string;
  port: number;
  /** `TCP 10.96.0.10:80`. */
  key: string;
  scheduler: Scheduler;
  /** Persistence timeout in seconds (ClientIP affinity), 0 = none. */
  persistent: number;
  dests: RealServer[];
  /** The ServicePortName it serves, and whether it is the ClusterIP or a NodePort. */
  spn: string;
  service: string;
  kind: 'cluster-ip' | 'node-port' | 'load-balancer';
}

/** An ipset as kube-proxy creates it. */
export interface IpSet {
  name: string;
  type: 'hash:ip' | 'hash:ip,port' | 'hash:ip,port,ip' | 'hash:ip,port,net' | 'bitmap:port';
  comment: string;
  entries: Set<string>;
}

/** pkg/proxy/ipvs/ipset.go: every set kube-proxy's ipvs mode creates, in ipsetInfo order. */
const IPSET_INFO: [string, IpSet['type'], string][] = [
  ['KUBE-LOOP-BACK', 'hash:ip,port,ip', 'Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose'],
  ['KUBE-CLUSTER-IP', 'hash:ip,port', 'Kubernetes service cluster ip + port for masquerade purpose'],
  ['KUBE-EXTERNAL-IP', 'hash:ip,port', 'Kubernetes service external ip + port for masquerade and filter purpose'],
  ['KUBE-EXTERNAL-IP-LOCAL', 'hash:ip,port', 'Kubernetes service external ip + port with externalTrafficPolicy=local'],
  ['KUBE-LOAD-BALANCER', 'hash:ip,port', 'Kubernetes service lb portal'],
  ['KUBE-LOAD-BALANCER-FW', 'hash:ip,port', 'Kubernetes service load balancer ip + port for load balancer with sourceRange'],
  ['KUBE-LOAD-BALANCER-LOCAL', 'hash:ip,port', 'Kubernetes service load balancer ip + port with externalTrafficPolicy=local'],
  ['KUBE-LOAD-BALANCER-SOURCE-IP', 'hash:ip,port,ip', 'Kubernetes service load balancer ip + port + source IP for packet filter purpose'],
  ['KUBE-LOAD-BALANCER-SOURCE-CIDR', 'hash:ip,port,net', 'Kubernetes service load balancer ip + port + source cidr for packet filter purpose'],
  ['KUBE-NODE-PORT-TCP', 'bitmap:port', 'Kubernetes nodeport TCP port for masquerade purpose'],
  ['KUBE-NODE-PORT-LOCAL-TCP', 'bitmap:port', 'Kubernetes nodeport TCP port with externalTrafficPolicy=local'],
  ['KUBE-NODE-PORT-UDP', 'bitmap:port', 'Kubernetes nodeport UDP port for masquerade purpose'],
  ['KUBE-NODE-PORT-LOCAL-UDP', 'bitmap:port', 'Kubernetes nodeport UDP port with externalTrafficPolicy=local'],
  ['KUBE-HEALTH-CHECK-NODE-PORT', 'bitmap:port', 'Kubernetes health check node port'],
  ['KUBE-IPVS-IPS', 'hash:ip', 'Addresses on the ipvs interface'],
];

/** ipsetWithIptablesChain (nat part): set, chain, target, match flags, protocol match. */
const IPSET_CHAINS: [string, string, string, string, L4Protocol | ''][] = [
  ['KUBE-LOOP-BACK', 'KUBE-POSTROUTING', 'MASQUERADE', 'dst,dst,src', ''],
  ['KUBE-LOAD-BALANCER', 'KUBE-SERVICES', 'KUBE-LOAD-BALANCER', 'dst,dst', ''],
  ['KUBE-LOAD-BALANCER-LOCAL', 'KUBE-LOAD-BALANCER', 'RETURN', 'dst,dst', ''],
  ['KUBE-NODE-PORT-LOCAL-TCP', 'KUBE-NODE-PORT', 'RETURN', 'dst', 'tcp'],
  ['KUBE-NODE-PORT-TCP', 'KUBE-NODE-PORT', 'KUBE-MARK-MASQ', 'dst', 'tcp'],
  ['KUBE-NODE-PORT-LOCAL-UDP', 'KUBE-NODE-PORT', 'RETURN', 'dst', 'udp'],
  ['KUBE-NODE-PORT-UDP', 'KUBE-NODE-PORT', 'KUBE-MARK-MASQ', 'dst', 'udp'],
];

interface Conn {
  vs: VirtualServer;
  dest: RealServer;
  active: boolean;
  template?: Template;
}

interface Template {
  key: string;
  dest: RealServer;
  vs: VirtualServer;
  expiresAt: number;
  controlled: number;
}

/** The ipvs-mode engine. */
export class IpvsProxier implements ServiceProxyEngine {
  /** ipvsadm and ipset: the kernel objects this mode programs. */
  readonly views: EngineViews = { ipvsadm: () => this.ipvsadmList(), ipset: (name) => this.ipsetList(name) };
  readonly mode = 'ipvs' as const;
  private readonly opts: EngineOptions;
  private readonly walker: RuleWalker;
  private readonly schedulerName: IpvsSchedulerName;
  private readonly mark: number;
  private readonly clusterCidr: string;
  private readonly loopback: AddrMatch;
  private readonly nodeAddrs: string[];
  private readonly local = new Set<number>();
  private vips = new Set<number>();
  private services = new Map<string, VirtualServer>();
  private sets = new Map<string, IpSet>();
  private tables: { nat: TableData; filter: TableData } = { nat: emptyTable('nat'), filter: emptyTable('filter') };
  private readonly conns = new Map<string, Conn>();
  private readonly templates = new Map<string, Template>();
  private readonly models: ModelCache;
  model: ServicePortInfo[] = [];

  constructor(opts: EngineOptions) {
    this.opts = opts;
    this.schedulerName = opts.ipvsScheduler ?? 'rr';
    this.mark = (1 << (opts.masqueradeBit ?? 14)) >>> 0;
    this.clusterCidr = opts.clusterCidr ?? '10.244.0.0/16';
    this.loopback = addrMatch(opts.loopbackCidr ?? '127.0.0.0/8');
    this.walker = new RuleWalker(opts.rng, opts.clock);
    this.models = new ModelCache(opts.nodeName);
    const addrs = [...new Set([opts.nodeIP, ...(opts.localAddresses ?? [])])];
    for (const a of addrs) this.local.add(ipv4ToInt(a));
    // NodePort virtual servers go on every node address except loopback ones (GetAllLocalAddressesExcept + isValidForSet).
    this.nodeAddrs = addrs.filter((a) => !inAddr(this.loopback, ipv4ToInt(a)));
    this.update([], []);
  }

  update(services: readonly KubeObject[], slices: readonly KubeObject[]): void {
    this.apply(this.models.build(services, slices));
  }

  /** Syncs virtual servers, ipsets and glue rules from a model. */
  apply(model: ServicePortInfo[]): void {
    this.model = model;
    const sets = new Map<string, IpSet>();
    for (const [name, type, comment] of IPSET_INFO) sets.set(name, { name, type, comment, entries: new Set() });
    const add = (set: string, entry: string) => sets.get(set)!.entries.add(entry);
    const wanted = new Map<string, { sp: ServicePortInfo; ip: string; port: number; kind: VirtualServer['kind']; endpoints: EndpointInfo[] }>();
    const vips = new Set<number>();
    for (const sp of model) {
      const proto = sp.protocol;
      for (const ep of sp.endpoints) if (ep.isLocal) add('KUBE-LOOP-BACK', `${ep.ip},${proto}:${ep.port},${ep.ip}`);
      add('KUBE-CLUSTER-IP', `${sp.clusterIP},${proto}:${sp.port}`);
      const cat = categorizeEndpoints(sp);
      // syncEndpoint(onlyNodeLocalEndpoints): local ones if any, else the cluster set (kubernetes#97081).
      const pick = (onlyLocal: boolean): EndpointInfo[] => (onlyLocal ? (cat.localEndpoints.length > 0 ? cat.localEndpoints : cat.clusterEndpoints) : cat.clusterEndpoints);
      const vsKey = (ip: string, port: number) => `${proto.toUpperCase()} ${ip}:${port}`;
      wanted.set(vsKey(sp.clusterIP, sp.port), { sp, ip: sp.clusterIP, port: sp.port, kind: 'cluster-ip', endpoints: pick(sp.internalPolicyLocal) });
      vips.add(ipv4ToInt(sp.clusterIP));
      if (sp.nodePort !== 0 && this.nodeAddrs.length > 0) {
        add(proto === 'tcp' ? 'KUBE-NODE-PORT-TCP' : 'KUBE-NODE-PORT-UDP', String(sp.nodePort));
        if (sp.externalPolicyLocal) add(proto === 'tcp' ? 'KUBE-NODE-PORT-LOCAL-TCP' : 'KUBE-NODE-PORT-LOCAL-UDP', String(sp.nodePort));
        for (const addr of this.nodeAddrs) {
          wanted.set(vsKey(addr, sp.nodePort), { sp, ip: addr, port: sp.nodePort, kind: 'node-port', endpoints: pick(sp.externalPolicyLocal) });
        }
      }
      // LoadBalancer ingress: a virtual server on the LB IP, bound on kube-ipvs0 like a ClusterIP.
      for (const lbip of sp.loadBalancerIPs) {
        const entry = `${lbip},${proto}:${sp.port}`;
        add('KUBE-LOAD-BALANCER', entry);
        if (sp.externalPolicyLocal) add('KUBE-LOAD-BALANCER-LOCAL', entry);
        if (sp.loadBalancerSourceRanges.length) {
          add('KUBE-LOAD-BALANCER-FW', entry);
          for (const src of sp.loadBalancerSourceRanges) add('KUBE-LOAD-BALANCER-SOURCE-CIDR', `${entry},${src}`);
        }
        wanted.set(vsKey(lbip, sp.port), { sp, ip: lbip, port: sp.port, kind: 'load-balancer', endpoints: pick(sp.externalPolicyLocal) });
        vips.add(ipv4ToInt(lbip));
      }
    }
    for (const v of vips) add('KUBE-IPVS-IPS', intToStr(v));
    // Sync virtual servers (keep existing ones, their scheduler state, weights and counters).
    const next = new Map<string, VirtualServer>();
    for (const [key, w] of wanted) {
      let vs = this.services.get(key);
      const persistent = w.sp.affinity ? w.sp.affinitySeconds : 0;
      if (!vs) {
        vs = { protocol: w.sp.protocol, ip: w.ip, port: w.port, key, scheduler: makeScheduler(this.schedulerName), persistent, dests: [], spn: w.sp.spn, service: w.sp.service, kind: w.kind };
      }
      vs.persistent = persistent;
      vs.spn = w.sp.spn;
      vs.service = w.sp.service;
      const want = new Map(w.endpoints.map((e) => [e.str, e]));
      const dests: RealServer[] = [];
      const old = new Map(vs.dests.map((d) => [d.key, d]));
      for (const e of w.endpoints) {
        const d = old.get(e.str);
        if (d) {
          // A draining destination that is wanted again is re-added with weight 1 (MoveRSOutofGracefulDeleteList).
          if (d.terminating) d.weight = 1;
          d.terminating = false;
          dests.push(d);
        } else dests.push({ ip: e.ip, port: e.port, key: e.str, weight: 1, activeConns: 0, inactConns: 0, terminating: false });
      }
      // Graceful termination: a removed destination with connections stays, quiesced (weight 0), until they drain.
      for (const d of vs.dests) {
        if (want.has(d.key)) continue;
        if (d.activeConns + d.inactConns > 0) {
          d.weight = 0;
          d.terminating = true;
          dests.push(d);
        }
      }
      dests.sort((a, b) => cmpAddrPort(a, b));
      vs.dests = dests;
      vs.scheduler.changed(dests);
      next.set(key, vs);
    }
    this.services = next;
    this.vips = vips;
    this.sets = sets;
    this.renderRules();
  }

  private renderRules(): void {
    const mark = this.mark;
    const nat = emptyTable('nat');
    const filter = emptyTable('filter');
    nat.chains.push('KUBE-SERVICES', 'KUBE-POSTROUTING', 'KUBE-NODE-PORT', 'KUBE-LOAD-BALANCER', 'KUBE-MARK-MASQ');
    filter.chains.push('KUBE-FORWARD', 'KUBE-NODE-PORT', 'KUBE-PROXY-FIREWALL', 'KUBE-SOURCE-RANGES-FIREWALL', 'KUBE-IPVS-FILTER', 'KUBE-IPVS-OUT-FILTER');
    const empty = (name: string) => (this.sets.get(name)?.entries.size ?? 0) === 0;
    const q = (name: string) => this.sets.get(name)!.comment;
    nat.rules.push(rule('nat', 'KUBE-SERVICES').s(this.loopback.cidr).verdict('RETURN'));
    for (const [set, chain, to, flags, proto] of IPSET_CHAINS) {
      if (empty(set)) continue;
      const b = rule('nat', chain);
      if (proto) b.p(proto);
      b.comment(q(set), true).set(set, flags);
      nat.rules.push(to === 'MASQUERADE' ? b.masquerade(false) : to === 'RETURN' ? b.verdict('RETURN') : b.jump(to));
    }
    if (!empty('KUBE-CLUSTER-IP')) {
      const b = rule('nat', 'KUBE-SERVICES').comment(q('KUBE-CLUSTER-IP'), true).set('KUBE-CLUSTER-IP', 'dst,dst');
      nat.rules.push(this.clusterCidr ? b.s(this.clusterCidr, true).jump('KUBE-MARK-MASQ') : b.jump('KUBE-MARK-MASQ'));
    }
    nat.rules.push(rule('nat', 'KUBE-SERVICES').addrtype('dst').jump('KUBE-NODE-PORT'));
    nat.rules.push(rule('nat', 'KUBE-LOAD-BALANCER').jump('KUBE-MARK-MASQ'));
    filter.rules.push(rule('filter', 'KUBE-SOURCE-RANGES-FIREWALL').verdict('DROP'));
    if (!empty('KUBE-CLUSTER-IP')) nat.rules.push(rule('nat', 'KUBE-SERVICES').set('KUBE-CLUSTER-IP', 'dst,dst').verdict('ACCEPT'));
    filter.rules.push(
      rule('filter', 'KUBE-FORWARD').comment('kubernetes forwarding rules', true).mark(mark, mark).verdict('ACCEPT'),
      rule('filter', 'KUBE-FORWARD').comment('kubernetes forwarding conntrack rule', true).conntrack(['RELATED', 'ESTABLISHED']).verdict('ACCEPT'),
      rule('filter', 'KUBE-NODE-PORT').comment(q('KUBE-HEALTH-CHECK-NODE-PORT'), true).set('KUBE-HEALTH-CHECK-NODE-PORT', 'dst').verdict('ACCEPT'),
      rule('filter', 'KUBE-IPVS-FILTER').set('KUBE-LOAD-BALANCER', 'dst,dst').verdict('RETURN'),
      rule('filter', 'KUBE-IPVS-FILTER').set('KUBE-CLUSTER-IP', 'dst,dst').verdict('RETURN'),
      rule('filter', 'KUBE-IPVS-FILTER').set('KUBE-EXTERNAL-IP', 'dst,dst').verdict('RETURN'),
      rule('filter', 'KUBE-IPVS-FILTER').set('KUBE-EXTERNAL-IP-LOCAL', 'dst,dst').verdict('RETURN'),
      rule('filter', 'KUBE-IPVS-FILTER').set('KUBE-HEALTH-CHECK-NODE-PORT', 'dst').verdict('RETURN'),
      rule('filter', 'KUBE-IPVS-FILTER').conntrack(['NEW']).set('KUBE-IPVS-IPS', 'dst').verdict('REJECT'),
    );
    nat.rules.push(
      rule('nat', 'KUBE-POSTROUTING').mark(mark, mark, true).verdict('RETURN'),
      rule('nat', 'KUBE-POSTROUTING').markTarget('xor', mark),
      rule('nat', 'KUBE-POSTROUTING').comment('kubernetes service traffic requiring SNAT', true).masquerade(true),
      rule('nat', 'KUBE-MARK-MASQ').markTarget('or', mark),
    );
    // createAndLinkKubeChain: each jump prepended, so a chain's jumps end up in reverse list order.
    nat.builtinRules = [
      rule('nat', 'PREROUTING').comment('kubernetes service portals', true).jump('KUBE-SERVICES'),
      rule('nat', 'OUTPUT').comment('kubernetes service portals', true).jump('KUBE-SERVICES'),
      rule('nat', 'POSTROUTING').comment('kubernetes postrouting rules', true).jump('KUBE-POSTROUTING'),
    ];
    filter.builtinRules = [
      rule('filter', 'INPUT').comment('kubernetes ipvs access filter', true).jump('KUBE-IPVS-FILTER'),
      rule('filter', 'INPUT').comment('kube-proxy firewall rules', true).jump('KUBE-PROXY-FIREWALL'),
      rule('filter', 'INPUT').comment('kubernetes health check rules', true).jump('KUBE-NODE-PORT'),
      rule('filter', 'FORWARD').comment('kube-proxy firewall rules', true).jump('KUBE-PROXY-FIREWALL'),
      rule('filter', 'FORWARD').comment('kubernetes forwarding rules', true).jump('KUBE-FORWARD'),
      rule('filter', 'OUTPUT').comment('kubernetes ipvs access filter', true).jump('KUBE-IPVS-OUT-FILTER'),
    ];
    nat.extraChains = ['KUBE-PROXY-CANARY'];
    filter.extraChains = ['KUBE-PROXY-CANARY'];
    this.tables = { nat, filter };
    this.walker.load('nat', [...nat.builtinRules, ...nat.rules]);
    this.walker.load('filter', [...filter.builtinRules, ...filter.rules]);
  }

  private isLocal(ip: number): boolean {
    return this.local.has(ip) || this.vips.has(ip) || inAddr(this.loopback, ip);
  }

  private inSet(name: string, flags: string, p: WalkPacket): boolean {
    const set = this.sets.get(name);
    if (!set || set.entries.size === 0) return false;
    switch (set.type) {
      case 'hash:ip,port':
        return set.entries.has(`${p.dstStr},${p.proto}:${p.dport}`);
      case 'hash:ip,port,ip':
        return set.entries.has(`${p.dstStr},${p.proto}:${p.dport},${p.srcStr}`);
      case 'bitmap:port':
        return set.entries.has(String(p.dport));
      case 'hash:ip':
        return set.entries.has(flags.startsWith('src') ? p.srcStr : p.dstStr);
      default:
        return false;
    }
  }

  decide(pkt: ServicePacket): Decision | null {
    const steps: string[] | null = pkt.trace === false ? null : [`${pkt.protocol} ${pkt.src}:${pkt.sport} > ${pkt.dst}:${pkt.dport} enters nat ${pkt.fromHost ? 'OUTPUT (from the node)' : `PREROUTING (${pkt.fromLocalPod ? 'from a local pod' : 'from the network'})`}`];
    const origDst = ipToUint(pkt.dst);
    const w: WalkPacket = { src: ipToUint(pkt.src), srcStr: pkt.src, dst: origDst, dstStr: pkt.dst, proto: pkt.protocol, sport: pkt.sport, dport: pkt.dport, mark: 0, ctDnat: false };
    const env = {
      isLocal: (ip: number) => (ip === origDst && pkt.localDst) || this.isLocal(ip),
      inSet: (name: string, flags: string, p: WalkPacket) => this.inSet(name, flags, p),
    };
    this.walker.walk('nat', pkt.fromHost ? 'OUTPUT' : 'PREROUTING', w, env, steps);
    const dstLocal = env.isLocal(w.dst);
    const v2 = this.walker.walk('filter', pkt.fromHost ? 'OUTPUT' : dstLocal ? 'INPUT' : 'FORWARD', w, env, steps);
    if (v2.kind === 'reject') return { kind: 'reject', reason: v2.rule.chain === 'KUBE-IPVS-FILTER' ? 'not-a-service-port' : 'no-endpoints', icmp: 'port-unreachable', steps: steps ?? [] };
    if (v2.kind === 'drop') return { kind: 'drop', reason: 'filtered', steps: steps ?? [] };
    if (!dstLocal) return null;
    const vs = this.services.get(`${pkt.protocol.toUpperCase()} ${pkt.dst}:${pkt.dport}`);
    if (!vs) return null;
    const vsLine = `${vs.protocol.toUpperCase()}  ${vs.ip}:${vs.port} ${vs.scheduler.name}${vs.persistent ? ` persistent ${vs.persistent}` : ''}`;
    const now = this.opts.clock.now();
    let dest: RealServer | null;
    let why: string;
    let template: Template | undefined;
    if (vs.persistent) {
      const tkey = `${vs.key} ${pkt.src}`;
      template = this.liveTemplate(tkey, now);
      if (template && template.dest.weight > 0 && vs.dests.includes(template.dest)) {
        dest = template.dest;
        why = `persistence template for client ${pkt.src} (expires in ${Math.ceil((template.expiresAt - now) / 1000)} s)`;
      } else {
        if (template) this.templates.delete(tkey);
        const r = vs.scheduler.schedule(vs.dests, { saddr: w.src, daddr: origDst });
        dest = r.dest;
        why = `${r.reason}; new persistence template for ${vs.persistent} s`;
        template = dest ? { key: tkey, dest, vs, expiresAt: now + vs.persistent * 1000, controlled: 0 } : undefined;
        if (template) this.templates.set(tkey, template);
      }
    } else {
      const r = vs.scheduler.schedule(vs.dests, { saddr: w.src, daddr: origDst });
      dest = r.dest;
      why = r.reason;
    }
    if (!dest) {
      steps?.push(`ipvs ${vsLine}: no destination available (${vs.dests.length === 0 ? 'no real server' : why}): ICMP port unreachable`);
      return { kind: 'reject', reason: 'no-endpoints', icmp: 'port-unreachable', steps: steps ?? [] };
    }
    steps?.push(`ipvs ${vsLine} -> ${dest.key} Masq weight ${dest.weight} (${why})`);
    if (template) {
      template.expiresAt = now + vs.persistent * 1000;
      template.controlled++;
    }
    const key = connectionKey(pkt);
    const prev = this.conns.get(key);
    if (prev) this.dropConn(key, prev);
    this.conns.set(key, { vs, dest, active: false, template });
    dest.inactConns++;
    w.dst = ipToUint(dest.ip);
    w.dstStr = dest.ip;
    w.dport = dest.port;
    w.ctDnat = true;
    const masquerade = this.walker.walk('nat', 'POSTROUTING', w, env, steps).kind === 'masquerade';
    return { kind: 'dnat', to: { ip: dest.ip, port: dest.port }, masquerade, service: vs.service, servicePort: vs.spn, steps: steps ?? [], key };
  }

  /** The template if still alive; a timer that fires while it controls connections is re-armed, as in ip_vs_conn_expire. */
  private liveTemplate(key: string, now: number): Template | undefined {
    const t = this.templates.get(key);
    if (!t) return undefined;
    while (now >= t.expiresAt) {
      if (t.controlled > 0) t.expiresAt += t.vs.persistent * 1000;
      else {
        this.templates.delete(key);
        return undefined;
      }
    }
    return t;
  }

  connectionOpened(key: string): void {
    const c = this.conns.get(key);
    if (!c || c.active) return;
    c.active = true;
    c.dest.inactConns--;
    c.dest.activeConns++;
  }

  /** IPVS forwards in the kernel: no listeners on the node. */
  proxyPorts(): ProxyPort[] {
    return [];
  }

  pickBackend(): BackendChoice | null {
    return null;
  }

  connectionClosed(key: string): void {
    const c = this.conns.get(key);
    if (c) this.dropConn(key, c);
  }

  private dropConn(key: string, c: Conn): void {
    this.conns.delete(key);
    if (c.active) c.dest.activeConns--;
    else c.dest.inactConns--;
    if (c.template) c.template.controlled--;
    if (c.dest.terminating && c.dest.activeConns + c.dest.inactConns === 0) {
      c.vs.dests = c.vs.dests.filter((d) => d !== c.dest);
      c.vs.scheduler.changed(c.vs.dests);
    }
  }

  /** `ipvsadm -e -t VIP:PORT -r RS -w WEIGHT`: changes a real server's weight (survives syncs, as on a real node). */
  setWeight(virtualServer: string, realServer: string, weight: number): void {
    const vs = this.services.get(virtualServer);
    const d = vs?.dests.find((x) => x.key === realServer);
    if (!vs || !d) throw new Error(`ipvs: no real server ${realServer} in ${virtualServer}`);
    d.weight = weight;
    vs.scheduler.changed(vs.dests);
  }

  /** A virtual server by key (`TCP 10.96.0.10:80`). */
  virtualServer(key: string): VirtualServer | undefined {
    return this.services.get(key);
  }

  /** Every virtual server, in ipvsadm's order. */
  virtualServers(): VirtualServer[] {
    return [...this.services.values()].sort(cmpVs);
  }

  /** `ipvsadm -Ln`, exactly as ipvsadm prints it (trailing padding included). */
  ipvsadmList(): string {
    const lines = ['IP Virtual Server version 1.2.1 (size=4096)', 'Prot LocalAddress:Port Scheduler Flags', '  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn'];
    for (const vs of this.virtualServers()) {
      lines.push(`${vs.protocol.toUpperCase()}  ${vs.ip}:${vs.port} ${vs.scheduler.name}${vs.persistent ? ` persistent ${vs.persistent}` : ''}`);
      for (const d of vs.dests) {
        lines.push(`  -> ${d.key.padEnd(28)} ${'Masq'.padEnd(7)} ${String(d.weight).padEnd(6)} ${String(d.activeConns).padEnd(10)} ${String(d.inactConns).padEnd(10)}`);
      }
    }
    return lines.join('\n') + '\n';
  }

  /** The addresses on kube-ipvs0 (every ClusterIP), as `ip addr` would list them (`/32`, sorted numerically). */
  dummyAddresses(): string[] {
    return [...this.vips].sort((a, b) => a - b).map((v) => `${intToStr(v)}/32`);
  }

  /** The ipsets (for tests and traces). */
  ipsets(): ReadonlyMap<string, IpSet> {
    return this.sets;
  }

  /**
   * `ipset list [NAME]`. Name, Type, Header and Members are what ipset prints;
   * Revision and "Size in memory" depend on the kernel and are representative.
   */
  ipsetList(name?: string): string {
    const refs = new Map<string, number>();
    for (const r of [...this.tables.nat.rules, ...this.tables.filter.rules]) {
      for (const m of r.matches) if (m.kind === 'set') refs.set(m.name, (refs.get(m.name) ?? 0) + 1);
    }
    const out: string[] = [];
    for (const s of this.sets.values()) {
      if (name !== undefined && s.name !== name) continue;
      const bitmap = s.type === 'bitmap:port';
      const members = [...s.entries].sort(bitmap ? (a, b) => Number(a) - Number(b) : undefined);
      const rev = { 'hash:ip': 4, 'hash:ip,port': 5, 'hash:ip,port,ip': 5, 'hash:ip,port,net': 7, 'bitmap:port': 3 }[s.type];
      const size = bitmap ? 8268 : 296 + 24 * members.length;
      out.push(
        `Name: ${s.name}`,
        `Type: ${s.type}`,
        `Revision: ${rev}`,
        `Header: ${bitmap ? 'range 0-65535' : 'family inet hashsize 1024 maxelem 65536'}`,
        `Size in memory: ${size}`,
        `References: ${refs.get(s.name) ?? 0}`,
        `Number of entries: ${members.length}`,
        'Members:',
        ...members,
        '',
      );
    }
    return out.join('\n');
  }

  iptablesSave(table: TableName = 'nat', opts: SaveFormatOptions = {}): string {
    return formatIptablesSave(this.tables[table], opts);
  }

  iptablesRestore(table: TableName = 'nat'): string {
    return formatIptablesRestore(this.tables[table]);
  }

  /** The glue rules as data. */
  table(table: TableName): TableData {
    return this.tables[table];
  }
}

function intToStr(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

function cmpAddrPort(a: { ip: string; port: number }, b: { ip: string; port: number }): number {
  return ipToUint(a.ip) - ipToUint(b.ip) || a.port - b.port;
}

/** ipvs_cmp_services: protocol number (TCP 6 < UDP 17), address, port. */
function cmpVs(a: VirtualServer, b: VirtualServer): number {
  const pn = (p: L4Protocol) => (p === 'tcp' ? 6 : 17);
  return pn(a.protocol) - pn(b.protocol) || cmpAddrPort(a, b);
}

function emptyTable(name: TableName): TableData {
  return { name, chains: [], rules: [] as Rule[], builtinRules: [], extraChains: [] };
}
