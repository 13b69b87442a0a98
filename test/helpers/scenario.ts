/**
 * Helpers for the scenario tests: a tiny JSON Schema checker (the draft-07
 * subset scenarios/schema.json uses), a tiny XML well-formedness check for the
 * JUnit report, the podlab binary, and a scan of /proc for processes whose
 * command line names a directory (a lab's state dir).
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';
import { Progress } from '../../scenarios/progress.ts';
import { formatComparison, formatSummary, type ComparisonReport, type ScenarioReport } from '../../scenarios/report.ts';
import { runComparison, runScenario } from '../../scenarios/runner.ts';
import { loadScenarioFile } from '../../scenarios/validate.ts';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = path.join(ROOT, 'bin/podlab.js');

export type Schema = Record<string, unknown>;

/** Errors of `value` against `schema` (empty = valid): type, properties, required, additionalProperties, items, enum, const, pattern, bounds, oneOf/anyOf/allOf, $ref. */
export function checkSchema(root: Schema, value: unknown): string[] {
  const errors: string[] = [];
  const resolve = (ref: string): Schema => ref.replace(/^#\//, '').split('/').reduce((s: Schema, k) => s[k] as Schema, root);
  const typeOf = (v: unknown) => (Array.isArray(v) ? 'array' : v === null ? 'null' : Number.isInteger(v) ? 'integer' : typeof v);
  const walk = (s: Schema, v: unknown, at: string, out: string[]): void => {
    if (s.$ref) return walk(resolve(s.$ref as string), v, at, out);
    if (s.type) {
      const t = typeOf(v);
      const want = s.type as string;
      if (!(t === want || (want === 'number' && t === 'integer'))) return void out.push(`${at}: expected ${want}, got ${t}`);
    }
    if (s.const !== undefined && v !== s.const) out.push(`${at}: expected ${JSON.stringify(s.const)}`);
    if (s.enum && !(s.enum as unknown[]).includes(v)) out.push(`${at}: ${JSON.stringify(v)} not in ${JSON.stringify(s.enum)}`);
    if (typeof v === 'string') {
      if (s.pattern && !new RegExp(s.pattern as string).test(v)) out.push(`${at}: '${v}' does not match ${s.pattern as string}`);
      if (s.maxLength !== undefined && v.length > (s.maxLength as number)) out.push(`${at}: too long`);
    }
    if (typeof v === 'number') {
      if (s.minimum !== undefined && v < (s.minimum as number)) out.push(`${at}: below minimum`);
      if (s.maximum !== undefined && v > (s.maximum as number)) out.push(`${at}: above maximum`);
      if (s.exclusiveMinimum !== undefined && v <= (s.exclusiveMinimum as number)) out.push(`${at}: not above exclusiveMinimum`);
    }
    if (Array.isArray(v)) {
      if (s.minItems !== undefined && v.length < (s.minItems as number)) out.push(`${at}: too few items`);
      if (s.items) v.forEach((x, i) => walk(s.items as Schema, x, `${at}[${i}]`, out));
    }
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      const o = v as Record<string, unknown>;
      for (const r of (s.required as string[] | undefined) ?? []) if (!(r in o)) out.push(`${at}: missing ${r}`);
      const props = (s.properties as Record<string, Schema> | undefined) ?? {};
      for (const [k, x] of Object.entries(o)) {
        if (props[k]) walk(props[k], x, `${at}.${k}`, out);
        else if (s.additionalProperties === false) out.push(`${at}: unexpected property ${k}`);
        else if (s.additionalProperties && typeof s.additionalProperties === 'object') walk(s.additionalProperties as Schema, x, `${at}.${k}`, out);
      }
    }
    for (const sub of (s.allOf as Schema[] | undefined) ?? []) walk(sub, v, at, out);
    if (s.oneOf) {
      const ok = (s.oneOf as Schema[]).filter((sub) => {
        const e: string[] = [];
        walk(sub, v, at, e);
        return !e.length;
      }).length;
      if (ok !== 1) out.push(`${at}: matches ${ok} of oneOf's ${(s.oneOf as Schema[]).length} branches`);
    }
    if (s.anyOf && !(s.anyOf as Schema[]).some((sub) => {
      const e: string[] = [];
      walk(sub, v, at, e);
      return !e.length;
    })) out.push(`${at}: matches none of anyOf`);
  };
  walk(root, value, '$', errors);
  return errors;
}

/** Null if `xml` is well-formed (one root, balanced tags, quoted attributes, known entities), else the problem. */
export function xmlProblem(xml: string): string | null {
  let s = xml.replace(/^<\?xml[^?]*\?>\s*/, '');
  const stack: string[] = [];
  let roots = 0;
  while (s.length) {
    const lt = s.indexOf('<');
    const text = lt < 0 ? s : s.slice(0, lt);
    if (/&(?!(amp|lt|gt|quot|apos|#\d+|#x[0-9a-f]+);)/i.test(text)) return `bad entity in text: ${text.slice(0, 40)}`;
    if (text.trim() && !stack.length) return 'text outside the root element';
    if (lt < 0) break;
    s = s.slice(lt);
    const m = /^<(\/?)([A-Za-z_][\w.-]*)((?:\s+[\w:.-]+="[^"<]*")*)\s*(\/?)>/.exec(s);
    if (!m) return `malformed tag at: ${s.slice(0, 60)}`;
    if (/&(?!(amp|lt|gt|quot|apos|#\d+|#x[0-9a-f]+);)/i.test(m[3])) return `bad entity in attributes of <${m[2]}>`;
    if (m[1]) {
      if (stack.pop() !== m[2]) return `unbalanced </${m[2]}>`;
    } else if (!m[4]) {
      if (!stack.length) roots++;
      stack.push(m[2]);
    } else if (!stack.length) roots++;
    s = s.slice(m[0].length);
  }
  if (stack.length) return `unclosed <${stack[stack.length - 1]}>`;
  return roots === 1 ? null : `${roots} root elements`;
}

export function podlab(args: string[], opts: { env?: Record<string, string>; timeoutMs?: number; cwd?: string } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd: opts.cwd ?? ROOT, env: { ...process.env, ...opts.env }, timeout: opts.timeoutMs ?? 120_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Pids of live processes whose command line contains `needle`. */
export function processesMentioning(needle: string): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      if (fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(needle)) out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out;
}

/**
 * Runs a library scenario in-process on `net`, logs its timings, and checks
 * that no process of its lab survives the run. A scenario on several backends
 * runs as a comparison, one lab after another on the same net, each checked.
 */
export async function runLibraryScenario(t: ExecutionContext, name: string, net: string, seed?: number): Promise<{ report: ScenarioReport; summary: string }> {
  const { report, summary } = await runLibrary(t, name, net, seed);
  if (report.format !== 'podlab-scenario-report/1') throw new Error(`${name} runs on ${report.backends.length} backends: use runLibraryComparison`);
  return { report, summary };
}

export async function runLibraryComparison(t: ExecutionContext, name: string, net: string, seed?: number): Promise<{ report: ComparisonReport; summary: string }> {
  const { report, summary } = await runLibrary(t, name, net, seed);
  if (report.format !== 'podlab-scenario-comparison/1') throw new Error(`${name} runs on one backend: use runLibraryScenario`);
  return { report, summary };
}

async function runLibrary(t: ExecutionContext, name: string, net: string, seed?: number): Promise<{ report: ScenarioReport | ComparisonReport; summary: string }> {
  const sc = loadScenarioFile(path.join(ROOT, 'scenarios/library', `${name}.yaml`));
  const stateDirs: string[] = [];
  const lines: string[] = [];
  const started = Date.now();
  const o = { labNet: net, seed, onLab: (d: string) => stateDirs.push(d), progress: new Progress({ write: (s) => lines.push(s) }) };
  const report = sc.backends.length > 1 ? await runComparison(sc, o) : await runScenario(sc, o);
  const wall = Date.now() - started;
  const runs = report.format === 'podlab-scenario-report/1' ? [report] : report.runs;
  const summary = report.format === 'podlab-scenario-report/1' ? formatSummary(report) : formatComparison(report);
  for (const r of runs) t.log(`${name}${runs.length > 1 ? ` [${r.lab.backend}]` : ''}: ${r.verdict}, lab up ${(r.labUpMs / 1000).toFixed(1)}s, timeline ${(r.durationMs / 1000).toFixed(1)}s, ${r.summary.passed}/${r.summary.asserts} assertions`);
  t.log(`${name}: wall ${(wall / 1000).toFixed(1)}s`);
  if (report.verdict !== 'pass') t.log(lines.join('').trimEnd());
  t.is(stateDirs.length, runs.length, 'every run brought its lab up');
  for (const d of stateDirs) {
    t.deepEqual(processesMentioning(d), [], `every process of the lab in ${d} is gone`);
    t.false(fs.existsSync(d), `the state dir ${d} is removed`);
  }
  return { report, summary };
}
