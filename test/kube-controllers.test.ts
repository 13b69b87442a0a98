/**
 * The workload and node lifecycle controllers on an in-memory store with a
 * manual clock (no processes): a rolling update never takes the available
 * pods below replicas - maxUnavailable nor the total above replicas +
 * maxSurge; scale and rollback through the store; graceful termination and
 * garbage collection; the node lifecycle controller's grace period, taints,
 * not-ready endpoints and eviction after tolerationSeconds, timed by the
 * clock; JSON patch; the Endpoints mirror. Each store test runs again on etcd
 * ([etcd]: the controllers' writes through the etcd persister).
 */
import test, { type ExecutionContext } from 'ava';
import { ManualClock, MANUAL_WALL_START_MS } from '../common/clock.ts';
import { applyJsonPatch } from '../control-plane/merge-patch.ts';
import { openStore, type Store } from '../control-plane/store.ts';
import type { KubeObject, Pod } from '../control-plane/types.ts';
import { computeTemplateHash } from '../control-plane/deployment-controller.ts';
import { evictionTime } from '../control-plane/node-lifecycle-controller.ts';
import { EtcdPool, storeOptions, storeTest } from './helpers/stores.ts';

/** The etcd of the [etcd] variants (./helpers/stores.ts): client port 23808, peer 23809. */
const etcds = new EtcdPool([23808]);

/** A store with the controllers on a manual clock, on the test's store (in memory, or an emptied etcd for [etcd]). */
async function lab(t: ExecutionContext, opts: { grace?: number; toleration?: number } = {}) {
  const clock = new ManualClock(MANUAL_WALL_START_MS);
  const backing = await storeOptions(t, etcds);
  const store = openStore({
    clock,
    ...backing.options,
    controllers: { podDrainMs: 1000, nodeLifecycle: { monitorPeriodMs: 1000, gracePeriodMs: (opts.grace ?? 40) * 1000, unreachableTolerationSeconds: opts.toleration ?? 300 } },
  });
  for (const n of ['node-1', 'node-2', 'node-3']) {
    store.create('nodes', { metadata: { name: n }, spec: {} });
    heartbeat(store, n);
  }
  t.teardown(async () => {
    store.close();
    await backing.release();
  });
  return { clock, store };
}

function heartbeat(store: Store, node: string): void {
  const now = new Date(store.clock.now()).toISOString();
  store.patch('nodes', node, { status: { conditions: [{ type: 'Ready', status: 'True', lastHeartbeatTime: now, reason: 'KubeletReady' }] } }, { subresource: 'status' });
}

let ipSeq = 2;
/** What a node agent does: pods bound to a live node get an IP and turn Running and Ready. */
function kubelet(store: Store, alive: (node: string) => boolean = () => true): void {
  for (const p of store.list<Pod>('pods').items) {
    if (!p.spec?.nodeName || !alive(p.spec.nodeName) || p.status?.phase === 'Running' || p.metadata.deletionTimestamp) continue;
    store.patch(
      'pods',
      p.metadata.name,
      { status: { phase: 'Running', podIP: `10.244.9.${ipSeq++}`, conditions: [{ type: 'Ready', status: 'True' }], containerStatuses: p.spec.containers.map((c) => ({ name: c.name, state: { running: {} } })) } },
      { namespace: p.metadata.namespace, subresource: 'status' },
    );
  }
}

const deployment = (replicas: number, image: string, extra: Record<string, unknown> = {}) => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name: 'web', labels: { app: 'web' } },
  spec: { replicas, selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'web', image, ports: [{ containerPort: 80 }] }] } }, ...extra },
});

const active = (store: Store) => store.list<Pod>('pods', { labelSelector: 'app=web' }).items.filter((p) => !p.metadata.deletionTimestamp);
const availableCount = (store: Store) => active(store).filter((p) => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')).length;

storeTest('rolling update keeps availability >= replicas - maxUnavailable and total <= replicas + maxSurge', async (t) => {
  const { clock, store } = await lab(t);
  store.create('deployments', deployment(4, 'nginx:1.14.2', { strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 1 } } }), { namespace: 'default' });
  kubelet(store);
  t.is(availableCount(store), 4);
  store.patch('deployments', 'web', { spec: { template: { spec: { containers: [{ name: 'web', image: 'nginx:1.16.1' }] } } } }, { namespace: 'default' });
  let minAvail = Infinity;
  let maxTotal = 0;
  for (let i = 0; i < 40; i++) {
    minAvail = Math.min(minAvail, availableCount(store));
    maxTotal = Math.max(maxTotal, active(store).length);
    kubelet(store);
    clock.advance(500);
  }
  t.true(minAvail >= 3, `available never below 3 (saw ${minAvail})`);
  t.true(maxTotal <= 5, `never more than 5 pods (saw ${maxTotal})`);
  const pods = active(store);
  t.is(pods.length, 4);
  t.true(pods.every((p) => p.spec?.containers[0].image === 'nginx:1.16.1'));
  t.is(store.list('pods', { labelSelector: 'app=web' }).items.length, 4, 'terminated pods are removed after the drain');
  const d = store.get<KubeObject<unknown, Record<string, unknown>>>('deployments', 'web', 'default');
  t.is(d.metadata.annotations?.['deployment.kubernetes.io/revision'], '2');
  t.like(d.status, { replicas: 4, updatedReplicas: 4, availableReplicas: 4, readyReplicas: 4 });
  const reasons = store.list<KubeObject & { reason: string }>('events').items.map((e) => e.reason);
  t.true(reasons.includes('ScalingReplicaSet'));
});

storeTest('rollback by patching the old template reuses its ReplicaSet as the next revision; Recreate goes to zero first', async (t) => {
  const { clock, store } = await lab(t);
  store.create('deployments', deployment(2, 'nginx:1.14.2'), { namespace: 'default' });
  kubelet(store);
  const first = store.list('replicasets').items[0];
  const template = structuredClone((store.get('deployments', 'web', 'default').spec as { template: unknown }).template);
  store.patch('deployments', 'web', { spec: { template: { spec: { containers: [{ name: 'web', image: 'nginx:1.16.1' }] } } } }, { namespace: 'default' });
  for (let i = 0; i < 20; i++) {
    kubelet(store);
    clock.advance(500);
  }
  // What `kubectl rollout undo` sends: a JSON patch with the old template, as a typed client marshals it.
  (template as { metadata: Record<string, unknown> }).metadata.creationTimestamp = null;
  store.patch('deployments', 'web', [{ op: 'replace', path: '/spec/template', value: template }], { namespace: 'default', type: 'json' });
  for (let i = 0; i < 20; i++) {
    kubelet(store);
    clock.advance(500);
  }
  const rss = store.list('replicasets').items;
  t.is(rss.length, 2, 'no third ReplicaSet');
  const again = rss.find((r) => r.metadata.uid === first.metadata.uid)!;
  t.is(again.metadata.annotations?.['deployment.kubernetes.io/revision'], '3');
  t.is((again.spec as { replicas: number }).replicas, 2);
  t.true(active(store).every((p) => p.spec?.containers[0].image === 'nginx:1.14.2'));

  store.patch('deployments', 'web', { spec: { strategy: { type: 'Recreate', rollingUpdate: null }, template: { spec: { containers: [{ name: 'web', image: 'nginx:1.17' }] } } } }, { namespace: 'default' });
  const images = new Set(active(store).map((p) => p.spec?.containers[0].image));
  t.false(images.has('nginx:1.17'), 'Recreate starts no new pod while old ones exist');
  for (let i = 0; i < 10; i++) {
    kubelet(store);
    clock.advance(500);
  }
  t.deepEqual([...new Set(active(store).map((p) => p.spec?.containers[0].image))], ['nginx:1.17']);
});

storeTest('pod-template-hash is stable, differs per template, and the selector is immutable', async (t) => {
  const { store } = await lab(t);
  const a = computeTemplateHash({ metadata: { labels: { app: 'x' } }, spec: { containers: [{ name: 'c', image: 'i:1' }] } });
  t.is(a, computeTemplateHash({ spec: { containers: [{ image: 'i:1', name: 'c' }] }, metadata: { labels: { app: 'x' } } }));
  t.not(a, computeTemplateHash({ metadata: { labels: { app: 'x' } }, spec: { containers: [{ name: 'c', image: 'i:2' }] } }));
  t.regex(a, /^[bcdfghjklmnpqrstvwxz2456789]+$/);
  store.create('deployments', deployment(1, 'nginx'), { namespace: 'default' });
  const err = t.throws(() => void store.patch('deployments', 'web', { spec: { selector: { matchLabels: { app: 'other' } } } }, { namespace: 'default' }));
  t.regex(String(err?.message), /spec\.selector.*immutable|does not match/);
  const mismatch = t.throws(() =>
    void store.create('deployments', { ...deployment(1, 'nginx'), metadata: { name: 'bad' }, spec: { ...deployment(1, 'nginx').spec, selector: { matchLabels: { app: 'nope' } } } }, { namespace: 'default' }),
  );
  t.regex(String(mismatch?.message), /`selector` does not match template `labels`/);
});

storeTest('deleting a ReplicaSet garbage-collects its pods gracefully; a DaemonSet follows nodes', async (t) => {
  const { clock, store } = await lab(t);
  store.create('deployments', deployment(3, 'nginx'), { namespace: 'default' });
  kubelet(store);
  const rs = store.list('replicasets').items[0];
  store.delete('deployments', 'web', { namespace: 'default' });
  t.is(store.list('replicasets').items.length, 0);
  const terminating = store.list<Pod>('pods', { labelSelector: 'app=web' }).items;
  t.is(terminating.length, 3);
  t.true(terminating.every((p) => typeof p.metadata.deletionTimestamp === 'string'), 'pods are terminating, still serving');
  clock.advance(1000);
  t.is(store.list('pods', { labelSelector: 'app=web' }).items.length, 0);
  t.truthy(rs);

  store.create('daemonsets', { apiVersion: 'apps/v1', kind: 'DaemonSet', metadata: { name: 'agent' }, spec: { selector: { matchLabels: { app: 'agent' } }, template: { metadata: { labels: { app: 'agent' } }, spec: { containers: [{ name: 'a', image: 'podlab/http' }] } } } }, { namespace: 'default' });
  const nodesOf = () => store.list<Pod>('pods', { labelSelector: 'app=agent' }).items.filter((p) => !p.metadata.deletionTimestamp).map((p) => p.spec?.nodeName).sort();
  t.deepEqual(nodesOf(), ['node-1', 'node-2', 'node-3']);
  store.create('nodes', { metadata: { name: 'node-4' }, spec: {} });
  t.deepEqual(nodesOf(), ['node-1', 'node-2', 'node-3', 'node-4']);
  store.delete('nodes', 'node-4');
  t.deepEqual(nodesOf(), ['node-1', 'node-2', 'node-3']);
});

storeTest('node lifecycle: silent past the grace -> Unknown, taints, pods not ready in endpoints, eviction after tolerationSeconds', async (t) => {
  const { clock, store } = await lab(t, { grace: 40, toleration: 300 });
  store.create('deployments', deployment(3, 'nginx'), { namespace: 'default' });
  store.create('services', { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web' }, spec: { selector: { app: 'web' }, ports: [{ port: 80 }] } }, { namespace: 'default' });
  kubelet(store);
  const victimPods = () => active(store).filter((p) => p.spec?.nodeName === 'node-2');
  t.is(victimPods().length, 1);
  t.true(((victimPods()[0].spec?.tolerations ?? []) as { key?: string }[]).some((x) => x.key === 'node.kubernetes.io/unreachable'));
  const ep = () => store.get<KubeObject & { subsets: { addresses?: { ip: string }[]; notReadyAddresses?: { ip: string }[] }[] }>('endpoints', 'web', 'default');
  t.is(ep().subsets[0].addresses?.length, 3);
  // node-1 and node-3 keep beating; node-2 goes silent.
  const beat = () => ['node-1', 'node-3'].forEach((n) => heartbeat(store, n));
  for (let s = 0; s < 39; s++) {
    clock.advance(1000);
    if (s % 10 === 0) beat();
  }
  const ready = (n: string) => (store.get('nodes', n).status as { conditions: { type: string; status: string }[] }).conditions.find((c) => c.type === 'Ready')?.status;
  t.is(ready('node-2'), 'True', 'still within the grace period');
  for (let s = 0; s < 4; s++) {
    clock.advance(1000);
    beat();
  }
  t.is(ready('node-2'), 'Unknown');
  t.is(ready('node-1'), 'True');
  const taints = (store.get('nodes', 'node-2').spec as { taints: { key: string; effect: string }[] }).taints;
  t.deepEqual(taints.map((x) => `${x.key}:${x.effect}`).sort(), ['node.kubernetes.io/unreachable:NoExecute', 'node.kubernetes.io/unreachable:NoSchedule']);
  t.is(ep().subsets[0].addresses?.length, 2);
  t.is(ep().subsets[0].notReadyAddresses?.length, 1);
  t.is(victimPods().length, 1, 'not evicted before tolerationSeconds');
  for (let s = 0; s < 300; s += 10) {
    clock.advance(10_000);
    beat();
    kubelet(store, (n) => n !== 'node-2');
  }
  t.is(victimPods().length, 0, 'evicted');
  t.is(availableCount(store), 3, 'replaced on live nodes');
  t.true(active(store).every((p) => p.spec?.nodeName !== 'node-2'));
  const reasons = store.list<KubeObject & { reason: string }>('events').items.map((e) => e.reason);
  for (const r of ['NodeNotReady', 'TaintManagerEviction']) t.true(reasons.includes(r), r);
  // The agent comes back: the taints go.
  heartbeat(store, 'node-2');
  t.is((store.get('nodes', 'node-2').spec as { taints?: unknown[] }).taints, undefined);
});

test('evictionTime: no matching toleration is immediate, tolerationSeconds counts from timeAdded, none is forever', (t) => {
  const taint = { key: 'node.kubernetes.io/unreachable', effect: 'NoExecute' as const, timeAdded: '2026-01-01T00:00:00Z' };
  const pod = (tolerations: unknown[]) => ({ apiVersion: 'v1', kind: 'Pod', metadata: {} as Pod['metadata'], spec: { containers: [], tolerations } }) as Pod;
  t.is(evictionTime(pod([]), [taint]), 0);
  t.is(evictionTime(pod([{ key: taint.key, operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 30 }]), [taint]), Date.parse(taint.timeAdded) + 30_000);
  t.is(evictionTime(pod([{ operator: 'Exists' }]), [taint]), Infinity);
});

test('JSON patch (fast-json-patch): RFC 6902 operations, pointer escapes and errors', (t) => {
  const doc = { a: { b: [1, 2] }, c: 'x' };
  t.deepEqual(applyJsonPatch(doc, [{ op: 'add', path: '/a/b/-', value: 3 }, { op: 'replace', path: '/c', value: 'y' }, { op: 'remove', path: '/a/b/0' }, { op: 'copy', from: '/c', path: '/d' }, { op: 'move', from: '/d', path: '/e' }, { op: 'test', path: '/e', value: 'y' }]), {
    a: { b: [2, 3] },
    c: 'y',
    e: 'y',
  });
  t.deepEqual(doc, { a: { b: [1, 2] }, c: 'x' }, 'input untouched');
  t.is((t.throws(() => applyJsonPatch(doc, [{ op: 'test', path: '/c', value: 'z' }])) as { status?: { code: number } }).status?.code, 422);
  t.is((t.throws(() => applyJsonPatch(doc, { op: 'add' })) as { status?: { code: number } }).status?.code, 400);
  t.is((t.throws(() => applyJsonPatch(doc, [{ op: 'frobnicate', path: '/c' }])) as { status?: { code: number } }).status?.code, 400);
  t.is((t.throws(() => applyJsonPatch(doc, [{ op: 'replace', path: '/missing/deep', value: 1 }])) as { status?: { code: number } }).status?.code, 422);
  t.deepEqual(applyJsonPatch(doc, [{ op: 'add', path: '/k~1v', value: 1 }]), { ...doc, 'k/v': 1 });
});

storeTest('DefaultTolerationSeconds: a created Pod gets both NoExecute tolerations; a replace without them keeps them and passes Pod update validation', async (t) => {
  const { store } = await lab(t, { toleration: 20 });
  const manifest = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web', namespace: 'default' }, spec: { nodeName: 'node-1', containers: [{ name: 'web', image: 'nginx:1.14.2' }] } };
  const created = store.create<Pod>('pods', manifest, { namespace: 'default' });
  const keys = (p: Pod) => ((p.spec as { tolerations?: { key?: string; tolerationSeconds?: number }[] }).tolerations ?? []).map((x) => `${x.key}:${x.tolerationSeconds}`);
  t.deepEqual(keys(created), ['node.kubernetes.io/not-ready:300', 'node.kubernetes.io/unreachable:20']);
  // What `kubectl replace -f` sends: the manifest as written, with the image changed.
  const replaced = store.update<Pod>('pods', { ...manifest, spec: { ...manifest.spec, containers: [{ name: 'web', image: 'nginx:1.16.1' }] } }, { namespace: 'default' });
  t.deepEqual(keys(replaced), keys(created));
  t.is(replaced.spec?.containers[0].image, 'nginx:1.16.1');
});
