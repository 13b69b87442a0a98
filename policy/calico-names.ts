/**
 * Chain names as Calico's Felix gives them, so `iptables-save -t filter` on a
 * podlab node reads like a Calico node's:
 * - `cali-pi-…` / `cali-po-…`: one chain per policy, ingress / egress rules
 *   (felix/rules PolicyInboundPfx, PolicyOutboundPfx);
 * - `cali-tw-IFACE` / `cali-fw-IFACE`: "to workload" and "from workload", one
 *   pair per pod's host-side interface (WorkloadToEndpointPfx, WorkloadFromEndpointPfx).
 * Felix names a Kubernetes NetworkPolicy `knp.default.NAME` in the default
 * tier and shortens a long chain name as hashutils.GetLengthLimitedID does:
 * prefix, `_`, then the URL-safe base64 SHA-256 of the rest, cut to 28 characters.
 */
import { createHash } from 'node:crypto';

/** iptables' chain name limit as Felix uses it. */
const MAX_CHAIN_NAME = 28;

export function lengthLimitedId(prefix: string, suffix: string, max = MAX_CHAIN_NAME): string {
  if (prefix.length + suffix.length <= max) return prefix + suffix;
  const hash = createHash('sha256').update(suffix).digest('base64url');
  return `${prefix}_${hash.slice(0, max - prefix.length - 1)}`;
}

/** The Calico policy name of a Kubernetes NetworkPolicy `ns/name`. */
export function calicoPolicyName(id: string): string {
  const [ns, name] = id.split('/');
  return `${ns}/knp.default.${name}`;
}

export function policyChain(id: string, dir: 'ingress' | 'egress'): string {
  return lengthLimitedId(dir === 'ingress' ? 'cali-pi-' : 'cali-po-', `default/${calicoPolicyName(id)}`);
}

export const toWorkloadChain = (iface: string): string => `cali-tw-${iface}`;
export const fromWorkloadChain = (iface: string): string => `cali-fw-${iface}`;
