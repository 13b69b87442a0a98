/**
 * Library scenarios, part A (lab network 127.0.110.0/24, one scenario at a
 * time): cross-node, same-node, MTU mismatch, lossy underlay, each must pass;
 * designed-to-fail must fail with readable failed assertions. Every run must
 * leave no process behind. Part B is in scenario-library-b.test.ts.
 */
import test from 'ava';
import { runLibraryScenario } from './helpers/scenario.ts';

const NET = '127.0.110.0/24';

for (const name of ['cross-node', 'same-node', 'mtu-mismatch', 'lossy-underlay']) {
  test.serial(`library: ${name} passes`, async (t) => {
    const { report, summary } = await runLibraryScenario(t, name, NET);
    t.is(report.verdict, 'pass', summary);
    t.true(report.summary.asserts > 0);
  });
}

test.serial('library: designed-to-fail fails, and says what and where', async (t) => {
  const { report, summary } = await runLibraryScenario(t, 'designed-to-fail', NET);
  t.is(report.verdict, 'fail');
  t.deepEqual(report.asserts.map((a) => a.ok), [false, false, true]);
  const [survive, reach] = report.asserts;
  t.is(survive.name, 'traffic survives a partition (it cannot)');
  t.regex(survive.actual, /^0% \(0\/\d+\)$/);
  t.regex(survive.message!, /flow across \(pod-1a -> pod-2a\): 0 of \d+ probes answered in \[cut, \+1\.5s\]/);
  t.regex(reach.message!, /pod-1a -> pod-2a \(10\.244\.2\.\d+\): 0\/2 replies/);
  t.regex(summary, /^FAIL: designed-to-fail \(seed 1\): 1\/3 assertions passed/);
  t.regex(summary, /failed at .*designed-to-fail\.yaml:15 \(step 4 wishful\): traffic survives a partition \(it cannot\)\n {4}expected delivery >= 90% in \[cut, \+1\.5s\]/);
});
