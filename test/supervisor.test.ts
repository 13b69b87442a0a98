/**
 * The lab's supervisor, with real processes: a crashed agent or apiserver
 * comes back with backoff and its restart is counted (status, get nodes); a
 * deliberate stop stays stopped; a lab whose owner dies goes with it; a dead
 * lab's records and a SIGKILLed scenario run are cleaned up by the next start,
 * which says so.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { getResources } from '../cli/commands.ts';
import { labStatus } from '../cli/status.ts';
import { DEFAULT_RESTART_POLICY, restartDelay } from '../lab/supervisor.ts';
import { killProcess, restartProcess, up, type UpOptions } from '../lab/lab.ts';
import { isOurProcess, readLab } from '../lab/state.ts';
import { eventually, startLab } from './helpers/lab.ts';
import { BIN } from './helpers/scenario.ts';

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

test('restart backoff: 1 s doubling per crash in a row, capped at 30 s', (t) => {
  t.deepEqual([1, 2, 3, 4, 5, 6, 7].map((n) => restartDelay(n)), [1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]);
  t.is(restartDelay(1, { ...DEFAULT_RESTART_POLICY, initialDelayMs: 100 }), 100);
});

test.serial('a crashed agent and apiserver come back and are counted; a stopped node stays down until started', async (t) => {
  const lab = await startLab('127.0.143.0/24', { supervise: true, nodes: 3, podsPerNode: 1 });
  t.teardown(() => lab.close());
  const rec = readLab(lab.stateDir)!;
  t.truthy(rec.supervisor && isOurProcess(rec.supervisor.pid, lab.stateDir), 'the supervisor runs');
  const pid = (name: string) => readLab(lab.stateDir)!.procs.find((p) => p.name === name)!.pid;

  // A crash: SIGKILL from outside the lab's own commands.
  const old = pid('node-2');
  process.kill(old, 'SIGKILL');
  const t0 = Date.now();
  await eventually(() => pid('node-2') !== old && isOurProcess(pid('node-2'), lab.stateDir), 15_000, 50);
  t.log(`node-2's agent was back ${Date.now() - t0} ms after SIGKILL (pid ${old} -> ${pid('node-2')})`);
  await eventually(async () => / 0% packet loss/.test((await lab.exec('pod-1a', ['ping', '-c', '1', '-W', '1', '10.244.2.2'])).out), 20_000, 200);
  const node2 = readLab(lab.stateDir)!.procs.find((p) => p.name === 'node-2')!;
  t.is(node2.restarts, 1);
  // Restarted with the environment it was first started with (the agents' malloc tuning, lab/local-lab.ts).
  t.true(fs.readFileSync(`/proc/${node2.pid}/environ`, 'utf8').split('\0').includes(`MALLOC_TRIM_THRESHOLD_=${process.env.MALLOC_TRIM_THRESHOLD_ ?? '131072'}`));
  t.truthy(node2.lastRestartAt);
  const status = labStatus(lab.stateDir).text;
  t.regex(status, /^node-2 +node +\d+ +running +1 /m, status);
  t.regex(status, /^node-1 +node +\d+ +running +0 /m);
  const nodes = await getResources(lab.stateDir, 'nodes', { output: 'table' });
  t.regex(nodes, /^NAME +STATUS +ROLES +AGE +VERSION +RESTARTS$/m, nodes);
  t.regex(nodes, /^node-2 +Ready +.* 1$/m, nodes);

  // The apiserver too: the agents find it again on its pinned port.
  const api = pid('apiserver');
  process.kill(api, 'SIGKILL');
  await eventually(() => pid('apiserver') !== api && isOurProcess(pid('apiserver'), lab.stateDir), 15_000, 50);
  await eventually(async () => (await getResources(lab.stateDir, 'pods', { output: 'table' }).catch(() => '')).includes('pod-3a'), 15_000, 200);

  // A deliberate stop (podlab node node-3 stop) is held: well past the first backoff, it is still down.
  const n3 = pid('node-3');
  await killProcess(lab.stateDir, 'node-3', { kill: true });
  await new Promise((r) => setTimeout(r, 3000));
  t.is(pid('node-3'), n3, 'the supervisor left the stopped node alone');
  t.false(isOurProcess(n3, lab.stateDir));
  t.regex(labStatus(lab.stateDir).text, /^node-3 +node +\d+ +stopped +0 /m);
  t.regex(labStatus(lab.stateDir).text, /stopped on purpose .*: node-3/);
  await restartProcess(lab.stateDir, 'node-3');
  t.falsy(readLab(lab.stateDir)!.procs.find((p) => p.name === 'node-3')!.held, 'started again: supervised again');
  const n3b = pid('node-3');
  process.kill(n3b, 'SIGKILL');
  await eventually(() => pid('node-3') !== n3b && isOurProcess(pid('node-3'), lab.stateDir), 15_000, 50);
  t.is(readLab(lab.stateDir)!.procs.find((p) => p.name === 'node-3')!.restarts, 1);
});

test.serial('a lab whose owner dies is stopped by its supervisor; the next up over dead records says it cleaned them', async (t) => {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-test-'));
  const owner = spawn('sleep', ['600'], { stdio: 'ignore' });
  t.teardown(() => {
    owner.kill('SIGKILL');
    fs.rmSync(stateDir, { recursive: true, force: true });
  });
  const base: UpOptions = { stateDir, nodes: 2, podsPerNode: 0, manifests: [], labNet: '127.0.144.0/24', apiPort: 0, clusterCidr: '10.244.0.0/16', vxlanPort: 8472, seed: 1, mtu: 1500, waitReady: true, timeoutMs: 60_000 };
  const rec = await up({ ...base, supervise: true, ownerPid: owner.pid });
  const pids = [...rec.procs.map((p) => p.pid), rec.supervisor!.pid];
  owner.kill('SIGKILL');
  await eventually(() => pids.every((p) => !alive(p)), 15_000, 50);
  t.is(readLab(stateDir), null, 'down removed the records');

  // A crash of everything (supervisor included) leaves records whose pids are all gone.
  const rec2 = await up({ ...base, supervise: true });
  for (const p of [rec2.supervisor!.pid, ...rec2.procs.map((x) => x.pid)]) process.kill(p, 'SIGKILL');
  await eventually(() => rec2.procs.every((p) => !alive(p.pid)), 5000, 20);
  const said: string[] = [];
  const rec3 = await up({ ...base, onProgress: (m) => said.push(m) });
  t.true(said.some((m) => m.startsWith(`cleaned up a dead lab's records in ${stateDir}`)), said.join('\n'));
  t.true(rec3.procs.every((p) => isOurProcess(p.pid, stateDir)));
  const { down } = await import('../lab/lab.ts');
  await down(stateDir);
});

test.serial('a SIGKILLed scenario run leaves nothing that stops the next run on its network', async (t) => {
  const net = '127.0.145.0/24';
  const run = (): { proc: ReturnType<typeof spawn>; out: () => string } => {
    const proc = spawn(process.execPath, [BIN, 'scenario', 'run', 'cross-node', '--lab-net', net], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout.on('data', (d) => (out += d));
    proc.stderr.on('data', (d) => (out += d));
    return { proc, out: () => out };
  };
  const first = run();
  t.teardown(() => void first.proc.kill('SIGKILL'));
  const m = await eventually(() => /state (\S+)[\s\S]*lab up in/.exec(first.out()), 60_000, 50);
  const stateDir = m[1];
  const procs = readLab(stateDir)!;
  const pids = [...procs.procs.map((p) => p.pid), procs.supervisor!.pid];
  first.proc.kill('SIGKILL');
  // Its supervisor sees the owner gone and stops the lab: no orphan holds the network's ports.
  await eventually(() => pids.every((p) => !alive(p)), 15_000, 50);
  const second = run();
  t.teardown(() => void second.proc.kill('SIGKILL'));
  const code = await new Promise<number | null>((r) => second.proc.on('exit', r));
  t.is(code, 0, second.out());
  t.regex(second.out(), new RegExp(`cleaned up a dead scenario run on ${net.replace(/\./g, '\\.')} \\(pid ${first.proc.pid} is gone\\): removed ${stateDir}`));
  t.false(fs.existsSync(stateDir));
});
