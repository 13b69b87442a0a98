/**
 * `podlab status`: what the lab's records say and what is actually alive,
 * process by process, with the supervisor's restart counts, as
 * `systemctl status` shows a unit's restarts next to its state.
 */
import { readDockerLab } from '../lab/docker-lab.ts';
import { isOurProcess, readLab, type LabRecord } from '../lab/state.ts';
import { age, table } from './format.ts';
import { DEFAULT_BACKEND } from '../backends/registry.ts';

/** The status report of the lab in `stateDir` (and whether a lab is there at all). */
export function labStatus(stateDir: string, now = Date.now()): { text: string; found: boolean } {
  const docker = readDockerLab(stateDir);
  if (docker) return { found: true, text: `docker lab: project ${docker.project}, started ${docker.startedAt}; Docker restarts its containers (restart: on-failure): ${docker.compose.join(' ')} -p ${docker.project} ps\n` };
  const rec = readLab(stateDir);
  if (!rec) return { found: false, text: `no lab in ${stateDir}\n` };
  const alive = (pid: number) => isOurProcess(pid, stateDir);
  const rows = rec.procs.map((p) => {
    const state = alive(p.pid) ? 'running' : p.held ? 'stopped' : 'crashed';
    return [p.name, p.role, String(p.pid), state, String(p.restarts ?? 0), p.lastRestartAt ? `${age(p.lastRestartAt, now)} ago` : '-'];
  });
  const o = rec.options;
  const live = rec.procs.some((p) => alive(p.pid));
  const lines = [
    `lab: ${o.mode ?? 'local'} mode, backend ${o.backend ?? DEFAULT_BACKEND}, ${rec.nodes.length || o.nodes} nodes on ${rec.netns?.subnet ?? o.labNet}, ${rec.status}${live ? '' : ' but no process is alive (podlab down cleans up)'}, up ${age(rec.startedAt, now)}`,
    `apiserver: ${rec.apiUrl ?? '-'}   state: ${stateDir}`,
    supervisorLine(rec, stateDir),
    '',
    table(['PROCESS', 'ROLE', 'PID', 'STATE', 'RESTARTS', 'LAST RESTART'], rows).trimEnd(),
  ];
  const held = rec.procs.filter((p) => p.held && !alive(p.pid)).map((p) => p.name);
  if (held.length) lines.push('', `stopped on purpose (the supervisor leaves them down): ${held.join(', ')}; 'podlab node NAME start' brings one back`);
  return { found: true, text: lines.join('\n') + '\n' };
}

function supervisorLine(rec: LabRecord, stateDir: string): string {
  const owner = rec.ownerPid ? `owned by pid ${rec.ownerPid} (the lab stops when it exits)` : 'detached (podlab down stops it)';
  if (!rec.supervisor) return `supervisor: none (crashed processes stay down)   ${owner}`;
  return `supervisor: pid ${rec.supervisor.pid} ${isOurProcess(rec.supervisor.pid, stateDir) ? 'running' : 'NOT running'} (restarts crashed processes with backoff, 1 s doubling to 30 s)   ${owner}`;
}
