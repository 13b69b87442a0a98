/**
 * The tier-up flags an agent sets on itself once ready (node-agent/tiering.ts) take effect after V8 has started:
 * a function run once per event-loop turn, as a packet path's are, is optimized after far fewer calls. They wait
 * for the cluster's start-up to settle around the node.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import path from 'node:path';
import { ROOT } from '../lab/lab.ts';
import { STEADY_V8_FLAGS, tierUpOnceSettled } from '../node-agent/tiering.ts';

const callsToOptimize = (flags: string): number =>
  Number(
    execFileSync(process.execPath, ['--import', 'tsx', '--allow-natives-syntax', '--no-concurrent-recompilation', path.join(ROOT, 'test/fixtures/tiering/turns.mjs'), path.join(ROOT, 'node-agent/tiering.ts'), flags], {
      encoding: 'utf8',
      cwd: ROOT,
    }),
  );

test("the agents' steady flags, set at run time, get a once-per-turn function optimized several times sooner", (t) => {
  const without = callsToOptimize('');
  const withFlags = callsToOptimize(STEADY_V8_FLAGS);
  t.true(without < 20000, `never optimized without the flags (${without} calls)`);
  t.true(withFlags * 4 < without, `${withFlags} calls with the flags, ${without} without`);
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('an agent tiers up once its Node informer has been still for the settle time, once, and stops listening', async (t) => {
  const nodes = new EventEmitter();
  let tiered = 0;
  tierUpOnceSettled(nodes, { settleMs: 150, maxMs: 10_000, tierUp: () => tiered++ });
  // A start-up storm: an event every 30 ms keeps it waiting.
  for (let i = 0; i < 15; i++) {
    nodes.emit(['add', 'update', 'delete'][i % 3]);
    await sleep(30);
  }
  t.is(tiered, 0);
  await sleep(400);
  t.is(tiered, 1);
  t.is(nodes.listenerCount('update'), 0);
  nodes.emit('update');
  await sleep(200);
  t.is(tiered, 1);
});

test('an agent whose Node informer never goes still tiers up at the cap; cancelled, it does not', async (t) => {
  const nodes = new EventEmitter();
  let tiered = 0;
  tierUpOnceSettled(nodes, { settleMs: 150, maxMs: 400, tierUp: () => tiered++ });
  const cancelled = new EventEmitter();
  let never = 0;
  tierUpOnceSettled(cancelled, { settleMs: 100, maxMs: 300, tierUp: () => never++ })();
  for (let i = 0; i < 30; i++) {
    nodes.emit('update');
    await sleep(30);
  }
  t.is(tiered, 1);
  t.is(never, 0);
  t.is(cancelled.listenerCount('add'), 0);
});
