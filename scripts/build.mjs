// `npm run build` (also run by `npm install` as prepare): compiles the runtime
// folders to dist/ with tsc, then records the sources it compiled, so labs run
// the compiled JavaScript only while it matches them (common/compiled.js).
// Without TypeScript installed (`npm ci --omit=dev`, as the image installs)
// there is nothing to build: podlab runs from source through tsx.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import process from 'node:process';
import { DIST, ROOT, writeManifest } from '../common/compiled.js';

let tsc;
try {
  tsc = createRequire(path.join(ROOT, 'package.json')).resolve('typescript/bin/tsc');
} catch {
  process.stdout.write('podlab build: TypeScript is not installed; podlab runs from source (tsx)' + '\n');
  process.exit(0);
}
const t0 = Date.now();
const r = spawnSync(process.execPath, [tsc, '-p', path.join(ROOT, 'tsconfig.build.json')], { stdio: 'inherit' });
if (r.status !== 0) {
  // A failed build must not leave a manifest that calls a partial dist/ fresh.
  fs.rmSync(path.join(DIST, '.sources.json'), { force: true });
  process.exit(r.status ?? 1);
}
// Plain JavaScript modules the sources import are not tsc's to emit: copied beside their importers.
fs.copyFileSync(path.join(ROOT, 'common/compiled.js'), path.join(DIST, 'common/compiled.js'));
writeManifest();
process.stdout.write(`podlab build: dist/ compiled in ${((Date.now() - t0) / 1000).toFixed(1)} s` + '\n');
