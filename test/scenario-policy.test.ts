/**
 * The network-policy library scenario (lab network 127.0.192.0/24): the
 * policy fault applies a deny-all ingress NetworkPolicy and removes it again,
 * and reachability follows: reachable, unreachable, reachable.
 */
import test from 'ava';
import { runLibraryScenario } from './helpers/scenario.ts';

test.serial('library: network-policy passes', async (t) => {
  const { report, summary } = await runLibraryScenario(t, 'network-policy', '127.0.192.0/24');
  t.is(report.verdict, 'pass', summary);
  t.is(report.summary.asserts, 3);
});
