/**
 * `podlab agent | apiserver | kernel-node | lb-router | supervise`: the long-running processes of a
 * lab as subcommands of the one `podlab` command (bin/podlab.js dispatches
 * here before the CLI loads). netns labs start their processes this way
 * (`ip netns exec podlab-node-1 node bin/podlab.js agent ...`) and so does the
 * container image (Dockerfile's ENTRYPOINT is bin/podlab.js;
 * docker-compose.yml runs `agent` and `apiserver`), so both exercise the very
 * same code path.
 *
 * `agent` fills in what a container knows about itself when a flag is missing
 * (or says `auto`): the node name from $PODLAB_NODE_NAME or the hostname
 * (`--name ordinal`: node-<N> from the Compose container number, see
 * compose-ordinal.ts), the
 * node IP and underlay CIDR from the first non-loopback IPv4 interface
 * ($PODLAB_IFACE to choose), the apiserver from $PODLAB_API
 * (default https://apiserver:6443), the state dir from $PODLAB_HOME
 * (default /var/lib/podlab). With `--lab-json` it also writes a lab.json
 * describing itself, so `podlab exec|get|node|capture` work inside the
 * container (`docker compose exec node podlab exec POD -- ping ...`).
 */
import { DEFAULT_BACKEND } from '../backends/registry.ts';
import fs from 'node:fs';
import os from 'node:os';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { CODE_CACHE_LOADER, ROOT, compiledFile } from '../common/compiled.js';
import { Cidr } from '../packet/cidr.ts';

/** The daemon subcommands. */
export const DAEMONS = ['agent', 'apiserver', 'kernel-node', 'lb-router', 'supervise'] as const;
export type Daemon = (typeof DAEMONS)[number];

export function isDaemon(word: string | undefined): word is Daemon {
  return (DAEMONS as readonly string[]).includes(word ?? '');
}

/** What `agent` may look up when flags are missing. */
export interface AgentEnv {
  env: Record<string, string | undefined>;
  hostname: string;
  interfaces: NodeJS.Dict<os.NetworkInterfaceInfo[]>;
}

/** A daemon flag problem (exit 2). */
export class DaemonUsageError extends Error {
  override name = 'DaemonUsageError';
}

function flagValue(argv: string[], flag: string): string | undefined {
  const i = argv.findIndex((a) => a === flag || a.startsWith(`${flag}=`));
  if (i < 0) return undefined;
  return argv[i].includes('=') ? argv[i].slice(flag.length + 1) : argv[i + 1];
}

function setFlag(argv: string[], flag: string, value: string): string[] {
  const i = argv.findIndex((a) => a === flag || a.startsWith(`${flag}=`));
  if (i < 0) return [...argv, flag, value];
  const out = [...argv];
  if (out[i].includes('=')) out[i] = `${flag}=${value}`;
  else out[i + 1] = value;
  return out;
}

/** The interface to use: $PODLAB_IFACE, else eth0, else the first non-internal IPv4 one. */
export function pickInterface(e: AgentEnv): { name: string; address: string; cidr: string } {
  const want = e.env.PODLAB_IFACE;
  const all = Object.entries(e.interfaces).flatMap(([name, list]) => (list ?? []).filter((i) => i.family === 'IPv4' && !i.internal).map((i) => ({ name, i })));
  const hit = want ? all.find((x) => x.name === want) : (all.find((x) => x.name === 'eth0') ?? all[0]);
  if (!hit || !hit.i.cidr) throw new DaemonUsageError(want ? `no IPv4 address on interface ${want} ($PODLAB_IFACE)` : 'no non-loopback IPv4 interface found: give --ip and --underlay');
  return { name: hit.name, address: hit.i.address, cidr: Cidr.parse(hit.i.cidr).format() };
}

/** The agent's final flags: given ones kept, missing (or `auto`) ones resolved. */
export function resolveAgentArgs(argv: string[], e: AgentEnv): string[] {
  let out = argv.filter((a) => a !== '--lab-json');
  const missing = (flag: string) => {
    const v = flagValue(out, flag);
    return v === undefined || v === 'auto';
  };
  if (missing('--name')) out = setFlag(out, '--name', e.env.PODLAB_NODE_NAME || e.hostname);
  if (missing('--ip') || missing('--underlay')) {
    const ifc = pickInterface(e);
    if (missing('--ip')) out = setFlag(out, '--ip', ifc.address);
    if (missing('--underlay')) out = setFlag(out, '--underlay', ifc.cidr);
  }
  if (missing('--api')) out = setFlag(out, '--api', e.env.PODLAB_API || 'https://apiserver:6443');
  if (missing('--state-dir')) out = setFlag(out, '--state-dir', e.env.PODLAB_HOME || '/var/lib/podlab');
  return out;
}

/** Writes `<state-dir>/lab.json` describing this one node (containers: the CLI inside finds the lab). */
async function writeSelfLabJson(args: string[]): Promise<void> {
  const { controlSocketPath } = await import('../node-agent/control-server.ts');
  const { writeLab } = await import('./state.ts');
  const get = (f: string) => flagValue(args, f)!;
  const stateDir = path.resolve(get('--state-dir'));
  const name = get('--name');
  const control = controlSocketPath(stateDir, name);
  fs.mkdirSync(stateDir, { recursive: true });
  writeLab({
    version: 1,
    status: 'running',
    stateDir,
    apiUrl: get('--api'),
    startedAt: new Date().toISOString(),
    options: {
      nodes: 1,
      labNet: get('--underlay'),
      apiPort: Number(new URL(get('--api')).port || 80),
      clusterCidr: flagValue(args, '--cluster-cidr') ?? '10.244.0.0/16',
      vxlanPort: Number(flagValue(args, '--vxlan-port') ?? 8472),
      seed: Number(flagValue(args, '--seed') ?? 1),
      mtu: Number(flagValue(args, '--mtu') ?? 1500),
      backend: flagValue(args, '--backend') ?? DEFAULT_BACKEND,
      mode: 'container',
    },
    procs: [{ role: 'node', name, pid: process.pid, args, log: '' }],
    nodes: [{ name, ip: get('--ip'), control }],
  });
}

/** Runs a daemon in this process: its entry module reads `process.argv` as if started directly. */
export async function runDaemon(daemon: Daemon, argv: string[]): Promise<void> {
  if (daemon === 'supervise') {
    const { runSupervisor } = await import('./supervisor.ts');
    return runSupervisor(argv);
  }
  let args = argv;
  if (daemon === 'agent') {
    try {
      args = resolveAgentArgs(argv, { env: process.env, hostname: os.hostname(), interfaces: os.networkInterfaces() });
    } catch (e) {
      process.stdout.write(JSON.stringify({ event: 'error', message: (e as Error).message }) + '\n');
      process.stderr.write(`podlab agent: ${(e as Error).message}\n`);
      process.exit(2);
    }
    if (flagValue(args, '--name') === 'ordinal') {
      // node-<N> from the container's Compose number or Swarm slot (compose-ordinal.ts).
      const { composeOrdinalName } = await import('./compose-ordinal.ts');
      try {
        args = setFlag(args, '--name', await composeOrdinalName({ ip: flagValue(args, '--ip')!, slot: process.env.PODLAB_NODE_SLOT }));
      } catch (e) {
        process.stderr.write(`podlab agent: --name ordinal: ${(e as Error).message}\n`);
        process.exit(2);
      }
    }
    if (argv.includes('--lab-json')) await writeSelfLabJson(args);
  }
  const entry = { agent: 'node-agent/main.ts', apiserver: 'control-plane/main.ts', 'kernel-node': 'kernel-node/main.ts', 'lb-router': 'router/main.ts' }[daemon];
  // From the sources, the entry's source; compiled (inlined into the command's bundle), the entry's bundle
  // (dist/bundle/, common/compiled.js).
  const fromSource = import.meta.url.endsWith('.ts');
  const file = fromSource ? path.join(ROOT, entry) : compiledFile(entry);
  process.argv = [process.argv[0], file, ...args];
  if (fromSource) {
    await import(pathToFileURL(file).href);
    return;
  }
  // A CommonJS bundle runs with its code cache, as the local lab starts it; an ES module is imported by the loader,
  // since this code runs inside the command's CommonJS bundle, where Node 20 has no import() (common/code-cache.cjs).
  const loader = createRequire(import.meta.url)(CODE_CACHE_LOADER) as { run(bundle: string): void; importModule(url: string): Promise<unknown> };
  if (file.endsWith('.cjs')) loader.run(file);
  else await loader.importModule(pathToFileURL(file).href);
}
