/**
 * A loopback network for a scenario's lab that nothing else uses: the user's
 * lab (127.0.0.0/24 by default), test labs and other scenario runs. A
 * candidate /24 is claimed with a lock file in the temp dir (O_EXCL, holding
 * our pid; a dead holder's lock is taken over) and kept only if every node
 * address can bind the VXLAN (and bare wire) port. The first free candidate in a fixed order
 * is taken, so on a quiet machine the same scenario gets the same network
 * (impairment streams are keyed by peer address: see the README).
 */
import dgram from 'node:dgram';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LabError, down, labAddresses } from '../lab/lab.ts';

/** Where automatic networks come from: 127.0.200.0/24 ... 127.0.249.0/24. */
export const AUTO_NETS = Array.from({ length: 50 }, (_, i) => `127.0.${200 + i}.0/24`);

export interface ClaimedNet {
  net: string;
  release(): void;
}

function lockPath(net: string): string {
  return path.join(os.tmpdir(), `podlab-scenario-net-${net.replace(/[./]/g, '_')}.lock`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A scenario run that died holding a network: its pid and its lab's state dir. */
export interface DeadRun {
  pid: number;
  stateDir?: string;
}

/**
 * Takes the lock of one network (recording our pid and our lab's state dir),
 * or returns null if a live process holds it. A dead holder's lock is taken
 * over and the dead run is returned, so its lab can be cleaned up.
 */
export function lockNet(net: string, stateDir?: string): (ClaimedNet & { dead?: DeadRun }) | null {
  const file = lockPath(net);
  let dead: DeadRun | undefined;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = fs.openSync(file, 'wx', 0o600);
      fs.writeSync(fd, stateDir ? `${process.pid}\n${stateDir}\n` : String(process.pid));
      fs.closeSync(fd);
      let released = false;
      return {
        net,
        ...(dead ? { dead } : {}),
        release: () => {
          if (released) return;
          released = true;
          try {
            if (Number(fs.readFileSync(file, 'utf8').split('\n')[0]) === process.pid) fs.rmSync(file, { force: true });
          } catch {
            /* gone */
          }
        },
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const [pidText, dir] = fs.readFileSync(file, 'utf8').split('\n');
      const holder = Number(pidText.trim());
      if (holder && holder !== process.pid && alive(holder)) return null;
      if (holder === process.pid) return null;
      if (holder) dead = { pid: holder, ...(dir?.trim() ? { stateDir: dir.trim() } : {}) };
      fs.rmSync(file, { force: true }); // stale: its owner died
    }
  }
  return null;
}

/**
 * A dead run's lab: stopped as `podlab down` stops it (its supervisor
 * normally did that already when the run died) and its temp state removed.
 */
async function cleanDeadRun(net: string, run: DeadRun, say: (msg: string) => void): Promise<void> {
  if (!run.stateDir || !path.basename(run.stateDir).startsWith('podlab-scenario-')) return;
  const stopped = fs.existsSync(run.stateDir) ? await down(run.stateDir).then((r) => r.stopped, () => 0) : 0;
  fs.rmSync(run.stateDir, { recursive: true, force: true });
  say(`cleaned up a dead scenario run on ${net} (pid ${run.pid} is gone): ${stopped ? `stopped ${stopped} orphan processes, ` : ''}removed ${run.stateDir}`);
}

function canBind(ip: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    s.once('error', () => {
      s.close();
      resolve(false);
    });
    s.bind({ address: ip, port, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

/**
 * Claims `explicit` (refusing if another scenario holds it) or the first free
 * automatic network; a dead run found holding a network is cleaned up first.
 */
export async function claimLabNet(nodes: number, ports: number[], explicit?: string, stateDir?: string, say: (msg: string) => void = () => {}): Promise<ClaimedNet> {
  if (explicit) {
    const c = lockNet(explicit, stateDir);
    if (!c) throw new LabError(`--lab-net ${explicit} is in use by another scenario run (lock ${lockPath(explicit)})`);
    if (c.dead) await cleanDeadRun(explicit, c.dead, say);
    return c;
  }
  for (const net of AUTO_NETS) {
    const c = lockNet(net, stateDir);
    if (!c) continue;
    if (c.dead) await cleanDeadRun(net, c.dead, say);
    const { nodes: ips } = labAddresses(net, nodes);
    const free = await Promise.all(ips.flatMap((ip) => ports.map((port) => canBind(ip, port))));
    if (free.every(Boolean)) return c;
    c.release();
  }
  throw new LabError(`no free lab network among ${AUTO_NETS[0]} ... ${AUTO_NETS[AUTO_NETS.length - 1]}; give one with --lab-net`);
}
