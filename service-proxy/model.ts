/**
 * kube-proxy's view of the cluster, for one node: what its ServiceChangeTracker
 * and EndpointSliceCache build from the Service and EndpointSlice informers
 * (pkg/proxy/servicechangetracker.go, endpointslicecache.go) and how
 * CategorizeEndpoints (pkg/proxy/topology.go) splits endpoints into the
 * cluster / local sets that the traffic policies use.
 *
 * Every mode (iptables, ipvs, userspace) renders from this model, so the
 * three agree on which endpoints exist; they differ only in how they pick.
 */
import { hash } from 'node:crypto';
import { runSteps } from '../common/run-steps.ts';
import { isValidIpv4 } from '../packet/addr.ts';
import type { KubeObject } from '../control-plane/types.ts';
import type { L4Protocol } from './types.ts';

/** Default `sessionAffinityConfig.clientIP.timeoutSeconds` (3 hours), as the apiserver defaults it. */
export const DEFAULT_AFFINITY_SECONDS = 10800;

/** One endpoint of one service port (kube-proxy's BaseEndpointInfo). */
export interface EndpointInfo {
  ip: string;
  port: number;
  /** `ip:port`, kube-proxy's Endpoint.String() and the SEP hash input. */
  str: string;
  nodeName?: string;
  /** On this node. */
  isLocal: boolean;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
}

/** One port of one Service (kube-proxy's ServicePort). */
export interface ServicePortInfo {
  /** `ns/name`. */
  service: string;
  namespace: string;
  name: string;
  /** Port name ('' when unnamed). */
  portName: string;
  /** ServicePortName.String(): `ns/name` + `:port` when named. */
  spn: string;
  protocol: L4Protocol;
  clusterIP: string;
  port: number;
  /** 0 when the service has no NodePort. */
  nodePort: number;
  affinity: boolean;
  affinitySeconds: number;
  externalPolicyLocal: boolean;
  internalPolicyLocal: boolean;
  /** status.loadBalancer.ingress IPs of a LoadBalancer Service (svcInfo.LoadBalancerVIPStrings). */
  loadBalancerIPs: string[];
  /** spec.loadBalancerSourceRanges (a KUBE-FW chain when set). */
  loadBalancerSourceRanges: string[];
  /** Every endpoint known for this port, sorted by `ip:port` as kube-proxy's cache does. */
  endpoints: EndpointInfo[];
}

/** Output of {@link categorizeEndpoints}. */
export interface CategorizedEndpoints {
  clusterEndpoints: EndpointInfo[];
  localEndpoints: EndpointInfo[];
  allReachableEndpoints: EndpointInfo[];
  hasAnyEndpoints: boolean;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** ServicePortName.String(): `ns/name` or `ns/name:port`. */
export function servicePortName(namespace: string, name: string, portName: string): string {
  return portName ? `${namespace}/${name}:${portName}` : `${namespace}/${name}`;
}

/** kube-proxy's portProtoHash: base32(SHA-256(servicePortName + protocol))[:16]. */
export function portProtoHash(spn: string, protocol: string): string {
  return hash16(spn + protocol);
}

/** The KUBE-SEP hash: base32(SHA-256(servicePortName + protocol + "ip:port"))[:16]. */
export function endpointHash(spn: string, protocol: string, endpoint: string): string {
  return hash16(spn + protocol + endpoint);
}

/** `prefix` + {@link endpointHash}, as one flat string (see {@link hash16}). */
export function endpointHashed(prefix: string, spn: string, protocol: string, endpoint: string): string {
  return hash16(spn + protocol + endpoint, prefix);
}

/** Character code → value of a base64 digit. */
const B64_VALUE = new Uint8Array(128);
[...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'].forEach((c, i) => (B64_VALUE[c.charCodeAt(0)] = i));

/**
 * base32(SHA-256(text))[:16], the first 80 bits of the digest. A full sync
 * names ~110,000 chains at 10,000 Services: the one-shot crypto.hash with a
 * base64 result (no Hash object, no Buffer) re-cut from 6-bit into 5-bit
 * groups costs a fraction of createHash().update().digest() + base32.
 */
function hash16(text: string, prefix = ''): string {
  const b64 = hash('sha256', text, 'base64');
  // Character codes gathered and made into one flat string: `out +=` per digit would leave a rope of 16 pieces
  // (and `prefix + hash` another), which the chain-name sort and the save's joins would each flatten again.
  const codes = HASH_CODES;
  codes.length = 0;
  for (let i = 0; i < prefix.length; i++) codes.push(prefix.charCodeAt(i));
  let value = 0;
  let bits = 0;
  let n = 0;
  for (let i = 0; n < 16; i++) {
    value = ((value << 6) | B64_VALUE[b64.charCodeAt(i)]) & 0xfff;
    bits += 6;
    while (bits >= 5 && n < 16) {
      bits -= 5;
      codes.push(B32_CODES[(value >>> bits) & 31]);
      n++;
    }
  }
  return String.fromCharCode.apply(null, codes);
}

const HASH_CODES: number[] = [];

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
const B32_CODES = Uint8Array.from(B32, (c) => c.charCodeAt(0));

/** RFC 4648 base32 (Go's base32.StdEncoding), enough of it for 16-character prefixes. */
export function base32(buf: Uint8Array): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of buf) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += B32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= (1 << bits) - 1;
  }
  if (bits > 0) out += B32[(value << (5 - bits)) & 31];
  while (out.length % 8 !== 0) out += '=';
  return out;
}

/** The clusterIP kube-proxy uses, or undefined for headless / unset / non-IPv4. */
function clusterIPOf(spec: Record<string, unknown>): string | undefined {
  const ips = Array.isArray(spec.clusterIPs) ? spec.clusterIPs : [];
  const ip = typeof ips[0] === 'string' ? ips[0] : typeof spec.clusterIP === 'string' ? spec.clusterIP : '';
  return ip && ip !== 'None' && isValidIpv4(ip) ? ip : undefined;
}

interface SliceEndpoints {
  /** spn|protocol → endpoints (deduplicated by ip:port). */
  byPort: Map<string, Map<string, EndpointInfo>>;
}

/**
 * Builds the per-service-port model from full Service and EndpointSlice lists.
 * Non-IPv4 slices, headless services and ports other than TCP/UDP are skipped,
 * as an IPv4 kube-proxy does (SCTP is out of podlab's scope).
 */
export function buildModel(services: readonly KubeObject[], slices: readonly KubeObject[], nodeName: string): ServicePortInfo[] {
  // EndpointSliceCache: group slices by the service they belong to.
  const bySvc = new Map<string, SliceEndpoints>();
  for (const slice of slices) {
    const s = slice as unknown as Record<string, unknown>;
    if (s.addressType !== 'IPv4') continue;
    const svcName = slice.metadata.labels?.['kubernetes.io/service-name'];
    const ns = slice.metadata.namespace ?? 'default';
    if (!svcName) continue;
    const key = `${ns}/${svcName}`;
    let entry = bySvc.get(key);
    if (!entry) bySvc.set(key, (entry = { byPort: new Map() }));
    const ports = Array.isArray(s.ports) ? s.ports : [];
    const endpoints = Array.isArray(s.endpoints) ? s.endpoints : [];
    for (const p of ports) {
      if (!isRecord(p) || typeof p.port !== 'number') continue;
      const portName = typeof p.name === 'string' ? p.name : '';
      const protocol = (typeof p.protocol === 'string' ? p.protocol : 'TCP').toLowerCase();
      const pk = `${servicePortName(ns, svcName, portName)}|${protocol}`;
      let m = entry.byPort.get(pk);
      if (!m) entry.byPort.set(pk, (m = new Map<string, EndpointInfo>()));
      for (const ep of endpoints) {
        if (!isRecord(ep) || !Array.isArray(ep.addresses) || typeof ep.addresses[0] !== 'string') continue;
        const ip = ep.addresses[0];
        if (!isValidIpv4(ip)) continue;
        const cond = isRecord(ep.conditions) ? ep.conditions : {};
        // Nil conditions mean "unknown" and are read as ready, as in discovery/v1.
        const ready = cond.ready !== false;
        const serving = typeof cond.serving === 'boolean' ? cond.serving : ready;
        const terminating = cond.terminating === true;
        const node = typeof ep.nodeName === 'string' ? ep.nodeName : undefined;
        const str = `${ip}:${p.port}`;
        if (m.has(str)) continue; // the same endpoint in two slices: first one wins
        m.set(str, { ip, port: p.port, str, nodeName: node, isLocal: node !== undefined && node === nodeName, ready, serving, terminating });
      }
    }
  }
  const out: ServicePortInfo[] = [];
  for (const svc of services) {
    if (!isRecord(svc.spec)) continue;
    const spec = svc.spec;
    const clusterIP = clusterIPOf(spec);
    if (!clusterIP) continue;
    const ns = svc.metadata.namespace ?? 'default';
    const name = svc.metadata.name;
    const affinity = spec.sessionAffinity === 'ClientIP';
    const cfg = isRecord(spec.sessionAffinityConfig) && isRecord(spec.sessionAffinityConfig.clientIP) ? spec.sessionAffinityConfig.clientIP : {};
    const affinitySeconds = typeof cfg.timeoutSeconds === 'number' ? cfg.timeoutSeconds : DEFAULT_AFFINITY_SECONDS;
    const type = typeof spec.type === 'string' ? spec.type : 'ClusterIP';
    const slicesOf = bySvc.get(`${ns}/${name}`);
    const ingress = type === 'LoadBalancer' && isRecord(svc.status) && isRecord(svc.status.loadBalancer) && Array.isArray(svc.status.loadBalancer.ingress) ? svc.status.loadBalancer.ingress : [];
    const loadBalancerIPs = ingress.flatMap((i: unknown) => (isRecord(i) && typeof i.ip === 'string' && isValidIpv4(i.ip) ? [i.ip] : []));
    const ranges = type === 'LoadBalancer' && Array.isArray(spec.loadBalancerSourceRanges) ? spec.loadBalancerSourceRanges : [];
    const loadBalancerSourceRanges = ranges.flatMap((r: unknown) => (typeof r === 'string' && r.trim() !== '' ? [r.trim()] : []));
    for (const p of Array.isArray(spec.ports) ? spec.ports : []) {
      if (!isRecord(p) || typeof p.port !== 'number') continue;
      const protocol = (typeof p.protocol === 'string' ? p.protocol : 'TCP').toLowerCase();
      if (protocol !== 'tcp' && protocol !== 'udp') continue;
      const portName = typeof p.name === 'string' ? p.name : '';
      const spn = servicePortName(ns, name, portName);
      const eps = [...(slicesOf?.byPort.get(`${spn}|${protocol}`)?.values() ?? [])];
      eps.sort((a, b) => (a.str < b.str ? -1 : a.str > b.str ? 1 : 0));
      out.push({
        service: `${ns}/${name}`,
        namespace: ns,
        name,
        portName,
        spn,
        protocol,
        clusterIP,
        port: p.port,
        nodePort: (type === 'NodePort' || type === 'LoadBalancer') && typeof p.nodePort === 'number' ? p.nodePort : 0,
        affinity,
        affinitySeconds,
        externalPolicyLocal: spec.externalTrafficPolicy === 'Local' && (type === 'NodePort' || type === 'LoadBalancer'),
        internalPolicyLocal: spec.internalTrafficPolicy === 'Local',
        loadBalancerIPs,
        loadBalancerSourceRanges,
        endpoints: eps,
      });
    }
  }
  // kube-proxy walks a Go map (random order); podlab sorts so output is stable.
  out.sort((a, b) => (a.spn < b.spn ? -1 : a.spn > b.spn ? 1 : a.protocol < b.protocol ? -1 : a.protocol > b.protocol ? 1 : 0));
  return out;
}

/** ServicePort.ExternallyAccessible(): a NodePort or a LoadBalancer address (podlab has no externalIPs). */
export function externallyAccessible(sp: ServicePortInfo): boolean {
  return sp.nodePort !== 0 || sp.loadBalancerIPs.length > 0;
}

/** ServicePort.UsesClusterEndpoints(). */
export function usesClusterEndpoints(sp: ServicePortInfo): boolean {
  return !sp.internalPolicyLocal || (externallyAccessible(sp) && !sp.externalPolicyLocal);
}

/** ServicePort.UsesLocalEndpoints(). */
export function usesLocalEndpoints(sp: ServicePortInfo): boolean {
  return sp.internalPolicyLocal || (externallyAccessible(sp) && sp.externalPolicyLocal);
}

/**
 * pkg/proxy/topology.go CategorizeEndpoints without topology hints: ready
 * endpoints, falling back to serving-and-terminating ones when none is ready
 * (ProxyTerminatingEndpoints, GA in 1.28), split into cluster and local sets.
 */
export function categorizeEndpoints(sp: ServicePortInfo): CategorizedEndpoints {
  const endpoints = sp.endpoints;
  let clusterEndpoints: EndpointInfo[] = [];
  let localEndpoints: EndpointInfo[] = [];
  let hasAnyEndpoints = false;
  if (usesClusterEndpoints(sp)) {
    clusterEndpoints = endpoints.filter((ep) => ep.ready);
    if (clusterEndpoints.length === 0) clusterEndpoints = endpoints.filter((ep) => ep.serving && ep.terminating);
    if (clusterEndpoints.length > 0) hasAnyEndpoints = true;
  }
  if (!usesLocalEndpoints(sp)) return { clusterEndpoints, localEndpoints, allReachableEndpoints: clusterEndpoints, hasAnyEndpoints };
  let hasLocalReady = false;
  let hasLocalServingTerminating = false;
  for (const ep of endpoints) {
    if (ep.ready) {
      hasAnyEndpoints = true;
      if (ep.isLocal) hasLocalReady = true;
    } else if (ep.serving && ep.terminating) {
      hasAnyEndpoints = true;
      if (ep.isLocal) hasLocalServingTerminating = true;
    }
  }
  let useServingTerminating = false;
  if (hasLocalReady) localEndpoints = endpoints.filter((ep) => ep.isLocal && ep.ready);
  else if (hasLocalServingTerminating) {
    useServingTerminating = true;
    localEndpoints = endpoints.filter((ep) => ep.isLocal && ep.serving && ep.terminating);
  }
  if (!usesClusterEndpoints(sp)) return { clusterEndpoints, localEndpoints, allReachableEndpoints: localEndpoints, hasAnyEndpoints };
  if (!useServingTerminating) return { clusterEndpoints, localEndpoints, allReachableEndpoints: clusterEndpoints, hasAnyEndpoints };
  const merged = new Map<string, EndpointInfo>();
  for (const ep of clusterEndpoints) merged.set(ep.str, ep);
  for (const ep of localEndpoints) merged.set(ep.str, ep);
  const allReachableEndpoints = [...merged.values()].sort((a, b) => (a.str < b.str ? -1 : 1));
  return { clusterEndpoints, localEndpoints, allReachableEndpoints, hasAnyEndpoints };
}

/**
 * buildModel for a stream of full lists, as kube-proxy's ServiceChangeTracker
 * and EndpointsChangeTracker spare it a rebuild: a Service whose object and
 * EndpointSlice objects are the very ones of the last build (informer caches
 * hand unchanged objects back as they were; a watch event replaces an object,
 * never edits it) keeps its service ports, the same objects, so an engine sees
 * them unchanged without comparing their contents. A sync then costs a pass
 * that groups the slices, plus what changed.
 */
export class ModelCache {
  private last = new Map<string, { svc: KubeObject; slices: KubeObject[]; ports: ServicePortInfo[] }>();

  constructor(private readonly nodeName: string) {}

  build(services: readonly KubeObject[], slices: readonly KubeObject[]): ServicePortInfo[] {
    return runSteps(this.steps(services, slices, () => false));
  }

  /**
   * build() in steps: it yields whenever `pause()` says so (checked every 64
   * services), and its cache changes only at the end, so an unfinished build
   * leaves nothing behind.
   */
  *steps(services: readonly KubeObject[], slices: readonly KubeObject[], pause: () => boolean): Generator<void, ServicePortInfo[], void> {
    const bySvc = new Map<string, KubeObject[]>();
    for (let i = 0; i < slices.length; i++) {
      const slice = slices[i];
      if ((i & 1023) === 1023 && pause()) yield;
      const svcName = slice.metadata.labels?.['kubernetes.io/service-name'];
      if (!svcName) continue;
      const key = `${slice.metadata.namespace ?? 'default'}/${svcName}`;
      const l = bySvc.get(key);
      if (l) l.push(slice);
      else bySvc.set(key, [slice]);
    }
    const next = new Map<string, { svc: KubeObject; slices: KubeObject[]; ports: ServicePortInfo[] }>();
    const out: ServicePortInfo[] = [];
    for (let i = 0; i < services.length; i++) {
      const svc = services[i];
      if ((i & 63) === 63 && pause()) yield;
      const key = `${svc.metadata.namespace ?? 'default'}/${svc.metadata.name}`;
      const mine = bySvc.get(key) ?? [];
      const was = this.last.get(key);
      const ports = was && was.svc === svc && sameObjects(was.slices, mine) ? was.ports : buildModel([svc], mine, this.nodeName);
      next.set(key, { svc, slices: mine, ports });
      for (const sp of ports) out.push(sp);
    }
    this.last = next;
    return out;
  }
}

function sameObjects(a: readonly KubeObject[], b: readonly KubeObject[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** A cheap fingerprint of everything a service port's rules depend on (for partial syncs). */
export function fingerprint(sp: ServicePortInfo): string {
  let s = `${sp.spn}|${sp.protocol}|${sp.clusterIP}|${sp.port}|${sp.nodePort}|${sp.loadBalancerIPs.join(',')}|${sp.loadBalancerSourceRanges.join(',')}|${sp.affinity ? sp.affinitySeconds : 0}|${sp.externalPolicyLocal ? 1 : 0}${sp.internalPolicyLocal ? 1 : 0}`;
  for (const ep of sp.endpoints) s += `|${ep.str}${ep.isLocal ? 'L' : ''}${ep.ready ? 'r' : ''}${ep.serving ? 's' : ''}${ep.terminating ? 't' : ''}`;
  return s;
}
