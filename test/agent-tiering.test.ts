/**
 * The tier-up flags an agent sets on itself once ready (node-agent/tiering.ts) take effect after V8 has started:
 * a function run once per event-loop turn, as a packet path's are, is optimized after far fewer calls.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { ROOT } from '../lab/lab.ts';
import { STEADY_V8_FLAGS } from '../node-agent/tiering.ts';

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
