// `npm run build` (also run by `npm install` as prepare): compiles the runtime
// folders to dist/ with tsc, bundles the podlab command, the lab's processes and
// their worker threads into dist/bundle/ with esbuild (common/compiled.js's
// BUNDLED: one file each to load instead of some 140 modules; CODE_CACHED ones
// as CommonJS, for V8's code cache), then records the sources it compiled, so
// labs run the compiled JavaScript only while it matches them (common/compiled.js).
// Without TypeScript installed (`npm ci --omit=dev`, as the image installs)
// there is nothing to build: podlab runs from source through tsx.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import process from 'node:process';
import { BUNDLE, BUNDLED, CODE_CACHED, DIST, ROOT, writeManifest } from '../common/compiled.js';

const require = createRequire(path.join(ROOT, 'package.json'));
let tsc;
try {
  tsc = require.resolve('typescript/bin/tsc');
} catch {
  process.stdout.write('podlab build: TypeScript is not installed; podlab runs from source (tsx)' + '\n');
  process.exit(0);
}
const t0 = Date.now();
// Neither a build under way nor a failed one may leave a manifest that calls a partial dist/ fresh.
const MANIFEST = path.join(DIST, '.sources.json');
fs.rmSync(MANIFEST, { force: true });
const failed = (code) => {
  fs.rmSync(MANIFEST, { force: true });
  process.exit(code);
};
const r = spawnSync(process.execPath, [tsc, '-p', path.join(ROOT, 'tsconfig.build.json')], { stdio: 'inherit' });
if (r.status !== 0) failed(r.status ?? 1);
// Plain JavaScript modules the sources import are not tsc's to emit: copied beside their importers.
fs.copyFileSync(path.join(ROOT, 'common/compiled.js'), path.join(DIST, 'common/compiled.js'));

// One esbuild run per entry, so an entry's bundle holds all it imports statically; in an ES-module bundle its
// lazy import()s become chunks loaded when first used (esbuild's code splitting, which needs ESM output). npm packages
// are bundled too, except native addons and tsx (resolved at run time only, for a stale build's fallback);
// packages loaded through createRequire stay out of sight of esbuild, so they load as they do from dist/.
// Inlined CommonJS packages also spare Node's ESM-to-CommonJS lexer (a WebAssembly module, megabytes of RSS).
// Chunks are named by their content's hash and not deleted by the next build: a process still running from an
// earlier build may import its lazy chunks long after it started. Chunks no
// build has written for a week go.
const esbuild = await import('esbuild');
const written = new Set();
try {
  for (const entry of BUNDLED) {
    const cjs = CODE_CACHED.includes(entry);
    const out = await esbuild.build({
      metafile: true,
      absWorkingDir: ROOT,
      entryPoints: { [entry.replace(/\.ts$/, '')]: entry },
      outdir: BUNDLE,
      chunkNames: 'chunks/[name]-[hash]',
      bundle: true,
      // A code-cached entry (common/code-cache.cjs) is one CommonJS script: esbuild splits only ES modules, so its
      // lazy imports are inlined, each evaluated at its first import as before, compiled from the cache or lazily.
      ...(cjs
        ? {
            format: 'cjs',
            outExtension: { '.js': '.cjs' },
            // import.meta as the ES module had it: the bundle's own URL (ROOT, workers' files and createRequire
            // are found from it).
            define: { 'import.meta': '__podlabImportMeta' },
            banner: {
              js: '"use strict";const __podlabImportMeta = { url: require("node:url").pathToFileURL(__filename).href, resolve: (s) => require("node:url").pathToFileURL(require.resolve(s)).href };',
            },
          }
        : {
            splitting: true,
            format: 'esm',
            // CommonJS packages inlined into an ES module still call require() (for Node's built-ins).
            banner: { js: "import { createRequire as __podlabCreateRequire } from 'node:module'; const require = __podlabCreateRequire(import.meta.url);" },
          }),
      platform: 'node',
      target: 'node20',
      sourcemap: 'linked',
      // V8 keeps every script's source, and more for each line and comment: without whitespace and comments the
      // agent's heap holds 0.7 MB less. Names stay as written (profiles and stack traces read as the sources do),
      // and lines stay short, so an uncaught error's source excerpt is one line of code, not the whole bundle.
      minifyWhitespace: true,
      lineLimit: 160,
      external: ['better-sqlite3', 'cap', 'msgpackr-extract', 'tsx'],
      logLevel: 'warning',
    });
    for (const f of Object.keys(out.metafile.outputs)) written.add(path.resolve(ROOT, f));
  }
} catch {
  // esbuild has printed what failed.
  failed(1);
}
// V8 keeps each script's source for lazy compilation, as one-byte (Latin-1) text unless one character needs two
// bytes, and then the whole of it is two-byte: the agent's 0.5 MB bundle took 1 MB of every agent's heap for the
// arrows and section signs of a few comments (esbuild escapes strings, regular expressions and templates to ASCII
// already, but keeps comments as written). Escaped as \uXXXX they mean what they meant wherever they stand.
for (const f of written) {
  if (!f.endsWith('.js') && !f.endsWith('.cjs')) continue;
  const text = fs.readFileSync(f, 'utf8');
  // eslint-disable-next-line no-control-regex
  if (/[^\x00-\x7f]/.test(text)) fs.writeFileSync(f, text.replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
}
const CHUNKS = path.join(BUNDLE, 'chunks');
const weekAgo = Date.now() - 7 * 24 * 3600 * 1000;
for (const f of fs.readdirSync(CHUNKS)) {
  const file = path.join(CHUNKS, f);
  if (!written.has(file) && fs.statSync(file).mtimeMs < weekAgo) fs.rmSync(file, { force: true });
}
// Code caches are made by the processes that run the bundles (common/code-cache.cjs); those of earlier bundles go.
fs.rmSync(path.join(BUNDLE, 'code-cache'), { recursive: true, force: true });
writeManifest();
process.stdout.write(`podlab build: dist/ compiled and bundled in ${((Date.now() - t0) / 1000).toFixed(1)} s` + '\n');
