/**
 * Library scenarios, part C (lab network 127.0.116.0/24, one at a time):
 * a BGP session flap on the Calico-style backend, the same load on each of the
 * five backends side by side, a TCP transfer across a lossy underlay, and
 * pods behind a Service replaced one at a time.
 */
import test from 'ava';
import { runLibraryComparison, runLibraryScenario } from './helpers/scenario.ts';

const NET = '127.0.116.0/24';

for (const name of ['bgp-session-flap', 'lossy-transfer', 'rolling-replacement']) {
  test.serial(`library: ${name} passes`, async (t) => {
    const { report, summary } = await runLibraryScenario(t, name, NET);
    t.is(report.verdict, 'pass', summary);
    t.true(report.summary.asserts > 0);
  });
}

test.serial('library: overlay-vs-bgp passes on all five backends, reports side by side', async (t) => {
  const { report, summary } = await runLibraryComparison(t, 'overlay-vs-bgp', NET);
  t.log(summary.slice(summary.indexOf('\n\n') + 2).trimEnd());
  t.is(report.verdict, 'pass', summary);
  t.deepEqual(report.runs.map((r) => r.lab.backend), ['vxlan', 'host-gw', 'udp', 'bgp', 'ipip']);
  for (const r of report.runs) {
    t.is(r.verdict, 'pass', `${r.lab.backend}: ${r.summary.passed}/${r.summary.asserts}`);
    t.is(r.seed, report.seed, 'every run takes the same seed');
    t.deepEqual(r.flows.map((f) => f.name), ['a', 'b', 'c']);
  }
  // One column per backend, one row per flow, in the order asked for.
  const table = summary.slice(summary.indexOf('\n\n') + 2).split('\n');
  t.regex(table[0], /vxlan\s+host-gw\s+udp\s+bgp\s+ipip/);
  t.true(table.some((l) => /^flow a\s+100(\.0)?%/.test(l) || /^flow a\s+9\d\.\d%/.test(l)), table.join('\n'));
});
