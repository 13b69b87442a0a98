/**
 * Library scenarios, part B (lab network 127.0.111.0/24, one at a time):
 * node failure and recovery, partition and heal, apiserver restart, frozen
 * agent. Each must pass and leave no process behind.
 */
import test from 'ava';
import { runLibraryScenario } from './helpers/scenario.ts';

const NET = '127.0.111.0/24';

for (const name of ['node-failure', 'partition-heal', 'apiserver-restart', 'node-freeze']) {
  test.serial(`library: ${name} passes`, async (t) => {
    const { report, summary } = await runLibraryScenario(t, name, NET);
    t.is(report.verdict, 'pass', summary);
    t.true(report.summary.asserts > 0);
  });
}
