/**
 * `podlab` outside the repository, as the README's first lines offer it:
 * `npm install -g .` (what `npm link` does, into a prefix of the test's own so
 * nothing global changes) puts a `podlab` on the PATH that runs from any
 * directory.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT } from '../lab/lab.ts';

test('npm install -g . gives a podlab command that works from any directory', (t) => {
  const prefix = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-global-'));
  t.teardown(() => fs.rmSync(prefix, { recursive: true, force: true }));
  execFileSync('npm', ['install', '-g', '--prefix', prefix, '--no-audit', '--no-fund', '--ignore-scripts', '.'], { cwd: ROOT, stdio: 'ignore', timeout: 120_000 });
  const elsewhere = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-cwd-'));
  t.teardown(() => fs.rmSync(elsewhere, { recursive: true, force: true }));
  const help = execFileSync(path.join(prefix, 'bin', 'podlab'), ['--help'], { cwd: elsewhere, encoding: 'utf8' });
  t.regex(help, /^Usage: podlab \[options\] \[command\]/);
  t.regex(help, /An emulator of Kubernetes pod networking/);
});
