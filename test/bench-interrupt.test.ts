/**
 * An interrupted bench leaves no helper process behind: SIGTERM to the bench's
 * own pid (no terminal signal reaching its children) stops the children it
 * spawned, removes its temporary directories, and it exits 130. (Its labs stop through the same handler as
 * `podlab up`'s, which test/cli.test.ts interrupts with a lab half started.)
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import fs from 'node:fs';

const SCRIPT = `
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { benchChild, benchTempDir, stopOnInterrupt } from './bench/interrupt.ts';
stopOnInterrupt();
const c = benchChild(spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' }));
const dir = benchTempDir(fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-bench-interrupt-')));
process.stdout.write(JSON.stringify({ child: c.pid, dir }) + '\\n');
setInterval(() => {}, 1000);
`;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('SIGTERM to a bench stops the helper processes it spawned, removes its temporary directories, and it exits 130', async (t) => {
  const bench = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', SCRIPT], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  bench.stdout.on('data', (d) => (out += d));
  bench.stderr.on('data', (d) => (out += d));
  t.teardown(() => {
    if (bench.exitCode === null) bench.kill('SIGKILL');
  });
  const { child, dir } = await new Promise<{ child: number; dir: string }>((resolve, reject) => {
    bench.stdout.on('data', () => {
      const m = /^(\{"child".*\})$/m.exec(out);
      if (m) resolve(JSON.parse(m[1]) as { child: number; dir: string });
    });
    bench.once('exit', () => reject(new Error(`the bench script exited early: ${out}`)));
  });
  t.teardown(() => {
    if (alive(child)) process.kill(child, 'SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  });
  t.true(alive(child));
  t.true(fs.existsSync(dir));
  bench.kill('SIGTERM');
  const code = await new Promise<number | null>((r) => bench.once('exit', (c) => r(c)));
  t.is(code, 130, out);
  t.regex(out, /bench: SIGTERM: no lab to stop/);
  // The child gets SIGTERM before the bench exits; it may take a moment to go.
  const deadline = Date.now() + 5000;
  while (alive(child) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  t.false(alive(child), `helper ${child} still runs`);
  t.false(fs.existsSync(dir), `${dir} is left`);
});
