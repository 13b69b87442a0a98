/**
 * Node built-ins that most processes never use, loaded on first use instead
 * of by a static import: an ES module's imports all load before it runs, and
 * a bundle's before anything runs, so each static import of these costs every
 * agent its compile at start (child_process 3 ms, worker_threads and v8 2 ms
 * each) although only netns labs run commands, only some backends start a
 * worker, and only a control-socket `memory` request with gc forces a collection.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export const childProcess = (): typeof import('node:child_process') => require('node:child_process') as typeof import('node:child_process');
export const workerThreads = (): typeof import('node:worker_threads') => require('node:worker_threads') as typeof import('node:worker_threads');
export const v8 = (): typeof import('node:v8') => require('node:v8') as typeof import('node:v8');
export const vm = (): typeof import('node:vm') => require('node:vm') as typeof import('node:vm');
