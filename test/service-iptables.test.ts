/**
 * kube-proxy iptables mode: chain names, the rule set (golden text), and the
 * evaluation of those same rules (probabilities, affinity, masquerade,
 * traffic policies, REJECT/DROP).
 *
 * The goldens are written from kubernetes/kubernetes pkg/proxy/iptables/
 * proxier.go (v1.30/v1.31 syncProxyRules, writeServiceToEndpointRules) and the
 * expectations of its proxier_test.go TestOverallIPTablesRules (the
 * `ns3/svc3` NodePort service: KUBE-NODEPORTS -> KUBE-EXT -> "masquerade
 * traffic for ... external destinations" -> KUBE-SVC), with the chain hashes
 * computed independently (python: base32(sha256(b"default/nginxtcp" + ep))[:16]).
 * The save form applies iptables-save's normalization as seen on real nodes:
 * `-s/-d/-p` first with /32 masks, `--probability` re-read from the kernel's
 * 31-bit fixed point (`0.33333333349`), MARK as `--set-xmark`, REJECT with
 * `--reject-with icmp-port-unreachable`, user chains sorted by name.
 */
import test from 'ava';
import { createServiceProxyEngine, endpointChain, probability, serviceChains, type DnatDecision } from '../service-proxy/index.ts';
import { SeededRng } from '../common/rng.ts';
import { RuleWalker, type WalkPacket } from '../service-proxy/iptables/evaluate.ts';
import { rule, saveText, type Rule } from '../service-proxy/iptables/rules.ts';
import { ipv4ToInt } from '../packet/addr.ts';
import { engineOpts, nginx, pkt, slice, svc } from './helpers/service-fixtures.ts';

test('chain names: the well-known services hash as kube-proxy names them', (t) => {
  t.is(serviceChains('default/kubernetes:https', 'tcp').svc, 'KUBE-SVC-NPX46M4PTMTKRN6Y');
  t.is(serviceChains('kube-system/kube-dns:dns', 'udp').svc, 'KUBE-SVC-TCOU7JCQXEZGVUNU');
  t.is(serviceChains('default/nginx', 'tcp').svc, 'KUBE-SVC-2CMXP7HKUVJN7L6M');
  t.is(serviceChains('default/nginx', 'tcp').ext, 'KUBE-EXT-2CMXP7HKUVJN7L6M');
  t.is(serviceChains('default/nginx', 'tcp').svl, 'KUBE-SVL-2CMXP7HKUVJN7L6M');
  t.is(endpointChain('default/nginx', 'tcp', '10.244.1.2:80'), 'KUBE-SEP-L3TEFOPRMLPWJIHV');
  t.is(endpointChain('default/nginx', 'tcp', '10.244.2.2:80'), 'KUBE-SEP-HUXRPHBUO34UVPEF');
  t.is(endpointChain('default/nginx', 'tcp', '10.244.3.2:80'), 'KUBE-SEP-ZSLVYRYXHF4GAPCI');
});

test('probabilities are %0.10f of 1/(n-i), the last rule has none', (t) => {
  t.is(probability(3), '0.3333333333');
  t.is(probability(2), '0.5000000000');
  t.is(probability(4), '0.2500000000');
  const e = createServiceProxyEngine('iptables', engineOpts());
  const { service, slice: s } = nginx();
  e.update([service], [s]);
  const svcRules = e.table('nat').rules.filter((r) => r.chain === 'KUBE-SVC-2CMXP7HKUVJN7L6M' && r.target.kind === 'jump' && r.target.chain.startsWith('KUBE-SEP-'));
  const probs = svcRules.map((r) => r.matches.find((m) => m.kind === 'statistic'));
  t.deepEqual(
    probs.map((m) => (m?.kind === 'statistic' ? m.probability : 'none')),
    ['0.3333333333', '0.5000000000', 'none'],
  );
});

const GOLDEN_NAT_SAVE = `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-EXT-2CMXP7HKUVJN7L6M - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-PROXY-CANARY - [0:0]
:KUBE-SEP-HUXRPHBUO34UVPEF - [0:0]
:KUBE-SEP-L3TEFOPRMLPWJIHV - [0:0]
:KUBE-SEP-ZSLVYRYXHF4GAPCI - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-2CMXP7HKUVJN7L6M - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-EXT-2CMXP7HKUVJN7L6M -m comment --comment "masquerade traffic for default/nginx external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-2CMXP7HKUVJN7L6M -j KUBE-SVC-2CMXP7HKUVJN7L6M
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-NODEPORTS -p tcp -m comment --comment "default/nginx" -m tcp --dport 30080 -j KUBE-EXT-2CMXP7HKUVJN7L6M
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-SEP-HUXRPHBUO34UVPEF -s 10.244.2.2/32 -m comment --comment "default/nginx" -j KUBE-MARK-MASQ
-A KUBE-SEP-HUXRPHBUO34UVPEF -p tcp -m comment --comment "default/nginx" -m tcp -j DNAT --to-destination 10.244.2.2:80
-A KUBE-SEP-L3TEFOPRMLPWJIHV -s 10.244.1.2/32 -m comment --comment "default/nginx" -j KUBE-MARK-MASQ
-A KUBE-SEP-L3TEFOPRMLPWJIHV -p tcp -m comment --comment "default/nginx" -m tcp -j DNAT --to-destination 10.244.1.2:80
-A KUBE-SEP-ZSLVYRYXHF4GAPCI -s 10.244.3.2/32 -m comment --comment "default/nginx" -j KUBE-MARK-MASQ
-A KUBE-SEP-ZSLVYRYXHF4GAPCI -p tcp -m comment --comment "default/nginx" -m tcp -j DNAT --to-destination 10.244.3.2:80
-A KUBE-SERVICES -d 10.96.0.100/32 -p tcp -m comment --comment "default/nginx cluster IP" -m tcp --dport 80 -j KUBE-SVC-2CMXP7HKUVJN7L6M
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-SVC-2CMXP7HKUVJN7L6M ! -s 10.244.0.0/16 -d 10.96.0.100/32 -p tcp -m comment --comment "default/nginx cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ
-A KUBE-SVC-2CMXP7HKUVJN7L6M -m comment --comment "default/nginx -> 10.244.1.2:80" -m statistic --mode random --probability 0.33333333349 -j KUBE-SEP-L3TEFOPRMLPWJIHV
-A KUBE-SVC-2CMXP7HKUVJN7L6M -m comment --comment "default/nginx -> 10.244.2.2:80" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-HUXRPHBUO34UVPEF
-A KUBE-SVC-2CMXP7HKUVJN7L6M -m comment --comment "default/nginx -> 10.244.3.2:80" -j KUBE-SEP-ZSLVYRYXHF4GAPCI
COMMIT
`;

/** kube-proxy's own iptables-restore payload (proxier_test.go's format), in the order syncProxyRules writes it. */
const GOLDEN_NAT_RESTORE = `*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-EXT-2CMXP7HKUVJN7L6M - [0:0]
:KUBE-SVC-2CMXP7HKUVJN7L6M - [0:0]
:KUBE-SEP-L3TEFOPRMLPWJIHV - [0:0]
:KUBE-SEP-HUXRPHBUO34UVPEF - [0:0]
:KUBE-SEP-ZSLVYRYXHF4GAPCI - [0:0]
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-SERVICES -m comment --comment "default/nginx cluster IP" -m tcp -p tcp -d 10.96.0.100 --dport 80 -j KUBE-SVC-2CMXP7HKUVJN7L6M
-A KUBE-NODEPORTS -m comment --comment default/nginx -m tcp -p tcp --dport 30080 -j KUBE-EXT-2CMXP7HKUVJN7L6M
-A KUBE-SVC-2CMXP7HKUVJN7L6M -m comment --comment "default/nginx cluster IP" -m tcp -p tcp -d 10.96.0.100 --dport 80 ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ
-A KUBE-EXT-2CMXP7HKUVJN7L6M -m comment --comment "masquerade traffic for default/nginx external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-2CMXP7HKUVJN7L6M -j KUBE-SVC-2CMXP7HKUVJN7L6M
-A KUBE-SVC-2CMXP7HKUVJN7L6M -m comment --comment "default/nginx -> 10.244.1.2:80" -m statistic --mode random --probability 0.3333333333 -j KUBE-SEP-L3TEFOPRMLPWJIHV
-A KUBE-SVC-2CMXP7HKUVJN7L6M -m comment --comment "default/nginx -> 10.244.2.2:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-HUXRPHBUO34UVPEF
-A KUBE-SVC-2CMXP7HKUVJN7L6M -m comment --comment "default/nginx -> 10.244.3.2:80" -j KUBE-SEP-ZSLVYRYXHF4GAPCI
-A KUBE-SEP-L3TEFOPRMLPWJIHV -m comment --comment default/nginx -s 10.244.1.2 -j KUBE-MARK-MASQ
-A KUBE-SEP-L3TEFOPRMLPWJIHV -m comment --comment default/nginx -m tcp -p tcp -j DNAT --to-destination 10.244.1.2:80
-A KUBE-SEP-HUXRPHBUO34UVPEF -m comment --comment default/nginx -s 10.244.2.2 -j KUBE-MARK-MASQ
-A KUBE-SEP-HUXRPHBUO34UVPEF -m comment --comment default/nginx -m tcp -p tcp -j DNAT --to-destination 10.244.2.2:80
-A KUBE-SEP-ZSLVYRYXHF4GAPCI -m comment --comment default/nginx -s 10.244.3.2 -j KUBE-MARK-MASQ
-A KUBE-SEP-ZSLVYRYXHF4GAPCI -m comment --comment default/nginx -m tcp -p tcp -j DNAT --to-destination 10.244.3.2:80
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
COMMIT
`;

const GOLDEN_FILTER_SAVE = `*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-PROXY-CANARY - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
:KUBE-SERVICES - [0:0]
-A INPUT -j KUBE-FIREWALL
-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL
-A INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS
-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES
-A OUTPUT -j KUBE-FIREWALL
-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL
-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A KUBE-EXTERNAL-SERVICES -p tcp -m comment --comment "default/nginx has no endpoints" -m addrtype --dst-type LOCAL -m tcp --dport 30080 -j REJECT --reject-with icmp-port-unreachable
-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A KUBE-SERVICES -d 10.96.0.100/32 -p tcp -m comment --comment "default/nginx has no endpoints" -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable
COMMIT
`;

/** Line-by-line comparison, so a failure names the first differing line. */
function sameLines(t: { is(a: unknown, b: unknown, m?: string): void }, got: string, want: string): void {
  const g = got.split('\n');
  const w = want.split('\n');
  for (let i = 0; i < Math.max(g.length, w.length); i++) t.is(g[i], w[i], `line ${i + 1}`);
}

test('iptables-save -t nat for a 3-endpoint ClusterIP + NodePort service matches the golden, line by line', (t) => {
  const e = createServiceProxyEngine('iptables', engineOpts());
  const { service, slice: s } = nginx();
  e.update([service], [s]);
  sameLines(t, e.iptablesSave('nat'), GOLDEN_NAT_SAVE);
  sameLines(t, e.iptablesRestore('nat'), GOLDEN_NAT_RESTORE);
  const stamped = e.iptablesSave('nat', { stamp: new Date(Date.UTC(2026, 10, 25, 11, 30, 0)) }).split('\n');
  t.is(stamped[0], '# Generated by iptables-save v1.8.9 on Wed Nov 25 11:30:00 2026');
  t.is(stamped.at(-2), '# Completed on Wed Nov 25 11:30:00 2026');
});

test('no endpoints: the nat table keeps nothing of the service, the filter table REJECTs (golden), decide() rejects', (t) => {
  const e = createServiceProxyEngine('iptables', engineOpts());
  const { service } = nginx();
  e.update([service], [slice('nginx', [], [{ port: 80 }])]);
  sameLines(t, e.iptablesSave('filter'), GOLDEN_FILTER_SAVE);
  t.false(e.iptablesSave('nat').includes('KUBE-SVC-'));
  const d = e.decide(pkt('10.244.1.5', '10.96.0.100', 80));
  t.like(d, { kind: 'reject', reason: 'no-endpoints', icmp: 'port-unreachable' });
  t.true(d!.steps.at(-1)!.includes('default/nginx has no endpoints'));
  const np = e.decide(pkt('192.168.0.50', '192.168.0.11', 30080, { localDst: true }));
  t.like(np, { kind: 'reject', reason: 'no-endpoints' });
  // Without any Service object at all the address is nobody's: routing goes on.
  const empty = createServiceProxyEngine('iptables', engineOpts());
  t.is(empty.decide(pkt('10.244.1.5', '10.96.0.100', 80)), null);
  t.is(e.decide(pkt('10.244.1.5', '10.244.2.9', 80)), null, 'pod-to-pod traffic is not a service');
});

test('chi-square over 600 decisions from seed 1 on 3 endpoints is consistent with uniform (p > 0.01)', (t) => {
  const e = createServiceProxyEngine('iptables', engineOpts(1));
  const { service, slice: s } = nginx();
  e.update([service], [s]);
  const counts = new Map<string, number>();
  for (let i = 0; i < 600; i++) {
    const d = e.decide(pkt('10.244.1.5', '10.96.0.100', 80, { sport: 20000 + i })) as DnatDecision;
    counts.set(d.to.ip, (counts.get(d.to.ip) ?? 0) + 1);
  }
  const chi2 = [...counts.values()].reduce((s, o) => s + (o - 200) ** 2 / 200, 0);
  t.log(`counts ${JSON.stringify(Object.fromEntries(counts))}, chi-square ${chi2.toFixed(3)} (2 dof; p > 0.01 needs < 9.210)`);
  t.is(counts.size, 3);
  t.true(chi2 < 9.21);
  // Same seed, same picks: the run replays.
  const again = createServiceProxyEngine('iptables', engineOpts(1));
  again.update([service], [s]);
  const first = (again.decide(pkt('10.244.1.5', '10.96.0.100', 80, { sport: 20000 })) as DnatDecision).to.ip;
  const e2 = createServiceProxyEngine('iptables', engineOpts(1));
  e2.update([service], [s]);
  t.is((e2.decide(pkt('10.244.1.5', '10.96.0.100', 80, { sport: 20000 })) as DnatDecision).to.ip, first);
});

test('the seed is not cherry-picked: over 200 seeds the chi-square statistic has the chi-square(2) shape', (t) => {
  const { service, slice: s } = nginx();
  const chis: number[] = [];
  for (let seed = 1; seed <= 200; seed++) {
    const e = createServiceProxyEngine('iptables', engineOpts(seed));
    e.update([service], [s]);
    const c = new Map<string, number>();
    for (let i = 0; i < 600; i++) {
      const ip = (e.decide(pkt('10.244.1.5', '10.96.0.100', 80, { sport: 20000 + i })) as DnatDecision).to.ip;
      c.set(ip, (c.get(ip) ?? 0) + 1);
    }
    chis.push([...c.values()].reduce((a, o) => a + (o - 200) ** 2 / 200, 0));
  }
  chis.sort((a, b) => a - b);
  const tail = chis.filter((x) => x > 9.21).length / chis.length;
  t.log(`median ${chis[100].toFixed(3)} (chi-square(2): 1.386), share above 9.21: ${(tail * 100).toFixed(1)}% (expected 1%)`);
  t.true(chis[100] > 1.0 && chis[100] < 1.8);
  t.true(tail <= 0.04);
});

test('a pod reaching itself through its Service (hairpin) is masqueraded; other pod traffic is not', (t) => {
  const e = createServiceProxyEngine('iptables', engineOpts(7));
  const { service, slice: s } = nginx();
  e.update([service], [s]);
  let hairpin: DnatDecision | undefined;
  let other: DnatDecision | undefined;
  for (let i = 0; i < 60 && (!hairpin || !other); i++) {
    const d = e.decide(pkt('10.244.1.2', '10.96.0.100', 80, { sport: 30000 + i })) as DnatDecision;
    if (d.to.ip === '10.244.1.2') hairpin ??= d;
    else other ??= d;
  }
  t.truthy(hairpin && other);
  t.true(hairpin!.masquerade);
  t.true(hairpin!.steps.some((l) => l.includes('-s 10.244.1.2/32') && l.includes('KUBE-MARK-MASQ')));
  t.true(hairpin!.steps.some((l) => l.includes('-j MASQUERADE --random-fully')));
  t.false(other!.masquerade);
  t.like(hairpin, { service: 'default/nginx', servicePort: 'default/nginx', key: 'tcp 10.244.1.2:' + hairpin!.key.split(':')[1].split(' ')[0] + ' > 10.96.0.100:80' });
});

test('off-cluster sources to the ClusterIP and any NodePort traffic (Cluster policy) are masqueraded', (t) => {
  const e = createServiceProxyEngine('iptables', engineOpts());
  const { service, slice: s } = nginx();
  e.update([service], [s]);
  const fromNode = e.decide(pkt('192.168.0.11', '10.96.0.100', 80, { fromHost: true, fromLocalPod: false })) as DnatDecision;
  t.is(fromNode.kind, 'dnat');
  t.true(fromNode.masquerade, '! -s 10.244.0.0/16 -j KUBE-MARK-MASQ');
  const np = e.decide(pkt('192.168.0.50', '192.168.0.11', 30080, { localDst: true })) as DnatDecision;
  t.is(np.kind, 'dnat');
  t.true(np.masquerade);
  t.true(np.steps.some((l) => l.includes('KUBE-NODEPORTS -p tcp')));
  t.true(np.steps.some((l) => l.includes('masquerade traffic for default/nginx external destinations')));
  // A NodePort on an address that is not the node's goes nowhere.
  t.is(e.decide(pkt('192.168.0.50', '192.168.0.99', 30080)), null);
});

test('ClientIP affinity: -m recent pins a client to its endpoint until timeoutSeconds pass', (t) => {
  const opts = engineOpts(3);
  const e = createServiceProxyEngine('iptables', opts);
  const { service, slice: s } = nginx({ affinity: 60 });
  e.update([service], [s]);
  const save = e.iptablesSave('nat');
  t.regex(save, /-A KUBE-SVC-2CMXP7HKUVJN7L6M -m comment --comment "default\/nginx -> 10\.244\.1\.2:80" -m recent --rcheck --seconds 60 --reap --name KUBE-SEP-L3TEFOPRMLPWJIHV --mask 255\.255\.255\.255 --rsource -j KUBE-SEP-L3TEFOPRMLPWJIHV/);
  t.regex(save, /-A KUBE-SEP-L3TEFOPRMLPWJIHV -p tcp -m comment --comment "default\/nginx" -m recent --set --name KUBE-SEP-L3TEFOPRMLPWJIHV --mask 255\.255\.255\.255 --rsource -m tcp -j DNAT --to-destination 10\.244\.1\.2:80/);
  const first = e.decide(pkt('10.244.1.5', '10.96.0.100', 80, { sport: 1 })) as DnatDecision;
  for (let i = 2; i < 40; i++) {
    opts.clock.advance(1000);
    const d = e.decide(pkt('10.244.1.5', '10.96.0.100', 80, { sport: i })) as DnatDecision;
    t.is(d.to.ip, first.to.ip);
    t.true(d.steps.some((l) => l.includes('--rcheck')), 'pinned by the recent rule');
  }
  t.is(e.recentLists().get(endpointChain('default/nginx', 'tcp', `${first.to.ip}:80`))?.get('10.244.1.5'), opts.clock.now());
  // Another client draws its own endpoint.
  const other = e.decide(pkt('10.244.1.6', '10.96.0.100', 80)) as DnatDecision;
  t.is(other.kind, 'dnat');
  // 59 s after the last connection: still pinned; 61 s: the entry is stale, the statistic rules decide again.
  opts.clock.advance(59_000);
  t.is((e.decide(pkt('10.244.1.5', '10.96.0.100', 80, { sport: 100 })) as DnatDecision).to.ip, first.to.ip);
  opts.clock.advance(61_000);
  const after = e.decide(pkt('10.244.1.5', '10.96.0.100', 80, { sport: 101 })) as DnatDecision;
  t.false(after.steps.some((l) => l.includes('--rcheck')), 'the rcheck no longer matches');
  t.true(after.steps.some((l) => l.includes('-m recent --set')), 'the new choice is recorded again');
});

test('externalTrafficPolicy Local: NodePort goes to local endpoints only and keeps the source; none local -> DROP', (t) => {
  const mk = (nodeName: string, nodeIP: string) => {
    const e = createServiceProxyEngine('iptables', { ...engineOpts(5), nodeName, nodeIP, localAddresses: [] });
    const { service, slice: s } = nginx({ etp: 'Local' });
    e.update([service], [s]);
    return e;
  };
  const n1 = mk('node-1', '192.168.0.11');
  t.regex(n1.iptablesSave('nat'), /-A KUBE-EXT-2CMXP7HKUVJN7L6M -j KUBE-SVL-2CMXP7HKUVJN7L6M/);
  t.regex(n1.iptablesSave('nat'), /-A KUBE-EXT-2CMXP7HKUVJN7L6M -s 10\.244\.0\.0\/16 -m comment --comment "pod traffic for default\/nginx external destinations" -j KUBE-SVC-2CMXP7HKUVJN7L6M/);
  for (let i = 0; i < 20; i++) {
    const d = n1.decide(pkt('203.0.113.9', '192.168.0.11', 30080, { sport: 1000 + i, localDst: true })) as DnatDecision;
    t.is(d.to.ip, '10.244.1.2');
    t.false(d.masquerade, 'client source preserved');
  }
  const n2 = mk('node-2', '192.168.0.12');
  t.is((n2.decide(pkt('203.0.113.9', '192.168.0.12', 30080, { localDst: true })) as DnatDecision).to.ip, '10.244.2.2');
  const n4 = mk('node-4', '192.168.0.14');
  const dropped = n4.decide(pkt('203.0.113.9', '192.168.0.14', 30080, { localDst: true }));
  t.like(dropped, { kind: 'drop', reason: 'no-local-endpoints' });
  t.regex(n4.iptablesSave('filter'), /-A KUBE-EXTERNAL-SERVICES -p tcp -m comment --comment "default\/nginx has no local endpoints" -m addrtype --dst-type LOCAL -m tcp --dport 30080 -j DROP/);
  // A pod on node-4 going to the NodePort short-circuits to the cluster-wide chain.
  const fromPod = n4.decide(pkt('10.244.4.5', '192.168.0.14', 30080, { localDst: true })) as DnatDecision;
  t.is(fromPod.kind, 'dnat');
  // The node itself: masqueraded, routed to the cluster-wide chain.
  const fromHost = n4.decide(pkt('192.168.0.14', '192.168.0.14', 30080, { localDst: true, fromHost: true })) as DnatDecision;
  t.is(fromHost.kind, 'dnat');
  t.true(fromHost.masquerade);
  // The ClusterIP itself is unaffected by externalTrafficPolicy.
  t.is(n4.decide(pkt('10.244.4.5', '10.96.0.100', 80))?.kind, 'dnat');
});

test('internalTrafficPolicy Local: the ClusterIP reaches local endpoints only; none local -> DROP', (t) => {
  const { slice: s } = nginx();
  const service = svc('nginx', { clusterIP: '10.96.0.100', ports: [{ port: 80 }], itp: 'Local' });
  const n1 = createServiceProxyEngine('iptables', engineOpts(9));
  n1.update([service], [s]);
  t.regex(n1.iptablesSave('nat'), /-A KUBE-SERVICES -d 10\.96\.0\.100\/32 -p tcp -m comment --comment "default\/nginx cluster IP" -m tcp --dport 80 -j KUBE-SVL-2CMXP7HKUVJN7L6M/);
  for (let i = 0; i < 10; i++) t.is((n1.decide(pkt('10.244.1.9', '10.96.0.100', 80, { sport: i + 1 })) as DnatDecision).to.ip, '10.244.1.2');
  const n4 = createServiceProxyEngine('iptables', { ...engineOpts(9), nodeName: 'node-4' });
  n4.update([service], [s]);
  t.like(n4.decide(pkt('10.244.4.5', '10.96.0.100', 80)), { kind: 'drop', reason: 'no-local-endpoints' });
});

test('endpoints: not-ready ones are skipped; when none is ready, serving+terminating ones are used', (t) => {
  const e = createServiceProxyEngine('iptables', engineOpts());
  const service = svc('nginx', { clusterIP: '10.96.0.100', ports: [{ port: 80 }] });
  e.update([service], [slice('nginx', [['10.244.1.2', 'node-1', false], ['10.244.2.2', 'node-2']], [{ port: 80 }])]);
  for (let i = 0; i < 10; i++) t.is((e.decide(pkt('10.244.1.9', '10.96.0.100', 80, { sport: i + 1 })) as DnatDecision).to.ip, '10.244.2.2');
  e.update([service], [slice('nginx', [['10.244.1.2', 'node-1', true, true], ['10.244.2.2', 'node-2', false]], [{ port: 80 }])]);
  t.is((e.decide(pkt('10.244.1.9', '10.96.0.100', 80)) as DnatDecision).to.ip, '10.244.1.2');
});

test('named ports, UDP and several services: each gets its chains; kube-dns:dns is udp', (t) => {
  const e = createServiceProxyEngine('iptables', engineOpts());
  const dns = svc('kube-dns', { ns: 'kube-system', clusterIP: '10.96.0.10', ports: [{ name: 'dns', port: 53, protocol: 'UDP' }, { name: 'dns-tcp', port: 53, protocol: 'TCP' }] });
  const dnsSlice = slice('kube-dns', [['10.244.1.3', 'node-1']], [{ name: 'dns', port: 53, protocol: 'UDP' }, { name: 'dns-tcp', port: 53, protocol: 'TCP' }], 'kube-system');
  const { service, slice: s } = nginx();
  e.update([service, dns], [s, dnsSlice]);
  const save = e.iptablesSave('nat');
  t.regex(save, /-A KUBE-SERVICES -d 10\.96\.0\.10\/32 -p udp -m comment --comment "kube-system\/kube-dns:dns cluster IP" -m udp --dport 53 -j KUBE-SVC-TCOU7JCQXEZGVUNU/);
  const d = e.decide(pkt('10.244.1.5', '10.96.0.10', 53, { protocol: 'udp' })) as DnatDecision;
  t.like(d, { kind: 'dnat', to: { ip: '10.244.1.3', port: 53 }, service: 'kube-system/kube-dns', servicePort: 'kube-system/kube-dns:dns' });
  t.is((e.decide(pkt('10.244.1.5', '10.96.0.10', 53)) as DnatDecision).servicePort, 'kube-system/kube-dns:dns-tcp');
});

test('large clusters (> 1000 endpoints) drop the per-endpoint comments, as kube-proxy does', (t) => {
  const e = createServiceProxyEngine('iptables', engineOpts());
  const eps = Array.from({ length: 1001 }, (_, i) => [`10.244.${Math.floor(i / 200) + 1}.${(i % 200) + 2}`, 'node-2'] as [string, string]);
  e.update([svc('big', { clusterIP: '10.96.0.50', ports: [{ port: 80 }] })], [slice('big', eps, [{ port: 80 }])]);
  const sep = e.table('nat').rules.find((r) => r.chain.startsWith('KUBE-SEP-'))!;
  t.false(sep.matches.some((m) => m.kind === 'comment'));
  t.true(e.table('nat').rules.some((r) => r.chain === 'KUBE-SERVICES' && r.matches.some((m) => m.kind === 'comment')));
  t.is(e.decide(pkt('10.244.1.9', '10.96.0.50', 80))?.kind, 'dnat');
});

test('the (destination, protocol, port) index walks to exactly the verdicts of a rule-by-rule walk', (t) => {
  const rng = new SeededRng(11);
  const ips = Array.from({ length: 12 }, (_, i) => `10.96.0.${i + 1}`);
  const rules: Rule[] = [];
  for (let i = 0; i < 400; i++) {
    const b = rule('nat', 'KUBE-SERVICES').comment(`r${i}`, false);
    const kind = rng.int(0, 5);
    const proto = rng.chance(0.5) ? 'tcp' : 'udp';
    if (kind === 0) b.d(ips[rng.int(0, 11)]);
    else if (kind === 1) b.d(`10.96.0.0/${rng.int(24, 31)}`);
    else if (kind === 2) b.d(ips[rng.int(0, 11)], true);
    if (kind !== 3) b.m(proto).p(proto);
    if (kind !== 3 && rng.chance(0.8)) b.dport(rng.int(1, 4) * 10);
    if (kind === 5) b.s('10.244.0.0/16', rng.chance(0.5));
    rules.push(b.jump(`T${i}`));
  }
  const clock = { now: () => 0 };
  const fast = new RuleWalker(new SeededRng(1), clock, true);
  const slow = new RuleWalker(new SeededRng(1), clock, false);
  for (const w of [fast, slow]) w.load('nat', rules);
  const env = { isLocal: () => false };
  let fired = 0;
  for (let i = 0; i < 3000; i++) {
    const dst = ips[rng.int(0, 11)];
    const src = rng.chance(0.5) ? '10.244.1.5' : '192.168.0.9';
    const mk = (): WalkPacket => ({ src: ipv4ToInt(src), srcStr: src, dst: ipv4ToInt(dst), dstStr: dst, proto: rng.chance(0.5) ? 'tcp' : 'udp', sport: 1000, dport: rng.int(1, 4) * 10, mark: 0, ctDnat: false });
    const p = mk();
    const a: string[] = [];
    const b: string[] = [];
    fast.walk('nat', 'KUBE-SERVICES', { ...p }, env, a);
    slow.walk('nat', 'KUBE-SERVICES', { ...p }, env, b);
    t.deepEqual(a, b);
    if (a.length) fired++;
  }
  t.true(fired > 2000, `${fired} packets matched some rule`);
});

/** A random rule of chain `chain` of `n` chains: any match the compiled form packs or keeps as an object, any target; jumps only go forward (no loops), sometimes to a chain that is not there. */
function randomRule(rng: SeededRng, chain: number, n: number): Rule {
  const b = rule('nat', `C${chain}`);
  if (rng.chance(0.2)) b.comment(`c${rng.int(0, 9)}`, false);
  const proto = rng.chance(0.5) ? 'tcp' : 'udp';
  if (rng.chance(0.6)) {
    b.m(proto).p(proto);
    if (rng.chance(0.6)) b.dport(rng.int(1, 3) * 10);
  }
  if (rng.chance(0.3)) b.s(rng.chance(0.5) ? '10.244.0.0/16' : '192.168.0.9', rng.chance(0.3));
  if (rng.chance(0.3)) b.d(rng.chance(0.5) ? `10.96.0.${rng.int(1, 4)}` : '10.96.0.0/30', rng.chance(0.3));
  if (rng.chance(0.3)) b.statistic(probability(rng.int(1, 4)));
  if (rng.chance(0.15)) b.mark(0x4000, 0x4000, rng.chance(0.5));
  if (rng.chance(0.1)) b.addrtype('dst', rng.chance(0.5));
  if (rng.chance(0.1)) b.conntrack(['DNAT'], rng.chance(0.5));
  const k = rng.int(0, 9);
  if (k <= 2 && chain < n - 1) return b.jump(rng.chance(0.1) ? 'NOWHERE' : `C${rng.int(chain + 1, n - 1)}`);
  if (k === 3) return b.verdict('RETURN');
  if (k === 4) return b.markTarget(rng.chance(0.5) ? 'or' : 'xor', 0x4000);
  if (k === 5) return b.dnat(`10.244.${rng.int(1, 3)}.${rng.int(2, 9)}`, 8080);
  if (k === 6) return b.verdict(rng.chance(0.5) ? 'DROP' : 'REJECT');
  if (k === 7) return b.masquerade(rng.chance(0.5));
  if (k === 8) return b.verdict('ACCEPT');
  return b.noTarget();
}

test('the compiled walk (one arena per table, links by offset) walks exactly as the rule objects do, through chain replacements, misses and compactions', (t) => {
  const rng = new SeededRng(23);
  const clock = { now: () => 0 };
  const compiled = new RuleWalker(new SeededRng(5), clock, true);
  const reference = new RuleWalker(new SeededRng(5), clock, false);
  const walkers = [compiled, reference];
  const N = 8;
  const chainRules = (c: number): Rule[] => Array.from({ length: rng.int(0, 20) }, () => randomRule(rng, c, N));
  for (const w of walkers) w.load('nat', [rule('nat', 'PREROUTING').jump('C0')]);
  // A missing chain is loaded on demand by both, as kube-proxy's engine loads a service's chains.
  let lazy = 0;
  const onMissing = (w: RuleWalker) => (_table: string, chain: string) => {
    if (chain !== `C${N - 1}`) return false;
    lazy++;
    w.setChain('nat', chain, [rule('nat', chain).dnat('10.244.9.9', 80)]);
    return true;
  };
  for (const w of walkers) w.onMissingChain = onMissing(w);
  let walks = 0;
  const verdicts = new Set<string>();
  for (let round = 0; round < 3000; round++) {
    // Replace (or remove) one chain in both: a chain of up to 20 rules, so dead space outgrows the live chains many times over.
    const c = rng.int(0, N - 1);
    const rules = chainRules(c);
    for (const w of walkers) w.setChain('nat', `C${c}`, rules);
    for (let i = 0; i < 3; i++) {
      const src = rng.chance(0.5) ? '10.244.1.5' : '192.168.0.9';
      const dst = `10.96.0.${rng.int(1, 4)}`;
      const p: WalkPacket = { src: ipv4ToInt(src), srcStr: src, dst: ipv4ToInt(dst), dstStr: dst, proto: rng.chance(0.5) ? 'tcp' : 'udp', sport: 1000, dport: rng.int(1, 3) * 10, mark: rng.chance(0.3) ? 0x4000 : 0, ctDnat: rng.chance(0.3) };
      const local = rng.chance(0.5);
      const env = { isLocal: () => local };
      const steps: string[][] = [[], []];
      const pkts = [{ ...p }, { ...p }];
      const out = walkers.map((w, j) => w.walk('nat', 'PREROUTING', pkts[j], env, steps[j]));
      const show = (v: (typeof out)[number]) => ('rule' in v ? { ...v, rule: saveText(v.rule) } : v);
      t.deepEqual(show(out[0]), show(out[1]));
      t.deepEqual(steps[0], steps[1]);
      t.is(pkts[0].mark, pkts[1].mark);
      verdicts.add(out[0].kind);
      walks++;
    }
  }
  t.is(walks, 9000);
  t.deepEqual([...verdicts].sort(), ['accept', 'dnat', 'drop', 'masquerade', 'reject']);
  t.true(lazy > 0, 'chains were loaded on demand');
});

test('a partial sync (only changed services re-rendered) yields the same tables as a fresh full sync', (t) => {
  const { service: web, slice: webSlice } = nginx();
  const dns = svc('kube-dns', { ns: 'kube-system', clusterIP: '10.96.0.10', ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] });
  const dnsSlice = slice('kube-dns', [['10.244.1.3', 'node-1']], [{ name: 'dns', port: 53, protocol: 'UDP' }], 'kube-system');
  const other = svc('other', { clusterIP: '10.96.0.20', ports: [{ port: 8080 }], affinity: 100 });
  const otherSlice = slice('other', [['10.244.2.9', 'node-2']], [{ port: 8080 }]);
  const e = createServiceProxyEngine('iptables', engineOpts());
  e.update([web, dns], [webSlice, dnsSlice]);
  e.update([web, dns, other], [webSlice, dnsSlice, otherSlice]);
  e.update([web, other], [slice('nginx', [['10.244.2.2', 'node-2']], [{ port: 80 }]), otherSlice]);
  const fresh = createServiceProxyEngine('iptables', engineOpts());
  fresh.update([web, other], [slice('nginx', [['10.244.2.2', 'node-2']], [{ port: 80 }]), otherSlice]);
  for (const table of ['nat', 'filter'] as const) {
    t.is(e.iptablesSave(table), fresh.iptablesSave(table));
    t.is(e.iptablesRestore(table), fresh.iptablesRestore(table));
  }
  t.is(e.decide(pkt('10.244.1.5', '10.96.0.10', 53, { protocol: 'udp' })), null, 'the deleted service is gone from the walker too');
  t.is((e.decide(pkt('10.244.1.5', '10.96.0.100', 80)) as DnatDecision).to.ip, '10.244.2.2');
});

test('trace: false skips the step text (the fast path) without changing the decision', (t) => {
  const a = createServiceProxyEngine('iptables', engineOpts(21));
  const b = createServiceProxyEngine('iptables', engineOpts(21));
  const { service, slice: s } = nginx();
  a.update([service], [s]);
  b.update([service], [s]);
  for (let i = 0; i < 20; i++) {
    const x = a.decide(pkt('10.244.1.5', '10.96.0.100', 80, { sport: i + 1 })) as DnatDecision;
    const y = b.decide({ ...pkt('10.244.1.5', '10.96.0.100', 80, { sport: i + 1 }), trace: false }) as DnatDecision;
    t.deepEqual({ ...y, steps: x.steps }, x);
    t.deepEqual(y.steps, []);
  }
});
