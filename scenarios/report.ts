/**
 * The result of a scenario run, as written to `--report out.json` and read by
 * the JUnit and HTML writers. Times are scenario milliseconds: 0 is the start
 * of the timeline (the lab is up and every workload pod Running).
 */
import type { LabSpec } from './model.ts';
import type { AssertRecord, Band, StepRecord } from './context.ts';
import type { FlowResult } from './traffic.ts';
import { fmtPct } from './units.ts';

export type Verdict = 'pass' | 'fail' | 'error' | 'interrupted';

export interface ScenarioReport {
  format: 'podlab-scenario-report/1';
  scenario: { name: string; description: string; file: string };
  seed: number;
  labNet: string;
  lab: LabSpec;
  startedAt: string;
  /** Time to bring the lab up and the workload Running, before the timeline. */
  labUpMs: number;
  /** Length of the timeline (until every flow ended). */
  durationMs: number;
  verdict: Verdict;
  /** Why the run stopped, for error and interrupted. */
  error?: string;
  summary: { asserts: number; passed: number; failed: number };
  steps: StepRecord[];
  asserts: AssertRecord[];
  flows: FlowResult[];
  faults: Band[];
}

/** Exit codes of `podlab scenario run`. */
export const EXIT = { pass: 0, fail: 1, invalid: 2, error: 3, interrupted: 130 } as const;

export function exitCodeOf(v: Verdict): number {
  return EXIT[v];
}

/** The report as JSON text. */
export function toJson(r: ScenarioReport | ComparisonReport): string {
  return JSON.stringify(r, null, 2) + '\n';
}

/** A few lines for the end of a run: verdict, counts, each failed assertion. */
export function formatSummary(r: ScenarioReport): string {
  const lines: string[] = [];
  const dur = `${(r.durationMs / 1000).toFixed(1)}s`;
  const head = { pass: 'PASS', fail: 'FAIL', error: 'ERROR', interrupted: 'INTERRUPTED' }[r.verdict];
  lines.push(`${head}: ${r.scenario.name} (seed ${r.seed}): ${r.summary.passed}/${r.summary.asserts} assertions passed, timeline ${dur}`);
  for (const a of r.asserts.filter((x) => !x.ok)) {
    lines.push(`  failed at ${r.scenario.file}:${a.line} (step ${a.step + 1}${a.stepName ? ` ${a.stepName}` : ''}): ${a.name}`);
    lines.push(`    expected ${a.expected}`);
    lines.push(`    actual   ${a.actual}`);
    if (a.message) lines.push(`    ${a.message}`);
  }
  if (r.error) lines.push(`  ${r.verdict === 'interrupted' ? 'interrupted' : 'error'}: ${r.error}`);
  return lines.join('\n') + '\n';
}

/**
 * One scenario on several backends (`lab.backend: [vxlan, host-gw, ...]`): the
 * same seed, workload and timeline on each backend in turn, each in a fresh
 * lab of its own, and the reports side by side.
 */
export interface ComparisonReport {
  format: 'podlab-scenario-comparison/1';
  scenario: { name: string; description: string; file: string };
  seed: number;
  /** Every backend asked for, in order; `runs` may be shorter when the comparison was interrupted. */
  backends: string[];
  verdict: Verdict;
  runs: ScenarioReport[];
}

const SEVERITY: Verdict[] = ['pass', 'fail', 'error', 'interrupted'];

/** The comparison's verdict: its worst run's, and interrupted when a backend never ran. */
export function overallVerdict(runs: ScenarioReport[], asked: number): Verdict {
  if (runs.length < asked) return 'interrupted';
  return runs.reduce<Verdict>((w, r) => (SEVERITY.indexOf(r.verdict) > SEVERITY.indexOf(w) ? r.verdict : w), 'pass');
}

const ms = (x: number) => (x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : x.toFixed(0));

/**
 * The side-by-side table: one row per flow (delivery, p50/p99 latency) plus
 * lab start-up and assertions, one column per backend. Plain text with padded
 * columns, as `column -t` would lay it out.
 */
export function comparisonTable(c: ComparisonReport): string[][] {
  const flows = [...new Set(c.runs.flatMap((r) => r.flows.map((f) => f.name)))];
  const rows: string[][] = [['', ...c.backends]];
  const cell = (backend: string, fn: (r: ScenarioReport) => string) => {
    const r = c.runs.find((x) => x.lab.backend === backend);
    return r ? fn(r) : 'not run';
  };
  rows.push(['verdict', ...c.backends.map((b) => cell(b, (r) => r.verdict.toUpperCase()))]);
  rows.push(['assertions', ...c.backends.map((b) => cell(b, (r) => `${r.summary.passed}/${r.summary.asserts}`))]);
  rows.push(['lab up', ...c.backends.map((b) => cell(b, (r) => `${(r.labUpMs / 1000).toFixed(1)} s`))]);
  for (const name of flows) {
    rows.push([
      `flow ${name}`,
      ...c.backends.map((b) =>
        cell(b, (r) => {
          const f = r.flows.find((x) => x.name === name);
          if (!f) return '-';
          const lat = f.latencyMs ? ` p50 ${ms(f.latencyMs.p50)} p99 ${ms(f.latencyMs.p99)} ms` : ' no replies';
          return `${f.delivery === null ? '-' : fmtPct(f.delivery)}${lat}`;
        }),
      ),
    ]);
  }
  return rows;
}

/** Each run's summary, then the table. */
export function formatComparison(c: ComparisonReport): string {
  const out: string[] = [];
  const head = { pass: 'PASS', fail: 'FAIL', error: 'ERROR', interrupted: 'INTERRUPTED' }[c.verdict];
  out.push(`${head}: ${c.scenario.name} (seed ${c.seed}) on ${c.backends.length} backends: ${c.backends.join(', ')}`);
  for (const r of c.runs) out.push(...formatSummary(r).trimEnd().split('\n').map((l) => `  [${r.lab.backend}] ${l}`));
  const rows = comparisonTable(c);
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  out.push('');
  for (const r of rows) out.push(r.map((x, i) => x.padEnd(widths[i])).join('  ').trimEnd());
  return out.join('\n') + '\n';
}
