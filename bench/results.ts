/**
 * bench/results/latest.json: one entry per measure, each with its value, unit,
 * the baseline measured in the same run and the ratio, so every issue adds its
 * measures to the same file.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Measure {
  name: string;
  value: number;
  unit: string;
  /** What the value is compared with, measured in the same run. */
  baselineName: string;
  baseline: number;
  /** value / baseline. For times, above 1 means slower than the baseline. */
  ratio: number;
  /**
   * For figures measured in interleaved rounds (each pod run right after its baseline's): the median of the
   * rounds' own ratios. The machine's speed drifts between rounds (a raw echo fell from 88k to 59k pps over
   * one run's five), and a pair measured back to back shares its drift where the medians of the two series
   * need not come from the same rounds.
   */
  pairedRatio?: number;
  note?: string;
}

export const RESULTS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results', 'latest.json');

/** Merges measures into latest.json by name (measures of other runs stay). */
export function writeResults(measures: Measure[]): void {
  let old: { measures?: Measure[] } = {};
  try {
    old = JSON.parse(fs.readFileSync(RESULTS, 'utf8')) as { measures?: Measure[] };
  } catch {
    /* first run */
  }
  const byName = new Map((old.measures ?? []).map((m) => [m.name, m]));
  for (const m of measures) byName.set(m.name, m);
  fs.mkdirSync(path.dirname(RESULTS), { recursive: true });
  const doc = { updatedAt: new Date().toISOString(), node: process.version, measures: [...byName.values()] };
  fs.writeFileSync(RESULTS, JSON.stringify(doc, null, 2) + '\n');
}

export function measure(name: string, value: number, unit: string, baselineName: string, baseline: number, note?: string): Measure {
  return { name, value: round(value), unit, baselineName, baseline: round(baseline), ratio: round(value / baseline, 4), note };
}

/**
 * A figure measured in interleaved rounds: `values[i]` right after (or with) `baselines[i]`. Value and
 * baseline are the medians of their series, `ratio` their ratio as for every figure, `pairedRatio` the
 * median of the rounds' own ratios.
 */
export function measureRounds(name: string, values: number[], unit: string, baselineName: string, baselines: number[], note?: string): Measure {
  if (values.length === 0 || values.length !== baselines.length) throw new Error(`${name}: ${values.length} rounds against ${baselines.length} of the baseline`);
  return { ...measure(name, median(values), unit, baselineName, median(baselines), note), pairedRatio: round(median(values.map((v, i) => v / baselines[i])), 4) };
}

function round(x: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** The median of some samples (the mean of the middle two for an even count). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Median of `runs` timings of fn (ms). */
export function timeMs(fn: () => unknown, runs: number): number {
  const t: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    fn();
    t.push(performance.now() - t0);
  }
  return t.sort((a, b) => a - b)[Math.floor(runs / 2)];
}
