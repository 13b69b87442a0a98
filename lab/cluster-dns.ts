/**
 * The cluster DNS addon as kubeadm installs it: the `kube-dns` Service in
 * kube-system at the tenth address of the service CIDR (10.96.0.10 for
 * 10.96.0.0/12; kubeadm's GetDNSIP), ports dns 53/UDP, dns-tcp 53/TCP and
 * metrics 9153/TCP, selecting `k8s-app=kube-dns`; the `coredns`
 * ServiceAccount; and the `coredns` Deployment, two replicas whose pods
 * (named by the ReplicaSet, `coredns-<hash>-<suffix>`) the scheduler spreads
 * over the nodes by the template's preferred pod anti-affinity on
 * `kubernetes.io/hostname`, as kubeadm's manifest asks.
 *
 * One podlab addition to kubeadm's manifest: a required node affinity keeps
 * the pods off kernel nodes (`podlab.io/kernel-node`), which run real
 * servers for http images only and so cannot run the CoreDNS app.
 */
import type { ApiClient } from '../control-plane/client.ts';
import { DEFAULT_SERVICE_CIDR, ServiceAllocator, parseServiceAllocConfig } from '../control-plane/service-allocator.ts';
import type { Service } from '../control-plane/service-resources.ts';
import type { KubeObject, Pod } from '../control-plane/types.ts';

/** CoreDNS's image as kubeadm 1.29 and 1.30 pin it. */
export const COREDNS_IMAGE = 'registry.k8s.io/coredns/coredns:v1.11.1';

/** The kube-dns ClusterIP of a service CIDR: its tenth address (kubeadm's GetDNSIP). */
export function clusterDnsIP(serviceCidr = DEFAULT_SERVICE_CIDR): string {
  return new ServiceAllocator(parseServiceAllocConfig(serviceCidr)).nthIP(10);
}

const LABELS = { 'k8s-app': 'kube-dns' };

export interface ClusterDnsOptions {
  serviceCidr?: string;
  /** kubeadm's 2; 0 where no node can run the app (a lab of kernel nodes only). */
  replicas?: number;
}

/** The kube-dns Service, the coredns ServiceAccount and the coredns Deployment. */
export function clusterDnsObjects(o: ClusterDnsOptions = {}): { service: Service; serviceAccount: KubeObject; deployment: KubeObject } {
  const service = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'kube-dns', namespace: 'kube-system', labels: { ...LABELS, 'kubernetes.io/name': 'CoreDNS' } },
    spec: {
      selector: { ...LABELS },
      clusterIP: clusterDnsIP(o.serviceCidr),
      ports: [
        { name: 'dns', port: 53, protocol: 'UDP', targetPort: 53 },
        { name: 'dns-tcp', port: 53, protocol: 'TCP', targetPort: 53 },
        { name: 'metrics', port: 9153, protocol: 'TCP', targetPort: 9153 },
      ],
    },
  } as unknown as Service;
  const serviceAccount = { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'coredns', namespace: 'kube-system' } } as KubeObject;
  const deployment = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'coredns', namespace: 'kube-system', labels: { ...LABELS } },
    spec: {
      replicas: o.replicas ?? 2,
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } },
      selector: { matchLabels: { ...LABELS } },
      template: {
        metadata: { labels: { ...LABELS } },
        spec: {
          priorityClassName: 'system-cluster-critical',
          serviceAccountName: 'coredns',
          affinity: {
            podAntiAffinity: {
              preferredDuringSchedulingIgnoredDuringExecution: [
                { weight: 100, podAffinityTerm: { labelSelector: { matchExpressions: [{ key: 'k8s-app', operator: 'In', values: ['kube-dns'] }] }, topologyKey: 'kubernetes.io/hostname' } },
              ],
            },
            nodeAffinity: {
              requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'podlab.io/kernel-node', operator: 'DoesNotExist' }] }] },
            },
          },
          tolerations: [
            { key: 'CriticalAddonsOnly', operator: 'Exists' },
            { key: 'node-role.kubernetes.io/control-plane', effect: 'NoSchedule' },
          ],
          nodeSelector: { 'kubernetes.io/os': 'linux' },
          containers: [
            {
              name: 'coredns',
              image: COREDNS_IMAGE,
              imagePullPolicy: 'IfNotPresent',
              resources: { limits: { memory: '170Mi' }, requests: { cpu: '100m', memory: '70Mi' } },
              ports: [
                { name: 'dns', containerPort: 53, protocol: 'UDP' },
                { name: 'dns-tcp', containerPort: 53, protocol: 'TCP' },
                { name: 'metrics', containerPort: 9153, protocol: 'TCP' },
              ],
            },
          ],
          dnsPolicy: 'Default',
        },
      },
    },
  } as unknown as KubeObject;
  return { service, serviceAccount, deployment };
}

/**
 * Creates the addon (what is already there is left alone, so a restarted lab
 * keeps its objects) and waits until the Deployment's pods exist, so a
 * caller waiting for Running pods waits for them too.
 */
export async function installClusterDns(api: ApiClient, o: ClusterDnsOptions = {}): Promise<void> {
  const { service, serviceAccount, deployment } = clusterDnsObjects(o);
  if (!(await api.get('serviceaccounts', 'coredns', 'kube-system'))) await api.create('serviceaccounts', serviceAccount, 'kube-system');
  if (!(await api.get('services', 'kube-dns', 'kube-system'))) await api.create('services', service, 'kube-system');
  if (!(await api.get('deployments', 'coredns', 'kube-system'))) await api.create('deployments', deployment, 'kube-system');
  const want = o.replicas ?? 2;
  for (let i = 0; i < 200; i++) {
    const pods = (await api.list<Pod>('pods', { namespace: 'kube-system', labelSelector: 'k8s-app=kube-dns' })).items;
    if (pods.length >= want) return;
    await new Promise((r) => setTimeout(r, 50));
  }
}
