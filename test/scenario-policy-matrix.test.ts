/**
 * The network-policy-matrix library scenario (lab network 127.0.30.0/24):
 * reachability truth tables over two namespaces of two pods on TCP 80 and
 * 81, asserted before, between and after `policy` faults (deny-all ingress,
 * then namespace y allowed on port 80 only, then both removed). Every cell
 * is a real nc -z through the emulated data plane and the enforcer. A table
 * wrong in one cell fails on that cell (127.0.31.0/24).
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { Progress } from '../scenarios/progress.ts';
import { runScenario } from '../scenarios/runner.ts';
import { parseScenario } from '../scenarios/validate.ts';
import { ROOT, runLibraryScenario } from './helpers/scenario.ts';

test.serial('library: network-policy-matrix passes, every cell of every table as written', async (t) => {
  const { report, summary } = await runLibraryScenario(t, 'network-policy-matrix', '127.0.30.0/24');
  t.is(report.verdict, 'pass', summary);
  t.is(report.summary.asserts, 4);
  const json = JSON.stringify(report);
  // The per-port tables as observed: y reaches x on 80 but not on 81.
  t.true(json.includes('tcp/80: X. ..'), json.slice(0, 4000));
  t.true(json.includes('tcp/81: X. X.'), json.slice(0, 4000));
});

test.serial('a table that is wrong in one cell fails, naming that pair, port and what was seen', async (t) => {
  const file = path.join(ROOT, 'scenarios/library/network-policy-matrix.yaml');
  // x-isolated with y/a -> x/a written as allowed: only that cell is wrong, on both ports.
  const text = fs.readFileSync(file, 'utf8').replace('        - "X X . ."\n        - "X X . ."', '        - ". X . ."\n        - "X X . ."');
  const sc = parseScenario(text, file);
  sc.timeline = sc.timeline.slice(0, 3);
  const step = sc.timeline[2].body;
  if (step.type !== 'assert') return t.fail('x-isolated is an assert');
  step.conditions[0].withinMs = undefined;
  const report = await runScenario(sc, { labNet: '127.0.31.0/24', progress: new Progress({ write: () => {} }) });
  t.is(report.verdict, 'fail');
  const json = JSON.stringify(report);
  t.true(json.includes('tcp/80 y/a -> x/a: expected ., got X (timed out)'), json.slice(0, 4000));
  t.true(json.includes('tcp/81 y/a -> x/a: expected ., got X (timed out)'), json.slice(0, 4000));
  t.true(json.includes('2 of 24 pairs differ'), json.slice(0, 4000));
});
