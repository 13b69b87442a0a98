/**
 * Library scenarios, part C (lab network 127.0.116.0/24, one at a time):
 * a BGP session flap on the Calico-style backend, the same load over the VXLAN
 * overlay and over BGP routing, a TCP transfer across a lossy underlay, and
 * pods behind a Service replaced one at a time.
 */
import test from 'ava';
import { runLibraryScenario } from './helpers/scenario.ts';

const NET = '127.0.116.0/24';

for (const name of ['bgp-session-flap', 'overlay-vs-bgp', 'bgp-under-load', 'lossy-transfer', 'rolling-replacement']) {
  test.serial(`library: ${name} passes`, async (t) => {
    const { report, summary } = await runLibraryScenario(t, name, NET);
    t.is(report.verdict, 'pass', summary);
    t.true(report.summary.asserts > 0);
  });
}
