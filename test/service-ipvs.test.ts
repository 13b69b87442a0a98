/**
 * kube-proxy ipvs mode: virtual servers, schedulers with the kernel's
 * semantics, persistence, `ipvsadm -Ln` output, ipsets and the iptables glue
 * (pkg/proxy/ipvs/proxier.go v1.30/v1.31 writeIptablesRules), kube-ipvs0.
 */
import test from 'ava';
import { createServiceProxyEngine, type DnatDecision, type IpvsSchedulerName } from '../service-proxy/index.ts';
import { hash32 } from '../service-proxy/ipvs/schedulers.ts';
import { engineOpts, nginx, pkt, slice, svc } from './helpers/service-fixtures.ts';

const VS = 'TCP 10.96.0.100:80';

function engine(scheduler: IpvsSchedulerName = 'rr', seed = 1, extra: Parameters<typeof nginx>[0] = {}) {
  const opts = engineOpts(seed, { ipvsScheduler: scheduler });
  const e = createServiceProxyEngine('ipvs', opts);
  const { service, slice: s } = nginx(extra);
  e.update([service], [s]);
  return { e, clock: opts.clock };
}

const to = (d: unknown) => (d as DnatDecision).to.ip;

test('ipvsadm -Ln prints exactly what ipvsadm prints (header, services sorted, real servers padded)', (t) => {
  const { e } = engine('rr', 1, { affinity: 10800 });
  const want = [
    'IP Virtual Server version 1.2.1 (size=4096)',
    'Prot LocalAddress:Port Scheduler Flags',
    '  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn',
    'TCP  10.96.0.100:80 rr persistent 10800',
    '  -> 10.244.1.2:80                Masq    1      0          0         ',
    '  -> 10.244.2.2:80                Masq    1      0          0         ',
    '  -> 10.244.3.2:80                Masq    1      0          0         ',
    'TCP  10.244.1.1:30080 rr persistent 10800',
    '  -> 10.244.1.2:80                Masq    1      0          0         ',
    '  -> 10.244.2.2:80                Masq    1      0          0         ',
    '  -> 10.244.3.2:80                Masq    1      0          0         ',
    'TCP  192.168.0.11:30080 rr persistent 10800',
    '  -> 10.244.1.2:80                Masq    1      0          0         ',
    '  -> 10.244.2.2:80                Masq    1      0          0         ',
    '  -> 10.244.3.2:80                Masq    1      0          0         ',
    '',
  ];
  t.deepEqual(e.ipvsadmList().split('\n'), want);
  t.deepEqual(e.dummyAddresses(), ['10.96.0.100/32']);
});

test('the iptables glue of ipvs mode (iptables-save -t nat), ipsets and kube-ipvs0', (t) => {
  const { e } = engine();
  const want = `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-LOAD-BALANCER - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-NODE-PORT - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-PROXY-CANARY - [0:0]
:KUBE-SERVICES - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-LOAD-BALANCER -j KUBE-MARK-MASQ
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-NODE-PORT -p tcp -m comment --comment "Kubernetes nodeport TCP port for masquerade purpose" -m set --match-set KUBE-NODE-PORT-TCP dst -j KUBE-MARK-MASQ
-A KUBE-POSTROUTING -m comment --comment "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose" -m set --match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-SERVICES -s 127.0.0.0/8 -j RETURN
-A KUBE-SERVICES ! -s 10.244.0.0/16 -m comment --comment "Kubernetes service cluster ip + port for masquerade purpose" -m set --match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ
-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT
-A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT
COMMIT
`;
  t.is(e.iptablesSave('nat'), want);
  t.regex(e.iptablesSave('filter'), /-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set KUBE-IPVS-IPS dst -j REJECT --reject-with icmp-port-unreachable/);
  const list = e.ipsetList('KUBE-CLUSTER-IP').split('\n');
  t.deepEqual(list.slice(0, 2), ['Name: KUBE-CLUSTER-IP', 'Type: hash:ip,port']);
  t.is(list[3], 'Header: family inet hashsize 1024 maxelem 65536');
  t.is(list[6], 'Number of entries: 1');
  t.deepEqual(list.slice(7, 9), ['Members:', '10.96.0.100,tcp:80']);
  t.regex(e.ipsetList('KUBE-NODE-PORT-TCP'), /Type: bitmap:port\n.*\nHeader: range 0-65535\n[^]*Members:\n30080\n/);
  t.regex(e.ipsetList('KUBE-LOOP-BACK'), /Members:\n10\.244\.1\.2,tcp:80,10\.244\.1\.2\n/, 'only local endpoints are in the hairpin set');
  t.regex(e.ipsetList(), /Name: KUBE-IPVS-IPS\nType: hash:ip\n[^]*Members:\n10\.96\.0\.100\n/);
});

test('rr: exact rotation over the real servers, in list order', (t) => {
  const { e } = engine('rr');
  const got = Array.from({ length: 7 }, (_, i) => to(e.decide(pkt('10.244.1.5', '10.96.0.100', 80, { sport: 100 + i }))));
  t.deepEqual(got, ['10.244.1.2', '10.244.2.2', '10.244.3.2', '10.244.1.2', '10.244.2.2', '10.244.3.2', '10.244.1.2']);
  const d = e.decide(pkt('10.244.1.5', '10.96.0.100', 80, { sport: 1 })) as DnatDecision;
  t.true(d.steps.some((l) => l.startsWith('ipvs TCP  10.96.0.100:80 rr -> 10.244.2.2:80 Masq weight 1')));
  t.like(d, { service: 'default/nginx', servicePort: 'default/nginx', masquerade: false });
});

test('wrr: weights 3:1:0 serve A three times per B and never the quiesced C', (t) => {
  const { e } = engine('wrr');
  e.setWeight(VS, '10.244.1.2:80', 3);
  e.setWeight(VS, '10.244.3.2:80', 0);
  const got = Array.from({ length: 12 }, (_, i) => to(e.decide(pkt('10.244.1.5', '10.96.0.100', 80, { sport: 100 + i }))).split('.')[2]);
  // ip_vs_wrr_dest_changed keeps the current weight (1, from the all-1 start) when it is <= the new maximum,
  // so the first pass serves every dest of weight >= 1 once, then the cycles are A A A B.
  t.is(got.join(''), '121112111211');
  t.is(got.filter((x) => x === '1').length, 9);
  t.false(got.includes('3'));
  t.regex(e.ipvsadmList(), /TCP {2}10\.96\.0\.100:80 wrr\n {2}-> 10\.244\.1\.2:80 {16}Masq {4}3 {6}/);
  // A sync from kube-proxy keeps manual weights, as on a node (only a restart resets them).
  const { service, slice: s } = nginx();
  e.update([service], [s]);
  t.is(e.virtualServer(VS)!.dests[0].weight, 3);
});

test('lc and wlc count connections: (active << 8) + inactive, weighted by cross products', (t) => {
  const { e } = engine('lc');
  const open = (sport: number) => {
    const d = e.decide(pkt('10.244.1.5', '10.96.0.100', 80, { sport })) as DnatDecision;
    e.connectionOpened(d.key);
    return d;
  };
  const a = open(1);
  const b = open(2);
  const c = open(3);
  t.deepEqual([a, b, c].map(to), ['10.244.1.2', '10.244.2.2', '10.244.3.2'], 'each empty server in turn');
  const d4 = open(4);
  t.is(to(d4), '10.244.1.2', 'a tie: the first in the list');
  e.connectionClosed(b.key);
  t.is(to(e.decide(pkt('10.244.1.5', '10.96.0.100', 80, { sport: 5 }))), '10.244.2.2', 'the server that lost a connection is now least loaded');
  t.regex(e.ipvsadmList(), /-> 10\.244\.1\.2:80 {16}Masq {4}1 {6}2 {10}0 {9}\n {2}-> 10\.244\.2\.2:80 {16}Masq {4}1 {6}0 {10}1 {9}\n/);
  // An inactive (not yet established) connection weighs 1/256 of an active one.
  const { e: w } = engine('wlc');
  w.setWeight(VS, '10.244.1.2:80', 4);
  const openW = (sport: number) => {
    const d = w.decide(pkt('10.244.1.5', '10.96.0.100', 80, { sport })) as DnatDecision;
    w.connectionOpened(d.key);
    return to(d);
  };
  // Weight 4 vs 1 vs 1: the heavy server takes 4 connections for each one of the others.
  const seq = Array.from({ length: 12 }, (_, i) => openW(10 + i).split('.')[2]);
  const count = (n: string) => seq.filter((x) => x === n).length;
  t.is(count('1'), 8);
  t.is(count('2'), 2);
  t.is(count('3'), 2);
});

test('sed and nq: shortest expected delay, and nq sends to an idle server first', (t) => {
  const { e: sed } = engine('sed');
  sed.setWeight(VS, '10.244.1.2:80', 3);
  const first = sed.decide(pkt('10.244.1.5', '10.96.0.100', 80, { sport: 1 })) as DnatDecision;
  sed.connectionOpened(first.key);
  t.is(to(first), '10.244.1.2', '(0+1)/3 beats (0+1)/1');
  const { e: nq } = engine('nq');
  nq.setWeight(VS, '10.244.1.2:80', 3);
  const n1 = nq.decide(pkt('10.244.1.5', '10.96.0.100', 80, { sport: 1 })) as DnatDecision;
  nq.connectionOpened(n1.key);
  t.is(to(n1), '10.244.1.2');
  t.is(to(nq.decide(pkt('10.244.1.5', '10.96.0.100', 80, { sport: 2 }))), '10.244.2.2', 'an idle server wins over the busy heavy one');
});

test('sh: a client always lands on the same server; clients spread over all of them', (t) => {
  const { e } = engine('sh');
  const seen = new Set<string>();
  for (let c = 1; c <= 40; c++) {
    const client = `10.244.${1 + (c % 3)}.${10 + c}`;
    const first = to(e.decide(pkt(client, '10.96.0.100', 80, { sport: 1000 })));
    for (let i = 1; i < 5; i++) t.is(to(e.decide(pkt(client, '10.96.0.100', 80, { sport: 1000 + i }))), first);
    seen.add(first);
  }
  t.is(seen.size, 3);
  t.is(hash32(0, 8), 0);
  t.is(hash32(1, 8), 0x61, 'hash_32(1, 8) = GOLDEN_RATIO_32 >> 24');
});

test('dh: every client of one virtual server goes to the server its destination address hashes to', (t) => {
  const { e } = engine('dh');
  const picks = new Set<string>();
  for (let c = 1; c <= 30; c++) picks.add(to(e.decide(pkt(`10.244.2.${c}`, '10.96.0.100', 80, { sport: 2000 + c }))));
  t.is(picks.size, 1);
  // The NodePort virtual server has another destination address, hence its own bucket.
  const np = to(e.decide(pkt('203.0.113.7', '192.168.0.11', 30080, { localDst: true })));
  t.truthy(np);
});

test('persistence (ClientIP affinity): pinned while the template lives, rescheduled after timeout', (t) => {
  const { e, clock } = engine('rr', 1, { affinity: 60 });
  const first = e.decide(pkt('10.244.1.5', '10.96.0.100', 80, { sport: 1 })) as DnatDecision;
  e.connectionOpened(first.key);
  for (let i = 2; i <= 6; i++) {
    const d = e.decide(pkt('10.244.1.5', '10.96.0.100', 80, { sport: i })) as DnatDecision;
    t.is(d.to.ip, first.to.ip);
    t.true(d.steps.some((l) => l.includes('persistence template for client 10.244.1.5')));
    e.connectionClosed(d.key);
  }
  t.not(to(e.decide(pkt('10.244.1.6', '10.96.0.100', 80, { sport: 1 }))), first.to.ip, 'another client is scheduled by rr');
  // The template outlives its timeout while it still controls the open connection.
  clock.advance(120_000);
  t.is(to(e.decide(pkt('10.244.1.5', '10.96.0.100', 80, { sport: 50 }))), first.to.ip);
  e.connectionClosed(first.key);
  for (const c of [...Array(10).keys()]) e.connectionClosed(`tcp 10.244.1.5:${c} > 10.96.0.100:80`);
  e.connectionClosed('tcp 10.244.1.5:50 > 10.96.0.100:80');
  clock.advance(59_000);
  t.is(to(e.decide(pkt('10.244.1.5', '10.96.0.100', 80, { sport: 51 }))), first.to.ip, 'reused within 60 s of last use');
  e.connectionClosed('tcp 10.244.1.5:51 > 10.96.0.100:80');
  clock.advance(61_000);
  const after = e.decide(pkt('10.244.1.5', '10.96.0.100', 80, { sport: 52 })) as DnatDecision;
  t.true(after.steps.some((l) => l.includes('new persistence template')), 'expired: scheduled again');
});

test('no endpoints: the virtual server exists without real servers and the kernel answers port unreachable', (t) => {
  const e = createServiceProxyEngine('ipvs', engineOpts());
  const { service } = nginx();
  e.update([service], [slice('nginx', [], [{ port: 80 }])]);
  t.regex(e.ipvsadmList(), /TCP {2}10\.96\.0\.100:80 rr\nTCP/);
  const d = e.decide(pkt('10.244.1.5', '10.96.0.100', 80));
  t.like(d, { kind: 'reject', reason: 'no-endpoints', icmp: 'port-unreachable' });
  t.like(e.decide(pkt('10.244.1.5', '10.96.0.100', 81)), { kind: 'reject', reason: 'not-a-service-port' });
  t.is(e.decide(pkt('10.244.1.5', '10.244.2.9', 80)), null);
});

test('masquerade: hairpin via KUBE-LOOP-BACK, NodePort via KUBE-NODE-PORT-TCP, not for pod-to-ClusterIP', (t) => {
  const { e } = engine('rr');
  let hairpin: DnatDecision | undefined;
  for (let i = 0; i < 3 && !hairpin; i++) {
    const d = e.decide(pkt('10.244.1.2', '10.96.0.100', 80, { sport: 10 + i })) as DnatDecision;
    if (d.to.ip === '10.244.1.2') hairpin = d;
    else t.false(d.masquerade);
  }
  t.true(hairpin!.masquerade);
  t.true(hairpin!.steps.some((l) => l.includes('KUBE-LOOP-BACK dst,dst,src -j MASQUERADE')));
  const np = e.decide(pkt('203.0.113.7', '192.168.0.11', 30080, { localDst: true })) as DnatDecision;
  t.true(np.masquerade);
  t.true(np.steps.some((l) => l.includes('KUBE-NODE-PORT-TCP dst -j KUBE-MARK-MASQ')));
});

test('externalTrafficPolicy Local: local real servers only, no masquerade; a node without any falls back to all', (t) => {
  const { e } = engine('rr', 1, { etp: 'Local' });
  t.regex(e.ipvsadmList(), /TCP {2}192\.168\.0\.11:30080 rr\n {2}-> 10\.244\.1\.2:80 [^\n]*\n(?! {2}->)/);
  for (let i = 0; i < 4; i++) {
    const d = e.decide(pkt('203.0.113.7', '192.168.0.11', 30080, { sport: i + 1, localDst: true })) as DnatDecision;
    t.is(d.to.ip, '10.244.1.2');
    t.false(d.masquerade);
  }
  const n4 = createServiceProxyEngine('ipvs', { ...engineOpts(), nodeName: 'node-4', nodeIP: '192.168.0.14', localAddresses: [] });
  const { service, slice: s } = nginx({ etp: 'Local' });
  n4.update([service], [s]);
  t.is(n4.virtualServer('TCP 192.168.0.14:30080')!.dests.length, 3, 'kubernetes#97081: all endpoints when none is local');
});

test('graceful termination: a removed endpoint with connections stays at weight 0 until they close', (t) => {
  const { e } = engine('rr');
  const d = e.decide(pkt('10.244.1.5', '10.96.0.100', 80, { sport: 1 })) as DnatDecision;
  e.connectionOpened(d.key);
  t.is(d.to.ip, '10.244.1.2');
  const { service } = nginx();
  e.update([service], [slice('nginx', [['10.244.2.2', 'node-2'], ['10.244.3.2', 'node-3']], [{ port: 80 }])]);
  t.regex(e.ipvsadmList(), /-> 10\.244\.1\.2:80 {16}Masq {4}0 {6}1 {10}0 {9}\n/);
  for (let i = 0; i < 6; i++) t.not(to(e.decide(pkt('10.244.1.5', '10.96.0.100', 80, { sport: 10 + i }))), '10.244.1.2');
  e.connectionClosed(d.key);
  t.false(e.ipvsadmList().includes('10.244.1.2:80'));
});

test('udp services are their own virtual servers; UDP connections count as inactive', (t) => {
  const e = createServiceProxyEngine('ipvs', engineOpts());
  const dns = svc('kube-dns', { ns: 'kube-system', clusterIP: '10.96.0.10', ports: [{ name: 'dns', port: 53, protocol: 'UDP' }, { name: 'dns-tcp', port: 53 }] });
  e.update([dns], [slice('kube-dns', [['10.244.1.3', 'node-1']], [{ name: 'dns', port: 53, protocol: 'UDP' }, { name: 'dns-tcp', port: 53 }], 'kube-system')]);
  const lines = e.ipvsadmList().split('\n');
  t.is(lines[3], 'TCP  10.96.0.10:53 rr');
  t.is(lines[5], 'UDP  10.96.0.10:53 rr');
  const d = e.decide(pkt('10.244.1.5', '10.96.0.10', 53, { protocol: 'udp' })) as DnatDecision;
  t.like(d, { kind: 'dnat', servicePort: 'kube-system/kube-dns:dns' });
  t.regex(e.ipvsadmList(), /UDP {2}10\.96\.0\.10:53 rr\n {2}-> 10\.244\.1\.3:53 {16}Masq {4}1 {6}0 {10}1 {9}\n/);
});
