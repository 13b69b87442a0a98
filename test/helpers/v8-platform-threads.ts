/**
 * Run as a process of its own (test/thread-priority.test.ts) with `--v8-pool-size=1`: lowers V8's platform
 * threads as an agent does, then prints what it found, what it lowered, and every thread's nice value and the
 * timeslices it has run before and after a WebAssembly compile and a hot function's optimization.
 */
import fs from 'node:fs';
import { findV8PlatformThreads, lowerV8PlatformThreads, threadId, threadSched } from '../../common/thread-priority.ts';

const found = await findV8PlatformThreads();
const lowered = await lowerV8PlatformThreads(10, found);
const slices = () => Object.fromEntries(fs.readdirSync('/proc/self/task').map((t) => [t, Number(fs.readFileSync(`/proc/self/task/${t}/schedstat`, 'utf8').split(' ')[2])]));
const before = slices();
// A function hot enough for the optimizing compiler, which runs concurrently: on a platform thread.
let x = 0;
const hot = (i: number) => (x = (x * 31 + i) | 0);
const until = performance.now() + 300;
while (performance.now() < until) for (let i = 0; i < 1e5; i++) hot(i);
const after = slices();
const nice = Object.fromEntries(fs.readdirSync('/proc/self/task').map((t) => [t, threadSched(Number(t))?.nice]));
process.stdout.write(`${JSON.stringify({ main: threadId(), found, lowered, nice, before, after, x })}\n`);
