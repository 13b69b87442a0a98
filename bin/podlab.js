#!/usr/bin/env node
// The podlab command: TypeScript run through tsx, no build step.
import process from 'node:process';
import { register } from 'tsx/esm/api';

register();
// `podlab agent|apiserver|kernel-node|supervise ...` are the lab's processes (netns labs and containers start them
// this way); everything else is the kubectl-like CLI.
const { isDaemon, runDaemon } = await import('../lab/daemons.ts');
if (isDaemon(process.argv[2])) await runDaemon(process.argv[2], process.argv.slice(3));
else await import('../cli/main.ts');
