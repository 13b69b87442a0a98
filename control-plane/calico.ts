/**
 * Calico's BGP configuration kinds (projectcalico.org/v3), served so a lab is
 * configured the Calico way (`podlab apply -f`):
 *
 * - BGPConfiguration (cluster-scoped; Calico reads the one named `default`):
 *   `spec.asNumber` (default 64512), `spec.nodeToNodeMeshEnabled` (default true);
 * - BGPPeer (cluster-scoped): `spec.peerIP` (`IP` or `IP:port`), `spec.asNumber`,
 *   optional `spec.node` to peer from that node only (without it every node peers);
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
