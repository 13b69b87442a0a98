/**
 * What this build of podlab can do, in one place: the scenario format already
 * names backends, proxy modes, flows, faults and conditions that later issues
 * bring (BGP, host-gw, TCP, Services). Files that use them are accepted by the
 * JSON Schema (editors do not complain) but rejected at validation time with
 * "not supported yet in this build", before anything starts.
 *
 * When a feature lands: take its name out of `PENDING` (backends need nothing:
 * they are read from `podlab up`'s own list) and register its implementation (a flow driver in traffic.ts, a fault in
 * faults.ts, a condition in conditions.ts).
 */

import { SUPPORTED_BACKENDS } from '../lab/lab.ts';

/** Backends `podlab up --backend` offers in this build (read from lab/lab.ts, so a new backend is accepted as soon as it lands). */
export const BACKENDS: readonly string[] = SUPPORTED_BACKENDS;

/** BGP topologies `podlab up --bgp-topology` offers (with --backend bgp). */
export const BGP_TOPOLOGIES = ['full-mesh', 'route-reflector'] as const;

/** kube-proxy modes `podlab up --proxy-mode` offers. */
export const PROXY_MODES: readonly string[] = ['iptables', 'ipvs', 'userspace'];

/** Names the format reserves, with what they wait for. */
export const PENDING: Record<string, Record<string, string>> = {
  backend: {
    'host-gw': 'the host-gw backend (podlab up --backend host-gw)',
    bgp: 'the BGP backend (podlab up --backend bgp)',
  },
  bgpTopology: {
    'full-mesh': 'the BGP backend',
    'route-reflector': 'the BGP backend',
  },
  flow: {
    tcp: 'TCP in pods',
    http: 'TCP and HTTP apps in pods',
  },
  target: {
    service: 'Services',
  },
  fault: {
  },
  condition: {
  },
};

/** The "not supported yet" message for a reserved name. */
export function pendingMessage(what: string, value: string): string | null {
  if (what === 'backend' && BACKENDS.includes(value)) return null;
  const why = PENDING[what]?.[value];
  return why ? `'${value}' is not supported yet in this build: it needs ${why}` : null;
}
