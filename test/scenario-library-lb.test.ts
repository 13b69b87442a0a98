/**
 * Library scenario lb-l2-failover (lab network 127.0.216.0/24): the host
 * reaches a LoadBalancer IP, the elected node's agent is SIGKILLed and the
 * address answers again within the documented L2 failover bound.
 */
import test from 'ava';
import { runLibraryScenario } from './helpers/scenario.ts';

test.serial('library: lb-l2-failover passes', async (t) => {
  const { report, summary } = await runLibraryScenario(t, 'lb-l2-failover', '127.0.216.0/24');
  t.is(report.verdict, 'pass', summary);
  const failover = report.steps.find((s) => s.name === 'failover');
  t.truthy(failover);
  t.log(`interruption after the leader's SIGKILL: ${(failover!.endMs! - failover!.startMs).toFixed(0)} ms`);
});
