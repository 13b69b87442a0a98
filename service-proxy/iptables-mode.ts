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
 *
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
import { runSteps } from '../common/run-steps.ts';
import { ipv4ToInt } from '../packet/addr.ts';
import { groupByChain, ipToUint, RuleWalker, type WalkPacket, type WalkVerdict } from './iptables/evaluate.ts';
import {
  addrMatch,
  BUILTIN_CHAINS,
  formatIptablesRestore,
  formatIptablesSave,
  inAddr,
  rule,
  saveText,
  SaveLineWriter,
  stampSave,
  type RuleWriter,
  type SavedRule,
  type AddrMatch,
  type Rule,
  type SaveFormatOptions,
  type TableData,
  type TableName,
} from './iptables/rules.ts';
import { ModelCache, categorizeEndpoints, endpointHashed, externallyAccessible, fingerprint, portProtoHash, type EndpointInfo, type ServicePortInfo } from './model.ts';
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
  return endpointHashed('KUBE-SEP-', spn, protocol, endpoint);
}

/** `%0.10f` of 1/n, as computeProbability. */
export function probability(n: number): string {
  if (n < PROBABILITIES.length) return (PROBABILITIES[n] ??= (1 / n).toFixed(10));
  return (1 / n).toFixed(10);
}

/** probability(n) for n up to 4096 endpoints, formatted once (a full sync asks 100,000 times for a few values). */
const PROBABILITIES: string[] = new Array<string>(4097);

/** Render-time settings shared by the whole table. */
interface RenderConfig {
  masqueradeMark: number;
  clusterCidr: string;
  loopbackCidr: string;
  largeClusterMode: boolean;
  nodeIP: string;
}

/** The rules of one service port that land in chains every service shares (KUBE-SERVICES, KUBE-NODEPORTS, filter). */
interface EntryRules {
  filterRules: Rule[];
  natServiceRules: Rule[];
  natNodePortRules: Rule[];
}

function entryText(e: EntryRules): string {
  let s = '';
  for (const l of [e.natServiceRules, e.natNodePortRules, e.filterRules]) for (const r of l) s += `${r.chain} ${saveText(r)}\n`;
  return s;
}

/** The chains one service port owns (KUBE-SVC/SVL/EXT/SEP) and their rules (objects, or only their save lines). */
interface OwnChains<R extends { chain: string; owner?: unknown } = Rule> {
  natChains: string[];
  natRules: R[];
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

/** syncProxyRules' per-service-port decisions: which chains it uses and where its traffic goes. */
interface ServicePolicy {
  names: ServiceChains;
  clusterEndpoints: EndpointInfo[];
  localEndpoints: EndpointInfo[];
  allReachableEndpoints: EndpointInfo[];
  hasEndpoints: boolean;
  usesClusterPolicyChain: boolean;
  usesLocalPolicyChain: boolean;
  internalTrafficChain: string;
  hasInternalEndpoints: boolean;
  externalPolicyChain: string;
  hasExternalEndpoints: boolean;
  usesExternalTrafficChain: boolean;
  internalFilterTarget: 'REJECT' | 'DROP' | undefined;
  internalFilterComment: string;
  externalFilterTarget: 'REJECT' | 'DROP' | undefined;
  externalFilterComment: string;
}

function policyOf(sp: ServicePortInfo): ServicePolicy {
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
  let externalPolicyChain = clusterPolicyChain;
  let hasExternalEndpoints = hasEndpoints;
  if (sp.externalPolicyLocal) {
    externalPolicyChain = localPolicyChain;
    if (localEndpoints.length === 0) hasExternalEndpoints = false;
  }

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
  return {
    names,
    clusterEndpoints,
    localEndpoints,
    allReachableEndpoints,
    hasEndpoints,
    usesClusterPolicyChain,
    usesLocalPolicyChain,
    internalTrafficChain: internalPolicyChain,
    hasInternalEndpoints,
    externalPolicyChain,
    hasExternalEndpoints,
    usesExternalTrafficChain: hasEndpoints && externallyAccessible(sp),
    internalFilterTarget,
    internalFilterComment,
    externalFilterTarget,
    externalFilterComment,
  };
}

/** kube-proxy's usesFWChain: a LoadBalancer with endpoints, addresses and loadBalancerSourceRanges. */
function usesFirewallChain(sp: ServicePortInfo, pol: ServicePolicy): boolean {
  return pol.hasEndpoints && sp.loadBalancerIPs.length > 0 && sp.loadBalancerSourceRanges.length > 0;
}

/** The service port's rules in the shared chains: written on every sync, as kube-proxy rewrites KUBE-SERVICES whole. */
function renderEntry(sp: ServicePortInfo, pol: ServicePolicy): EntryRules {
  const out: EntryRules = { filterRules: [], natServiceRules: [], natNodePortRules: [] };
  const proto = sp.protocol;
  const spn = sp.spn;
  // Capture the clusterIP.
  if (pol.hasInternalEndpoints) {
    out.natServiceRules.push(
      rule('nat', 'KUBE-SERVICES').comment(`${spn} cluster IP`, true).m(proto).p(proto).d(sp.clusterIP).dport(sp.port).jump(pol.internalTrafficChain),
    );
  } else {
    out.filterRules.push(
      rule('filter', 'KUBE-SERVICES').comment(pol.internalFilterComment, true).m(proto).p(proto).d(sp.clusterIP).dport(sp.port).verdict(pol.internalFilterTarget!),
    );
  }

  // Capture load-balancer ingress (through KUBE-FW when loadBalancerSourceRanges restrict it).
  const usesFWChain = usesFirewallChain(sp, pol);
  const loadBalancerTrafficChain = usesFWChain ? pol.names.fw : pol.names.ext;
  for (const lbip of sp.loadBalancerIPs) {
    if (pol.hasEndpoints) {
      out.natServiceRules.push(rule('nat', 'KUBE-SERVICES').comment(`${spn} loadbalancer IP`, true).m(proto).p(proto).d(lbip).dport(sp.port).jump(loadBalancerTrafficChain));
    }
    if (usesFWChain) {
      out.filterRules.push(rule('filter', 'KUBE-PROXY-FIREWALL').comment(`${spn} traffic not accepted by ${pol.names.fw}`, true).m(proto).p(proto).d(lbip).dport(sp.port).verdict('DROP'));
    }
  }
  if (!pol.hasExternalEndpoints) {
    for (const lbip of sp.loadBalancerIPs) {
      out.filterRules.push(rule('filter', 'KUBE-EXTERNAL-SERVICES').comment(pol.externalFilterComment, true).m(proto).p(proto).d(lbip).dport(sp.port).verdict(pol.externalFilterTarget!));
    }
  }

  // Capture nodeports.
  if (sp.nodePort !== 0) {
    if (pol.hasEndpoints) {
      out.natNodePortRules.push(rule('nat', 'KUBE-NODEPORTS').comment(spn, false).m(proto).p(proto).dport(sp.nodePort).jump(pol.names.ext));
    }
    if (!pol.hasExternalEndpoints) {
      out.filterRules.push(
        rule('filter', 'KUBE-EXTERNAL-SERVICES')
          .comment(pol.externalFilterComment, true)
          .addrtype('dst')
          .m(proto)
          .p(proto)
          .dport(sp.nodePort)
          .verdict(pol.externalFilterTarget!),
      );
    }
  }
  return out;
}

/** The chains the service port owns: rendered only when a packet walks into them or a full text is asked for. */
function renderOwnChains<R extends { chain: string; owner?: unknown }>(
  sp: ServicePortInfo,
  pol: ServicePolicy,
  cfg: RenderConfig,
  rule: (table: 'nat', chain: string) => RuleWriter<R>,
): OwnChains<R> {
  const block: OwnChains<R> = { natChains: [], natRules: [] };
  const proto = sp.protocol;
  const spn = sp.spn;
  const { names, clusterEndpoints, localEndpoints, allReachableEndpoints, internalTrafficChain, externalPolicyChain } = pol;
  const clusterPolicyChain = names.svc;
  const localPolicyChain = names.svl;
  const externalTrafficChain = names.ext;

  // Internal traffic handling: masquerade off-cluster sources to the clusterIP.
  if (pol.hasInternalEndpoints && cfg.clusterCidr) {
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
  if (pol.usesExternalTrafficChain) {
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
    if (pol.hasExternalEndpoints) block.natRules.push(rule('nat', externalTrafficChain).jump(externalPolicyChain));
  }

  // The firewall chain: allowed sources go on to KUBE-EXT; what falls off the end is dropped by KUBE-PROXY-FIREWALL.
  if (usesFirewallChain(sp, pol)) {
    block.natChains.push(names.fw);
    const allowFromNode = sp.loadBalancerSourceRanges.some((r) => {
      const m = addrMatch(r);
      return ((ipToUint(cfg.nodeIP) & m.mask) >>> 0) === m.net;
    });
    for (const src of sp.loadBalancerSourceRanges) block.natRules.push(rule('nat', names.fw).comment(`${spn} loadbalancer IP`, true).s(src).jump(externalTrafficChain));
    // A request from the node to its own VIP loops back with the VIP as source.
    if (allowFromNode) for (const lbip of sp.loadBalancerIPs) block.natRules.push(rule('nat', names.fw).comment(`${spn} loadbalancer IP`, true).s(lbip).jump(externalTrafficChain));
    block.natRules.push(rule('nat', names.fw).comment(`other traffic to ${spn} will be dropped by KUBE-PROXY-FIREWALL`, true).noTarget());
  }

  // One name per endpoint: a hash costs a microsecond, and the jumps then share their target chain's very string.
  const sepNames = new Map<string, string>();
  const sepOf = (ep: EndpointInfo): string => {
    let sep = sepNames.get(ep.str);
    if (sep === undefined) sepNames.set(ep.str, (sep = endpointChain(spn, proto, ep.str)));
    return sep;
  };
  const writeServiceToEndpointRules = (svcChain: string, endpoints: EndpointInfo[]): void => {
    if (sp.affinity) {
      for (const ep of endpoints) {
        const b = rule('nat', svcChain);
        if (!cfg.largeClusterMode) b.comment(`${spn} -> ${ep.str}`, true);
        const sep = sepOf(ep);
        block.natRules.push(b.recentCheck(sep, sp.affinitySeconds).jump(sep));
      }
    }
    const n = endpoints.length;
    endpoints.forEach((ep, i) => {
      const b = rule('nat', svcChain);
      if (!cfg.largeClusterMode) b.comment(`${spn} -> ${ep.str}`, true);
      if (i < n - 1) b.statistic(probability(n - i));
      block.natRules.push(b.jump(sepOf(ep)));
    });
  };
  if (pol.usesClusterPolicyChain) {
    block.natChains.push(clusterPolicyChain);
    writeServiceToEndpointRules(clusterPolicyChain, clusterEndpoints);
  }
  if (pol.usesLocalPolicyChain) {
    block.natChains.push(localPolicyChain);
    writeServiceToEndpointRules(localPolicyChain, localEndpoints);
  }

  // Per-endpoint chains.
  for (const ep of allReachableEndpoints) {
    const sep = sepOf(ep);
    block.natChains.push(sep);
    const masq = rule('nat', sep);
    if (!cfg.largeClusterMode) masq.comment(spn, false);
    block.natRules.push(masq.s(ep.ip).jump('KUBE-MARK-MASQ'));
    const dnat = rule('nat', sep);
    if (!cfg.largeClusterMode) dnat.comment(spn, false);
    if (sp.affinity) dnat.recentSet(sep);
    const r = dnat.m(proto).p(proto).dnat(ep.ip, ep.port);
    r.owner = sp;
    block.natRules.push(r);
  }
  return block;
}

/**
 * One service port's share of the tables. The entry rules are built on every
 * change; the service's own chains are built when first needed (a packet
 * walks into them, or someone asks for the whole table) and kept until the
 * service changes, so a sync costs what changed, not what exists.
 */
class ServiceBlock {
  /** Replaced by the previous block's when their texts are equal, so the shared chains need no reload. */
  entry: EntryRules;
  private readonly pol: ServicePolicy;
  /** Own chains, kept while they are loaded in the walker. */
  own: OwnChains | undefined;
  /** Own chain names and their `iptables-save` texts (built on first full save). */
  private saved: { names: string[]; texts: string[] } | undefined;

  constructor(
    /** The latest service port object with this fingerprint (an equal one replaces it without new rules). */
    public sp: ServicePortInfo,
    private readonly cfg: RenderConfig,
  ) {
    this.pol = policyOf(sp);
    this.entry = renderEntry(sp, this.pol);
  }

  /**
   * What the rules depend on, computed only when a sync brings a different
   * service port object (unchanged services keep theirs): a sync from nothing
   * computes none, and no block keeps a rope of a fingerprint.
   */
  get fp(): string {
    return (this.fpCache ??= fingerprint(this.sp));
  }

  private fpCache: string | undefined;

  /** The chain names a shared chain can jump to (where a walk enters this service). */
  get entryChains(): ServiceChains {
    return this.pol.names;
  }

  /** The own chains (rendered now if not loaded; not kept). */
  chains(): OwnChains {
    return this.own ?? renderOwnChains(this.sp, this.pol, this.cfg, rule);
  }

  /** Own chains (declaration order) and the save text of each ('' for a chain without rules), for the table's `iptables-save`. */
  saveParts(): { names: string[]; texts: string[] } {
    if (!this.saved) {
      // Straight to text unless the rule objects exist anyway (loaded for packets).
      const own: OwnChains<SavedRule> = this.own
        ? { natChains: this.own.natChains, natRules: this.own.natRules.map((r) => ({ chain: r.chain, text: saveText(r) })) }
        : renderOwnChains(this.sp, this.pol, this.cfg, (_table, chain) => new SaveLineWriter(chain));
      // join: one flat string per chain (a += chain would keep every piece alive as a rope until the save is joined).
      // A dozen chains of a few rules each: a scan per chain costs less than a Map per service; a big service gets the Map.
      const rules = own.natRules;
      let texts: string[];
      if (own.natChains.length <= 32) {
        texts = own.natChains.map((c) => {
          const lines: string[] = [];
          for (const r of rules) if (r.chain === c) lines.push(r.text);
          return lines.join('\n');
        });
      } else {
        const by = new Map<string, string[]>();
        for (const r of rules) {
          const l = by.get(r.chain);
          if (l) l.push(r.text);
          else by.set(r.chain, [r.text]);
        }
        texts = own.natChains.map((c) => by.get(c)?.join('\n') ?? '');
      }
      this.saved = { names: own.natChains, texts };
    }
    return this.saved;
  }
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

/** New blocks in a sync above which the chain owners are rebuilt aside rather than updated in the swap. */
const OWNERS_ASIDE = 1000;

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
  /** KUBE-SVC/SVL/EXT chain → its service's block: where a walk leaving a shared chain loads the service's own chains. */
  private owners = new Map<string, ServiceBlock>();
  private largeClusterMode = false;
  private readonly models: ModelCache;
  /** Every block's entry rules, in the order the shared chains were last loaded with them. */
  private loadedEntries: EntryRules[] | undefined;
  private top: { natHead: Rule[]; natTail: Rule[]; filterHead: Rule[]; filterTail: Rule[]; jumps: { filter: Rule[]; nat: Rule[] } } | undefined;
  private tablesCache: { nat: TableData; filter: TableData } | undefined;
  /** `iptables-save -t nat` without stamps, built on first request after a change. */
  private natSaveCache: string | undefined;
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
    this.models = new ModelCache(opts.nodeName);
    this.walker = new RuleWalker(opts.rng, opts.clock);
    this.walker.onMissingChain = (table, chain) => table === 'nat' && this.load(chain);
    for (const a of [opts.nodeIP, ...(opts.localAddresses ?? [])]) this.local.add(ipv4ToInt(a));
    this.loopback = addrMatch(this.cfgBase.loopbackCidr);
    this.update([], []);
  }

  /** Rebuilds the rules from full Service/EndpointSlice lists; unchanged services keep their rules (a partial sync). */
  update(services: readonly KubeObject[], slices: readonly KubeObject[]): void {
    this.apply(this.models.build(services, slices));
  }

  /**
   * update() in steps of about `budgetMs` of work each (the iterator yields
   * between them), as kube-proxy has iptables-restore build the new table
   * while the kernel goes on with the old: until the last step nothing that
   * decide() or the views read changes, so a decision between steps comes
   * from the previous, complete rules; the last step swaps the new ones in at
   * once. Run one at a time, to its end.
   */
  *updateSteps(services: readonly KubeObject[], slices: readonly KubeObject[], budgetMs = 4): Generator<void, void, void> {
    let until = performance.now() + budgetMs;
    const pause = () => performance.now() >= until;
    const steps = this.models.steps(services, slices, pause);
    let model: ServicePortInfo[];
    for (;;) {
      const r = steps.next();
      if (r.done) {
        model = r.value;
        break;
      }
      yield;
      until = performance.now() + budgetMs;
    }
    const apply = this.applySteps(model, pause);
    while (!apply.next().done) {
      yield;
      until = performance.now() + budgetMs;
    }
  }

  /** Loads the own chains of the service `chain` belongs to into the walker; false if no service owns it. */
  private load(chain: string): boolean {
    const block = this.owners.get(chain);
    if (!block || block.own) return false;
    const own = block.chains();
    block.own = own;
    for (const [c, rules] of groupByChain(own.natRules)) this.walker.setChain('nat', c, rules);
    return true;
  }

  /** Takes a replaced or removed service's chains out of the walker. */
  private unload(block: ServiceBlock): void {
    const own = block.own;
    if (!own) return;
    for (const c of own.natChains) this.walker.setChain('nat', c, []);
    block.own = undefined;
  }

  private forget(block: ServiceBlock): void {
    this.unload(block);
    const names = block.entryChains;
    for (const c of [names.svc, names.svl, names.ext, names.fw]) if (this.owners.get(c) === block) this.owners.delete(c);
  }

  /** Renders from an already-built model: only services whose fingerprint changed get new rules. */
  apply(model: ServicePortInfo[]): void {
    runSteps(this.applySteps(model, () => false));
  }

  /**
   * apply() in steps: the new blocks are rendered aside (yielding when
   * `pause()` says so), and the last step alone changes the engine: blocks,
   * chain owners, the walker's chains.
   */
  private *applySteps(model: ServicePortInfo[], pause: () => boolean): Generator<void, void, void> {
    let total = 0;
    for (const sp of model) total += sp.endpoints.length;
    const large = total > LARGE_CLUSTER_ENDPOINTS_THRESHOLD;
    // Crossing the threshold changes every service's rules: none is reused.
    const prev = large !== this.largeClusterMode ? new Map<string, ServiceBlock>() : this.blocks;
    const cfg: RenderConfig = { ...this.cfgBase, largeClusterMode: large };
    const next = new Map<string, ServiceBlock>();
    /** New blocks, with the blocks they replace. */
    const fresh: { block: ServiceBlock; old: ServiceBlock | undefined }[] = [];
    /** Kept blocks, with the equal service port object they take. */
    const kept: { block: ServiceBlock; sp: ServicePortInfo }[] = [];
    for (let i = 0; i < model.length; i++) {
      if ((i & 31) === 31 && pause()) yield;
      const sp = model[i];
      const key = `${sp.spn}|${sp.protocol}`;
      const old = prev.get(key);
      let block: ServiceBlock;
      // The same service port object: nothing it depends on changed (ModelCache), no fingerprint to compare.
      if (!old || (old.sp !== sp && old.fp !== fingerprint(sp))) {
        block = new ServiceBlock(sp, cfg);
        // Most changes are endpoints: the service's own chains change, its KUBE-SERVICES/NODEPORTS/filter rules not.
        if (old && entryText(old.entry) === entryText(block.entry)) block.entry = old.entry;
        fresh.push({ block, old });
      } else {
        block = old;
        kept.push({ block, sp });
      }
      next.set(key, block);
    }
    this.top ??= this.topRules(cfg);
    // The chains every service writes into (KUBE-SERVICES, KUBE-NODEPORTS, filter) are reloaded whole, and only
    // when one of their rules changed: the same entry objects in the same order mean the same chains.
    const entries = [...next.values()].map((b) => b.entry);
    const loaded = this.loadedEntries;
    let commitNat: (() => void) | undefined;
    let commitFilter: (() => void) | undefined;
    if (!loaded || entries.length !== loaded.length || !entries.every((e, i) => e === loaded[i])) {
      const natShared: Rule[] = [...this.top.jumps.nat, ...this.top.natHead];
      const filterShared: Rule[] = [...this.top.jumps.filter, ...this.top.filterHead];
      for (const b of next.values()) {
        for (const r of b.entry.natServiceRules) natShared.push(r);
        for (const r of b.entry.natNodePortRules) natShared.push(r);
        for (const r of b.entry.filterRules) filterShared.push(r);
      }
      for (const r of this.top.natTail) natShared.push(r);
      for (const r of this.top.filterTail) filterShared.push(r);
      if (pause()) yield;
      commitNat = yield* this.walker.stageLoad('nat', natShared, pause);
      commitFilter = yield* this.walker.stageLoad('filter', filterShared, pause);
    }
    // Many new blocks (a full sync): the chain owners are built aside too, whole, rather than changed in the swap.
    let owners: Map<string, ServiceBlock> | undefined;
    if (fresh.length > OWNERS_ASIDE) {
      owners = new Map();
      let i = 0;
      for (const b of next.values()) {
        if ((++i & 255) === 0 && pause()) yield;
        const names = b.entryChains;
        for (const c of [names.svc, names.svl, names.ext, names.fw]) owners.set(c, b);
      }
    }
    // The swap, in one step: from here on decisions see the new rules.
    this.model = model;
    if (owners) {
      for (const [key, b] of this.blocks) if (next.get(key) !== b) this.unload(b);
      this.owners = owners;
    } else {
      if (large !== this.largeClusterMode) for (const b of this.blocks.values()) this.forget(b);
      for (const { block, old } of fresh) {
        if (old) this.forget(old);
        const names = block.entryChains;
        for (const c of [names.svc, names.svl, names.ext, names.fw]) this.owners.set(c, block);
      }
      for (const [key, b] of this.blocks) if (next.get(key) !== b) this.forget(b);
    }
    this.largeClusterMode = large;
    for (const { block, sp } of kept) block.sp = sp;
    this.blocks = next;
    this.tablesCache = undefined;
    this.natSaveCache = undefined;
    if (commitNat && commitFilter) {
      this.loadedEntries = entries;
      commitNat();
      commitFilter();
    }
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

  /** The filter table as kube-proxy wrote it (no per-service chains: built from the entry rules alone). */
  private filterTable(): TableData {
    const top = this.top!;
    const filter = emptyTable('filter');
    filter.chains.push('KUBE-SERVICES', 'KUBE-EXTERNAL-SERVICES', 'KUBE-FORWARD', 'KUBE-NODEPORTS', 'KUBE-PROXY-FIREWALL', 'KUBE-FIREWALL');
    append(filter.rules, top.filterHead);
    for (const block of this.blocks.values()) append(filter.rules, block.entry.filterRules);
    append(filter.rules, top.filterTail);
    filter.builtinRules = top.jumps.filter;
    filter.extraChains = ['KUBE-PROXY-CANARY'];
    return filter;
  }

  /** The tables as kube-proxy wrote them, as rule objects (built on demand after a sync: every service's chains). */
  private get tables(): { nat: TableData; filter: TableData } {
    if (this.tablesCache) return this.tablesCache;
    const top = this.top!;
    const nat = emptyTable('nat');
    nat.chains.push('KUBE-SERVICES', 'KUBE-NODEPORTS', 'KUBE-POSTROUTING', 'KUBE-MARK-MASQ');
    append(nat.rules, top.natHead);
    for (const block of this.blocks.values()) {
      const own = block.chains();
      append(nat.chains, own.natChains);
      // kube-proxy's per-service write order in the restore payload.
      append(nat.rules, block.entry.natServiceRules);
      append(nat.rules, block.entry.natNodePortRules);
      append(nat.rules, own.natRules);
    }
    append(nat.rules, top.natTail);
    nat.builtinRules = top.jumps.nat;
    nat.extraChains = ['KUBE-PROXY-CANARY'];
    this.tablesCache = { nat, filter: this.filterTable() };
    return this.tablesCache;
  }

  /**
   * `iptables-save -t nat` from per-service texts: the same text as
   * formatIptablesSave over {@link tables} (tests hold the two equal), but
   * each service's chains are formatted once per change of that service and
   * the table is joined only when asked for.
   */
  private natSave(): string {
    if (this.natSaveCache !== undefined) return this.natSaveCache;
    const top = this.top!;
    // The chains services share: every service's entry rules, in model order.
    const shared = new Map<string, string[]>();
    const add = (r: Rule): void => {
      let l = shared.get(r.chain);
      if (!l) shared.set(r.chain, (l = []));
      l.push(saveText(r));
    };
    for (const r of top.jumps.nat) add(r);
    for (const r of top.natHead) add(r);
    for (const block of this.blocks.values()) {
      for (const r of block.entry.natServiceRules) add(r);
      for (const r of block.entry.natNodePortRules) add(r);
    }
    for (const r of top.natTail) add(r);
    // Every user chain with its text, as parallel lists (no Set or Map of 100,000 names: hashing them costs more than sorting).
    const names: string[] = [];
    const texts: string[] = [];
    for (const c of ['KUBE-SERVICES', 'KUBE-NODEPORTS', 'KUBE-POSTROUTING', 'KUBE-MARK-MASQ', 'KUBE-PROXY-CANARY']) {
      names.push(c);
      texts.push(shared.get(c)?.join('\n') ?? '');
    }
    for (const block of this.blocks.values()) {
      const parts = block.saveParts();
      for (let i = 0; i < parts.names.length; i++) {
        names.push(parts.names[i]);
        texts.push(parts.texts[i]);
      }
    }
    const order = strcmpOrder(names);
    // One pass over the sorted names: the unique ones (declared) and their texts (a chain declared twice, which
    // iptables-save lists once, keeps the text of its first declaration, the one with rules).
    const declared: string[] = [];
    const body: string[] = [];
    for (const c of BUILTIN_CHAINS.nat) for (const t of shared.get(c) ?? []) body.push(t);
    let prev = '';
    for (const i of order) {
      if (names[i] === prev) continue;
      declared.push((prev = names[i]));
      if (texts[i]) body.push(texts[i]);
    }
    const head = ['*nat', ...BUILTIN_CHAINS.nat.map((c) => `:${c} ACCEPT [0:0]`)].join('\n');
    // The declarations joined straight from the names (no `:NAME - [0:0]` string per chain).
    const decl = declared.length ? `\n:${declared.join(' - [0:0]\n:')} - [0:0]` : '';
    this.natSaveCache = `${head}${decl}\n${body.length ? `${body.join('\n')}\n` : ''}COMMIT\n`;
    return this.natSaveCache;
  }

  /** `iptables-save -t nat|filter` on this node. */
  iptablesSave(table: TableName = 'nat', opts: SaveFormatOptions = {}): string {
    if (table === 'filter') return formatIptablesSave(this.filterTable(), opts);
    return stampSave(this.natSave(), opts);
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

  /**
   * The walker's view of local addresses for the decision being made: one object, its packet's fields set per
   * decision, rather than a closure made for every first packet (decide() is not re-entered).
   */
  private readonly env = {
    origDst: 0,
    localDst: false,
    proxier: this as IptablesProxier,
    isLocal(ip: number): boolean {
      return (ip === this.origDst && this.localDst) || this.proxier.isLocal(ip);
    },
  };

  decide(pkt: ServicePacket): Decision | null {
    const steps: string[] | null = pkt.trace === false ? null : [`${pkt.protocol} ${pkt.src}:${pkt.sport} > ${pkt.dst}:${pkt.dport} enters nat ${pkt.fromHost ? 'OUTPUT (from the node)' : `PREROUTING (${pkt.fromLocalPod ? 'from a local pod' : 'from the network'})`}`];
    const origDst = ipToUint(pkt.dst);
    const w: WalkPacket = { src: ipToUint(pkt.src), srcStr: pkt.src, dst: origDst, dstStr: pkt.dst, proto: pkt.protocol, sport: pkt.sport, dport: pkt.dport, mark: 0, ctDnat: false };
    const env = this.env;
    env.origDst = origDst;
    env.localDst = pkt.localDst;
    const v1 = this.walker.walk('nat', pkt.fromHost ? 'OUTPUT' : 'PREROUTING', w, env, steps);
    let dnat: Extract<WalkVerdict, { kind: 'dnat' }> | undefined;
    if (v1.kind === 'dnat') {
      dnat = v1;
      w.dst = v1.addr;
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
    const sp = dnat.rule.owner as ServicePortInfo | undefined;
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

const KEY_CHARS = 7;
/** Indices fit 17 bits of a sort key (131,072 chain names; more fall back to comparing keys in JavaScript). */
const INDEX_BITS = 17;
const INDEX_SPAN = 2 ** INDEX_BITS;

/**
 * Indices of `names` in strcmp order (libiptc keeps chains sorted so). The
 * names are ASCII. Each gets one number: the rank of its first 9 characters
 * among the names' distinct 9-character prefixes (a handful: `KUBE-SEP-`,
 * `KUBE-SVC-`, ...), its next 4 characters at 7 bits each, and its index;
 * a Float64Array of those sorts natively, without a JavaScript comparator
 * called 1.7 million times for 110,000 names. Names alike in their first 13
 * characters (a few hundred of kube-proxy's hashed names) are then put in
 * order among themselves by comparing strings. Many prefixes, many names or
 * non-ASCII names fall back to {@link strcmpOrderByKeys}.
 */
export function strcmpOrder(names: readonly string[]): number[] {
  const n = names.length;
  if (n >= INDEX_SPAN) return strcmpOrderByKeys(names);
  const code = (s: string, j: number): number => (j < s.length ? s.charCodeAt(j) : 0);
  // Prefix (first 7 characters as a number, then 2 more) of each name, and the distinct prefixes.
  const heads = new Float64Array(n);
  const tails = new Int32Array(n);
  const prefixes = new Map<number, Set<number>>();
  let distinct = 0;
  for (let i = 0; i < n; i++) {
    const s = names[i];
    let head = 0;
    for (let j = 0; j < KEY_CHARS; j++) {
      const c = code(s, j);
      if (c > 127) return strcmpOrderByKeys(names);
      head = head * 128 + c;
    }
    const tail = code(s, 7) * 128 + code(s, 8);
    heads[i] = head;
    tails[i] = tail;
    let set = prefixes.get(head);
    if (!set) prefixes.set(head, (set = new Set()));
    if (!set.has(tail)) {
      set.add(tail);
      if (++distinct > 64) return strcmpOrderByKeys(names);
    }
  }
  // Rank of each prefix in strcmp order.
  const ranks = new Map<number, Map<number, number>>();
  let rank = 0;
  for (const head of [...prefixes.keys()].sort((a, b) => a - b)) {
    const byTail = new Map<number, number>();
    for (const tail of [...prefixes.get(head)!].sort((a, b) => a - b)) byTail.set(tail, rank++);
    ranks.set(head, byTail);
  }
  const keys = new Float64Array(n);
  let lastHead = NaN;
  let lastRanks: Map<number, number> | undefined;
  for (let i = 0; i < n; i++) {
    const s = names[i];
    if (heads[i] !== lastHead) lastRanks = ranks.get((lastHead = heads[i]));
    let next = 0;
    for (let j = 9; j < 13; j++) {
      const c = code(s, j);
      if (c > 127) return strcmpOrderByKeys(names);
      next = next * 128 + c;
    }
    // rank (6 bits) · next 4 characters (28 bits) · index (17 bits): 51 bits, exact in a double.
    keys[i] = (lastRanks!.get(tails[i])! * 2 ** 28 + next) * INDEX_SPAN + i;
  }
  keys.sort();
  const order = new Array<number>(n);
  for (let i = 0; i < n; i++) order[i] = keys[i] % INDEX_SPAN;
  // Runs of names equal in their first 13 characters: by the whole string.
  for (let i = 0; i < n; ) {
    const group = Math.floor(keys[i] / INDEX_SPAN);
    let j = i + 1;
    while (j < n && Math.floor(keys[j] / INDEX_SPAN) === group) j++;
    if (j - i > 1) {
      const run = order.slice(i, j).sort((a, b) => (names[a] < names[b] ? -1 : names[a] > names[b] ? 1 : a - b));
      for (let k = 0; k < run.length; k++) order[i + k] = run[k];
    }
    i = j;
  }
  return order;
}

/**
 * strcmp order by comparing numbers: each ASCII name cut into 7-character
 * numeric keys (7 bits a character, 49 bits, exact in a double); names alike
 * in their first 28 characters, and non-ASCII names, by comparing strings.
 */
export function strcmpOrderByKeys(names: readonly string[]): number[] {
  const n = names.length;
  const keys = [new Float64Array(n), new Float64Array(n), new Float64Array(n), new Float64Array(n)];
  let ascii = true;
  for (let i = 0; i < n; i++) {
    const s = names[i];
    for (let k = 0; k < keys.length; k++) {
      let v = 0;
      for (let j = k * KEY_CHARS; j < (k + 1) * KEY_CHARS; j++) {
        const c = j < s.length ? s.charCodeAt(j) : 0;
        if (c > 127) ascii = false;
        v = v * 128 + c;
      }
      keys[k][i] = v;
    }
  }
  const [k0, k1, k2, k3] = keys;
  const order = Array.from({ length: n }, (_, i) => i);
  const byString = (a: number, b: number): number => (names[a] < names[b] ? -1 : names[a] > names[b] ? 1 : 0);
  if (!ascii) return order.sort(byString);
  return order.sort((a, b) => k0[a] - k0[b] || k1[a] - k1[b] || k2[a] - k2[b] || k3[a] - k3[b] || byString(a, b));
}

/** dst.push(...src) without the argument-count limit of spreading 100,000s of rules. */
function append<T>(dst: T[], src: readonly T[]): void {
  for (const x of src) dst.push(x);
}

function emptyTable(name: TableName): TableData {
  return { name, chains: [], rules: [], builtinRules: [], extraChains: [] };
}
