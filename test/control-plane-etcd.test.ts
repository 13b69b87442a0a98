/**
 * The store on a real etcd (`--store etcd://`): kube-apiserver's key layout,
 * resourceVersion = mod_revision, state and controller sections across a
 * restart, cascades, the in-process watch, and refusal of a foreign write.
 * The kill -9 API test against etcd is in control-plane-restart.test.ts.
 */
import test from 'ava';
import { ApiError } from '../control-plane/errors.ts';
import { EtcdPersister, etcdPrefixOf, parseEtcdUrl } from '../control-plane/etcd-persister.ts';
import { registry, resourceKeyOf } from '../control-plane/resources.ts';
import { openStore } from '../control-plane/store.ts';
import type { Node, Pod } from '../control-plane/types.ts';
import { startEtcd } from './helpers/etcd.ts';

const pod = (name: string, namespace = 'default') => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace }, spec: { containers: [{ name: 'c', image: 'busybox' }] } });
const node = (name: string) => ({ apiVersion: 'v1', kind: 'Node', metadata: { name }, status: { conditions: [{ type: 'Ready', status: 'True' }] } });

test('key layout follows kube-apiserver; etcd://HOST:PORT parsing', (t) => {
  t.is(etcdPrefixOf('/pods'), '/registry/pods');
  t.is(etcdPrefixOf('/nodes'), '/registry/minions');
  t.is(etcdPrefixOf('/services'), '/registry/services/specs');
  t.is(etcdPrefixOf('discovery.k8s.io/endpointslices'), '/registry/endpointslices');
  t.is(etcdPrefixOf('apps/deployments'), '/registry/deployments');
  t.is(etcdPrefixOf('crd.projectcalico.org/bgppeers'), '/registry/crd.projectcalico.org/bgppeers');
  t.is(parseEtcdUrl('etcd://127.0.0.1:2379'), 'http://127.0.0.1:2379');
  t.throws(() => parseEtcdUrl('http://127.0.0.1:2379'), { message: /etcd:\/\/HOST:PORT/ });
  t.throws(() => parseEtcdUrl('etcd://127.0.0.1:99999'), { message: /etcd:\/\/HOST:PORT/ });
});

test('store on etcd: objects at /registry paths, resourceVersion = mod_revision, state and sections survive a restart', async (t) => {
  const etcd = await startEtcd(t, 23792);
  if (!etcd) return;
  const resources = registry.all().map(resourceKeyOf);
  const p1 = new EtcdPersister(etcd.base, resources);
  const s1 = openStore({ persister: p1 });
  t.teardown(() => s1.close());
  const n1 = s1.create<Node>('nodes', node('node-1'));
  t.is(n1.spec?.podCIDR, '10.244.1.0/24');
  s1.create('namespaces', { metadata: { name: 'team' } });
  const a = s1.create<Pod>('pods', pod('a'));
  s1.create('pods', pod('b', 'team'));
  t.is(a.spec?.nodeName, 'node-1');
  const watched: string[] = [];
  s1.watch('pods', { resourceVersion: a.metadata.resourceVersion }, (ev) => watched.push(`${ev.type} ${ev.object.metadata.name}`));
  const patched = s1.patch<Pod>('pods', 'a', { metadata: { labels: { x: 'y' } } }, { namespace: 'default' });
  s1.delete('namespaces', 'team');
  t.deepEqual(watched, ['ADDED b', 'MODIFIED a', 'DELETED b']);

  const kvs = await etcd.keys('/registry/');
  const byKey = new Map(kvs.map((kv) => [kv.key, kv] as const));
  t.truthy(byKey.get('/registry/minions/node-1'));
  t.is(byKey.get('/registry/pods/default/a')?.modRevision, Number(patched.metadata.resourceVersion), 'resourceVersion is the mod_revision');
  t.is(byKey.get('/registry/pods/team/b'), undefined, 'the namespace cascade deleted b in etcd too');
  t.is(byKey.get('/registry/namespaces/team'), undefined);
  t.deepEqual((JSON.parse(byKey.get('/registry/pods/default/a')?.value ?? '{}') as Pod).metadata.labels, { x: 'y' });
  t.truthy(byKey.get('/registry/podlab.io/sections/nodeIpam'));

  const s2 = openStore({ persister: new EtcdPersister(etcd.base, resources) });
  t.teardown(() => s2.close());
  t.deepEqual(s2.list('pods'), s1.list('pods'));
  t.deepEqual(s2.list('nodes'), s1.list('nodes'));
  t.is(s2.resourceVersion(), s1.resourceVersion());
  t.is(s2.create<Node>('nodes', node('node-2')).spec?.podCIDR, '10.244.2.0/24', 'IPAM continues where it was');
  t.is(s2.create<Pod>('pods', pod('c')).spec?.nodeName, 'node-2', 'the scheduler pointer continues where it was');
  // Resume points from before the restart: etcd's store window starts at the load, so older ones are 410 and informers relist.
  const tooOld = t.throws(() => s2.watch('pods', { resourceVersion: a.metadata.resourceVersion }, () => {}), { instanceOf: ApiError });
  t.is(tooOld.code, 410);
});

test('store on etcd: a write by someone else is refused with a 500, logged, and nothing is applied in memory', async (t) => {
  const etcd = await startEtcd(t, 23794);
  if (!etcd) return;
  const store = openStore({ persister: new EtcdPersister(etcd.base, registry.all().map(resourceKeyOf)) });
  t.teardown(() => store.close());
  store.create('pods', pod('mine'));
  const rv = store.resourceVersion();
  // Another writer bumps etcd's revision behind the store's back.
  await fetch(`${etcd.base}/v3/kv/put`, { method: 'POST', body: JSON.stringify({ key: Buffer.from('/other/key').toString('base64'), value: Buffer.from('x').toString('base64') }) });
  const err = t.throws(() => {
    store.create('pods', pod('next'));
  }, { instanceOf: ApiError });
  t.is(err.code, 500);
  t.regex(err.message, /another writer/);
  t.is(store.resourceVersion(), rv);
  t.is(store.tryGet('pods', 'next', 'default'), undefined);
});
