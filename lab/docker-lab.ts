/**
 * `podlab up --mode docker`: the compose lab (docker-compose.yml, and the
 * capture / raw-frame overrides when asked) driven for the user, command for
 * command what the README's Docker section types: build, `up -d --scale
 * node=N`, wait for N Ready nodes, apply the manifests. The lab's project,
 * files and environment are kept in `<state dir>/docker-lab.json`, so `podlab
 * down` takes it down again (`down -v`). Every later command goes through
 * `docker-compose exec ... node podlab ...`, which the launcher prints.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { LabError } from './lab.ts';
import { BACKEND_NAMES, backendNamed } from '../backends/registry.ts';

export interface DockerLabOptions {
  stateDir: string;
  /** The folder holding Dockerfile and the compose files (the package root). */
  root: string;
  nodes: number;
  backend: string;
  wire?: string;
  mtu: number;
  clusterCidr: string;
  /** Compose project name (default podlab). */
  project: string;
  /** Start the capture side-car, writing lab.pcapng into this folder. */
  captureDir?: string;
  /** The lab bridge's name (capture and raw frames name it). */
  bridge: string;
  /** Make the Dockerfile's base image locally first (scripts/docker-base.sh; no registry needed). */
  localBase: boolean;
  /** Manifest files, applied in the first node container once the nodes are Ready. */
  manifests: string[];
  timeoutMs: number;
  onProgress?: (msg: string) => void;
}

/** What `podlab down` needs to take a docker lab down. */
export interface DockerLabRecord {
  mode: 'docker';
  project: string;
  root: string;
  files: string[];
  env: Record<string, string>;
  compose: string[];
  startedAt: string;
}

export function dockerLabFile(stateDir: string): string {
  return path.join(stateDir, 'docker-lab.json');
}

export function readDockerLab(stateDir: string): DockerLabRecord | null {
  try {
    return JSON.parse(fs.readFileSync(dockerLabFile(stateDir), 'utf8')) as DockerLabRecord;
  } catch {
    return null;
  }
}

interface Ran {
  code: number;
  /** Standard output alone (JSON answers: docker-compose v1 writes warnings on stderr). */
  stdout: string;
  /** Both streams, interleaved, for error messages. */
  out: string;
}

function run(cmd: string[], o: { cwd: string; env: Record<string, string>; input?: string; echo?: (s: string) => void }): Promise<Ran> {
  return new Promise((resolve) => {
    const p = spawn(cmd[0], cmd.slice(1), { cwd: o.cwd, env: { ...process.env, ...o.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let stdout = '';
    const take = (d: Buffer) => {
      out += String(d);
      o.echo?.(String(d));
    };
    p.stdout.on('data', (d: Buffer) => {
      stdout += String(d);
      take(d);
    });
    p.stderr.on('data', take);
    p.on('error', (e) => resolve({ code: 127, stdout: '', out: `${cmd[0]}: ${e.message}` }));
    p.on('close', (code) => resolve({ code: code ?? 1, stdout, out }));
    p.stdin.end(o.input ?? '');
  });
}

/** `docker-compose` (v1) if installed, else the `docker compose` plugin. */
export async function composeCommand(): Promise<string[]> {
  const v1 = await run(['docker-compose', 'version', '--short'], { cwd: '/', env: {} });
  if (v1.code === 0) return ['docker-compose'];
  const v2 = await run(['docker', 'compose', 'version', '--short'], { cwd: '/', env: {} });
  if (v2.code === 0) return ['docker', 'compose'];
  throw new LabError('--mode docker needs docker-compose (Debian: apt-get install docker-compose) or the docker compose plugin');
}

const BRIDGE_NAME = /^[a-zA-Z0-9_.-]{1,15}$/;

export async function dockerUp(o: DockerLabOptions): Promise<DockerLabRecord> {
  if (!BRIDGE_NAME.test(o.bridge)) throw new LabError(`--docker-bridge: '${o.bridge}' is not an interface name (1-15 of letters, digits, _ . -)`);
  if (!/^[a-z0-9][a-z0-9_-]*$/.test(o.project)) throw new LabError(`--docker-project: '${o.project}' must be lowercase letters, digits, _ and - (a compose project name)`);
  if (o.wire === 'raw' && !backendNamed(o.backend).ipUnderlay) throw new LabError(`--wire raw: only ${BACKEND_NAMES.filter((n) => backendNamed(n).ipUnderlay).join(', ')} put raw frames on eth0`);
  if (readDockerLab(o.stateDir)) throw new LabError(`a docker lab is already recorded in ${o.stateDir} (podlab down first)`);
  const docker = await run(['docker', 'info', '--format', '{{.ServerVersion}}'], { cwd: o.root, env: {} });
  if (docker.code !== 0) throw new LabError(`--mode docker needs a running Docker engine: docker info says: ${docker.out.trim()}`);
  const compose = await composeCommand();
  const files = ['docker-compose.yml'];
  if (o.captureDir) files.push('docker-compose.capture.yml');
  if (o.wire === 'raw') files.push('docker-compose.raw.yml');
  const env: Record<string, string> = {
    COMPOSE_PROJECT_NAME: o.project,
    PODLAB_BACKEND: o.backend,
    PODLAB_WIRE: o.wire ?? 'udp',
    PODLAB_MTU: String(o.mtu),
    PODLAB_CLUSTER_CIDR: o.clusterCidr,
    PODLAB_BRIDGE: o.bridge,
  };
  if (o.captureDir) {
    fs.mkdirSync(o.captureDir, { recursive: true });
    env.PODLAB_CAPTURE_DIR = path.resolve(o.captureDir);
  }
  const fileArgs = files.flatMap((f) => ['-f', f]);
  const say = o.onProgress ?? (() => {});
  const step = async (what: string, cmd: string[], input?: string): Promise<string> => {
    say(`${what}: ${cmd.join(' ')}`);
    const r = await run(cmd, { cwd: o.root, env, input });
    if (r.code !== 0) throw new LabError(`${what} failed (exit ${r.code}): ${cmd.join(' ')}\n${r.out.trim().split('\n').slice(-20).join('\n')}`);
    return r.stdout;
  };
  const rec: DockerLabRecord = { mode: 'docker', project: o.project, root: o.root, files, env, compose, startedAt: new Date().toISOString() };
  if (o.localBase) await step('base image', [path.join(o.root, 'scripts/docker-base.sh')]);
  await step('build', [...compose, ...fileArgs, 'build']);
  fs.mkdirSync(o.stateDir, { recursive: true });
  fs.writeFileSync(dockerLabFile(o.stateDir), JSON.stringify(rec, null, 2) + '\n');
  await step('up', [...compose, ...fileArgs, 'up', '-d', '--scale', `node=${o.nodes}`]);
  const exec = [...compose, ...fileArgs, 'exec', '-T', '--index', '1', 'node', 'podlab'];
  say(`waiting for ${o.nodes} Ready nodes`);
  const deadline = Date.now() + o.timeoutMs;
  for (;;) {
    const r = await run([...exec, 'get', 'nodes', '-o', 'json'], { cwd: o.root, env });
    if (r.code === 0) {
      try {
        const items = (JSON.parse(r.stdout) as { items: { status?: { conditions?: { type: string; status: string }[] } }[] }).items;
        if (items.length === o.nodes && items.every((n) => n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'))) break;
      } catch {
        // Not JSON yet (the agent is still starting): ask again.
      }
    }
    if (Date.now() > deadline) throw new LabError(`the ${o.nodes} nodes were not Ready within ${o.timeoutMs / 1000} s (logs: ${compose.join(' ')} -p ${o.project} logs node); podlab down removes the lab`);
    await new Promise((r) => setTimeout(r, 1000));
  }
  for (const f of o.manifests) {
    const text = f === '-' ? fs.readFileSync(0, 'utf8') : fs.readFileSync(f, 'utf8');
    say((await step(`apply ${f}`, [...exec, 'apply', '-f', '-'], text)).trim());
  }
  return rec;
}

/** `docker-compose down -v` for the recorded lab; the images stay (the next up builds from cache). */
export async function dockerDown(stateDir: string, onProgress?: (m: string) => void): Promise<boolean> {
  const rec = readDockerLab(stateDir);
  if (!rec) return false;
  const cmd = [...rec.compose, ...rec.files.flatMap((f) => ['-f', f]), 'down', '-v', '--remove-orphans'];
  onProgress?.(`down: ${cmd.join(' ')}`);
  const r = await run(cmd, { cwd: rec.root, env: rec.env });
  if (r.code !== 0) throw new LabError(`${cmd.join(' ')} failed (exit ${r.code}):\n${r.out.trim()}`);
  fs.rmSync(dockerLabFile(stateDir), { force: true });
  return true;
}

/** The commands a user types next, for the launcher to print. */
export function dockerHints(rec: DockerLabRecord): string {
  const env = { COMPOSE_PROJECT_NAME: rec.project, COMPOSE_FILE: rec.files.join(':'), ...(rec.env.PODLAB_BRIDGE ? { PODLAB_BRIDGE: rec.env.PODLAB_BRIDGE } : {}) };
  const c = rec.compose.join(' ');
  return [
    `  cd ${rec.root} && export ${Object.entries(env).map(([k, v]) => `${k}=${v}`).join(' ')}`,
    `  ${c} exec --index 1 node podlab get pods -o wide`,
    `  ${c} exec --index 2 node podlab exec POD -- ping -c 3 IP`,
    `  ${c} exec -T --index 1 node podlab capture node-2 eth0 -w - | tshark -r - -d udp.port==8472,vxlan`,
    `  podlab down        (or: ${c} down -v)`,
  ].join('\n');
}
