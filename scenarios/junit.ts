/**
 * JUnit XML for CI: one <testsuite> per scenario run (per backend in a comparison), one <testcase> per
 * checked condition (asserts and `wait until`), a <failure> with expected,
 * actual and the explanation for each failed one, and an <error> testcase when
 * the run itself broke (a step error, the lab would not start, Ctrl-C).
 */
import type { ScenarioReport } from './report.ts';

/** Escapes text for XML content and attribute values; drops characters XML 1.0 forbids. */
export function xmlEscape(s: string): string {
  return s
    .replace(/[^\t\n\r\x20-\ud7ff\ue000-\ufffd\u{10000}-\u{10ffff}]/gu, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

const secs = (ms: number) => (Math.max(0, ms) / 1000).toFixed(3);

interface Counts {
  tests: number;
  failures: number;
  errors: number;
}

function countsOf(r: ScenarioReport): Counts {
  const broken = r.verdict === 'error' || r.verdict === 'interrupted';
  return { tests: r.asserts.length + (broken ? 1 : 0), failures: r.asserts.filter((a) => !a.ok).length, errors: broken ? 1 : 0 };
}

/** JUnit XML of one run, or of a comparison's runs (one testsuite per backend, classnames ending in the backend). */
export function toJunit(reports: ScenarioReport | ScenarioReport[]): string {
  const runs = Array.isArray(reports) ? reports : [reports];
  const total = runs.map(countsOf).reduce((a, c) => ({ tests: a.tests + c.tests, failures: a.failures + c.failures, errors: a.errors + c.errors }), { tests: 0, failures: 0, errors: 0 });
  const time = runs.reduce((a, r) => a + r.durationMs, 0);
  const out: string[] = [];
  out.push('<?xml version="1.0" encoding="UTF-8"?>');
  out.push(`<testsuites name="podlab scenarios" tests="${total.tests}" failures="${total.failures}" errors="${total.errors}" time="${secs(time)}">`);
  for (const r of runs) out.push(...suite(r, runs.length > 1));
  out.push('</testsuites>');
  return out.join('\n') + '\n';
}

function suite(r: ScenarioReport, perBackend: boolean): string[] {
  const { tests, failures, errors } = countsOf(r);
  const broken = errors > 0;
  const cls = `podlab.scenario.${r.scenario.name}${perBackend ? `.${r.lab.backend}` : ''}`;
  const out: string[] = [];
  out.push(`  <testsuite name="${xmlEscape(perBackend ? `${r.scenario.name} [${r.lab.backend}]` : r.scenario.name)}" tests="${tests}" failures="${failures}" errors="${errors}" skipped="0" time="${secs(r.durationMs)}" timestamp="${xmlEscape(r.startedAt.replace(/\.\d+Z$/, ''))}">`);
  out.push('    <properties>');
  const props: [string, string][] = [
    ['seed', String(r.seed)],
    ['file', r.scenario.file],
    ['verdict', r.verdict],
    ['labNet', r.labNet],
    ['nodes', String(r.lab.nodes)],
    ['backend', r.lab.backend],
    ['labUpMs', String(r.labUpMs)],
  ];
  for (const [k, v] of props) out.push(`      <property name="${k}" value="${xmlEscape(v)}"/>`);
  out.push('    </properties>');
  for (const a of r.asserts) {
    const time = secs(a.tookMs ?? 0);
    const head = `    <testcase classname="${xmlEscape(cls)}" name="${xmlEscape(`step ${a.step + 1}: ${a.name}`)}" time="${time}" file="${xmlEscape(r.scenario.file)}" line="${a.line}"`;
    if (a.ok) {
      out.push(`${head}/>`);
      continue;
    }
    const msg = `expected ${a.expected}, got ${a.actual}`;
    const body = [`expected: ${a.expected}`, `actual:   ${a.actual}`, a.message ?? '', `at ${r.scenario.file}:${a.line}, ${(a.atMs / 1000).toFixed(1)}s into the timeline, seed ${r.seed}`].filter(Boolean).join('\n');
    out.push(`${head}>`);
    out.push(`      <failure message="${xmlEscape(msg)}" type="${xmlEscape(a.kind)}">${xmlEscape(body)}</failure>`);
    out.push('    </testcase>');
  }
  if (broken) {
    out.push(`    <testcase classname="${xmlEscape(cls)}" name="run" time="${secs(r.durationMs)}" file="${xmlEscape(r.scenario.file)}">`);
    out.push(`      <error message="${xmlEscape(r.error ?? r.verdict)}" type="${r.verdict}">${xmlEscape(r.error ?? '')}</error>`);
    out.push('    </testcase>');
  }
  const log = r.steps.map((s) => `${(s.startMs / 1000).toFixed(1)}s step ${s.index + 1}: ${s.summary}${s.detail ? ` -> ${s.detail}` : ''}${s.error ? ` ERROR ${s.error}` : ''}`).join('\n');
  out.push(`    <system-out>${xmlEscape(log)}</system-out>`);
  out.push('  </testsuite>');
  return out;
}
