/**
 * Calico's BGP configuration kinds (projectcalico.org/v3), served so a lab is
 * configured the Calico way (`podlab apply -f`):
 *
 * - BGPConfiguration (cluster-scoped; Calico reads the one named `default`):
 *   `spec.asNumber` (default 64512), `spec.nodeToNodeMeshEnabled` (default true);
 * - BGPPeer (cluster-scoped): `spec.peerIP` (`IP` or `IP:port`), `spec.asNumber`,
 *   optional `spec.node` to peer from that node only (without it every node peers).
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

export type BgpConfiguration = KubeObject<BgpConfigurationSpec, never>;
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
