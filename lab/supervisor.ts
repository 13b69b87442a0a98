/**
 * The lab's supervisor: one small process per lab that restarts a crashed
 * node agent, kernel-node agent or apiserver with backoff, as systemd's
 * `Restart=on-failure` and the kubelet's crash-loop backoff do, and stops the
 * whole lab when the process that owns it (a foreground `podlab up`, a
 * scenario run) dies without stopping it, so nothing is left holding the
 * lab's addresses.
 *
 * Deliberate stops are not crashes: `podlab node NODE stop`, a scenario's
 * node-failure fault and `restartProcess` mark the process `held` in lab.json
 * under the lab lock before they signal it, and the supervisor decides under
 * the same lock, so it never races them into a second copy of a process.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { helpIfAsked } from '../common/daemon.ts';
import { ROOT } from '../common/compiled.js';
import { down, sleep, spawnLogged, waitForEvent } from './launch.ts';
import { isOurProcess, pidAlive, readLab, withLabLock, writeLab, type ProcRecord } from './state.ts';

/** How restarts back off: the delay doubles per crash in a row, and resets after a process stayed up long enough. */
export interface RestartPolicy {
  initialDelayMs: number;
  maxDelayMs: number;
  /** A process that ran at least this long before crashing starts over at the initial delay. */
  resetAfterMs: number;
}

export const DEFAULT_RESTART_POLICY: RestartPolicy = { initialDelayMs: 1000, maxDelayMs: 30_000, resetAfterMs: 60_000 };

/** The delay before restart number `crashesInARow` (1 for the first crash of a run). */
export function restartDelay(crashesInARow: number, p: RestartPolicy = DEFAULT_RESTART_POLICY): number {
  return Math.min(p.maxDelayMs, p.initialDelayMs * 2 ** Math.max(0, crashesInARow - 1));
}

/** What the supervisor remembers per process between polls. */
interface Watch {
  pid: number;
  startedAt: number;
  crashesInARow: number;
  /** When a crash was seen: the restart is due at diedAt + delay. */
  diedAt?: number;
}

/** Processes a supervisor restarts (not the supervisor itself). */
const SUPERVISED: ReadonlySet<ProcRecord['role']> = new Set(['apiserver', 'node', 'kernel-node', 'router']);

const line = (event: string, fields: Record<string, unknown>) => process.stdout.write(JSON.stringify({ event, time: new Date().toISOString(), ...fields }) + '\n');

/**
 * One poll: finds crashed processes and restarts those whose backoff is over.
 * Returns false when the lab is gone (the supervisor then exits).
 */
export async function superviseOnce(stateDir: string, watches: Map<string, Watch>, now: number, policy: RestartPolicy = DEFAULT_RESTART_POLICY): Promise<boolean> {
  const rec = readLab(stateDir);
  if (!rec) return false;
  if (rec.status !== 'running') return true;
  for (const pr of rec.procs) {
    if (!SUPERVISED.has(pr.role)) continue;
    let w = watches.get(pr.name);
    if (!w || w.pid !== pr.pid) {
      // New, or restarted by someone else (podlab node NODE restart): follow the new pid.
      w = { pid: pr.pid, startedAt: now, crashesInARow: w?.crashesInARow ?? 0 };
      watches.set(pr.name, w);
    }
    if (pr.held || isOurProcess(pr.pid, stateDir)) {
      w.diedAt = undefined;
      continue;
    }
    if (w.diedAt === undefined) {
      w.crashesInARow = now - w.startedAt >= policy.resetAfterMs ? 1 : w.crashesInARow + 1;
      w.diedAt = now;
      line('crashed', { name: pr.name, pid: pr.pid, restartInMs: restartDelay(w.crashesInARow, policy) });
    }
    if (now - w.diedAt < restartDelay(w.crashesInARow, policy)) continue;
    await withLabLock(stateDir, () => {
      // Decided again under the lock: a deliberate stop or restart may have happened since the read above.
      const fresh = readLab(stateDir);
      const cur = fresh?.procs.find((p) => p.name === pr.name);
      if (!fresh || !cur || cur.held || cur.pid !== pr.pid || isOurProcess(cur.pid, stateDir)) return;
      const p = spawnLogged(stateDir, cur.name, cur.args, cur.netns, cur.env);
      const old = cur.pid;
      cur.pid = p.pid;
      cur.restarts = (cur.restarts ?? 0) + 1;
      cur.lastRestartAt = new Date().toISOString();
      writeLab(fresh);
      watches.set(cur.name, { pid: p.pid, startedAt: Date.now(), crashesInARow: w.crashesInARow });
      line('restarted', { name: cur.name, oldPid: old, pid: p.pid, restarts: cur.restarts });
    });
  }
  return true;
}

/** The supervisor daemon's flags. */
const OPTIONS = {
  'state-dir': { type: 'string' },
  owner: { type: 'string' },
  'poll-ms': { type: 'string', default: '200' },
} as const;

/** `podlab supervise --state-dir DIR [--owner PID]`: runs until the lab is gone. */
export async function runSupervisor(argv: string[]): Promise<void> {
  helpIfAsked('supervise', 'Restarts crashed processes of the lab in --state-dir with backoff; stops the lab when --owner dies.', OPTIONS, argv);
  const { values } = parseArgs({ args: argv, options: OPTIONS, strict: true });
  const stateDir = values['state-dir'];
  if (!stateDir || !fs.existsSync(path.join(stateDir, 'lab.json'))) {
    line('error', { message: `--state-dir: no lab.json in ${String(stateDir)}` });
    process.exit(2);
  }
  const owner = values.owner ? Number(values.owner) : undefined;
  const pollMs = Number(values['poll-ms']);
  let stopping = false;
  const stop = () => {
    stopping = true;
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  const watches = new Map<string, Watch>();
  line('ready', { pid: process.pid, owner: owner ?? null });
  while (!stopping) {
    if (owner !== undefined && !pidAlive(owner)) {
      // The owner died without `podlab down` (SIGKILL, a closed terminal): its lab must not outlive it.
      line('owner-gone', { owner });
      const r = await down(stateDir, { keepSupervisor: true }).catch((e: Error) => ({ stopped: -1, error: e.message }));
      line('lab-stopped', r);
      break;
    }
    if (!(await superviseOnce(stateDir, watches, Date.now()).catch((e: Error) => (line('error', { message: e.message }), true)))) break;
    await sleep(pollMs);
  }
  process.exit(0);
}

/** Starts a lab's supervisor and records it in lab.json; `owner` is the process whose death stops the lab. */
export async function startSupervisor(stateDir: string, owner?: number): Promise<number> {
  const args = [path.join(ROOT, 'bin', 'podlab.js'), 'supervise', '--state-dir', stateDir, ...(owner ? ['--owner', String(owner)] : [])];
  const p = spawnLogged(stateDir, 'supervisor', args);
  await withLabLock(stateDir, () => {
    const rec = readLab(stateDir);
    if (rec) {
      rec.supervisor = { pid: p.pid, log: p.log, ...(owner ? { owner } : {}) };
      writeLab(rec);
    }
  });
  await waitForEvent(p.log, 'ready', p.pid, 10_000, p.offset);
  return p.pid;
}
