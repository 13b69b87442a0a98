/**
 * The apiserver's EventRecorder: a repeat folds into the existing Event, Events expire after the TTL, and at
 * most the cap exist, the oldest going first, a tenth of the cap at a time.
 */
import test from 'ava';
import { ManualClock, MANUAL_WALL_START_MS } from '../common/clock.ts';
import { EVENTS, type CoreEvent } from '../control-plane/core-resources.ts';
import { EventRecorder } from '../control-plane/event-recorder.ts';
import { MemoryPersister } from '../control-plane/persistence.ts';
import { openStore, type Store } from '../control-plane/store.ts';
import type { KubeObject } from '../control-plane/types.ts';

function setup(opts: { ttlMs?: number; maxEvents?: number }): { store: Store; clock: ManualClock; recorder: EventRecorder } {
  const clock = new ManualClock(MANUAL_WALL_START_MS);
  const store = openStore({ persister: new MemoryPersister(), clock });
  return { store, clock, recorder: new EventRecorder(store, opts) };
}

function pod(name: string): KubeObject {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default', uid: `uid-${name}` } } as KubeObject;
}

const events = (store: Store): CoreEvent[] => store.objectsOf(EVENTS) as CoreEvent[];
const SOURCE = { component: 'default-scheduler' };

test('a repeat of the same event folds into its count', (t) => {
  const { store, clock, recorder } = setup({});
  recorder.record(pod('a'), 'Normal', 'Scheduled', 'assigned to node-1', SOURCE);
  clock.advance(1000);
  recorder.record(pod('a'), 'Normal', 'Scheduled', 'assigned to node-1', SOURCE);
  t.deepEqual(
    events(store).map((e) => [e.involvedObject.name, e.count]),
    [['a', 2]],
  );
});

test('events older than the TTL go when the next new one is recorded', (t) => {
  const { store, clock, recorder } = setup({ ttlMs: 10_000 });
  recorder.record(pod('old'), 'Normal', 'Scheduled', 'assigned', SOURCE);
  clock.advance(11_000);
  recorder.record(pod('new'), 'Normal', 'Scheduled', 'assigned', SOURCE);
  t.deepEqual(
    events(store).map((e) => e.involvedObject.name),
    ['new'],
  );
});

test('at the cap the oldest tenth goes, so the next events are recorded without a scan', (t) => {
  const { store, clock, recorder } = setup({ maxEvents: 50 });
  const counts: number[] = [];
  for (let i = 0; i < 120; i++) {
    recorder.record(pod(`p${i}`), 'Normal', 'Scheduled', 'assigned', SOURCE);
    counts.push(store.countOf(EVENTS));
    clock.advance(1000);
  }
  t.true(Math.max(...counts) <= 50, `at most the cap: ${Math.max(...counts)}`);
  // The 51st event finds 50 and leaves 44 of them (room for itself and a tenth of the cap).
  t.deepEqual(counts.slice(48, 53), [49, 50, 45, 46, 47]);
  const names = new Set(events(store).map((e) => e.involvedObject.name));
  t.true(names.has('p119'), 'the newest is kept');
  t.false(names.has('p0'), 'the oldest went');
  // What is kept is the newest ones, in one unbroken run.
  const kept = [...names].map((n) => Number(n?.slice(1))).sort((a, b) => a - b);
  t.deepEqual(kept, Array.from({ length: kept.length }, (_, i) => 120 - kept.length + i));
});
