/**
 * The README's command blocks run as written. A fenced block right after
 * `<!-- readme-test: run -->` is run line by line with bash, in order, in a
 * fresh PODLAB_HOME, with `npx podlab` taken from this checkout; every line
 * must exit 0. The only change made to the text: `up` gets a loopback network
 * of the test's own (--lab-net 127.0.142.0/24 --api-port 0), so it never meets
 * a lab of yours or another test's.
 */
import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT } from '../lab/lab.ts';

const README = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');

/** The marked blocks: [line of the fence, commands]. */
function markedBlocks(text: string): { line: number; commands: string[] }[] {
  const lines = text.split('\n');
  const out: { line: number; commands: string[] }[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() !== '<!-- readme-test: run -->') continue;
    if (!lines[i + 1]?.startsWith('```')) throw new Error(`README.md:${i + 1}: the marker must stand right before a fence`);
    const commands: string[] = [];
    let j = i + 2;
    for (; j < lines.length && !lines[j].startsWith('```'); j++) if (lines[j].trim() && !lines[j].trim().startsWith('#')) commands.push(lines[j]);
    out.push({ line: i + 2, commands });
    i = j;
  }
  return out;
}

test('the README marks its walkthrough blocks for this test', (t) => {
  t.true(markedBlocks(README).length >= 2);
});

for (const block of markedBlocks(README)) {
  test.serial(`README.md:${block.line}: every command of the block runs and exits 0`, (t) => {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-readme-'));
    const bin = path.join(home, 'bin');
    fs.mkdirSync(bin);
    // `npx podlab` resolves to this checkout's CLI, as it does inside the repository.
    fs.writeFileSync(path.join(bin, 'npx'), `#!/bin/sh\n[ "$1" = podlab ] || { echo "readme test: only npx podlab is expected, got: $*" >&2; exit 127; }\nshift\nexec node ${JSON.stringify(path.join(ROOT, 'bin/podlab.js'))} "$@"\n`, { mode: 0o755 });
    const env = { ...process.env, PATH: `${bin}:${process.env.PATH}`, PODLAB_HOME: path.join(home, '.podlab') };
    const script = block.commands.map((c) => c.replace(/^(npx podlab up\b)/, '$1 --lab-net 127.0.142.0/24 --api-port 0')).join('\n');
    t.teardown(() => {
      spawnSync('node', [path.join(ROOT, 'bin/podlab.js'), 'down'], { env, cwd: ROOT, stdio: 'ignore' });
      fs.rmSync(home, { recursive: true, force: true });
    });
    try {
      // -e: the first failing line stops the block; -x: the log says which one.
      const out = execFileSync('bash', ['-e', '-x', '-c', script], { env, cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 180_000 });
      t.log(out.split('\n').slice(-6).join('\n'));
      t.pass();
    } catch (e) {
      const err = e as { stdout?: string; stderr?: string; status?: number };
      t.fail(`README.md:${block.line}: a command failed (exit ${err.status}):\n${err.stderr ?? ''}\n${err.stdout ?? ''}`);
    }
  });
}
