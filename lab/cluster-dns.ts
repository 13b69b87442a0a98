/**
 * The cluster DNS addon as kubeadm installs it: the `kube-dns` Service in
 * kube-system at the tenth address of the service CIDR (10.96.0.10 for
 * 10.96.0.0/12; kubeadm's GetDNSIP), ports dns 53/UDP, dns-tcp 53/TCP and
 * metrics 9153/TCP, selecting `k8s-app=kube-dns`, and two CoreDNS replicas.
 *
 * The replicas are plain Pods for now, spread over the first two emulated
 * nodes by nodeName as CoreDNS's preferred anti-affinity would spread them;
 * this file is the one place that makes them, so they can become a
 * Deployment when the apiserver serves Deployments.
 */
import type { ApiClient } from '../control-plane/client.ts';
import { DEFAULT_SERVICE_CIDR, ServiceAllocator, parseServiceAllocConfig } from '../control-plane/service-allocator.ts';
import type { Service } from '../control-plane/service-resources.ts';
import type { Pod } from '../control-plane/types.ts';

/** CoreDNS's image as kubeadm 1.31 pins it. */
export const COREDNS_IMAGE = 'registry.k8s.io/coredns/coredns:v1.11.3';

/** The kube-dns ClusterIP of a service CIDR: its tenth address (kubeadm's GetDNSIP). */
export function clusterDnsIP(serviceCidr = DEFAULT_SERVICE_CIDR): string {
  return new ServiceAllocator(parseServiceAllocConfig(serviceCidr)).nthIP(10);
}

const LABELS = { 'k8s-app': 'kube-dns' };

/** The kube-dns Service and the CoreDNS pods, on `nodes` (one replica each, at most two). */
export function clusterDnsObjects(nodes: string[], serviceCidr?: string): { service: Service; pods: Pod[] } {
  const service = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'kube-dns', namespace: 'kube-system', labels: { ...LABELS, 'kubernetes.io/name': 'CoreDNS' } },
    spec: {
      selector: { ...LABELS },
      clusterIP: clusterDnsIP(serviceCidr),
      ports: [
        { name: 'dns', port: 53, protocol: 'UDP', targetPort: 53 },
        { name: 'dns-tcp', port: 53, protocol: 'TCP', targetPort: 53 },
        { name: 'metrics', port: 9153, protocol: 'TCP', targetPort: 9153 },
      ],
    },
  } as unknown as Service;
  const pods = nodes.slice(0, 2).map(
    (node, i) =>
      ({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: `coredns-${i + 1}`, namespace: 'kube-system', labels: { ...LABELS } },
        spec: {
          nodeName: node,
          containers: [
            {
              name: 'coredns',
              image: COREDNS_IMAGE,
              ports: [
                { name: 'dns', containerPort: 53, protocol: 'UDP' },
                { name: 'dns-tcp', containerPort: 53, protocol: 'TCP' },
                { name: 'metrics', containerPort: 9153, protocol: 'TCP' },
              ],
            },
          ],
        },
      }) as unknown as Pod,
  );
  return { service, pods };
}

/** Creates the addon (what is already there is left alone, so a restarted lab keeps its objects). */
export async function installClusterDns(api: ApiClient, nodes: string[], serviceCidr?: string): Promise<void> {
  const { service, pods } = clusterDnsObjects(nodes, serviceCidr);
  if (!(await api.get('services', 'kube-dns', 'kube-system'))) await api.create('services', service, 'kube-system');
  for (const p of pods) if (!(await api.get('pods', p.metadata.name, 'kube-system'))) await api.create('pods', p, 'kube-system');
}
