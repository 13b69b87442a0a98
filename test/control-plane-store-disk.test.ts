/**
 * The SQLite store on a full disk (a small tmpfs mounted for the test, root
 * only): a create that cannot be written is a 500 and is not there after a
 * restart (no false acknowledgement), while DELETE still works, because a
 * delete row carries no object and compaction leaves free pages behind.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readdirSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiError } from '../control-plane/errors.ts';
import { openStore } from '../control-plane/store.ts';
import { isRoot } from '../hostnet/netns.ts';
import { requireOrSkip } from './helpers/lab.ts';

const pod = (name: string, blob = '') => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name, annotations: { blob } }, spec: { containers: [{ name: 'c', image: 'busybox' }] } });

/** Writes zeros until the file system says ENOSPC. */
function fillDisk(path: string): void {
  const fd = openSync(path, 'w');
  const chunk = Buffer.alloc(64 * 1024);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
  // Also the last partial block.
  const fd2 = openSync(path, 'a');
  try {
    for (;;) writeSync(fd2, Buffer.alloc(512));
  } catch {
    /* full */
  } finally {
    closeSync(fd2);
  }
}

test('full disk: creates fail with 500 and are not there after a restart; DELETE still works', (t) => {
  if (!requireOrSkip(t, isRoot(), 'mounting a small tmpfs needs root')) return;
  const dir = mkdtempSync(join(tmpdir(), 'podlab-cp-full-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=24m', 'tmpfs', dir]);
  t.teardown(() => {
    execFileSync('umount', [dir]);
    rmSync(dir, { recursive: true, force: true });
  });
  const s1 = openStore({ stateDir: dir });
  for (let i = 0; i < 20; i++) s1.create('pods', pod(`p-${i}`, 'y'.repeat(10_000)));
  fillDisk(join(dir, 'filler'));

  let failed = 0;
  for (let i = 0; i < 5; i++) {
    const err = t.throws(() => {
      s1.create('pods', pod(`big-${i}`, 'z'.repeat(1024 * 1024)));
    }, { instanceOf: ApiError });
    t.is(err.code, 500);
    t.regex(err.message, /cannot persist state/);
    failed++;
  }
  t.is(failed, 5);
  for (let i = 0; i < 10; i++) s1.delete('pods', `p-${i}`, { namespace: 'default' });
  t.is(s1.list('pods').items.length, 10);
  s1.close();

  const s2 = openStore({ stateDir: dir });
  t.teardown(() => s2.close());
  t.deepEqual(
    s2.list('pods').items.map((p) => p.metadata.name),
    Array.from({ length: 10 }, (_, i) => `p-${i + 10}`).sort(),
    'the deletes are durable and no refused create came back',
  );
  t.deepEqual(readdirSync(join(dir, 'apiserver')).filter((n) => !/^store\.db(-wal|-shm|\.reserve)?$/.test(n)), [], 'no temp files');
});
