#!/usr/bin/env node
// The podlab command (cli/podlab.ts). It runs the JavaScript `npm run build` compiled into dist/ while that
// matches the sources (common/compiled.js): the command's bundle, one CommonJS script run with V8's code cache
// (common/code-cache.cjs); else the TypeScript sources through tsx, with no build step needed.
import { createRequire } from 'node:module';
import { CODE_CACHE_LOADER, compiledFile, compiledFresh } from '../common/compiled.js';

if (compiledFresh()) {
  createRequire(import.meta.url)(CODE_CACHE_LOADER).run(compiledFile('cli/podlab.ts'));
} else {
  (await import('tsx/esm/api')).register();
  await import('../cli/podlab.ts');
}
