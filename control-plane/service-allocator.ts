/**
 * ClusterIP and NodePort allocation, as kube-apiserver's service REST storage
 * does it (pkg/registry/core/service/ipallocator, portallocator): admission on
 * Service create/update, so the response already carries `spec.clusterIP`
 * and every `nodePort`.
 *
 * - `--service-cluster-ip-range` (default 10.96.0.0/12): usable addresses are
 *   the range minus its network and broadcast address. The first one
 *   (10.96.0.1) is the `default/kubernetes` service's. Like k8s' bitmap
 *   allocator with "bands" (KEP-3070), dynamic allocation prefers the upper
 *   band and leaves the lowest min(max(16, size/16), 256) addresses for users
 *   who pick their own (kube-dns' conventional 10.96.0.10).
 * - `--service-node-port-range` (default 30000-32767), with the same lower
 *   band of min(max(16, size/32), 128) ports (KEP-3668).
 * - Where k8s draws the first candidate at random, podlab derives it from a
 *   hash of `namespace/name` (and the port index), then probes upward: the
 *   same Service gets the same address on every run, which reads better in a
 *   lesson and keeps runs reproducible.
 *
 * Allocations are not bookkept separately: the set of used addresses and
 * ports is read from the live Service objects at each admission, so they are
 * persisted with the Services (in the store) and freed by deleting the Service.
 * Errors are worded as kube-apiserver's (`spec.clusterIPs: Invalid value:
 * ["10.96.0.10"]: failed to allocate IP 10.96.0.10: provided IP is already
 * allocated`, `spec.ports[0].nodePort: Invalid value: 30080: provided port is
 * already allocated`).
 */
import { createHash } from 'node:crypto';
import { ApiError, internalError, invalid, makeStatus, type FieldError } from './errors.ts';
import { formatCidr, parseIpv4Cidr, ConfigError, type Ipv4Range } from './ipam.ts';
import { intToIpv4, ipv4ToInt } from '../packet/addr.ts';
import { isIpv4Address } from '../packet/ip-input.ts';
import { ENDPOINTSLICES, SERVICES, SERVICE_NAME_LABEL, type Service, type ServiceSpec } from './service-resources.ts';
import { resourceKeyOf } from './resources.ts';
import type { Store } from './store.ts';
import type { KubeObject } from './types.ts';

/** Default `--service-cluster-ip-range`. */
export const DEFAULT_SERVICE_CIDR = '10.96.0.0/12';
/** Default `--service-node-port-range`. */
export const DEFAULT_NODE_PORT_RANGE = '30000-32767';

/** Parsed service allocation flags. */
export interface ServiceAllocConfig {
  cidr: Ipv4Range;
  portLo: number;
  portHi: number;
}

/** Validates `--service-cluster-ip-range` and `--service-node-port-range`; throws ConfigError. */
export function parseServiceAllocConfig(cidr = DEFAULT_SERVICE_CIDR, ports = DEFAULT_NODE_PORT_RANGE): ServiceAllocConfig {
  const r = parseIpv4Cidr(cidr);
  if (!r) throw new ConfigError('--service-cluster-ip-range', `${JSON.stringify(cidr)} is not a valid IPv4 CIDR (e.g. 10.96.0.0/12)`);
  if (r.prefix > 28) throw new ConfigError('--service-cluster-ip-range', `/${r.prefix} is too small; use at most /28`);
  const m = /^(\d+)-(\d+)$/.exec(ports.trim());
  const lo = m ? Number(m[1]) : NaN;
  const hi = m ? Number(m[2]) : NaN;
  if (!m || lo < 1 || hi > 65535 || lo > hi) throw new ConfigError('--service-node-port-range', `${JSON.stringify(ports)} is not a port range like 30000-32767`);
  return { cidr: r, portLo: lo, portHi: hi };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** FNV-1a-ish 32-bit digest of a label (via SHA-256, first 4 bytes). */
function digest(label: string): number {
  return createHash('sha256').update(label).digest().readUInt32BE(0);
}

/** The allocator. Install it on a store with {@link ServiceAllocator.install}. */
export class ServiceAllocator {
  readonly config: ServiceAllocConfig;

  constructor(config: ServiceAllocConfig) {
    this.config = config;
  }

  /** The range as text. */
  cidr(): string {
    return formatCidr(this.config.cidr);
  }

  /** The first usable address (10.96.0.1): the kubernetes service's. */
  firstIP(): string {
    return intToIpv4(this.config.cidr.start + 1);
  }

  /** The `n`th usable address of the range (1-based, as `ipcalc` counts hosts). */
  nthIP(n: number): string {
    return intToIpv4(this.config.cidr.start + n);
  }

  private usedIPs(services: readonly KubeObject[], except?: KubeObject): Map<string, string> {
    const used = new Map<string, string>();
    for (const s of services) {
      if (except && s.metadata.uid === except.metadata.uid) continue;
      const ip = (s.spec as ServiceSpec | undefined)?.clusterIP;
      if (ip && ip !== 'None') used.set(ip, `${s.metadata.namespace}/${s.metadata.name}`);
    }
    return used;
  }

  private usedPorts(services: readonly KubeObject[], except?: KubeObject): Set<number> {
    const used = new Set<number>();
    for (const s of services) {
      if (except && s.metadata.uid === except.metadata.uid) continue;
      for (const p of (s.spec as ServiceSpec | undefined)?.ports ?? []) if (isRecord(p) && typeof p.nodePort === 'number' && p.nodePort) used.add(p.nodePort);
    }
    return used;
  }

  /** True if `ip` is a usable address of the range (not its network or broadcast address). */
  inRange(ip: string): boolean {
    if (!isIpv4Address(ip)) return false;
    const n = ipv4ToInt(ip);
    const { start, size } = this.config.cidr;
    return n > start && n < start + size - 1;
  }

  /** Picks a free ClusterIP for `label`: upper band first, then the lower band; null when full. */
  allocateIP(label: string, used: ReadonlySet<string> | ReadonlyMap<string, string>): string | null {
    const usable = this.config.cidr.size - 2;
    const lower = Math.min(Math.max(16, Math.floor(usable / 16)), 256);
    const bands: [number, number][] = usable > lower ? [[lower, usable], [0, lower]] : [[0, usable]];
    for (const [lo, hi] of bands) {
      const n = hi - lo;
      const first = digest(`clusterip\0${label}`) % n;
      for (let k = 0; k < n; k++) {
        const ip = intToIpv4(this.config.cidr.start + 1 + lo + ((first + k) % n));
        if (!used.has(ip)) return ip;
      }
    }
    return null;
  }

  /** Picks a free NodePort for `label`: upper band first; null when full. */
  allocatePort(label: string, used: ReadonlySet<number>): number | null {
    const { portLo, portHi } = this.config;
    const size = portHi - portLo + 1;
    const lower = Math.min(Math.max(16, Math.floor(size / 32)), 128);
    const bands: [number, number][] = size > lower ? [[lower, size], [0, lower]] : [[0, size]];
    for (const [lo, hi] of bands) {
      const n = hi - lo;
      const first = digest(`nodeport\0${label}`) % n;
      for (let k = 0; k < n; k++) {
        const port = portLo + lo + ((first + k) % n);
        if (!used.has(port)) return port;
      }
    }
    return null;
  }

  /** Wires allocation into the store as admission on Service create and update. */
  install(store: Store): void {
    store.addAdmission((ctx) => {
      if (resourceKeyOf(ctx.rt) !== resourceKeyOf(SERVICES) || ctx.subresource === 'status') return;
      this.admit(ctx.obj as Service, ctx.old, store.objectsOf(SERVICES));
    });
  }

  /** Allocates / checks the clusterIP and nodePorts of `svc` (mutating it) against the other services. */
  admit(svc: Service, old: KubeObject | undefined, services: readonly KubeObject[]): void {
    const spec = svc.spec as ServiceSpec;
    const name = svc.metadata.name;
    const label = `${svc.metadata.namespace}/${name}`;
    const errs: FieldError[] = [];
    const oldIP = (old?.spec as ServiceSpec | undefined)?.clusterIP;
    if (spec.clusterIP !== 'None' && !(old && oldIP && oldIP === spec.clusterIP)) {
      const used = this.usedIPs(services, old ?? svc);
      if (spec.clusterIP) {
        const ip = spec.clusterIP;
        if (!this.inRange(ip)) {
          errs.push({ field: 'spec.clusterIPs', type: 'FieldValueInvalid', value: [ip], detail: `failed to allocate IP ${ip}: provided IP is not in the valid range. The range of valid IPs is ${this.cidr()}` });
        } else if (used.has(ip)) {
          errs.push({ field: 'spec.clusterIPs', type: 'FieldValueInvalid', value: [ip], detail: `failed to allocate IP ${ip}: provided IP is already allocated` });
        }
      } else {
        const ip = this.allocateIP(label, used);
        if (!ip) throw internalError(`failed to allocate a serviceIP: range is full`);
        spec.clusterIP = ip;
      }
      if (spec.clusterIP) spec.clusterIPs = [spec.clusterIP];
    }
    const wantsNodePorts = spec.type === 'NodePort' || (spec.type === 'LoadBalancer' && spec.allocateLoadBalancerNodePorts !== false);
    if (wantsNodePorts && Array.isArray(spec.ports)) {
      const used = this.usedPorts(services, old ?? svc);
      const mine = new Set<number>();
      spec.ports.forEach((p, i) => {
        if (!isRecord(p) || !p.nodePort) return;
        const np = p.nodePort;
        if (np < this.config.portLo || np > this.config.portHi) {
          errs.push({ field: `spec.ports[${i}].nodePort`, type: 'FieldValueInvalid', value: np, detail: `provided port is not in the valid range. The range of valid ports is ${this.config.portLo}-${this.config.portHi}` });
        } else if (used.has(np)) {
          errs.push({ field: `spec.ports[${i}].nodePort`, type: 'FieldValueInvalid', value: np, detail: 'provided port is already allocated' });
        }
        mine.add(np);
      });
      spec.ports.forEach((p, i) => {
        if (!isRecord(p) || p.nodePort) return;
        // Same port number with another protocol in this service: share the node port, as k8s does for DNS-like services.
        const twin = spec.ports!.find((q) => q !== p && q.port === p.port && q.nodePort);
        if (twin) {
          p.nodePort = twin.nodePort;
          return;
        }
        const np = this.allocatePort(`${label}\0${i}`, new Set([...used, ...mine]));
        if (np === null) throw new ApiError(makeStatus(500, 'InternalError', `Internal error occurred: failed to allocate a nodePort: range is full`));
        p.nodePort = np;
        mine.add(np);
      });
    } else if (Array.isArray(spec.ports)) {
      // A LoadBalancer without allocated NodePorts may still name its own (checked like any other).
      for (const p of spec.ports) if (isRecord(p) && p.nodePort === 0) delete p.nodePort;
    }
    if (errs.length) throw invalid('Service', name, errs);
  }
}

/**
 * Creates (or repairs) `default/kubernetes`: the first ClusterIP, port 443
 * named https to the apiserver's own address, with its EndpointSlice named
 * `kubernetes`, as kube-apiserver's endpoint reconciler keeps them.
 */
export function ensureKubernetesService(store: Store, serviceCidr: string | undefined, host: string, port: number): void {
  const clusterIP = new ServiceAllocator(parseServiceAllocConfig(serviceCidr)).firstIP();
  const spec: ServiceSpec = {
    type: 'ClusterIP',
    clusterIP,
    ports: [{ name: 'https', protocol: 'TCP', port: 443, targetPort: port }],
    sessionAffinity: 'None',
  };
  const existing = store.tryGet<Service>(SERVICES, 'kubernetes', 'default');
  if (!existing) {
    store.create(SERVICES, { metadata: { name: 'kubernetes', namespace: 'default', labels: { component: 'apiserver', provider: 'kubernetes' } }, spec });
  } else if (JSON.stringify(existing.spec?.ports) !== JSON.stringify(spec.ports)) {
    store.mutate<Service>(SERVICES, 'kubernetes', 'default', (d) => {
      (d.spec as ServiceSpec).ports = spec.ports;
    });
  }
  const slice = {
    metadata: { name: 'kubernetes', namespace: 'default', labels: { [SERVICE_NAME_LABEL]: 'kubernetes' } },
    addressType: 'IPv4',
    endpoints: [{ addresses: [host], conditions: { ready: true } }],
    ports: [{ name: 'https', port, protocol: 'TCP' }],
  };
  const have = store.tryGet(ENDPOINTSLICES, 'kubernetes', 'default') as Record<string, unknown> | undefined;
  if (!have) store.create(ENDPOINTSLICES, slice);
  else if (JSON.stringify(have.endpoints) !== JSON.stringify(slice.endpoints) || JSON.stringify(have.ports) !== JSON.stringify(slice.ports)) {
    store.mutate(ENDPOINTSLICES, 'kubernetes', 'default', (d) => {
      Object.assign(d, { endpoints: slice.endpoints, ports: slice.ports });
    });
  }
}
