/**
 * flannel's udp backend in a real 3-node lab (127.0.173.0/24): flannel0 and
 * the /16 route on every node, every ordered pair pings, `stats` shows
 * flanneld's copies, a trace follows a packet through flanneld's thread on
 * both nodes, and tshark decodes UDP 8285 as the pods' bare IPv4 packets with
 * nothing malformed.
 */
import test from 'ava';
import { labApi } from '../lab/lab.ts';
import type { Pod } from '../control-plane/types.ts';
import { nodeCommand } from '../cli/commands.ts';
import { trace } from '../cli/trace.ts';
import { captureLo, captureNode, tsharkFields } from './helpers/capture.ts';
import { hasTool, requireOrSkip, startLab, type TestLab } from './helpers/lab.ts';

let lab: TestLab;
test.before(async () => {
  lab = await startLab('127.0.173.0/24', { backend: 'udp' });
});
test.after.always(async () => {
  await lab?.close();
});

const pods = async () => (await labApi(lab.rec).list<Pod>('pods', { namespace: 'default' })).items.sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));

test.serial('flannel0 and 10.244.0.0/16 dev flannel0; pods get MTU 1472', async (t) => {
  const route = await nodeCommand(lab.stateDir, 'node-1', ['ip', 'route']);
  t.regex(route, /^10\.244\.0\.0\/16 dev flannel0 proto kernel scope link src 10\.244\.1\.0$/m);
  t.regex(route, /^10\.244\.1\.0\/24 dev cni0 proto kernel scope link src 10\.244\.1\.1$/m);
  t.regex(await nodeCommand(lab.stateDir, 'node-1', ['ip', 'link']), /flannel0: <POINTOPOINT,MULTICAST,NOARP,UP,LOWER_UP> mtu 1472 qdisc fq_codel state UNKNOWN/);
  t.regex((await lab.exec('pod-1a', ['ip', 'link'])).out, /eth0@if\d+: .* mtu 1472 /);
});

test.serial('every ordered pair of pods pings with 0% loss; stats count flanneld\'s copies', async (t) => {
  const all = await pods();
  const pairs = all.flatMap((a) => all.filter((b) => b !== a).map((b) => [a, b] as const));
  const results = await Promise.all(pairs.map(([a, b]) => lab.exec(a.metadata.name, ['ping', '-c', '2', '-i', '0.05', b.status!.podIP!])));
  results.forEach((r, i) => t.regex(r.out, /2 received, 0% packet loss/, `${pairs[i][0].metadata.name} -> ${pairs[i][1].metadata.name}\n${r.out}`));
  const stats = await nodeCommand(lab.stateDir, 'node-1', ['stats']);
  t.regex(stats, /underlay: flanneld over UDP 8285/);
  t.regex(stats, /flanneld thread: id [1-9]\d*, event loop busy \d+ ms, restarted 0 times/);
  const m = /flanneld copies: (\d+) packets read from flannel0 \(kernel -> flanneld\), (\d+) sent to UDP sockets \(flanneld -> kernel\), (\d+) received from UDP sockets \(kernel -> flanneld\), (\d+) written to flannel0/.exec(stats);
  t.truthy(m, stats);
  // node-1's pods pinged the pods of the other two nodes twice each, and were pinged back: every packet crossed both ways.
  t.true(Number(m![1]) >= 8 && Number(m![1]) === Number(m![2]) && Number(m![3]) === Number(m![4]), stats);
});

test.serial('podlab trace follows the packet into flanneld\'s thread and out again on both nodes', async (t) => {
  const dst = (await pods()).find((p) => p.metadata.name === 'pod-2a')!.status!.podIP!;
  const r = await trace(lab.stateDir, 'pod-1a', dst, { proto: 'icmp' });
  t.is(r.result.kind, 'reply');
  t.deepEqual(r.drops, []);
  const flanneld = r.hops.filter((h) => h.point === 'flanneld').map((h) => `${h.leg} ${h.node} ${h.summary.replace(/:.*/, '')}`);
  t.deepEqual(flanneld, [
    'request node-1 read() by flanneld',
    'request node-1 flanneld',
    'request node-2 recvfrom() by flanneld',
    'request node-2 flanneld',
    'reply node-2 read() by flanneld',
    'reply node-2 flanneld',
    'reply node-1 recvfrom() by flanneld',
    'reply node-1 flanneld',
  ], r.hops.map((h) => `${h.leg} ${h.node} ${h.point}: ${h.summary}`).join('\n'));
  t.true(r.hops.some((h) => h.node === 'node-1' && /sendto 127\.0\.173\.12:8285/.test(h.summary)));
  t.true(r.hops.some((h) => h.node === 'node-2' && /write\(\) into flannel0/.test(h.summary)));
});

test.serial('tshark decodes UDP 8285 as the pods\' bare IPv4 packets, nothing malformed', async (t) => {
  if (!requireOrSkip(t, hasTool('tshark'), 'tshark is not installed')) return;
  if (!requireOrSkip(t, process.getuid?.() === 0, 'capturing on lo needs root')) return;
  const dst = (await pods()).find((p) => p.metadata.name === 'pod-2a')!.status!.podIP!;
  const cap = await captureLo('udp port 8285 and host 127.0.173.11', 2, () => lab.exec('pod-1a', ['ping', '-c', '1', dst]));
  t.teardown(cap.cleanup);
  const rows = await tsharkFields(cap.file, ['frame.protocols', 'ip.src', '_ws.malformed'], ['udp.port==8285,ip']);
  t.is(rows.length, 2);
  for (const [protocols, src, malformed] of rows) {
    t.regex(protocols, /^(sll|eth):ethertype:ip:udp:ip:icmp(:data)?$/, protocols);
    t.regex(src, /^127\.0\.173\.1[12],10\.244\.[12]\.\d+$/);
    t.is(malformed, '');
  }
});

test.serial('podlab capture on flannel0 writes raw IPv4, as tcpdump on a TUN device does', async (t) => {
  if (!requireOrSkip(t, hasTool('tshark'), 'tshark is not installed')) return;
  const all = await pods();
  const [src, dst] = ['pod-1a', 'pod-2a'].map((n) => all.find((p) => p.metadata.name === n)!.status!.podIP!);
  const cap = await captureNode(lab.stateDir, 'node-1', 'flannel0', 2, () => lab.exec('pod-1a', ['ping', '-c', '1', dst]));
  t.teardown(cap.cleanup);
  const rows = await tsharkFields(cap.file, ['frame.interface_name', 'frame.protocols', 'ip.src', 'ip.dst', '_ws.malformed']);
  t.deepEqual(rows, [
    ['flannel0', 'raw:ip:icmp:data', src, dst, ''],
    ['flannel0', 'raw:ip:icmp:data', dst, src, ''],
  ]);
});
