// Module hooks for `npm run bench`: the runtime modules the bench imports in
// process (two in-process nodes, kube-proxy's engines) load from dist/, the
// JavaScript agents run, instead of through tsx. tsx compiles with esbuild's
// keepNames, which wraps every function made at run time in a defineProperty
// call: a closure made per packet or per decision then costs what it never
// costs an agent (a third of a kube-proxy decision at 10 Services). Only while
// dist/ matches the sources (common/compiled.js); otherwise tsx runs them.
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { DIST, ROOT, RUNTIME_DIRS, compiledFresh } from '../common/compiled.js';

const fresh = compiledFresh();
const roots = RUNTIME_DIRS.map((d) => path.join(ROOT, d) + path.sep);

export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  if (!fresh || !r.url.startsWith('file:') || !r.url.endsWith('.ts')) return r;
  const file = fileURLToPath(r.url);
  if (!roots.some((d) => file.startsWith(d))) return r;
  return { url: pathToFileURL(path.join(DIST, path.relative(ROOT, file)).replace(/\.ts$/, '.js')).href, format: 'module', shortCircuit: true };
}

export async function load(url, context, next) {
  if (fresh && url.startsWith(pathToFileURL(DIST + path.sep).href)) return { format: 'module', source: await fs.readFile(fileURLToPath(url), 'utf8'), shortCircuit: true };
  return next(url, context);
}
