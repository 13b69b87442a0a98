#!/usr/bin/env node
// The podlab command. It runs the JavaScript `npm run build` compiled into dist/ while that matches the
// sources (common/compiled.js), else the TypeScript sources through tsx, with no build step needed.
import process from 'node:process';
import { compiledFresh } from '../common/compiled.js';

const base = compiledFresh() ? '../dist/' : '../';
const ext = compiledFresh() ? '.js' : '.ts';
if (!compiledFresh()) (await import('tsx/esm/api')).register();
// `podlab agent|apiserver|kernel-node|supervise ...` are the lab's processes (netns labs and containers start them
// this way); everything else is the kubectl-like CLI.
const { isDaemon, runDaemon } = await import(`${base}lab/daemons${ext}`);
if (isDaemon(process.argv[2])) await runDaemon(process.argv[2], process.argv.slice(3));
else await import(`${base}cli/main${ext}`);
