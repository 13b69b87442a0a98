/**
 * A fragment flood against a real node agent (127.0.140.0/24): 15,000 VXLAN
 * datagrams of about 64 KB, each carrying one 8-byte IPv4 fragment addressed
 * to the node itself, every one a new datagram to reassemble. Reassembly keeps
 * only the 8 bytes (never the datagram they came in) within its 4 MiB budget,
 * so the agent's memory barely moves; the drops are counted by reason, and the
 * node keeps forwarding. Unit cases of the bounded reassembler come first.
 */
import test from 'ava';
import dgram from 'node:dgram';
import { ManualClock , MANUAL_WALL_START_MS } from '../common/clock.ts';
import { labApi } from '../lab/lab.ts';
import type { Node } from '../control-plane/types.ts';
import { callNode } from '../cli/commands.ts';
import { serializeEthernet } from '../packet/ethernet.ts';
import { Reassembler, fragmentIpv4, serializeIpv4, type Ipv4Repr } from '../packet/ipv4.ts';
import { serializeVxlan } from '../packet/vxlan.ts';
import { IpStack } from '../netstack/ipv4/ip-stack.ts';
import { NetDevice } from '../netstack/link/netdev.ts';
import { parseEthernet } from '../packet/ethernet.ts';
import { parseIpv4 } from '../packet/ipv4.ts';
import { parseIcmp } from '../packet/icmp.ts';
import { isWireError } from '../packet/errors.ts';
import { eventually, startLab, type TestLab } from './helpers/lab.ts';

const NET = '127.0.140';

function fragment(id: number, src = '10.244.2.9', dst = '10.244.1.0', size = 8): Ipv4Repr {
  // A first fragment of a datagram that never completes, sliced out of a big buffer as it arrives.
  const big = Buffer.alloc(65_000, id & 0xff);
  return { src, dst, protocol: 17, ttl: 64, id: id & 0xffff, dontFragment: false, moreFragments: true, fragmentOffset: 0, dscp: 0, ecn: 0, payload: big.subarray(0, size) };
}

test('bounded reassembly: 15,000 one-fragment datagrams hold at most 4 MiB; the oldest go first, counted', (t) => {
  const r = new Reassembler({ maxDatagrams: 100_000 });
  for (let i = 0; i < 15_000; i++) r.push(fragment(i, `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, '10.244.1.0', 1000), i);
  t.true(r.bytes <= r.highThresholdBytes, `${r.bytes} bytes held`);
  t.true(r.size < 15_000 && r.size > 1000, `${r.size} datagrams held`);
  t.true((r.drops.get('memory') ?? 0) > 0);
  t.is((r.drops.get('memory') ?? 0) + r.size, 15_000, 'every fragment is either held or counted as dropped');
});

test('bounded reassembly: more than maxFragments pieces of one datagram discard it', (t) => {
  const big: Ipv4Repr = { ...fragment(1), moreFragments: false, payload: Buffer.alloc(4000) };
  const pieces = fragmentIpv4(big, 68).slice(0, -1); // never the last piece: it cannot complete
  t.true(pieces.length > 64);
  const r = new Reassembler();
  for (const p of pieces) r.push(p, 0);
  t.is(r.drops.get('too-many-fragments'), 65);
  t.true(r.size <= 1);
});

test('reassembly expires on a timer and the node answers ICMP time exceeded (reassembly), code 1', (t) => {
  const clock = new ManualClock(MANUAL_WALL_START_MS);
  const stack = new IpStack('n', { clock, forwarding: false });
  const dev = new NetDevice('eth0', 'ether', '02:00:00:00:00:01', 1500);
  const sent: Buffer[] = [];
  dev.connect((f) => sent.push(f));
  stack.addInterface(dev, { arp: false });
  stack.addAddress('eth0', '10.244.1.2', 24);
  stack.neigh.setPermanent('eth0', '10.244.1.9', '02:00:00:00:00:09');
  const frag = { ...fragment(7, '10.244.1.9', '10.244.1.2'), payload: Buffer.alloc(16, 1) };
  dev.receive(serializeEthernet({ dst: dev.mac, src: '02:00:00:00:00:09', etherType: 0x0800, payload: serializeIpv4(frag) }));
  t.is(sent.length, 0);
  clock.advance(29_999);
  t.is(sent.length, 0, 'not before ipfrag_time');
  clock.advance(1); // no other fragment arrives: the timer alone expires it
  t.is(sent.length, 1);
  const eth = parseEthernet(sent[0]);
  if (isWireError(eth)) return t.fail(eth.message);
  const ip = parseIpv4(eth.payload);
  if (isWireError(ip)) return t.fail(ip.message);
  t.like(ip, { src: '10.244.1.2', dst: '10.244.1.9', protocol: 1 });
  t.like(parseIcmp(ip.payload), { kind: 'time-exceeded', code: 1 });
  t.is(stack.counters.drops.get('reassembly-timeout'), 1);
});

let lab: TestLab;
test.before(async () => {
  lab = await startLab(`${NET}.0/24`, { nodes: 2, podsPerNode: 1 });
});
test.after.always(async () => {
  await lab?.close();
});

test.serial('a real agent under a 15,000-datagram fragment flood: it holds less than 30 MB more after a full GC, drops counted, pods still ping', async (t) => {
  const node1 = (await labApi(lab.rec).get<Node>('nodes', 'node-1'))!;
  const vtepMac = (JSON.parse(node1.metadata.annotations!['flannel.alpha.coreos.com/backend-data']) as { VtepMAC: string }).VtepMAC;
  const pid = lab.rec.procs.find((p) => p.name === 'node-1')!.pid;
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, `${NET}.99`, () => r()));
  t.teardown(() => sock.close());
  // Inner frames padded to ~64 KB after the 8-byte fragment: the padding is what a careless reassembler keeps.
  const pad = Buffer.alloc(64_000);
  type Stats = { ip: { drops: Record<string, number> }; interfaces: Record<string, { rxPackets: number }> };
  const memory = () => callNode<NodeJS.MemoryUsage>(lab.stateDir, 'node-1', 'memory', { gc: true });
  const stats = () => callNode<Stats>(lab.stateDir, 'node-1', 'stats', {});
  const flood = async (frame: (i: number) => Buffer) => {
    for (let i = 0; i < 15_000; i++) {
      await new Promise<void>((r) => sock.send(serializeVxlan({ vni: 1, payload: frame(i) }), 8472, `${NET}.11`, () => r()));
      // A moment now and then for the agent to read: the flood is about what it holds, not what the socket drops.
      if (i % 10 === 9) await new Promise((r) => setTimeout(r, 3));
    }
  };
  // The flood is read through once flannel.1's receive count stops moving.
  const settle = async (rxBase: number) => {
    let last = -1;
    return eventually(async () => {
      const s = await stats();
      const rx = s.interfaces['flannel.1'].rxPackets - rxBase;
      if (rx !== last) {
        last = rx;
        return undefined;
      }
      return { s, rx };
    }, 30_000, 500);
  };
  // A warm-up flood of the same 64 KB datagrams that hold nothing (an EtherType no stack takes): receiving them grows
  // the heap by whatever garbage they leave, which depends on the machine's load, before the measurement starts. The
  // fragment flood after it shows what reassembly keeps: at most 4 MiB when careful, 1,024 x 64 KB = 64 MB when it
  // keeps the datagrams the fragments came in.
  const warm = await settle(0).then(async () => {
    const rx0 = (await stats()).interfaces['flannel.1'].rxPackets;
    await flood(() => serializeEthernet({ dst: vtepMac, src: '02:00:00:00:99:99', etherType: 0x88b5, payload: pad }));
    return settle(rx0);
  });
  t.log(`warm-up: ${warm.rx} of 15,000 datagrams reached flannel.1`);
  const before = await memory();
  const rxBefore = warm.s.interfaces['flannel.1'].rxPackets;
  await flood((i) => serializeEthernet({ dst: vtepMac, src: '02:00:00:00:99:99', etherType: 0x0800, payload: Buffer.concat([serializeIpv4(fragment(i, `10.244.${2 + ((i >> 16) & 1)}.${(i >> 8) & 255}`, '10.244.1.0')), pad]) }));
  // Every fragment that reached flannel.1 is either held (at most 1,024 datagrams) or dropped and counted.
  const settled = await settle(rxBefore);
  const dropped = Object.entries(settled.s.ip.drops).filter(([k]) => k.startsWith('reassembly-')).reduce((a, [, n]) => a + n, 0);
  t.true(settled.rx > 5_000, `${settled.rx} of 15,000 datagrams reached flannel.1`);
  t.true(dropped >= settled.rx - 1024, `${dropped} dropped of ${settled.rx} received (at most 1,024 held)`);
  const stats2 = settled.s;
  const after = await memory();
  const mb = (x: number) => (x / 2 ** 20).toFixed(1);
  // What the agent holds after a full collection: the JS heap and the buffers outside it (every datagram's bytes).
  // RSS is logged too; it also depends on when the collector last ran and on malloc's high-water mark.
  const retained = after.heapUsed + after.external - (before.heapUsed + before.external);
  t.log(`node-1 after a full GC: heap+buffers ${mb(before.heapUsed + before.external)} MB -> ${mb(after.heapUsed + after.external)} MB, RSS ${mb(before.rss)} MB -> ${mb(after.rss)} MB (pid ${pid}); drops ${JSON.stringify(stats2.ip.drops)}`);
  t.true(retained < 30 * 2 ** 20, `the agent holds ${mb(retained)} MB more after the flood`);
  const pods = await lab.exec('pod-2a', ['ping', '-c', '2', '-i', '0.2', (await labApi(lab.rec).get<{ status: { podIP: string } }>('pods', 'pod-1a'))!.status.podIP]);
  t.regex(pods.out, / 0% packet loss/);
});
