import test from 'ava';
import { mkdtempSync, readdirSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManualClock , MANUAL_WALL_START_MS } from '../common/clock.ts';
import { ApiError } from '../control-plane/errors.ts';
import { ConfigError, parseIpamConfig } from '../control-plane/ipam.ts';
import { MemoryPersister, StateFileError, type StorePersister } from '../control-plane/persistence.ts';
import { SqlitePersister } from '../control-plane/sqlite-persister.ts';
import { openStore, type Store, type StoreWatchEvent } from '../control-plane/store.ts';
import type { KubeObject, Node, Pod } from '../control-plane/types.ts';
import { omit } from './helpers/objects.ts';

function pod(name: string, extra: { labels?: Record<string, string>; nodeName?: string; namespace?: string } = {}): unknown {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, ...(extra.namespace ? { namespace: extra.namespace } : {}), ...(extra.labels ? { labels: extra.labels } : {}) },
    spec: { ...(extra.nodeName ? { nodeName: extra.nodeName } : {}), containers: [{ name: 'c', image: 'busybox' }] },
  };
}

function node(name: string, ready = true, extra: { podCIDR?: string; unschedulable?: boolean } = {}): unknown {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name },
    spec: { ...(extra.podCIDR ? { podCIDR: extra.podCIDR } : {}), ...(extra.unschedulable ? { unschedulable: true } : {}) },
    status: { conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }] },
  };
}

function apiErr(t: { throws: (fn: () => unknown, exp?: object) => unknown }, fn: () => unknown): ApiError {
  const err = t.throws(fn, { instanceOf: ApiError }) as ApiError;
  return err;
}

function mem(opts: Parameters<typeof openStore>[0] = {}): { store: Store; persister: MemoryPersister; clock: ManualClock } {
  const persister = new MemoryPersister();
  const clock = new ManualClock(MANUAL_WALL_START_MS);
  return { store: openStore({ persister, clock, ...opts }), persister, clock };
}

test('CRUD with k8s metadata: uid, creationTimestamp without millis, monotonic resourceVersion', (t) => {
  const { store } = mem();
  t.deepEqual(
    store.list('namespaces').items.map((n) => n.metadata.name),
    ['default', 'kube-node-lease', 'kube-public', 'kube-system'],
  );
  const created = store.create<Pod>('pods', pod('web'), { namespace: 'default' });
  t.is(created.metadata.namespace, 'default');
  t.regex(created.metadata.uid, /^[0-9a-f-]{36}$/);
  t.is(created.metadata.creationTimestamp, '2026-11-25T11:30:00Z');
  t.is(created.status?.phase, 'Pending');
  t.is(created.apiVersion, 'v1');
  t.is(created.kind, 'Pod');
  const rv1 = Number(created.metadata.resourceVersion);
  t.true(rv1 > 0);
  t.deepEqual(store.get<Pod>('pods', 'web', 'default'), created);

  // Not Ready, so the scheduler leaves the pod alone and `created` stays current.
  const n = store.create<Node>('nodes', node('node-1', false));
  t.true(Number(n.metadata.resourceVersion) > rv1, 'one counter across kinds');
  t.is(n.metadata.namespace, undefined);

  const copy = structuredClone(created);
  copy.metadata.labels = { app: 'web' };
  const updated = store.update<Pod>('pods', copy, { namespace: 'default', name: 'web' });
  t.true(Number(updated.metadata.resourceVersion) > Number(n.metadata.resourceVersion));
  t.deepEqual(updated.metadata.labels, { app: 'web' });
  t.is(updated.metadata.uid, created.metadata.uid);

  const list = store.list<Pod>('pods');
  t.is(list.kind, 'PodList');
  t.is(list.metadata.resourceVersion, updated.metadata.resourceVersion);
  t.is(list.items.length, 1);

  const deleted = store.delete<Pod>('pods', 'web', { namespace: 'default' });
  t.is(deleted.metadata.uid, created.metadata.uid);
  t.true(Number(deleted.metadata.resourceVersion) > Number(updated.metadata.resourceVersion), 'the delete has its own version');
  const e = apiErr(t, () => store.get('pods', 'web', 'default'));
  t.is(e.code, 404);
  t.is(e.reason, 'NotFound');
  t.is(e.message, 'pods "web" not found');
  t.is(apiErr(t, () => store.create('pods', pod('x'), { namespace: 'default' }) && store.create('pods', pod('x'), { namespace: 'default' })).reason, 'AlreadyExists');
});

test('returned objects are copies: mutating them does not touch the store', (t) => {
  const { store } = mem();
  const p = store.create<Pod>('pods', pod('a'));
  p.metadata.name = 'hacked';
  t.is(store.get<Pod>('pods', 'a', 'default').metadata.name, 'a');
});

test('optimistic concurrency: a stale resourceVersion is a 409 Conflict; unset means unconditional', (t) => {
  const { store } = mem();
  const v1 = store.create<Pod>('pods', pod('web'));
  const v2 = store.update<Pod>('pods', { ...v1, metadata: { ...v1.metadata, labels: { a: '1' } } });
  const e = apiErr(t, () => store.update('pods', { ...v1, metadata: { ...v1.metadata, labels: { a: '2' } } }));
  t.is(e.code, 409);
  t.is(e.reason, 'Conflict');
  t.regex(e.message, /Operation cannot be fulfilled on pods "web": the object has been modified/);
  const metaNoRv = omit(v1.metadata, 'resourceVersion');
  const v3 = store.update<Pod>('pods', { ...v1, metadata: { ...metaNoRv, labels: { a: '3' } } });
  t.true(Number(v3.metadata.resourceVersion) > Number(v2.metadata.resourceVersion));
  t.is(v3.metadata.labels?.a, '3');
});

test('status subresource: main updates ignore status, status updates ignore everything else; no-op commits nothing', (t) => {
  const { store, persister } = mem();
  const p = store.create<Pod>('pods', pod('web', { nodeName: 'n1' }));
  const viaMain = store.update<Pod>('pods', { ...p, status: { phase: 'Running' } });
  t.is(viaMain.status?.phase, 'Pending');
  t.is(viaMain.metadata.resourceVersion, p.metadata.resourceVersion, 'nothing changed, so no new version');
  const saves = persister.commits;
  const viaStatus = store.update<Pod>('pods', { ...p, metadata: { ...p.metadata, labels: { x: 'y' } }, status: { phase: 'Running', podIP: '10.244.1.2' } }, { subresource: 'status' });
  t.is(viaStatus.status?.phase, 'Running');
  t.is(viaStatus.status?.podIP, '10.244.1.2');
  t.is(viaStatus.metadata.labels, undefined);
  t.is(persister.commits, saves + 1, 'one durable write per mutation');
  t.deepEqual(persister.lastBatch?.changes.map((c) => `${c.type} ${c.resource} ${c.key} @${c.rv} prev@${c.prevRv}`), [
    `MODIFIED /pods default/web @${viaStatus.metadata.resourceVersion} prev@${p.metadata.resourceVersion}`,
  ], 'the write carries only the changed object');
  t.is(viaStatus.metadata.generation, 1, 'status changes do not bump generation');
  // An image is one of the few Pod spec fields that may change.
  const specChange = store.patch<Pod>('pods', 'web', { spec: { containers: [{ name: 'c', image: 'busybox:2' }] } }, { namespace: 'default' });
  t.is(specChange.metadata.generation, 2);
});

test('JSON merge patch (RFC 7386): merge objects, null deletes, arrays replace; strategic merge keeps list entries by key; rv precondition', (t) => {
  const { store } = mem();
  store.create('pods', pod('web', { labels: { app: 'web', tier: 'fe' } }));
  const p1 = store.patch<Pod>('pods', 'web', { metadata: { labels: { tier: null, env: 'dev' } } }, { namespace: 'default' });
  t.deepEqual(p1.metadata.labels, { app: 'web', env: 'dev' });
  // Arrays replace under a merge patch (a Node's taints: a Pod's containers are immutable but for images).
  store.create('nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: 'n' }, spec: { taints: [{ key: 'a', effect: 'NoSchedule' }] } });
  const n2 = store.patch<Node>('nodes', 'n', { spec: { taints: [{ key: 'd', effect: 'NoSchedule' }] } });
  t.deepEqual((n2.spec as { taints?: { key: string }[] }).taints?.map((x) => x.key), ['d']);
  // A strategic merge patch merges `containers` by name: the image changes, nothing else is lost.
  const p3 = store.patch<Pod>(
    'pods',
    'web',
    { metadata: { annotations: { a: 'b' } }, spec: { '$setElementOrder/containers': [{ name: 'c' }], containers: [{ name: 'c', image: 'x', $patch: 'merge' }] } },
    { namespace: 'default', strategic: true },
  );
  t.deepEqual(p3.spec?.containers, [{ name: 'c', image: 'x' }]);
  t.deepEqual(p3.metadata.annotations, { a: 'b' });
  const e = apiErr(t, () => store.patch('pods', 'web', { metadata: { resourceVersion: p1.metadata.resourceVersion, labels: { z: '1' } } }, { namespace: 'default' }));
  t.is(e.code, 409);
  const statusPatch = store.patch<Pod>('pods', 'web', { status: { phase: 'Running' }, metadata: { labels: { ignored: 'yes' } } }, { namespace: 'default', subresource: 'status' });
  t.is(statusPatch.status?.phase, 'Running');
  t.is(statusPatch.metadata.labels?.ignored, undefined);
  t.is(apiErr(t, () => store.patch('pods', 'nope', {}, { namespace: 'default' })).code, 404);
  t.is(apiErr(t, () => store.patch('pods', 'web', { metadata: { name: 'other' } }, { namespace: 'default' })).code, 400);
});

test('label and field selectors', (t) => {
  const { store } = mem();
  store.create('namespaces', { metadata: { name: 'team' } });
  store.create('pods', pod('a', { labels: { app: 'web', tier: 'fe', canary: '' }, nodeName: 'node-1' }));
  store.create('pods', pod('b', { labels: { app: 'web', tier: 'db' }, nodeName: 'node-2' }));
  store.create('pods', pod('c', { labels: { app: 'api' } }));
  store.create('pods', pod('d', { labels: { app: 'web' }, nodeName: 'node-1', namespace: 'team' }));
  const names = (opts: Parameters<Store['list']>[1]) => store.list<Pod>('pods', opts).items.map((p) => `${p.metadata.namespace}/${p.metadata.name}`);
  t.deepEqual(names({ labelSelector: 'app=web,tier!=db,canary' }), ['default/a']);
  t.deepEqual(names({ labelSelector: 'app==web' }), ['default/a', 'default/b', 'team/d']);
  t.deepEqual(names({ labelSelector: 'tier!=db' }), ['default/a', 'default/c', 'team/d'], '!= matches objects without the label');
  t.deepEqual(names({ labelSelector: 'tier in (fe, db)' }), ['default/a', 'default/b']);
  t.deepEqual(names({ labelSelector: 'app notin (web),!tier' }), ['default/c']);
  t.deepEqual(names({ fieldSelector: 'spec.nodeName=node-1' }), ['default/a', 'team/d']);
  t.deepEqual(names({ fieldSelector: 'spec.nodeName=' }), ['default/c'], 'empty value selects unbound pods');
  t.deepEqual(names({ fieldSelector: 'spec.nodeName!=node-1,metadata.namespace=default' }), ['default/b', 'default/c']);
  t.deepEqual(names({ fieldSelector: 'metadata.name=b' }), ['default/b']);
  t.deepEqual(names({ fieldSelector: 'status.phase=Pending', namespace: 'team' }), ['team/d']);
  t.deepEqual(names({ fieldSelector: 'status.phase!=Pending' }), []);
  const bad = apiErr(t, () => store.list('pods', { fieldSelector: 'spec.image=x' }));
  t.is(bad.code, 400);
  t.is(bad.message, 'field label not supported: spec.image');
  t.is(apiErr(t, () => store.list('pods', { labelSelector: 'app=(' })).code, 400);
});

test('validation: DNS-1123 names with field paths, containers, namespace existence and mismatch', (t) => {
  const { store } = mem();
  const e1 = apiErr(t, () => store.create('pods', pod('Foo_')));
  t.is(e1.code, 422);
  t.is(e1.reason, 'Invalid');
  t.true(
    e1.message.startsWith(
      'Pod "Foo_" is invalid: metadata.name: Invalid value: "Foo_": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters',
    ),
    e1.message,
  );
  t.is(e1.status.details?.causes?.[0].field, 'metadata.name');

  const e2 = apiErr(t, () => store.create('pods', { metadata: { name: 'p' }, spec: { containers: [] } }));
  t.is(e2.message, 'Pod "p" is invalid: spec.containers: Required value');
  const e3 = apiErr(t, () => store.create('pods', { metadata: { name: 'p' }, spec: { containers: [{ name: 'c' }, { image: 'x' }] } }));
  t.deepEqual(e3.status.details?.causes?.map((c) => c.field), ['spec.containers[0].image', 'spec.containers[1].name']);
  t.regex(e3.message, /^Pod "p" is invalid: \[spec\.containers\[0\]\.image: Required value, spec\.containers\[1\]\.name: Required value\]$/);

  const e4 = apiErr(t, () => store.create('pods', pod('p'), { namespace: 'nope' }));
  t.is(e4.code, 404);
  t.is(e4.message, 'namespaces "nope" not found');

  const e5 = apiErr(t, () => store.create('pods', pod('p', { namespace: 'kube-system' }), { namespace: 'default' }));
  t.is(e5.code, 400);

  const e6 = apiErr(t, () => store.create('namespaces', { metadata: { name: 'a.b' } }));
  t.regex(e6.message, /metadata\.name: Invalid value: "a\.b": a lowercase RFC 1123 label must consist of/);
  t.is(apiErr(t, () => store.create('nodes', { metadata: { name: 'x'.repeat(254) } })).status.details?.causes?.[0].field, 'metadata.name');
  t.is(apiErr(t, () => store.create('pods', { kind: 'Node', metadata: { name: 'p' } })).code, 400);
  t.is(apiErr(t, () => store.create('pods', { metadata: { name: 'p', labels: { 'bad key!': 'v' } }, spec: { containers: [{ name: 'c', image: 'i' }] } })).code, 422);
  t.is(apiErr(t, () => store.create('pods', { metadata: { name: 'p' }, spec: { containers: [{ name: 'c', image: 'i', ports: [{ containerPort: 70000 }] }] } })).status.details?.causes?.[0].field, 'spec.containers[0].ports[0].containerPort');
});

test('generateName appends a random suffix', (t) => {
  const { store } = mem();
  const p = store.create<Pod>('pods', { metadata: { generateName: 'web-' }, spec: { containers: [{ name: 'c', image: 'i' }] } });
  t.regex(p.metadata.name, /^web-[a-z0-9]{5}$/);
});

test('namespaces: delete cascades to contained objects; system namespaces are protected', (t) => {
  const { store } = mem();
  store.create('namespaces', { metadata: { name: 'team' } });
  store.create('pods', pod('a'), { namespace: 'team' });
  store.create('pods', pod('b'), { namespace: 'default' });
  const events: string[] = [];
  store.watch('pods', { resourceVersion: store.resourceVersion() }, (ev) => events.push(`${ev.type} ${ev.object.metadata.name}`));
  store.delete('namespaces', 'team');
  t.deepEqual(events, ['DELETED a']);
  t.deepEqual(store.list('pods').items.map((p) => p.metadata.name), ['b']);
  const e = apiErr(t, () => store.delete('namespaces', 'default'));
  t.is(e.code, 403);
});

test('IPAM: first node gets 10.244.1.0/24, allocations rotate, are freed on delete, and podCIDR is immutable', (t) => {
  const { store } = mem();
  const n1 = store.create<Node>('nodes', node('node-1'));
  const n2 = store.create<Node>('nodes', node('node-2'));
  t.is(n1.spec?.podCIDR, '10.244.1.0/24');
  t.deepEqual(n1.spec?.podCIDRs, ['10.244.1.0/24']);
  t.is(n2.spec?.podCIDR, '10.244.2.0/24');
  store.delete('nodes', 'node-1');
  const n1b = store.create<Node>('nodes', node('node-1'));
  t.is(n1b.spec?.podCIDR, '10.244.3.0/24', 're-created node gets a fresh allocation (no immediate reuse)');

  const preset = store.create<Node>('nodes', node('manual', true, { podCIDR: '10.244.9.0/24' }));
  t.deepEqual(preset.spec?.podCIDRs, ['10.244.9.0/24']);
  const overlap = apiErr(t, () => store.create('nodes', node('clash', true, { podCIDR: '10.244.2.0/25' })));
  t.is(overlap.code, 422);
  t.regex(overlap.message, /spec\.podCIDR: Invalid value: "10\.244\.2\.0\/25": overlaps the pod CIDR of node "node-2"/);

  // An update that omits podCIDR keeps it; one that changes it is refused.
  const withoutSpec = omit(n2, 'spec');
  const kept = store.update<Node>('nodes', { ...withoutSpec, metadata: { ...n2.metadata, labels: { x: 'y' } } });
  t.is(kept.spec?.podCIDR, '10.244.2.0/24');
  const changed = apiErr(t, () => store.patch('nodes', 'node-2', { spec: { podCIDR: '10.244.7.0/24', podCIDRs: ['10.244.7.0/24'] } }));
  t.is(changed.code, 422);
  t.regex(changed.message, /spec\.podCIDR: Forbidden/);
});

test('IPAM: exhaustion is a 422 with a clear message; subnet 0 is handed out last; freeing makes room', (t) => {
  const { store } = mem({ clusterCidr: '10.9.0.0/23', nodeCidrMaskSize: 24 });
  t.is(store.create<Node>('nodes', node('a')).spec?.podCIDR, '10.9.1.0/24');
  t.is(store.create<Node>('nodes', node('b')).spec?.podCIDR, '10.9.0.0/24');
  const e = apiErr(t, () => store.create('nodes', node('c')));
  t.is(e.code, 422);
  t.is(e.reason, 'Invalid');
  t.regex(e.message, /no free \/24 left in cluster CIDR 10\.9\.0\.0\/23: all 2 node subnets are allocated/);
  t.is(store.tryGet('nodes', 'c'), undefined);
  store.delete('nodes', 'a');
  t.is(store.create<Node>('nodes', node('c')).spec?.podCIDR, '10.9.1.0/24');
});

test('IPAM flag validation', (t) => {
  t.is(parseIpamConfig().count, 256);
  t.is(parseIpamConfig('10.244.5.7/16', 24).cluster.start, (10 * 256 + 244) * 65536, 'host bits masked like net.ParseCIDR');
  for (const [cidr, mask, flag] of [
    ['10.244.0.0', 24, '--cluster-cidr'],
    ['300.1.1.0/16', 24, '--cluster-cidr'],
    ['fd00::/64', 80, '--cluster-cidr'],
    ['10.244.0.0/24', 24, '--node-cidr-mask-size'],
    ['10.244.0.0/16', 31, '--node-cidr-mask-size'],
  ] as const) {
    const e = t.throws(() => parseIpamConfig(cidr, mask), { instanceOf: ConfigError });
    t.is(e?.flag, flag);
  }
  t.throws(() => openStore({ clusterCidr: 'bogus' }), { instanceOf: ConfigError });
});

test('scheduler: round-robin over Ready, schedulable nodes only, in name order; explicit nodeName untouched', (t) => {
  const { store } = mem();
  store.create('nodes', node('node-c'));
  store.create('nodes', node('node-a'));
  store.create('nodes', node('node-b', false));
  store.create('nodes', node('node-d', true, { unschedulable: true }));
  const bound = ['p1', 'p2', 'p3', 'p4', 'p5'].map((n) => store.create<Pod>('pods', pod(n)).spec?.nodeName);
  t.deepEqual(bound, ['node-a', 'node-c', 'node-a', 'node-c', 'node-a']);
  const pinned = store.create<Pod>('pods', pod('pinned', { nodeName: 'node-b' }));
  t.is(pinned.spec?.nodeName, 'node-b');
  t.is(pinned.status?.conditions, undefined);
  const p = store.get<Pod>('pods', 'p1', 'default');
  t.is(p.status?.phase, 'Pending');
  t.like(p.status?.conditions?.[0], { type: 'PodScheduled', status: 'True' });
});

test('scheduler: pods wait while no node is Ready and are bound when one becomes Ready', (t) => {
  const { store } = mem();
  store.create('nodes', node('node-1', false));
  const p = store.create<Pod>('pods', pod('early'));
  t.is(p.spec?.nodeName, undefined);
  t.like(p.status?.conditions?.[0], { type: 'PodScheduled', status: 'False', reason: 'Unschedulable' });
  const events: string[] = [];
  store.watch('pods', { resourceVersion: store.resourceVersion() }, (ev) => events.push(`${ev.type} ${(ev.object as Pod).spec?.nodeName ?? '-'}`));
  store.patch('nodes', 'node-1', { status: { conditions: [{ type: 'Ready', status: 'True' }] } }, { subresource: 'status' });
  const after = store.get<Pod>('pods', 'early', 'default');
  t.is(after.spec?.nodeName, 'node-1');
  t.like(after.status?.conditions?.[0], { type: 'PodScheduled', status: 'True' });
  t.deepEqual(events, ['MODIFIED node-1']);
});

test('watch: history replay, selector transitions become ADDED/DELETED, 410 when too old, 504 when too new', (t) => {
  const { store } = mem({ historyLimit: 5 });
  store.create('nodes', node('node-1'));
  store.create('nodes', node('node-2'));
  const start = store.resourceVersion();
  const events: string[] = [];
  const sink = (ev: StoreWatchEvent) => events.push(`${ev.type} ${ev.object.metadata.name}@${ev.object.metadata.resourceVersion}`);
  const h = store.watch('pods', { fieldSelector: 'spec.nodeName=node-1', resourceVersion: start }, sink);
  const a = store.create<Pod>('pods', pod('a', { nodeName: 'node-1' }));
  store.create('pods', pod('b', { nodeName: 'node-2' }));
  // The API refuses to rebind a Pod; controllers write through mutate(), as the scheduler does.
  const moved = store.mutate<Pod>('pods', 'a', 'default', (d) => void (d.spec!.nodeName = 'node-2'));
  const back = store.mutate<Pod>('pods', 'b', 'default', (d) => void (d.spec!.nodeName = 'node-1'));
  const gone = store.delete<Pod>('pods', 'b', { namespace: 'default' });
  t.deepEqual(events, [
    `ADDED a@${a.metadata.resourceVersion}`,
    `DELETED a@${moved.metadata.resourceVersion}`,
    `ADDED b@${back.metadata.resourceVersion}`,
    `DELETED b@${gone.metadata.resourceVersion}`,
  ]);
  h.stop();

  // Replaying from a version within the retained history yields the same events.
  const replay: string[] = [];
  store.watch('pods', { fieldSelector: 'spec.nodeName=node-1', resourceVersion: a.metadata.resourceVersion }, (ev) => replay.push(`${ev.type} ${ev.object.metadata.name}`));
  t.deepEqual(replay, ['DELETED a', 'ADDED b', 'DELETED b']);

  const tooOld = apiErr(t, () => store.watch('pods', { resourceVersion: '1' }, () => {}));
  t.is(tooOld.code, 410);
  t.is(tooOld.reason, 'Expired');
  t.regex(tooOld.message, /^too old resource version: 1 \(\d+\)$/);
  t.is(apiErr(t, () => store.watch('pods', { resourceVersion: '999999' }, () => {})).code, 504);

  const initial: string[] = [];
  store.watch('nodes', { resourceVersion: '0' }, (ev) => initial.push(`${ev.type} ${ev.object.metadata.name}`));
  t.deepEqual(initial, ['ADDED node-1', 'ADDED node-2']);
});

test('persistence: round trip of objects, uids, versions, history, IPAM and scheduler pointers', (t) => {
  const persister = new MemoryPersister();
  const s1 = openStore({ persister });
  s1.create('nodes', node('node-1'));
  s1.create('nodes', node('node-2'));
  s1.create('pods', pod('p1'));
  const mid = s1.resourceVersion();
  s1.create('pods', pod('p2'));
  s1.delete('nodes', 'node-1');
  const before = { pods: s1.list('pods'), nodes: s1.list('nodes'), ns: s1.list('namespaces') };

  const s2 = openStore({ persister });
  t.deepEqual({ pods: s2.list('pods'), nodes: s2.list('nodes'), ns: s2.list('namespaces') }, before);
  t.is(s2.resourceVersion(), s1.resourceVersion());
  const replay: string[] = [];
  s2.watch('pods', { resourceVersion: mid }, (ev) => replay.push(`${ev.type} ${ev.object.metadata.name}`));
  t.deepEqual(replay, ['ADDED p2'], 'event history survives');
  // Rotation and round robin continue where they were.
  t.is(s2.create<Node>('nodes', node('node-3')).spec?.podCIDR, '10.244.3.0/24');
  t.is(s2.create<Pod>('pods', pod('p3')).spec?.nodeName, 'node-3', 'p1→node-1, p2→node-2, then node-3');
  t.true(Number(s2.resourceVersion()) > Number(s1.resourceVersion()));
});

test('persistence: SQLite has each change on disk before the call returns and reloads', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'podlab-cp-store-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const s1 = openStore({ stateDir: dir });
  t.teardown(() => s1.close());
  const p = s1.create<Pod>('pods', pod('durable', { nodeName: 'node-1' }));
  // A second connection sees it at once: the commit was durable before create() returned.
  const s2 = openStore({ stateDir: dir });
  t.teardown(() => s2.close());
  t.deepEqual(s2.get('pods', 'durable', 'default'), p);
  t.is(s2.resourceVersion(), p.metadata.resourceVersion);
  t.deepEqual(readdirSync(join(dir, 'apiserver')).filter((n) => !/^store\.db(-wal|-shm|\.reserve)?$/.test(n)), [], 'no temp files beside the database');

  const bad = mkdtempSync(join(tmpdir(), 'podlab-cp-bad-'));
  t.teardown(() => rmSync(bad, { recursive: true, force: true }));
  mkdirSync(join(bad, 'apiserver'));
  writeFileSync(join(bad, 'apiserver', 'store.db'), 'this is not a database, it is a text file long enough to have a header......');
  t.throws(() => openStore({ stateDir: bad }), { instanceOf: StateFileError });
});

test('persistence: an old state.json is imported once, then removed with stale temp files', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'podlab-cp-legacy-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'apiserver'));
  const ns = (name: string, rv: number) => ({ resource: '/namespaces', object: { apiVersion: 'v1', kind: 'Namespace', metadata: { name, uid: `u-${name}`, resourceVersion: String(rv), creationTimestamp: '2026-11-25T11:30:00Z' } } });
  const podObj = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'old', namespace: 'default', uid: 'u-old', resourceVersion: '7', creationTimestamp: '2026-11-25T11:30:00Z' }, spec: { containers: [{ name: 'c', image: 'busybox' }] } };
  const doc = {
    format: 'podlab-apiserver-state/v1',
    resourceVersion: '9',
    historyStartRv: '0',
    sections: { scheduler: { lastNode: 'node-2' } },
    objects: [ns('default', 1), ns('kube-system', 2), { resource: '/pods', object: podObj }],
    history: [{ rv: 7, type: 'ADDED', resource: '/pods', object: podObj }],
  };
  writeFileSync(join(dir, 'apiserver', 'state.json'), JSON.stringify(doc));
  writeFileSync(join(dir, 'apiserver', 'state.json.tmp-12345'), '{"half');
  const s1 = openStore({ stateDir: dir });
  t.is(s1.get<Pod>('pods', 'old', 'default').metadata.uid, 'u-old');
  // From the imported 9 on (the controllers write at once: the namespaces' ServiceAccounts).
  t.true(Number(s1.resourceVersion()) >= 9);
  t.is(apiErr(t, () => s1.watch('pods', { resourceVersion: '6' }, () => {})).code, 410, 'history is not carried over');
  t.deepEqual(readdirSync(join(dir, 'apiserver')).filter((n) => n.startsWith('state.json')), [], 'state.json and its stale temp file are gone');
  // The counter carries on from the imported 9 (the controllers may write first: ServiceAccounts, Events).
  const next = s1.create<Pod>('pods', pod('new', { nodeName: 'node-1' }));
  t.true(Number(next.metadata.resourceVersion) >= 10);
  s1.close();
  const s2 = openStore({ stateDir: dir });
  t.teardown(() => s2.close());
  t.deepEqual(s2.list('pods').items.map((x) => x.metadata.name), ['new', 'old']);
  // The imported namespaces kept their uids (the store adds kube-node-lease and kube-public beside them).
  const uids = s2.list('namespaces').items.map((x) => x.metadata.uid);
  t.true(uids.includes('u-default') && uids.includes('u-kube-system'), uids.join(' '));
});

test('persistence failure rolls the mutation back and reports 500', (t) => {
  let fail = false;
  const inner = new MemoryPersister();
  const persister: StorePersister = {
    load: () => inner.load(),
    commit: (batch) => {
      if (fail) throw new Error('disk full');
      inner.commit(batch);
    },
    close: () => {},
  };
  const store = openStore({ persister });
  const rv = store.resourceVersion();
  const seen: string[] = [];
  store.watch('pods', { resourceVersion: rv }, (ev) => seen.push(ev.object.metadata.name));
  fail = true;
  const e = apiErr(t, () => store.create('pods', pod('lost')));
  t.is(e.code, 500);
  t.regex(e.message, /disk full/);
  t.is(store.resourceVersion(), rv);
  t.is(store.tryGet('pods', 'lost', 'default'), undefined);
  t.deepEqual(seen, [], 'watchers never see an event that was not persisted');
  fail = false;
  store.create('pods', pod('kept'));
  t.deepEqual(seen, ['kept']);
});

test('persistence: the history is one window by revision, bounded in count and bytes, compacted on disk as etcd compacts', (t) => {
  const persister = new MemoryPersister();
  const s1 = openStore({ persister, historyLimit: 3 });
  const versions: string[] = [];
  // Bound pods: an unschedulable one would also get a FailedScheduling Event, another history entry.
  for (const n of ['a', 'b', 'c', 'd', 'e']) versions.push(s1.create<Pod>('pods', pod(n, { nodeName: 'node-1' })).metadata.resourceVersion);
  const tail: string[] = [];
  s1.watch('pods', { resourceVersion: versions[1] }, (ev) => tail.push(ev.object.metadata.name));
  t.deepEqual(tail, ['c', 'd', 'e']);
  t.is(apiErr(t, () => s1.watch('pods', { resourceVersion: versions[0] }, () => {})).code, 410);
  // Superseded revisions leave the log once out of the window: only current objects and the window remain.
  for (let i = 0; i < 20; i++) s1.patch('pods', 'a', { metadata: { labels: { i: String(i) } } }, { namespace: 'default' });
  // Current objects: the pods and whatever the controllers made beside them (namespaces, ServiceAccounts, Events).
  const objects = persister.load()!.objects.length;
  t.true(persister.size() <= objects + 3, `log rows ${persister.size()} stay at ${objects} objects + a window of 3`);
  const s2 = openStore({ persister, historyLimit: 3 });
  t.deepEqual(s2.list('pods'), s1.list('pods'));
  t.is(s2.oldestResumableVersion(), s1.oldestResumableVersion());
  const after: string[] = [];
  s2.watch('pods', { resourceVersion: s1.oldestResumableVersion() }, (ev) => after.push(`${ev.type} ${ev.object.metadata.labels?.i}`));
  t.deepEqual(after, ['MODIFIED 17', 'MODIFIED 18', 'MODIFIED 19']);

  // A byte budget keeps big objects from filling the window: the newest event always stays.
  const big = openStore({ persister: new MemoryPersister(), historyBytes: 10_000 });
  const blob = 'x'.repeat(4_000);
  for (let i = 0; i < 10; i++) big.create('namespaces', { metadata: { name: `cm-${i}`, annotations: { blob } } });
  const seen: string[] = [];
  big.watch('namespaces', { resourceVersion: big.oldestResumableVersion() }, (ev) => seen.push(ev.object.metadata.name));
  t.deepEqual(seen, ['cm-8', 'cm-9']);
});

test('persistence: a delete row holds no object; its event is rebuilt from the previous revision after a restart', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'podlab-cp-del-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const s1 = openStore({ stateDir: dir });
  const before = s1.resourceVersion();
  // A ConfigMap: a Pod's delete is graceful now (deletionTimestamp first, removal after the drain).
  s1.create('configmaps', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'gone', namespace: 'default', labels: { app: 'x' } }, data: {} }, { namespace: 'default' });
  const del = s1.delete<KubeObject>('configmaps', 'gone', { namespace: 'default' });
  s1.close();
  const s2 = openStore({ stateDir: dir });
  t.teardown(() => s2.close());
  const seen: string[] = [];
  s2.watch('configmaps', { resourceVersion: before, labelSelector: 'app=x' }, (ev) => seen.push(`${ev.type} ${ev.object.metadata.name}@${ev.object.metadata.resourceVersion}`));
  t.is(seen.length, 2);
  t.is(seen[1], `DELETED gone@${del.metadata.resourceVersion}`);
  const p = new SqlitePersister(dir);
  t.teardown(() => p.close());
  t.is(p.load()?.objects.some((o) => o.json.includes('"gone"')), false);
});
