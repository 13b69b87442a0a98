import test from 'ava';
import { ManualClock } from '../common/clock.ts';
import { NeighbourTable } from '../netstack/ipv4/neighbour.ts';
import { Bridge } from '../netstack/link/bridge.ts';
import { NetDevice } from '../netstack/link/netdev.ts';
import { RouteTable } from '../netstack/ipv4/route-table.ts';

test('a solicitation answered synchronously releases the queued packet at once', (t) => {
  const clock = new ManualClock();
  const table: NeighbourTable = new NeighbourTable(clock, (dev, ip) => table.learn(dev, ip, '02:00:00:00:00:09', true));
  const sent: string[] = [];
  table.resolve('eth0', '10.0.0.9', (mac) => sent.push(mac), () => t.fail());
  t.deepEqual(sent, ['02:00:00:00:00:09']);
  t.is(table.get('eth0', '10.0.0.9')!.state, 'REACHABLE');
});

test('a resolved neighbour is not probed again (no ARP every second)', (t) => {
  const clock = new ManualClock();
  let probes = 0;
  const table: NeighbourTable = new NeighbourTable(clock, (dev, ip) => (probes++, table.learn(dev, ip, '02:00:00:00:00:09', true)));
  table.resolve('eth0', '10.0.0.9', () => {}, () => t.fail());
  clock.advance(10_000);
  t.is(probes, 1);
  const async = new NeighbourTable(clock, () => probes++);
  async.resolve('eth0', '10.0.0.8', () => {}, () => t.fail());
  clock.advance(500);
  async.learn('eth0', '10.0.0.8', '02:00:00:00:00:08', true);
  clock.advance(10_000);
  t.is(probes, 2);
});

test('REACHABLE turns STALE after reachable time; unanswered probes fail queued packets', (t) => {
  const clock = new ManualClock();
  const probes: string[] = [];
  const table = new NeighbourTable(clock, (_d, ip) => probes.push(ip), { reachableMs: 30_000, retransMs: 1000, maxProbes: 3, queueLen: 2 });
  table.learn('eth0', '10.0.0.2', '02:00:00:00:00:02', true);
  table.learn('eth0', '10.0.0.2', '02:00:00:00:00:02', false);
  t.is(table.get('eth0', '10.0.0.2')!.state, 'REACHABLE');
  clock.advance(30_001);
  t.is(table.get('eth0', '10.0.0.2')!.state, 'STALE');
  let failed = 0;
  for (let i = 0; i < 3; i++) table.resolve('eth0', '10.0.0.3', () => t.fail(), () => failed++);
  t.is(failed, 1, 'queue holds 2: the oldest is dropped');
  clock.advance(2999);
  t.is(probes.length, 3);
  t.is(failed, 1);
  clock.advance(2);
  t.is(failed, 3);
  t.is(table.get('eth0', '10.0.0.3')!.state, 'FAILED');
});

test('the bridge learns, forwards known unicast to one port, floods the rest, and ages entries', (t) => {
  const clock = new ManualClock();
  const br = new Bridge('cni0', '02:00:00:00:00:01', 1450, clock, 300_000);
  const got: Record<string, number> = { p1: 0, p2: 0, p3: 0, local: 0 };
  const ports = ['p1', 'p2', 'p3'].map((n, i) => {
    const d = new NetDevice(n, 'veth', `02:00:00:00:01:0${i}`, 1450);
    d.connect(() => got[n]++);
    br.addPort(d);
    return d;
  });
  br.dev.attach(() => got.local++);
  const frame = (dst: string, src: string) => Buffer.concat([Buffer.from(dst.replace(/:/g, ''), 'hex'), Buffer.from(src.replace(/:/g, ''), 'hex'), Buffer.from([8, 0]), Buffer.alloc(46)]);
  // Unknown destination: flooded to the other ports and the local port.
  ports[0].receive(frame('0a:00:00:00:00:02', '0a:00:00:00:00:01'));
  t.deepEqual(got, { p1: 0, p2: 1, p3: 1, local: 1 });
  // 0a..01 was learned on p1: a reply goes to p1 only.
  ports[1].receive(frame('0a:00:00:00:00:01', '0a:00:00:00:00:02'));
  t.deepEqual(got, { p1: 1, p2: 1, p3: 1, local: 1 });
  t.true(br.entries().some((e) => e.mac === '0a:00:00:00:00:01' && e.port === ports[0] && !e.permanent));
  clock.advance(300_001);
  t.false(br.entries().some((e) => e.mac === '0a:00:00:00:00:01'), 'aged out');
  // Frames to the bridge's own MAC go up to the node's stack only.
  ports[2].receive(frame('02:00:00:00:00:01', '0a:00:00:00:00:03'));
  t.deepEqual(got, { p1: 1, p2: 1, p3: 1, local: 2 });
});

test('routes: longest prefix wins; replace and delete', (t) => {
  const rt = new RouteTable();
  rt.replace({ dst: '0.0.0.0', prefixLen: 0, gateway: '10.244.1.1', dev: 'eth0', proto: 'boot', scope: 'global' });
  rt.replace({ dst: '10.244.0.0', prefixLen: 16, gateway: '10.244.1.1', dev: 'eth0', proto: 'boot', scope: 'global' });
  rt.replace({ dst: '10.244.2.0', prefixLen: 24, gateway: '10.244.2.0', dev: 'flannel.1', onlink: true, proto: 'boot', scope: 'global' });
  t.is(rt.lookup('10.244.2.7')!.dev, 'flannel.1');
  t.is(rt.lookup('10.244.9.7')!.prefixLen, 16);
  t.is(rt.lookup('8.8.8.8')!.prefixLen, 0);
  t.true(rt.delete('10.244.2.0', 24));
  t.is(rt.lookup('10.244.2.7')!.prefixLen, 16);
  t.deepEqual(rt.list().map((r) => r.prefixLen), [0, 16]);
});
