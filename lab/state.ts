/**
 * The lab's state directory (`$PODLAB_HOME`, else `./.podlab`): `lab.json`
 * records every process the lab started (pid, role, arguments, control
 * socket), so any later CLI call finds the running lab, and `podlab down`
 * can stop exactly those processes, even after the launching CLI died.
 */
import fs from 'node:fs';
import path from 'node:path';

export interface ProcRecord {
  /** kernel-node: the small agent that programs a kernel (real Linux) node of a netns lab; router: the lab's upstream BGP router (`--lb-router`). */
  role: 'apiserver' | 'node' | 'kernel-node' | 'router';
  name: string;
  pid: number;
  args: string[];
  /** Environment variables it starts with besides the launcher's (the agents' malloc tuning: lab/local-lab.ts). */
  env?: Record<string, string>;
  log: string;
  /** netns labs: the network namespace the process runs in (started with `ip netns exec`). */
  netns?: string;
  /** Stopped on purpose (`podlab node NODE stop`, a scenario fault): the supervisor leaves it down. */
  held?: boolean;
  /** Times the supervisor restarted it after a crash. */
  restarts?: number;
  lastRestartAt?: string;
}

export interface NodeRecord {
  name: string;
  ip: string;
  control: string;
  /** netns labs: `kernel` for a node that is the Linux kernel itself (kernel vxlan flannel.1). */
  kind?: 'emulated' | 'kernel';
  /** netns labs: the node's network namespace. */
  netns?: string;
}

/**
 * What a netns lab created outside its processes: every namespace, recorded
 * before it is created, so `podlab down` (also `--force` after a crash)
 * deletes exactly these. Veths live only inside them and go with them.
 */
export interface NetnsRecord {
  /** Every namespace name starts with it (default `podlab`). */
  prefix: string;
  /** The namespace holding the lab bridge and the apiserver (`<prefix>-underlay`). */
  underlay: string;
  /** The lab bridge inside it (`podlab0`). */
  bridge: string;
  /** The lab's underlay subnet, e.g. 10.250.0.0/24 (inside the namespaces only). */
  subnet: string;
  namespaces: string[];
}

export interface LabOptionsRecord {
  nodes: number;
  labNet: string;
  apiPort: number;
  clusterCidr: string;
  vxlanPort: number;
  /** The bare-IPv4 wire's UDP port (host-gw/bgp in local labs). */
  wirePort?: number;
  seed: number;
  mtu: number;
  backend?: string;
  /** local (default) or netns. */
  mode?: string;
  underlayNet?: string;
  kernelNodes?: number;
  /** host-gw/bgp in netns labs: raw (frames on eth0) or udp (the bare-IPv4 wire). */
  wire?: string;
}

export interface LabRecord {
  version: 1;
  status: 'starting' | 'running';
  stateDir: string;
  apiUrl?: string;
  startedAt: string;
  /** The process that owns the lab (a foreground `podlab up`, a scenario run; absent with --detach): the lab dies with it. */
  ownerPid?: number;
  /** The lab's supervisor process (lab/supervisor.ts), when `up` started one. */
  supervisor?: { pid: number; log: string; owner?: number };
  options: LabOptionsRecord;
  procs: ProcRecord[];
  nodes: NodeRecord[];
  /** netns labs: the apiserver's URL inside the lab network (apiUrl is then its unix: socket). */
  apiInternalUrl?: string;
  /** netns labs: the apiserver's Unix socket, as in apiUrl. */
  apiSocket?: string;
  /** netns labs: the namespaces to delete on down. */
  netns?: NetnsRecord;
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

/** True if a process with this pid exists (ours to signal or not). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Runs `fn` holding the lab's lock (`<stateDir>/lab.lock`, O_EXCL, holding our
 * pid; a dead holder's lock is taken over), so the supervisor and a CLI that
 * stops or restarts a process never both act on the same crash.
 */
export async function withLabLock<T>(stateDir: string, fn: () => T | Promise<T>, timeoutMs = 30_000): Promise<T> {
  const file = path.join(stateDir, 'lab.lock');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const fd = fs.openSync(file, 'wx', 0o600);
      fs.writeSync(fd, String(process.pid));
      fs.closeSync(fd);
      break;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
      else if (code !== 'EEXIST') throw e;
      else {
        const holder = lockHolder(file);
        // 0: released meanwhile, or its holder is between create and write; a dead holder left it behind.
        if (holder && !pidAlive(holder)) fs.rmSync(file, { force: true });
        else if (Date.now() > deadline) throw new Error(`lab lock ${file} held by pid ${holder} for over ${timeoutMs} ms`, { cause: e });
        else await new Promise((r) => setTimeout(r, 10));
      }
    }
  }
  try {
    return await fn();
  } finally {
    fs.rmSync(file, { force: true });
  }
}

function lockHolder(file: string): number {
  try {
    return Number(fs.readFileSync(file, 'utf8').trim()) || 0;
  } catch {
    return 0;
  }
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
