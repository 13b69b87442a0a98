// Which podlab runs: the JavaScript `npm run build` compiled into dist/, or the
// TypeScript sources through tsx. Compiled agents start in a fraction of the
// time and memory (no transpiler in every one of a hundred processes), but
// only while dist/ matches the sources: the build records every source file's
// size, mtime and content hash, and any difference (an edit, a new file) means
// the sources run, so a stale build never runs old code. Plain JavaScript, because
// bin/podlab.js decides before any TypeScript can be loaded.
//
// The lab's processes (BUNDLED) run from dist/bundle/: each entry and what it
// imports in one file made by esbuild (lazy imports stay separate chunks),
// because a hundred agents each resolving, reading and compiling ~140 modules
// was a third of an agent's start-up CPU. The rest of dist/ is tsc's, module
// for module (the CLI, and whatever imports podlab's modules).
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import process from 'node:process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: the nearest folder above this file holding podlab's package.json (also from dist/common/). */
export const ROOT = (() => {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      if (JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).name === 'podlab') return dir;
    } catch {
      /* not here */
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error('podlab: cannot find the repository root (package.json named podlab)');
    dir = up;
  }
})();

export const DIST = path.join(ROOT, 'dist');
/** Where `npm run build` puts the bundled entry files (scripts/build.mjs). */
export const BUNDLE = path.join(DIST, 'bundle');
const MANIFEST = path.join(DIST, '.sources.json');

/**
 * The entry files built as bundles: the `podlab` command, the processes a lab
 * starts (many of them: agents, pod servers) and the worker threads they
 * start (a worker loads its own copy of its modules).
 */
export const BUNDLED = ['cli/podlab.ts', 'node-agent/main.ts', 'control-plane/main.ts', 'router/main.ts', 'kernel-node/main.ts', 'kernel-node/pod-server.ts', 'service-proxy/worker.ts', 'backends/udp/flanneld-worker.ts', 'apps/dns/worker.ts', 'node-agent/threads.ts'];

/**
 * Bundled entries built as one CommonJS file (`.cjs`, their lazy imports
 * inlined, evaluated only when first imported) and started through
 * common/code-cache.cjs, which keeps V8's code cache of them: Node 20 keeps
 * none for ES modules. The agent, because a lab starts a hundred of them at
 * once, and the `podlab` command (bin/podlab.js), run for every verb; the
 * rest are ES modules with their lazy imports in chunks.
 */
export const CODE_CACHED = ['cli/podlab.ts', 'node-agent/main.ts'];

/** The loader that runs a CODE_CACHED bundle with its code cache (plain CommonJS, run from the sources). */
export const CODE_CACHE_LOADER = path.join(ROOT, 'common/code-cache.cjs');

/** The folders compiled into dist/ (the runtime; tests, bench and scripts run from source). */
export const RUNTIME_DIRS = ['packet', 'common', 'netstack', 'overlay', 'backends', 'bgp', 'service-proxy', 'policy', 'edge', 'apps', 'pod-tools', 'node-agent', 'kernel-node', 'router', 'control-plane', 'hostnet', 'lab', 'cli', 'scenarios'];

/** Every runtime source file (relative path, TypeScript and plain JavaScript such as this one) with its size and mtime. */
export function sourceFingerprint() {
  const out = {};
  const walk = (rel) => {
    for (const e of fs.readdirSync(path.join(ROOT, rel), { withFileTypes: true })) {
      const r = path.join(rel, e.name);
      if (e.isDirectory()) walk(r);
      else if ((e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) || e.name.endsWith('.js')) {
        const st = fs.statSync(path.join(ROOT, r));
        out[r] = { size: st.size, mtimeMs: st.mtimeMs };
      }
    }
  };
  for (const d of RUNTIME_DIRS) walk(d);
  return out;
}

const digest = (rel) => createHash('sha1').update(fs.readFileSync(path.join(ROOT, rel))).digest('hex');

/** Records the sources dist/ was built from, with their content hashes (scripts/build.mjs, after tsc). */
export function writeManifest() {
  const fp = sourceFingerprint();
  for (const [rel, f] of Object.entries(fp)) f.sha1 = digest(rel);
  fs.writeFileSync(MANIFEST, JSON.stringify(fp));
}

let fresh;
/**
 * True when dist/ was built from exactly the sources on disk (checked once per
 * process; PODLAB_FROM_SOURCE=1 forces the sources). Size and mtime decide
 * quickly; a file whose mtime alone moved (a checkout, a touch) is compared by content.
 */
export function compiledFresh() {
  if (fresh !== undefined) return fresh;
  if (process.env.PODLAB_FROM_SOURCE === '1') return (fresh = false);
  try {
    const built = JSON.parse(fs.readFileSync(MANIFEST, 'utf8'));
    const now = sourceFingerprint();
    const keys = Object.keys(now);
    fresh = keys.length === Object.keys(built).length && keys.every((k) => built[k] && built[k].size === now[k].size && (built[k].mtimeMs === now[k].mtimeMs || built[k].sha1 === digest(k)));
  } catch {
    fresh = false;
  }
  return fresh;
}

/** The compiled file of an entry (`node-agent/main.ts`): its bundle if it has one (`.cjs` if CODE_CACHED), else tsc's module. */
export function compiledFile(rel) {
  if (CODE_CACHED.includes(rel)) return path.join(BUNDLE, rel.replace(/\.ts$/, '.cjs'));
  return path.join(BUNDLED.includes(rel) ? BUNDLE : DIST, rel.replace(/\.ts$/, '.js'));
}

/**
 * How to run one of podlab's entry files (a path like `node-agent/main.ts`)
 * as a Node process: its compiled JavaScript when dist/ is fresh (through the
 * code-cache loader if CODE_CACHED), else the source through tsx.
 */
export function nodeArgsFor(rel) {
  if (compiledFresh()) return CODE_CACHED.includes(rel) ? [CODE_CACHE_LOADER, compiledFile(rel)] : [compiledFile(rel)];
  return ['--import', import.meta.resolve('tsx'), path.join(ROOT, rel)];
}
