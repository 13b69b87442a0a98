/**
 * The objects bench/agent-services.ts creates: Service `svc-<i>` (every
 * 2,000th a LoadBalancer, the rest ClusterIP; no selector, so no controller
 * touches them) and its EndpointSlice of `eps` ready endpoints spread over
 * node-1 and node-2 (addresses in 10.100.0.0/15, outside the pods' range:
 * rules only, never a packet), optionally without its first `drop`.
 */
export const serviceObject = (i: number) => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name: `svc-${i}`, namespace: 'default' },
  spec: { type: i % 2000 === 0 ? 'LoadBalancer' : 'ClusterIP', ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }] },
});

export const sliceObject = (i: number, eps: number, drop = 0) => ({
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: { name: `svc-${i}-abcde`, namespace: 'default', labels: { 'kubernetes.io/service-name': `svc-${i}` } },
  addressType: 'IPv4',
  endpoints: Array.from({ length: eps - drop }, (_, j) => {
    const k = i * eps + j + drop;
    return { addresses: [`10.${100 + Math.floor(k / 65025)}.${Math.floor((k % 65025) / 255)}.${(k % 255) + 1}`], conditions: { ready: true, serving: true, terminating: false }, nodeName: `node-${(k % 2) + 1}` };
  }),
  ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
});
