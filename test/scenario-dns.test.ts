/**
 * The library's DNS scenario (lab network 127.0.182.0/24): names resolve
 * through kube-dns before, during and after the loss of the node that runs
 * one CoreDNS replica.
 */
import test from 'ava';
import { runLibraryScenario } from './helpers/scenario.ts';

test.serial('library: dns-node-failure passes', async (t) => {
  const { report, summary } = await runLibraryScenario(t, 'dns-node-failure', '127.0.182.0/24');
  t.is(report.verdict, 'pass', summary);
  t.true(report.summary.asserts >= 4);
});
