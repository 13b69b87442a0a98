/**
 * kube-proxy `--proxy-mode=iptables`, as pkg/proxy/iptables/proxier.go of
 * Kubernetes v1.30/v1.31 writes it (the layout with KUBE-EXT-/KUBE-SVL- chains
 * introduced in v1.24-v1.25, the filter-table REJECTs, KUBE-PROXY-FIREWALL,
 * localhost NodePorts, `--random-fully`):
 *
 *   nat PREROUTING/OUTPUT -> KUBE-SERVICES
 *     -d <clusterIP> --dport <port> -> KUBE-SVC-<hash>   ("ns/svc:port cluster IP")
 *     ... last: -m addrtype --dst-type LOCAL -> KUBE-NODEPORTS
 *   KUBE-NODEPORTS --dport <nodePort> -> KUBE-EXT-<hash>
 *   KUBE-EXT-<hash>: Cluster policy: KUBE-MARK-MASQ, then KUBE-SVC-<hash>;
 *                    Local policy: pod sources -> KUBE-SVC, node-local sources
 *                    masqueraded -> KUBE-SVC, the rest -> KUBE-SVL-<hash>
 *   KUBE-SVC-<hash>: ! -s <clusterCIDR> -> KUBE-MARK-MASQ; [ClientIP affinity:
 *                    -m recent --rcheck per endpoint]; -m statistic
 *                    --probability 1/(n-i) -> KUBE-SEP-<hash> (last without)
 *   KUBE-SEP-<hash>: -s <ep> -> KUBE-MARK-MASQ (hairpin); [-m recent --set]
 *                    -j DNAT --to-destination <ep>
 *   nat POSTROUTING -> KUBE-POSTROUTING: unmarked RETURN, clear mark, MASQUERADE
 *   filter KUBE-SERVICES / KUBE-EXTERNAL-SERVICES: REJECT (no endpoints) or
 *                    DROP (Local policy without local endpoints)
 *   LoadBalancer: KUBE-SERVICES -d <lbIP> --dport <port> -> KUBE-EXT-<hash>
 *                    ("ns/svc:port loadbalancer IP"), or -> KUBE-FW-<hash> with
 *                    loadBalancerSourceRanges: allowed sources -> KUBE-EXT,
 *                    the rest falls through to filter KUBE-PROXY-FIREWALL's DROP
 *
 * Things podlab leaves out: externalIPs, topology hints, the nfacct counter rules (they depend on
 * the host's nfacct support), and the health-check node port. Services are
 * written sorted by ServicePortName (kube-proxy walks a Go map, so a real
 * node's KUBE-SERVICES order varies between syncs).
 */
import { ipv4ToInt } from '../packet/addr.ts';
import { groupByChain, ipToUint, RuleWalker, type WalkPacket, type WalkVerdict } from './iptables/evaluate.ts';
import {
  addrMatch,
  formatIptablesRestore,
  formatIptablesSave,
  inAddr,
  rule,
  type AddrMatch,
  type Rule,
  type SaveFormatOptions,
  type TableData,
  type TableName,
} from './iptables/rules.ts';
import { buildModel, categorizeEndpoints, endpointHash, externallyAccessible, fingerprint, portProtoHash, type ServicePortInfo } from './model.ts';
import { connectionKey, type BackendChoice, type Decision, type EngineOptions, type EngineViews, type ProxyPort, type ServicePacket, type ServiceProxyEngine } from './types.ts';
import type { KubeObject } from '../control-plane/types.ts';

/** kube-proxy's largeClusterEndpointsThreshold: above this many endpoints, per-endpoint comments are dropped. */
export const LARGE_CLUSTER_ENDPOINTS_THRESHOLD = 1000;

/** The chains of one service port. */
export interface ServiceChains {
  svc: string;
  svl: string;
  ext: string;
  fw: string;
}

/** KUBE-SVC/SVL/EXT/FW names for a ServicePortName and lower-case protocol. */
export function serviceChains(spn: string, protocol: string): ServiceChains {
  const h = portProtoHash(spn, protocol);
  return { svc: `KUBE-SVC-${h}`, svl: `KUBE-SVL-${h}`, ext: `KUBE-EXT-${h}`, fw: `KUBE-FW-${h}` };
}

/** KUBE-SEP name for a ServicePortName, protocol and endpoint `ip:port`. */
export function endpointChain(spn: string, protocol: string, endpoint: string): string {
  return `KUBE-SEP-${endpointHash(spn, protocol, endpoint)}`;
}

/** `%0.10f` of 1/n, as computeProbability. */
export function probability(n: number): string {
  return (1 / n).toFixed(10);
}

/** Render-time settings shared by the whole table. */
interface RenderConfig {
  masqueradeMark: number;
  clusterCidr: string;
  loopbackCidr: string;
  largeClusterMode: boolean;
  nodeIP: string;
}

/** The rules one service port contributes. */
interface ServiceBlock {
  fp: string;
  filterRules: Rule[];
  natChains: string[];
  natServiceRules: Rule[];
  natNodePortRules: Rule[];
  natRules: Rule[];
  /** SEP chain → service info, for naming the DNAT decision. */
  seps: Map<string, ServicePortInfo>;
}

const nameCache = new Map<string, ServiceChains>();

function chainsOf(sp: ServicePortInfo): ServiceChains {
  const k = `${sp.spn}|${sp.protocol}`;
  let c = nameCache.get(k);
  if (!c) {
    c = serviceChains(sp.spn, sp.protocol);
    if (nameCache.size > 200_000) nameCache.clear();
    nameCache.set(k, c);
  }
  return c;
}

function sepOf(sp: ServicePortInfo, ep: string): string {
  // Not cached: a service's rules are rebuilt only when its endpoints change (see ServiceBlock.fp).
  return endpointChain(sp.spn, sp.protocol, ep);
}

/** syncProxyRules' per-service-port body. */
function renderService(sp: ServicePortInfo, cfg: RenderConfig, fp: string): ServiceBlock {
  const block: ServiceBlock = { fp, filterRules: [], natChains: [], natServiceRules: [], natNodePortRules: [], natRules: [], seps: new Map() };
  const proto = sp.protocol;
  const spn = sp.spn;
  const names = chainsOf(sp);
  const { clusterEndpoints, localEndpoints, allReachableEndpoints, hasAnyEndpoints: hasEndpoints } = categorizeEndpoints(sp);
  const clusterPolicyChain = names.svc;
  const usesClusterPolicyChain = clusterEndpoints.length > 0 && (!sp.internalPolicyLocal || (externallyAccessible(sp) && !sp.externalPolicyLocal));
  const localPolicyChain = names.svl;
  const usesLocalPolicyChain = localEndpoints.length > 0 && (sp.internalPolicyLocal || (externallyAccessible(sp) && sp.externalPolicyLocal));
  let internalPolicyChain = clusterPolicyChain;
  let hasInternalEndpoints = hasEndpoints;
  if (sp.internalPolicyLocal) {
    internalPolicyChain = localPolicyChain;
    if (localEndpoints.length === 0) hasInternalEndpoints = false;
  }
  const internalTrafficChain = internalPolicyChain;
  let externalPolicyChain = clusterPolicyChain;
  let hasExternalEndpoints = hasEndpoints;
  if (sp.externalPolicyLocal) {
    externalPolicyChain = localPolicyChain;
    if (localEndpoints.length === 0) hasExternalEndpoints = false;
  }
  const externalTrafficChain = names.ext;
  const usesExternalTrafficChain = hasEndpoints && externallyAccessible(sp);

  let internalFilterTarget: 'REJECT' | 'DROP' | undefined;
  let internalFilterComment = '';
  let externalFilterTarget: 'REJECT' | 'DROP' | undefined;
  let externalFilterComment = '';
  if (!hasEndpoints) {
    internalFilterTarget = 'REJECT';
    internalFilterComment = `${spn} has no endpoints`;
    externalFilterTarget = 'REJECT';
    externalFilterComment = internalFilterComment;
  } else {
    if (!hasInternalEndpoints) {
      internalFilterTarget = 'DROP';
      internalFilterComment = `${spn} has no local endpoints`;
    }
    if (!hasExternalEndpoints) {
      externalFilterTarget = 'DROP';
      externalFilterComment = `${spn} has no local endpoints`;
    }
  }

  // Capture the clusterIP.
  if (hasInternalEndpoints) {
    block.natServiceRules.push(
      rule('nat', 'KUBE-SERVICES').comment(`${spn} cluster IP`, true).m(proto).p(proto).d(sp.clusterIP).dport(sp.port).jump(internalTrafficChain),
    );
  } else {
    block.filterRules.push(
      rule('filter', 'KUBE-SERVICES').comment(internalFilterComment, true).m(proto).p(proto).d(sp.clusterIP).dport(sp.port).verdict(internalFilterTarget!),
    );
  }

  // Capture load-balancer ingress (through KUBE-FW when loadBalancerSourceRanges restrict it).
  const usesFWChain = hasEndpoints && sp.loadBalancerIPs.length > 0 && sp.loadBalancerSourceRanges.length > 0;
  const loadBalancerTrafficChain = usesFWChain ? names.fw : externalTrafficChain;
  for (const lbip of sp.loadBalancerIPs) {
    if (hasEndpoints) {
      block.natServiceRules.push(rule('nat', 'KUBE-SERVICES').comment(`${spn} loadbalancer IP`, true).m(proto).p(proto).d(lbip).dport(sp.port).jump(loadBalancerTrafficChain));
    }
    if (usesFWChain) {
      block.filterRules.push(rule('filter', 'KUBE-PROXY-FIREWALL').comment(`${spn} traffic not accepted by ${names.fw}`, true).m(proto).p(proto).d(lbip).dport(sp.port).verdict('DROP'));
    }
  }
  if (!hasExternalEndpoints) {
    for (const lbip of sp.loadBalancerIPs) {
      block.filterRules.push(rule('filter', 'KUBE-EXTERNAL-SERVICES').comment(externalFilterComment, true).m(proto).p(proto).d(lbip).dport(sp.port).verdict(externalFilterTarget!));
    }
  }

  // Capture nodeports.
  if (sp.nodePort !== 0) {
    if (hasEndpoints) {
      block.natNodePortRules.push(rule('nat', 'KUBE-NODEPORTS').comment(spn, false).m(proto).p(proto).dport(sp.nodePort).jump(externalTrafficChain));
    }
    if (!hasExternalEndpoints) {
      block.filterRules.push(
        rule('filter', 'KUBE-EXTERNAL-SERVICES').comment(externalFilterComment, true).addrtype('dst').m(proto).p(proto).dport(sp.nodePort).verdict(externalFilterTarget!),
      );
    }
  }

  // Internal traffic handling: masquerade off-cluster sources to the clusterIP.
  if (hasInternalEndpoints && cfg.clusterCidr) {
    block.natRules.push(
      rule('nat', internalTrafficChain)
        .comment(`${spn} cluster IP`, true)
        .m(proto)
        .p(proto)
        .d(sp.clusterIP)
        .dport(sp.port)
        .s(cfg.clusterCidr, true)
        .jump('KUBE-MARK-MASQ'),
    );
  }

  // External traffic handling.
  if (usesExternalTrafficChain) {
    block.natChains.push(externalTrafficChain);
    if (!sp.externalPolicyLocal) {
      block.natRules.push(rule('nat', externalTrafficChain).comment(`masquerade traffic for ${spn} external destinations`, true).jump('KUBE-MARK-MASQ'));
    } else {
      if (cfg.clusterCidr) {
        block.natRules.push(rule('nat', externalTrafficChain).comment(`pod traffic for ${spn} external destinations`, true).s(cfg.clusterCidr).jump(clusterPolicyChain));
      }
      block.natRules.push(
        rule('nat', externalTrafficChain).comment(`masquerade LOCAL traffic for ${spn} external destinations`, true).addrtype('src').jump('KUBE-MARK-MASQ'),
      );
      block.natRules.push(rule('nat', externalTrafficChain).comment(`route LOCAL traffic for ${spn} external destinations`, true).addrtype('src').jump(clusterPolicyChain));
    }
    if (hasExternalEndpoints) block.natRules.push(rule('nat', externalTrafficChain).jump(externalPolicyChain));
  }

  // The firewall chain: allowed sources go on to KUBE-EXT; what falls off the end is dropped by KUBE-PROXY-FIREWALL.
  if (usesFWChain) {
    block.natChains.push(names.fw);
    const allowFromNode = sp.loadBalancerSourceRanges.some((r) => { const m = addrMatch(r); return ((ipToUint(cfg.nodeIP) & m.mask) >>> 0) === m.net; });
    for (const src of sp.loadBalancerSourceRanges) block.natRules.push(rule('nat', names.fw).comment(`${spn} loadbalancer IP`, true).s(src).jump(externalTrafficChain));
    // A request from the node to its own VIP loops back with the VIP as source.
    if (allowFromNode) for (const lbip of sp.loadBalancerIPs) block.natRules.push(rule('nat', names.fw).comment(`${spn} loadbalancer IP`, true).s(lbip).jump(externalTrafficChain));
    block.natRules.push(rule('nat', names.fw).comment(`other traffic to ${spn} will be dropped by KUBE-PROXY-FIREWALL`, true).noTarget());
  }

  const writeServiceToEndpointRules = (svcChain: string, endpoints: typeof clusterEndpoints): void => {
    if (sp.affinity) {
      for (const ep of endpoints) {
        const b = rule('nat', svcChain);
        if (!cfg.largeClusterMode) b.comment(`${spn} -> ${ep.str}`, true);
        const sep = sepOf(sp, ep.str);
        block.natRules.push(b.recentCheck(sep, sp.affinitySeconds).jump(sep));
      }
    }
    const n = endpoints.length;
    endpoints.forEach((ep, i) => {
      const b = rule('nat', svcChain);
      if (!cfg.largeClusterMode) b.comment(`${spn} -> ${ep.str}`, true);
      if (i < n - 1) b.statistic(probability(n - i));
      block.natRules.push(b.jump(sepOf(sp, ep.str)));
    });
  };
  if (usesClusterPolicyChain) {
    block.natChains.push(clusterPolicyChain);
    writeServiceToEndpointRules(clusterPolicyChain, clusterEndpoints);
  }
  if (usesLocalPolicyChain) {
    block.natChains.push(localPolicyChain);
    writeServiceToEndpointRules(localPolicyChain, localEndpoints);
  }

  // Per-endpoint chains.
  for (const ep of allReachableEndpoints) {
    const sep = sepOf(sp, ep.str);
    block.natChains.push(sep);
    block.seps.set(sep, sp);
    const masq = rule('nat', sep);
    if (!cfg.largeClusterMode) masq.comment(spn, false);
    block.natRules.push(masq.s(ep.ip).jump('KUBE-MARK-MASQ'));
    const dnat = rule('nat', sep);
    if (!cfg.largeClusterMode) dnat.comment(spn, false);
    if (sp.affinity) dnat.recentSet(sep);
    block.natRules.push(dnat.m(proto).p(proto).dnat(ep.ip, ep.port));
  }
  return block;
}

/** Jump rules kube-proxy keeps in built-in chains (iptablesJumpChains + kubelet's KUBE-FIREWALL), in final chain order. */
function builtinJumps(): { filter: Rule[]; nat: Rule[] } {
  const newOnly = ['NEW'];
  return {
    filter: [
      rule('filter', 'INPUT').jump('KUBE-FIREWALL'),
      rule('filter', 'INPUT').conntrack(newOnly).comment('kubernetes load balancer firewall', true).jump('KUBE-PROXY-FIREWALL'),
      rule('filter', 'INPUT').comment('kubernetes health check service ports', true).jump('KUBE-NODEPORTS'),
      rule('filter', 'INPUT').conntrack(newOnly).comment('kubernetes externally-visible service portals', true).jump('KUBE-EXTERNAL-SERVICES'),
      rule('filter', 'FORWARD').conntrack(newOnly).comment('kubernetes load balancer firewall', true).jump('KUBE-PROXY-FIREWALL'),
      rule('filter', 'FORWARD').comment('kubernetes forwarding rules', true).jump('KUBE-FORWARD'),
      rule('filter', 'FORWARD').conntrack(newOnly).comment('kubernetes service portals', true).jump('KUBE-SERVICES'),
      rule('filter', 'FORWARD').conntrack(newOnly).comment('kubernetes externally-visible service portals', true).jump('KUBE-EXTERNAL-SERVICES'),
      rule('filter', 'OUTPUT').jump('KUBE-FIREWALL'),
      rule('filter', 'OUTPUT').conntrack(newOnly).comment('kubernetes load balancer firewall', true).jump('KUBE-PROXY-FIREWALL'),
      rule('filter', 'OUTPUT').conntrack(newOnly).comment('kubernetes service portals', true).jump('KUBE-SERVICES'),
    ],
    nat: [
      rule('nat', 'PREROUTING').comment('kubernetes service portals', true).jump('KUBE-SERVICES'),
      rule('nat', 'OUTPUT').comment('kubernetes service portals', true).jump('KUBE-SERVICES'),
      rule('nat', 'POSTROUTING').comment('kubernetes postrouting rules', true).jump('KUBE-POSTROUTING'),
    ],
  };
}

/** The iptables-mode engine. */
export class IptablesProxier implements ServiceProxyEngine {
  /** No IPVS, no ipsets. */
  readonly views: EngineViews = {};
  readonly mode = 'iptables' as const;
  private readonly opts: EngineOptions;
  private readonly cfgBase: Omit<RenderConfig, 'largeClusterMode'>;
  private readonly walker: RuleWalker;
  private readonly local = new Set<number>();
  private readonly loopback: AddrMatch;
  /** Per service port (`spn|protocol`), in model order. */
  private blocks = new Map<string, ServiceBlock>();
  private readonly seps = new Map<string, ServicePortInfo>();
  private largeClusterMode = false;
  private top: { natHead: Rule[]; natTail: Rule[]; filterHead: Rule[]; filterTail: Rule[]; jumps: { filter: Rule[]; nat: Rule[] } } | undefined;
  private tablesCache: { nat: TableData; filter: TableData } | undefined;
  /** The last model (for tests and traces). */
  model: ServicePortInfo[] = [];

  constructor(opts: EngineOptions) {
    this.opts = opts;
    const bit = opts.masqueradeBit ?? 14;
    this.cfgBase = {
      masqueradeMark: (1 << bit) >>> 0,
      clusterCidr: opts.clusterCidr ?? '10.244.0.0/16',
      loopbackCidr: opts.loopbackCidr ?? '127.0.0.0/8',
      nodeIP: opts.nodeIP,
    };
    this.walker = new RuleWalker(opts.rng, opts.clock);
    for (const a of [opts.nodeIP, ...(opts.localAddresses ?? [])]) this.local.add(ipv4ToInt(a));
    this.loopback = addrMatch(this.cfgBase.loopbackCidr);
    this.update([], []);
  }

  /** Rebuilds the rules from full Service/EndpointSlice lists; unchanged services keep their rules (a partial sync). */
  update(services: readonly KubeObject[], slices: readonly KubeObject[]): void {
    this.apply(buildModel(services, slices, this.opts.nodeName));
  }

  private dropBlock(block: ServiceBlock): void {
    for (const c of block.natChains) this.walker.setChain('nat', c, []);
    for (const k of block.seps.keys()) this.seps.delete(k);
  }

  private addBlock(block: ServiceBlock): void {
    for (const [chain, rules] of groupByChain(block.natRules)) this.walker.setChain('nat', chain, rules);
    for (const [k, v] of block.seps) this.seps.set(k, v);
  }

  /** Renders from an already-built model. */
  apply(model: ServicePortInfo[]): void {
    this.model = model;
    let total = 0;
    for (const sp of model) total += sp.endpoints.length;
    const large = total > LARGE_CLUSTER_ENDPOINTS_THRESHOLD;
    if (large !== this.largeClusterMode) {
      for (const b of this.blocks.values()) this.dropBlock(b);
      this.blocks.clear();
    }
    this.largeClusterMode = large;
    const cfg: RenderConfig = { ...this.cfgBase, largeClusterMode: large };
    const next = new Map<string, ServiceBlock>();
    for (const sp of model) {
      const key = `${sp.spn}|${sp.protocol}`;
      const fp = fingerprint(sp);
      let block = this.blocks.get(key);
      if (!block || block.fp !== fp) {
        if (block) this.dropBlock(block);
        block = renderService(sp, cfg, fp);
        this.addBlock(block);
      }
      this.blocks.delete(key);
      next.set(key, block);
    }
    for (const gone of this.blocks.values()) this.dropBlock(gone);
    this.blocks = next;
    this.top ??= this.topRules(cfg);
    // Only the chains every service writes into are reloaded whole: KUBE-SERVICES, KUBE-NODEPORTS, filter.
    const natShared: Rule[] = [...this.top.jumps.nat, ...this.top.natHead];
    const filterShared: Rule[] = [...this.top.jumps.filter, ...this.top.filterHead];
    for (const b of next.values()) {
      for (const r of b.natServiceRules) natShared.push(r);
      for (const r of b.natNodePortRules) natShared.push(r);
      for (const r of b.filterRules) filterShared.push(r);
    }
    for (const r of this.top.natTail) natShared.push(r);
    for (const r of this.top.filterTail) filterShared.push(r);
    this.walker.load('nat', natShared);
    this.walker.load('filter', filterShared);
    this.tablesCache = undefined;
  }

  /** The rules that do not depend on services. */
  private topRules(cfg: RenderConfig) {
    const mark = cfg.masqueradeMark;
    return {
      natHead: [
        rule('nat', 'KUBE-POSTROUTING').mark(mark, mark, true).verdict('RETURN'),
        rule('nat', 'KUBE-POSTROUTING').markTarget('xor', mark),
        rule('nat', 'KUBE-POSTROUTING').comment('kubernetes service traffic requiring SNAT', true).masquerade(true),
        rule('nat', 'KUBE-MARK-MASQ').markTarget('or', mark),
      ],
      natTail: [
        rule('nat', 'KUBE-SERVICES')
          .comment('kubernetes service nodeports; NOTE: this must be the last rule in this chain', true)
          .addrtype('dst')
          .jump('KUBE-NODEPORTS'),
      ],
      // localhost NodePorts are on (kube-proxy's default): kubelet-style block of martian localnet traffic.
      filterHead: [
        rule('filter', 'KUBE-FIREWALL')
          .comment('block incoming localnet connections', true)
          .d(cfg.loopbackCidr)
          .s(cfg.loopbackCidr, true)
          .conntrack(['RELATED', 'ESTABLISHED', 'DNAT'], true)
          .verdict('DROP'),
      ],
      filterTail: [
        rule('filter', 'KUBE-FORWARD').conntrack(['INVALID']).verdict('DROP'),
        rule('filter', 'KUBE-FORWARD').comment('kubernetes forwarding rules', true).mark(mark, mark).verdict('ACCEPT'),
        rule('filter', 'KUBE-FORWARD').comment('kubernetes forwarding conntrack rule', true).conntrack(['RELATED', 'ESTABLISHED']).verdict('ACCEPT'),
      ],
      jumps: builtinJumps(),
    };
  }

  /** The tables as kube-proxy wrote them (built on demand after a sync). */
  private get tables(): { nat: TableData; filter: TableData } {
    if (this.tablesCache) return this.tablesCache;
    const top = this.top!;
    const filter = emptyTable('filter');
    const nat = emptyTable('nat');
    filter.chains.push('KUBE-SERVICES', 'KUBE-EXTERNAL-SERVICES', 'KUBE-FORWARD', 'KUBE-NODEPORTS', 'KUBE-PROXY-FIREWALL', 'KUBE-FIREWALL');
    nat.chains.push('KUBE-SERVICES', 'KUBE-NODEPORTS', 'KUBE-POSTROUTING', 'KUBE-MARK-MASQ');
    append(nat.rules, top.natHead);
    append(filter.rules, top.filterHead);
    for (const block of this.blocks.values()) {
      append(filter.rules, block.filterRules);
      append(nat.chains, block.natChains);
      // kube-proxy's per-service write order in the restore payload.
      append(nat.rules, block.natServiceRules);
      append(nat.rules, block.natNodePortRules);
      append(nat.rules, block.natRules);
    }
    append(nat.rules, top.natTail);
    append(filter.rules, top.filterTail);
    filter.builtinRules = top.jumps.filter;
    nat.builtinRules = top.jumps.nat;
    filter.extraChains = ['KUBE-PROXY-CANARY'];
    nat.extraChains = ['KUBE-PROXY-CANARY'];
    this.tablesCache = { nat, filter };
    return this.tablesCache;
  }

  /** `iptables-save -t nat|filter` on this node. */
  iptablesSave(table: TableName = 'nat', opts: SaveFormatOptions = {}): string {
    return formatIptablesSave(this.tables[table], opts);
  }

  /** kube-proxy's iptables-restore input for the table (its unit tests' format). */
  iptablesRestore(table: TableName = 'nat'): string {
    return formatIptablesRestore(this.tables[table]);
  }

  /** The table data (rules as objects). */
  table(table: TableName): TableData {
    return this.tables[table];
  }

  /** The `recent` lists (ClientIP affinity state): list → source → last seen (ms). */
  recentLists(): ReadonlyMap<string, ReadonlyMap<string, number>> {
    return this.walker.recent.lists;
  }

  private isLocal(ip: number): boolean {
    return this.local.has(ip) || inAddr(this.loopback, ip);
  }

  decide(pkt: ServicePacket): Decision | null {
    const steps: string[] | null = pkt.trace === false ? null : [`${pkt.protocol} ${pkt.src}:${pkt.sport} > ${pkt.dst}:${pkt.dport} enters nat ${pkt.fromHost ? 'OUTPUT (from the node)' : `PREROUTING (${pkt.fromLocalPod ? 'from a local pod' : 'from the network'})`}`];
    const origDst = ipToUint(pkt.dst);
    const w: WalkPacket = { src: ipToUint(pkt.src), srcStr: pkt.src, dst: origDst, dstStr: pkt.dst, proto: pkt.protocol, sport: pkt.sport, dport: pkt.dport, mark: 0, ctDnat: false };
    const env = { isLocal: (ip: number) => (ip === origDst && pkt.localDst) || this.isLocal(ip) };
    const v1 = this.walker.walk('nat', pkt.fromHost ? 'OUTPUT' : 'PREROUTING', w, env, steps);
    let dnat: Extract<WalkVerdict, { kind: 'dnat' }> | undefined;
    if (v1.kind === 'dnat') {
      dnat = v1;
      w.dst = ipToUint(v1.ip);
      w.dstStr = v1.ip;
      w.dport = v1.port;
      w.ctDnat = true;
    }
    const dstLocal = env.isLocal(w.dst);
    const v2 = this.walker.walk('filter', pkt.fromHost ? 'OUTPUT' : dstLocal ? 'INPUT' : 'FORWARD', w, env, steps);
    if (v2.kind === 'reject') return { kind: 'reject', reason: 'no-endpoints', icmp: 'port-unreachable', steps: steps ?? [] };
    if (v2.kind === 'drop') {
      const comment = v2.rule.matches.find((m) => m.kind === 'comment');
      const noLocal = comment?.kind === 'comment' && comment.text.endsWith('has no local endpoints');
      return { kind: 'drop', reason: noLocal ? 'no-local-endpoints' : 'filtered', steps: steps ?? [] };
    }
    if (!dnat) return null;
    let masquerade = false;
    if (!dstLocal) masquerade = this.walker.walk('nat', 'POSTROUTING', w, env, steps).kind === 'masquerade';
    const sp = this.seps.get(dnat.rule.chain);
    return {
      kind: 'dnat',
      to: { ip: dnat.ip, port: dnat.port },
      masquerade,
      service: sp?.service ?? '',
      servicePort: sp?.spn ?? '',
      steps: steps ?? [],
      key: connectionKey(pkt),
    };
  }

  connectionOpened(): void {}

  connectionClosed(): void {}

  /** The kernel proxies by DNAT: no listeners on the node. */
  proxyPorts(): ProxyPort[] {
    return [];
  }

  pickBackend(): BackendChoice | null {
    return null;
  }
}

/** dst.push(...src) without the argument-count limit of spreading 100,000s of rules. */
function append<T>(dst: T[], src: readonly T[]): void {
  for (const x of src) dst.push(x);
}

function emptyTable(name: TableName): TableData {
  return { name, chains: [], rules: [], builtinRules: [], extraChains: [] };
}
