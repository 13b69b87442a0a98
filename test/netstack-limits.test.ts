/**
 * Tables an outsider can grow stay bounded, as the kernel bounds them: the
 * neighbour table (gc_thresh3), the bridge's learned fdb entries
 * (fdb_max_learned) and conntrack (nf_conntrack_max, with early_drop that
 * never pushes out an assured connection). Each limit is hit with a flood and
 * what overflowed is counted.
 */
import test from 'ava';
import { ManualClock } from '../common/clock.ts';
import { NeighbourTable } from '../netstack/ipv4/neighbour.ts';
import { Bridge } from '../netstack/link/bridge.ts';
import { vethPair } from '../netstack/link/netdev.ts';
import { Conntrack, type Tuple } from '../netstack/netfilter/conntrack.ts';

test('neighbour table: full of STALE entries, the oldest are collected; full of live ones, a new neighbour is refused and counted', (t) => {
  const clock = new ManualClock();
  let overflows = 0;
  const solicited: string[] = [];
  const nt = new NeighbourTable(clock, (_dev, ip) => solicited.push(ip), { maxEntries: 8, reachableMs: 1000, onOverflow: () => overflows++ });
  // ARP from 20 senders addressed to us: each would create a STALE entry.
  for (let i = 1; i <= 20; i++) {
    clock.advance(1);
    nt.learn('eth0', `10.0.0.${i}`, `02:00:00:00:00:${i.toString(16).padStart(2, '0')}`, true);
  }
  t.true(nt.list().length <= 8);
  t.is(overflows, 0, 'STALE entries make room');
  t.truthy(nt.get('eth0', '10.0.0.20'), 'the newest sender is known');
  t.falsy(nt.get('eth0', '10.0.0.1'), 'the oldest was collected');
  // Fill it with PERMANENT entries (flannel's): nothing can be collected.
  for (let i = 1; i <= 8; i++) nt.setPermanent('flannel.1', `10.244.${i}.0`, '02:00:00:00:01:00');
  let failed = 0;
  let sent = 0;
  nt.resolve('eth0', '10.0.0.99', () => sent++, () => failed++);
  t.is(sent, 0);
  t.is(failed, 1, 'the packet waiting on the new neighbour fails at once');
  t.is(overflows, 1);
  t.false(solicited.includes('10.0.0.99'), 'no ARP for a neighbour the table could not hold');
});

test('bridge fdb: past the learned limit new sources are not learned (counted) and their frames still switch; aged entries make room', (t) => {
  const clock = new ManualClock();
  const br = new Bridge('cni0', '02:00:00:00:00:01', 1500, clock, 300_000, { maxLearned: 4 });
  const a = vethPair({ name: 'vetha', mac: '02:00:00:00:10:01', netns: 'node' }, { name: 'eth0', mac: '02:00:00:00:20:01', netns: 'a' }, 1500);
  const b = vethPair({ name: 'vethb', mac: '02:00:00:00:10:02', netns: 'node' }, { name: 'eth0', mac: '02:00:00:00:20:02', netns: 'b' }, 1500);
  br.addPort(a.hostEnd);
  br.addPort(b.hostEnd);
  let atB = 0;
  b.podEnd.attach(() => atB++);
  const frame = (src: number) => {
    const f = Buffer.alloc(60);
    Buffer.from('020000002002', 'hex').copy(f, 0); // to b's pod
    Buffer.from(`0200${src.toString(16).padStart(8, '0')}`, 'hex').copy(f, 6);
    f.writeUInt16BE(0x0800, 12);
    return f;
  };
  for (let i = 1; i <= 100; i++) a.podEnd.transmit(frame(i));
  const learned = br.entries().filter((e) => !e.permanent);
  t.is(learned.length, 4, 'four learned entries, no more');
  t.is(atB, 100, 'every frame was switched (flooded) to b all the same');
  t.is(br.dev.counters.events.get('fdb-full-not-learned'), 96);
  t.false([...br.dev.counters.drops.keys(), ...a.hostEnd.counters.drops.keys()].some((k) => k.includes('fdb')), 'not learning a source drops nothing');
  // Once the learned entries age out, new sources are learned again.
  clock.advance(300_001);
  a.podEnd.transmit(frame(1000));
  t.deepEqual(br.entries().filter((e) => !e.permanent).map((e) => e.mac), ['02:00:00:00:03:e8']);
});

test('conntrack: a full table drops unreplied connections first and never an assured one; with only assured ones left, a new connection is refused', (t) => {
  const clock = new ManualClock();
  const ct = new Conntrack(clock, { maxEntries: 4 });
  const tuple = (sport: number): Tuple => ({ proto: 'udp', src: '10.244.1.2', sport, dst: '10.96.0.10', dport: 53 });
  const assured = ct.create(tuple(1), { dnat: { ip: '10.244.2.2', port: 53 } })!;
  ct.touch(assured, 'reply');
  t.true(assured.assured);
  // A flood of new unreplied flows: each one pushes out an older unreplied one.
  for (let p = 2; p <= 50; p++) t.truthy(ct.create(tuple(p), {}), `flow ${p} admitted by early drop`);
  t.is(ct.entries().length, 4);
  t.truthy(ct.lookup(tuple(1)), 'the assured connection survived the flood');
  t.truthy(ct.lookup(tuple(50)));
  // Now every entry assured: nothing may go, the new one is refused.
  for (const e of ct.entries()) ct.touch(e, 'reply');
  t.is(ct.create(tuple(99), {}), null);
  t.truthy(ct.lookup(tuple(1)));
  // Expired entries always make room.
  clock.advance(200_000);
  t.truthy(ct.create(tuple(100), {}));
});
