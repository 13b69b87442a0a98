/**
 * Service / EndpointSlice objects for the service-proxy tests, shaped as the
 * apiserver and the endpointslice controller produce them.
 */
import { SeededRng } from '../../common/rng.ts';
import type { KubeObject } from '../../control-plane/types.ts';
import type { EngineOptions } from '../../service-proxy/types.ts';

/** Options of {@link svc}. */
export interface SvcOpts {
  ns?: string;
  type?: 'ClusterIP' | 'NodePort';
  clusterIP: string;
  ports: { name?: string; port: number; protocol?: 'TCP' | 'UDP'; nodePort?: number; targetPort?: number | string }[];
  affinity?: number;
  etp?: 'Cluster' | 'Local';
  itp?: 'Cluster' | 'Local';
}

/** A Service object. */
export function svc(name: string, o: SvcOpts): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: o.ns ?? 'default', uid: `uid-${name}`, resourceVersion: '1', creationTimestamp: '2026-11-25T11:30:00Z' },
    spec: {
      type: o.type ?? 'ClusterIP',
      clusterIP: o.clusterIP,
      clusterIPs: [o.clusterIP],
      ports: o.ports.map((p) => ({ protocol: 'TCP', targetPort: p.port, ...p })),
      selector: { app: name },
      sessionAffinity: o.affinity ? 'ClientIP' : 'None',
      ...(o.affinity ? { sessionAffinityConfig: { clientIP: { timeoutSeconds: o.affinity } } } : {}),
      ...(o.etp ? { externalTrafficPolicy: o.etp } : {}),
      internalTrafficPolicy: o.itp ?? 'Cluster',
    },
  };
}

/** One endpoint: [ip, nodeName, ready?, terminating?]. */
export type Ep = [string, string, boolean?, boolean?];

/** An EndpointSlice for service `name` with the given endpoints and ports. */
export function slice(name: string, eps: Ep[], ports: { name?: string; port: number; protocol?: 'TCP' | 'UDP' }[], ns = 'default'): KubeObject {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name: `${name}-abcde`,
      namespace: ns,
      uid: `uid-slice-${name}`,
      resourceVersion: '1',
      creationTimestamp: '2026-11-25T11:30:00Z',
      labels: { 'kubernetes.io/service-name': name, 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' },
    },
    addressType: 'IPv4',
    endpoints: eps.map(([ip, node, ready = true, terminating = false]) => ({
      addresses: [ip],
      conditions: { ready: ready && !terminating, serving: ready, terminating },
      nodeName: node,
    })),
    ports: ports.map((p) => ({ name: p.name ?? '', port: p.port, protocol: p.protocol ?? 'TCP' })),
  } as unknown as KubeObject;
}

/** A manual clock in milliseconds. */
export class TestClock {
  t = 1_000_000;
  now(): number {
    return this.t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
}

/** Engine options for node-1 (192.168.0.11, cni0 10.244.1.1) with a fresh clock and seed. */
export function engineOpts(seed = 1, extra: Partial<EngineOptions> = {}): EngineOptions & { clock: TestClock } {
  const clock = new TestClock();
  return { nodeName: 'node-1', nodeIP: '192.168.0.11', localAddresses: ['10.244.1.1'], clock, rng: new SeededRng(seed), ...extra } as EngineOptions & { clock: TestClock };
}

/** The 3-endpoint `default/nginx` NodePort service used by the golden tests. */
export function nginx(extra: Partial<SvcOpts> = {}): { service: KubeObject; slice: KubeObject } {
  return {
    service: svc('nginx', { type: 'NodePort', clusterIP: '10.96.0.100', ports: [{ port: 80, nodePort: 30080 }], ...extra }),
    slice: slice(
      'nginx',
      [
        ['10.244.1.2', 'node-1'],
        ['10.244.2.2', 'node-2'],
        ['10.244.3.2', 'node-3'],
      ],
      [{ port: 80 }],
    ),
  };
}

/** A first packet. */
export function pkt(src: string, dst: string, dport: number, extra: Partial<{ sport: number; protocol: 'tcp' | 'udp'; localDst: boolean; fromLocalPod: boolean; fromHost: boolean }> = {}) {
  return { src, dst, dport, sport: extra.sport ?? 40000, protocol: extra.protocol ?? 'tcp', localDst: extra.localDst ?? false, fromLocalPod: extra.fromLocalPod ?? src.startsWith('10.244.1.'), fromHost: extra.fromHost };
}
