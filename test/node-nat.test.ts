/**
 * Conntrack and NAT in the node's packet path: a test engine stands in for
 * kube-proxy's decision (the real engines are tested in service-*.test.ts and
 * end to end); what is checked here is the data path: DNAT of the first packet,
 * the same backend for every packet, replies un-DNATed (also when bridged on
 * the same node, br_netfilter), masquerade, REJECT with ICMP port unreachable.
 */
import test from 'ava';
import { ipv4ToInt } from '../packet/addr.ts';
import { makeNode as makeTestNode, mesh } from './helpers/dataplane.ts';
import type { NatDecision, NatEngine } from '../netstack/netfilter/service-nat.ts';
import type { PodNet } from '../netstack/pod-net.ts';

const NET = '127.0.61.0/24';
const makeNode = (n: number) => makeTestNode(n, { net: NET, seed: 3 });

/** VIP 10.96.0.10:53/udp → the given backends in turn; 10.96.0.11 has none. */
function engine(backends: string[], masquerade = false): NatEngine & { picks: string[] } {
  let i = 0;
  const picks: string[] = [];
  return {
    mode: 'test',
    picks,
    wants: (dst) => dst === ipv4ToInt('10.96.0.10') || dst === ipv4ToInt('10.96.0.11'),
    decide(p): NatDecision | null {
      if (p.dst === '10.96.0.11') return { kind: 'reject', reason: 'default/empty has no endpoints', steps: ['no endpoints'] };
      if (p.dst !== '10.96.0.10' || p.dport !== 53) return null;
      const to = backends[i++ % backends.length];
      picks.push(to);
      return { kind: 'dnat', to: { ip: to, port: 5353 }, masquerade, service: 'default/dns', steps: [`pick ${to}`] };
    },
  };
}

async function udpExchange(client: PodNet, dst: string, port: number, n: number): Promise<{ replies: string[]; errors: string[] }> {
  const replies: string[] = [];
  const errors: string[] = [];
  const sock = client.stack.bindUdp(0, { message: (m) => replies.push(`${m.srcIp}:${m.srcPort} ${m.data.toString()}`), error: (e) => errors.push(`${e.from} code ${e.code}`) });
  for (let i = 0; i < n; i++) client.stack.sendUdp(sock.port, dst, port, Buffer.from(`q${i}`));
  await new Promise((r) => setTimeout(r, 150));
  sock.close();
  return { replies, errors };
}

function echoServer(pod: PodNet): { seen: string[] } {
  const seen: string[] = [];
  pod.stack.bindUdp(5353, { message: (m) => (seen.push(`${m.srcIp}:${m.srcPort}`), pod.stack.sendUdp(5353, m.srcIp, m.srcPort, Buffer.from(`from ${pod.opts.name}`))) });
  return { seen };
}

test.serial('DNAT to a backend on another node; replies come back from the VIP; one backend per connection', async (t) => {
  const n1 = makeNode(1);
  const n2 = makeNode(2);
  await n1.start();
  await n2.start();
  t.teardown(() => Promise.all([n1.close(), n2.close()]));
  mesh([n1, n2]);
  const client = n1.addPod({ namespace: 'default', name: 'client', uid: 'c', ip: '10.244.1.2' });
  const b1 = n2.addPod({ namespace: 'default', name: 'b1', uid: 'b1', ip: '10.244.2.2' });
  const server = echoServer(b1);
  const e = engine(['10.244.2.2']);
  n1.installServiceNat(e);

  const r = await udpExchange(client, '10.96.0.10', 53, 3);
  t.is(r.replies.length, 3);
  t.true(r.replies.every((x) => x.startsWith('10.96.0.10:53 from b1')), r.replies.join('; '));
  t.is(e.picks.length, 1, 'one decision: later packets follow the conntrack entry');
  t.true(server.seen.every((s) => s.startsWith('10.244.1.2:')), 'no masquerade: the backend sees the client pod');
  t.regex(n1.netfilter.conntrack.format(), /^udp +17 \d+ src=10\.244\.1\.2 dst=10\.96\.0\.10 sport=\d+ dport=53 src=10\.244\.2\.2 dst=10\.244\.1\.2 sport=5353 dport=\d+ \[ASSURED\] mark=0 use=1$/m);
});

test.serial('same-node backend: the bridged reply is un-DNATed (br_netfilter); hairpin is masqueraded', async (t) => {
  const n1 = makeNode(1);
  const client = n1.addPod({ namespace: 'default', name: 'client', uid: 'c', ip: '10.244.1.2' });
  const b = n1.addPod({ namespace: 'default', name: 'b', uid: 'b', ip: '10.244.1.3' });
  const server = echoServer(b);
  n1.installServiceNat(engine(['10.244.1.3']));
  const r = await udpExchange(client, '10.96.0.10', 53, 2);
  t.deepEqual(r.replies.map((x) => x.split(' ')[0]), ['10.96.0.10:53', '10.96.0.10:53']);
  t.true(server.seen.every((s) => s.startsWith('10.244.1.2:')));

  // Hairpin: the backend calls its own Service and lands on itself: masqueraded to the gateway.
  n1.installServiceNat(engine(['10.244.1.3'], true));
  n1.netfilter.conntrack.deleteWhere(() => true);
  const self = await udpExchange(b, '10.96.0.10', 53, 1).catch(() => ({ replies: [], errors: [] }));
  void self;
  t.true(server.seen.some((s) => s.startsWith('10.244.1.1:')), `masqueraded source seen: ${server.seen.join(', ')}`);
});

test.serial('a Service without endpoints is REJECTed with ICMP port unreachable from its VIP', async (t) => {
  const n1 = makeNode(1);
  const client = n1.addPod({ namespace: 'default', name: 'client', uid: 'c', ip: '10.244.1.2' });
  n1.installServiceNat(engine([]));
  const r = await udpExchange(client, '10.96.0.11', 53, 1);
  t.deepEqual(r.errors, ['10.96.0.11 code 3']);
  t.is(n1.bridge.dev.counters.drops.get('service-no-endpoints'), 1);
});
