/**
 * How the property-based fuzz suites run (fast-check). In `npm test` each
 * property is seeded and bounded (FUZZ_RUNS cases, 200 by default), so a
 * failure replays exactly from the printed seed and path. `npm run fuzz` lets
 * them run for FUZZ_SECONDS each, for hours if asked:
 *   FUZZ_SECONDS=3600 npm run fuzz
 *   FUZZ_SEED=123 FUZZ_RUNS=100000 npx ava test/fuzz-codecs.test.ts
 * A case a long run finds becomes a golden regression case in the suite.
 */
import fc from 'fast-check';

const seconds = Number(process.env.FUZZ_SECONDS ?? 0);

/** fast-check's parameters for one property, as the environment asks. */
export function fuzzParams<T>(): fc.Parameters<T> {
  const seed = Number(process.env.FUZZ_SEED ?? 20261204);
  if (seconds > 0) return { seed, numRuns: Number.MAX_SAFE_INTEGER, interruptAfterTimeLimit: seconds * 1000, markInterruptAsFailure: false };
  return { seed, numRuns: Number(process.env.FUZZ_RUNS ?? 200) };
}

/** Checks a property with the suite's parameters (throws fast-check's report, seed and path included). */
export function fuzz<T>(property: fc.IProperty<T>): void {
  fc.assert(property, fuzzParams<T>());
}

/** The same for asynchronous properties. */
export async function fuzzAsync<T>(property: fc.IAsyncProperty<T>): Promise<void> {
  await fc.assert(property, fuzzParams<T>());
}

/** Bytes that start like a real message and then go wrong: a valid buffer with a few bytes changed, cut or extended. */
export function mutated(valid: Buffer): fc.Arbitrary<Buffer> {
  return fc
    .tuple(fc.array(fc.tuple(fc.nat({ max: Math.max(0, valid.length - 1) }), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }), fc.integer({ min: -valid.length, max: 16 }), fc.uint8Array({ maxLength: 16 }))
    .map(([flips, cut, tail]) => {
      const b = Buffer.from(valid);
      for (const [i, v] of flips) if (i < b.length) b[i] = v;
      return cut < 0 ? b.subarray(0, b.length + cut) : Buffer.concat([b, Buffer.from(tail.subarray(0, cut))]);
    });
}

/** Arbitrary bytes, up to a jumbo frame. */
export const bytes = fc.uint8Array({ maxLength: 2000 }).map((u) => Buffer.from(u));
