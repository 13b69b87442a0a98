/**
 * kube-proxy userspace mode: portal rules to per-service proxy ports, the
 * LoadBalancerRR (round robin over shuffled ready endpoints, ClientIP affinity).
 */
import test from 'ava';
import { createServiceProxyEngine, type UserspaceDecision } from '../service-proxy/index.ts';
import { engineOpts, nginx, pkt, slice } from './helpers/service-fixtures.ts';

test('portals: the ClusterIP and the NodePort are redirected to one proxy port, host traffic DNATed to the node', (t) => {
  const e = createServiceProxyEngine('userspace', engineOpts(4));
  const { service, slice: s } = nginx();
  e.update([service], [s]);
  const [pp] = e.proxyPorts();
  t.like(pp, { servicePort: 'default/nginx', protocol: 'tcp' });
  t.true(pp.port >= 32768 && pp.port <= 60999);
  const nat = e.iptablesSave('nat');
  t.true(nat.includes(`-A KUBE-PORTALS-CONTAINER -d 10.96.0.100/32 -p tcp -m comment --comment "default/nginx" -m tcp --dport 80 -j REDIRECT --to-ports ${pp.port}`));
  t.true(nat.includes(`-A KUBE-PORTALS-HOST -d 10.96.0.100/32 -p tcp -m comment --comment "default/nginx" -m tcp --dport 80 -j DNAT --to-destination 192.168.0.11:${pp.port}`));
  t.true(nat.includes(`-A KUBE-NODEPORT-CONTAINER -p tcp -m comment --comment "default/nginx" -m tcp --dport 30080 -j REDIRECT --to-ports ${pp.port}`));
  t.true(nat.includes('-A PREROUTING -m addrtype --dst-type LOCAL -m comment --comment "handle service NodePorts; NOTE: this must be the last rule in the chain" -j KUBE-NODEPORT-CONTAINER'));
  t.true(e.iptablesSave('filter').includes(`-A KUBE-NODEPORT-NON-LOCAL -p tcp -m comment --comment "default/nginx" -m tcp --dport ${pp.port} -m state --state NEW -j ACCEPT`));
  t.like(e.decide(pkt('10.244.1.5', '10.96.0.100', 80)), { kind: 'userspace', proxyPort: pp.port, service: 'default/nginx' });
  t.like(e.decide(pkt('203.0.113.9', '192.168.0.11', 30080, { localDst: true })), { kind: 'userspace', proxyPort: pp.port });
  t.like(e.decide(pkt('192.168.0.11', '10.96.0.100', 80, { fromHost: true })), { kind: 'userspace', proxyPort: pp.port });
  t.is(e.decide(pkt('10.244.1.5', '10.244.2.2', 80)), null);
  // The port stays with its service across syncs.
  e.update([service], [s]);
  t.is(e.proxyPorts()[0].port, pp.port);
});

test('pickBackend: round robin over the (shuffled) ready endpoints', (t) => {
  const e = createServiceProxyEngine('userspace', engineOpts(4));
  const { service, slice: s } = nginx();
  e.update([service], [s]);
  const d = e.decide(pkt('10.244.1.5', '10.96.0.100', 80)) as UserspaceDecision;
  const picks = Array.from({ length: 6 }, (_, i) => e.pickBackend(d.service, `10.244.1.${10 + i}`)!.ip);
  t.deepEqual([...picks.slice(0, 3)].sort(), ['10.244.1.2', '10.244.2.2', '10.244.3.2']);
  t.deepEqual(picks.slice(3), picks.slice(0, 3), 'the rotation repeats');
  t.is(e.pickBackend(String(d.proxyPort), '10.244.1.20')!.ip, picks[0], 'the proxy port names the service too');
});

test('pickBackend: ClientIP affinity keeps a client on its endpoint until timeoutSeconds of silence', (t) => {
  const opts = engineOpts(4);
  const e = createServiceProxyEngine('userspace', opts);
  const { service, slice: s } = nginx({ affinity: 30 });
  e.update([service], [s]);
  const first = e.pickBackend('default/nginx', '10.244.1.5')!;
  for (let i = 0; i < 5; i++) {
    opts.clock.advance(20_000);
    const again = e.pickBackend('default/nginx', '10.244.1.5')!;
    t.is(again.ip, first.ip);
    t.regex(again.reason, /ClientIP affinity/);
  }
  opts.clock.advance(31_000);
  t.regex(e.pickBackend('default/nginx', '10.244.1.5')!.reason, /round robin/);
});

test('no endpoints: the portal still exists (the proxy accepts), pickBackend answers null', (t) => {
  const e = createServiceProxyEngine('userspace', engineOpts());
  const { service } = nginx();
  e.update([service], [slice('nginx', [['10.244.1.2', 'node-1', false]], [{ port: 80 }])]);
  t.is(e.decide(pkt('10.244.1.5', '10.96.0.100', 80))?.kind, 'userspace');
  t.is(e.pickBackend('default/nginx', '10.244.1.5'), null);
});
