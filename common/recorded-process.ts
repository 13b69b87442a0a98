/**
 * Processes a lab starts outside its process list (a kernel node's BIRD, the
 * servers in kernel pods) keep a pid file under `<state dir>/nodes/<node>/`,
 * so `podlab down` can stop them even after the agent that started them was
 * killed: a namespace deleted under a running process does not stop it.
 *
 * A pid is only signalled while its command line still names `marker` (a path
 * inside the state dir), so a recycled pid is never hit.
 */
import fs from 'node:fs';
import path from 'node:path';

function cmdlineHas(pid: number, marker: string): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(marker);
  } catch {
    return false;
  }
}

/** The pid in a pid file, if it is a live process whose command line names `marker`. */
export function recordedPid(file: string, marker: string): number | undefined {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(file, 'utf8').trim());
  } catch {
    return undefined;
  }
  return Number.isInteger(pid) && pid > 1 && cmdlineHas(pid, marker) ? pid : undefined;
}

/** Stops the process of a pid file (SIGTERM, then SIGKILL after 3 s) and removes the file. True if one was running. */
export async function stopRecorded(file: string, marker: string): Promise<boolean> {
  const pid = recordedPid(file, marker);
  if (pid !== undefined) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      /* gone meanwhile */
    }
    for (let i = 0; i < 50 && cmdlineHas(pid, marker); i++) await new Promise((r) => setTimeout(r, 60));
    if (cmdlineHas(pid, marker)) process.kill(pid, 'SIGKILL');
  }
  fs.rmSync(file, { force: true });
  return pid !== undefined;
}

/** Every pid file of a state dir's nodes (`nodes/<node>/**.pid`). */
export function pidFilesUnder(stateDir: string): string[] {
  const out: string[] = [];
  const walk = (dir: string, depth: number) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(dir, e.name);
      if (e.isDirectory() && depth < 3) walk(p, depth + 1);
      else if (e.isFile() && e.name.endsWith('.pid')) out.push(p);
    }
  };
  walk(path.join(stateDir, 'nodes'), 0);
  return out;
}

/** Stops every recorded process of a state dir (each must name the state dir in its command line). */
export async function stopAllRecorded(stateDir: string): Promise<number> {
  let n = 0;
  for (const f of pidFilesUnder(stateDir)) if (await stopRecorded(f, path.resolve(stateDir))) n++;
  return n;
}
