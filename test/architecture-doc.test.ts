/**
 * ARCHITECTURE.md stays short enough to read and true to the tree: every
 * source file it names in backticks exists (a path from the root, or a bare
 * file name somewhere in the runtime folders).
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT, RUNTIME_DIRS } from '../common/compiled.js';

const DOC = fs.readFileSync(path.join(ROOT, 'ARCHITECTURE.md'), 'utf8');

function filesUnder(dir: string, out = new Set<string>()): Set<string> {
  for (const e of fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
    const rel = path.join(dir, e.name);
    if (e.isDirectory()) filesUnder(rel, out);
    else out.add(e.name);
  }
  return out;
}

test('ARCHITECTURE.md is under 250 lines', (t) => {
  const lines = DOC.split('\n').length - (DOC.endsWith('\n') ? 1 : 0);
  t.true(lines < 250, `${lines} lines`);
});

test('every source file ARCHITECTURE.md names exists', (t) => {
  const names = new Set<string>();
  for (const m of DOC.matchAll(/`([^`\s]+)`/g)) {
    const ref = m[1].replace(/[.,;:]+$/, '');
    if (/^[\w.-]+(\/[\w.-]+)*\.(ts|js|cjs|mjs)$/.test(ref)) names.add(ref);
  }
  t.true(names.size > 40, `only ${names.size} file names found: has the document's style changed?`);
  const bare = new Set<string>();
  for (const d of RUNTIME_DIRS) filesUnder(d, bare);
  for (const f of fs.readdirSync(ROOT)) bare.add(f);
  const missing = [...names].filter((n) => (n.includes('/') ? !fs.existsSync(path.join(ROOT, n)) : !bare.has(n)));
  t.deepEqual(missing, []);
});
