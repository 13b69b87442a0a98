/**
 * End to end: a real 3-node x 2-pod lab (an apiserver and three node-agent
 * processes on 127.0.71.0/24). Every ordered pair of pods pings with 0% loss;
 * tshark on lo sees the VXLAN datagrams with VNI 1, node IPs outside and pod
 * IPs inside; garbage sent to a node's :8472 is counted and dropped while pings
 * keep working; a killed agent comes back with the same podCIDR, VtepMAC and
 * pod IPs; an apiserver restart loses nothing; down leaves nothing running.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import path from 'node:path';
import type { FlannelVxlanBackendData } from '../control-plane/annotations.ts';
import type { List, Node, Pod } from '../control-plane/types.ts';
import { callNode, nodeCommand } from '../cli/commands.ts';
import { down, killProcess, restartProcess, waitPodsRunning, labApi } from '../lab/lab.ts';
import { isOurProcess, readLab } from '../lab/state.ts';
import type { PeerPlanCounts } from '../node-agent/node-core.ts';
import { captureLo, tsharkFields } from './helpers/capture.ts';
import { eventually, hasTool, requireOrSkip, startLab, type TestLab } from './helpers/lab.ts';

const NET = '127.0.71.0/24';
let lab: TestLab;

test.before(async () => {
  // As a user's shell may have it: the lab's processes must not pay for reading it (lab/launch.ts, labProcessEnv).
  process.env.NODE_EXTRA_CA_CERTS = '/etc/ssl/certs/ca-certificates.crt';
  lab = await startLab(NET);
});

test.after.always(async () => {
  await lab?.close();
});

async function podsByNode(): Promise<Pod[]> {
  const api = labApi(lab.rec);
  return (await api.list<Pod>('pods', { namespace: 'default' })).items.sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
}

test.serial('nodes get podCIDRs and Flannel annotations; pods get IPs from their node', async (t) => {
  const api = labApi(lab.rec);
  const nodes = (await api.list<Node>('nodes')).items.sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  t.deepEqual(nodes.map((n) => n.spec?.podCIDR), ['10.244.1.0/24', '10.244.2.0/24', '10.244.3.0/24']);
  for (const [i, n] of nodes.entries()) {
    t.is(n.status?.addresses?.find((a) => a.type === 'InternalIP')?.address, `127.0.71.${11 + i}`);
    t.is(n.metadata.annotations?.['flannel.alpha.coreos.com/public-ip'], `127.0.71.${11 + i}`);
    const data = JSON.parse(n.metadata.annotations?.['flannel.alpha.coreos.com/backend-data'] ?? '{}') as FlannelVxlanBackendData;
    t.is(data.VNI, 1);
    t.regex(data.VtepMAC, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    t.true(n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
  }
  const pods = await podsByNode();
  t.is(pods.length, 6);
  for (const p of pods) {
    const n = Number(p.spec!.nodeName!.split('-')[1]);
    t.regex(p.status!.podIP!, new RegExp(`^10\\.244\\.${n}\\.\\d+$`));
    t.not(p.status!.podIP, `10.244.${n}.1`, '.1 is the cni0 gateway');
    t.is(p.status!.hostIP, `127.0.71.${10 + n}`);
    t.is(p.status!.phase, 'Running');
  }
});

test.serial("the lab's processes run without the user's NODE_EXTRA_CA_CERTS or any root certificate, with the rest of the environment", (t) => {
  const env = (pid: number) => fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
  for (const p of lab.rec.procs) {
    const vars = env(p.pid);
    t.false(vars.some((v) => v.startsWith('NODE_EXTRA_CA_CERTS=')), `${p.name}`);
    t.true(vars.includes(`PATH=${process.env.PATH}`), `${p.name}`);
    t.true(vars.includes('SSL_CERT_FILE=/dev/null'), `${p.name}: no root certificates to parse`);
  }
  for (const p of lab.rec.procs) t.true(fs.readFileSync(`/proc/${p.pid}/cmdline`, 'utf8').split('\0').includes('--use-openssl-ca'), p.name);
  t.true(env(lab.rec.procs.find((p) => p.role === 'node')!.pid).some((v) => v.startsWith('MALLOC_TRIM_THRESHOLD_=')), "the agents' own variables");
});

test.serial("an agent writes its Node twice on the way up: the backend's annotations, then Ready with its addresses", async (t) => {
  // Every Node write is an event on every agent's Node watch: the node's own history, from the lab's first
  // resourceVersion, up to its Ready (later tests change node-3; nothing had yet).
  const history: { type: string; node: Node }[] = [];
  for await (const ev of labApi(lab.rec).watch<Node>('nodes', { resourceVersion: '1', fieldSelector: 'metadata.name=node-3', timeoutSeconds: 1 })) {
    history.push({ type: ev.type, node: ev.object });
    if (ev.object.status?.conditions?.some((c) => c.type === 'Ready')) break;
  }
  t.deepEqual(history.map((e) => e.type), ['ADDED', 'MODIFIED', 'MODIFIED'], 'made by up, annotated, Ready');
  const [made, annotated, ready] = history.map((e) => e.node);
  t.is(made.metadata.annotations?.['flannel.alpha.coreos.com/public-ip'], undefined);
  t.is(annotated.metadata.annotations?.['flannel.alpha.coreos.com/public-ip'], '127.0.71.13');
  t.is(annotated.status?.addresses, undefined, 'the addresses come with Ready, not as a write of their own');
  t.deepEqual(ready.status?.addresses, [
    { type: 'InternalIP', address: '127.0.71.13' },
    { type: 'Hostname', address: 'node-3' },
  ]);
});

test.serial('every ordered pair of pods pings with 0% loss', async (t) => {
  const pods = await podsByNode();
  const pairs = pods.flatMap((a) => pods.filter((b) => b !== a).map((b) => [a, b] as const));
  t.is(pairs.length, 30);
  const results = await Promise.all(pairs.map(([a, b]) => lab.exec(a.metadata.name, ['ping', '-c', '3', '-i', '0.05', b.status!.podIP!])));
  results.forEach((r, i) => {
    const [a, b] = pairs[i];
    t.is(r.code, 0, `${a.metadata.name} -> ${b.metadata.name}\n${r.out}`);
    t.regex(r.out, /3 packets transmitted, 3 received, 0% packet loss/, `${a.metadata.name} -> ${b.metadata.name}`);
    const ttl = a.spec!.nodeName === b.spec!.nodeName ? 64 : 62;
    t.regex(r.out, new RegExp(`ttl=${ttl} `), `${a.metadata.name} -> ${b.metadata.name}: expected ttl ${ttl}`);
  });
});

test.serial('node views read like iproute2 on a Flannel node', async (t) => {
  const route = await nodeCommand(lab.stateDir, 'node-1', ['ip', 'route']);
  t.regex(route, /^10\.244\.1\.0\/24 dev cni0 proto kernel scope link src 10\.244\.1\.1$/m);
  t.regex(route, /^10\.244\.2\.0\/24 via 10\.244\.2\.0 dev flannel\.1 onlink$/m);
  t.regex(route, /^10\.244\.3\.0\/24 via 10\.244\.3\.0 dev flannel\.1 onlink$/m);
  const api = labApi(lab.rec);
  const n2 = (await api.get<Node>('nodes', 'node-2'))!;
  const mac2 = (JSON.parse(n2.metadata.annotations!['flannel.alpha.coreos.com/backend-data']) as FlannelVxlanBackendData).VtepMAC;
  const neigh = await nodeCommand(lab.stateDir, 'node-1', ['ip', 'neigh', 'show', 'dev', 'flannel.1']);
  t.regex(neigh, new RegExp(`^10\\.244\\.2\\.0 dev flannel\\.1 lladdr ${mac2} PERMANENT$`, 'm'));
  const fdb = await nodeCommand(lab.stateDir, 'node-1', ['bridge', 'fdb', 'show', 'dev', 'flannel.1']);
  t.regex(fdb, new RegExp(`^${mac2} dev flannel\\.1 dst 127\\.0\\.71\\.12 self permanent$`, 'm'));
  const link = await nodeCommand(lab.stateDir, 'node-1', ['ip', 'link']);
  t.regex(link, /flannel\.1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450/);
  // As iproute2: the vxlan attributes only with -d.
  t.notRegex(link, /vxlan id/);
  t.regex(await nodeCommand(lab.stateDir, 'node-1', ['ip', '-d', 'link', 'show', 'flannel.1']), /^ {4}vxlan id 1 local 127\.0\.71\.11 dev eth0 srcport 0 0 dstport 8472 nolearning/m);
  t.regex(link, /cni0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450/);
  t.regex(link, /veth[0-9a-f]{8}@if\d+: .* master cni0/);
});

test.serial("a peer's changed VtepMAC is reprogrammed; a Node update that leaves its lease alone plans nothing", async (t) => {
  const api = labApi(lab.rec);
  const ann = 'flannel.alpha.coreos.com/backend-data';
  const original = (await api.get<Node>('nodes', 'node-3'))!.metadata.annotations![ann];
  const mac = (JSON.parse(original) as FlannelVxlanBackendData).VtepMAC;
  const moved = '02:42:00:00:00:33';
  const plans = async () => (await callNode<{ peerPlans: PeerPlanCounts }>(lab.stateDir, 'node-1', 'stats', {})).peerPlans;
  const fdb = () => nodeCommand(lab.stateDir, 'node-1', ['bridge', 'fdb', 'show', 'dev', 'flannel.1']);
  const setMac = (m: string) => api.patch<Node>('nodes', 'node-3', { metadata: { annotations: { [ann]: JSON.stringify({ VNI: 1, VtepMAC: m }) } } });
  t.teardown(async () => {
    await setMac(mac);
  });
  await setMac(moved);
  await eventually(async () => (await fdb()).includes(`${moved} dev flannel.1 dst 127.0.71.13`), 10_000);
  t.notRegex(await fdb(), new RegExp(`^${mac} `, 'm'));
  t.regex(await nodeCommand(lab.stateDir, 'node-1', ['ip', 'neigh', 'show', 'dev', 'flannel.1']), new RegExp(`^10\\.244\\.3\\.0 dev flannel\\.1 lladdr ${moved} PERMANENT$`, 'm'));
  // A label and a status change: node-1 sees both, and makes no plan of them.
  const before = await plans();
  await api.patch<Node>('nodes', 'node-3', { metadata: { labels: { 'podlab.test/lease-probe': '1' } } });
  await api.patchStatus<Node>('nodes', 'node-3', { status: { conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'probe' }] } });
  // The back-to-back MAC change proves node-1 has seen the two updates before it: its plan comes after them, alone.
  await setMac(mac);
  await eventually(async () => (await fdb()).includes(`${mac} dev flannel.1 dst 127.0.71.13`), 10_000);
  const after = await eventually(async () => {
    const p = await plans();
    return p.applied === before.applied + 1 && p;
  }, 5_000);
  t.is(after.plans, before.plans + 1, 'one plan: the VtepMAC change back; none for the label or the status');
  t.regex(await nodeCommand(lab.stateDir, 'node-1', ['stats']), new RegExp(`^peer plans: ${after.plans} computed from Node events, ${after.applied} changed routes, neighbours or FDB entries$`, 'm'));
  t.regex(await nodeCommand(lab.stateDir, 'node-1', ['stats']), /^flow cache: \d+ entries, \d+ hits, \d+ misses, \d+ recorded, \d+ refused; generation \d+, moved by /m);
});

/** Wireshark's expert severity PI_CHAT (epan/proto.h). */
const PI_CHAT = 0x00200000;

test.serial('tshark on lo sees VXLAN with VNI 1, node IPs outside and pod IPs inside', async (t) => {
  const root = process.getuid?.() === 0;
  if (!requireOrSkip(t, hasTool('tshark'), 'tshark is not installed')) return;
  if (!requireOrSkip(t, root, 'capturing on lo needs root (or dumpcap capabilities)')) return;
  const pods = await podsByNode();
  const a = pods.find((p) => p.spec!.nodeName === 'node-1')!;
  const c = pods.find((p) => p.spec!.nodeName === 'node-2')!;
  const cap = await captureLo('udp port 8472 and host 127.0.71.11 and host 127.0.71.12', 4, () => lab.exec(a.metadata.name, ['ping', '-c', '1', c.status!.podIP!]));
  t.teardown(cap.cleanup);
  const rows = await tsharkFields(cap.file, ['ip.src', 'ip.dst', 'udp.dstport', 'vxlan.flags', 'vxlan.vni', 'icmp.type', '_ws.expert.severity', '_ws.malformed', '_ws.expert.message'], ['udp.port==8472,vxlan']);
  const fields = rows.map((r) => r.join('|')).join('\n');
  const lines = fields.trim().split('\n');
  t.is(lines.length, 4, fields);
  for (const line of lines) {
    const [src, dst, dport, flags, vni, icmpType, expert, malformed, ...message] = line.split('|');
    const [outerSrc, innerSrc] = src.split(',');
    const [outerDst, innerDst] = dst.split(',');
    t.true([outerSrc, outerDst].every((x) => x === '127.0.71.11' || x === '127.0.71.12'), line);
    t.is(dport.split(',')[0] === '8472' || dport.split(',')[1] === '8472', true, line);
    t.is(vni, '1', line);
    t.is(Number(flags), 0x0800, `${line}: Wireshark's 16-bit VXLAN flags field, I bit set`);
    t.true([innerSrc, innerDst].includes(a.status!.podIP!) && [innerSrc, innerDst].includes(c.status!.podIP!), line);
    t.true(icmpType === '8' || icmpType === '0', line);
    // One chat Wireshark adds by port number alone: "Possible traceroute" when a UDP port falls in 33435-33464,
    // where the outer source port, hashed from the inner flow as the kernel's VXLAN does, lands for about 1 datagram in 940.
    const traceroute = expert === String(PI_CHAT) && /^Possible traceroute: hop #\d+, attempt #\d+$/.test(message.join('|'));
    t.true(expert === '' || traceroute, `expert info in: ${line}`);
    t.is(malformed, '', line);
  }
});

test.serial('a real kubectl reads the lab through the kubeconfig podlab writes', async (t) => {
  if (!requireOrSkip(t, hasTool('kubectl'), 'kubectl is not installed')) return;
  const kubectl = (args: string[]) =>
    new Promise<string>((resolve, reject) =>
      execFile('kubectl', args, { env: { ...process.env, KUBECONFIG: path.join(lab.stateDir, 'kubeconfig') }, timeout: 30_000 }, (e, out, err) => (e ? reject(new Error(err || e.message)) : resolve(out))),
    );
  const pods = await kubectl(['get', 'pods', '-o', 'wide']);
  t.regex(pods, /^pod-1a\s+1\/1\s+Running\s+0\s+\S+\s+10\.244\.1\.\d+\s+node-1/m);
  const nodes = JSON.parse(await kubectl(['get', 'nodes', '-o', 'json'])) as List<Node>;
  t.deepEqual(nodes.items.map((n) => n.spec?.podCIDR).sort(), ['10.244.1.0/24', '10.244.2.0/24', '10.244.3.0/24']);
});

test.serial('random datagrams to :8472 are counted and dropped; pings keep working', async (t) => {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.71.200', () => r()));
  t.teardown(() => sock.close());
  let seed = 99;
  const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 0xff;
  for (let i = 0; i < 300; i++) {
    const b = Buffer.alloc(1 + (rand() % 120));
    for (let j = 0; j < b.length; j++) b[j] = rand();
    b[0] &= 0xf7; // never the I flag: all of them are malformed VXLAN
    await new Promise<void>((r) => sock.send(b, 8472, '127.0.71.12', () => r()));
    // Paced: a burst of 300 can overflow the agent's socket buffer on a loaded machine, and the kernel's
    // drops are not the agent's to count.
    if (i % 20 === 19) await new Promise((r) => setTimeout(r, 5));
  }
  const stats = await eventually(async () => {
    const s = await callNode<{ interfaces: Record<string, { drops: Record<string, number> }> }>(lab.stateDir, 'node-2', 'stats', {});
    const dropped = Object.entries(s.interfaces.eth0.drops).filter(([k]) => k.startsWith('malformed-vxlan')).reduce((n, [, v]) => n + v, 0);
    return dropped >= 300 ? dropped : undefined;
  });
  t.is(stats, 300);
  const pods = await podsByNode();
  const r = await lab.exec('pod-1a', ['ping', '-c', '3', '-i', '0.05', pods.find((p) => p.metadata.name === 'pod-2a')!.status!.podIP!]);
  t.regex(r.out, /0% packet loss/);
});

test.serial('impairment hook: 100% loss towards a peer, then cleared', async (t) => {
  const pods = await podsByNode();
  const dst = pods.find((p) => p.metadata.name === 'pod-2a')!.status!.podIP!;
  await callNode(lab.stateDir, 'node-1', 'impair.set', { peer: 'node-2', spec: { loss: 1 } });
  const lost = await lab.exec('pod-1a', ['ping', '-c', '2', '-i', '0.05', '-W', '1', dst]);
  t.is(lost.code, 1);
  t.regex(lost.out, /2 packets transmitted, 0 received, 100% packet loss/);
  // node-3 is not impaired.
  const other = await lab.exec('pod-1a', ['ping', '-c', '1', pods.find((p) => p.metadata.name === 'pod-3a')!.status!.podIP!]);
  t.is(other.code, 0);
  await callNode(lab.stateDir, 'node-1', 'impair.clear', { peer: 'node-2' });
  t.is((await lab.exec('pod-1a', ['ping', '-c', '2', '-i', '0.05', dst])).code, 0);
});

test.serial('a killed agent restarts with the same podCIDR, VtepMAC and pod IPs; peers keep their entries', async (t) => {
  const api = labApi(lab.rec);
  const before = (await api.get<Node>('nodes', 'node-2'))!;
  const podsBefore = await podsByNode();
  const fdbBefore = await nodeCommand(lab.stateDir, 'node-1', ['bridge', 'fdb', 'show', 'dev', 'flannel.1']);
  await restartProcess(lab.stateDir, 'node-2', { kill: true });
  const after = (await api.get<Node>('nodes', 'node-2'))!;
  t.is(after.spec?.podCIDR, before.spec?.podCIDR);
  t.is(after.metadata.annotations?.['flannel.alpha.coreos.com/backend-data'], before.metadata.annotations?.['flannel.alpha.coreos.com/backend-data']);
  const podsAfter = await podsByNode();
  t.deepEqual(podsAfter.map((p) => [p.metadata.name, p.status?.podIP]), podsBefore.map((p) => [p.metadata.name, p.status?.podIP]));
  t.is(await nodeCommand(lab.stateDir, 'node-1', ['bridge', 'fdb', 'show', 'dev', 'flannel.1']), fdbBefore);
  const to = podsAfter.find((p) => p.metadata.name === 'pod-2b')!.status!.podIP!;
  const r = await lab.exec('pod-1a', ['ping', '-c', '2', '-i', '0.05', to]);
  t.is(r.code, 0, r.out);
  const back = await lab.exec('pod-2b', ['ping', '-c', '2', '-i', '0.05', podsAfter.find((p) => p.metadata.name === 'pod-3b')!.status!.podIP!]);
  t.is(back.code, 0, back.out);
});

test.serial('apiserver restart: data plane keeps forwarding, agents resync and see new pods', async (t) => {
  const pods = await podsByNode();
  await killProcess(lab.stateDir, 'apiserver', { kill: true });
  // With the apiserver down, pods still talk: the data plane does not depend on it.
  const during = await lab.exec('pod-1a', ['ping', '-c', '2', '-i', '0.05', pods.find((p) => p.metadata.name === 'pod-3a')!.status!.podIP!]);
  t.is(during.code, 0, during.out);
  await restartProcess(lab.stateDir, 'apiserver');
  const api = labApi(lab.rec);
  t.deepEqual((await podsByNode()).map((p) => p.metadata.uid), pods.map((p) => p.metadata.uid));
  await api.create('pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'late', namespace: 'default' }, spec: { nodeName: 'node-3', containers: [{ name: 'c', image: 'busybox' }] } }, 'default');
  const all = await waitPodsRunning(api, 20_000);
  const late = all.find((p) => p.metadata.name === 'late')!;
  t.regex(late.status!.podIP!, /^10\.244\.3\.\d+$/);
  t.false(pods.some((p) => p.status!.podIP === late.status!.podIP), 'no address handed out twice');
  const r = await lab.exec('pod-1b', ['ping', '-c', '2', '-i', '0.05', late.status!.podIP!]);
  t.is(r.code, 0, r.out);
});

test.serial('deleting a Node removes its route, neighbour and FDB entry on every peer', async (t) => {
  const api = labApi(lab.rec);
  await killProcess(lab.stateDir, 'node-3', { kill: true });
  await api.delete('nodes', 'node-3');
  // Every peer reacts to the watch event on its own: wait for both before looking at their tables.
  await eventually(async () => !(await nodeCommand(lab.stateDir, 'node-1', ['ip', 'route'])).includes('10.244.3.0/24'));
  await eventually(async () => !/10\.244\.3\.0 /.test(await nodeCommand(lab.stateDir, 'node-2', ['ip', 'neigh'])));
  t.notRegex(await nodeCommand(lab.stateDir, 'node-2', ['ip', 'neigh']), /10\.244\.3\.0 /);
  t.is((await nodeCommand(lab.stateDir, 'node-2', ['bridge', 'fdb', 'show', 'dev', 'flannel.1'])).trim().split('\n').length, 1);
});

test.serial('down stops every process and leaves no socket or lock; a second down is harmless', async (t) => {
  const rec = readLab(lab.stateDir)!;
  const pids = rec.procs.map((p) => p.pid);
  const r = await down(lab.stateDir);
  t.true(r.stopped >= 3);
  for (const pid of pids) t.false(isOurProcess(pid, lab.stateDir), `pid ${pid} still running`);
  t.false(fs.existsSync(path.join(lab.stateDir, 'lab.json')));
  t.false(fs.existsSync(path.join(lab.stateDir, 'nodes')));
  t.deepEqual((await down(lab.stateDir)).stopped, 0);
});
