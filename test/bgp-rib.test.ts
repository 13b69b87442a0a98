/**
 * RIB unit tests: the decision process with its reason for every step
 * (RFC 4271 §9.1.2.2, RFC 4456 §9), import checks (AS loop, ORIGINATOR_ID and
 * CLUSTER_LIST loops), and the export policy: iBGP split horizon, route
 * reflection (RFC 4456 §6, §8), eBGP rewriting, well-known communities,
 * unknown transitive attributes with the Partial bit, Adj-RIB-Out diffs.
 */
import test from 'ava';
import { ManualClock } from '../common/clock.ts';
import {
  COMMUNITY_NO_ADVERTISE,
  COMMUNITY_NO_EXPORT,
  Rib,
  selectBest,
  type PathAttributes,
  type RibPeer,
  type RoutePath,
  type UpdateRepr,
} from '../bgp/index.ts';

const ASN = 64512;
const SELF = '10.0.0.1';

function peer(address: string, o: Partial<RibPeer> = {}): RibPeer {
  return { address, asn: ASN, routerId: address, ibgp: true, rrClient: false, localAddress: SELF, ...o };
}
const ebgp = (address: string, asn: number, o: Partial<RibPeer> = {}) => peer(address, { asn, ibgp: false, ...o });

function update(prefix: string, a: PathAttributes): UpdateRepr {
  return { withdrawn: [], attributes: { origin: 'igp', asPath: [], ...a }, nlri: [prefix] };
}
const seq = (...asns: number[]) => [{ type: 'sequence' as const, asns }];

const P = '10.244.5.0/24';

function rib(o: { clusterId?: string } = {}) {
  return new Rib({ asn: ASN, routerId: SELF, clock: new ManualClock(), ...o });
}

/** Feeds (peer, attrs) pairs for prefix P and returns the Loc-RIB entry. */
function decide(entries: [RibPeer, PathAttributes][], r = rib()) {
  for (const [p, a] of entries) r.applyUpdate(p, update(P, { nextHop: p.address, ...a }));
  const e = r.routes().find((x) => x.prefix === P)!;
  return { r, e, bestPeer: e.best.peer?.address, reason: e.reason };
}

test('decision: a single path is the best for reason only-path', (t) => {
  const { bestPeer, reason } = decide([[peer('10.0.0.2'), {}]]);
  t.is(bestPeer, '10.0.0.2');
  t.is(reason, 'only-path');
});

test('decision: our own announcement beats a learned path (local-origin)', (t) => {
  const r = rib();
  r.originate(P, { nextHop: SELF });
  const { e } = decide([[peer('10.0.0.2'), { localPref: 500 }]], r);
  t.is(e.best.source, 'local');
  t.is(e.reason, 'local-origin');
});

test('decision: highest LOCAL_PREF (local-pref)', (t) => {
  const { bestPeer, reason } = decide([
    [peer('10.0.0.2'), { localPref: 100 }],
    [peer('10.0.0.3'), { localPref: 200 }],
  ]);
  t.is(bestPeer, '10.0.0.3');
  t.is(reason, 'local-pref');
});

test('decision: LOCAL_PREF from an eBGP peer is ignored (set to 100)', (t) => {
  const { bestPeer, reason, e } = decide([
    [ebgp('10.0.0.2', 65001), { asPath: seq(65001), localPref: 900 }],
    [peer('10.0.0.3'), { asPath: seq(65001), localPref: 150 }],
  ]);
  t.is(bestPeer, '10.0.0.3');
  t.is(reason, 'local-pref');
  t.is(e.paths[1].path.attributes.localPref, 100);
});

test('decision: shortest AS_PATH, an AS_SET counting 1 (as-path-length)', (t) => {
  const { bestPeer, reason } = decide([
    [ebgp('10.0.0.2', 65001), { asPath: [...seq(65001, 65010), { type: 'set', asns: [1, 2, 3] }] }],
    [ebgp('10.0.0.3', 65002), { asPath: seq(65002, 65020) }],
  ]);
  t.is(bestPeer, '10.0.0.3');
  t.is(reason, 'as-path-length');
});

test('decision: lowest ORIGIN (origin)', (t) => {
  const { bestPeer, reason } = decide([
    [peer('10.0.0.2'), { origin: 'incomplete' }],
    [peer('10.0.0.3'), { origin: 'egp' }],
  ]);
  t.is(bestPeer, '10.0.0.3');
  t.is(reason, 'origin');
});

test('decision: lowest MED among paths from the same neighbour AS (med), absent MED = 0', (t) => {
  const same = decide([
    [ebgp('10.0.0.3', 65001), { asPath: seq(65001), med: 20 }],
    [ebgp('10.0.0.2', 65001, { routerId: '10.9.9.9' }), { asPath: seq(65001), med: 10 }],
  ]);
  t.is(same.bestPeer, '10.0.0.2');
  t.is(same.reason, 'med');
  const absent = decide([
    [ebgp('10.0.0.3', 65001), { asPath: seq(65001), med: 5 }],
    [ebgp('10.0.0.2', 65001, { routerId: '10.9.9.9' }), { asPath: seq(65001) }],
  ]);
  t.is(absent.bestPeer, '10.0.0.2');
  t.is(absent.reason, 'med');
});

test('decision: MED is not compared across neighbour ASes', (t) => {
  const { bestPeer, reason, e } = decide([
    [ebgp('10.0.0.2', 65001, { routerId: '10.0.0.2' }), { asPath: seq(65001), med: 500 }],
    [ebgp('10.0.0.3', 65002, { routerId: '10.0.0.3' }), { asPath: seq(65002), med: 1 }],
    [ebgp('10.0.0.4', 65001, { routerId: '10.0.0.1' }), { asPath: seq(65001), med: 900 }],
  ]);
  // 10.0.0.4 loses to 10.0.0.2 on MED (same AS 65001); 10.0.0.2 vs 10.0.0.3 (different ASes) goes on to router-id.
  t.is(bestPeer, '10.0.0.2');
  t.is(reason, 'router-id');
  t.is(e.paths.find((p) => p.path.peer?.address === '10.0.0.4')?.eliminatedBy, 'med');
  t.is(e.paths.find((p) => p.path.peer?.address === '10.0.0.3')?.eliminatedBy, 'router-id');
});

test('decision: eBGP over iBGP (ebgp-over-ibgp)', (t) => {
  const { bestPeer, reason } = decide([
    [peer('10.0.0.2', { routerId: '1.1.1.1' }), { asPath: seq(65001) }],
    [ebgp('10.0.0.3', 65001, { routerId: '9.9.9.9' }), { asPath: seq(65001) }],
  ]);
  t.is(bestPeer, '10.0.0.3');
  t.is(reason, 'ebgp-over-ibgp');
});

test('decision: lowest router ID, ORIGINATOR_ID standing in for it (router-id)', (t) => {
  const plain = decide([
    [peer('10.0.0.2', { routerId: '192.0.2.9' }), {}],
    [peer('10.0.0.3', { routerId: '192.0.2.5' }), {}],
  ]);
  t.is(plain.bestPeer, '10.0.0.3');
  t.is(plain.reason, 'router-id');
  const orig = decide([
    [peer('10.0.0.2', { routerId: '192.0.2.1' }), { originatorId: '192.0.2.200', clusterList: ['1.1.1.1'] }],
    [peer('10.0.0.3', { routerId: '192.0.2.5' }), {}],
  ]);
  t.is(orig.bestPeer, '10.0.0.3');
  t.is(orig.reason, 'router-id');
});

test('decision: shortest CLUSTER_LIST (cluster-list-length), then lowest peer address (peer-address)', (t) => {
  const cl = decide([
    [peer('10.0.0.2', { routerId: '192.0.2.2' }), { originatorId: '192.0.2.7', clusterList: ['1.1.1.1', '2.2.2.2'] }],
    [peer('10.0.0.3', { routerId: '192.0.2.3' }), { originatorId: '192.0.2.7', clusterList: ['3.3.3.3'] }],
  ]);
  t.is(cl.bestPeer, '10.0.0.3');
  t.is(cl.reason, 'cluster-list-length');
  // Two reflectors of one cluster reflecting the same client route: identical but for the peer address.
  const pa = decide([
    [peer('10.0.0.12', { routerId: '192.0.2.12' }), { originatorId: '192.0.2.7', clusterList: ['1.1.1.1'] }],
    [peer('10.0.0.11', { routerId: '192.0.2.11' }), { originatorId: '192.0.2.7', clusterList: ['1.1.1.1'] }],
  ]);
  t.is(pa.bestPeer, '10.0.0.11');
  t.is(pa.reason, 'peer-address');
});

test('selectBest is order-independent', (t) => {
  const mk = (addr: string, a: PathAttributes): RoutePath => ({ prefix: P, source: 'peer', peer: peer(addr), attributes: { origin: 'igp', asPath: [], ...a }, since: 0 });
  const paths = [mk('10.0.0.5', { localPref: 100 }), mk('10.0.0.3', { localPref: 100 }), mk('10.0.0.4', { localPref: 50 })];
  const a = selectBest(paths, { asn: ASN, routerId: SELF })!;
  const b = selectBest([...paths].reverse(), { asn: ASN, routerId: SELF })!;
  t.is(a.best, b.best);
  t.is(a.reason, 'router-id');
  t.is(a.eliminated.get(paths[2]), 'local-pref');
});

test('best-path changes are reported, with the previous path; peer down removes its routes', (t) => {
  const r = rib();
  const a = peer('10.0.0.2');
  const b = peer('10.0.0.3');
  let ch = r.applyUpdate(a, update(P, { nextHop: '10.0.0.2' }));
  t.like(ch[0], { prefix: P, reason: 'only-path' });
  t.is(ch[0].best?.peer?.address, '10.0.0.2');
  ch = r.applyUpdate(b, update(P, { nextHop: '10.0.0.3', localPref: 300 }));
  t.is(ch[0].best?.peer?.address, '10.0.0.3');
  t.is(ch[0].previous?.peer?.address, '10.0.0.2');
  t.deepEqual(r.applyUpdate(a, update(P, { nextHop: '10.0.0.2' })), [], 're-announcing a loser changes nothing');
  t.deepEqual(r.applyUpdate(b, update(P, { nextHop: '10.0.0.3', localPref: 300 })), [], 'an identical re-announcement changes nothing');
  ch = r.peerDown('10.0.0.3');
  t.is(ch[0].best?.peer?.address, '10.0.0.2');
  ch = r.applyUpdate(a, { withdrawn: [P], attributes: {}, nlri: [] });
  t.deepEqual(ch.map((c) => [c.prefix, c.best]), [[P, undefined]]);
  t.deepEqual(r.routes(), []);
});

test('import: our ASN in AS_PATH, our ORIGINATOR_ID, our CLUSTER_ID, our next hop → rejected, counted', (t) => {
  const r = rib({ clusterId: '1.1.1.1' });
  const e = ebgp('10.0.0.2', 65001);
  r.applyUpdate(e, update('10.1.0.0/16', { asPath: seq(65001, ASN), nextHop: '10.0.0.2' }));
  const i = peer('10.0.0.3');
  r.applyUpdate(i, update('10.2.0.0/16', { nextHop: '10.0.0.3', originatorId: SELF, clusterList: ['2.2.2.2'] }));
  r.applyUpdate(i, update('10.3.0.0/16', { nextHop: '10.0.0.9', originatorId: '10.0.0.9', clusterList: ['2.2.2.2', '1.1.1.1'] }));
  r.applyUpdate(i, update('10.4.0.0/16', { nextHop: SELF }));
  r.applyUpdate(i, update('10.5.0.0/16', { nextHop: '10.0.0.3' }));
  t.deepEqual(
    [...r.adjRibIn('10.0.0.2'), ...r.adjRibIn('10.0.0.3')].map((x) => [x.path.prefix, x.rejected]),
    [
      ['10.1.0.0/16', 'as-path-loop'],
      ['10.2.0.0/16', 'originator-id-loop'],
      ['10.3.0.0/16', 'cluster-list-loop'],
      ['10.4.0.0/16', 'next-hop-local'],
      ['10.5.0.0/16', undefined],
    ],
  );
  t.deepEqual(r.counts('10.0.0.3'), { received: 4, accepted: 1, rejected: 3, preferred: 1, sent: 0 });
  t.deepEqual(r.routes().map((x) => x.prefix), ['10.5.0.0/16']);
});

test('export without reflection: iBGP split horizon; eBGP gets our AS prepended and next-hop-self', (t) => {
  const r = rib();
  const i1 = peer('10.0.0.2');
  const i2 = peer('10.0.0.3');
  const e1 = ebgp('10.0.0.4', 65001, { localAddress: '10.0.0.1' });
  r.applyUpdate(i1, update(P, { nextHop: '10.0.0.2', localPref: 120, med: 7 }));
  t.deepEqual(r.exportsFor(i2), { withdraw: [], announce: [] }, 'iBGP-learned is not sent to another iBGP peer');
  t.deepEqual(r.exportsFor(i1), { withdraw: [], announce: [] }, 'nor back to its source');
  t.deepEqual(r.exportsFor(e1).announce, [{ prefixes: [P], attributes: { origin: 'igp', asPath: seq(ASN), nextHop: '10.0.0.1' } }]);
  // eBGP-learned goes to iBGP peers with its next hop and a LOCAL_PREF.
  r.applyUpdate(e1, update('10.9.0.0/16', { asPath: seq(65001), nextHop: '10.0.0.4', med: 3 }));
  t.deepEqual(r.exportsFor(i2, ['10.9.0.0/16']).announce, [
    { prefixes: ['10.9.0.0/16'], attributes: { origin: 'igp', asPath: seq(65001), nextHop: '10.0.0.4', med: 3, localPref: 100 } },
  ]);
});

test('export: local announcements, next hop defaulting to our session address, LOCAL_PREF on iBGP only', (t) => {
  const r = rib();
  r.originate('10.244.1.0/24');
  r.originate('10.96.0.0/16', { nextHop: '10.0.0.1', med: 10, communities: [1] });
  const i = peer('10.0.0.2', { localAddress: '10.0.0.1' });
  t.deepEqual(r.exportsFor(i).announce, [
    { prefixes: ['10.96.0.0/16'], attributes: { origin: 'igp', asPath: [], nextHop: '10.0.0.1', med: 10, localPref: 100, communities: [1] } },
    { prefixes: ['10.244.1.0/24'], attributes: { origin: 'igp', asPath: [], nextHop: '10.0.0.1', localPref: 100 } },
  ]);
  const e = ebgp('192.0.2.2', 65009, { localAddress: '192.0.2.1' });
  t.deepEqual(r.exportsFor(e, ['10.96.0.0/16']).announce[0].attributes, { origin: 'igp', asPath: seq(ASN), nextHop: '192.0.2.1', med: 10, communities: [1] });
});

test('export: Adj-RIB-Out diffs (nothing twice; withdraw once; same attributes grouped)', (t) => {
  const r = rib();
  const i = peer('10.0.0.2');
  r.originate('10.1.0.0/16', { nextHop: '10.0.0.1' });
  r.originate('10.2.0.0/16', { nextHop: '10.0.0.1' });
  const first = r.exportsFor(i);
  t.is(first.announce.length, 1);
  t.deepEqual(first.announce[0].prefixes, ['10.1.0.0/16', '10.2.0.0/16']);
  t.deepEqual(r.exportsFor(i), { withdraw: [], announce: [] });
  r.withdrawLocal('10.1.0.0/16');
  t.deepEqual(r.exportsFor(i), { withdraw: ['10.1.0.0/16'], announce: [] });
  t.deepEqual(r.exportsFor(i), { withdraw: [], announce: [] });
  t.deepEqual(r.adjRibOut('10.0.0.2').map((x) => x.prefix), ['10.2.0.0/16']);
  r.resetAdjRibOut('10.0.0.2');
  t.deepEqual(r.exportsFor(i).announce[0].prefixes, ['10.2.0.0/16'], 'a refresh re-sends everything');
});

test('export: NO_ADVERTISE goes nowhere, NO_EXPORT stays inside the AS', (t) => {
  const r = rib();
  const src = ebgp('10.0.0.9', 65009);
  r.applyUpdate(src, update('10.1.0.0/16', { asPath: seq(65009), nextHop: '10.0.0.9', communities: [COMMUNITY_NO_ADVERTISE] }));
  r.applyUpdate(src, update('10.2.0.0/16', { asPath: seq(65009), nextHop: '10.0.0.9', communities: [COMMUNITY_NO_EXPORT] }));
  const i = peer('10.0.0.2');
  const e = ebgp('10.0.0.3', 65001);
  t.deepEqual(r.exportsFor(i).announce.flatMap((a) => a.prefixes), ['10.2.0.0/16']);
  t.deepEqual(r.exportsFor(e).announce, []);
});

test('export: unknown optional transitive attributes travel with the Partial bit; non-transitive ones stop', (t) => {
  const r = rib();
  const src = ebgp('10.0.0.9', 65009);
  r.applyUpdate(src, update(P, {
    asPath: seq(65009),
    nextHop: '10.0.0.9',
    other: [
      { flags: 0xc0, type: 32, value: Buffer.alloc(12, 1) },
      { flags: 0x80, type: 99, value: Buffer.from([1]) },
    ],
  }));
  const out = r.exportsFor(peer('10.0.0.2')).announce[0].attributes;
  t.deepEqual(out.other, [{ flags: 0xe0, type: 32, value: Buffer.alloc(12, 1) }]);
});

test('route reflection: client routes to everyone, non-client routes to clients only, ORIGINATOR_ID and CLUSTER_LIST added', (t) => {
  const r = rib({ clusterId: '1.0.0.1' });
  const c1 = peer('10.0.0.11', { rrClient: true, routerId: '192.0.2.11' });
  const c2 = peer('10.0.0.12', { rrClient: true, routerId: '192.0.2.12' });
  const n1 = peer('10.0.0.21', { routerId: '192.0.2.21' });
  const n2 = peer('10.0.0.22', { routerId: '192.0.2.22' });
  r.applyUpdate(c1, update('10.244.11.0/24', { nextHop: '10.0.0.11' }));
  r.applyUpdate(n1, update('10.244.21.0/24', { nextHop: '10.0.0.21' }));
  const reflected = { origin: 'igp', asPath: [], nextHop: '10.0.0.11', localPref: 100, originatorId: '192.0.2.11', clusterList: ['1.0.0.1'] };
  const fromNon = { origin: 'igp', asPath: [], nextHop: '10.0.0.21', localPref: 100, originatorId: '192.0.2.21', clusterList: ['1.0.0.1'] };
  t.deepEqual(r.exportsFor(c2).announce, [
    { prefixes: ['10.244.11.0/24'], attributes: reflected },
    { prefixes: ['10.244.21.0/24'], attributes: fromNon },
  ]);
  t.deepEqual(r.exportsFor(n2).announce, [{ prefixes: ['10.244.11.0/24'], attributes: reflected }], 'non-client → non-client is not reflected');
  t.deepEqual(r.exportsFor(c1).announce, [{ prefixes: ['10.244.21.0/24'], attributes: fromNon }], 'not back to the originating client');
  // A route already reflected once keeps its ORIGINATOR_ID and gets our cluster prepended.
  r.applyUpdate(c1, update('10.244.99.0/24', { nextHop: '10.0.0.99', originatorId: '192.0.2.99', clusterList: ['2.0.0.2'] }));
  t.like(r.exportsFor(c2, ['10.244.99.0/24']).announce[0].attributes, { originatorId: '192.0.2.99', clusterList: ['1.0.0.1', '2.0.0.2'] });
});

test('route reflection loop prevention: a second reflector of the same cluster drops the reflected copy', (t) => {
  const rr1 = rib({ clusterId: '1.0.0.1' });
  const rr2 = new Rib({ asn: ASN, routerId: '10.0.0.2', clusterId: '1.0.0.1' });
  const client = peer('10.0.0.11', { rrClient: true, routerId: '192.0.2.11' });
  rr1.applyUpdate(client, update(P, { nextHop: '10.0.0.11' }));
  const toRr2 = rr1.exportsFor(peer('10.0.0.2')).announce[0];
  t.deepEqual(toRr2.attributes.clusterList, ['1.0.0.1']);
  rr2.applyUpdate(peer(SELF), { withdrawn: [], attributes: toRr2.attributes, nlri: toRr2.prefixes });
  t.is(rr2.adjRibIn(SELF)[0].rejected, 'cluster-list-loop');
  // And the originator drops its own route reflected back to it.
  const orig = new Rib({ asn: ASN, routerId: '192.0.2.11' });
  orig.applyUpdate(peer(SELF), { withdrawn: [], attributes: toRr2.attributes, nlri: toRr2.prefixes });
  t.is(orig.adjRibIn(SELF)[0].rejected, 'originator-id-loop');
});
