#!/usr/bin/env node
// The podlab command. It runs the JavaScript `npm run build` compiled into dist/ while that matches the
// sources (common/compiled.js): the command's bundle, one CommonJS script run with V8's code cache
// (cli/podlab.ts, common/code-cache.cjs); else the TypeScript sources through tsx, with no build step needed.
import { createRequire } from 'node:module';
import process from 'node:process';
import { CODE_CACHE_LOADER, compiledFile, compiledFresh } from '../common/compiled.js';

if (compiledFresh()) {
  createRequire(import.meta.url)(CODE_CACHE_LOADER).run(compiledFile('cli/podlab.ts'));
} else {
  (await import('tsx/esm/api')).register();
  // `podlab agent|apiserver|kernel-node|supervise ...` are the lab's processes (netns labs and containers start
  // them this way); everything else is the kubectl-like CLI.
  const { isDaemon, runDaemon } = await import('../lab/daemons.ts');
  if (isDaemon(process.argv[2])) await runDaemon(process.argv[2], process.argv.slice(3));
  else await import('../cli/main.ts');
}
