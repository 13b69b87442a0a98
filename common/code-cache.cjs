// Runs a CommonJS bundle with V8's code cache: `node common/code-cache.cjs BUNDLE.cjs ARGS...` runs BUNDLE as
// `node BUNDLE.cjs ARGS...` would, and `run(BUNDLE)` does the same from a process already running (bin/podlab.js,
// lab/daemons.ts).
//
// Node 20 keeps no code cache for ES modules, so a process compiled its whole bundle at every start: a hundred
// agents starting together each parsed the same 0.7 MB of JavaScript. V8 takes a cache only for a script of the
// same length, V8 version and flags (its hash of the flags off their defaults); the key below adds the bundle's
// mtime (a rebuild of the same length), Node's version and the process's flags, so labs started with other flags
// keep caches of their own rather than rejecting each other's. The cache is made right after the compile, before
// any of the bundle runs: the run changes V8's flags (node-agent/tiering.ts), which would make the cache
// unacceptable to the next process, and in 20-node labs a cache made then saved as much CPU as one made after
// the agent was ready (bench/README.md). A process that finds no cache writes one (atomically: a reader sees
// all of it or none); a cache that cannot be read or written is no cache, and the bundle is compiled as before.
'use strict';
const fs = require('node:fs');
const Module = require('node:module');
const path = require('node:path');
const vm = require('node:vm');

/** The caches' folder: beside the bundles, emptied by every build (scripts/build.mjs). */
const CACHE_DIR = 'code-cache';

/** FNV-1a over a string, as 8 hex digits: the key needs to tell flag sets apart, not to resist anyone. */
function fnv1a(text) {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return h.toString(16).padStart(8, '0');
}

/** Where the cache of `file` (stat `st`) lives for this process's Node and flags. */
function cachePath(file, st) {
  const key = [st.size, st.mtimeMs, process.version, process.arch, process.execArgv.join(' '), process.env.NODE_OPTIONS ?? ''].join('\n');
  const name = `${path.basename(path.dirname(file))}-${path.basename(file, '.cjs')}-${fnv1a(key)}.bin`;
  return path.join(path.dirname(file), '..', CACHE_DIR, name);
}

function readCache(file) {
  try {
    return fs.readFileSync(file);
  } catch {
    return undefined;
  }
}

/** Caches kept per folder: one per set of flags, and runs with ever-new flags (a profile's output folder) add one each. */
const MAX_CACHES = 32;

/** Drops the least recently written caches beyond MAX_CACHES. */
function prune(dir) {
  const caches = fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.bin'))
    .map((f) => ({ f, t: fs.statSync(path.join(dir, f)).mtimeMs }))
    .sort((a, b) => b.t - a.t);
  for (const { f } of caches.slice(MAX_CACHES)) fs.rmSync(path.join(dir, f), { force: true });
}

/** Writes the cache; one that was there and rejected is replaced, else the first writer's stays. */
function writeCache(file, data, replace) {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    if (!replace && fs.existsSync(file)) return; // another process of the same start wrote it meanwhile
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(tmp, data);
    fs.renameSync(tmp, file);
    prune(path.dirname(file));
  } catch {
    // A read-only install, a full disk: the next start compiles again.
    try {
      fs.rmSync(tmp, { force: true });
    } catch {
      // No folder to leave it in either.
    }
  }
}

/** PODLAB_CODE_CACHE_REPORT=1: each start says on stderr what became of its cache. */
function reportFromEnv() {
  if (!process.env.PODLAB_CODE_CACHE_REPORT) return undefined;
  return (cache, file) => process.stderr.write(`podlab code cache: ${cache} ${file}\n`);
}

/**
 * Compiles `bundle` (a CommonJS file) with its code cache, making the cache when there was none or V8 rejected
 * it, and runs it as Node runs a main module. `report` hears, before the bundle runs, whether a cache was
 * used, made or rejected (for tests; by default PODLAB_CODE_CACHE_REPORT).
 */
function run(bundle, report = reportFromEnv()) {
  const file = path.resolve(bundle);
  const fd = fs.openSync(file, 'r');
  let source;
  let st;
  try {
    st = fs.fstatSync(fd);
    source = fs.readFileSync(fd, 'utf8');
  } finally {
    fs.closeSync(fd);
  }
  const cacheFile = cachePath(file, st);
  const cachedData = readCache(cacheFile);
  const script = new vm.Script(Module.wrap(source), { filename: file, cachedData });
  const used = cachedData !== undefined && !script.cachedDataRejected;
  if (!used) writeCache(cacheFile, script.createCachedData(), cachedData !== undefined);
  const wrapper = script.runInThisContext();
  const mod = new Module(file, null);
  mod.filename = file;
  mod.paths = Module._nodeModulePaths(path.dirname(file));
  const cache = used ? 'used' : cachedData === undefined ? 'made' : 'rejected';
  if (report) report(cache, cacheFile);
  wrapper.call(mod.exports, mod.exports, Module.createRequire(file), mod, file, path.dirname(file));
  mod.loaded = true;
}

/**
 * import() for a bundle run here: Node 20 gives a vm.Script's code no import() without --experimental-vm-modules,
 * so an ES module named at run time (which no bundler can inline) is imported by this module, which Node loaded.
 */
function importModule(url) {
  return import(url);
}

module.exports = { run, importModule };

if (require.main === module) {
  // As `node BUNDLE ARGS...`: the bundle sees itself as argv[1].
  const bundle = process.argv[2];
  if (!bundle) {
    process.stderr.write('usage: node common/code-cache.cjs BUNDLE.cjs [ARGS...]\n');
    process.exit(2);
  }
  process.argv.splice(1, 1);
  run(bundle);
}
