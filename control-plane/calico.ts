/**
 * Calico's BGP configuration kinds (projectcalico.org/v3), served so a lab is
 * configured the Calico way (`podlab apply -f`):
 *
 * - BGPConfiguration (cluster-scoped; Calico reads the one named `default`):
 *   `spec.asNumber` (default 64512), `spec.nodeToNodeMeshEnabled` (default true);
 * - BGPPeer (cluster-scoped): `spec.peerIP` (`IP` or `IP:port`), `spec.asNumber`,
 *   optional `spec.node` to peer from that node only (without it every node peers),
 *   optional `spec.filters` (BGPFilter names, applied in order);
 * - BGPFilter (cluster-scoped): `spec.importV4` / `spec.exportV4` rules of
 *   `action` (Accept/Reject), `matchOperator` (Equal/In/NotIn) and `cidr`; the
 *   first matching rule decides (backends/bgp/filters.ts);
 * - IPPool (cluster-scoped): `spec.cidr` and `spec.ipipMode` (Always, CrossSubnet
 *   or Never): whether routes to blocks of the pool go through tunl0 (the ipip backend).
 */
import type { FieldError } from './errors.ts';
import type { ResourceType } from './resources.ts';
import type { KubeObject } from './types.ts';
import { isIpv4Address } from '../packet/ip-input.ts';

export interface BgpConfigurationSpec {
  asNumber?: number;
  nodeToNodeMeshEnabled?: boolean;
  logSeverityScreen?: string;
}

export interface BgpPeerSpec {
  peerIP: string;
  asNumber: number;
  node?: string;
  filters?: string[];
}

export interface BgpFilterRule {
  action: 'Accept' | 'Reject';
  matchOperator?: 'Equal' | 'In' | 'NotIn';
  cidr?: string;
}

export interface BgpFilterSpec {
  importV4?: BgpFilterRule[];
  exportV4?: BgpFilterRule[];
}

/** Calico's encapsulation choice for a pool: always IPIP, only across subnets, or never. */
export type IpipMode = 'Always' | 'CrossSubnet' | 'Never';
export const IPIP_MODES: readonly IpipMode[] = ['Always', 'CrossSubnet', 'Never'];

export interface IpPoolSpec {
  cidr: string;
  ipipMode?: IpipMode;
  natOutgoing?: boolean;
  blockSize?: number;
}

export type BgpConfiguration = KubeObject<BgpConfigurationSpec, never>;
export type IpPool = KubeObject<IpPoolSpec, never>;
export type BgpPeer = KubeObject<BgpPeerSpec, never>;
export type BgpFilter = KubeObject<BgpFilterSpec, never>;

/** Calico's default AS number. */
export const CALICO_DEFAULT_ASN = 64512;

/** Splits `IP` or `IP:port` (Calico's peerIP syntax). */
export function parsePeerIP(v: string): { ip: string; port?: number } | null {
  const m = /^([\d.]+)(?::(\d{1,5}))?$/.exec(v);
  if (!m || !isIpv4Address(m[1])) return null;
  const port = m[2] === undefined ? undefined : Number(m[2]);
  if (port !== undefined && (port < 1 || port > 65535)) return null;
  return { ip: m[1], port };
}

const isAsn = (v: unknown) => Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 4294967295;
const rec = (v: unknown): Record<string, unknown> => (typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : {});

function validateBgpConfiguration(obj: KubeObject): FieldError[] {
  const spec = rec(obj.spec);
  const errs: FieldError[] = [];
  if (spec.asNumber !== undefined && !isAsn(spec.asNumber)) errs.push({ field: 'spec.asNumber', type: 'FieldValueInvalid', value: spec.asNumber, detail: 'must be an AS number from 1 to 4294967295' });
  if (spec.nodeToNodeMeshEnabled !== undefined && typeof spec.nodeToNodeMeshEnabled !== 'boolean') {
    errs.push({ field: 'spec.nodeToNodeMeshEnabled', type: 'FieldValueInvalid', value: spec.nodeToNodeMeshEnabled, detail: 'must be true or false' });
  }
  return errs;
}

function validateBgpPeer(obj: KubeObject): FieldError[] {
  const spec = rec(obj.spec);
  const errs: FieldError[] = [];
  if (typeof spec.peerIP !== 'string') errs.push({ field: 'spec.peerIP', type: 'FieldValueRequired' });
  else if (!parsePeerIP(spec.peerIP)) errs.push({ field: 'spec.peerIP', type: 'FieldValueInvalid', value: spec.peerIP, detail: 'must be an IPv4 address, optionally with :port' });
  if (spec.asNumber === undefined) errs.push({ field: 'spec.asNumber', type: 'FieldValueRequired' });
  else if (!isAsn(spec.asNumber)) errs.push({ field: 'spec.asNumber', type: 'FieldValueInvalid', value: spec.asNumber, detail: 'must be an AS number from 1 to 4294967295' });
  if (spec.node !== undefined && typeof spec.node !== 'string') errs.push({ field: 'spec.node', type: 'FieldValueInvalid', value: spec.node, detail: 'must be a node name' });
  if (spec.filters !== undefined && (!Array.isArray(spec.filters) || !spec.filters.every((f) => typeof f === 'string'))) {
    errs.push({ field: 'spec.filters', type: 'FieldValueInvalid', value: spec.filters, detail: 'must be a list of BGPFilter names' });
  }
  return errs;
}

const IPV4_CIDR = /^(\d+\.\d+\.\d+\.\d+)\/(\d|[12]\d|3[0-2])$/;

function validateBgpFilter(obj: KubeObject): FieldError[] {
  const spec = rec(obj.spec);
  const errs: FieldError[] = [];
  for (const dir of ['importV4', 'exportV4'] as const) {
    const rules = spec[dir];
    if (rules === undefined) continue;
    if (!Array.isArray(rules)) {
      errs.push({ field: `spec.${dir}`, type: 'FieldValueInvalid', value: rules, detail: 'must be a list of rules' });
      continue;
    }
    rules.forEach((r: unknown, i: number) => {
      const rule = rec(r);
      const f = `spec.${dir}[${i}]`;
      if (rule.action !== 'Accept' && rule.action !== 'Reject') errs.push({ field: `${f}.action`, type: 'FieldValueNotSupported', value: rule.action, detail: 'supported values: "Accept", "Reject"' });
      if (rule.matchOperator !== undefined && !['Equal', 'In', 'NotIn'].includes(rule.matchOperator as string)) {
        errs.push({ field: `${f}.matchOperator`, type: 'FieldValueNotSupported', value: rule.matchOperator, detail: 'supported values: "Equal", "In", "NotIn"' });
      }
      if (rule.cidr !== undefined) {
        const m = typeof rule.cidr === 'string' ? IPV4_CIDR.exec(rule.cidr) : null;
        if (!m || !isIpv4Address(m[1])) errs.push({ field: `${f}.cidr`, type: 'FieldValueInvalid', value: rule.cidr, detail: 'must be an IPv4 CIDR' });
      }
      if ((rule.matchOperator === undefined) !== (rule.cidr === undefined)) errs.push({ field: f, type: 'FieldValueInvalid', value: r, detail: 'cidr and matchOperator go together' });
    });
  }
  return errs;
}

function validateIpPool(obj: KubeObject): FieldError[] {
  const spec = rec(obj.spec);
  const errs: FieldError[] = [];
  const cidr = typeof spec.cidr === 'string' ? /^([\d.]+)\/(\d{1,2})$/.exec(spec.cidr) : null;
  if (spec.cidr === undefined) errs.push({ field: 'spec.cidr', type: 'FieldValueRequired' });
  else if (!cidr || !isIpv4Address(cidr[1]) || Number(cidr[2]) > 32) errs.push({ field: 'spec.cidr', type: 'FieldValueInvalid', value: spec.cidr, detail: 'must be an IPv4 CIDR' });
  if (spec.ipipMode !== undefined && !IPIP_MODES.includes(spec.ipipMode as IpipMode)) {
    errs.push({ field: 'spec.ipipMode', type: 'FieldValueNotSupported', value: spec.ipipMode, detail: `supported values: ${IPIP_MODES.map((m) => `"${m}"`).join(', ')}` });
  }
  return errs;
}

export const IP_POOLS: ResourceType = {
  group: 'projectcalico.org',
  version: 'v3',
  kind: 'IPPool',
  plural: 'ippools',
  singular: 'ippool',
  namespaced: false,
  listKind: 'IPPoolList',
  shortNames: ['ippool'],
  hasStatus: false,
  validate: validateIpPool,
};

export const BGP_CONFIGURATIONS: ResourceType = {
  group: 'projectcalico.org',
  version: 'v3',
  kind: 'BGPConfiguration',
  plural: 'bgpconfigurations',
  singular: 'bgpconfiguration',
  namespaced: false,
  listKind: 'BGPConfigurationList',
  shortNames: ['bgpconfig', 'bgpconfigs'],
  hasStatus: false,
  validate: validateBgpConfiguration,
};

export const BGP_PEERS: ResourceType = {
  group: 'projectcalico.org',
  version: 'v3',
  kind: 'BGPPeer',
  plural: 'bgppeers',
  singular: 'bgppeer',
  namespaced: false,
  listKind: 'BGPPeerList',
  hasStatus: false,
  validate: validateBgpPeer,
};

export const BGP_FILTERS: ResourceType = {
  group: 'projectcalico.org',
  version: 'v3',
  kind: 'BGPFilter',
  plural: 'bgpfilters',
  singular: 'bgpfilter',
  namespaced: false,
  listKind: 'BGPFilterList',
  hasStatus: false,
  validate: validateBgpFilter,
};
