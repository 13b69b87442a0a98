/**
 * The LoadBalancer Services' summary a node keeps for MetalLB's speaker
 * (edge/lb-services.ts): kept one Service or EndpointSlice at a time, it
 * always equals the summary of the whole lists; it holds only LoadBalancers
 * with an address; a slice that comes before its Service counts; a change
 * that does not touch a LoadBalancer (or changes nothing the speaker reads)
 * is not a change of the list.
 */
import test from 'ava';
import type { KubeObject } from '../control-plane/types.ts';
import { LbIndex, loadBalancerServices } from '../edge/lb-services.ts';
import { SeededRng } from '../common/rng.ts';

const meta = (name: string, rv = '1') => ({ name, namespace: 'default', uid: name, resourceVersion: rv, creationTimestamp: '' });
const svc = (name: string, o: { type?: string; ip?: string; local?: boolean; rv?: string } = {}): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: meta(name, o.rv),
  spec: { type: o.type ?? 'LoadBalancer', clusterIP: '10.96.0.9', externalTrafficPolicy: o.local ? 'Local' : 'Cluster', ports: [{ port: 80, protocol: 'TCP', nodePort: 30080 }] },
  ...(o.ip ? { status: { loadBalancer: { ingress: [{ ip: o.ip }] } } } : {}),
});
const slice = (name: string, service: string, nodes: [string, boolean][]): KubeObject =>
  ({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { ...meta(name), labels: { 'kubernetes.io/service-name': service } }, endpoints: nodes.map(([n, ready], i) => ({ addresses: [`10.244.0.${i + 1}`], nodeName: n, conditions: { ready } })) }) as unknown as KubeObject;
const key = (o: KubeObject) => `default/${o.metadata.name}`;

test('only LoadBalancers with an address; ready nodes from every slice of the Service; slices may come first', (t) => {
  const ix = new LbIndex();
  ix.putSlice('default/web-a', slice('web-a', 'web', [['node-2', true], ['node-3', false]]));
  ix.putSlice('default/web-b', slice('web-b', 'web', [['node-1', true], ['node-2', true]]));
  t.deepEqual(ix.take(), [], 'slices alone: no LoadBalancer');
  ix.putService('default/plain', svc('plain', { type: 'ClusterIP', ip: '127.0.9.1' }));
  ix.putService('default/pending', svc('pending'));
  t.is(ix.take(), undefined, 'a ClusterIP, a LoadBalancer without an address: nothing changed');
  ix.putService('default/web', svc('web', { ip: '127.0.9.200', local: true }));
  t.deepEqual(ix.take(), [{ service: 'default/web', clusterIP: '10.96.0.9', ingress: ['127.0.9.200'], ports: [{ port: 80, protocol: 'tcp', nodePort: 30080 }], local: true, readyNodes: ['node-1', 'node-2'] }]);
  ix.putService('default/web', svc('web', { ip: '127.0.9.200', local: true, rv: '2' }));
  t.is(ix.take(), undefined, 'a new resourceVersion, the same summary');
  ix.deleteSlice('default/web-b');
  t.deepEqual(ix.take()?.[0].readyNodes, ['node-2']);
  ix.putSlice('default/other', slice('other', 'plain', [['node-9', true]]));
  t.is(ix.take(), undefined, "a slice of a Service that is not a LoadBalancer");
  ix.deleteService('default/web');
  t.deepEqual(ix.take(), []);
});

test('kept one change at a time, in any order, it equals the summary of the final lists', (t) => {
  const rng = new SeededRng(16);
  const ix = new LbIndex();
  const services = new Map<string, KubeObject>();
  const slices = new Map<string, KubeObject>();
  const nodes = ['node-1', 'node-2', 'node-3'];
  for (let step = 0; step < 2000; step++) {
    const i = rng.int(0, 9);
    const r = rng.int(0, 5);
    if (r === 0) {
      services.delete(`default/s${i}`);
      ix.deleteService(`default/s${i}`);
    } else if (r <= 2) {
      const o = svc(`s${i}`, { type: rng.int(0, 3) ? 'LoadBalancer' : 'NodePort', ...(rng.int(0, 3) ? { ip: `127.0.9.${200 + i}` } : {}), local: rng.int(0, 1) === 1, rv: String(step) });
      services.set(key(o), o);
      ix.putService(key(o), o);
    } else if (r === 3) {
      slices.delete(`default/s${i}-x`);
      ix.deleteSlice(`default/s${i}-x`);
    } else {
      const o = slice(`s${i}-${rng.int(0, 1) ? 'x' : 'y'}`, `s${i}`, nodes.filter(() => rng.int(0, 1) === 1).map((n) => [n, rng.int(0, 3) > 0]));
      slices.set(key(o), o);
      ix.putSlice(key(o), o);
    }
    if (step % 97 === 0) t.deepEqual(ix.list(), loadBalancerServices([...services.values()], [...slices.values()]), `step ${step}`);
  }
  t.deepEqual(ix.list(), loadBalancerServices([...services.values()], [...slices.values()]));
});
