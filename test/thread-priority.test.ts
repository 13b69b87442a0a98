import test from 'ava';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const helper = fileURLToPath(new URL('./helpers/v8-platform-threads.ts', import.meta.url));

interface Report {
  main: number;
  found: number[];
  lowered: number[];
  nice: Record<string, number>;
  before: Record<string, number>;
  after: Record<string, number>;
}

function run(env: Record<string, string> = {}): Report {
  const r = spawnSync(process.execPath, ['--v8-pool-size=1', '--single-threaded-gc', '--import', 'tsx', helper], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 30_000 });
  if (r.status !== 0) throw new Error(`helper exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Report;
}

test('V8 platform thread: found by what it does, lowered to nice 10, the calling thread left at nice 0', (t) => {
  if (process.platform !== 'linux') return t.pass();
  const r = run();
  // One platform worker thread with --v8-pool-size=1, and not the calling thread.
  t.is(r.found.length, 1);
  const [tid] = r.found;
  t.not(tid, r.main);
  t.deepEqual(r.lowered, [tid]);
  t.is(r.nice[tid], 10);
  t.is(r.nice[r.main], 0);
  // Every other thread keeps the process's priority.
  for (const [other, n] of Object.entries(r.nice)) if (Number(other) !== tid) t.is(n, 0, `thread ${other}`);
  // Independent of the probe: the optimizing compiler's job for a hot function ran on that thread.
  t.true(r.after[tid] > r.before[tid], 'the platform thread ran while a hot function was optimized');
});

test('PODLAB_V8_PLATFORM=unchanged leaves the platform thread at nice 0', (t) => {
  if (process.platform !== 'linux') return t.pass();
  const r = run({ PODLAB_V8_PLATFORM: 'unchanged' });
  t.is(r.found.length, 1);
  t.deepEqual(r.lowered, []);
  t.is(r.nice[r.found[0]], 0);
});
