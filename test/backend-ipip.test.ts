/**
 * Calico IPIP in a real 3-node lab (127.0.170.0/24): BGP routes through tunl0
 * (`via NODE-IP dev tunl0 proto bird onlink`), pod MTU 1480, every ordered
 * pair pings, a DF ping past the tunnel's MTU gets fragmentation-needed with
 * 1480, and the wire carries IPv4 protocol 4 with the pods' packet inside.
 * An IPPool with ipipMode CrossSubnet turns the routes back to eth0 (the
 * lab's nodes share one subnet).
 */
import test from 'ava';
import { labApi } from '../lab/lab.ts';
import type { Pod } from '../control-plane/types.ts';
import { nodeCommand } from '../cli/commands.ts';
import { trace } from '../cli/trace.ts';
import { captureLo, captureNode, tsharkFields } from './helpers/capture.ts';
import { eventually, hasTool, requireOrSkip, startLab, type TestLab } from './helpers/lab.ts';

let lab: TestLab;
test.before(async () => {
  lab = await startLab('127.0.170.0/24', { backend: 'ipip' });
});
test.after.always(async () => {
  await lab?.close();
});

const pods = async () => (await labApi(lab.rec).list<Pod>('pods', { namespace: 'default' })).items.sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
const ipOf = async (name: string) => (await pods()).find((p) => p.metadata.name === name)!.status!.podIP!;

test.serial('routes go through tunl0 onlink, proto bird; ip link and ip addr read like a Calico node', async (t) => {
  const route = await nodeCommand(lab.stateDir, 'node-1', ['ip', 'route']);
  t.regex(route, /^10\.244\.2\.0\/24 via 127\.0\.170\.12 dev tunl0 proto bird onlink$/m);
  t.regex(route, /^10\.244\.3\.0\/24 via 127\.0\.170\.13 dev tunl0 proto bird onlink$/m);
  const link = await nodeCommand(lab.stateDir, 'node-1', ['ip', 'link', 'show', 'tunl0']);
  t.regex(link, /^\d+: tunl0@NONE: <NOARP,UP,LOWER_UP> mtu 1480 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\n {4}link\/ipip 0\.0\.0\.0 brd 0\.0\.0\.0\n$/);
  t.regex(await nodeCommand(lab.stateDir, 'node-1', ['ip', 'addr', 'show', 'tunl0']), /inet 10\.244\.1\.0\/32 scope global tunl0/);
  t.regex((await lab.exec('pod-1a', ['ip', 'link'])).out, /eth0@if\d+: .* mtu 1480 /);
});

test.serial('every ordered pair of pods pings with 0% loss', async (t) => {
  const all = await pods();
  const pairs = all.flatMap((a) => all.filter((b) => b !== a).map((b) => [a, b] as const));
  const results = await Promise.all(pairs.map(([a, b]) => lab.exec(a.metadata.name, ['ping', '-c', '2', '-i', '0.05', b.status!.podIP!])));
  results.forEach((r, i) => t.regex(r.out, /2 received, 0% packet loss/, `${pairs[i][0].metadata.name} -> ${pairs[i][1].metadata.name}\n${r.out}`));
});

test.serial('a DF ping past the pod MTU is refused with mtu=1480; 1452 bytes of data fit', async (t) => {
  const dst = await ipOf('pod-2a');
  // The pod's own eth0 has the pod MTU: ping refuses locally, as Linux does.
  const local = await lab.exec('pod-1a', ['ping', '-c', '1', '-M', 'do', '-s', '1453', dst]);
  t.regex(local.out, /message too long, mtu=1480/, local.out);
  const fits = await lab.exec('pod-1a', ['ping', '-c', '1', '-M', 'do', '-s', '1452', dst]);
  t.regex(fits.out, /1 received/, fits.out);
});

test.serial('trace: routed into tunl0, encapsulated as protocol 4, decapsulated on the peer', async (t) => {
  const r = await trace(lab.stateDir, 'pod-1a', await ipOf('pod-3a'), { proto: 'icmp' });
  t.is(r.result.kind, 'reply');
  t.true(r.hops.some((h) => h.point === 'routing' && /via 127\.0\.170\.13 dev tunl0 proto bird onlink/.test(h.summary)), JSON.stringify(r.hops.map((h) => h.summary)));
  t.true(r.hops.some((h) => h.point === 'ipip-encap' && /outer IPv4 127\.0\.170\.11 > 127\.0\.170\.13 proto 4/.test(h.summary)));
  t.true(r.hops.some((h) => h.point === 'ipip-decap'));
});

test.serial('the wire carries IPv4 protocol 4 with the pods\' packet inside; tshark finds nothing malformed', async (t) => {
  if (!requireOrSkip(t, hasTool('tshark'), 'tshark is not installed')) return;
  if (!requireOrSkip(t, process.getuid?.() === 0, 'capturing on lo needs root')) return;
  const dst = await ipOf('pod-2a');
  const cap = await captureLo('udp port 8473 and host 127.0.170.11', 2, () => lab.exec('pod-1a', ['ping', '-c', '1', dst]));
  t.teardown(cap.cleanup);
  const rows = await tsharkFields(cap.file, ['frame.protocols', 'ip.src', 'ip.proto', '_ws.expert.severity', '_ws.malformed'], ['udp.port==8473,ip']);
  t.is(rows.length, 2);
  for (const [protocols, src, proto, , malformed] of rows) {
    t.regex(protocols, /^(sll|eth):ethertype:ip:udp:ip:ip:icmp(:data)?$/, protocols);
    t.regex(src, /^127\.0\.170\.\d+,127\.0\.170\.1[12],10\.244\.[12]\.\d+$/);
    t.regex(proto, /^17,4,1$/);
    t.is(malformed, '');
  }
});

test.serial('an IPPool with ipipMode CrossSubnet: same-subnet peers are routed on eth0 without encapsulation', async (t) => {
  const api = labApi(lab.rec);
  await api.create('ippools', { apiVersion: 'projectcalico.org/v3', kind: 'IPPool', metadata: { name: 'default-ipv4-ippool' }, spec: { cidr: '10.244.0.0/16', ipipMode: 'CrossSubnet' } });
  const route = await eventually(async () => {
    const r = await nodeCommand(lab.stateDir, 'node-1', ['ip', 'route']);
    return /^10\.244\.2\.0\/24 via 127\.0\.170\.12 dev eth0 proto bird$/m.test(r) ? r : undefined;
  }, 10_000);
  t.notRegex(route, /tunl0/);
  t.regex((await lab.exec('pod-1a', ['ping', '-c', '1', await ipOf('pod-3a')])).out, /1 received/);
  await api.delete('ippools', 'default-ipv4-ippool');
  await eventually(async () => /dev tunl0 proto bird onlink/.test(await nodeCommand(lab.stateDir, 'node-1', ['ip', 'route'])), 10_000);
  t.pass();
});

test.serial('podlab capture on tunl0 writes raw IPv4 (no link-layer header), as tcpdump on a Calico node does', async (t) => {
  if (!requireOrSkip(t, hasTool('tshark'), 'tshark is not installed')) return;
  const dst = await ipOf('pod-2a');
  const cap = await captureNode(lab.stateDir, 'node-1', 'tunl0', 2, () => lab.exec('pod-1a', ['ping', '-c', '1', dst]));
  t.teardown(cap.cleanup);
  const rows = await tsharkFields(cap.file, ['frame.interface_name', 'frame.protocols', 'ip.src', 'ip.dst', 'ip.proto', '_ws.malformed']);
  t.is(rows.length, 2, JSON.stringify(rows));
  const src = await ipOf('pod-1a');
  t.deepEqual(rows.map((r) => r.slice(0, 5)), [
    ['tunl0', 'raw:ip:icmp:data', src, dst, '1'],
    ['tunl0', 'raw:ip:icmp:data', dst, src, '1'],
  ]);
  t.true(rows.every((r) => r[5] === ''), 'nothing malformed');
});
