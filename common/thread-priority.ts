/**
 * Lowers the calling thread (a worker thread doing background work) below
 * the others. SCHED_IDLE puts it below every ordinary thread: a
 * thread of an ordinary policy that wakes up always preempts an idle-policy
 * one at once, whereas against a nice-10 thread the scheduler may let the
 * running one finish its slice first (milliseconds, which the data plane's
 * thread would wait with a packet in hand). An idle-policy thread still gets
 * every cycle no runnable ordinary thread wants, so its work finishes on a
 * busy machine, only later, unless the machine's ordinary threads never
 * rest (then never, which is why kube-proxy's worker stays at nice 10 unless
 * asked). Linux lets an unprivileged thread move itself to SCHED_IDLE; Node
 * has no call for it, so `chrt` does it for the thread's id.
 */
import fs from 'node:fs';
import os from 'node:os';
import { childProcess } from './lazy-builtins.ts';
import { systemTool } from './system-tool.ts';

export type ThreadPriority = 'SCHED_IDLE' | `nice ${number}` | 'unchanged';

/** This thread's kernel id (its own, not the process's, from a worker too), or undefined off Linux. */
export function threadId(): number | undefined {
  try {
    const tid = Number(fs.readlinkSync('/proc/thread-self').split('/').pop());
    return Number.isInteger(tid) && tid > 0 ? tid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * SCHED_IDLE for the calling thread, or when that fails (no chrt, not Linux)
 * the nice value `fallbackNice`; `policy` 'nice' skips SCHED_IDLE. What it got.
 */
export function lowerThisThread(policy: 'idle' | 'nice' = 'idle', fallbackNice = 19): ThreadPriority {
  const tid = threadId();
  const chrt = systemTool('chrt');
  if (policy === 'idle' && tid !== undefined && chrt) {
    const r = childProcess().spawnSync(chrt, ['--idle', '--pid', '0', String(tid)], { stdio: 'ignore', timeout: 5000 });
    if (r.status === 0) return 'SCHED_IDLE';
  }
  try {
    // On Linux a nice value is per thread, and 0 names the calling one.
    os.setPriority(0, fallbackNice);
    return `nice ${fallbackNice}`;
  } catch {
    return 'unchanged';
  }
}

/** A thread of this process as /proc shows it (stat fields 41 and 19): policy (0 normal, 5 SCHED_IDLE) and nice value; for tests. */
export function threadSched(tid: number): { policy: number; nice: number } | undefined {
  try {
    const stat = fs.readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { policy: Number(f[41 - 3]), nice: Number(f[19 - 3]) };
  } catch {
    return undefined;
  }
}

/**
 * A WebAssembly module of one function returning 42. V8 compiles a module given to `WebAssembly.compile` in a job
 * on its platform's worker threads, so the thread that wakes for it is one of them.
 */
const PLATFORM_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 127, 3, 2, 1, 0, 10, 6, 1, 4, 0, 65, 42, 11]);

/** The global WebAssembly (the project's TypeScript libraries do not declare it). */
const wasm = (globalThis as unknown as { WebAssembly: { compile(bytes: Uint8Array): Promise<unknown> } }).WebAssembly;

/** Timeslices each thread of this process has run (/proc/PID/task/TID/schedstat's third field). */
function timeslices(): Map<number, number> {
  const out = new Map<number, number>();
  for (const t of fs.readdirSync('/proc/self/task')) {
    try {
      out.set(Number(t), Number(fs.readFileSync(`/proc/self/task/${t}/schedstat`, 'utf8').split(' ')[2]));
    } catch {
      // The thread ended meanwhile.
    }
  }
  return out;
}

/**
 * How many platform worker threads V8 has: `--v8-pool-size` from the command line or NODE_OPTIONS (agents run with
 * 1), else Node's default of 4.
 */
function platformPoolSize(): number {
  const args = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)];
  for (const a of args) {
    const m = /^--v8-pool-size=(\d+)$/.exec(a);
    if (m) return Math.max(1, Number(m[1]));
  }
  return 4;
}

/**
 * V8's platform worker threads: where every isolate of the process runs its background jobs (above all the
 * optimizing compiler's). Node names none of its threads, so each is found by what it does: the threads that
 * were scheduled in for each of several asynchronous WebAssembly compiles (with `--v8-pool-size=1`, as agents
 * run, one thread). A platform thread busy with a long job all through a probe is not scheduled in anew, and on
 * a loaded machine other threads (libuv's pool, Node's delayed-task thread) may happen to run during every
 * probe of a round: a round that finds none, or more than the pool has, is tried again, up to five, 50 ms apart.
 * Empty off Linux, or if no round was unambiguous: then nothing is lowered, rather than the wrong threads.
 */
export async function findV8PlatformThreads(): Promise<number[]> {
  const self = threadId();
  const pool = platformPoolSize();
  try {
    for (let round = 0; round < 5; round++) {
      if (round) await new Promise((r) => setTimeout(r, 50));
      let found: Set<number> | undefined;
      // At least three probes; up to six while more threads than the pool's keep turning up.
      for (let i = 0; i < 6 && (!found || (found.size && (i < 3 || found.size > pool))); i++) {
        const before = timeslices();
        await wasm.compile(PLATFORM_PROBE);
        const after = timeslices();
        const woke = new Set<number>();
        for (const [tid, n] of after) if (tid !== self && before.has(tid) && n > before.get(tid)! && (!found || found.has(tid))) woke.add(tid);
        found = woke;
      }
      if (found?.size && found.size <= pool) return [...found];
    }
  } catch {
    // No /proc, or no WebAssembly.
  }
  return [];
}

/**
 * Lowers V8's platform worker threads (./findV8PlatformThreads) to nice `nice`; returns those lowered. They start
 * at the process's priority, so a worker thread lowered below the data plane still has its code compiled beside
 * the data plane at full weight: a fresh kube-proxy worker's isolate kept that thread busy for ~400 ms of its
 * first list and sync, the data plane's thread waiting for a core behind it. The data plane's own optimizations
 * then wait for a free core too, which a warm data plane hardly asks for.
 * `PODLAB_V8_PLATFORM=unchanged` in the environment leaves them (to measure what this buys: bench/sync-stall.ts).
 */
export async function lowerV8PlatformThreads(nice = 10, threads?: readonly number[]): Promise<number[]> {
  if (process.env.PODLAB_V8_PLATFORM === 'unchanged') return [];
  const lowered: number[] = [];
  for (const tid of threads ?? (await findV8PlatformThreads())) {
    try {
      os.setPriority(tid, nice);
      lowered.push(tid);
    } catch {
      // The thread ended.
    }
  }
  return lowered;
}
