/**
 * Flannel host-gw in a real 3-node lab (127.0.76.0/24): no flannel.1, routes
 * `<podCIDR> via <node IP> dev eth0`, pod MTU 1500, every pair pings, and the
 * underlay carries bare IPv4 packets with pod addresses (no VXLAN header).
 */
import { labApi } from '../lab/lab.ts';
import test from 'ava';
import type { Pod } from '../control-plane/types.ts';
import { nodeCommand } from '../cli/commands.ts';
import { trace } from '../cli/trace.ts';
import { captureLo, tsharkFields } from './helpers/capture.ts';
import { hasTool, requireOrSkip, startLab, type TestLab } from './helpers/lab.ts';

let lab: TestLab;
test.before(async () => {
  lab = await startLab('127.0.76.0/24', { backend: 'host-gw' });
});
test.after.always(async () => {
  await lab?.close();
});

const pods = async () => (await labApi(lab.rec).list<Pod>('pods', { namespace: 'default' })).items.sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));

test.serial('routes point at the peer nodes on eth0; no flannel.1; pods get MTU 1500', async (t) => {
  const route = await nodeCommand(lab.stateDir, 'node-1', ['ip', 'route']);
  t.regex(route, /^10\.244\.2\.0\/24 via 127\.0\.76\.12 dev eth0$/m);
  t.regex(route, /^10\.244\.3\.0\/24 via 127\.0\.76\.13 dev eth0$/m);
  t.notRegex(route, /flannel\.1/);
  t.notRegex(await nodeCommand(lab.stateDir, 'node-1', ['ip', 'link']), /flannel\.1/);
  t.regex((await lab.exec('pod-1a', ['ip', 'link'])).out, /eth0@if\d+: .* mtu 1500 /);
});

test.serial('every ordered pair of pods pings with 0% loss', async (t) => {
  const all = await pods();
  const pairs = all.flatMap((a) => all.filter((b) => b !== a).map((b) => [a, b] as const));
  const results = await Promise.all(pairs.map(([a, b]) => lab.exec(a.metadata.name, ['ping', '-c', '2', '-i', '0.05', b.status!.podIP!])));
  results.forEach((r, i) => t.regex(r.out, /2 received, 0% packet loss/, `${pairs[i][0].metadata.name} -> ${pairs[i][1].metadata.name}\n${r.out}`));
});

test.serial('trace: routed to the peer node and sent as a bare IPv4 packet', async (t) => {
  const all = await pods();
  const r = await trace(lab.stateDir, 'pod-1a', all.find((p) => p.metadata.name === 'pod-3a')!.status!.podIP!, { proto: 'icmp' });
  t.is(r.result.kind, 'reply');
  t.true(r.hops.some((h) => h.point === 'routing' && /via 127\.0\.76\.13 dev eth0/.test(h.summary)));
  t.true(r.hops.some((h) => h.point === 'underlay' && /no encapsulation/.test(h.summary)));
  t.false(r.hops.some((h) => h.point.startsWith('vxlan')));
});

test.serial('the underlay carries the pods\' own packets, no VXLAN header', async (t) => {
  if (!requireOrSkip(t, hasTool('tshark'), 'tshark is not installed')) return;
  if (!requireOrSkip(t, process.getuid?.() === 0, 'capturing on lo needs root')) return;
  const dst = (await pods()).find((p) => p.metadata.name === 'pod-2a')!.status!.podIP!;
  const cap = await captureLo('udp port 8473 and host 127.0.76.11', 2, () => lab.exec('pod-1a', ['ping', '-c', '1', dst]));
  t.teardown(cap.cleanup);
  const rows = await tsharkFields(cap.file, ['frame.protocols', 'ip.src', 'ip.dst', '_ws.expert.severity'], ['udp.port==8473,ip']);
  t.is(rows.length, 2);
  for (const [protocols, src, dst2] of rows) {
    t.regex(protocols, /^(sll|eth):ethertype:ip:udp:ip:icmp/, protocols);
    t.notRegex(protocols, /vxlan/);
    t.regex(src, /^127\.0\.76\.1[12],10\.244\.[12]\.\d+$/);
    t.regex(dst2, /^127\.0\.76\.1[12],10\.244\.[12]\.\d+$/);
  }
});
