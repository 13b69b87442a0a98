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
