/**
 * What this build of podlab can do, in one place: the scenario format already
 * names backends, proxy modes, flows, faults and conditions that later issues
 * bring (BGP, host-gw, TCP, Services). Files that use them are accepted by the
 * JSON Schema (editors do not complain) but rejected at validation time with
 * "not supported yet in this build", before anything starts.
 *
 * When a feature lands: move its name from `PENDING` to the supported list here
 * and register its implementation (a flow driver in traffic.ts, a fault in
 * faults.ts, a condition in conditions.ts).
 */

/** Overlay backends `podlab up` offers (it has no --backend flag yet: Flannel VXLAN only). */
export const BACKENDS = ['vxlan'] as const;

/** kube-proxy modes `podlab up` offers: none yet (no --proxy-mode, no Services). */
export const PROXY_MODES: readonly string[] = [];

/** Names the format reserves, with what they wait for. */
export const PENDING: Record<string, Record<string, string>> = {
  backend: {
    'host-gw': 'the host-gw backend (podlab up has only --backend vxlan for now)',
    bgp: 'the BGP backend (podlab up has only --backend vxlan for now)',
  },
  proxyMode: {
    iptables: 'Services and kube-proxy (podlab up has no --proxy-mode yet)',
    ipvs: 'Services and kube-proxy (podlab up has no --proxy-mode yet)',
    userspace: 'Services and kube-proxy (podlab up has no --proxy-mode yet)',
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
    'bgp-reset': 'the BGP backend',
    'mark-not-ready': 'node readiness handling (endpoints follow Ready)',
  },
  condition: {
    transfer: 'TCP transfers in pods',
    'lb-spread': 'Services and kube-proxy',
    'bgp-converged': 'the BGP backend',
  },
};

/** The "not supported yet" message for a reserved name. */
export function pendingMessage(what: string, value: string): string | null {
  const why = PENDING[what]?.[value];
  return why ? `'${value}' is not supported yet in this build: it needs ${why}` : null;
}
