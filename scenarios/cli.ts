/**
 * `podlab scenario run|list|validate`: the verbs, registered on the main
 * program by cli/main.ts. Exit codes of `run`: 0 every assertion passed,
 * 1 an assertion failed, 2 the file is invalid (nothing was started),
 * 3 the run broke (a step error, the lab would not start), 130 interrupted.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { LabError, ROOT } from '../lab/lab.ts';
import { toComparisonHtml, toHtml } from './html.ts';
import { toJunit } from './junit.ts';
import { Progress } from './progress.ts';
import { EXIT, exitCodeOf, formatComparison, formatSummary, toJson, type ComparisonReport, type ScenarioReport } from './report.ts';
import { runComparison, runScenario } from './runner.ts';
import { ScenarioError, loadScenarioFile } from './validate.ts';

export const LIBRARY_DIR = path.join(ROOT, 'scenarios/library');

/** A file path, or the name of a library scenario (`node-failure`). */
export function resolveScenarioPath(arg: string): string {
  if (fs.existsSync(arg)) return arg;
  const lib = path.join(LIBRARY_DIR, arg.endsWith('.yaml') ? arg : `${arg}.yaml`);
  if (!arg.includes('/') && fs.existsSync(lib)) return lib;
  return arg; // loadScenarioFile reports it as unreadable
}

/** The library's files, sorted. */
export function libraryFiles(): string[] {
  return fs
    .readdirSync(LIBRARY_DIR)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((f) => path.join(LIBRARY_DIR, f));
}

function seedArg(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < -(2 ** 31) || n > 2 ** 31 - 1) throw new LabError(`--seed: '${v}' is not a 32-bit integer`);
  return n;
}

function fail(e: unknown): void {
  if (e instanceof ScenarioError) {
    process.stderr.write(`podlab: ${e.message}\n`);
    process.exitCode = EXIT.invalid;
  } else if (e instanceof LabError) {
    process.stderr.write(`podlab: ${e.message}\n`);
    process.exitCode = EXIT.error;
  } else throw e;
}

export function registerScenarioCommand(program: Command): void {
  const sc = program
    .command('scenario')
    .description('fault-injection scenarios: run a timeline of traffic, faults and assertions against a fresh lab (run | list | validate)');

  sc.command('run')
    .description('run a scenario in a fresh lab of its own (own state dir and loopback network) and tear it down; exit 0 pass, 1 failed assertion, 2 invalid file, 3 error, 130 Ctrl-C')
    .argument('<file>', 'scenario YAML file, or the name of a library scenario (see: podlab scenario list)')
    .option('--seed <n>', "override the scenario's seed (every random choice and impairment decision derives from it)", seedArg)
    .option('--report <file>', 'write the JSON report (steps, flows with lost sequence numbers and latency, assertions)')
    .option('--junit <file>', 'write JUnit XML (one testcase per assertion)')
    .option('--html <file>', 'write a self-contained HTML report (timeline with fault bands, delivery and latency plots)')
    .option('--lab-net <cidr>', 'loopback /24 for the lab (default: the first free of 127.0.200.0/24 ... 127.0.249.0/24)')
    .option('--keep-state', "keep the lab's state directory (every process's log) after the run")
    .action(async (file: string, o: { seed?: number; report?: string; junit?: string; html?: string; labNet?: string; keepState?: boolean }) => {
      let scenario;
      try {
        scenario = loadScenarioFile(resolveScenarioPath(file));
      } catch (e) {
        return fail(e);
      }
      const ac = new AbortController();
      let signals = 0;
      const onSignal = (sig: string) => {
        signals++;
        process.stderr.write(signals === 1 ? `\npodlab: ${sig}: stopping the scenario and tearing its lab down...\n` : 'podlab: still tearing down (processes are stopped by pid; this takes a few seconds)\n');
        ac.abort();
      };
      const handlers = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).map((sig) => [sig, () => onSignal(sig)] as const);
      for (const [sig, fn] of handlers) process.on(sig, fn);
      // A closed stdout/stderr (| head, a dead terminal) must not kill the run before its teardown.
      const ignore = () => {};
      process.stdout.on('error', ignore);
      process.stderr.on('error', ignore);
      try {
        const progress = new Progress(process.stderr);
        const opts = { seed: o.seed, labNet: o.labNet, signal: ac.signal, progress, keepState: o.keepState };
        // One backend: a run's report. A list of backends: a comparison, each run as above plus the table.
        const report: ScenarioReport | ComparisonReport = scenario.backends.length > 1 ? await runComparison(scenario, opts) : await runScenario(scenario, opts);
        const single = report.format === 'podlab-scenario-report/1' ? report : undefined;
        const runs = single ? [single] : (report as ComparisonReport).runs;
        const written: string[] = [];
        if (o.report) {
          fs.writeFileSync(o.report, toJson(report));
          written.push(o.report);
        }
        if (o.junit) {
          fs.writeFileSync(o.junit, toJunit(single ?? runs));
          written.push(o.junit);
        }
        if (o.html) {
          fs.writeFileSync(o.html, single ? toHtml(single) : toComparisonHtml(report as ComparisonReport));
          written.push(o.html);
        }
        process.stdout.write(single ? formatSummary(single) : formatComparison(report as ComparisonReport));
        if (written.length) process.stderr.write(`podlab: reports: ${written.join(', ')}\n`);
        process.exitCode = exitCodeOf(report.verdict);
      } catch (e) {
        fail(e);
      } finally {
        for (const [sig, fn] of handlers) process.off(sig, fn);
      }
    });

  sc.command('list')
    .description('the scenario library (scenarios/library), one line each')
    .action(() => {
      const rows = libraryFiles().map((f) => {
        try {
          const s = loadScenarioFile(f);
          return [s.name, s.description.split('\n')[0]];
        } catch (e) {
          return [path.basename(f, '.yaml'), `INVALID: ${(e as Error).message}`];
        }
      });
      const w = Math.max(...rows.map((r) => r[0].length));
      for (const [n, d] of rows) process.stdout.write(`${n.padEnd(w)}  ${d}\n`);
      process.stdout.write(`\nrun one: podlab scenario run NAME [--seed N] [--html report.html]\n`);
    });

  sc.command('validate')
    .description('check scenario files without running them; errors read FILE:LINE: FIELD: message (exit 2)')
    .argument('<file...>', 'scenario files (or library names)')
    .action((files: string[]) => {
      for (const f of files) {
        try {
          const s = loadScenarioFile(resolveScenarioPath(f));
          const flows = s.timeline.reduce((n, st) => n + (st.body.type === 'traffic' ? st.body.flows.length : 0), 0);
          const asserts = s.timeline.reduce((n, st) => n + (st.body.type === 'assert' ? st.body.conditions.length : st.body.type === 'wait' && st.body.until ? 1 : 0), 0);
          process.stdout.write(`${s.file}: valid: ${s.name}, ${s.lab.nodes} nodes${s.backends.length > 1 ? ` on ${s.backends.length} backends (${s.backends.join(', ')})` : ''}, ${s.timeline.length} steps, ${flows} flows, ${asserts} conditions, seed ${s.seed}\n`);
        } catch (e) {
          fail(e);
        }
      }
    });
}
