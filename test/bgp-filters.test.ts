/**
 * Route filters as Calico's BIRD configuration has them (backends/bgp/filters.ts),
 * pure: node peers only their own block inside the IP pools, external BGPPeers
 * nothing inside the pools and else their BGPFilter rules (first match wins,
 * unmatched = Accept, no BGPFilter = nothing), never a default route unless a
 * rule accepts it; the RIB keeps filtered paths with their rule and re-judges
 * them when the policy changes; the throttled log writes one line per source
 * per minute with a count.
 */
import test from 'ava';
import { ManualClock } from '../common/clock.ts';
import { LogThrottle, type ThrottledLine } from '../common/log-throttle.ts';
import { Rib, type RibPeer, type UpdateRepr } from '../bgp/index.ts';
import { calicoPolicy } from '../backends/bgp/bgp-backend.ts';
import { exportVerdict, importVerdict, ipPoolCidrs, nodeOwners, peerKinds, prefixWithin, ruleMatches, type FilterContext, type PeerKind } from '../backends/bgp/filters.ts';
import type { IpPool } from '../control-plane/calico.ts';
import { desiredPeers } from '../backends/bgp/peers.ts';
import type { BgpFilter, BgpPeer } from '../control-plane/calico.ts';
import type { Node } from '../control-plane/types.ts';
import { registry } from '../control-plane/resources.ts';

const node = (name: string, ip: string, podCIDR: string): Node =>
  ({ apiVersion: 'v1', kind: 'Node', metadata: { name, annotations: { 'projectcalico.org/IPv4Address': `${ip}/24` } }, spec: { podCIDR } }) as unknown as Node;
const filter = (name: string, spec: BgpFilter['spec']): BgpFilter => ({ apiVersion: 'projectcalico.org/v3', kind: 'BGPFilter', metadata: { name }, spec }) as BgpFilter;
const NODES = [node('node-1', '127.0.205.11', '10.244.1.0/24'), node('node-2', '127.0.205.12', '10.244.2.0/24'), node('node-3', '127.0.205.13', '10.244.3.0/24')];
const ctx: FilterContext = { pools: ['10.244.0.0/16'], nodes: nodeOwners({ nodes: NODES, config: undefined, peers: [] }) };
const NODE: PeerKind = { kind: 'node' };
const ext = (...filters: BgpFilter[]): PeerKind => ({ kind: 'external', name: 'tor', filters });

test('prefix containment and rule operators', (t) => {
  t.true(prefixWithin('10.244.2.0/25', '10.244.0.0/16'));
  t.true(prefixWithin('10.244.0.0/16', '10.244.0.0/16'));
  t.false(prefixWithin('10.0.0.0/8', '10.244.0.0/16'));
  t.true(prefixWithin('1.2.3.0/24', '0.0.0.0/0'));
  t.true(ruleMatches({ action: 'Accept', matchOperator: 'Equal', cidr: '0.0.0.0/0' }, '0.0.0.0/0'));
  t.false(ruleMatches({ action: 'Accept', matchOperator: 'Equal', cidr: '0.0.0.0/0' }, '1.0.0.0/8'));
  t.true(ruleMatches({ action: 'Reject', matchOperator: 'NotIn', cidr: '44.0.0.0/16' }, '45.0.0.0/24'));
  t.false(ruleMatches({ action: 'Reject', matchOperator: 'NotIn', cidr: '44.0.0.0/16' }, '44.0.1.0/24'));
  t.true(ruleMatches({ action: 'Reject' }, '9.9.9.0/24'));
});

test('node peers: only the announcing node own block inside the pools', (t) => {
  t.deepEqual(importVerdict(ctx, NODE, '10.244.2.0/24', '127.0.205.12'), { accept: true, rule: "node-2's block 10.244.2.0/24" });
  t.deepEqual(importVerdict(ctx, NODE, '10.244.3.0/24', '127.0.205.12'), { accept: false, rule: "not node-2's block (10.244.2.0/24)" });
  t.false(importVerdict(ctx, NODE, '10.244.2.0/23', '127.0.205.12').accept, 'a covering prefix is not the block');
  t.true(importVerdict(ctx, NODE, '10.244.2.128/25', '127.0.205.12').accept, 'a more-specific of its own block');
  t.regex(importVerdict(ctx, NODE, '0.0.0.0/0', '127.0.205.12').rule, /default route/);
  t.regex(importVerdict(ctx, NODE, '192.0.2.0/24', '127.0.205.12').rule, /outside the IP pools/);
  t.regex(importVerdict(ctx, NODE, '10.244.9.0/24', '127.0.205.99').rule, /no node/);
});

const ipPool = (name: string, cidr: string): IpPool => ({ apiVersion: 'projectcalico.org/v3', kind: 'IPPool', metadata: { name }, spec: { cidr } }) as IpPool;

test('IP pools are the IPPool objects plus the cluster CIDR (the default pool) unless a pool covers it', (t) => {
  const base = { nodes: NODES, config: undefined, peers: [] };
  t.deepEqual(ipPoolCidrs(base, ['10.244.0.0/16']), ['10.244.0.0/16'], 'no IPPool: the default pool alone');
  t.deepEqual(ipPoolCidrs({ ...base, pools: [ipPool('second', '10.245.0.0/16')] }, ['10.244.0.0/16']), ['10.244.0.0/16', '10.245.0.0/16']);
  t.deepEqual(ipPoolCidrs({ ...base, pools: [ipPool('wide', '10.0.0.0/8'), ipPool('dup', '10.0.0.0/8')] }, ['10.244.0.0/16']), ['10.0.0.0/8'], 'a covering pool stands for the default one');
  t.deepEqual(ipPoolCidrs({ ...base, pools: [ipPool('host-bits', '10.246.1.7/16')] }, []), ['10.246.0.0/16'], 'host bits masked as Calico does');
});

test('node peers and external peers with a second IPPool', (t) => {
  const c: FilterContext = {
    pools: ipPoolCidrs({ nodes: NODES, config: undefined, peers: [], pools: [ipPool('second', '10.245.0.0/16')] }, ['10.244.0.0/16']),
    nodes: nodeOwners({ nodes: [...NODES.slice(0, 2), { ...NODES[2], spec: { podCIDRs: ['10.244.3.0/24', '10.245.3.0/24'] } }], config: undefined, peers: [] }),
  };
  t.deepEqual(importVerdict(c, NODE, '10.245.3.0/24', '127.0.205.13'), { accept: true, rule: "node-3's block 10.245.3.0/24" }, 'a block in the second pool, owned');
  t.deepEqual(importVerdict(c, NODE, '10.245.3.0/24', '127.0.205.12'), { accept: false, rule: "not node-2's block (10.244.2.0/24)" }, 'the second pool, not owned');
  t.deepEqual(importVerdict(c, NODE, '10.246.0.0/24', '127.0.205.12'), { accept: false, rule: 'outside the IP pools (10.244.0.0/16, 10.245.0.0/16)' });
  // External peers: the second pool is the cluster's too.
  const all = ext(filter('any', { importV4: [] }));
  t.deepEqual(importVerdict(c, all, '10.245.9.0/24', '127.0.205.9'), { accept: false, rule: "inside IP pool 10.245.0.0/16: only nodes announce the cluster's addresses" });
  t.true(importVerdict(c, all, '10.246.9.0/24', '127.0.205.9').accept);
  t.true(importVerdict({ ...c, pools: ['10.244.0.0/16'] }, all, '10.245.9.0/24', '127.0.205.9').accept, 'without the pool the filters decide');
});

test('external peers: nothing inside the pools, no default, only as BGPFilters allow', (t) => {
  const attack = ['0.0.0.0/0', '10.244.2.0/25', '10.244.3.0/24'];
  for (const p of attack) t.false(importVerdict(ctx, ext(), p, '127.0.205.9').accept, p);
  t.regex(importVerdict(ctx, ext(), '10.244.2.0/25', '127.0.205.9').rule, /inside IP pool 10\.244\.0\.0\/16/);
  t.regex(importVerdict(ctx, ext(), '10.0.0.0/8', '127.0.205.9').rule, /no BGPFilter/, 'a covering prefix is not inside the pool: the filters decide');
  t.deepEqual(importVerdict(ctx, ext(), '198.51.100.0/24', '127.0.205.9'), { accept: false, rule: 'no BGPFilter on BGPPeer tor: nothing is imported' });
  const f = filter('tor-in', { importV4: [{ action: 'Reject', matchOperator: 'In', cidr: '198.51.100.128/25' }, { action: 'Accept', matchOperator: 'In', cidr: '198.51.100.0/24' }, { action: 'Reject', matchOperator: 'NotIn', cidr: '203.0.113.0/24' }] });
  t.deepEqual(importVerdict(ctx, ext(f), '198.51.100.0/24', 'x'), { accept: true, rule: 'BGPFilter tor-in importV4[1] Accept In 198.51.100.0/24' });
  t.deepEqual(importVerdict(ctx, ext(f), '198.51.100.128/26', 'x'), { accept: false, rule: 'BGPFilter tor-in importV4[0] Reject In 198.51.100.128/25' });
  t.deepEqual(importVerdict(ctx, ext(f), '192.0.2.0/24', 'x'), { accept: false, rule: 'BGPFilter tor-in importV4[2] Reject NotIn 203.0.113.0/24' });
  t.true(importVerdict(ctx, ext(f), '203.0.113.0/24', 'x').accept, 'unmatched: Calico default Accept');
  t.deepEqual(importVerdict(ctx, ext(f), '0.0.0.0/0', 'x'), { accept: false, rule: 'BGPFilter tor-in importV4[2] Reject NotIn 203.0.113.0/24' });
  t.deepEqual(importVerdict(ctx, ext(f), '10.244.1.0/24', 'x'), { accept: false, rule: "inside IP pool 10.244.0.0/16: only nodes announce the cluster's addresses" });
  const open = filter('open', { importV4: [{ action: 'Reject', matchOperator: 'In', cidr: '192.0.2.0/24' }] });
  t.regex(importVerdict(ctx, ext(open), '0.0.0.0/0', 'x').rule, /default route: only a BGPFilter rule may accept it/, 'default Accept does not admit the default route');
  const def = filter('default', { importV4: [{ action: 'Accept', matchOperator: 'Equal', cidr: '0.0.0.0/0' }] });
  t.true(importVerdict(ctx, ext(def), '0.0.0.0/0', 'x').accept);
  t.false(importVerdict(ctx, ext(def), '10.244.0.0/16', 'x').accept, 'filters never open the pools');
});

test('export: BGPFilter exportV4 towards external peers; node peers unfiltered', (t) => {
  t.is(exportVerdict(NODE, '10.244.1.0/24'), undefined);
  t.is(exportVerdict(ext(), '10.244.1.0/24'), undefined);
  const f = filter('out', { exportV4: [{ action: 'Reject', matchOperator: 'Equal', cidr: '10.244.1.0/24' }] });
  t.false(exportVerdict(ext(f), '10.244.1.0/24')!.accept);
  t.true(exportVerdict(ext(f), '10.244.2.0/24')!.accept);
});

test('peer kinds from BGPPeers: filters by name, in order, unknown names skipped', (t) => {
  const bp = { apiVersion: 'projectcalico.org/v3', kind: 'BGPPeer', metadata: { name: 'tor' }, spec: { peerIP: '127.0.205.9', asNumber: 65001, filters: ['b', 'missing', 'a'] } } as BgpPeer;
  const want = desiredPeers({ self: 'node-1', port: 1179, topology: 'full-mesh', reflector: false }, { nodes: NODES, config: undefined, peers: [bp] });
  const kinds = peerKinds(want, [filter('a', {}), filter('b', {})]);
  t.deepEqual(kinds.get('127.0.205.12'), { kind: 'node' });
  const k = kinds.get('127.0.205.9');
  t.is(k?.kind, 'external');
  t.deepEqual(k?.kind === 'external' ? k.filters.map((f) => f.metadata.name) : [], ['b', 'a']);
});

const SELF = '127.0.205.11';
const ribPeer = (address: string, o: Partial<RibPeer> = {}): RibPeer => ({ address, asn: 64512, routerId: address, ibgp: true, rrClient: false, localAddress: SELF, ...o });
const upd = (nlri: string[], localPref?: number): UpdateRepr => ({ withdrawn: [], attributes: { origin: 'igp', asPath: [], nextHop: '127.0.205.9', ...(localPref ? { localPref } : {}) }, nlri });

test('RIB: filtered paths are kept with their rule, never candidates, and re-judged when the policy changes', (t) => {
  const kinds = new Map<string, PeerKind>([['127.0.205.12', NODE], ['127.0.205.9', ext()]]);
  const rib = new Rib({ asn: 64512, routerId: SELF, clock: new ManualClock(), policy: calicoPolicy(ctx, kinds) });
  const attacker = ribPeer('127.0.205.9', { asn: 65001, ibgp: false });
  const changes = rib.applyUpdate(attacker, upd(['0.0.0.0/0', '10.244.2.0/25', '10.244.3.0/24', '198.51.100.0/24'], 200));
  t.deepEqual(changes, [], 'nothing of the attack becomes a best path');
  const ins = rib.adjRibIn('127.0.205.9');
  t.is(ins.length, 4);
  t.true(ins.every((e) => e.rejected === 'filtered' && !!e.rule));
  t.deepEqual(rib.counts('127.0.205.9'), { received: 4, accepted: 0, rejected: 4, preferred: 0, sent: 0 });
  const n2 = rib.applyUpdate(ribPeer('127.0.205.12'), { withdrawn: [], attributes: { origin: 'igp', asPath: [], nextHop: '127.0.205.12' }, nlri: ['10.244.2.0/24', '10.244.3.0/24'] });
  t.deepEqual(n2.map((c) => c.prefix), ['10.244.2.0/24'], "node-2 gets its block, not node-3's");
  // A BGPFilter arrives that accepts 198.51.100.0/24: re-judged without a new UPDATE.
  const f = filter('tor-in', { importV4: [{ action: 'Accept', matchOperator: 'In', cidr: '198.51.100.0/24' }, { action: 'Reject' }] });
  const after = rib.setPolicy(calicoPolicy(ctx, new Map([...kinds, ['127.0.205.9', ext(f)]])));
  t.deepEqual(after.map((c) => c.prefix), ['198.51.100.0/24']);
  t.is(rib.best('198.51.100.0/24')?.best.peer?.address, '127.0.205.9');
  t.is(rib.best('0.0.0.0/0'), undefined);
  // A reflected path is judged by its originator, not by the reflector that passed it on.
  const rr = ribPeer('127.0.205.13');
  rib.applyUpdate(rr, { withdrawn: [], attributes: { origin: 'igp', asPath: [], nextHop: '127.0.205.12', originatorId: '127.0.205.12', clusterList: ['244.0.0.1'] }, nlri: ['10.244.2.0/24'] });
  rib.applyUpdate(rr, { withdrawn: [], attributes: { origin: 'igp', asPath: [], nextHop: '127.0.205.12', originatorId: '127.0.205.12', clusterList: ['244.0.0.1'] }, nlri: ['10.244.3.0/24'] });
  t.is(rib.adjInEntry('127.0.205.13', '10.244.2.0/24')?.rejected, 'filtered', '127.0.205.13 is not a configured peer in this policy');
  rib.setPolicy(calicoPolicy(ctx, new Map([...kinds, ['127.0.205.13', NODE]])));
  t.is(rib.adjInEntry('127.0.205.13', '10.244.2.0/24')?.rejected, undefined, "node-2's block via the reflector");
  t.regex(rib.adjInEntry('127.0.205.13', '10.244.3.0/24')?.rule ?? '', /not node-2's block/);
});

test('RIB export policy: a rejected prefix is withdrawn from the peer', (t) => {
  const tor = ribPeer('127.0.205.9', { asn: 65001, ibgp: false });
  const kinds = new Map<string, PeerKind>([['127.0.205.9', ext()]]);
  const rib = new Rib({ asn: 64512, routerId: SELF, policy: calicoPolicy(ctx, kinds) });
  rib.originate('10.244.1.0/24', { nextHop: SELF });
  t.deepEqual(rib.exportsFor(tor).announce.flatMap((a) => a.prefixes), ['10.244.1.0/24']);
  const f = filter('out', { exportV4: [{ action: 'Reject', matchOperator: 'In', cidr: '10.244.0.0/16' }] });
  rib.setPolicy(calicoPolicy(ctx, new Map([['127.0.205.9', ext(f)]])));
  t.deepEqual(rib.exportsFor(tor), { withdraw: ['10.244.1.0/24'], announce: [] });
});

test('log throttle: one line per source per minute, with a count', (t) => {
  const clock = new ManualClock();
  const lines: ThrottledLine[] = [];
  const th = new LogThrottle({ clock, write: (l) => lines.push(l) });
  for (let i = 0; i < 5000; i++) th.note('127.0.205.9', { i });
  th.note('127.0.205.10');
  t.deepEqual(lines.map((l) => [l.key, l.count, l.repeated]), [['127.0.205.9', 1, false], ['127.0.205.10', 1, false]]);
  clock.advance(59_999);
  t.is(lines.length, 2);
  clock.advance(1);
  t.deepEqual(lines.slice(2).map((l) => [l.key, l.count, l.repeated]), [['127.0.205.9', 4999, true]], 'the quiet source writes nothing more');
  t.deepEqual(lines[2].fields, { i: 4999 });
  for (let i = 0; i < 10; i++) th.note('127.0.205.9');
  clock.advance(60_000);
  t.deepEqual(lines.slice(3).map((l) => [l.count, l.repeated]), [[10, true]]);
  clock.advance(60_000);
  t.is(lines.length, 4);
  t.is(th.size, 0, 'quiet sources are forgotten');
  const capped = new LogThrottle({ clock, maxSources: 3, write: (l) => lines.push(l) });
  for (let i = 0; i < 100; i++) capped.note(`10.0.0.${i}`);
  t.is(capped.size, 3, 'sources beyond the cap share one window');
});

test('BGPFilter and BGPPeer.filters are validated as the apiserver serves them', (t) => {
  const type = registry.resolve('bgpfilters')!;
  t.is(type.kind, 'BGPFilter');
  const ok = filter('f', { importV4: [{ action: 'Accept', matchOperator: 'Equal', cidr: '0.0.0.0/0' }, { action: 'Reject' }], exportV4: [] });
  t.deepEqual(type.validate!(ok as never, undefined), []);
  const bad = filter('f', { importV4: [{ action: 'Allow', matchOperator: 'Within', cidr: '10.0.0.0/33' } as never, { action: 'Reject', cidr: '10.0.0.0/8' }] });
  t.deepEqual(type.validate!(bad as never, undefined).map((e) => e.field), ['spec.importV4[0].action', 'spec.importV4[0].matchOperator', 'spec.importV4[0].cidr', 'spec.importV4[1]']);
  const peers = registry.resolve('bgppeers')!;
  t.deepEqual(peers.validate!({ spec: { peerIP: '127.0.0.5', asNumber: 65001, filters: 'x' } } as never, undefined).map((e) => e.field), ['spec.filters']);
});
