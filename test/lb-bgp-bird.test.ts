/**
 * LoadBalancer Services in BGP mode against a real BIRD 2 (lab on
 * 127.0.25.0/24, BGP backend, BIRD on 127.0.25.5): a BGPAdvertisement with a
 * localPref, a standard and a large community selects a pool of TEST-NET-2
 * addresses (BIRD, like any router, ignores loopback prefixes as bogus; these
 * exist only inside the lab and BIRD, which has no kernel protocol), and a
 * second one announces the pool's /28 aggregate;
 * BIRD, made an iBGP peer by a BGPPeer object, learns each LB IP as a /32
 * from every node for externalTrafficPolicy Cluster and from the endpoint's
 * node only for Local, with the attributes as BGPAdvertisement wrote them.
 * The /32 is withdrawn when the Local Service's last endpoint goes and when a
 * Service is deleted (the aggregate with the last address). The node peers accept each other's LB routes (their
 * owner's) but never install them; `bgp routes` shows them.
 *
 * Safety: BIRD has no `protocol kernel` (nothing reaches the kernel's routing
 * tables) and listens on a loopback address on an unprivileged port.
 */
import test from 'ava';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { nodeCommand } from '../cli/commands.ts';
import { defaultBgpPort, labApi } from '../lab/lab.ts';
import type { Service } from '../control-plane/service-resources.ts';
import type { Pod } from '../control-plane/types.ts';
import { httpPod, lbService } from './helpers/lb.ts';
import { eventually, hasTool, requireOrSkip, startLab } from './helpers/lab.ts';

const BIRD_IP = '127.0.25.5';
const BIRD_PORT = 11795;
const NODES = ['127.0.25.11', '127.0.25.12', '127.0.25.13'];

function birdConf(nodePort: number): string {
  return `# podlab lb-bgp-bird test. No "protocol kernel": nothing reaches the kernel's routing tables.
router id ${BIRD_IP};
log stderr all;
protocol device {}
${NODES.map(
  (ip, i) => `protocol bgp node${i + 1} {
  local ${BIRD_IP} port ${BIRD_PORT} as 64512;
  neighbor ${ip} port ${nodePort} as 64512;
  hold time 3;
  connect retry time 1;
  error wait time 1, 2;
  ipv4 { import all; export none; };
}`,
).join('\n')}
`;
}

function birdc(sock: string, args: string[]): Promise<string> {
  return promisify(execFile)('birdc', ['-s', sock, ...args], { timeout: 10_000 }).then((r) => r.stdout);
}

/** The BGP protocols (node1..node3) BIRD holds a route for `prefix` from. */
async function birdPaths(sock: string, prefix: string): Promise<{ protos: string[]; text: string }> {
  const text = await birdc(sock, ['show', 'route', 'all', prefix]).catch(() => '');
  const protos = [...text.matchAll(/^\S*\s+\w+ \[(node\d) /gm)].map((m) => m[1]).sort();
  return { protos, text: text.includes(prefix) ? text : '' };
}

const pod = httpPod;
const lb = (name: string, app: string, extra: Record<string, unknown> = {}) => lbService(name, app, extra, { 'metallb.io/address-pool': 'upstream' });

test('BGP mode: BIRD learns the LB /32s with localpref and communities, from the right nodes, and sees them withdrawn', async (t) => {
  if (!requireOrSkip(t, hasTool('bird') || fs.existsSync('/usr/sbin/bird'), 'bird2 is not installed')) return;
  const lab = await startLab('127.0.25.0/24', { nodes: 3, podsPerNode: 0, backend: 'bgp', bgpHoldTime: 3 });
  t.teardown(() => lab.close());
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-lb-bird-'));
  const sock = path.join(dir, 'bird.ctl');
  fs.writeFileSync(path.join(dir, 'bird.conf'), birdConf(defaultBgpPort()));
  const bird: ChildProcess = spawn('/usr/sbin/bird', ['-f', '-c', path.join(dir, 'bird.conf'), '-s', sock, '-P', path.join(dir, 'bird.pid')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let birdLog = '';
  bird.stderr!.on('data', (d) => (birdLog += d));
  t.teardown(() => {
    bird.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const withLog = async (e: unknown): Promise<never> => {
    const protocols = await birdc(sock, ['show', 'protocols']).catch((x: unknown) => String(x));
    const routes = await birdc(sock, ['show', 'route', 'all']).catch((x: unknown) => String(x));
    const node1 = await nodeCommand(lab.stateDir, 'node-1', ['bgp', 'routes']).catch((x: unknown) => String(x));
    const summary = await nodeCommand(lab.stateDir, 'node-1', ['bgp', 'summary']).catch((x: unknown) => String(x));
    throw new Error(`${String(e)}\nbird log:\n${birdLog.slice(-3000)}\nbirdc show protocols:\n${protocols}\nbirdc show route all:\n${routes.slice(-4000)}\nnode-1 bgp summary:\n${summary}\nnode-1 bgp routes:\n${node1}`);
  };

  const api = labApi(lab.rec);
  await api.create('bgppeers', { apiVersion: 'projectcalico.org/v3', kind: 'BGPPeer', metadata: { name: 'bird' }, spec: { peerIP: `${BIRD_IP}:${BIRD_PORT}`, asNumber: 64512 } });
  const ns = 'metallb-system';
  const meta = (name: string) => ({ name, namespace: ns });
  await api.create('ipaddresspools', { apiVersion: 'metallb.io/v1beta1', kind: 'IPAddressPool', metadata: meta('upstream'), spec: { addresses: ['198.51.100.10-198.51.100.14'], autoAssign: false } }, ns);
  await api.create('bgpadvertisements', { apiVersion: 'metallb.io/v1beta1', kind: 'BGPAdvertisement', metadata: meta('upstream'), spec: { ipAddressPools: ['upstream'], localPref: 300, communities: ['65000:100', 'large:64512:7:9'] } }, ns);
  await api.create('bgpadvertisements', { apiVersion: 'metallb.io/v1beta1', kind: 'BGPAdvertisement', metadata: meta('aggregate'), spec: { ipAddressPools: ['upstream'], aggregationLength: 28 } }, ns);
  for (const p of [pod('web-1', 'node-1', 'web'), pod('web-2', 'node-2', 'web'), pod('solo', 'node-2', 'solo')]) await api.create('pods', p, 'default');
  await api.create('services', lb('web', 'web'), 'default');
  await api.create('services', lb('solo', 'solo', { externalTrafficPolicy: 'Local' }), 'default');
  await eventually(async () => (await api.list<Pod>('pods')).items.every((p) => p.status?.phase === 'Running'), 30_000);
  const ipOf = async (n: string) => (await api.get<Service>('services', n, 'default'))?.status?.loadBalancer?.ingress?.[0]?.ip;
  t.is(await eventually(() => ipOf('web'), 10_000), '198.51.100.10');
  t.is(await eventually(() => ipOf('solo'), 10_000), '198.51.100.11');

  // Cluster: every node announces; BIRD holds three paths, each with its node as next hop.
  const web = await eventually(async () => {
    const r = await birdPaths(sock, '198.51.100.10/32');
    return r.protos.length === 3 ? r : undefined;
  }, 30_000, 200).catch(withLog);
  t.deepEqual(web.protos, ['node1', 'node2', 'node3']);
  for (const ip of NODES) t.regex(web.text, new RegExp(`BGP\\.next_hop: ${ip.replaceAll('.', '\\.')}`));
  t.regex(web.text, /BGP\.local_pref: 300/);
  t.regex(web.text, /BGP\.community: \(65000,100\)/);
  t.regex(web.text, /BGP\.large_community: \(64512, 7, 9\)/);

  // The aggregate: one /28 per node, without the first advertisement's attributes.
  const agg = await eventually(async () => {
    const r = await birdPaths(sock, '198.51.100.0/28');
    return r.protos.length === 3 ? r : undefined;
  }, 10_000, 200).catch(withLog);
  t.notRegex(agg.text, /local_pref: 300|community/);

  // Local: only node-2 (the endpoint's node) announces.
  const solo = await eventually(async () => {
    const r = await birdPaths(sock, '198.51.100.11/32');
    return r.protos.length ? r : undefined;
  }, 20_000, 200).catch(withLog);
  await new Promise((r) => setTimeout(r, 1000)); // would a second node announce it too?
  t.deepEqual((await birdPaths(sock, '198.51.100.11/32')).protos, ['node2']);
  t.regex(solo.text, /BGP\.next_hop: 127\.0\.25\.12/);

  // The node peers: node-1 accepts node-2's /32 (its owner's) and does not install it; its own is local.
  const routes1 = await eventually(async () => {
    const r = await nodeCommand(lab.stateDir, 'node-1', ['bgp', 'routes']);
    return /198\.51\.100\.11\/32 +\* via 127\.0\.25\.12/.test(r) ? r : undefined;
  }, 10_000, 200);
  t.regex(routes1, /198\.51\.100\.10\/32 +\* local as-path \[\] local-pref 300 communities \(65000, 100\) large-communities \(64512, 7, 9\) .*LoadBalancer default\/web/);
  t.regex(routes1, /198\.51\.100\.11\/32 +\* via 127\.0\.25\.12 from 127\.0\.25\.12 .*LoadBalancer \(another node's: not installed\)/);
  t.notRegex(await nodeCommand(lab.stateDir, 'node-1', ['ip', 'route']), /198\.51\.100\.1[01]/);
  t.log(routes1.split('\n').filter((l) => l.startsWith('198.51.100.')).join('\n'));

  // The Local Service's last endpoint goes: node-2 withdraws, BIRD forgets the /32.
  let t0 = performance.now();
  await api.delete('pods', 'solo', 'default');
  await eventually(async () => (await birdPaths(sock, '198.51.100.11/32')).protos.length === 0 || undefined, 30_000, 100).catch(withLog);
  t.log(`Local /32 withdrawn ${(performance.now() - t0).toFixed(0)} ms after its endpoint's pod was deleted`);

  // The Cluster Service is deleted: all three withdraw.
  t0 = performance.now();
  await api.delete('services', 'web', 'default');
  await eventually(async () => (await birdPaths(sock, '198.51.100.10/32')).protos.length === 0 || undefined, 30_000, 100).catch(withLog);
  await eventually(async () => (await birdPaths(sock, '198.51.100.0/28')).protos.length === 0 || undefined, 10_000, 100).catch(withLog);
  t.log(`Cluster /32 withdrawn ${(performance.now() - t0).toFixed(0)} ms after the Service was deleted`);
  t.notRegex(await nodeCommand(lab.stateDir, 'node-1', ['bgp', 'routes']), /198\.51\.100\.1[01]/);
});
