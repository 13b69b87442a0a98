/**
 * The lab's state directory (`$PODLAB_HOME`, else `./.podlab`): `lab.json`
 * records every process the lab started (pid, role, arguments, control
 * socket), so any later CLI call finds the running lab, and `podlab down`
 * can stop exactly those processes, even after the launching CLI died.
 */
import fs from 'node:fs';
import path from 'node:path';

export interface ProcRecord {
  role: 'apiserver' | 'node';
  name: string;
  pid: number;
  args: string[];
  log: string;
}

export interface NodeRecord {
  name: string;
  ip: string;
  control: string;
}

export interface LabOptionsRecord {
  nodes: number;
  labNet: string;
  apiPort: number;
  clusterCidr: string;
  vxlanPort: number;
  seed: number;
  mtu: number;
  backend?: string;
}

export interface LabRecord {
  version: 1;
  status: 'starting' | 'running';
  stateDir: string;
  apiUrl?: string;
  startedAt: string;
  /** The CLI process supervising a foreground lab (absent with --detach). */
  supervisorPid?: number;
  options: LabOptionsRecord;
  procs: ProcRecord[];
  nodes: NodeRecord[];
}

/** Where the lab keeps its state. */
export function resolveStateDir(explicit?: string): string {
  return path.resolve(explicit ?? process.env.PODLAB_HOME ?? path.join(process.cwd(), '.podlab'));
}

export function labFile(stateDir: string): string {
  return path.join(stateDir, 'lab.json');
}

export function readLab(stateDir: string): LabRecord | null {
  try {
    return JSON.parse(fs.readFileSync(labFile(stateDir), 'utf8')) as LabRecord;
  } catch {
    return null;
  }
}

/** Writes lab.json atomically, so a crash mid-write never leaves half a record. */
export function writeLab(rec: LabRecord): void {
  fs.mkdirSync(rec.stateDir, { recursive: true, mode: 0o700 });
  const tmp = labFile(rec.stateDir) + '.tmp';
  fs.writeFileSync(tmp, JSON.stringify(rec, null, 2) + '\n', { mode: 0o600 });
  fs.renameSync(tmp, labFile(rec.stateDir));
}

/** True if the pid is alive and is one of this lab's processes (not a recycled pid). */
export function isOurProcess(pid: number, stateDir: string): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes(stateDir);
  } catch {
    // No /proc (not Linux): trust the signal check.
    return true;
  }
}

/** True while any process of the lab is alive. */
export function labIsLive(rec: LabRecord): boolean {
  return rec.procs.some((p) => isOurProcess(p.pid, rec.stateDir));
}
