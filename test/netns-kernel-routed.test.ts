/**
 * The unencapsulated backends in netns labs, as root, with the Linux kernel as
 * a peer (issue 7, items 2 and 4): pod packets leave the emulated nodes as raw
 * frames on their real eth0 (libpcap through `cap`), with pod addresses
 * intact, and a kernel node joins.
 *
 * - bgp (`podlab-t7r-*`, underlay 10.250.74.0/24): 3 emulated nodes and 1
 *   kernel node running a real BIRD 2 in its namespace. BIRD peers with the
 *   three podlab speakers on TCP 179 and installs `proto bird` routes in the
 *   kernel; every pod pings every other, both directions, 0% loss, no
 *   duplicates (the node namespaces' kernels stay off the frames the emulated
 *   nodes take); real curl from kernel pods, podlab's from emulated pods and
 *   an outside client reach an nginx pod by pod IP, ClusterIP and every
 *   NodePort; garbage frames are counted and dropped; a SIGKILLed emulated
 *   agent and a restarted kernel-node agent (new BIRD) come back, the BGP
 *   session between BIRD and podlab decoded by tshark on the bridge;
 *   tshark on the underlay bridge decodes the kernel's and podlab's frames
 *   identically (bare Ethernet/IPv4/ICMP with pod IPs, good checksums, no
 *   expert warnings) and sees no UDP wire or VXLAN at all; a trace names the
 *   raw-frame hop; a BIRD left by a SIGKILLed kernel-node agent is stopped by
 *   `podlab down`.
 * - host-gw (`podlab-t7g-*`, 10.250.75.0/24): 2 emulated nodes and 1 kernel
 *   node with flanneld's host-gw routes; every pair pings.
 * - bgp with route reflectors (`podlab-t7q-*`, 10.250.76.0/24): the kernel
 *   node is a client of the two reflectors; every pair pings.
 *
 * Nothing is left: no namespace, no BIRD. Not root, or iproute2, cap, nft,
 * bird or tshark missing: skipped with the reason, failed in CI.
 */
import test, { type ExecutionContext } from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Node, Pod } from '../control-plane/types.ts';
import { callNode, nodeCommand } from '../cli/commands.ts';
import { hasIproute2, isRoot, listNetnsSync } from '../hostnet/netns.ts';
import { readLab } from '../lab/state.ts';
import { ROOT, restartProcess, labApi } from '../lab/lab.ts';
import { trace } from '../cli/trace.ts';
import { capAvailable } from '../overlay/underlay-raw.ts';
import { birdPaths } from '../backends/bgp/bird.ts';
import { systemTool } from '../common/system-tool.ts';
import { eventually, hasTool, requireOrSkip, startLab, type TestLab } from './helpers/lab.ts';

const PREFIX = 'podlab-t7r';
const NET = '10.250.74';
const HG_PREFIX = 'podlab-t7g';
const HG_NET = '10.250.75';
const RR_PREFIX = 'podlab-t7q';
const RR_NET = '10.250.76';
const KNS = `${PREFIX}-knode-1`;
const esc = (s: string) => s.replace(/\./g, '\\.');

const missing = !isRoot()
  ? 'netns labs need root'
  : !hasIproute2()
    ? 'iproute2 (ip) is not installed'
    : !capAvailable()
      ? "the optional 'cap' addon (libpcap) did not load: apt-get install libpcap-dev, npm rebuild cap"
      : (['nft', 'bird', 'birdc', 'tshark', 'curl', 'ping'].find((x) => !hasTool(x)) ?? '');
const why = missing && !missing.includes(' ') ? `${missing} is not installed` : missing;
let lab: TestLab | undefined;

test.before(async () => {
  if (why) return;
  lab = await startLab('127.0.0.0/24', { mode: 'netns', nodes: 3, kernelNodes: 1, podsPerNode: 2, backend: 'bgp', netnsPrefix: PREFIX, underlayNet: `${NET}.0/24` });
});

test.after.always(async () => {
  await lab?.close();
});

const need = (t: ExecutionContext) => requireOrSkip(t, !why, why);
const sh = (cmd: string, ...args: string[]) => execFileSync(cmd, args, { encoding: 'utf8' });
/** Live processes whose command line names both the state dir and `what`. */
function processesOf(stateDir: string, what: string): number[] {
  return fs
    .readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        const cmd = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8');
        // The server runs compiled (pod-server.js) when dist/ is fresh, from source otherwise.
        return cmd.includes(stateDir) && cmd.includes(what.replace(/\.ts$/, ''));
      } catch {
        return false;
      }
    })
    .map(Number);
}
const pods = async (l: TestLab) => (await labApi(l.rec).list<Pod>('pods', { namespace: 'default' })).items.sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));

/** Every ordered pair of pods pings with 0% loss, no duplicates, the TTL of its path. */
async function allPairsPing(t: ExecutionContext, l: TestLab, expected: number): Promise<void> {
  const all = await pods(l);
  t.is(all.length, expected);
  const pairs = all.flatMap((a) => all.filter((b) => b !== a).map((b) => [a, b] as const));
  const results = await Promise.all(pairs.map(([a, b]) => l.exec(a.metadata.name, ['ping', '-c', '2', '-i', '0.2', '-W', '3', b.status!.podIP!])));
  results.forEach((r, i) => {
    const [a, b] = pairs[i];
    const what = `${a.metadata.name} (${a.spec!.nodeName}) -> ${b.metadata.name} (${b.spec!.nodeName})`;
    t.is(r.code, 0, `${what}\n${r.out}`);
    t.regex(r.out, /2 packets transmitted, 2 received, 0% packet loss/, what);
    t.notRegex(r.out, /DUP!/, `${what}: answered twice`);
    t.regex(r.out, new RegExp(`ttl=${a.spec!.nodeName === b.spec!.nodeName ? 64 : 62} `), `${what}: TTL`);
  });
}

test.serial('bgp: BIRD in the kernel node peers with every podlab speaker; routes proto bird both ways', async (t) => {
  if (!need(t)) return;
  const summary = await nodeCommand(lab!.stateDir, 'knode-1', ['bgp', 'summary']);
  for (const i of [1, 2, 3]) t.regex(summary, new RegExp(`^Mesh_10_250_74_1${i}\\s+BGP\\s+---\\s+up\\s+\\S+\\s+Established`, 'm'), summary);
  // The kernel's own table, written by BIRD.
  const routes = sh('ip', '-n', KNS, 'route', 'show');
  for (const i of [1, 2, 3]) t.regex(routes, new RegExp(`^10\\.244\\.${i}\\.0/24 via ${esc(NET)}\\.1${i} dev eth0 proto bird`, 'm'), routes);
  // Its own block stays on cni0 (the blackhole that BGP announces is not exported to the kernel).
  t.regex(routes, /^10\.244\.4\.0\/24 dev cni0 proto kernel/m);
  t.notRegex(routes, /blackhole/);
  t.regex(await nodeCommand(lab!.stateDir, 'knode-1', ['bgp', 'routes']), /10\.244\.1\.0\/24\s+unicast \[Mesh_10_250_74_11/);
  // No VXLAN device on a bgp kernel node; the pods get the full MTU.
  const links = JSON.parse(sh('ip', '-n', KNS, '-j', 'link', 'show')) as { ifname: string; mtu: number }[];
  t.false(links.some((l) => l.ifname === 'flannel.1'));
  t.is(links.find((l) => l.ifname === 'cni0')?.mtu, 1500);
  // The emulated nodes learn the kernel node's block from BIRD.
  for (const n of ['node-1', 'node-2', 'node-3']) {
    t.regex(await nodeCommand(lab!.stateDir, n, ['ip', 'route']), new RegExp(`^10\\.244\\.4\\.0/24 via ${esc(NET)}\\.14 dev eth0 proto bird$`, 'm'), n);
    t.regex(await nodeCommand(lab!.stateDir, n, ['bgp', 'summary']), new RegExp(`^${esc(NET)}\\.14\\s+64512\\s+iBGP\\s+up\\s.*Established\\s+1/1/1`, 'm'), n);
  }
  // The kernel node announces itself as calico-node does.
  const k = (await labApi(lab!.rec).get<Node>('nodes', 'knode-1'))!;
  t.is(k.metadata.annotations!['projectcalico.org/IPv4Address'], `${NET}.14/24`);
  t.false('flannel.alpha.coreos.com/backend-data' in k.metadata.annotations!);
});

test.serial('bgp: every pod, emulated and kernel, pings every other with 0% loss, in both directions', async (t) => {
  if (!need(t)) return;
  await allPairsPing(t, lab!, 8);
  // The emulated nodes took those frames off their real eth0; their namespaces' kernels dropped their copies.
  const stats = await callNode<{ underlay: { wire: string; raw: { sent: number; received: number } } }>(lab!.stateDir, 'node-1', 'stats', {});
  t.is(stats.underlay.wire, 'raw');
  t.regex(await nodeCommand(lab!.stateDir, 'node-1', ['stats']), /^underlay: raw frames on eth0, \d+ sent, \d+ received, 0 send errors; claimed: ether dst /m);
  t.true(stats.underlay.raw.sent > 0 && stats.underlay.raw.received > 0, JSON.stringify(stats.underlay));
  const nft = sh('ip', 'netns', 'exec', `${PREFIX}-node-1`, systemTool('nft')!, 'list', 'table', 'ip', 'podlab_rawwire');
  const dropped = Number(/counter packets (\d+) bytes \d+ drop/.exec(nft)?.[1] ?? 0);
  t.true(dropped >= stats.underlay.raw.received / 2, nft);
});

test.serial('bgp: real curl from kernel pods, podlab curl from emulated pods and an outside client reach nginx (pod IP, ClusterIP, every NodePort)', async (t) => {
  if (!need(t)) return;
  const client = labApi(lab!.rec);
  await client.create('pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web', namespace: 'default', labels: { app: 'web' } }, spec: { nodeName: 'node-2', containers: [{ name: 'web', image: 'nginx' }] } });
  await client.create('services', { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'default' }, spec: { type: 'NodePort', selector: { app: 'web' }, ports: [{ port: 80, targetPort: 80 }] } }, 'default');
  const web = await eventually(async () => {
    const p = await client.get<Pod>('pods', 'web');
    return p?.status?.phase === 'Running' ? p : undefined;
  }, 20_000);
  const svc = (await client.get<{ spec: { clusterIP: string; ports: { nodePort: number }[] } }>('services', 'web'))!;
  const nodePort = svc.spec.ports[0].nodePort;
  // Kernel TCP (real curl) to podlab TCP, straight to the pod.
  const r = await lab!.exec('pod-k1a', ['curl', '-s', '-m', '5', '-o', '/dev/null', '-w', '%{http_code}', `http://${web.status!.podIP}/`]);
  t.is(r.out, '200', r.out);
  // The ClusterIP from an emulated pod on another node (kube-proxy DNAT, then the raw wire).
  await eventually(async () => /Welcome to nginx!/.test((await lab!.exec('pod-3a', ['curl', '-s', '-m', '3', `http://${svc.spec.clusterIP}/`])).out), 10_000);
  // Every emulated node's NodePort: from a kernel pod and an emulated pod (the emulated kube-proxy answers pods),
  // and from outside the cluster (the underlay namespace: the node's real NodePort socket, SNAT to the node IP).
  for (const i of [1, 2, 3]) {
    const url = `http://${NET}.1${i}:${nodePort}/`;
    t.is((await lab!.exec('pod-k1a', ['curl', '-s', '-m', '5', '-o', '/dev/null', '-w', '%{http_code}', url])).out, '200', `kernel pod -> ${url}`);
    t.regex((await lab!.exec('pod-1a', ['curl', '-s', '-m', '5', url])).out, /Welcome to nginx!/, `emulated pod -> ${url}`);
    t.regex(sh('ip', 'netns', 'exec', `${PREFIX}-underlay`, systemTool('curl')!, '-s', '-m', '5', url), /Welcome to nginx!/, `outside -> ${url}`);
  }
  await client.delete('services', 'web');
  await client.delete('pods', 'web');
});

test.serial('bgp: a kernel pod running podlab/http is a real HTTP server on the kernel\'s TCP: emulated pods reach it by pod IP and ClusterIP', async (t) => {
  if (!need(t)) return;
  const client = labApi(lab!.rec);
  const cni0Mac = () => (JSON.parse(sh('ip', '-n', KNS, '-j', 'link', 'show', 'cni0')) as { address: string }[])[0].address;
  const macBefore = cni0Mac();
  await client.create('pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'kweb', namespace: 'default', labels: { app: 'kweb' } }, spec: { nodeName: 'knode-1', containers: [{ name: 'web', image: 'podlab/http' }, { name: 'site', image: 'nginx:1.25', ports: [{ containerPort: 8080 }] }] } });
  await client.create('services', { apiVersion: 'v1', kind: 'Service', metadata: { name: 'kweb', namespace: 'default' }, spec: { selector: { app: 'kweb' }, ports: [{ port: 80, targetPort: 80 }] } }, 'default');
  const kweb = await eventually(async () => {
    const p = await client.get<Pod>('pods', 'kweb');
    return p?.status?.phase === 'Running' ? p : undefined;
  }, 20_000);
  // The server is a process in the pod's namespace, listening on the kernel's TCP.
  t.regex(sh('ip', 'netns', 'exec', `${KNS}-kweb`, 'ss', '-Hltn'), /0\.0\.0\.0:80\b/);
  const url = `http://${kweb.status!.podIP}`;
  t.is((await lab!.exec('pod-1a', ['curl', '-s', '-m', '5', `${url}/`])).out, 'kweb on knode-1\n');
  // An nginx container in a kernel pod serves nginx's page, Server header from its tag.
  t.regex((await lab!.exec('pod-1a', ['curl', '-si', '-m', '5', `${url}:8080/`])).out, /Server: nginx\/1\.25\r\n[\s\S]*<title>Welcome to nginx!<\/title>/);
  // 200 kB from the kernel's TCP into podlab's, across the raw wire.
  t.is((await lab!.exec('pod-2b', ['curl', '-s', '-m', '10', '-o', '/dev/null', '-w', '%{http_code} %{size_download}', `${url}/bytes/200000`])).out, '200 200000');
  // The same routes as the emulated app, from the same handler.
  t.is((await lab!.exec('pod-2b', ['curl', '-s', '-m', '5', `${url}/healthz`])).out, 'ok\n');
  t.is((await lab!.exec('pod-2b', ['curl', '-s', '-m', '5', '-o', '/dev/null', '-w', '%{http_code}', `${url}/nope`])).out, '404');
  const cip = (await client.get<{ spec: { clusterIP: string } }>('services', 'kweb'))!.spec.clusterIP;
  await eventually(async () => (await lab!.exec('pod-3a', ['curl', '-s', '-m', '3', `http://${cip}/`])).out === 'kweb on knode-1\n', 10_000);
  await client.delete('services', 'kweb');
  await client.delete('pods', 'kweb');
  await eventually(() => !listNetnsSync().includes(`${KNS}-kweb`), 20_000);
  t.deepEqual(processesOf(lab!.stateDir, 'pod-server.ts'), []);
  // A pod coming and going leaves the gateway's MAC alone (an unset bridge MAC follows its lowest port's).
  t.is(cni0Mac(), macBefore);
  t.regex((await lab!.exec('pod-k1a', ['ping', '-c', '1', '-W', '2', '10.244.4.1'])).out, /1 received/);
});

test.serial('bgp: 300 garbage frames on the raw wire are counted and dropped; the node keeps forwarding', async (t) => {
  if (!need(t)) return;
  const mac = (JSON.parse(sh('ip', '-n', `${PREFIX}-node-1`, '-j', 'link', 'show', 'eth0')) as { address: string }[])[0].address;
  const fixture = path.join(ROOT, 'test/fixtures/netns/raw-garbage.ts');
  const out = sh('ip', 'netns', 'exec', `${PREFIX}-underlay`, process.execPath, '--import', 'tsx', fixture, mac, 'podlab0', '300', '7');
  t.is(out.trim(), 'sent 300');
  const stats = await eventually(async () => {
    const s = await callNode<{ interfaces: Record<string, { drops: Record<string, number> }>; underlay: { raw: { handlerErrors: number } } }>(lab!.stateDir, 'node-1', 'stats', {});
    const malformed = Object.entries(s.interfaces.eth0.drops).filter(([k]) => k.startsWith('malformed-ipv4')).reduce((n, [, v]) => n + v, 0);
    return malformed >= 100 ? s : undefined;
  }, 10_000);
  t.true(Object.keys(stats.interfaces.eth0.drops).some((k) => /malformed-ipv4:(bad-version|truncated)/.test(k)), JSON.stringify(stats.interfaces.eth0.drops));
  t.is(stats.underlay.raw.handlerErrors, 0, 'every frame was parsed and dropped, none threw');
  // The agent took it all without a crash (a restart would hide one from the pings below).
  const agent = readLab(lab!.stateDir)!.procs.find((p) => p.name === 'node-1')!;
  t.notThrows(() => process.kill(agent.pid, 0), 'node-1\'s agent is still the same process');
  const all = await pods(lab!);
  const ip = (n: string) => all.find((p) => p.metadata.name === n)!.status!.podIP!;
  for (const [from, to] of [['pod-k1a', 'pod-1a'], ['pod-1b', 'pod-2b'], ['pod-1a', 'pod-k1b']]) {
    const r = await lab!.exec(from, ['ping', '-c', '2', '-i', '0.2', '-W', '3', ip(to)]);
    if (!/2 received/.test(r.out)) {
      t.log(`${from} -> ${to} after the garbage: ${r.out}\nnode-1: ${JSON.stringify(await callNode(lab!.stateDir, 'node-1', 'stats', {}))}`);
      // What the bridge carries for one more try, and the tables on both ends.
      const tcap = spawn('ip', ['netns', 'exec', `${PREFIX}-underlay`, 'tshark', '-i', 'podlab0', '-l', '-a', 'duration:4', '-f', 'icmp or arp'], { stdio: ['ignore', 'pipe', 'ignore'] });
      let seen = '';
      tcap.stdout.on('data', (d) => (seen += d));
      await new Promise((r2) => setTimeout(r2, 1500));
      const again = await lab!.exec(from, ['ping', '-c', '1', '-W', '1', ip(to)]);
      await new Promise((r2) => tcap.on('exit', r2));
      t.log(`retry: ${again.out}\nbridge:\n${seen}\nknode neigh:\n${sh('ip', '-n', KNS, 'neigh')}\nknode routes:\n${sh('ip', '-n', KNS, 'route')}\nk1a neigh:\n${sh('ip', '-n', `${KNS}-pod-k1a`, 'neigh')}\nnode-1 neigh:\n${await nodeCommand(lab!.stateDir, 'node-1', ['ip', 'neigh'])}\nnode-1 routes:\n${await nodeCommand(lab!.stateDir, 'node-1', ['ip', 'route'])}`);
    }
    t.regex(r.out, /2 received, 0% packet loss/, `${from} -> ${to}`);
  }
});

test.serial('bgp: a killed emulated agent and a restarted kernel-node agent come back; BIRD re-peers in seconds', async (t) => {
  if (!need(t)) return;
  const all = await pods(lab!);
  const ip = (n: string) => all.find((p) => p.metadata.name === n)!.status!.podIP!;
  const reaches = async (from: string, to: string) => / 0% packet loss/.test((await lab!.exec(from, ['ping', '-c', '1', '-W', '1', ip(to)])).out);
  // The session coming back, as tshark on the underlay bridge decodes it (BIRD on .14 dials node-1 on .11).
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-raw-bgp-'));
  const file = path.join(dir, 'bgp.pcapng');
  const cap = spawn('ip', ['netns', 'exec', `${PREFIX}-underlay`, 'tshark', '-i', 'podlab0', '-f', `tcp port 179 and host ${NET}.11 and host ${NET}.14`, '-w', file, '-P', '-l'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => {
    if (cap.exitCode === null) cap.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  });
  let printed = '';
  let capErr = '';
  cap.stdout.on('data', (d) => (printed += d));
  cap.stderr.on('data', (d) => (capErr += d));
  // Keepalives every 3 s show that tshark is attached before the session is cut. `-l` flushes each
  // printed packet: piped output is otherwise block-buffered and a few keepalives never reach us.
  await eventually(() => /BGP/.test(printed), 30_000, 100).catch(async (e: unknown) => {
    // What the session was doing meanwhile, for a failure that only shows under load.
    t.log(`tshark stdout:\n${printed}\ntshark stderr:\n${capErr}\nnode-1 bgp summary:\n${await nodeCommand(lab!.stateDir, 'node-1', ['bgp', 'summary']).catch((x: Error) => x.message)}\nknode-1 bgp summary:\n${await nodeCommand(lab!.stateDir, 'knode-1', ['bgp', 'summary']).catch((x: Error) => x.message)}`);
    throw e;
  });
  // SIGKILL: no Cease, BIRD sees the session die; the new agent reopens eth0, reloads its nft table, re-peers.
  const t0 = Date.now();
  const phase = (what: string) => t.log(`${((Date.now() - t0) / 1000).toFixed(1)} s: ${what}`);
  await restartProcess(lab!.stateDir, 'node-1', { kill: true, timeoutMs: 60_000 });
  phase('node-1 agent killed and restarted (ready)');
  await eventually(async () => /Established/.test(await nodeCommand(lab!.stateDir, 'node-1', ['bgp', 'summary'])), 30_000, 200);
  phase('node-1 has an Established session');
  await eventually(() => reaches('pod-k1a', 'pod-1a'), 30_000, 200);
  phase('pod-k1a reaches pod-1a');
  t.true(await reaches('pod-1a', 'pod-k1b'));
  await eventually(() => (printed.match(/UPDATE/g) ?? []).length >= 2, 20_000, 100);
  phase('tshark saw both UPDATEs');
  const exited = new Promise((r) => cap.on('exit', r));
  cap.kill('SIGINT');
  await exited;
  const fields = ['ip.src', 'bgp.type', 'bgp.open.myas', 'bgp.open.identifier', 'bgp.nlri_prefix', 'bgp.update.path_attribute.next_hop', '_ws.malformed'];
  const rows = execFileSync('tshark', ['-r', file, '-Y', 'bgp', '-T', 'fields', '-E', 'separator=|', ...fields.flatMap((f) => ['-e', f])], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
    .trim()
    .split('\n')
    .map((l) => Object.fromEntries(l.split('|').map((v, i) => [fields[i], v])) as Record<string, string>);
  const open = (src: string) => rows.find((r) => r['ip.src'] === src && r['bgp.type'].split(',').includes('1'));
  t.like(open(`${NET}.11`), { 'bgp.open.myas': '64512', 'bgp.open.identifier': `${NET}.11` }, 'podlab\'s OPEN');
  t.like(open(`${NET}.14`), { 'bgp.open.myas': '64512', 'bgp.open.identifier': `${NET}.14` }, 'BIRD\'s OPEN');
  const update = (src: string, prefix: string) => rows.some((r) => r['ip.src'] === src && r['bgp.nlri_prefix'].split(',').includes(prefix) && r['bgp.update.path_attribute.next_hop'].split(',').includes(src));
  t.true(update(`${NET}.11`, '10.244.1.0'), 'podlab announces its block, next hop itself');
  t.true(update(`${NET}.14`, '10.244.4.0'), 'BIRD announces its block, next hop itself');
  t.false(rows.some((r) => r['_ws.malformed']), 'nothing malformed');
  const oldBird = Number(fs.readFileSync(birdPaths(lab!.stateDir, 'knode-1').pid, 'utf8'));
  await restartProcess(lab!.stateDir, 'knode-1', { timeoutMs: 60_000 });
  phase('knode-1 agent restarted');
  const newBird = Number(fs.readFileSync(birdPaths(lab!.stateDir, 'knode-1').pid, 'utf8'));
  t.not(newBird, oldBird);
  t.false(fs.existsSync(`/proc/${oldBird}/cmdline`) && fs.readFileSync(`/proc/${oldBird}/cmdline`, 'utf8').includes('bird'), 'the old BIRD is gone');
  // The new BIRD brings its three sessions up one by one: each path comes back on its own.
  await eventually(() => reaches('pod-2a', 'pod-k1a'), 30_000, 200);
  await eventually(() => reaches('pod-k1b', 'pod-3b'), 30_000, 200);
  await eventually(async () => /(Established[\s\S]*){3}/.test(await nodeCommand(lab!.stateDir, 'knode-1', ['bgp', 'summary'])), 30_000, 200);
  phase('the new BIRD has its three sessions');
  t.true(await reaches('pod-1b', 'pod-k1b'));
});

test.serial('bgp: tshark on the underlay bridge decodes the kernel\'s and podlab\'s frames identically: bare IPv4 with pod addresses', async (t) => {
  if (!need(t)) return;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-raw-cap-'));
  const file = path.join(dir, 'underlay.pcapng');
  // Everything a node could carry pod traffic in: ICMP as it is, and the UDP wire and VXLAN, which must not appear.
  const cap = spawn('ip', ['netns', 'exec', `${PREFIX}-underlay`, 'tshark', '-i', 'podlab0', '-f', 'icmp or udp port 8473 or udp port 8472', '-a', 'duration:12', '-w', file, '-P', '-l'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => {
    if (cap.exitCode === null) cap.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  });
  let printed = '';
  cap.stdout.on('data', (d) => (printed += d));
  const exited = new Promise<void>((r) => cap.on('exit', () => r()));
  const all = await pods(lab!);
  const ip = (n: string) => all.find((p) => p.metadata.name === n)!.status!.podIP!;
  // tshark may say "Capturing on" before it is attached: prime with pings between two other pods until it prints one.
  const primed = [ip('pod-2b'), ip('pod-3b')];
  await eventually(async () => {
    await lab!.exec('pod-2b', ['ping', '-c', '1', '-W', '1', primed[1]]);
    return printed.includes(primed[0]);
  }, 30_000, 200);
  // Kernel → podlab (the reply is podlab's) and podlab → kernel (the reply is the kernel's), and podlab ↔ podlab.
  await lab!.exec('pod-k1a', ['ping', '-c', '2', '-i', '0.2', ip('pod-1a')]);
  await lab!.exec('pod-2a', ['ping', '-c', '2', '-i', '0.2', ip('pod-k1b')]);
  await lab!.exec('pod-3a', ['ping', '-c', '2', '-i', '0.2', ip('pod-1b')]);
  await exited;
  const fields = ['eth.src', 'eth.dst', 'ip.src', 'ip.dst', 'frame.protocols', 'ip.ttl', 'ip.checksum.status', 'icmp.checksum.status', '_ws.expert.severity', '_ws.malformed'];
  const out = execFileSync('tshark', ['-r', file, '-o', 'ip.check_checksum:TRUE', '-T', 'fields', '-E', 'separator=|', ...fields.flatMap((f) => ['-e', f])], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const rows = out
    .trim()
    .split('\n')
    .map((l) => Object.fromEntries(l.split('|').map((v, i) => [fields[i], v])) as Record<string, string>)
    .filter((r) => !primed.includes(r['ip.src']));
  t.is(rows.length, 12, out);
  const kmac = (JSON.parse(sh('ip', '-n', KNS, '-j', 'link', 'show', 'eth0')) as { address: string }[])[0].address;
  const kernel = rows.filter((r) => r['eth.src'] === kmac);
  const podlab = rows.filter((r) => r['eth.src'] !== kmac);
  t.is(kernel.length, 4, out);
  t.is(podlab.length, 8, out);
  const shape = (r: Record<string, string>) => ({
    protocols: r['frame.protocols'],
    // Pod addresses on the underlay: nothing encapsulated, nothing translated.
    src: r['ip.src'].startsWith('10.244.'),
    dst: r['ip.dst'].startsWith('10.244.'),
    ttl: r['ip.ttl'],
    ipChecksum: r['ip.checksum.status'],
    icmpChecksum: r['icmp.checksum.status'],
    warnings: (r['_ws.expert.severity'] ? r['_ws.expert.severity'].split(',').map(Number) : []).filter((s) => s >= 0x00600000).length,
    malformed: r['_ws.malformed'],
  });
  // One hop decremented (the sending node) on the underlay, for both kinds of node.
  const want = { protocols: 'eth:ethertype:ip:icmp:data', src: true, dst: true, ttl: '63', ipChecksum: '1', icmpChecksum: '1', warnings: 0, malformed: '' };
  for (const r of kernel) t.deepEqual(shape(r), want, `kernel ${JSON.stringify(r)}`);
  for (const r of podlab) t.deepEqual(shape(r), want, `podlab ${JSON.stringify(r)}`);
  // Each frame is addressed to the next hop's real eth0 MAC.
  const macs = new Set(rows.map((r) => r['eth.dst']));
  t.true(macs.has(kmac));
});

test.serial('bgp: a trace names the raw-frame hop on the real eth0, and the kernel node\'s answer comes back', async (t) => {
  if (!need(t)) return;
  const all = await pods(lab!);
  const tr = await trace(lab!.stateDir, 'pod-1a', all.find((p) => p.metadata.name === 'pod-k1a')!.status!.podIP!, { proto: 'icmp' });
  t.is(tr.result.kind, 'reply');
  t.true(tr.hops.some((h) => h.node === 'node-1' && /raw frame on the real eth0 to .* \(10\.250\.74\.14\), pod addresses intact/.test(h.summary)), tr.hops.map((h) => h.summary).join('\n'));
  t.true(tr.hops.some((h) => h.node === 'node-1' && /raw frame from .* on the real eth0/.test(h.summary)));
  // Impairments sit on this wire as on the others: a blackhole towards the kernel node, seen by ping and trace.
  const k1a = all.find((p) => p.metadata.name === 'pod-k1a')!.status!.podIP!;
  await callNode(lab!.stateDir, 'node-1', 'impair.set', { peer: 'knode-1', spec: { blackhole: true } });
  try {
    t.regex((await lab!.exec('pod-1a', ['ping', '-c', '2', '-i', '0.2', '-W', '1', k1a])).out, /2 packets transmitted, 0 received, 100% packet loss/);
    const lost = await trace(lab!.stateDir, 'pod-1a', k1a, { proto: 'icmp', timeoutMs: 1000 });
    t.true(lost.hops.some((h) => h.drop === 'impairment-blackholed' && /raw frame blackholed \(towards 10\.250\.74\.14\)/.test(h.summary)), lost.hops.map((h) => h.summary).join('\n'));
  } finally {
    await callNode(lab!.stateDir, 'node-1', 'impair.clear', { peer: 'knode-1' });
  }
  t.regex((await lab!.exec('pod-1a', ['ping', '-c', '2', '-i', '0.2', k1a])).out, /2 received, 0% packet loss/);
});

test.serial('bgp: a BIRD and a kernel pod server orphaned by a SIGKILLed kernel-node agent are stopped by podlab down; nothing is left', async (t) => {
  if (!need(t)) return;
  const client = labApi(lab!.rec);
  await client.create('pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'orphan', namespace: 'default' }, spec: { nodeName: 'knode-1', containers: [{ name: 'web', image: 'nginx' }] } });
  await eventually(async () => (await client.get<Pod>('pods', 'orphan'))?.status?.phase === 'Running', 20_000);
  const stateDir = lab!.stateDir;
  const rec = readLab(stateDir)!;
  const agent = rec.procs.find((p) => p.name === 'knode-1')!;
  const { pid: pidFile, conf } = birdPaths(lab!.stateDir, 'knode-1');
  const birdPid = Number(fs.readFileSync(pidFile, 'utf8'));
  t.true(fs.readFileSync(`/proc/${birdPid}/cmdline`, 'utf8').split('\0').includes(conf));
  process.kill(agent.pid, 'SIGKILL');
  await eventually(() => !fs.existsSync(`/proc/${agent.pid}`) || /^State:\s+Z/m.test(fs.readFileSync(`/proc/${agent.pid}/status`, 'utf8')), 10_000);
  t.true(fs.existsSync(`/proc/${birdPid}`), 'BIRD outlives its agent');
  t.is(processesOf(stateDir, 'pod-server.ts').length, 1, 'the kernel pod\'s server outlives its agent');
  await lab!.close();
  lab = undefined;
  t.false(fs.existsSync(`/proc/${birdPid}/cmdline`) && fs.readFileSync(`/proc/${birdPid}/cmdline`, 'utf8').includes(conf), 'BIRD is stopped');
  t.deepEqual(listNetnsSync().filter((n) => n.startsWith(`${PREFIX}-`)), []);
  t.deepEqual(processesOf(stateDir, 'bird'), []);
  t.deepEqual(processesOf(stateDir, 'pod-server.ts'), []);
});

test.serial('host-gw: a kernel node gets flanneld\'s host-gw routes, the emulated nodes route to it on eth0, every pair pings', async (t) => {
  if (!need(t)) return;
  const hg = await startLab('127.0.0.0/24', { mode: 'netns', nodes: 2, kernelNodes: 1, podsPerNode: 1, backend: 'host-gw', netnsPrefix: HG_PREFIX, underlayNet: `${HG_NET}.0/24` });
  try {
    const kroutes = sh('ip', '-n', `${HG_PREFIX}-knode-1`, 'route', 'show');
    for (const i of [1, 2]) t.regex(kroutes, new RegExp(`^10\\.244\\.${i}\\.0/24 via ${esc(HG_NET)}\\.1${i} dev eth0 $`, 'm'), kroutes);
    t.regex(await nodeCommand(hg.stateDir, 'node-1', ['ip', 'route']), new RegExp(`^10\\.244\\.3\\.0/24 via ${esc(HG_NET)}\\.13 dev eth0$`, 'm'));
    const k = (await labApi(hg.rec).get<Node>('nodes', 'knode-1'))!;
    t.is(k.metadata.annotations!['flannel.alpha.coreos.com/backend-type'], 'host-gw');
    await allPairsPing(t, hg, 3);
  } finally {
    await hg.close();
  }
  t.deepEqual(listNetnsSync().filter((n) => n.startsWith(`${HG_PREFIX}-`)), []);
});

test.serial('bgp route reflectors: the kernel node\'s BIRD peers with the two reflectors only and learns every block through them', async (t) => {
  if (!need(t)) return;
  const rr = await startLab('127.0.0.0/24', { mode: 'netns', nodes: 3, kernelNodes: 1, podsPerNode: 1, backend: 'bgp', bgpTopology: 'route-reflector', netnsPrefix: RR_PREFIX, underlayNet: `${RR_NET}.0/24` });
  try {
    const summary = await nodeCommand(rr.stateDir, 'knode-1', ['bgp', 'summary']);
    const sessions = [...summary.matchAll(/^(Mesh_\S+)\s+BGP\s+---\s+up\s+\S+\s+Established/gm)].map((m) => m[1]);
    t.deepEqual(sessions.sort(), [`Mesh_${RR_NET.replace(/\./g, '_')}_11`, `Mesh_${RR_NET.replace(/\./g, '_')}_12`], summary);
    // node-3 is a client like the kernel node: its block reaches BIRD only by reflection, next hop untouched.
    t.regex(sh('ip', '-n', `${RR_PREFIX}-knode-1`, 'route', 'show'), new RegExp(`^10\\.244\\.3\\.0/24 via ${esc(RR_NET)}\\.13 dev eth0 proto bird`, 'm'));
    t.regex(await nodeCommand(rr.stateDir, 'node-3', ['ip', 'route']), new RegExp(`^10\\.244\\.4\\.0/24 via ${esc(RR_NET)}\\.14 dev eth0 proto bird$`, 'm'));
    await allPairsPing(t, rr, 4);
  } finally {
    await rr.close();
  }
  t.deepEqual(listNetnsSync().filter((n) => n.startsWith(`${RR_PREFIX}-`)), []);
});
