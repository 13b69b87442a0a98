/**
 * The result of a scenario run, as written to `--report out.json` and read by
 * the JUnit and HTML writers. Times are scenario milliseconds: 0 is the start
 * of the timeline (the lab is up and every workload pod Running).
 */
import type { LabSpec } from './model.ts';
import type { AssertRecord, Band, StepRecord } from './context.ts';
import type { FlowResult } from './traffic.ts';

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
export function toJson(r: ScenarioReport): string {
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
