/**
 * The filters a kernel node's bird.conf carries (backends/bgp/bird.ts), run by
 * a real BIRD 2 (127.0.206.0/24): BIRD, configured as knode-4 would be,
 * peers with a podlab speaker playing node-2 and with one playing a BGPPeer
 * intruder. BIRD must install and filter exactly the prefixes podlab's own
 * evaluation (backends/bgp/filters.ts) accepts and refuses, with a second
 * IPPool (10.245.0.0/16: neither node-2's block nor the intruder's).
 *
 * Safety: the `protocol kernel` block is cut from the configuration, so
 * nothing reaches the kernel's tables; everything listens on loopback
 * addresses on an unprivileged port.
 */
import test from 'ava';
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BgpSpeaker } from '../bgp/index.ts';
import { BIRD, birdConfig, birdc, type BirdPeer } from '../backends/bgp/bird.ts';
import { importVerdict, type FilterContext, type NodeOwner } from '../backends/bgp/filters.ts';
import type { BgpFilter } from '../control-plane/calico.ts';
import { systemTool } from '../common/system-tool.ts';
import { eventually, requireOrSkip } from './helpers/lab.ts';

const PORT = 11793;
const KNODE = '127.0.206.14';
const NODE2 = '127.0.206.12';
const INTRUDER = '127.0.206.9';
const owners: NodeOwner[] = [
  { name: 'node-2', ip: NODE2, blocks: ['10.244.2.0/24'] },
  { name: 'node-3', ip: '127.0.206.13', blocks: ['10.244.3.0/24'] },
  { name: 'knode-4', ip: KNODE, blocks: ['10.244.4.0/24'] },
];
/** The default pool and a second IPPool. */
const pools = ['10.244.0.0/16', '10.245.0.0/16'];
const filter = { apiVersion: 'projectcalico.org/v3', kind: 'BGPFilter', metadata: { name: 'intruder-in' }, spec: { importV4: [{ action: 'Accept', matchOperator: 'In', cidr: '198.51.100.0/24' }, { action: 'Reject', matchOperator: 'In', cidr: '192.0.2.0/24' }] } } as BgpFilter;

const fromNode2 = ['10.244.2.0/24', '10.244.2.128/25', '10.244.3.0/24', '192.0.2.0/24', '10.245.2.0/24'];
const fromIntruder = ['0.0.0.0/0', '10.244.2.0/25', '10.244.3.0/24', '198.51.100.0/24', '192.0.2.0/24', '203.0.113.0/24', '10.245.1.0/24'];

test('a real BIRD with the kernel node filters accepts and refuses what podlab does', async (t) => {
  if (!requireOrSkip(t, !!systemTool('bird') && !!systemTool('birdc'), 'bird2 is not installed')) return;
  const peers: BirdPeer[] = [
    // BIRD listens on the wildcard address: the speakers take other ports.
    { name: 'node-2', ip: NODE2, asn: 64512, port: PORT + 1 },
    { name: 'BGPPeer intruder', ip: INTRUDER, asn: 64512, port: PORT + 2, external: { name: 'intruder', filters: [filter] } },
  ];
  const conf = birdConfig({ node: 'knode-4', routerId: KNODE, asn: 64512, podCIDR: '10.244.4.0/24', port: PORT, holdTime: 9, peers, pools, owners });
  // Loopback has no directly connected neighbours for BIRD: multihop instead of `direct` (the filters are under test).
  const safe = conf.replace(/protocol kernel \{[\s\S]*?\n\}\n/, '').replace('  direct;\n', '  multihop;\n');
  t.notRegex(safe, /protocol kernel/);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-bird-filters-'));
  const ctl = path.join(dir, 'bird.ctl');
  fs.writeFileSync(path.join(dir, 'bird.conf'), safe);
  const bird: ChildProcess = spawn(BIRD, ['-f', '-c', path.join(dir, 'bird.conf'), '-s', ctl, '-P', path.join(dir, 'bird.pid')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let birdLog = '';
  bird.stderr!.on('data', (d) => (birdLog += d));
  t.teardown(() => {
    bird.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  });

  // node-2 waits (BIRD, the greater IP string, dials it); BIRD waits for the intruder (Calico's passive rule).
  const node2 = new BgpSpeaker({ asn: 64512, routerId: NODE2, listen: { host: NODE2, port: PORT + 1 }, holdTime: 9 });
  node2.addPeer({ address: KNODE, port: PORT, asn: 64512, passive: true });
  for (const p of fromNode2) node2.announce(p, { nextHop: NODE2 });
  const intruder = new BgpSpeaker({ asn: 64512, routerId: INTRUDER, listen: { host: INTRUDER, port: PORT + 2 }, holdTime: 9, connectRetryMs: 500 });
  intruder.addPeer({ address: KNODE, port: PORT, asn: 64512, passive: false });
  for (const p of fromIntruder) intruder.announce(p, { nextHop: INTRUDER, localPref: 200 });
  await Promise.all([node2.start(), intruder.start()]);
  t.teardown(() => Promise.all([node2.stop(), intruder.stop()]).then(() => undefined));

  await eventually(() => (node2.summary().peers[0].state === 'Established' && intruder.summary().peers[0].state === 'Established') || undefined, 30_000, 200).catch((e) => {
    throw new Error(`${e}\nbird log:\n${birdLog}`);
  });
  const total = fromNode2.length + fromIntruder.length;
  let last = '';
  const { accepted, filtered } = await eventually(async () => {
    const acc = await birdc(ctl, 'show', 'route').then((a) => a, () => '');
    const fil = await birdc(ctl, 'show', 'route', 'filtered').then((a) => a, () => '');
    last = `${acc}\n--- filtered\n${fil}`;
    const a = birdRoutes(acc).filter((r) => r.startsWith('Mesh_'));
    const f = birdRoutes(fil);
    return a.length + f.length >= total ? { accepted: a.sort(), filtered: f.sort() } : undefined;
  }, 20_000, 200).catch((e) => {
    throw new Error(`${e}\nbirdc:\n${last}\nbird log:\n${birdLog}`);
  });

  const ctx: FilterContext = { pools, nodes: new Map(owners.map((o) => [o.ip, o])) };
  const expect = (kind: 'node' | 'external', ip: string, list: string[]) =>
    list.map((p) => ({ key: `${ip === NODE2 ? 'Mesh_127_0_206_12' : 'Mesh_127_0_206_9'} ${p}`, ok: importVerdict(ctx, kind === 'node' ? { kind } : { kind, name: 'intruder', filters: [filter] }, p, ip).accept }));
  const want = [...expect('node', NODE2, fromNode2), ...expect('external', INTRUDER, fromIntruder)];
  t.deepEqual(accepted, want.filter((w) => w.ok).map((w) => w.key).sort(), 'BIRD installs what podlab accepts');
  t.deepEqual(filtered, want.filter((w) => !w.ok).map((w) => w.key).sort(), 'BIRD filters what podlab refuses');
  t.deepEqual(want.filter((w) => w.ok).map((w) => w.key).sort(), ['Mesh_127_0_206_12 10.244.2.0/24', 'Mesh_127_0_206_12 10.244.2.128/25', 'Mesh_127_0_206_9 198.51.100.0/24', 'Mesh_127_0_206_9 203.0.113.0/24']);
  t.log(`BIRD accepted ${accepted.length}, filtered ${filtered.length}, as podlab's evaluation says`);
});

/** `PROTOCOL PREFIX` of each route in birdc's `show route` (a prefix is printed once for all its routes). */
function birdRoutes(out: string): string[] {
  let cur = '';
  const routes: string[] = [];
  for (const line of out.split('\n')) {
    const m = /^(\d+\.\d+\.\d+\.\d+\/\d+)\s/.exec(line);
    if (m) cur = m[1];
    const proto = /\[(\w+) /.exec(line);
    if (cur && proto && /^(\d|\s)/.test(line) && !/^\s+(via|BGP)/.test(line)) routes.push(`${proto[1]} ${cur}`);
  }
  return routes;
}
