/**
 * The container side of issue 7, without a Docker engine (none here):
 * `docker-compose config` (or `docker compose config`) validates
 * docker-compose.yml alone and with the capture side-car; the files keep to
 * what `docker stack deploy` accepts; only the capture container gets
 * capabilities; and the image's entry point, `podlab apiserver`, starts the
 * same apiserver netns labs start, here on loopback.
 */
import test from 'ava';
import { execFile, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { adminCredentials } from '../control-plane/credentials.ts';
import { ApiClient } from '../control-plane/client.ts';
import { ROOT } from '../lab/lab.ts';
import { eventually, hasTool, requireOrSkip } from './helpers/lab.ts';

/** docker-compose (v1, Debian's package) or the docker compose plugin, whichever is here. */
function composeCommand(): string[] | undefined {
  if (hasTool('docker-compose')) return ['docker-compose'];
  // `docker compose` exists only as a plugin: `docker compose version` fails without it.
  if (hasTool('docker') && spawnSync('docker', ['compose', 'version'], { stdio: 'ignore' }).status === 0) return ['docker', 'compose'];
  return undefined;
}

function run(cmd: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(cmd[0], cmd.slice(1), { cwd: ROOT, env: { ...process.env, ...env } }, (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: `${stdout}${stderr}` }));
  });
}

/** The keys of a compose service the tests read. */
interface ComposeService {
  image?: string;
  command?: string[];
  entrypoint?: string[];
  cap_add?: string[];
  sysctls?: Record<string, string>;
  profiles?: unknown;
  depends_on?: unknown;
  privileged?: boolean;
  network_mode?: string;
}
/** The keys of a compose file (or `config` output) the tests read. */
interface ComposeFile {
  version?: string;
  services: Record<string, ComposeService>;
  networks: Record<string, { driver?: string; internal?: boolean; driver_opts?: Record<string, string> }>;
}

const compose = () => YAML.parse(fs.readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8')) as ComposeFile;
const captureFile = () => YAML.parse(fs.readFileSync(path.join(ROOT, 'docker-compose.capture.yml'), 'utf8')) as ComposeFile;

test('docker-compose config validates docker-compose.yml, alone and with the capture side-car, for compose and swarm settings', async (t) => {
  const cmd = composeCommand();
  if (!requireOrSkip(t, !!cmd, 'neither docker-compose nor the docker compose plugin is installed (.ci/run installs Debian\'s docker-compose)')) return;
  const alone = await run([...cmd!, '-f', 'docker-compose.yml', 'config', '-q']);
  t.is(alone.code, 0, alone.out);
  const both = await run([...cmd!, '-f', 'docker-compose.yml', '-f', 'docker-compose.capture.yml', 'config']);
  t.is(both.code, 0, both.out);
  // An override's network replaces the base's whole definition (compose v1): it must stay internal.
  const merged = YAML.parse(both.out) as ComposeFile;
  t.true(merged.networks.podlab.internal, 'internal with the capture override');
  t.is(merged.networks.podlab.driver_opts!['com.docker.network.bridge.name'], 'podlab0');
  // The raw-frame override: capabilities and the ephemeral-port sysctl on the node containers only.
  const raw = await run([...cmd!, '-f', 'docker-compose.yml', '-f', 'docker-compose.raw.yml', 'config'], { PODLAB_BACKEND: 'bgp', PODLAB_WIRE: 'raw' });
  t.is(raw.code, 0, raw.out);
  const r = YAML.parse(raw.out) as ComposeFile;
  t.true(r.networks.podlab.internal, 'internal with the raw-frame override');
  t.deepEqual([...r.services.node.cap_add!].sort(), ['NET_ADMIN', 'NET_RAW']);
  t.is(r.services.node.sysctls!['net.ipv4.ip_local_port_range'], '61000 65535');
  t.is(r.services.apiserver.cap_add, undefined);
  const rawCmd = r.services.node.command!;
  t.is(rawCmd[rawCmd.indexOf('--wire') + 1], 'raw');
  t.is(rawCmd[rawCmd.indexOf('--backend') + 1], 'bgp');
  // The Swarm settings of the README: overlay network, MTU 1450 for VXLAN inside Swarm's VXLAN.
  const swarm = await run([...cmd!, '-f', 'docker-compose.yml', 'config'], { PODLAB_NET_DRIVER: 'overlay', PODLAB_MTU: '1450', PODLAB_IMAGE: 'registry.example/podlab:1' });
  t.is(swarm.code, 0, swarm.out);
  const resolved = YAML.parse(swarm.out) as ComposeFile;
  t.is(resolved.networks.podlab.driver, 'overlay');
  t.is(resolved.services.node.image, 'registry.example/podlab:1');
  const nodeCmd = resolved.services.node.command!;
  t.is(nodeCmd[nodeCmd.indexOf('--mtu') + 1], '1450');
});

test('compose files: the podlab entry point, Swarm-compatible keys, capabilities only on the capture side-car', (t) => {
  const c = compose();
  t.is(c.version, '3.9', 'docker stack deploy needs a 3.x version');
  for (const [name, svc] of Object.entries(c.services)) {
    t.is(svc.profiles, undefined, `${name}: docker stack deploy rejects profiles`);
    t.true(svc.depends_on === undefined || Array.isArray(svc.depends_on), `${name}: depends_on must be the v3 list form`);
    t.is(svc.cap_add, undefined, `${name}: agents and apiserver need no capabilities`);
    t.falsy(svc.privileged, name);
    t.is(svc.network_mode, undefined, `${name}: Swarm has no network_mode`);
  }
  t.is(c.services.apiserver.command![0], 'apiserver');
  const node = c.services.node.command!;
  t.is(node[0], 'agent');
  t.is(node[node.indexOf('--name') + 1], 'ordinal', 'node-<N> from the compose container number (lab/compose-ordinal.ts)');
  t.false(node.includes('--ip'), 'the IP comes from the container (eth0)');
  t.is(node[node.indexOf('--control-port') + 1], '10250', 'the control channel on the node IP: any node container reaches any node');
  t.true(c.networks.podlab.internal, 'the lab network has no way out');
  t.true(node.includes('--lab-json'));
  t.true(node.includes('--state-dir'), 'kept explicit: lab.json recognises the agent by it');
  const cap = captureFile().services.capture;
  t.deepEqual([...cap.cap_add!].sort(), ['NET_ADMIN', 'NET_RAW']);
  t.is(cap.network_mode, 'host', 'tshark opens the lab bridge, which is in the host namespace');
  t.is(cap.entrypoint![0], 'tshark');
  t.is(cap.entrypoint![cap.entrypoint!.indexOf('-i') + 1], '${PODLAB_BRIDGE:-podlab0}');
  t.deepEqual(cap.command, ['-w', '/captures/lab.pcapng'], 'pcapng into the bind mount (run ... capture -w - for stdout)');
  const dockerfile = fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
  t.regex(dockerfile, /^FROM node:20/m);
  t.regex(dockerfile, /^ENTRYPOINT \["node", "\/opt\/podlab\/bin\/podlab\.js"\]$/m);
  t.regex(dockerfile, /npm ci --omit=dev/);
  t.regex(dockerfile, /iproute2/);
  t.regex(dockerfile, /libpcap0\.8 nftables ethtool/, 'the raw wire\'s runtime needs');
  t.regex(dockerfile, /npm_config_nodedir=\/usr\/local (npm_config_\w+=\S+ )*npm ci/, 'cap (and better-sqlite3) are built against the image\'s Node headers');
  t.regex(dockerfile, /ln -s "\$so" "\$\{so%\.0\.8\}"/, 'libpcap.so stays after libpcap-dev goes (cap dlopens it for immediate mode)');
  t.regex(dockerfile, /WITH_TSHARK/);
  t.true(fs.existsSync(path.join(ROOT, 'compose/pods.yaml')));
  // The image's entry point runs the command (cli/podlab.ts, from the sources there), which dispatches the daemons.
  t.regex(fs.readFileSync(path.join(ROOT, 'bin/podlab.js'), 'utf8'), /await import\('\.\.\/cli\/podlab\.ts'\)/);
  t.regex(fs.readFileSync(path.join(ROOT, 'cli/podlab.ts'), 'utf8'), /const verb = process\.argv\[2\];\s+if \(isDaemon\(verb\)\) await runDaemon\(verb/);
});

test('the image entry point: `podlab apiserver` (as compose runs it) serves TCP and, as netns labs ask, its Unix socket', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-entry-'));
  const sock = path.join(dir, 'api.sock');
  const p = spawn(process.execPath, [path.join(ROOT, 'bin/podlab.js'), 'apiserver', '--host', '127.0.0.1', '--port', '0', '--state-dir', dir, '--unix-socket', sock], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(async () => {
    if (p.exitCode === null) {
      p.kill('SIGTERM');
      await new Promise((r) => p.once('exit', r));
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });
  let out = '';
  p.stdout.on('data', (d) => (out += d));
  const line = await eventually(() => out.split('\n').find((l) => l.includes('"listening"')), 30_000);
  const ev = JSON.parse(line) as { url: string; unix: string };
  t.is(ev.unix, sock);
  t.regex(ev.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  const overUnix = new ApiClient(`unix:${sock}`, { credentials: adminCredentials(dir) });
  await overUnix.create('nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: 'cnode' }, spec: {} });
  t.is((await new ApiClient(ev.url, { credentials: adminCredentials(dir) }).get<{ spec: { podCIDR: string } }>('nodes', 'cnode'))?.spec.podCIDR, '10.244.1.0/24');
  overUnix.close();
  p.kill('SIGTERM');
  await new Promise((r) => p.once('exit', r));
  t.false(fs.existsSync(sock), 'the socket file is removed on exit');
});
