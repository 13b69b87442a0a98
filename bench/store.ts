/**
 * The apiserver's store (SQLite, in-process, fsync on every commit as in the
 * apiserver), measured where a whole-state rewrite used to hurt:
 *
 * - 100 label patches of a Pod carrying a 3 MiB annotation: bytes on disk
 *   after (store.db + WAL) against the object's own size, and one patch's
 *   time against one small create's;
 * - p99 create latency with 5,000 objects in the store against the p99 with
 *   100 (a write should cost its object, not the store: ratio near 1);
 * - restart (open + load) with 10,000 objects, against reading and parsing
 *   the same objects' JSON from one file (what the load cannot beat);
 * - group commit (the apiserver's mode): 2,000 creates arriving 20 to an
 *   event-loop turn, each awaited until its transaction is on disk, against
 *   the same creates one transaction each.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openStore, type Store } from '../control-plane/store.ts';
import { measure, type Measure } from './results.ts';

const MiB = 1024 * 1024;

function pod(name: string, annotations?: Record<string, string>): unknown {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name, ...(annotations ? { annotations } : {}) }, spec: { containers: [{ name: 'c', image: 'busybox' }] } };
}

function dirBytes(dir: string): number {
  let total = 0;
  for (const name of fs.readdirSync(dir)) total += fs.statSync(path.join(dir, name)).size;
  return total;
}

function p99(samples: number[]): number {
  const s = [...samples].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(s.length * 0.99) - 1)];
}

function timed(fn: () => void): number {
  const t0 = performance.now();
  fn();
  return performance.now() - t0;
}

function withStore<T>(fn: (store: Store, dir: string) => T, groupCommit = false): T {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-bench-store-'));
  const store = openStore({ stateDir: dir, groupCommit });
  try {
    return fn(store, dir);
  } finally {
    store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function bigPatches(): Measure[] {
  return withStore((store, dir) => {
    const blob = 'x'.repeat(3 * MiB);
    store.create('pods', pod('big', { blob }));
    const patchMs: number[] = [];
    const smallMs: number[] = [];
    for (let i = 0; i < 100; i++) {
      patchMs.push(timed(() => store.patch('pods', 'big', { metadata: { labels: { i: String(i) } } }, { namespace: 'default' })));
      if (i % 10 === 0) smallMs.push(timed(() => store.create('namespaces', { metadata: { name: `unrelated-${i}` } })));
    }
    const onDisk = dirBytes(path.join(dir, 'apiserver'));
    const rss = process.memoryUsage().rss;
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    return [
      measure('store: on disk after 100 patches of a 3 MiB object', onDisk / MiB, 'MiB', 'the object itself', blob.length / MiB, `target under 50 MB; process RSS ${(rss / MiB).toFixed(0)} MiB`),
      measure('store: one patch of the 3 MiB object', mean(patchMs), 'ms', 'an unrelated Namespace create meanwhile', mean(smallMs), 'mean of 100 patches / 10 creates'),
    ];
  });
}

function createScaling(): Measure[] {
  return withStore((store) => {
    const lat: number[] = [];
    for (let i = 0; i < 5_100; i++) lat.push(timed(() => store.create('pods', pod(`p-${i}`))));
    const at100 = p99(lat.slice(0, 100));
    const at5000 = p99(lat.slice(5_000, 5_100));
    return [measure('store: p99 create with 5,000 objects stored', at5000, 'ms', 'p99 create with 0-100 objects stored', at100, 'target ratio <= 2; fsync per create')];
  });
}

function restart(): Measure[] {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-bench-store-'));
  try {
    const s1 = openStore({ stateDir: dir });
    for (let i = 0; i < 10_000; i++) s1.create('pods', pod(`p-${i}`));
    const items = s1.listJson('pods');
    s1.close();
    const flat = path.join(dir, 'flat.json');
    fs.writeFileSync(flat, items);
    const baseline = timed(() => {
      JSON.parse(fs.readFileSync(flat, 'utf8'));
    });
    let s2: Store | undefined;
    const ms = timed(() => {
      s2 = openStore({ stateDir: dir });
    });
    const n = s2?.list('pods').items.length;
    s2?.close();
    return [measure('store: restart with 10,000 objects', ms, 'ms', 'read + JSON.parse of the same 10,000 pods from one file', baseline, `target under 2,000 ms; ${n} pods loaded`)];
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const GROUP_WRITES = 2_000;
const PER_TURN = 20;

/** Creates/s and transactions for GROUP_WRITES creates, PER_TURN of them per turn, each awaited until durable. */
async function concurrentCreates(groupCommit: boolean): Promise<{ perSecond: number; commits: number }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-bench-store-'));
  const store = openStore({ stateDir: dir, groupCommit });
  try {
    await store.settled();
    const before = store.commitCount;
    const t0 = performance.now();
    for (let i = 0; i < GROUP_WRITES; i += PER_TURN) {
      for (let j = i; j < i + PER_TURN; j++) store.create('pods', pod(`p-${j}`));
      await store.committed();
    }
    const ms = performance.now() - t0;
    return { perSecond: (GROUP_WRITES / ms) * 1000, commits: store.commitCount - before };
  } finally {
    store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function groupCommit(): Promise<Measure[]> {
  const single = await concurrentCreates(false);
  const grouped = await concurrentCreates(true);
  return [
    measure(
      `store: creates/s, ${PER_TURN} per event-loop turn, group commit`,
      grouped.perSecond,
      'creates/s',
      'the same creates, one transaction each',
      single.perSecond,
      `${GROUP_WRITES} creates in ${grouped.commits} transactions (${single.commits} without); each durable (fsync) before it is answered`,
    ),
  ];
}

/** All store measures. */
export async function benchStore(): Promise<Measure[]> {
  return [...bigPatches(), ...createScaling(), ...restart(), ...(await groupCommit())];
}
