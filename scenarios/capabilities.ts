/**
 * What `podlab up` offers, as the scenario format names it: a scenario's `lab:`
 * section is checked against these lists, read from the lab's own, so a new
 * backend or proxy mode is accepted as soon as `podlab up` has it.
 */

import { SUPPORTED_BACKENDS } from '../lab/lab.ts';

/** Backends `podlab up --backend` offers. */
export const BACKENDS: readonly string[] = SUPPORTED_BACKENDS;

/** BGP topologies `podlab up --bgp-topology` offers (with --backend bgp). */
export const BGP_TOPOLOGIES = ['full-mesh', 'route-reflector'] as const;

/** kube-proxy modes `podlab up --proxy-mode` offers. */
export const PROXY_MODES: readonly string[] = ['iptables', 'ipvs', 'userspace'];
