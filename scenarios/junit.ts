/**
 * JUnit XML for CI: one <testsuite> per scenario run, one <testcase> per
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

export function toJunit(r: ScenarioReport): string {
  const broken = r.verdict === 'error' || r.verdict === 'interrupted';
  const tests = r.asserts.length + (broken ? 1 : 0);
  const failures = r.asserts.filter((a) => !a.ok).length;
  const errors = broken ? 1 : 0;
  const cls = `podlab.scenario.${r.scenario.name}`;
  const out: string[] = [];
  out.push('<?xml version="1.0" encoding="UTF-8"?>');
  out.push(`<testsuites name="podlab scenarios" tests="${tests}" failures="${failures}" errors="${errors}" time="${secs(r.durationMs)}">`);
  out.push(`  <testsuite name="${xmlEscape(r.scenario.name)}" tests="${tests}" failures="${failures}" errors="${errors}" skipped="0" time="${secs(r.durationMs)}" timestamp="${xmlEscape(r.startedAt.replace(/\.\d+Z$/, ''))}">`);
  out.push('    <properties>');
  const props: [string, string][] = [
    ['seed', String(r.seed)],
    ['file', r.scenario.file],
    ['verdict', r.verdict],
    ['labNet', r.labNet],
    ['nodes', String(r.lab.nodes)],
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
  out.push('</testsuites>');
  return out.join('\n') + '\n';
}
