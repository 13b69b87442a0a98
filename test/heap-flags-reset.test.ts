/**
 * The lab's processes start with heap-size flags (lab/local-lab.ts), which would make V8 refuse the code cache
 * Node's binary carries for its built-in modules. Their preload (common/heap-flags-reset.cjs) sets the flags back
 * once the heap is sized: V8's cache tag (its version, CPU features and flag hash: what a code cache must match)
 * is then plain Node's, and the young generation keeps the bound the command line gave it, in worker threads too
 * (common/young-generation.ts, which startModuleWorker applies).
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { AGENT_NODE_FLAGS, apiserverNodeFlags } from '../lab/local-lab.ts';
import { ROOT } from '../lab/lab.ts';

/** Churns short-lived objects, then prints V8's cache tag and the young generation's size. */
const PROBE = `
const v8 = require('node:v8');
let keep = [];
for (let i = 0; i < 1e6; i++) { keep.push({ a: i, b: 'x' + i }); if (keep.length > 20000) keep = []; }
const young = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size;
process.stdout.write(JSON.stringify({ tag: v8.cachedDataVersionTag(), youngMb: young / 2 ** 20 }));
`;

const probe = (flags: readonly string[]): { tag: number; youngMb: number } =>
  JSON.parse(execFileSync(process.execPath, [...flags, '-e', PROBE], { encoding: 'utf8' })) as { tag: number; youngMb: number };

const withoutPreload = (flags: readonly string[]): string[] => flags.filter((f, i) => f !== '--require' && flags[i - 1] !== '--require');

const plain = probe([]);

for (const [who, flags, semiMb] of [
  ['an agent', AGENT_NODE_FLAGS, 1],
  ['the apiserver', apiserverNodeFlags(), 2],
] as const) {
  test(`${who}'s V8 flags keep Node's code cache and their young generation bound`, (t) => {
    const bare = probe(withoutPreload(flags));
    t.not(bare.tag, plain.tag, 'the heap-size flag alone changes the cache tag (else this test shows nothing)');
    const started = probe(flags);
    t.is(started.tag, plain.tag, 'with the preload, the cache tag is plain Node\'s');
    // Two semi-spaces of the given size (and a page of slack); V8 grows them to 16 MB each without the flag.
    t.true(started.youngMb <= 2 * semiMb + 0.5, `young generation ${started.youngMb.toFixed(2)} MB with ${semiMb} MB semi-spaces`);
    t.true(plain.youngMb > 4 * semiMb, `plain Node's young generation grew to ${plain.youngMb.toFixed(2)} MB under the same churn`);
  });
}

/** In a process started with the agents' flags: a worker's young generation after churn, with and without the limits. */
const WORKERS = `
import { Worker } from 'node:worker_threads';
import { workerResourceLimits } from ${JSON.stringify(pathToFileURL(path.join(ROOT, 'common/young-generation.ts')).href)};
// Dynamic imports: the worker's eval code inherits --input-type=module.
const churn = \`
Promise.all([import('node:v8'), import('node:worker_threads')]).then(([v8, wt]) => {
  let keep = [];
  for (let i = 0; i < 1e6; i++) { keep.push({ a: i, b: 'x' + i }); if (keep.length > 20000) keep = []; }
  wt.parentPort.postMessage(v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size / 2 ** 20);
});
\`;
const youngMb = (resourceLimits) => new Promise((resolve) => {
  const w = new Worker(churn, { eval: true, resourceLimits });
  w.once('message', (mb) => void w.terminate().then(() => resolve(mb)));
});
process.stdout.write(JSON.stringify({ limited: await youngMb(workerResourceLimits()), unlimited: await youngMb(undefined) }));
`;

test("an agent's worker threads keep the young generation of its command line", (t) => {
  const out = JSON.parse(execFileSync(process.execPath, [...AGENT_NODE_FLAGS, '--import', 'tsx', '--input-type=module', '-e', WORKERS], { encoding: 'utf8', cwd: ROOT })) as { limited: number; unlimited: number };
  t.true(out.limited <= 2.5, `a worker with workerResourceLimits(): young generation ${out.limited.toFixed(2)} MB`);
  t.true(out.unlimited > 4, `without them V8's defaults apply once the flag is reset (${out.unlimited.toFixed(2)} MB): the limits are needed`);
});

test('workerResourceLimits reads the semi-space flag as node takes it (=N, dashes or underscores)', async (t) => {
  const { workerResourceLimits } = await import('../common/young-generation.ts');
  t.deepEqual(workerResourceLimits(['--max-semi-space-size=1']), { maxYoungGenerationSizeMb: 3 });
  t.deepEqual(workerResourceLimits(['--single-threaded-gc', '--max-semi-space-size=2']), { maxYoungGenerationSizeMb: 6 });
  t.deepEqual(workerResourceLimits(['--max_semi_space_size=4']), { maxYoungGenerationSizeMb: 12 });
  t.deepEqual(workerResourceLimits(['--max-semi-space-size=0']), {}, "0 is V8's default: no limit of ours");
  t.deepEqual(workerResourceLimits([]), {});
});
