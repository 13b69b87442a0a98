import test from 'ava';
import { ManualClock } from '../common/clock.ts';
import { SeededRng } from '../common/rng.ts';
import { Impairment, validateImpairment } from '../overlay/impairment.ts';

const pkt = (i: number) => Buffer.from([i & 0xff, (i >> 8) & 0xff, 0, 0]);

function run(spec: ConstructorParameters<typeof Impairment>[0], seed: number, n = 2000) {
  const clock = new ManualClock();
  const imp = new Impairment(spec, new SeededRng(seed), clock);
  const got: number[] = [];
  for (let i = 0; i < n; i++) imp.apply(pkt(i), (b) => got.push(b.readUInt16LE(0)));
  clock.advance(60_000);
  return { got, stats: imp.stats };
}

test('loss drops about the configured share, and the same seed drops the same packets', (t) => {
  const a = run({ loss: 0.1 }, 7);
  const b = run({ loss: 0.1 }, 7);
  const c = run({ loss: 0.1 }, 8);
  t.deepEqual(a.got, b.got);
  t.notDeepEqual(a.got, c.got);
  t.true(a.stats.lost > 140 && a.stats.lost < 260, `lost ${a.stats.lost} of 2000`);
  t.is(a.got.length + a.stats.lost, 2000);
});

test('blackhole drops everything', (t) => {
  const r = run({ blackhole: true }, 1, 100);
  t.is(r.got.length, 0);
  t.is(r.stats.blackholed, 100);
});

test('duplicate sends some packets twice', (t) => {
  const r = run({ duplicate: 0.05 }, 3);
  t.is(r.got.length, 2000 + r.stats.duplicated);
  t.true(r.stats.duplicated > 50 && r.stats.duplicated < 160);
});

test('delay holds packets until the clock reaches it; jitter stays within bounds', (t) => {
  const clock = new ManualClock();
  const imp = new Impairment({ delayMs: 20, jitterMs: 5 }, new SeededRng(1), clock);
  const at: number[] = [];
  for (let i = 0; i < 50; i++) imp.apply(pkt(i), () => at.push(clock.now()));
  t.is(at.length, 0);
  clock.advance(14.9);
  t.is(at.length, 0);
  clock.advance(20);
  t.is(at.length, 50);
  t.true(at.every((x) => x >= 15 && x <= 25));
});

test('reorder without delay lets later packets overtake, losing none', (t) => {
  const r = run({ reorder: 0.1 }, 5);
  t.is(r.got.length, 2000);
  t.deepEqual([...r.got].sort((a, b) => a - b), Array.from({ length: 2000 }, (_, i) => i));
  const inversions = r.got.filter((v, i) => i > 0 && v < r.got[i - 1]).length;
  t.true(inversions > 100, `inversions ${inversions}`);
});

test('corrupt flips exactly one bit', (t) => {
  const clock = new ManualClock();
  const imp = new Impairment({ corrupt: 1 }, new SeededRng(2), clock);
  const orig = Buffer.alloc(64);
  let out: Buffer | undefined;
  imp.apply(orig, (b) => (out = b));
  let bits = 0;
  for (const byte of out!) bits += byte.toString(2).split('1').length - 1;
  t.is(bits, 1);
  t.true(orig.every((b) => b === 0), 'the original buffer is untouched');
});

test('validateImpairment names the bad field', (t) => {
  t.regex(validateImpairment({ loss: 2 })!, /^loss:/);
  t.regex(validateImpairment({ delayMs: -1 })!, /^delayMs:/);
  t.is(validateImpairment({ loss: 0.5, delayMs: 10 }), null);
});
