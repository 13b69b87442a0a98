/**
 * The network-policy-matrix library scenario (lab network 127.0.30.0/24):
 * reachability truth tables over two namespaces of two pods on TCP 80 and
 * 81, asserted before, between and after `policy` faults (deny-all ingress,
 * then namespace y allowed on port 80 only, then both removed). Every cell
 * is a real nc -z through the emulated data plane and the enforcer.
 */
import test from 'ava';
import { runLibraryScenario } from './helpers/scenario.ts';

test.serial('library: network-policy-matrix passes, every cell of every table as written', async (t) => {
  const { report, summary } = await runLibraryScenario(t, 'network-policy-matrix', '127.0.30.0/24');
  t.is(report.verdict, 'pass', summary);
  t.is(report.summary.asserts, 4);
  const json = JSON.stringify(report);
  // The per-port tables as observed: y reaches x on 80 but not on 81.
  t.true(json.includes('tcp/80: X. ..'), json.slice(0, 4000));
  t.true(json.includes('tcp/81: X. X.'), json.slice(0, 4000));
});
