/**
 * kube-proxy's LoadBalancer rules, as v1.30 lays them out: the
 * "loadbalancer IP" capture in KUBE-SERVICES to KUBE-EXT (Cluster) whose
 * last hop is KUBE-SVL (Local), KUBE-FW with loadBalancerSourceRanges
 * (allowed sources on to KUBE-EXT, the rest dropped by KUBE-PROXY-FIREWALL),
 * KUBE-EXTERNAL-SERVICES for an LB IP without endpoints; and IPVS's virtual
 * server on the LB IP, bound on kube-ipvs0, with the KUBE-LOAD-BALANCER sets.
 */
import test from 'ava';
import type { KubeObject } from '../control-plane/types.ts';
import { createServiceProxyEngine, serviceChains, type DnatDecision } from '../service-proxy/index.ts';
import { engineOpts, pkt, slice, svc } from './helpers/service-fixtures.ts';

function lb(name: string, ip: string, extra: Record<string, unknown> = {}): KubeObject {
  const s = svc(name, { type: 'NodePort', clusterIP: '10.96.0.50', ports: [{ port: 80, nodePort: 30080 }] });
  (s.spec as Record<string, unknown>).type = 'LoadBalancer';
  Object.assign(s.spec as Record<string, unknown>, extra);
  s.status = { loadBalancer: { ingress: [{ ip, ipMode: 'VIP' }] } };
  return s;
}
const eps = slice('web', [['10.244.1.2', 'node-1'], ['10.244.2.2', 'node-2']], [{ port: 80 }]);

test('Cluster policy: KUBE-SERVICES captures the LB IP into KUBE-EXT, which masquerades and goes to KUBE-SVC', (t) => {
  const e = createServiceProxyEngine('iptables', engineOpts());
  e.update([lb('web', '192.0.2.200')], [eps]);
  const c = serviceChains('default/web', 'tcp');
  const nat = e.iptablesSave('nat');
  t.true(nat.includes(`-A KUBE-SERVICES -d 192.0.2.200/32 -p tcp -m comment --comment "default/web loadbalancer IP" -m tcp --dport 80 -j ${c.ext}\n`), nat);
  t.true(nat.includes(`-A KUBE-NODEPORTS -p tcp -m comment --comment "default/web" -m tcp --dport 30080 -j ${c.ext}\n`));
  t.true(nat.includes(`-A ${c.ext} -m comment --comment "masquerade traffic for default/web external destinations" -j KUBE-MARK-MASQ\n-A ${c.ext} -j ${c.svc}\n`));
  t.false(nat.includes('KUBE-FW-'));
  // A client outside the cluster reaching the LB IP on this node: DNAT to an endpoint, masqueraded.
  const d = e.decide(pkt('203.0.113.1', '192.0.2.200', 80)) as DnatDecision;
  t.is(d.kind, 'dnat');
  t.true(d.masquerade);
  t.true(d.steps.some((s) => s.includes(c.ext)), d.steps.join('\n'));
});

test('Local policy: KUBE-EXT ends in KUBE-SVL with the local endpoint only, no masquerade', (t) => {
  const e = createServiceProxyEngine('iptables', engineOpts());
  e.update([lb('web', '192.0.2.200', { externalTrafficPolicy: 'Local' })], [eps]);
  const c = serviceChains('default/web', 'tcp');
  const nat = e.iptablesSave('nat');
  t.true(nat.includes(`-A ${c.ext} -j ${c.svl}\n`), nat);
  t.true(nat.includes(`-A ${c.svl} -m comment --comment "default/web -> 10.244.1.2:80" -j KUBE-SEP-`));
  for (let i = 0; i < 5; i++) {
    const d = e.decide(pkt('203.0.113.7', '192.0.2.200', 80, { sport: 41000 + i })) as DnatDecision;
    t.is(d.to.ip, '10.244.1.2');
    t.false(d.masquerade, 'the client address reaches the pod');
  }
});

test('loadBalancerSourceRanges: KUBE-FW lets the ranges through and KUBE-PROXY-FIREWALL drops the rest', (t) => {
  const e = createServiceProxyEngine('iptables', engineOpts());
  e.update([lb('web', '192.0.2.200', { loadBalancerSourceRanges: ['203.0.113.0/28'] })], [eps]);
  const c = serviceChains('default/web', 'tcp');
  const nat = e.iptablesSave('nat');
  t.true(nat.includes(`-A KUBE-SERVICES -d 192.0.2.200/32 -p tcp -m comment --comment "default/web loadbalancer IP" -m tcp --dport 80 -j ${c.fw}\n`), nat);
  t.true(nat.includes(`-A ${c.fw} -s 203.0.113.0/28 -m comment --comment "default/web loadbalancer IP" -j ${c.ext}\n`), nat);
  t.true(nat.includes(`-A ${c.fw} -m comment --comment "other traffic to default/web will be dropped by KUBE-PROXY-FIREWALL"\n`), nat);
  const filter = e.iptablesSave('filter');
  t.true(filter.includes(`-A KUBE-PROXY-FIREWALL -d 192.0.2.200/32 -p tcp -m comment --comment "default/web traffic not accepted by ${c.fw}" -m tcp --dport 80 -j DROP\n`), filter);
  t.is(e.decide(pkt('203.0.113.5', '192.0.2.200', 80))?.kind, 'dnat');
  t.is(e.decide(pkt('198.51.100.9', '192.0.2.200', 80))?.kind, 'drop');
});

test('no endpoints: the LB IP is rejected in KUBE-EXTERNAL-SERVICES', (t) => {
  const e = createServiceProxyEngine('iptables', engineOpts());
  e.update([lb('web', '192.0.2.200')], []);
  const filter = e.iptablesSave('filter');
  t.true(filter.includes('-A KUBE-EXTERNAL-SERVICES -d 192.0.2.200/32 -p tcp -m comment --comment "default/web has no endpoints" -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable\n'), filter);
  t.is(e.decide(pkt('203.0.113.1', '192.0.2.200', 80))?.kind, 'reject');
});

test('IPVS: a virtual server on the LB IP, bound on kube-ipvs0, in KUBE-LOAD-BALANCER', (t) => {
  const e = createServiceProxyEngine('ipvs', engineOpts());
  e.update([lb('web', '192.0.2.200', { externalTrafficPolicy: 'Local' })], [eps]);
  const out = e.views.ipvsadm!();
  t.regex(out, /TCP {2}192\.0\.2\.200:80 rr\n {2}-> 10\.244\.1\.2:80 /);
  t.notRegex(out, /192\.0\.2\.200:80 rr\n(?: {2}-> .*\n)* {2}-> 10\.244\.2\.2:80/, 'Local: only the node-local endpoint');
  const sets = e.views.ipset!();
  t.regex(sets, /Name: KUBE-LOAD-BALANCER\n[\s\S]*?Members:\n192\.0\.2\.200,tcp:80\n/);
  t.regex(sets, /Name: KUBE-LOAD-BALANCER-LOCAL\n[\s\S]*?Members:\n192\.0\.2\.200,tcp:80\n/);
  const d = e.decide(pkt('203.0.113.1', '192.0.2.200', 80, { localDst: true })) as DnatDecision;
  t.is(d.kind, 'dnat');
  t.is(d.to.ip, '10.244.1.2');
});
