/**
 * The compose lab for real, as the README's Docker section runs it: the base
 * image made locally (scripts/docker-base.sh), the project's own Dockerfile
 * built by `docker-compose build`, an apiserver and 3 node containers on an
 * internal network with VXLAN between container IPs, pods and a Service, the
 * two capture paths decoded by tshark on the host, a killed node's Node deleted
 * (its peers' routes, neighbours and FDB entries go) and `up` healing it, then
 * `down -v --rmi all` leaving nothing but the cached base.
 *
 * Needs a Docker engine, docker-compose, debootstrap (unless the base image is
 * already there) and tshark; CI installs them and starts dockerd (.ci/run).
 * The project name, bridge and images carry the test's pid, so a run never
 * touches another project's containers.
 */
import test from 'ava';
import { execFile, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Service } from '../control-plane/service-resources.ts';
import type { List, Node, Pod } from '../control-plane/types.ts';
import { ROOT } from '../lab/lab.ts';
import { eventually, hasTool, requireOrSkip } from './helpers/lab.ts';
import { TSHARK, hasTshark } from './helpers/tshark.ts';

const PROJECT = `podlab-test-${process.pid}`;
// An interface name has at most 15 characters.
const BRIDGE = `plt${process.pid}`.slice(0, 15);
const CAPTURE_DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-compose-captures-'));
// As the README's Docker section exports them (it has project podlab, bridge podlab0, images podlab:*).
const ENV: Record<string, string> = {
  COMPOSE_PROJECT_NAME: PROJECT,
  COMPOSE_FILE: 'docker-compose.yml:docker-compose.capture.yml',
  PODLAB_BRIDGE: BRIDGE,
  PODLAB_CAPTURE_DIR: CAPTURE_DIR,
  PODLAB_IMAGE: `${PROJECT}:latest`,
  PODLAB_CAPTURE_IMAGE: `${PROJECT}:tshark`,
};
const NODES = 3;

interface Run {
  code: number;
  out: string;
  err: string;
}

function run(cmd: string, args: string[], timeoutMs = 120_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: ROOT, env: { ...process.env, ...ENV }, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      // Killed at the timeout, a build reads as "exit 1" with its output cut short: say so.
      const killed = err?.killed ? `\n${cmd} killed (${err.signal ?? 'signal'}): no exit within ${timeoutMs / 1000} s` : '';
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) || 1 : 0, out: String(stdout), err: String(stderr) + killed });
    });
  });
}

const compose = (args: string[], timeoutMs?: number) => run('docker-compose', args, timeoutMs);
/** `podlab ...` in node container `index` (1-based, as `exec --index`). */
const podlab = (index: number, args: string[], timeoutMs?: number) => compose(['exec', '-T', '--index', String(index), 'node', 'podlab', ...args], timeoutMs);
const ok = (r: Run, what: string): string => {
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}):\n${r.out}\n${r.err}`);
  return r.out;
};

/** Why the test cannot run here, or '' when it can. */
function missing(): string {
  if (!hasTool('docker')) return 'no docker CLI (apt-get install docker.io)';
  if (spawnSync('docker', ['info'], { stdio: 'ignore', timeout: 20_000 }).status !== 0) return 'no Docker engine answers `docker info` (start dockerd)';
  if (!hasTool('docker-compose')) return 'no docker-compose (apt-get install docker-compose)';
  if (!hasTshark) return `no tshark at ${TSHARK}`;
  const base = spawnSync(path.join(ROOT, 'scripts/docker-base.sh'), ['--print-name'], { encoding: 'utf8' }).stdout.trim();
  if (spawnSync('docker', ['image', 'inspect', base], { stdio: 'ignore' }).status !== 0 && !hasTool('debootstrap')) return `no ${base} image and no debootstrap to make it (apt-get install debootstrap)`;
  return '';
}

const why = missing();
let ready = false;
const timings: string[] = [];
const started = Date.now();
async function phase<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const t0 = Date.now();
  try {
    return await fn();
  } finally {
    timings.push(`${name}: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }
}

interface NodeInfo {
  name: string;
  ip: string;
  podCIDR: string;
  vtepMac: string;
  ready: boolean;
}
/** The fields of `docker network inspect` the tests read. */
interface DockerNetwork {
  Driver: string;
  Internal: boolean;
  Options: Record<string, string>;
}
/** The fields of `docker inspect CONTAINER` the tests read. */
interface DockerContainer {
  HostConfig: { Privileged: boolean; CapAdd: string[] | null; PortBindings: Record<string, unknown> | null };
}
const nodeReady = (n: Node): boolean => n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
async function nodes(): Promise<NodeInfo[]> {
  const list = JSON.parse(ok(await podlab(1, ['get', 'nodes', '-o', 'json']), 'get nodes')) as List<Node>;
  // A node not yet registered lacks these; callers wait for readiness before reading them.
  return list.items.map((n) => ({
    name: n.metadata.name,
    ip: n.status?.addresses?.find((a) => a.type === 'InternalIP')?.address as string,
    podCIDR: n.spec?.podCIDR as string,
    vtepMac: (JSON.parse(n.metadata.annotations?.['flannel.alpha.coreos.com/backend-data'] ?? '{}') as { VtepMAC: string }).VtepMAC,
    ready: nodeReady(n),
  }));
}
interface PodInfo {
  name: string;
  ip: string;
  node: string;
  phase: string;
}
async function pods(): Promise<PodInfo[]> {
  const list = JSON.parse(ok(await podlab(1, ['get', 'pods', '-o', 'json']), 'get pods')) as List<Pod>;
  // Unscheduled or pending pods lack these; callers poll until the pods run.
  return list.items.map((p) => ({ name: p.metadata.name, ip: p.status?.podIP as string, node: p.spec?.nodeName as string, phase: p.status?.phase as string }));
}
/** The node containers: compose's number -> container IP on the lab network. */
async function containers(): Promise<Map<number, { name: string; ip: string }>> {
  const ids = ok(await run('docker', ['ps', '-q', '--filter', `label=com.docker.compose.project=${PROJECT}`, '--filter', 'label=com.docker.compose.service=node']), 'docker ps').split('\n').filter(Boolean);
  const out = new Map<number, { name: string; ip: string }>();
  for (const id of ids) {
    const [num, name, ip] = ok(await run('docker', ['inspect', '-f', '{{index .Config.Labels "com.docker.compose.container-number"}} {{.Name}} {{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', id]), 'docker inspect').trim().split(' ');
    out.set(Number(num), { name: name.replace(/^\//, ''), ip });
  }
  return out;
}
let danglingBefore = new Set<string>();
/** Untagged images (a build that was replaced, an intermediate one kept). */
async function dangling(): Promise<Set<string>> {
  return new Set((await run('docker', ['images', '-q', '--no-trunc', '--filter', 'dangling=true'])).out.split('\n').filter(Boolean));
}
/** What the project left on the engine: containers, networks, volumes, images. */
async function leftovers(): Promise<string[]> {
  const label = `label=com.docker.compose.project=${PROJECT}`;
  const [c, n, v, i] = await Promise.all([
    run('docker', ['ps', '-aq', '--filter', label]),
    run('docker', ['network', 'ls', '-q', '--filter', label]),
    run('docker', ['volume', 'ls', '-q', '--filter', label]),
    run('docker', ['images', '-q', '--filter', `reference=${PROJECT}`]),
  ]);
  return [...c.out.split('\n'), ...n.out.split('\n'), ...v.out.split('\n'), ...i.out.split('\n')].filter(Boolean);
}

test.before(async (t) => {
  if (why) return;
  t.timeout(9 * 60_000);
  await phase('base image (scripts/docker-base.sh)', async () => ok(await run(path.join(ROOT, 'scripts/docker-base.sh'), [], 5 * 60_000), 'scripts/docker-base.sh'));
  danglingBefore = await dangling();
  // node and capture only: apiserver has the same image as node, and building both in parallel would build it
  // twice and leave one copy dangling.
  await phase('docker-compose build', async () => ok(await compose(['build', '--parallel', '--force-rm', 'node', 'capture'], 8 * 60_000), 'docker-compose build'));
  await phase('docker-compose up', async () => ok(await compose(['up', '-d', '--scale', `node=${NODES}`], 120_000), 'docker-compose up'));
  await phase('nodes Ready', () => eventually(async () => {
    const r = await podlab(1, ['get', 'nodes', '-o', 'json']);
    if (r.code !== 0) return false;
    const ns = await nodes();
    return ns.length === NODES && ns.every((n) => n.ready);
  }, 120_000, 1000));
  ready = true;
});

test.after.always(async () => {
  if (!why) {
    // Idempotent safety net: the last test already did this when all went well.
    await compose(['down', '-v', '--rmi', 'all', '--remove-orphans'], 180_000);
  }
  fs.rmSync(CAPTURE_DIR, { recursive: true, force: true });
  if (!why) console.log(`compose-docker: ${timings.join('; ')}; total ${((Date.now() - started) / 1000).toFixed(0)} s`);
});

const serial = (title: string, fn: (t: import('ava').ExecutionContext) => Promise<void>) =>
  test.serial(title, async (t) => {
    if (!requireOrSkip(t, !why, why)) return;
    t.true(ready, 'the lab came up (see test.before)');
    if (!ready) return;
    t.timeout(4 * 60_000);
    await phase(title, () => fn(t));
  });

serial('nodes are node-1..node-3 by compose container number, on an internal network, without privileges', async (t) => {
  const byNumber = await containers();
  const ns = await nodes();
  t.deepEqual(ns.map((n) => n.name).sort(), ['node-1', 'node-2', 'node-3']);
  for (const [num, c] of byNumber) t.is(ns.find((n) => n.name === `node-${num}`)?.ip, c.ip, `${c.name} is node-${num}`);
  const net = (JSON.parse(ok(await run('docker', ['network', 'inspect', `${PROJECT}_podlab`]), 'network inspect')) as DockerNetwork[])[0];
  t.true(net.Internal, 'the lab network is internal: no gateway out');
  t.is(net.Options['com.docker.network.bridge.name'], BRIDGE);
  for (const c of byNumber.values()) {
    const hc = (JSON.parse(ok(await run('docker', ['inspect', c.name]), 'inspect')) as DockerContainer[])[0].HostConfig;
    t.false(hc.Privileged, c.name);
    t.falsy(hc.CapAdd, `${c.name}: the vxlan agents need no capability`);
    t.deepEqual(hc.PortBindings ?? {}, {}, `${c.name}: nothing published`);
  }
  const cap = (JSON.parse(ok(await run('docker', ['inspect', `${PROJECT}_capture_1`]), 'inspect capture')) as DockerContainer[])[0].HostConfig;
  t.false(cap.Privileged);
  t.deepEqual([...cap.CapAdd!].sort(), ['NET_ADMIN', 'NET_RAW']);
  t.log(ns.map((n) => `${n.name} ${n.ip} ${n.podCIDR}`).join('; '));
});

serial('pods and a Service: every pod pair pings, from whichever node container runs the command', async (t) => {
  t.regex(ok(await podlab(1, ['apply', '-f', '/opt/podlab/compose/pods.yaml']), 'apply'), /service\/web created/);
  const ps = await eventually(async () => {
    const p = await pods();
    return p.length === 6 && p.every((x) => x.phase === 'Running' && x.ip) ? p : false;
  }, 60_000, 1000);
  t.deepEqual(new Set(ps.map((p) => p.node)), new Set(['node-1', 'node-2', 'node-3']));
  // Each source pod's pings run in a node container other than the pod's own (the remote control path).
  const failures: string[] = [];
  let pairs = 0;
  await Promise.all(
    ps.map(async (src, i) => {
      const other = ((Number(src.node.split('-')[1]) + i) % NODES) + 1;
      const script = ps
        .filter((d) => d !== src)
        .map((d) => `echo "== ${src.name} -> ${d.name} ${d.ip}"; podlab exec ${src.name} -- ping -c 2 -i 0.2 -W 2 ${d.ip}`)
        .join('; ');
      const r = await compose(['exec', '-T', '--index', String(other), 'node', 'sh', '-c', script], 180_000);
      for (const block of r.out.split('== ').slice(1)) {
        pairs++;
        if (!/ 0% packet loss/.test(block)) failures.push(block);
      }
    }),
  );
  t.is(pairs, 30);
  t.deepEqual(failures, [], failures.join('\n'));
});

serial('the Service balances across pods on every node', async (t) => {
  // A named get prints the object itself, as kubectl does.
  const svc = JSON.parse(ok(await podlab(2, ['get', 'services', 'web', '-o', 'json']), 'get svc')) as Service;
  const ip = svc.spec!.clusterIP!;
  const r = ok(await podlab(2, ['exec', 'web-2', '--', 'hey', '-n', '60', '-c', '4', '-disable-keepalive', '-o', 'json', `http://${ip}/`], 120_000), 'hey');
  const res = JSON.parse(r) as { requests: number; errors: number; bodies: Record<string, number> };
  t.is(res.errors, 0, r);
  const servedBy = Object.keys(res.bodies);
  const servingNodes = [...new Set(servedBy.map((b) => / on (node-\d+)$/.exec(b)?.[1]))].sort();
  t.deepEqual(servingNodes, ['node-1', 'node-2', 'node-3'], r);
  t.true(servedBy.length >= 4, `several backends answered: ${JSON.stringify(res.bodies)}`);
  t.log(`60 requests to ${ip}: ${JSON.stringify(res.bodies)}`);
});

serial('podlab capture -w - from a node container, into tshark on the host: VXLAN between container IPs, pod IPs inside', async (t) => {
  const ps = await pods();
  const byNumber = await containers();
  const a = ps.find((p) => p.node === 'node-1')!;
  const b = ps.find((p) => p.node === 'node-2')!;
  // From node-3's container, capture node-2's eth0 (the remote control path), decode on the host. A shell
  // pipe, as typed: tshark -r - refuses a socket (what Node's stdio pipes are) as its standard input.
  const pipeline = `docker-compose exec -T --index 3 node podlab capture node-2 eth0 -w - -c 6 -f 'udp port 8472' --duration 60 | ${TSHARK} -r - -d udp.port==8472,vxlan -T fields -E separator=, -E 'aggregator=;' -e ip.src -e ip.dst -e vxlan.vni -e icmp.type -e _ws.malformed`;
  const cap = spawn('sh', ['-c', pipeline], { cwd: ROOT, env: { ...process.env, ...ENV }, stdio: ['ignore', 'pipe', 'pipe'] });
  let decoded = '';
  let errors = '';
  cap.stdout.on('data', (d) => (decoded += d));
  cap.stderr.on('data', (d) => (errors += d));
  // 'close', not 'exit': the output may still be in the pipe when the process has exited.
  const sharkDone = new Promise((r) => cap.once('close', r));
  // Ping until the capture has its packets (the capture may attach after the first ones).
  await eventually(async () => {
    await podlab(1, ['exec', a.name, '--', 'ping', '-c', '2', '-i', '0.2', b.ip]);
    return cap.exitCode !== null;
  }, 60_000, 100);
  await sharkDone;
  const lines = decoded.trim().split('\n').filter(Boolean);
  t.is(lines.length, 6, `${decoded}\n${errors}`);
  const n1 = byNumber.get(1)!.ip;
  const n2 = byNumber.get(2)!.ip;
  for (const l of lines) {
    const [src, dst, vni, icmp, malformed] = l.split(',');
    const [s1, s2] = src.split(';');
    const [d1, d2] = dst.split(';');
    t.deepEqual([vni, malformed ?? ''], ['1', ''], l);
    t.true((s1 === n1 && d1 === n2 && s2 === a.ip && d2 === b.ip) || (s1 === n2 && d1 === n1 && s2 === b.ip && d2 === a.ip), `outer ${s1} -> ${d1} (containers), inner ${s2} -> ${d2} (pods): ${l}`);
    t.true(icmp === '8' || icmp === '0', l);
  }
});

serial('the capture side-car wrote every node\'s eth0 traffic from the lab bridge to the bind mount; tshark decodes it, nothing malformed', async (t) => {
  ok(await compose(['stop', 'capture'], 60_000), 'stop capture');
  const file = path.join(CAPTURE_DIR, 'lab.pcapng');
  t.true(fs.existsSync(file), 'lab.pcapng in the bind mount');
  const byNumber = await containers();
  const nodeIps = new Set([...byNumber.values()].map((c) => c.ip));
  const ps = await pods();
  const podIps = new Set(ps.map((p) => p.ip));
  const shark = (args: string[]) => run(TSHARK, ['-r', file, '-d', 'udp.port==8472,vxlan', ...args], 120_000);
  const vx = ok(await shark(['-Y', 'vxlan', '-T', 'fields', '-E', 'separator=,', '-E', 'aggregator=;', '-e', 'ip.src', '-e', 'ip.dst', '-e', 'vxlan.vni']), 'tshark vxlan');
  const rows = vx.trim().split('\n').filter(Boolean);
  t.true(rows.length >= 60, `VXLAN frames on the bridge: ${rows.length}`);
  const pairs = new Set<string>();
  for (const l of rows) {
    const [src, dst, vni] = l.split(',');
    const [s1, s2] = src.split(';');
    const [d1, d2] = dst.split(';');
    t.true(nodeIps.has(s1) && nodeIps.has(d1), `outer addresses are node containers: ${l}`);
    t.true(podIps.has(s2) && podIps.has(d2), `inner addresses are pods: ${l}`);
    t.is(vni, '1');
    pairs.add(`${s1}>${d1}`);
  }
  t.is(pairs.size, 6, `VXLAN between every ordered pair of the 3 node containers: ${[...pairs].join(' ')}`);
  const malformed = ok(await shark(['-Y', '_ws.malformed || _ws.expert.severity == error']), 'tshark malformed');
  t.is(malformed.trim(), '', 'no malformed frames');
  const total = ok(await shark(['-T', 'fields', '-e', 'frame.number']), 'tshark count').trim().split('\n').length;
  t.log(`side-car capture: ${total} frames, ${rows.length} VXLAN, node pairs ${[...pairs].join(' ')}`);
});

serial('a killed node container: its Node deleted, the peers\' routes, neighbours and FDB entries go; up again heals it', async (t) => {
  const before = await nodes();
  const dead = before.find((n) => n.name === 'node-2')!;
  // docker-compose kill has no --index (it kills every node): the container is killed by its name.
  ok(await run('docker', ['kill', `${PROJECT}_node_2`]), 'docker kill');
  t.regex(ok(await podlab(1, ['delete', 'node', 'node-2']), 'delete node'), /deleted/);
  const net = dead.podCIDR.replace('/24', '');
  for (const [idx, peer] of [[1, 'node-1'], [3, 'node-3']] as const) {
    await eventually(async () => {
      const route = ok(await podlab(idx, ['node', peer, 'ip', 'route']), 'ip route');
      const fdb = ok(await podlab(idx, ['node', peer, 'bridge', 'fdb']), 'bridge fdb');
      const neigh = ok(await podlab(idx, ['node', peer, 'ip', 'neigh']), 'ip neigh');
      return !route.includes(dead.podCIDR) && !fdb.includes(dead.vtepMac) && !neigh.includes(`${net} `) && !fdb.includes(dead.ip);
    }, 60_000, 500);
    t.pass(`${peer}: no route, neighbour or FDB entry for node-2 (${dead.podCIDR}, ${dead.vtepMac}, ${dead.ip})`);
  }
  ok(await compose(['up', '-d', '--scale', `node=${NODES}`], 120_000), 'up again');
  const healed = await eventually(async () => {
    const ns = await nodes();
    const n2 = ns.find((n) => n.name === 'node-2');
    return ns.length === NODES && ns.every((n) => n.ready) && n2 ? n2 : false;
  }, 120_000, 1000);
  for (const [idx, peer] of [[1, 'node-1'], [3, 'node-3']] as const) {
    await eventually(async () => (ok(await podlab(idx, ['node', peer, 'ip', 'route']), 'ip route')).includes(`${healed.podCIDR} via`), 60_000, 500);
  }
  const ps = await eventually(async () => {
    const p = await pods();
    return p.every((x) => x.phase === 'Running' && x.ip && (x.node !== 'node-2' || x.ip.startsWith(healed.podCIDR.replace('0/24', '')))) ? p : false;
  }, 60_000, 1000);
  const on2 = ps.find((p) => p.node === 'node-2')!;
  const on1 = ps.find((p) => p.node === 'node-1')!;
  for (const [src, dst] of [[on1, on2], [on2, on1]]) {
    const r = await podlab(3, ['exec', src.name, '--', 'ping', '-c', '2', '-i', '0.2', '-W', '2', dst.ip]);
    t.regex(r.out, / 0% packet loss/, `${src.name} -> ${dst.name} after the heal`);
  }
  t.log(`node-2 back as ${healed.ip} with ${healed.podCIDR} (was ${dead.ip}, ${dead.podCIDR})`);
});

serial('podlab up --mode docker: the same lab, typed for the user; podlab down removes it', async (t) => {
  const project = `${PROJECT}-up`;
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-docker-home-'));
  // The images the test built (the launcher's own build finds them cached).
  const env = { ...process.env, PODLAB_HOME: home, PODLAB_IMAGE: ENV.PODLAB_IMAGE, PODLAB_CAPTURE_IMAGE: ENV.PODLAB_CAPTURE_IMAGE };
  const cli = (args: string[]) =>
    new Promise<Run>((resolve) =>
      execFile(process.execPath, [path.join(ROOT, 'bin/podlab.js'), ...args], { cwd: ROOT, env, timeout: 300_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => resolve({ code: err ? 1 : 0, out: String(stdout), err: String(stderr) })),
    );
  try {
    const up = await cli(['up', '--mode', 'docker', '--nodes', '2', '-f', 'compose/pods.yaml', '--docker-project', project, '--docker-bridge', `plu${process.pid}`.slice(0, 15)]);
    t.is(up.code, 0, `${up.out}\n${up.err}`);
    t.regex(up.out, /docker lab up: 2 node containers/);
    t.regex(up.err, /pod\/web-6 created/);
    const lab = { COMPOSE_PROJECT_NAME: project, COMPOSE_FILE: 'docker-compose.yml' };
    const inUp = (index: number, args: string[]) =>
      new Promise<Run>((resolve) =>
        execFile('docker-compose', ['exec', '-T', '--index', String(index), 'node', 'podlab', ...args], { cwd: ROOT, env: { ...process.env, ...lab }, timeout: 120_000 }, (err, stdout, stderr) => resolve({ code: err ? 1 : 0, out: String(stdout), err: String(stderr) })),
      );
    const ps = await eventually(async () => {
      const r = await inUp(2, ['get', 'pods', '-o', 'json']);
      if (r.code !== 0) return false;
      const items = (JSON.parse(r.out) as List<Pod>).items;
      return items.length === 6 && items.every((p) => p.status?.phase === 'Running') ? items : false;
    }, 60_000, 1000);
    t.deepEqual([...new Set(ps.map((p) => p.spec!.nodeName!))].sort(), ['node-1', 'node-2']);
    const a = ps.find((p) => p.spec!.nodeName === 'node-1')!;
    const b = ps.find((p) => p.spec!.nodeName === 'node-2')!;
    const ping = await inUp(2, ['exec', a.metadata.name, '--', 'ping', '-c', '2', '-i', '0.2', '-W', '2', b.status!.podIP!]);
    t.regex(ping.out, / 0% packet loss/, ping.out + ping.err);
  } finally {
    const down = await cli(['down']);
    t.is(down.code, 0, `${down.out}\n${down.err}`);
    fs.rmSync(home, { recursive: true, force: true });
  }
  t.is((await run('docker', ['ps', '-aq', '--filter', `label=com.docker.compose.project=${project}`])).out.trim(), '', 'podlab down removed its containers');
  t.is((await run('docker', ['network', 'ls', '-q', '--filter', `label=com.docker.compose.project=${project}`])).out.trim(), '', 'and its network');
});

serial('single-host Swarm: the same compose file as a stack on an internal overlay, VXLAN inside Swarm\'s VXLAN', async (t) => {
  const state = ok(await run('docker', ['info', '--format', '{{.Swarm.LocalNodeState}}']), 'docker info').trim();
  if (state !== 'inactive') {
    // Never join or leave a swarm this test did not make.
    t.log(`skipped: the engine is already in a swarm (${state}); the test only makes and leaves its own`);
    t.pass();
    return;
  }
  const stack = `plsw${process.pid}`;
  const hadGwBridge = (await run('docker', ['network', 'inspect', 'docker_gwbridge'])).code === 0;
  const swarmEnv = { PODLAB_IMAGE: `${PROJECT}:latest`, PODLAB_NET_DRIVER: 'overlay', PODLAB_MTU: '1450' };
  const runSwarm = (args: string[]) =>
    new Promise<Run>((resolve) =>
      execFile('docker', args, { cwd: ROOT, env: { ...process.env, ...swarmEnv }, timeout: 120_000 }, (err, stdout, stderr) => resolve({ code: err ? 1 : 0, out: String(stdout), err: String(stderr) })),
    );
  const inSlot = async (slot: number, args: string[]) => {
    const id = ok(await run('docker', ['ps', '-q', '--filter', `name=${stack}_node.${slot}.`]), 'docker ps').trim().split('\n')[0];
    if (!id) return { code: 1, out: '', err: `no container for ${stack}_node.${slot}` };
    return run('docker', ['exec', id, 'podlab', ...args]);
  };
  try {
    ok(await run('docker', ['swarm', 'init', '--advertise-addr', '127.0.0.1']), 'swarm init');
    ok(await runSwarm(['stack', 'deploy', '--resolve-image', 'never', '-c', 'docker-compose.yml', stack]), 'stack deploy');
    const ns = await eventually(async () => {
      const r = await inSlot(1, ['get', 'nodes', '-o', 'json']);
      if (r.code !== 0) return false;
      const items = (JSON.parse(r.out) as List<Node>).items;
      return items.length === NODES && items.every(nodeReady) ? items : false;
    }, 180_000, 1000);
    t.deepEqual(ns.map((n) => n.metadata.name).sort(), ['node-1', 'node-2', 'node-3'], 'names from {{.Task.Slot}}');
    const net = (JSON.parse(ok(await run('docker', ['network', 'inspect', `${stack}_podlab`]), 'network inspect')) as DockerNetwork[])[0];
    t.is(net.Driver, 'overlay');
    t.true(net.Internal);
    ok(await inSlot(1, ['apply', '-f', '/opt/podlab/compose/pods.yaml']), 'apply');
    const ps = await eventually(async () => {
      const r = await inSlot(1, ['get', 'pods', '-o', 'json']);
      if (r.code !== 0) return false;
      const items = (JSON.parse(r.out) as List<Pod>).items;
      return items.length === 6 && items.every((p) => p.status?.phase === 'Running' && p.status?.podIP) ? items : false;
    }, 60_000, 1000);
    const on = (node: string) => ps.find((p) => p.spec!.nodeName === node)!;
    // 1372 + 28 = 1400 bytes with DF: the pods' MTU inside podlab's VXLAN inside Swarm's (PODLAB_MTU=1450).
    for (const [src, dst] of [[on('node-1'), on('node-2')], [on('node-2'), on('node-3')]]) {
      const r = await inSlot(3, ['exec', src.metadata.name, '--', 'ping', '-c', '2', '-i', '0.2', '-W', '2', '-s', '1372', '-M', 'do', dst.status!.podIP!]);
      t.regex(r.out, / 0% packet loss/, `${src.metadata.name} -> ${dst.metadata.name} over the overlay: ${r.out}${r.err}`);
    }
  } finally {
    await run('docker', ['stack', 'rm', stack]);
    await eventually(async () => (await run('docker', ['ps', '-aq', '--filter', `label=com.docker.stack.namespace=${stack}`])).out.trim() === '', 60_000, 500).catch(() => {});
    await run('docker', ['swarm', 'leave', '--force']);
    if (!hadGwBridge) await run('docker', ['network', 'rm', 'docker_gwbridge']);
  }
  t.is(ok(await run('docker', ['info', '--format', '{{.Swarm.LocalNodeState}}']), 'docker info').trim(), 'inactive', 'left the swarm');
});

serial('down -v --rmi all leaves no container, network, volume or image of the project (the base image stays)', async (t) => {
  ok(await compose(['down', '-v', '--rmi', 'all', '--remove-orphans'], 180_000), 'down');
  t.deepEqual(await leftovers(), []);
  // A rebuild whose context changed meanwhile (other tests write into the tree) leaves the image it replaced
  // untagged: this run's own untagged images are removed, and none may remain.
  const ours = [...(await dangling())].filter((id) => !danglingBefore.has(id));
  if (ours.length) await run('docker', ['rmi', ...ours]);
  const after = await dangling();
  t.deepEqual([...after].filter((id) => !danglingBefore.has(id)), [], 'no untagged image left by the builds');
  const base = spawnSync(path.join(ROOT, 'scripts/docker-base.sh'), ['--print-name'], { encoding: 'utf8' }).stdout.trim();
  t.is(spawnSync('docker', ['image', 'inspect', base], { stdio: 'ignore' }).status, 0, `${base} is kept for the next run`);
  t.false(fs.existsSync(`/sys/class/net/${BRIDGE}`), 'the lab bridge is gone');
});
