/**
 * common/code-cache.cjs: a CommonJS bundle started through the loader runs as
 * `node BUNDLE ARGS` runs it, and V8's code cache of it is made by the first
 * process, taken by the next, and never taken for other source or other flags.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CODE_CACHE_LOADER, ROOT, compiledFile, compiledFresh } from '../common/compiled.js';

/** A bundle that reports what it saw, as JSON on stdout. */
const BUNDLE = `"use strict";
const os = require('node:os');
const strict = (function () { return this; })() === undefined;
process.stdout.write(JSON.stringify({ version: VERSION, argv: process.argv.slice(1), file: __filename, dir: __dirname, strict, helper: require('./helper.cjs'), eol: os.EOL }));
if (process.argv.includes('--fail')) throw new Error('asked to fail');
process.exitCode = Number(process.env.EXIT_CODE ?? 0);
`;

function fixture(t: { teardown(f: () => void): void }): { dir: string; bundle: string; caches: () => string[] } {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-code-cache-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const dir = path.join(root, 'entry');
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'helper.cjs'), "module.exports = 'helped';\n");
  const bundle = path.join(dir, 'main.cjs');
  fs.writeFileSync(bundle, BUNDLE.replace('VERSION', "'v1'"));
  const cacheDir = path.join(root, 'code-cache');
  return { dir, bundle, caches: () => (fs.existsSync(cacheDir) ? fs.readdirSync(cacheDir).sort() : []) };
}

/** Runs the bundle through the loader: what it printed, what the loader reported, the exit status. */
function run(bundle: string, args: string[] = [], opts: { nodeFlags?: string[]; env?: Record<string, string> } = {}) {
  const r = spawnSync(process.execPath, [...(opts.nodeFlags ?? []), CODE_CACHE_LOADER, bundle, ...args], {
    encoding: 'utf8',
    env: { ...process.env, NODE_OPTIONS: '', PODLAB_CODE_CACHE_REPORT: '1', ...opts.env },
  });
  const report = /podlab code cache: (\w+)/.exec(r.stderr)?.[1];
  return { out: r.stdout, err: r.stderr, status: r.status, report };
}

test('a bundle run through the loader sees what `node BUNDLE ARGS` shows it, in strict mode', (t) => {
  const f = fixture(t);
  const r = run(f.bundle, ['--name', 'node-1']);
  t.is(r.status, 0, r.err);
  const seen = JSON.parse(r.out) as Record<string, unknown>;
  t.deepEqual(seen.argv, [f.bundle, '--name', 'node-1']);
  t.is(seen.file, f.bundle);
  t.is(seen.dir, f.dir);
  t.true(seen.strict, 'the bundle\'s "use strict" holds');
  t.is(seen.helper, 'helped', 'require() resolves from the bundle, not from the loader');
  t.is(run(f.bundle, [], { env: { EXIT_CODE: '3' } }).status, 3, 'its exit code');
  const failed = run(f.bundle, ['--fail']);
  t.is(failed.status, 1);
  t.regex(failed.err, /Error: asked to fail\n\s+at .*main\.cjs:5/, 'an uncaught error names the bundle and its line');
});

test('the first process makes the cache, the next take it; other source or other flags get a cache of their own', (t) => {
  const f = fixture(t);
  t.is(run(f.bundle).report, 'made');
  t.is(f.caches().length, 1);
  const first = run(f.bundle);
  t.is(first.report, 'used');
  t.is((JSON.parse(first.out) as { version: string }).version, 'v1');

  // A rebuild of the same length (V8 itself compares only the length): a new key, and the new code runs.
  const st = fs.statSync(f.bundle);
  fs.writeFileSync(f.bundle, BUNDLE.replace('VERSION', "'v2'"));
  fs.utimesSync(f.bundle, st.atime, new Date(st.mtimeMs + 2000));
  t.is(fs.statSync(f.bundle).size, st.size);
  const rebuilt = run(f.bundle);
  t.is(rebuilt.report, 'made');
  t.is((JSON.parse(rebuilt.out) as { version: string }).version, 'v2', 'never the old code from the old cache');
  t.is(run(f.bundle).report, 'used');

  // Other flags (V8 would reject the cache for them): their own cache, so neither start rejects the other's.
  t.is(run(f.bundle, [], { nodeFlags: ['--max-old-space-size=200'] }).report, 'made');
  t.is(run(f.bundle, [], { nodeFlags: ['--max-old-space-size=200'] }).report, 'used');
  t.is(run(f.bundle).report, 'used');
  t.is(f.caches().length, 3);
});

test('a damaged cache is rejected and replaced; an unwritable one costs only the cache', (t) => {
  const f = fixture(t);
  run(f.bundle);
  const [cache] = f.caches();
  const file = path.join(path.dirname(f.dir), 'code-cache', cache);
  fs.writeFileSync(file, Buffer.alloc(fs.statSync(file).size, 0x5a));
  const damaged = run(f.bundle);
  t.is(damaged.report, 'rejected');
  t.is((JSON.parse(damaged.out) as { version: string }).version, 'v1', 'compiled from the source instead');
  t.is(run(f.bundle).report, 'used', 'the rejected cache was replaced');

  fs.rmSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(path.dirname(file), 'not a folder');
  const r = run(f.bundle);
  t.is(r.status, 0, r.err);
  t.is(r.report, 'made');
  t.is((JSON.parse(r.out) as { version: string }).version, 'v1');
});

test("the agent's own bundle runs through the loader (--help)", (t) => {
  if (!compiledFresh()) {
    if (process.env.CI === 'true') t.fail('dist/ is missing or stale after npm ci');
    else t.pass('skipped: no fresh dist/ here (run npm run build)');
    return;
  }
  const r = run(compiledFile('node-agent/main.ts'), ['--help']);
  t.is(r.status, 0, r.err);
  t.regex(r.out, /^Usage: podlab agent \[flags\]/);
  t.regex(r.out, /--proxy-mode <value>/);
  t.true(['made', 'used'].includes(r.report ?? ''), r.err);
});

test('the podlab command runs its bundle through the loader; its daemons start from theirs, an ES module one imported by the loader', (t) => {
  if (!compiledFresh()) {
    if (process.env.CI === 'true') t.fail('dist/ is missing or stale after npm ci');
    else t.pass('skipped: no fresh dist/ here (run npm run build)');
    return;
  }
  const podlab = (args: string[]) =>
    spawnSync(process.execPath, [path.join(ROOT, 'bin/podlab.js'), ...args], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '', PODLAB_CODE_CACHE_REPORT: '1' } });
  const help = podlab(['--help']);
  t.is(help.status, 0, help.stderr);
  t.regex(help.stdout, /^Usage: podlab \[options\] \[command\]/);
  t.regex(help.stderr, /podlab code cache: (made|used) \S+\/cli-podlab-[0-9a-f]{8}\.bin/);
  // The apiserver's bundle is an ES module: import() from inside a vm.Script would need --experimental-vm-modules.
  for (const [daemon, bundle] of [['apiserver', null], ['agent', 'node-agent-main']] as const) {
    const r = podlab([daemon, '--help']);
    t.is(r.status, 0, `${daemon}: ${r.stderr}`);
    t.regex(r.stdout, new RegExp(`^Usage: podlab ${daemon} \\[flags\\]`));
    if (bundle) t.regex(r.stderr, new RegExp(`podlab code cache: (made|used) \\S+/${bundle}-`), 'the agent from its own cache, inside the command');
  }
});

test('the folder keeps the 32 most recently written caches', (t) => {
  const f = fixture(t);
  const dir = path.join(path.dirname(f.dir), 'code-cache');
  fs.mkdirSync(dir);
  for (let i = 0; i < 40; i++) {
    const file = path.join(dir, `entry-main-old${String(i).padStart(5, '0')}.bin`);
    fs.writeFileSync(file, 'stale');
    fs.utimesSync(file, new Date(1_000_000 + i * 1000), new Date(1_000_000 + i * 1000));
  }
  t.is(run(f.bundle).report, 'made');
  const left = f.caches();
  t.is(left.length, 32);
  t.true(left.some((c) => !c.includes('old')), 'the new cache stays');
  t.false(left.includes('entry-main-old00000.bin'), 'the oldest went');
  t.true(left.includes('entry-main-old00039.bin'));
  t.is(run(f.bundle).report, 'used');
});
