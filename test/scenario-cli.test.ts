/**
 * `podlab scenario run` as a user runs it (bin/podlab.js in a child process):
 * the designed-to-fail scenario exits 1 and writes well-formed JSON, JUnit and
 * HTML reports; Ctrl-C in the middle of a run (with a frozen agent, the
 * hardest case) exits 130 and leaves no process, state dir or network lock.
 * Lab networks 127.0.113.0/24 and 127.0.114.0/24.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { down } from '../lab/lab.ts';
import type { ScenarioReport } from '../scenarios/report.ts';
import { BIN, podlab, processesMentioning, xmlProblem } from './helpers/scenario.ts';

function tmp(t: import('ava').ExecutionContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-scn-cli-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('designed-to-fail exits 1 with readable failures and well-formed JSON, JUnit and HTML reports', async (t) => {
  const dir = tmp(t);
  const [json, xml, html] = ['r.json', 'r.xml', 'r.html'].map((f) => path.join(dir, f));
  const r = await podlab(['scenario', 'run', 'designed-to-fail', '--lab-net', '127.0.113.0/24', '--seed', '5', '--report', json, '--junit', xml, '--html', html]);
  t.is(r.code, 1, r.stderr);
  t.regex(r.stdout, /^FAIL: designed-to-fail \(seed 5\): 1\/3 assertions passed/);
  t.regex(r.stdout, /expected delivery >= 90% in \[cut, \+1\.5s\]/);
  t.regex(r.stderr, /^\[ +\d+\.\ds\] 3\/7 cut: fault: partition node-2 from node-1/m, 'a line per step');
  t.regex(r.stderr, /FAIL traffic survives a partition \(it cannot\): 0% \(0\/\d+\)/);

  const rep = JSON.parse(fs.readFileSync(json, 'utf8')) as ScenarioReport;
  t.is(rep.format, 'podlab-scenario-report/1');
  t.is(rep.seed, 5);
  t.is(rep.verdict, 'fail');
  t.deepEqual(rep.summary, { asserts: 3, passed: 1, failed: 2 });
  t.is(rep.steps.length, 7);
  for (const s of rep.steps) t.true(typeof s.startMs === 'number' && s.endMs! >= s.startMs, JSON.stringify(s));
  const flow = rep.flows[0];
  t.is(flow.name, 'across');
  t.true(flow.lostSeqs.length > 0 && flow.received > 0);
  t.true(flow.latencyMs!.p50 > 0 && flow.latencyMs!.p99 >= flow.latencyMs!.p50);
  t.is(flow.samples.length, flow.sent);
  t.deepEqual(rep.faults.map((b) => [b.kind, b.closedBy]), [['partition', 'heal']]);
  for (const a of rep.asserts) t.true(typeof a.expected === 'string' && typeof a.actual === 'string');

  const junit = fs.readFileSync(xml, 'utf8');
  t.is(xmlProblem(junit), null);
  t.regex(junit, /<testsuite name="designed-to-fail" tests="3" failures="2" errors="0"/);
  t.is((junit.match(/<failure /g) ?? []).length, 2);

  const page = fs.readFileSync(html, 'utf8');
  t.regex(page, /<svg class="timeline"/);
  t.regex(page, /<svg class="plot delivery"[^>]*aria-label="delivery ratio of across"/);
  t.regex(page, /<svg class="plot latency"/);
  t.notRegex(page, /<script|src="http/);
});

test('Ctrl-C mid-run (with a frozen agent) tears everything down and exits 130', async (t) => {
  const dir = tmp(t);
  const file = path.join(dir, 'long.yaml');
  fs.writeFileSync(
    file,
    [
      'name: long',
      'lab: {nodes: 2, podsPerNode: 1}',
      'timeline:',
      '  - traffic: {name: f, from: pod-1a, to: pod-2a, rate: 20, duration: 60s}',
      '  - fault: {kind: freeze, node: node-2}',
      '  - wait: 60s',
      '',
    ].join('\n'),
  );
  const child = spawn(process.execPath, [BIN, 'scenario', 'run', file, '--lab-net', '127.0.114.0/24'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stateDir = '';
  t.teardown(async () => {
    if (child.exitCode === null) child.kill('SIGKILL');
    if (stateDir) await down(stateDir).catch(() => {});
  });
  let stderr = '';
  let stdout = '';
  child.stdout.on('data', (d) => (stdout += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no 'wait 60s' step within 90 s:\n${stderr}`)), 90_000);
    child.stderr.on('data', (d) => {
      stderr += d;
      stateDir ||= /state (\S+)/.exec(stderr)?.[1] ?? '';
      if (/3\/3 wait 60s/.test(stderr)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  t.truthy(stateDir);
  t.true(processesMentioning(stateDir).length >= 3, 'the lab runs');
  const t0 = Date.now();
  child.kill('SIGINT');
  const code = await exited;
  t.log(`exited ${code} ${((Date.now() - t0) / 1000).toFixed(1)}s after SIGINT`);
  t.is(code, 130, stderr);
  t.regex(stderr, /SIGINT: stopping the scenario and tearing its lab down/);
  t.regex(stdout, /^INTERRUPTED: long/);
  t.deepEqual(processesMentioning(stateDir), [], 'no process of the lab is left');
  t.false(fs.existsSync(stateDir));
  t.false(fs.existsSync(path.join(os.tmpdir(), 'podlab-scenario-net-127_0_114_0_24.lock')), 'the network lock is released');
});
