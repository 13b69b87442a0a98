/**
 * The lab's processes start with heap-size flags (lab/local-lab.ts), which would make V8 refuse the code cache
 * Node's binary carries for its built-in modules. Their preload (common/heap-flags-reset.cjs) sets the flags back
 * once the heap is sized: V8's cache tag (its version, CPU features and flag hash: what a code cache must match)
 * is then plain Node's, and the young generation keeps the bound the command line gave it.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { AGENT_NODE_FLAGS, apiserverNodeFlags } from '../lab/local-lab.ts';

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
