/**
 * The compiled runtime: `npm install` builds dist/ (prepare), labs then run
 * their agents and apiserver from it, and a source edit makes podlab run the
 * sources again until the next build, so stale JavaScript never runs.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BUNDLE, BUNDLED, CODE_CACHED, CODE_CACHE_LOADER, DIST, ROOT, compiledFile, compiledFresh, nodeArgsFor, sourceFingerprint } from '../common/compiled.js';
import { readLab } from '../lab/state.ts';
import { startLab } from './helpers/lab.ts';

const fresh = compiledFresh();

/** compiledFresh() as a new process sees it (the answer is cached per process). */
const freshInChild = () => execFileSync(process.execPath, ['--input-type=module', '-e', `import { compiledFresh } from ${JSON.stringify(path.join(ROOT, 'common/compiled.js'))}; process.stdout.write(String(compiledFresh()))`], { encoding: 'utf8' });

test('the build compiled every runtime source and recorded them (npm install runs it as prepare)', (t) => {
  if (!fresh) {
    // In CI `npm ci` ran the build: dist/ must be there and match.
    if (process.env.CI === 'true') t.fail('dist/ is missing or stale after npm ci: the prepare script (npm run build) did not run');
    else t.pass(`skipped: no fresh dist/ here (run npm run build)`);
    return;
  }
  const sources = Object.keys(sourceFingerprint());
  t.true(sources.length > 100);
  t.true(sources.includes('common/compiled.js'), 'plain JavaScript sources count too');
  const missing = sources.filter((s) => !fs.existsSync(path.join(DIST, s.replace(/\.ts$/, '.js'))));
  t.deepEqual(missing, []);
  // The lab's processes and worker threads run from their bundles (one file each, lazy imports in chunks); the
  // agent's is one CommonJS script, started through the loader that keeps its code cache.
  t.deepEqual(nodeArgsFor('node-agent/main.ts'), [CODE_CACHE_LOADER, path.join(BUNDLE, 'node-agent/main.cjs')]);
  t.deepEqual(nodeArgsFor('control-plane/main.ts'), [path.join(BUNDLE, 'control-plane/main.js')]);
  t.deepEqual(BUNDLED.filter((e) => !fs.existsSync(compiledFile(e))), []);
  // A CommonJS bundle is strict only if its directive comes first, before the banner's own statement.
  t.deepEqual(CODE_CACHED.filter((e) => !fs.readFileSync(compiledFile(e), 'utf8').startsWith('"use strict";')), []);
  // In ASCII, so V8 keeps their sources one byte per character (scripts/build.mjs escapes what esbuild left in comments).
  // eslint-disable-next-line no-control-regex
  const notAscii = BUNDLED.filter((e) => /[^\x00-\x7f]/.test(fs.readFileSync(compiledFile(e), 'utf8')));
  t.deepEqual(notAscii, []);
  t.deepEqual(nodeArgsFor('cli/main.ts'), [path.join(DIST, 'cli/main.js')]);
});

test.serial('a lab runs compiled agents and apiserver; an edited source makes the next process run the sources', async (t) => {
  if (!fresh) {
    if (process.env.CI === 'true') t.fail('dist/ is missing or stale after npm ci');
    else t.pass('skipped: no fresh dist/ here (run npm run build)');
    return;
  }
  const lab = await startLab('127.0.146.0/24', { nodes: 2, podsPerNode: 1 });
  t.teardown(() => lab.close());
  const cmdline = (pid: number) => fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  for (const p of readLab(lab.stateDir)!.procs) {
    const argv = cmdline(p.pid);
    t.true(argv.some((a) => a.startsWith(BUNDLE + path.sep) && /\/main\.c?js$/.test(a)), `${p.name}: ${argv.join(' ')}`);
    t.false(argv.some((a) => a.includes('tsx')), `${p.name} loads no transpiler`);
    if (p.role === 'node') t.true(argv.includes(CODE_CACHE_LOADER), `${p.name} starts through the code-cache loader`);
  }
  // The first agent to start without a cache made it for the others and for later labs.
  const caches = fs.readdirSync(path.join(BUNDLE, 'code-cache')).filter((f) => /^node-agent-main-[0-9a-f]{8}\.bin$/.test(f));
  t.true(caches.length >= 1, 'a code cache of the agent bundle');
  t.regex((await lab.exec('pod-1a', ['ping', '-c', '1', '-W', '2', '10.244.2.2'])).out, / 0% packet loss/);

  // An edit and the sources run, with tsx, until the next build; a touch that changes nothing does not count.
  const file = path.join(ROOT, 'packet/addr.ts');
  const text = fs.readFileSync(file, 'utf8');
  const st = fs.statSync(file);
  t.teardown(() => {
    fs.writeFileSync(file, text);
    fs.utimesSync(file, st.atime, st.mtime);
  });
  fs.utimesSync(file, st.atime, new Date(st.mtimeMs + 5000));
  t.is(freshInChild(), 'true', 'same content, new mtime: still fresh');
  fs.writeFileSync(file, text.replace('/**', '/*!'));
  t.is(freshInChild(), 'false', 'an edit (same size): stale');
  fs.writeFileSync(file, text);
  t.is(freshInChild(), 'true', 'the edit undone');
});

test('PODLAB_FROM_SOURCE=1 runs the sources whatever dist/ holds', (t) => {
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', `import { nodeArgsFor } from ${JSON.stringify(path.join(ROOT, 'common/compiled.js'))}; process.stdout.write(JSON.stringify(nodeArgsFor('node-agent/main.ts')))`], { encoding: 'utf8', env: { ...process.env, PODLAB_FROM_SOURCE: '1' } });
  const args = JSON.parse(out) as string[];
  t.is(args[0], '--import');
  t.is(args[2], path.join(ROOT, 'node-agent/main.ts'));
});
