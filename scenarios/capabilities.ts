/**
 * What `podlab up` offers, as the scenario format names it: a scenario's `lab:`
 * section is checked against these lists. Backends are the backend registry's
 * (backends/registry.ts), with what each offers (BGP, a tunnel device), so a
 * new backend is accepted as soon as it is registered.
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
