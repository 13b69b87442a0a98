/**
 * common/utc-time.ts writes what Date's toISOString and toUTCString write (their first call costs a process
 * ICU's time-zone data), for seeded random instants across and beyond the four-digit years, and fails as they do
 * on an invalid time.
 */
import test from 'ava';
import { SeededRng } from '../common/rng.ts';
import { imfFixdate, isoUtc, utcMonthName } from '../common/utc-time.ts';

/** Date's range is ±8.64e15 ms; four-digit years run from -62167219200000 (0000-01-01) to 253402300799999. */
function instants(seed: number, n: number): number[] {
  const rng = new SeededRng(seed);
  const out = [0, -1, 1, -62167219200000, -62167219200001, 253402300799999, 253402300800000, 8.64e15, -8.64e15, Date.UTC(2026, 11, 5, 3, 10, 29, 262), Date.UTC(2024, 1, 29, 23, 59, 59, 999)];
  for (let i = 0; i < n; i++) out.push(rng.int(-62167219200000, 253402300799999));
  for (let i = 0; i < n / 10; i++) out.push(Math.round((rng.next() * 2 - 1) * 8.64e15));
  return out;
}

test('isoUtc writes toISOString with 3 fractional digits, and drops or extends them as Kubernetes times do', (t) => {
  for (const ms of instants(1, 20_000)) {
    const iso = new Date(ms).toISOString();
    t.is(isoUtc(ms), iso);
    t.is(isoUtc(ms, 0), iso.replace(/\.\d{3}Z$/, 'Z'));
    t.is(isoUtc(ms, 6), iso.replace(/\.(\d{3})Z$/, '.$1000Z'));
    t.is(isoUtc(ms, 9), iso.replace(/\.(\d{3})Z$/, '.$1000000Z'));
  }
  t.is(isoUtc(Date.UTC(2026, 11, 5, 3, 4, 5, 6), 0), '2026-12-05T03:04:05Z');
  t.is(isoUtc(Date.UTC(2026, 11, 5, 3, 4, 5, 6), 6), '2026-12-05T03:04:05.006000Z');
});

test('imfFixdate writes toUTCString, and utcMonthName its month', (t) => {
  for (const ms of instants(2, 20_000)) {
    const d = new Date(ms);
    t.is(imfFixdate(d), d.toUTCString());
    t.is(utcMonthName(d), d.toUTCString().split(' ')[2]);
  }
  t.is(imfFixdate(new Date(Date.UTC(2026, 11, 5, 3, 10, 29))), 'Sat, 05 Dec 2026 03:10:29 GMT');
});

test('an invalid time fails or prints as Date does', (t) => {
  t.throws(() => isoUtc(NaN), { instanceOf: RangeError });
  t.throws(() => isoUtc(8.64e15 + 1, 0), { instanceOf: RangeError });
  t.is(imfFixdate(new Date(NaN)), 'Invalid Date');
});
