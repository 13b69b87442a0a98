/**
 * What this build of podlab can do, in one place. Backends are the backend
 * registry's (backends/registry.ts), with what each offers (BGP, a tunnel
 * device). Flows, faults, conditions and targets the scenario format names
 * before they land are listed in `PENDING`: files that use them are accepted
 * by the JSON Schema (editors do not complain) but rejected at validation time
 * with "not supported yet in this build", before anything starts.
 *
 * When a feature lands: take its name out of `PENDING` and register its
 * implementation (a flow driver in traffic.ts, a fault in faults.ts, a
 * condition in conditions.ts).
 */

import { SUPPORTED_BACKENDS } from '../lab/lab.ts';
import { findBackend } from '../backends/registry.ts';

/** Backends `podlab up --backend` offers in this build (the backend registry's, so a new backend is accepted as soon as it is registered). */
export const BACKENDS: readonly string[] = SUPPORTED_BACKENDS;

/** The backends that speak BGP (bgpTopology, bgp-reset, bgp-converged go with them). */
export const BGP_BACKENDS: readonly string[] = BACKENDS.filter((b) => findBackend(b)?.bgp);

/** Whether a backend has a tunnel device named `dev` (the mtu fault's flannel.1). */
export function backendHasDevice(backend: string, dev: string): boolean {
  return findBackend(backend)?.tunnelDevice === dev;
}

/** The backends that have a tunnel device named `dev`. */
export function backendsWithDevice(dev: string): string[] {
  return BACKENDS.filter((b) => backendHasDevice(b, dev));
}

/** Whether a backend speaks BGP. */
export function speaksBgp(backend: string): boolean {
  return BGP_BACKENDS.includes(backend);
}

/** BGP topologies `podlab up --bgp-topology` offers (with --backend bgp). */
export const BGP_TOPOLOGIES = ['full-mesh', 'route-reflector'] as const;

/** kube-proxy modes `podlab up --proxy-mode` offers. */
export const PROXY_MODES: readonly string[] = ['iptables', 'ipvs', 'userspace'];

/** Names the format reserves, with what they wait for. */
export const PENDING: Record<string, Record<string, string>> = {
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
