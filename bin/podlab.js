#!/usr/bin/env node
// The podlab command: TypeScript run through tsx, no build step.
import { register } from 'tsx/esm/api';

register();
await import('../cli/main.ts');
