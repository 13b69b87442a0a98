/**
 * The scheduler's placement rules on an in-memory store (no processes):
 * kubeadm's CoreDNS Deployment (lab/cluster-dns.ts) gets its two replicas on
 * two nodes by the template's preferred pod anti-affinity, keeps off kernel
 * nodes by its required node affinity, and shares a node when only one is
 * left; nodeSelector and the node affinity operators as kube-scheduler's
 * NodeAffinity filter reads them; pods with neither rule keep the
 * round-robin.
 */
import test from 'ava';
import { ManualClock, MANUAL_WALL_START_MS } from '../common/clock.ts';
import { openStore, type Store } from '../control-plane/store.ts';
import type { KubeObject, Pod } from '../control-plane/types.ts';
import { antiAffinityCost, nodeFits } from '../control-plane/placement.ts';
import { clusterDnsObjects } from '../lab/cluster-dns.ts';

const linux = (name: string, extra: Record<string, string> = {}) => ({ 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux', ...extra });

function cluster(nodes: { name: string; labels?: Record<string, string> }[]): Store {
  const store = openStore({ clock: new ManualClock(MANUAL_WALL_START_MS) });
  for (const n of nodes) {
    store.create('nodes', { metadata: { name: n.name, labels: n.labels ?? linux(n.name) }, spec: {} });
    store.patch('nodes', n.name, { status: { conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady' }] } }, { subresource: 'status' });
  }
  return store;
}

function installDns(store: Store, replicas?: number): Pod[] {
  const { service, serviceAccount, deployment } = clusterDnsObjects({ replicas });
  store.create('serviceaccounts', serviceAccount, { namespace: 'kube-system' });
  store.create('services', service, { namespace: 'kube-system' });
  store.create('deployments', deployment, { namespace: 'kube-system' });
  return store.list<Pod>('pods', { namespace: 'kube-system', labelSelector: 'k8s-app=kube-dns' }).items;
}

const podsOn = (pods: Pod[]) => pods.map((p) => p.spec?.nodeName ?? '').sort();

test('CoreDNS: a Deployment in kube-system whose two replicas land on two nodes', (t) => {
  const store = cluster([{ name: 'node-1' }, { name: 'node-2' }, { name: 'node-3' }]);
  const pods = installDns(store);
  t.is(pods.length, 2);
  t.deepEqual(podsOn(pods), ['node-1', 'node-2']);
  for (const p of pods) {
    t.regex(p.metadata.name, /^coredns-[0-9a-z]+-[0-9a-z]{5}$/);
    t.is(p.spec?.containers[0].image, 'registry.k8s.io/coredns/coredns:v1.11.1');
    t.is(p.metadata.labels?.['k8s-app'], 'kube-dns');
  }
  t.is(store.get<Pod>('services', 'kube-dns', 'kube-system').spec?.clusterIP, '10.96.0.10');
});

test('anti-affinity weighs every selected pod: with three kube-dns pods on node-2 both replicas go to node-1', (t) => {
  const store = cluster([{ name: 'node-1' }, { name: 'node-2' }]);
  for (let i = 0; i < 3; i++) store.create('pods', { metadata: { name: `p${i}`, labels: { 'k8s-app': 'kube-dns' } }, spec: { nodeName: 'node-2', containers: [{ name: 'c', image: 'busybox' }] } }, { namespace: 'kube-system' });
  const pods = installDns(store).filter((p) => p.metadata.name.startsWith('coredns-'));
  // The first costs 0 on node-1 and 300 on node-2; the second 100 on node-1 (the first) and still 300 on node-2.
  t.deepEqual(podsOn(pods), ['node-1', 'node-1']);
});

test('CoreDNS keeps off kernel nodes, and with one node left both replicas share it', (t) => {
  const store = cluster([{ name: 'knode-1', labels: linux('knode-1', { 'podlab.io/kernel-node': 'true' }) }, { name: 'node-1' }]);
  const pods = installDns(store);
  t.deepEqual(podsOn(pods), ['node-1', 'node-1']);
});

test('a pod no node fits stays Pending with kube-scheduler\'s reason, and binds when a fitting node turns Ready', (t) => {
  const store = cluster([{ name: 'knode-1', labels: linux('knode-1', { 'podlab.io/kernel-node': 'true' }) }]);
  const [p] = installDns(store, 1);
  t.is(p.spec?.nodeName, undefined);
  const cond = p.status?.conditions?.find((c) => c.type === 'PodScheduled');
  t.like(cond, { status: 'False', reason: 'Unschedulable', message: "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector." });
  store.create('nodes', { metadata: { name: 'node-9', labels: linux('node-9') }, spec: {} });
  store.patch('nodes', 'node-9', { status: { conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady' }] } }, { subresource: 'status' });
  t.is(store.get<Pod>('pods', p.metadata.name, 'kube-system').spec?.nodeName, 'node-9');
});

test('pods without placement rules keep the round-robin', (t) => {
  const store = cluster([{ name: 'node-1' }, { name: 'node-2' }, { name: 'node-3' }]);
  const got = [0, 1, 2, 3].map((i) => store.create<Pod>('pods', { metadata: { name: `p${i}` }, spec: { containers: [{ name: 'c', image: 'busybox' }] } }, { namespace: 'default' }).spec?.nodeName);
  t.deepEqual(got, ['node-1', 'node-2', 'node-3', 'node-1']);
});

const node = (name: string, labels: Record<string, string>): KubeObject => ({ metadata: { name, labels } }) as unknown as KubeObject;
const pod = (spec: Record<string, unknown>, labels: Record<string, string> = {}): Pod => ({ metadata: { name: 'x', namespace: 'default', labels }, spec: { containers: [], ...spec } }) as unknown as Pod;
const required = (...terms: unknown[]) => ({ affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: terms } } } });

test('nodeFits: nodeSelector, and node affinity terms ORed with their expressions ANDed', (t) => {
  const n = node('n1', { zone: 'a', gpu: '2', 'kubernetes.io/os': 'linux' });
  t.true(nodeFits(pod({ nodeSelector: { zone: 'a' } }), n));
  t.false(nodeFits(pod({ nodeSelector: { zone: 'b' } }), n));
  t.true(nodeFits(pod(required({ matchExpressions: [{ key: 'zone', operator: 'In', values: ['a', 'b'] }] })), n));
  t.false(nodeFits(pod(required({ matchExpressions: [{ key: 'zone', operator: 'NotIn', values: ['a'] }] })), n));
  t.true(nodeFits(pod(required({ matchExpressions: [{ key: 'zone', operator: 'NotIn', values: ['b'] }] })), n));
  t.true(nodeFits(pod(required({ matchExpressions: [{ key: 'gpu', operator: 'Gt', values: ['1'] }] })), n));
  t.false(nodeFits(pod(required({ matchExpressions: [{ key: 'gpu', operator: 'Lt', values: ['1'] }] })), n));
  t.false(nodeFits(pod(required({ matchExpressions: [{ key: 'gpu', operator: 'Gt', values: ['x'] }] })), n));
  t.false(nodeFits(pod(required({ matchExpressions: [{ key: 'ssd', operator: 'Exists' }] })), n));
  t.true(nodeFits(pod(required({ matchExpressions: [{ key: 'ssd', operator: 'Exists' }] }, { matchFields: [{ key: 'metadata.name', operator: 'In', values: ['n1'] }] })), n));
  t.false(nodeFits(pod(required({ matchExpressions: [{ key: 'zone', operator: 'In', values: ['a'] }, { key: 'ssd', operator: 'Exists' }] })), n));
  // An empty term matches no node.
  t.false(nodeFits(pod(required({})), n));
});

test('antiAffinityCost: weight per selected pod in the same topology domain and namespace', (t) => {
  const term = (topologyKey: string, weight = 100, namespaces?: string[]) => ({
    affinity: { podAntiAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [{ weight, podAffinityTerm: { labelSelector: { matchLabels: { app: 'dns' } }, topologyKey, ...(namespaces ? { namespaces } : {}) } }] } },
  });
  const a1 = node('a1', { 'kubernetes.io/hostname': 'a1', zone: 'a' });
  const a2 = node('a2', { 'kubernetes.io/hostname': 'a2', zone: 'a' });
  const b1 = node('b1', { 'kubernetes.io/hostname': 'b1', zone: 'b' });
  const dns = (ns = 'default') => ({ metadata: { name: 'd', namespace: ns, labels: { app: 'dns' } } }) as unknown as KubeObject;
  const placed = [{ pod: dns(), node: a1 }, { pod: dns(), node: a1 }, { pod: dns('other'), node: a2 }];
  t.is(antiAffinityCost(pod(term('kubernetes.io/hostname')), a1, placed), 200);
  t.is(antiAffinityCost(pod(term('kubernetes.io/hostname')), a2, placed), 0);
  t.is(antiAffinityCost(pod(term('zone', 10)), a2, placed), 20);
  t.is(antiAffinityCost(pod(term('zone', 10, ['default', 'other'])), a2, placed), 30);
  t.is(antiAffinityCost(pod(term('zone')), b1, placed), 0);
  t.is(antiAffinityCost(pod(term('rack')), a1, placed), 0);
});
