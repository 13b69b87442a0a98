import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startApiServer } from '../control-plane/apiserver.ts';
import { ApiClient } from '../control-plane/client.ts';
import { ApiError } from '../control-plane/errors.ts';
import { MemoryPersister, type PersistBatch, type StorePersister } from '../control-plane/persistence.ts';
import { openStore, type Store } from '../control-plane/store.ts';
import type { Pod } from '../control-plane/types.ts';

function pod(name: string): object {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name }, spec: { containers: [{ name: 'c', image: 'busybox' }] } };
}

/** A MemoryPersister that records every batch and fails the commits the test arms it to fail. */
class RecordingPersister implements StorePersister {
  readonly atomicCommit = true;
  readonly batches: PersistBatch[] = [];
  failNext = 0;
  private readonly inner = new MemoryPersister();
  load() {
    return this.inner.load();
  }
  commit(batch: PersistBatch): void {
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error('disk full');
    }
    this.inner.commit(batch);
    this.batches.push(batch);
  }
  close(): void {}
}

function grouped(): { store: Store; persister: RecordingPersister; seen: { name: string; rv: number }[] } {
  const persister = new RecordingPersister();
  const store = openStore({ persister, groupCommit: true });
  const seen: { name: string; rv: number }[] = [];
  store.watch('pods', { resourceVersion: store.resourceVersion() }, (ev) => seen.push({ name: ev.object.metadata.name, rv: Number(ev.object.metadata.resourceVersion) }));
  return { store, persister, seen };
}

const podKeys = (b: PersistBatch) => b.changes.filter((c) => c.resource === '/pods').map((c) => c.key);

test('group commit: the writes of one turn share one transaction; events and the commit promise follow it, in resourceVersion order', async (t) => {
  const { store, persister, seen } = grouped();
  const before = persister.batches.length;
  const rv0 = Number(store.resourceVersion());
  const created = ['a', 'b', 'c'].map((n) => store.create<Pod>('pods', pod(n)));
  t.deepEqual(created.map((p) => Number(p.metadata.resourceVersion)), [rv0 + 1, rv0 + 2, rv0 + 3], 'each write has its own revision at once');
  t.is(persister.batches.length, before, 'nothing is persisted before the turn ends');
  t.deepEqual(seen, [], 'no watcher sees a write before its transaction commits');
  t.is(store.resourceVersion(), String(rv0), 'a pending revision is not handed out');
  await store.committed();
  t.deepEqual(podKeys(persister.batches[before]), ['default/a', 'default/b', 'default/c'], 'one transaction for the three writes');
  t.deepEqual(seen, [
    { name: 'a', rv: rv0 + 1 },
    { name: 'b', rv: rv0 + 2 },
    { name: 'c', rv: rv0 + 3 },
  ]);
  t.true(Number(store.resourceVersion()) >= rv0 + 3, 'committed, with what controllers wrote in reaction (their Events)');
  // The next turn's writes are a transaction of their own.
  const n = persister.batches.length;
  store.create('pods', pod('d'));
  await store.committed();
  t.deepEqual(podKeys(persister.batches[n]), ['default/d']);
});

test('group commit: a failed transaction fails exactly its writes and rolls them back; the transactions around it stand', async (t) => {
  const { store, persister, seen } = grouped();
  store.create('pods', pod('kept-before'));
  await store.committed();
  const rvAfterKept = store.resourceVersion();
  persister.failNext = 1;
  store.create('pods', pod('lost-1'));
  store.patch('pods', 'kept-before', { metadata: { labels: { x: 'lost' } } }, { namespace: 'default' });
  store.create('pods', pod('lost-2'));
  const failed = store.committed();
  const err = await t.throwsAsync(failed, { instanceOf: ApiError });
  t.is(err?.code, 500);
  t.regex(err?.message ?? '', /disk full/);
  t.is(store.tryGet('pods', 'lost-1', 'default'), undefined);
  t.is(store.tryGet('pods', 'lost-2', 'default'), undefined);
  t.is(store.get<Pod>('pods', 'kept-before', 'default').metadata.labels, undefined, 'the patch in the failed transaction is undone');
  t.is(store.resourceVersion(), rvAfterKept, 'the failed revisions are given back');
  store.create('pods', pod('kept-after'));
  await store.committed();
  t.deepEqual(
    seen.map((s) => s.name),
    ['kept-before', 'kept-after'],
    'watchers saw only committed writes',
  );
  t.is(seen[1].rv, Number(rvAfterKept) + 1, 'the next write reuses the first failed revision, which nobody saw');
  t.deepEqual(
    store.list('pods').items.map((p) => p.metadata.name),
    ['kept-after', 'kept-before'],
  );
});

test('group commit: a watch started while writes are pending replays each committed revision once', async (t) => {
  const persister = new RecordingPersister();
  const store = openStore({ persister, groupCommit: true });
  const rv0 = store.resourceVersion();
  store.create('pods', pod('p1'));
  const seen: string[] = [];
  store.watch('pods', { resourceVersion: rv0 }, (ev) => seen.push(`${ev.type} ${ev.object.metadata.name}`));
  t.deepEqual(seen, ['ADDED p1'], 'the watch commits what is pending first, then replays it');
  await store.committed();
  store.create('pods', pod('p2'));
  await store.committed();
  t.deepEqual(seen, ['ADDED p1', 'ADDED p2']);
});

test('group commit over HTTP: concurrent POSTs share a transaction, each answered after it; a failed transaction is a 500 for exactly its requests', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'podlab-group-commit-'));
  const persister = new RecordingPersister();
  // A window wide enough that requests from this one process (each on its own connection) meet in it.
  const api = await startApiServer({ host: '127.0.0.1', port: 0, stateDir: dir, persister, groupCommitWindowMs: 50 });
  t.teardown(async () => {
    await api.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const client = new ApiClient(api.url, { credentials: api.credentials });
  await client.list('pods');
  // Ten POSTs in flight at once: fewer transactions than writes, and every 201 is on "disk".
  const before = persister.batches.length;
  const names = Array.from({ length: 10 }, (_, i) => `c-${i}`);
  const created = await Promise.all(names.map((n) => client.create<Pod>('pods', pod(n), 'default')));
  const podBatches = persister.batches.slice(before).filter((b) => podKeys(b).length > 0);
  const persistedKeys = podBatches.flatMap(podKeys);
  for (const p of created) t.true(persistedKeys.includes(`default/${p.metadata.name}`), `${p.metadata.name} was persisted before its 201`);
  t.true(podBatches.length < names.length, `10 concurrent creates took ${podBatches.length} transactions`);
  t.log(`10 concurrent creates: ${podBatches.length} transactions`);

  // The next transaction fails: the requests in it get 500, the store keeps none of their writes, later requests succeed.
  persister.failNext = 1;
  const results = await Promise.allSettled(['f-1', 'f-2', 'f-3'].map((n) => client.create<Pod>('pods', pod(n), 'default')));
  const failedNames = ['f-1', 'f-2', 'f-3'].filter((_, i) => results[i].status === 'rejected');
  t.true(failedNames.length >= 1, 'at least the first transaction of the three failed');
  for (const [i, r] of results.entries()) {
    const name = `f-${i + 1}`;
    if (r.status === 'rejected') {
      t.true(r.reason instanceof ApiError && r.reason.code === 500, `${name}: ${String(r.reason)}`);
      t.is(api.store.tryGet('pods', name, 'default'), undefined, `${name} was rolled back`);
    } else {
      t.truthy(api.store.tryGet('pods', name, 'default'), `${name} answered 201 and is stored`);
    }
  }
  const after = await client.create<Pod>('pods', pod('after'), 'default');
  t.is(after.metadata.name, 'after');
  const listed = (await client.list<Pod>('pods', { namespace: 'default' })).items.map((p) => p.metadata.name);
  for (const n of failedNames) t.false(listed.includes(n));
  t.true(listed.includes('after') && names.every((n) => listed.includes(n)));
});
