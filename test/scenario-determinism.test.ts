/**
 * Determinism: the same seed gives the same verdicts and loses the same
 * sequence numbers, per flow, under seeded loss; another seed loses others.
 * Two flows cross two different impaired links (node-1 -> node-2 for a ping
 * flow, node-1 -> node-3 for a UDP flow): impairments are per peer, so each
 * flow sees its own seeded stream. Lab network 127.0.112.0/24.
 */
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runScenario } from '../scenarios/runner.ts';
import type { ScenarioReport } from '../scenarios/report.ts';
import { parseScenario } from '../scenarios/validate.ts';
import { processesMentioning } from './helpers/scenario.ts';

const NET = '127.0.112.0/24';

const SCENARIO = `
name: determinism
description: seeded loss on two links, one flow on each
seed: 42
lab: {nodes: 3, podsPerNode: 1}
timeline:
  - fault: {kind: link, from: node-1, to: node-2, loss: 10%, delay: 5ms, jitter: 2ms}
  - fault: {kind: link, from: node-1, to: node-3, loss: 10%}
  - traffic:
      wait: true
      flows:
        - {name: ping-lossy, from: pod-1a, to: pod-2a, rate: 50, count: 150}
        - {name: udp-lossy, kind: udp, from: pod-1a, to: pod-3a, rate: 50, count: 150, size: 64}
  - fault: {kind: heal}
  - assert:
      - {kind: delivery, flow: ping-lossy, min: 65%, max: 97%}
      - {kind: delivery, flow: udp-lossy, min: 65%, max: 97%}
`;

async function run(t: import('ava').ExecutionContext, seed: number): Promise<ScenarioReport> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-det-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const sc = parseScenario(SCENARIO, path.join(dir, 'determinism.yaml'));
  let stateDir = '';
  const started = Date.now();
  const r = await runScenario(sc, { seed, labNet: NET, onLab: (d) => (stateDir = d) });
  t.log(`seed ${seed}: ${r.verdict} in ${((Date.now() - started) / 1000).toFixed(1)}s; lost ${r.flows.map((f) => `${f.name} ${f.lostSeqs.length}/${f.sent}`).join(', ')}`);
  t.deepEqual(processesMentioning(stateDir), []);
  return r;
}

const lost = (r: ScenarioReport) => Object.fromEntries(r.flows.map((f) => [f.name, f.lostSeqs]));

test.serial('the same seed loses the same sequence numbers and gives the same verdicts; another seed does not', async (t) => {
  const a = await run(t, 42);
  const b = await run(t, 42);
  t.is(a.verdict, 'pass', JSON.stringify(a.asserts, null, 1));
  t.deepEqual(b.asserts.map((x) => [x.name, x.ok]), a.asserts.map((x) => [x.name, x.ok]));
  for (const f of a.flows) {
    t.is(f.sent, 150, `${f.name} sent every probe`);
    t.true(f.lostSeqs.length > 0, `${f.name} lost something at 10%`);
  }
  t.deepEqual(lost(b), lost(a));
  const udpA = a.flows.find((f) => f.name === 'udp-lossy')!;
  const udpB = b.flows.find((f) => f.name === 'udp-lossy')!;
  t.deepEqual(udpB.requestLostSeqs, udpA.requestLostSeqs, 'the same datagrams were lost on the way there (the rest on the way back)');
  t.true(udpA.requestLostSeqs!.length > 0 && udpA.requestLostSeqs!.length < udpA.lostSeqs.length);
  const c = await run(t, 43);
  t.notDeepEqual(lost(c), lost(a), 'a different seed drops different datagrams');
  t.log(`ping-lossy lost with seed 42: ${a.flows[0].lostSeqs.join(',')}`);
});
