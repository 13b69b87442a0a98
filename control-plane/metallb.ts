/**
 * MetalLB's configuration kinds (metallb.io/v1beta1), served so a lab is
 * configured the way MetalLB is (`podlab apply -f`, kubectl):
 *
 * - IPAddressPool: `spec.addresses` (CIDRs or `first-last` ranges),
 *   `spec.autoAssign` (default true), `spec.avoidBuggyIPs` (skip .0/.255),
 *   `spec.serviceAllocation.priority` (lower first, then by name);
 * - L2Advertisement: `spec.ipAddressPools` (none: every pool),
 *   `spec.nodeSelectors` (matchLabels only);
 * - BGPAdvertisement: the same selection plus `spec.localPref`,
 *   `spec.communities` (`65000:100`, large `large:65000:1:2`),
 *   `spec.aggregationLength` (32).
 *
 * All three are namespaced (MetalLB reads them in `metallb-system`); podlab
 * reads them in every namespace.
 */
import type { FieldError } from './errors.ts';
import type { ResourceType } from './resources.ts';
import type { KubeObject } from './types.ts';
import { intToIpv4, ipv4ToInt } from '../packet/addr.ts';
import { isIpv4Address, parseIpv4CidrInput } from '../packet/ip-input.ts';

/** The namespace MetalLB's manifests install into (and podlab's default pool lives in). */
export const METALLB_NAMESPACE = 'metallb-system';
/** Annotations MetalLB reads on a Service: requested addresses and pool (old and new spellings). */
export const LB_IPS_ANNOTATIONS = ['metallb.io/loadBalancerIPs', 'metallb.universe.tf/loadBalancerIPs'] as const;
export const ADDRESS_POOL_ANNOTATIONS = ['metallb.io/address-pool', 'metallb.universe.tf/address-pool'] as const;

export interface IpAddressPoolSpec {
  addresses: string[];
  autoAssign?: boolean;
  avoidBuggyIPs?: boolean;
  serviceAllocation?: { priority?: number; namespaces?: string[] };
}

export interface AdvertisementSpec {
  ipAddressPools?: string[];
  nodeSelectors?: { matchLabels?: Record<string, string> }[];
  /** BGPAdvertisement only. */
  localPref?: number;
  communities?: string[];
  aggregationLength?: number;
}

export type IpAddressPool = KubeObject<IpAddressPoolSpec, never>;
export type Advertisement = KubeObject<AdvertisementSpec, never>;

/** One contiguous block of a pool, as integers (inclusive). */
export interface AddressRange {
  first: number;
  last: number;
}

/** Parses one `spec.addresses` entry: a CIDR (`127.0.0.200/29`) or a range (`10.0.0.1-10.0.0.9`). Null when malformed. */
export function parsePoolAddresses(entry: string): AddressRange | null {
  const m = /^\s*([\d.]+)\s*-\s*([\d.]+)\s*$/.exec(entry);
  if (m) {
    if (!isIpv4Address(m[1]) || !isIpv4Address(m[2])) return null;
    const first = ipv4ToInt(m[1]);
    const last = ipv4ToInt(m[2]);
    return first <= last ? { first, last } : null;
  }
  const c = parseIpv4CidrInput(entry);
  if (!c) return null;
  return { first: c.network, last: c.network + c.size - 1 };
}

/** The pool's addresses in order, skipping .0 and .255 when `avoidBuggyIPs` (as MetalLB does). */
export function* poolAddresses(spec: IpAddressPoolSpec): Generator<string> {
  for (const entry of spec.addresses ?? []) {
    const r = parsePoolAddresses(entry);
    if (!r) continue;
    for (let n = r.first; n <= r.last; n++) {
      const last = n & 0xff;
      if (spec.avoidBuggyIPs && (last === 0 || last === 255)) continue;
      yield intToIpv4(n);
    }
  }
}

/** True when `ip` is one of the pool's addresses. */
export function poolContains(spec: IpAddressPoolSpec, ip: string): boolean {
  if (!isIpv4Address(ip)) return false;
  const n = ipv4ToInt(ip);
  const last = n & 0xff;
  if (spec.avoidBuggyIPs && (last === 0 || last === 255)) return false;
  return (spec.addresses ?? []).some((e) => {
    const r = parsePoolAddresses(e);
    return !!r && n >= r.first && n <= r.last;
  });
}

/** True when an advertisement selects the pool (no pool list and no selector: every pool). */
export function advertisesPool(adv: AdvertisementSpec | undefined, pool: string): boolean {
  const pools = adv?.ipAddressPools;
  return !pools || pools.length === 0 || pools.includes(pool);
}

/** True when an advertisement's nodeSelectors admit a node with these labels (none: every node). */
export function advertisesFromNode(adv: AdvertisementSpec | undefined, labels: Record<string, string>): boolean {
  const sels = adv?.nodeSelectors;
  if (!sels || sels.length === 0) return true;
  return sels.some((s) => Object.entries(s.matchLabels ?? {}).every(([k, v]) => labels[k] === v));
}

const rec = (v: unknown): Record<string, unknown> => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {});
const strList = (v: unknown) => Array.isArray(v) && v.every((s) => typeof s === 'string');

function validatePool(obj: KubeObject): FieldError[] {
  const spec = rec(obj.spec);
  const errs: FieldError[] = [];
  if (!Array.isArray(spec.addresses) || spec.addresses.length === 0) errs.push({ field: 'spec.addresses', type: 'FieldValueRequired' });
  else
    spec.addresses.forEach((a: unknown, i) => {
      if (typeof a !== 'string' || !parsePoolAddresses(a)) {
        errs.push({ field: `spec.addresses[${i}]`, type: 'FieldValueInvalid', value: a, detail: 'must be an IPv4 CIDR (a.b.c.d/n) or a range (a.b.c.d-e.f.g.h)' });
      }
    });
  for (const f of ['autoAssign', 'avoidBuggyIPs'] as const) {
    if (spec[f] !== undefined && typeof spec[f] !== 'boolean') errs.push({ field: `spec.${f}`, type: 'FieldValueInvalid', value: spec[f], detail: 'must be true or false' });
  }
  const prio = rec(spec.serviceAllocation).priority;
  if (prio !== undefined && !Number.isInteger(prio)) errs.push({ field: 'spec.serviceAllocation.priority', type: 'FieldValueInvalid', value: prio, detail: 'must be an integer' });
  return errs;
}

function validateAdvertisement(bgp: boolean): (obj: KubeObject) => FieldError[] {
  return (obj) => {
    const spec = rec(obj.spec);
    const errs: FieldError[] = [];
    if (spec.ipAddressPools !== undefined && !strList(spec.ipAddressPools)) errs.push({ field: 'spec.ipAddressPools', type: 'FieldValueInvalid', value: spec.ipAddressPools, detail: 'must be a list of pool names' });
    if (spec.nodeSelectors !== undefined && !Array.isArray(spec.nodeSelectors)) errs.push({ field: 'spec.nodeSelectors', type: 'FieldValueInvalid', value: spec.nodeSelectors, detail: 'must be a list of label selectors' });
    if (!bgp) return errs;
    const lp = spec.localPref;
    if (lp !== undefined && (!Number.isInteger(lp) || (lp as number) < 0 || (lp as number) > 0xffffffff)) errs.push({ field: 'spec.localPref', type: 'FieldValueInvalid', value: lp, detail: 'must be an integer from 0 to 4294967295' });
    if (spec.communities !== undefined) {
      if (!strList(spec.communities)) errs.push({ field: 'spec.communities', type: 'FieldValueInvalid', value: spec.communities, detail: 'must be a list of communities' });
      else
        (spec.communities).forEach((c, i) => {
          const m = /^(\d{1,5}):(\d{1,5})$/.exec(c);
          const l = /^large:(\d{1,10}):(\d{1,10}):(\d{1,10})$/.exec(c);
          const ok = m ? Number(m[1]) <= 0xffff && Number(m[2]) <= 0xffff : !!l && l.slice(1).every((n) => Number(n) <= 0xffffffff);
          if (!ok) errs.push({ field: `spec.communities[${i}]`, type: 'FieldValueInvalid', value: c, detail: 'must be a standard community (ASN:value, 16 bits each) or a large one (large:A:B:C, 32 bits each)' });
        });
    }
    const al = spec.aggregationLength;
    if (al !== undefined && (!Number.isInteger(al) || (al as number) < 0 || (al as number) > 32)) errs.push({ field: 'spec.aggregationLength', type: 'FieldValueInvalid', value: al, detail: 'must be from 0 to 32' });
    return errs;
  };
}

const base = { group: 'metallb.io', version: 'v1beta1', namespaced: true, hasStatus: false } as const;

export const IP_ADDRESS_POOLS: ResourceType = {
  ...base,
  kind: 'IPAddressPool',
  plural: 'ipaddresspools',
  singular: 'ipaddresspool',
  listKind: 'IPAddressPoolList',
  validate: validatePool,
  defaulting: (obj) => {
    const spec = rec(obj.spec);
    spec.autoAssign ??= true;
    spec.avoidBuggyIPs ??= false;
    obj.spec = spec;
  },
};

export const L2_ADVERTISEMENTS: ResourceType = {
  ...base,
  kind: 'L2Advertisement',
  plural: 'l2advertisements',
  singular: 'l2advertisement',
  listKind: 'L2AdvertisementList',
  validate: validateAdvertisement(false),
};

export const BGP_ADVERTISEMENTS: ResourceType = {
  ...base,
  kind: 'BGPAdvertisement',
  plural: 'bgpadvertisements',
  singular: 'bgpadvertisement',
  listKind: 'BGPAdvertisementList',
  validate: validateAdvertisement(true),
};

/** The pool a local lab starts with: `<net>.200/29` of its loopback net (none when the net is smaller than /24). */
export function defaultLabPool(labNet: string): string | undefined {
  const c = parseIpv4CidrInput(labNet);
  if (!c || c.prefixLen > 24) return undefined;
  return `${intToIpv4(c.network + 200)}/29`;
}
