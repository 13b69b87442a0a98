import test from 'ava';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const helper = fileURLToPath(new URL('./helpers/own-compiles.ts', import.meta.url));

/** Each optimizing compile V8 traced: the function's name and whether it ran concurrently. */
function compiles(env: Record<string, string> = {}): { fn: string; mode: string }[] {
  const r = spawnSync(process.execPath, ['--v8-pool-size=1', '--trace-opt', '--import', 'tsx', helper], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60_000, maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0 || !/^done /m.test(r.stdout)) throw new Error(`helper exited ${r.status}: ${r.stderr.slice(-2000)}`);
  const out: { fn: string; mode: string }[] = [];
  for (const m of r.stdout.matchAll(/\[compiling method \S+ <JSFunction (\S+) [^\]]*mode: ConcurrencyMode::k(\w+)\]/g)) out.push({ fn: m[1], mode: m[2] });
  return out;
}

test("kube-proxy's worker optimizes its code on its own thread; the data plane's thread and later workers keep the platform thread", (t) => {
  const c = compiles();
  const modes = (fn: string) => [...new Set(c.filter((x) => x.fn === fn).map((x) => x.mode))];
  // The engine's rule walker runs only in the worker: compiled there, synchronously.
  t.deepEqual(modes('walkCompiled'), ['Synchronous']);
  // Compiled while the flag was off for the starting worker (this thread was busy, its 'online' not yet handled): still concurrent.
  t.deepEqual(modes('hotOnMain'), ['Concurrent']);
  t.deepEqual(modes('hotInLaterWorker'), ['Concurrent']);
});

test('PODLAB_ENGINE_COMPILES=shared leaves the worker on the platform thread', (t) => {
  const c = compiles({ PODLAB_ENGINE_COMPILES: 'shared' });
  t.true(c.some((x) => x.fn === 'walkCompiled'));
  t.deepEqual(c.filter((x) => x.mode === 'Synchronous'), []);
});
