/**
 * netns labs, as root: a lab of 3 emulated nodes and 1 kernel node (the Linux
 * kernel's own vxlan flannel.1) in network namespaces `podlab-t7v-*` on the
 * bridge podlab0 (underlay 10.250.71.0/24, which exists only inside those
 * namespaces), and an emulated-only host-gw lab (`podlab-t7h-*`,
 * 10.250.72.0/24).
 *
 * Verified: the namespaces, bridge and veths, and nothing added to the root
 * namespace; the kernel node configured as flanneld configures a node and kept
 * in sync from the apiserver; every pod, emulated and kernel, pings every other
 * in both directions with 0% loss (vxlan, and host-gw for the emulated lab);
 * tshark on the underlay bridge decodes the kernel's and podlab's VXLAN frames
 * identically (layers, VXLAN header bytes, VNI 1, outer TTL/DF, good UDP
 * checksums, no expert warnings); the CLI verbs (get, exec on both kinds of
 * pods, node, trace, capture, impair) through the apiserver's Unix socket; a
 * container-style node (`podlab agent` with nothing but --api, as
 * docker-compose runs it) joining and leaving; pods coming and going on the
 * kernel node; `podlab down` after a clean run and after a crash (SIGKILL)
 * leaving no namespace, veth or process. Not root (or no iproute2): skipped
 * with the reason, failed in CI.
 */
import test, { type ExecutionContext } from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { FlannelVxlanBackendData } from '../control-plane/annotations.ts';
import type { Node, Pod } from '../control-plane/types.ts';
import { callNode, execInPod, getResources, nodeCommand } from '../cli/commands.ts';
import { capture } from '../cli/capture.ts';
import { down, ROOT, spawnLogged, stopProcess, waitForEvent, labApi } from '../lab/lab.ts';
import { addNetns, addVethPair, hasIproute2, ipIn, isRoot, listNetnsSync } from '../hostnet/netns.ts';
import { isOurProcess, readLab, writeLab } from '../lab/state.ts';
import { trace } from '../cli/trace.ts';
import { eventually, hasTool, requireOrSkip, startLab, type TestLab } from './helpers/lab.ts';

const PREFIX = 'podlab-t7v';
const NET = '10.250.71';
const HG_PREFIX = 'podlab-t7h';
const HG_NET = '10.250.72';
const KNS = `${PREFIX}-knode-1`;

const canRun = isRoot() && hasIproute2();
const why = !isRoot() ? 'netns labs need root' : 'iproute2 (ip) is not installed';
const ours = (n: string) => n.startsWith(`${PREFIX}-`) || n.startsWith(`${HG_PREFIX}-`);
let before: string[] = [];
let lab: TestLab | undefined;
let hg: TestLab | undefined;

/** Root-namespace veths and addresses, to prove the lab adds none. */
/**
 * The root namespace as podlab could touch it: its veths and IPv4 addresses.
 * Bridges in the root namespace and the veths enslaved to them are left out:
 * Docker's networks (the compose test may run meanwhile) come and go with their
 * containers, and a netns lab keeps its own bridge inside its underlay namespace.
 */
const DOCKER_VETH = /^veth[0-9a-f]{7}$/;

function rootSnapshot(): { veths: string[]; addrs: string[] } {
  const bridges = new Set((JSON.parse(execFileSync('ip', ['-j', 'link', 'show', 'type', 'bridge'], { encoding: 'utf8' }) || '[]') as { ifname: string }[]).map((b) => b.ifname));
  const links = JSON.parse(execFileSync('ip', ['-j', 'link', 'show', 'type', 'veth'], { encoding: 'utf8' }) || '[]') as { ifname: string; master?: string }[];
  const addrs = JSON.parse(execFileSync('ip', ['-j', '-4', 'addr', 'show'], { encoding: 'utf8' }) || '[]') as { ifname: string; addr_info: { local: string }[] }[];
  return {
    // Docker's engine (the compose tests run beside this one) makes and deletes its containers' pairs in the root
    // namespace, `veth` and 7 hex digits, each unattached to its bridge for a moment; the lab makes none there.
    veths: links.filter((l) => !(l.master && bridges.has(l.master)) && !DOCKER_VETH.test(l.ifname)).map((l) => l.ifname).sort(),
    addrs: addrs.filter((a) => !bridges.has(a.ifname)).flatMap((a) => a.addr_info.map((i) => i.local)).sort(),
  };
}
let rootBefore: ReturnType<typeof rootSnapshot> | undefined;

test.before(async () => {
  if (!canRun) return;
  before = listNetnsSync();
  rootBefore = rootSnapshot();
  lab = await startLab('127.0.0.0/24', { mode: 'netns', nodes: 3, kernelNodes: 1, podsPerNode: 2, netnsPrefix: PREFIX, underlayNet: `${NET}.0/24` });
});

test.after.always(async () => {
  await lab?.close();
  await hg?.close();
});

const need = (t: ExecutionContext) => requireOrSkip(t, canRun, why);

/** tshark on the lab bridge, `count` frames matching `filter` to a file; resolves once it is capturing. */
async function captureUnderlay(t: ExecutionContext, filter: string, count: number): Promise<{ file: string; exited: Promise<void> }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-netns-cap-'));
  const file = path.join(dir, 'underlay.pcapng');
  const cap = spawn('ip', ['netns', 'exec', `${PREFIX}-underlay`, 'tshark', '-i', 'podlab0', '-f', filter, '-c', String(count), '-a', 'duration:60', '-w', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  t.teardown(() => {
    if (cap.exitCode === null) cap.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  });
  let err = '';
  cap.stderr.on('data', (d) => (err += d));
  const exited = new Promise<void>((r) => cap.on('exit', () => r()));
  await eventually(() => /Capturing on/.test(err), 30_000);
  return { file, exited };
}
const ipj = <T>(ns: string, ...args: string[]): T => JSON.parse(execFileSync('ip', ['-n', ns, '-j', ...args], { encoding: 'utf8' }) || '[]') as T;
const api = () => labApi(lab!.rec);
const pods = async (l: TestLab = lab!) => (await labApi(l.rec).list<Pod>('pods', { namespace: 'default' })).items.sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
const podIp = async (name: string) => (await pods()).find((p) => p.metadata.name === name)!.status!.podIP!;

test.serial('the lab network: namespaces, a bridge and veths between them; the root namespace untouched', (t) => {
  if (!need(t)) return;
  const ns = listNetnsSync();
  for (const n of ['underlay', 'node-1', 'node-2', 'node-3', 'knode-1', 'knode-1-pod-k1a', 'knode-1-pod-k1b']) t.true(ns.includes(`${PREFIX}-${n}`), n);
  const bridge = ipj<{ ifname: string; addr_info: { local: string; prefixlen: number }[] }[]>(`${PREFIX}-underlay`, 'addr', 'show', 'dev', 'podlab0');
  t.deepEqual(bridge[0].addr_info.map((a) => `${a.local}/${a.prefixlen}`), [`${NET}.10/24`]);
  const ports = ipj<{ ifname: string; master?: string }[]>(`${PREFIX}-underlay`, 'link', 'show', 'type', 'veth');
  t.deepEqual(ports.filter((p) => p.master === 'podlab0').map((p) => p.ifname).sort(), ['v-knode-1', 'v-node-1', 'v-node-2', 'v-node-3']);
  const eth0 = ipj<{ addr_info: { local: string }[] }[]>(`${PREFIX}-node-2`, 'addr', 'show', 'dev', 'eth0');
  t.is(eth0[0].addr_info[0].local, `${NET}.12`);
  // No route out of the lab: the node namespaces know only the underlay subnet.
  t.deepEqual(ipj<{ dst: string }[]>(`${PREFIX}-node-1`, 'route', 'show').map((r) => r.dst), [`${NET}.0/24`]);
  // Nothing of the lab in the root namespace.
  const now = rootSnapshot();
  t.deepEqual(now.veths, rootBefore!.veths);
  t.false(now.addrs.some((a) => a.startsWith(`${NET}.`)), now.addrs.join());
  const rec = readLab(lab!.stateDir)!;
  t.is(rec.netns?.bridge, 'podlab0');
  t.deepEqual(rec.netns?.namespaces.slice(0, 2), [`${PREFIX}-underlay`, `${PREFIX}-node-1`]);
  t.regex(rec.apiUrl!, /^unix:\/.*api\.sock$/);
  t.regex(rec.apiInternalUrl!, new RegExp(`^https://${NET.replace(/\./g, '\\.')}\\.10:\\d+$`));
  t.deepEqual(rec.procs.map((p) => `${p.role}:${p.netns ?? 'root'}`), ['apiserver:' + `${PREFIX}-underlay`, `node:${PREFIX}-node-1`, `node:${PREFIX}-node-2`, `node:${PREFIX}-node-3`, 'kernel-node:root']);
  // `ip netns exec` execs: the recorded pid is the agent itself, and it lives in its namespace.
  const agent = rec.procs.find((p) => p.name === 'node-1')!;
  t.regex(fs.readFileSync(`/proc/${agent.pid}/cmdline`, 'utf8'), /bin\/podlab\.js\0agent\0/);
  t.is(fs.readlinkSync(`/proc/${agent.pid}/ns/net`), execFileSync('ip', ['netns', 'exec', `${PREFIX}-node-1`, 'readlink', '/proc/self/ns/net'], { encoding: 'utf8' }).trim());
});

test.serial('the kernel node is configured as flanneld configures a node, and publishes the same annotations', async (t) => {
  if (!need(t)) return;
  type Link = { ifname: string; address: string; mtu: number; linkinfo?: { info_kind: string; info_data: Record<string, unknown> } };
  const [vtep] = ipj<Link[]>(KNS, '-d', 'link', 'show', 'flannel.1');
  t.is(vtep.linkinfo?.info_kind, 'vxlan');
  t.like(vtep.linkinfo?.info_data, { id: 1, local: `${NET}.14`, port: 8472, learning: false });
  t.is(vtep.mtu, 1450);
  const addr = (dev: string) => ipj<{ addr_info: { local: string; prefixlen: number }[] }[]>(KNS, 'addr', 'show', 'dev', dev)[0].addr_info.map((a) => `${a.local}/${a.prefixlen}`);
  t.deepEqual(addr('flannel.1'), ['10.244.4.0/32']);
  t.deepEqual(addr('cni0'), ['10.244.4.1/24']);
  t.is(execFileSync('ip', ['netns', 'exec', KNS, 'sysctl', '-n', 'net.ipv4.ip_forward'], { encoding: 'utf8' }).trim(), '1');

  const nodes = (await api().list<Node>('nodes')).items;
  const k = nodes.find((n) => n.metadata.name === 'knode-1')!;
  t.is(k.spec?.podCIDR, '10.244.4.0/24');
  const ann = k.metadata.annotations!;
  t.is(ann['flannel.alpha.coreos.com/backend-type'], 'vxlan');
  t.is(ann['flannel.alpha.coreos.com/public-ip'], `${NET}.14`);
  t.deepEqual(JSON.parse(ann['flannel.alpha.coreos.com/backend-data']), { VNI: 1, VtepMAC: vtep.address });
  t.true(k.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));

  // One neighbour, one FDB entry, one route per emulated node, from their annotations.
  const routes = execFileSync('ip', ['-n', KNS, 'route', 'show'], { encoding: 'utf8' });
  const neigh = execFileSync('ip', ['-n', KNS, 'neigh', 'show', 'dev', 'flannel.1'], { encoding: 'utf8' });
  const fdb = execFileSync('bridge', ['-n', KNS, 'fdb', 'show', 'dev', 'flannel.1'], { encoding: 'utf8' });
  for (const i of [1, 2, 3]) {
    const n = nodes.find((x) => x.metadata.name === `node-${i}`)!;
    const mac = (JSON.parse(n.metadata.annotations!['flannel.alpha.coreos.com/backend-data']) as FlannelVxlanBackendData).VtepMAC;
    t.regex(routes, new RegExp(`^10\\.244\\.${i}\\.0/24 via 10\\.244\\.${i}\\.0 dev flannel\\.1 onlink`, 'm'));
    t.regex(neigh, new RegExp(`^10\\.244\\.${i}\\.0 lladdr ${mac} PERMANENT`, 'm'));
    t.regex(fdb, new RegExp(`^${mac} dst ${NET.replace(/\./g, '\\.')}\\.1${i} self permanent`, 'm'));
  }
  // And the emulated nodes program the kernel node like any peer.
  const r1 = await nodeCommand(lab!.stateDir, 'node-1', ['ip', 'route']);
  t.regex(r1, /^10\.244\.4\.0\/24 via 10\.244\.4\.0 dev flannel\.1 onlink$/m);
  t.regex(await nodeCommand(lab!.stateDir, 'node-1', ['bridge', 'fdb']), new RegExp(`${vtep.address} dev flannel\\.1 dst ${NET.replace(/\./g, '\\.')}\\.14 self permanent`));
});

test.serial('every pod, emulated and kernel, pings every other with 0% loss, in both directions', async (t) => {
  if (!need(t)) return;
  const all = await pods();
  t.is(all.length, 8);
  t.deepEqual(all.filter((p) => p.spec!.nodeName === 'knode-1').map((p) => p.status!.podIP), ['10.244.4.2', '10.244.4.3']);
  const pairs = all.flatMap((a) => all.filter((b) => b !== a).map((b) => [a, b] as const));
  t.is(pairs.length, 56);
  // podlab exec on a kernel pod runs the real iputils ping in the pod's namespace.
  const results = await Promise.all(pairs.map(([a, b]) => lab!.exec(a.metadata.name, ['ping', '-c', '2', '-i', '0.2', '-W', '3', b.status!.podIP!])));
  results.forEach((r, i) => {
    const [a, b] = pairs[i];
    const what = `${a.metadata.name} (${a.spec!.nodeName}) -> ${b.metadata.name} (${b.spec!.nodeName})`;
    t.is(r.code, 0, `${what}\n${r.out}`);
    t.regex(r.out, /2 packets transmitted, 2 received, 0% packet loss/, what);
    t.regex(r.out, new RegExp(`ttl=${a.spec!.nodeName === b.spec!.nodeName ? 64 : 62} `), `${what}: TTL`);
  });
  // And straight from the kernel, no podlab in between on the sending side.
  const direct = execFileSync('ip', ['netns', 'exec', `${KNS}-pod-k1a`, 'ping', '-c', '3', '-i', '0.2', await podIp('pod-2b')], { encoding: 'utf8' });
  t.regex(direct, /3 packets transmitted, 3 received, 0% packet loss/);
});

test.serial('tshark on the underlay bridge decodes the kernel\'s and podlab\'s VXLAN frames identically', async (t) => {
  if (!need(t)) return;
  if (!requireOrSkip(t, hasTool('tshark'), 'tshark is not installed')) return;
  const { file, exited } = await captureUnderlay(t, 'udp port 8472', 8);
  let done = false;
  void exited.then(() => (done = true));
  const [k1a, p1a] = [await podIp('pod-k1a'), await podIp('pod-1a')];
  for (let i = 0; i < 40 && !done; i++) {
    // Kernel → podlab (the reply is podlab's) and podlab → kernel (the reply is the kernel's).
    execFileSync('ip', ['netns', 'exec', `${KNS}-pod-k1a`, 'ping', '-c', '1', '-W', '2', p1a], { stdio: 'ignore' });
    await lab!.exec('pod-1a', ['ping', '-c', '1', k1a]);
    await Promise.race([exited, new Promise((r) => setTimeout(r, 100))]);
  }
  await exited;
  const fields = ['ip.src', 'frame.protocols', 'ip.ttl', 'ip.flags.df', 'udp.dstport', 'udp.checksum', 'udp.checksum.status', 'vxlan.flags', 'vxlan.vni', 'udp.payload', '_ws.expert.severity', '_ws.malformed'];
  const out = execFileSync(
    'tshark',
    ['-r', file, '-d', 'udp.port==8472,vxlan', '-o', 'ip.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE', '-T', 'fields', '-E', 'separator=|', ...fields.flatMap((f) => ['-e', f])],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
  );
  const rows = out.trim().split('\n').map((l) => Object.fromEntries(l.split('|').map((v, i) => [fields[i], v.split(',')[0]])) as Record<string, string>);
  t.is(rows.length, 8, out);
  const kernel = rows.filter((r) => r['ip.src'] === `${NET}.14`);
  const podlab = rows.filter((r) => r['ip.src'] !== `${NET}.14`);
  t.true(kernel.length >= 2 && podlab.length >= 2, `kernel ${kernel.length}, podlab ${podlab.length}`);
  const goodChecksums = hasTool('ethtool'); // without it, veths leave offloaded (partial) checksums on both sides
  const shape = (r: Record<string, string>) => ({
    protocols: r['frame.protocols'],
    ttl: r['ip.ttl'],
    df: r['ip.flags.df'],
    dstport: r['udp.dstport'],
    checksum: goodChecksums ? r['udp.checksum.status'] : r['udp.checksum'] === '0x0000' ? 'zero' : 'present',
    flags: r['vxlan.flags'],
    vni: r['vxlan.vni'],
    // The 8 VXLAN header bytes: flags 0x08, 24 reserved bits, VNI 1, 8 reserved bits.
    header: r['udp.payload'].slice(0, 16),
    warnings: (r['_ws.expert.severity'] ? r['_ws.expert.severity'].split(';').map(Number) : []).filter((s) => s >= 0x00600000).length,
    malformed: r['_ws.malformed'],
  });
  const want = { protocols: 'eth:ethertype:ip:udp:vxlan:eth:ethertype:ip:icmp:data', ttl: '64', df: '0', dstport: '8472', checksum: goodChecksums ? '1' : 'present', flags: '0x0800', vni: '1', header: '0800000000000100', warnings: 0, malformed: '' };
  for (const r of kernel) t.deepEqual(shape(r), want, 'kernel');
  for (const r of podlab) t.deepEqual(shape(r), want, 'podlab');
});

test.serial('one flow keeps one VXLAN source port, on the kernel node and on podlab\'s nodes alike (udp_flow_src_port)', async (t) => {
  if (!need(t)) return;
  if (!requireOrSkip(t, hasTool('tshark'), 'tshark is not installed')) return;
  // 5 echoes from the kernel's pod and 80 from podlab's, each echo a request and a reply: 170 VXLAN frames. After 64
  // datagrams of a flow node-1 sends them through a socket connected to the kernel node: its source port stays.
  const { file, exited } = await captureUnderlay(t, 'udp port 8472', 170);
  const [k1a, p1a] = [await podIp('pod-k1a'), await podIp('pod-1a')];
  const connected = async () => (await callNode<{ underlay: { connectedSockets: number } }>(lab!.stateDir, 'node-1', 'stats', {})).underlay.connectedSockets;
  const connectedBefore = await connected();
  // Every echo of a ping shares its identifier; the sequence number and the ICMP checksum change.
  execFileSync('ip', ['netns', 'exec', `${KNS}-pod-k1a`, 'ping', '-c', '5', '-i', '0.2', '-W', '2', p1a], { stdio: 'ignore' });
  t.is((await lab!.exec('pod-1a', ['ping', '-q', '-c', '80', '-i', '0.01', k1a])).code, 0);
  await exited;
  t.true((await connected()) > connectedBefore, 'node-1 sent the busy flow through a connected socket');
  const fields = ['ip.src', 'udp.srcport', 'icmp.type', 'icmp.ident'];
  const out = execFileSync('tshark', ['-r', file, '-d', 'udp.port==8472,vxlan', '-T', 'fields', '-E', 'separator=|', ...fields.flatMap((f) => ['-e', f])], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const flows = new Map<string, Set<string>>();
  for (const line of out.trim().split('\n')) {
    const [outerSrc, sport, type, ident] = line.split('|');
    // tshark lists the outer and the inner IP source: the first is the VTEP, the flow is the inner echo.
    const key = `${outerSrc.split(',')[0]} type ${type} id ${ident.split(',')[0]}`;
    flows.set(key, (flows.get(key) ?? new Set()).add(sport));
  }
  t.is(flows.size, 4, [...flows.keys()].join('\n'));
  const bySender = (kernel: boolean) => [...flows].filter(([k]) => k.startsWith(`${NET}.14 `) === kernel);
  t.is(bySender(true).length, 2, 'the kernel node sent requests and replies');
  t.is(bySender(false).length, 2, 'podlab sent requests and replies');
  for (const [flow, ports] of flows) t.is(ports.size, 1, `${flow}: source ports ${[...ports].join(', ')}`);
});

test.serial('CLI verbs through the Unix socket and the agents: get, node, trace, capture, impair, exec on kernel pods', async (t) => {
  if (!need(t)) return;
  const dir = lab!.stateDir;
  const wide = await getResources(dir, 'nodes', { output: 'wide' });
  t.regex(wide, new RegExp(`^knode-1\\s+Ready\\s.*${NET.replace(/\./g, '\\.')}\\.14\\s+<none>\\s+Linux kernel`, 'm'));
  t.regex(wide, new RegExp(`^node-1\\s+Ready\\s.*${NET.replace(/\./g, '\\.')}\\.11\\s`, 'm'));
  // A kernel node's views are the kernel's own tables.
  t.regex(await nodeCommand(dir, 'knode-1', ['ip', 'route']), /^10\.244\.1\.0\/24 via 10\.244\.1\.0 dev flannel\.1 onlink/m);
  t.regex(await nodeCommand(dir, 'knode-1', ['ip', 'neigh', 'show', 'dev', 'flannel.1']), /PERMANENT/);
  t.regex(await nodeCommand(dir, 'knode-1', ['stats']), /^flannel\.1\s+\d+/m);
  const k1b = await podIp('pod-k1b');
  // trace from an emulated pod to a kernel pod: podlab's hops up to the underlay, and the kernel's answer.
  const tr = await trace(dir, 'pod-2a', k1b, { proto: 'icmp' });
  t.is(tr.result.kind, 'reply');
  t.true(tr.hops.some((h) => h.node === 'node-2' && new RegExp(`${NET.replace(/\./g, '\\.')}\\.14`).test(h.summary)), 'encapsulated towards the kernel node');
  // capture on an emulated node's eth0 sees the VXLAN towards the kernel node.
  const capFile = path.join(os.tmpdir(), `podlab-netns-${process.pid}.pcapng`);
  t.teardown(() => fs.rmSync(capFile, { force: true }));
  const ac = new AbortController();
  const capDone = capture(dir, { node: 'node-2', ifaces: ['eth0'], write: capFile, count: 2, filter: `host ${NET}.14`, signal: ac.signal, log: () => {} });
  let finished = false;
  void capDone.finally(() => (finished = true));
  for (let i = 0; i < 30 && !finished; i++) await lab!.exec('pod-2a', ['ping', '-c', '1', k1b]);
  t.is((await capDone).captured, 2);
  // impair towards the kernel node (the emulated side), then clear.
  await callNode(dir, 'node-2', 'impair.set', { peer: 'knode-1', spec: { blackhole: true } });
  t.regex((await lab!.exec('pod-2a', ['ping', '-c', '1', '-W', '1', k1b])).out, /100% packet loss/);
  await callNode(dir, 'node-2', 'impair.clear', { peer: 'knode-1' });
  t.regex((await lab!.exec('pod-2a', ['ping', '-c', '1', k1b])).out, /0% packet loss/);
  // exec on a kernel pod: real commands, an allow-list, the pod's own view.
  const ipAddr = await lab!.exec('pod-k1a', ['ip', '-4', 'addr', 'show', 'dev', 'eth0']);
  t.regex(ipAddr.out, /inet 10\.244\.4\.2\/24/);
  t.regex((await lab!.exec('pod-k1a', ['ip', 'route'])).out, /^default via 10\.244\.4\.1 dev eth0/m);
  t.is((await lab!.exec('pod-k1a', ['hostname'])).out, 'pod-k1a\n');
  const refused = await lab!.exec('pod-k1a', ['sh', '-c', 'id']);
  t.is(refused.code, 127);
  t.regex(refused.out, /not available in kernel pods/);
  await t.throwsAsync(callNode(dir, 'knode-1', 'capture.list', {}), { message: /kernel node.*tshark -i eth0/ });
});

test.serial('ip route get, ip -d link and ip -j route: an emulated node prints what the kernel node\'s real iproute2 prints', async (t) => {
  if (!need(t)) return;
  const dir = lab!.stateDir;
  const esc = (s: string) => s.replace(/\./g, '\\.');
  const target = await podIp('pod-2a');
  // The same question to both kinds of node; only the addresses that are the node's own differ.
  const get = async (node: string) => (await nodeCommand(dir, node, ['ip', 'route', 'get', target])).split('\n').map((l) => l.trimEnd());
  const shape = (src: string) => [new RegExp(`^${esc(target)} via 10\\.244\\.2\\.0 dev flannel\\.1 src ${esc(src)} uid 0$`), /^ {4}cache$/];
  for (const [node, src] of [['node-1', '10.244.1.0'], ['knode-1', '10.244.4.0']] as const) {
    const lines = await get(node);
    shape(src).forEach((re, i) => t.regex(lines[i], re, `${node}: ${lines.join(' | ')}`));
  }
  // ip -d link show flannel.1: the vxlan attributes, word for word up to the device's own address.
  const vx = async (node: string) => (/^ {4}(vxlan id .*?)$/m.exec(await nodeCommand(dir, node, ['ip', '-d', 'link', 'show', 'flannel.1']))?.[1] ?? '').trimEnd().split(' ');
  const emu = await vx('node-1');
  const kern = await vx('knode-1');
  t.deepEqual(emu.slice(0, 16).map((w, i) => (i === 4 ? 'LOCAL' : w)), kern.slice(0, 16).map((w, i) => (i === 4 ? 'LOCAL' : w)), `${emu.join(' ')}\n${kern.join(' ')}`);
  t.is(emu[4], `${NET}.11`);
  t.is(kern[4], `${NET}.14`);
  // Without -d neither prints the vxlan line.
  t.notRegex(await nodeCommand(dir, 'node-1', ['ip', 'link', 'show', 'flannel.1']), /vxlan id/);
  t.notRegex(await nodeCommand(dir, 'knode-1', ['ip', 'link', 'show', 'flannel.1']), /vxlan id/);
  // ip -j route: the flannel route to a peer has the same JSON object on both.
  type R = { dst: string } & Record<string, unknown>;
  const peerRoute = async (node: string) => (JSON.parse(await nodeCommand(dir, node, ['ip', '-j', 'route'])) as R[]).find((r) => r.dst === '10.244.2.0/24');
  t.deepEqual(await peerRoute('node-1'), await peerRoute('knode-1'));
});

test.serial('pods come and go on the kernel node; a container-style node (podlab agent, --api only) joins and leaves', async (t) => {
  if (!need(t)) return;
  const client = api();
  // A pod bound to the kernel node gets a namespace, an address and Running; deleted, it is gone.
  await client.create('pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'extra', namespace: 'default' }, spec: { nodeName: 'knode-1', containers: [{ name: 'main', image: 'busybox' }] } });
  const extra = await eventually(async () => {
    const p = await client.get<Pod>('pods', 'extra');
    return p?.status?.phase === 'Running' ? p : undefined;
  }, 20_000);
  t.regex(extra.status!.podIP!, /^10\.244\.4\.\d+$/);
  t.true(listNetnsSync().includes(`${KNS}-extra`));
  t.regex((await lab!.exec('pod-3a', ['ping', '-c', '2', '-i', '0.2', extra.status!.podIP!])).out, /0% packet loss/);
  await client.delete('pods', 'extra');
  await eventually(() => !listNetnsSync().includes(`${KNS}-extra`), 20_000);

  // docker-compose's node: `podlab agent --api URL --state-dir DIR --lab-json`, name from the environment
  // (the hostname in a container), IP and underlay from its only interface. Recorded in the lab's
  // lab.json before it exists, so `podlab down` removes it even if this test fails.
  const rec = readLab(lab!.stateDir)!;
  const ns = `${PREFIX}-cnode`;
  rec.netns!.namespaces.push(ns);
  writeLab(rec);
  await addNetns(ns);
  await addVethPair(`${PREFIX}-underlay`, 'v-cnode', ns, 'eth0', 1500);
  await ipIn(`${PREFIX}-underlay`, 'link', 'set', 'v-cnode', 'master', 'podlab0', 'up');
  await ipIn(ns, 'addr', 'add', `${NET}.30/24`, 'dev', 'eth0');
  await ipIn(ns, 'link', 'set', 'eth0', 'up');
  const cdir = path.join(lab!.stateDir, 'cnode'); // inside the lab's state dir: `down` recognises the process
  // As docker-compose mounts one PKI volume into the apiserver and every node container, the
  // container-style node sees the lab's pki/ in its own state dir: it trusts the CA and issues
  // its node token from the shared key; the CLI inside finds the admin token there.
  fs.mkdirSync(cdir, { recursive: true });
  fs.symlinkSync(path.join(lab!.stateDir, 'pki'), path.join(cdir, 'pki'));
  const args = [path.join(ROOT, 'bin/podlab.js'), 'agent', '--api', rec.apiInternalUrl!, '--state-dir', cdir, '--lab-json'];
  const prevName = process.env.PODLAB_NODE_NAME;
  process.env.PODLAB_NODE_NAME = 'cnode-1';
  const p = spawnLogged(lab!.stateDir, 'cnode-1', args, ns);
  if (prevName === undefined) delete process.env.PODLAB_NODE_NAME;
  else process.env.PODLAB_NODE_NAME = prevName;
  rec.procs.push({ role: 'node', name: 'cnode-1', pid: p.pid, args, log: p.log, netns: ns });
  writeLab(rec);
  t.teardown(() => stopProcess(p.pid, lab!.stateDir));
  const ready = await waitForEvent(p.log, 'ready', p.pid, 60_000, p.offset);
  t.is(ready.node, 'cnode-1');
  const cnode = (await client.get<Node>('nodes', 'cnode-1'))!;
  t.is(cnode.metadata.annotations!['flannel.alpha.coreos.com/public-ip'], `${NET}.30`);
  const cidr = cnode.spec!.podCIDR!;
  const net3 = cidr.split('.').slice(0, 3).join('\\.');
  await eventually(() => new RegExp(`^${net3}\\.0/24 via ${net3}\\.0 dev flannel\\.1 onlink`, 'm').test(execFileSync('ip', ['-n', KNS, 'route'], { encoding: 'utf8' })), 20_000);
  await client.create('pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'cpod', namespace: 'default' }, spec: { nodeName: 'cnode-1', containers: [{ name: 'main', image: 'busybox' }] } });
  const cpod = await eventually(async () => {
    const x = await client.get<Pod>('pods', 'cpod');
    return x?.status?.phase === 'Running' ? x : undefined;
  }, 20_000);
  // The CLI as it runs inside such a container: lab.json written by the agent itself.
  let out = '';
  const code = await execInPod(cdir, 'cpod', ['ping', '-c', '2', '-i', '0.2', await podIp('pod-k1b')], { stdout: (s) => (out += s), stderr: (s) => (out += s) });
  t.is(code, 0, out);
  t.regex(out, /2 received, 0% packet loss/);
  t.regex((await lab!.exec('pod-k1b', ['ping', '-c', '2', '-i', '0.2', cpod.status!.podIP!])).out, /2 received, 0% packet loss/);
  // The node leaves: the kernel node drops its route, neighbour and FDB entry.
  await client.delete('pods', 'cpod');
  await stopProcess(p.pid, lab!.stateDir);
  await client.delete('nodes', 'cnode-1');
  // Route first, then FDB and neighbour (the plan's removal order): wait for all three.
  const gone = () => ({
    route: !new RegExp(`^${net3}\\.0/24`, 'm').test(execFileSync('ip', ['-n', KNS, 'route'], { encoding: 'utf8' })),
    neigh: !new RegExp(`^${net3}\\.0 `, 'm').test(execFileSync('ip', ['-n', KNS, 'neigh', 'show', 'dev', 'flannel.1'], { encoding: 'utf8' })),
    fdb: !new RegExp(`dst ${NET.replace(/\./g, '\\.')}\\.30 `).test(execFileSync('bridge', ['-n', KNS, 'fdb', 'show', 'dev', 'flannel.1'], { encoding: 'utf8' })),
  });
  await eventually(() => Object.values(gone()).every(Boolean), 20_000).catch(() => undefined);
  t.deepEqual(gone(), { route: true, neigh: true, fdb: true });
});

test.serial('podlab down stops every process and deletes every namespace and veth it made', async (t) => {
  if (!need(t)) return;
  const rec = readLab(lab!.stateDir)!;
  const pids = rec.procs.map((p) => p.pid);
  await lab!.close();
  lab = undefined;
  t.deepEqual(listNetnsSync().filter((n) => n.startsWith(`${PREFIX}-`)), []);
  for (const pid of pids) t.false(isOurProcess(pid, rec.stateDir), `pid ${pid}`);
  t.deepEqual(rootSnapshot().veths, rootBefore!.veths);
});

test.serial('host-gw, emulated nodes only: routes via the peers on eth0, every pair pings; after a crash, down --force cleans up', async (t) => {
  if (!need(t)) return;
  hg = await startLab('127.0.0.0/24', { mode: 'netns', nodes: 3, podsPerNode: 2, backend: 'host-gw', netnsPrefix: HG_PREFIX, underlayNet: `${HG_NET}.0/24` });
  const route = await nodeCommand(hg.stateDir, 'node-1', ['ip', 'route']);
  t.regex(route, new RegExp(`^10\\.244\\.2\\.0/24 via ${HG_NET.replace(/\./g, '\\.')}\\.12 dev eth0$`, 'm'));
  t.notRegex(route, /flannel\.1/);
  const all = await pods(hg);
  const pairs = all.flatMap((a) => all.filter((b) => b !== a).map((b) => [a, b] as const));
  const results = await Promise.all(pairs.map(([a, b]) => hg!.exec(a.metadata.name, ['ping', '-c', '2', '-i', '0.1', b.status!.podIP!])));
  results.forEach((r, i) => t.regex(r.out, /2 packets transmitted, 2 received, 0% packet loss/, `${pairs[i][0].metadata.name} -> ${pairs[i][1].metadata.name}\n${r.out}`));
  // Crash: every process SIGKILLed; the namespaces stay until `down` (= `down --force`) reads lab.json.
  const rec = readLab(hg.stateDir)!;
  for (const p of rec.procs) process.kill(p.pid, 'SIGKILL');
  await eventually(() => rec.procs.every((p) => !isOurProcess(p.pid, rec.stateDir)), 10_000);
  t.true(listNetnsSync().some((n) => n.startsWith(`${HG_PREFIX}-`)));
  await down(hg.stateDir);
  t.deepEqual(listNetnsSync().filter((n) => n.startsWith(`${HG_PREFIX}-`)), []);
  await hg.close();
  hg = undefined;
});

test.serial('nothing is left: no podlab-* namespace and no veth beyond what was there before', (t) => {
  if (!need(t)) return;
  // Only this file's prefixes: other netns test files run at the same time, each checking its own.
  t.deepEqual(listNetnsSync().filter((n) => ours(n) && !before.includes(n)), []);
  t.deepEqual(listNetnsSync().filter(ours), []);
  t.deepEqual(rootSnapshot().veths, rootBefore!.veths);
});
