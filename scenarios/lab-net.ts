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
import { LabError, labAddresses } from '../lab/lab.ts';

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

/** Takes the lock of one network, or returns null if a live process holds it. */
export function lockNet(net: string): ClaimedNet | null {
  const file = lockPath(net);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = fs.openSync(file, 'wx', 0o600);
      fs.writeSync(fd, String(process.pid));
      fs.closeSync(fd);
      let released = false;
      return {
        net,
        release: () => {
          if (released) return;
          released = true;
          try {
            if (fs.readFileSync(file, 'utf8') === String(process.pid)) fs.rmSync(file, { force: true });
          } catch {
            /* gone */
          }
        },
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const holder = Number(fs.readFileSync(file, 'utf8').trim());
      if (holder && holder !== process.pid && alive(holder)) return null;
      if (holder === process.pid) return null;
      fs.rmSync(file, { force: true }); // stale: its owner died
    }
  }
  return null;
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

/** Claims `explicit` (refusing if another scenario holds it) or the first free automatic network. */
export async function claimLabNet(nodes: number, ports: number[], explicit?: string): Promise<ClaimedNet> {
  if (explicit) {
    const c = lockNet(explicit);
    if (!c) throw new LabError(`--lab-net ${explicit} is in use by another scenario run (lock ${lockPath(explicit)})`);
    return c;
  }
  for (const net of AUTO_NETS) {
    const c = lockNet(net);
    if (!c) continue;
    const { nodes: ips } = labAddresses(net, nodes);
    const free = await Promise.all(ips.flatMap((ip) => ports.map((port) => canBind(ip, port))));
    if (free.every(Boolean)) return c;
    c.release();
  }
  throw new LabError(`no free lab network among ${AUTO_NETS[0]} ... ${AUTO_NETS[AUTO_NETS.length - 1]}; give one with --lab-net`);
}
