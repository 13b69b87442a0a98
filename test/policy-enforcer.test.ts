/**
 * The enforcer on a node's hook chains without a lab: a new connection judged
 * at FORWARD (and at bridge FORWARD), its reply passing as ESTABLISHED, a
 * denied SYN dropped and counted per policy, connection state bounded and
 * expiring with the injected clock, and Felix's chain names.
 */
import test from 'ava';
import { ManualClock } from '../common/clock.ts';
import { Conntrack } from '../netstack/netfilter/conntrack.ts';
import { Netfilter, nfState } from '../netstack/netfilter/netfilter.ts';
import { Tracer } from '../netstack/trace.ts';
import { serializeIpv4 } from '../packet/ipv4.ts';
import { Ipv4Packet } from '../packet/ipv4-packet.ts';
import { lengthLimitedId, policyChain } from '../policy/calico-names.ts';
import { PolicySet } from '../policy/engine.ts';
import { PolicyEnforcer } from '../policy/enforcer.ts';
import { FlowTable } from '../policy/flow-table.ts';
import type { PolicyPod } from '../policy/types.ts';
import { np, nsLabels } from './helpers/netpol-cases.ts';

function tcp(src: string, sport: number, dst: string, dport: number, flags: number): Ipv4Packet {
  const seg = Buffer.alloc(20);
  seg.writeUInt16BE(sport, 0);
  seg.writeUInt16BE(dport, 2);
  seg[12] = 5 << 4;
  seg[13] = flags;
  return Ipv4Packet.unchecked(serializeIpv4({ src, dst, protocol: 6, ttl: 64, id: 1, dontFragment: true, moreFragments: false, fragmentOffset: 0, dscp: 0, ecn: 0, payload: seg }));
}
const SYN = 0x02;
const SYN_ACK = 0x12;

const pod = (ns: string, name: string, ip: string): PolicyPod => ({ namespace: ns, name, labels: { pod: name }, ip, ports: [{ name: 'serve-80-tcp', port: 80, protocol: 'TCP' }] });

function node() {
  const clock = new ManualClock();
  const nf = new Netfilter(new Conntrack(clock));
  // This node hosts x/a (10.244.1.2) and y/a (10.244.1.3); y/b (10.244.2.2) is on another node.
  const local = new Map([
    ['10.244.1.2', { key: 'x/a', iface: 'veth-xa' }],
    ['10.244.1.3', { key: 'y/a', iface: 'veth-ya' }],
  ]);
  const enf = new PolicyEnforcer(nf, { localPod: (ip) => local.get(ip) }, new Tracer(), clock, { maxEntries: 4 });
  const pods = [pod('x', 'a', '10.244.1.2'), pod('y', 'a', '10.244.1.3'), pod('y', 'b', '10.244.2.2')];
  const set = new PolicySet([np('x', 'only-from-y-a', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'y' } }, podSelector: { matchLabels: { pod: 'a' } } }] }] })], pods, ['x', 'y'].map((n) => ({ name: n, labels: nsLabels(n) })));
  enf.update(set);
  const run = (point: 'forward' | 'bridge-forward', p: Ipv4Packet) => nf.chain(point).run(p, nfState(point, 'cni0'));
  return { clock, nf, enf, run };
}

test('no policy: the hooks are idle and pass everything without keeping state', (t) => {
  const clock = new ManualClock();
  const nf = new Netfilter(new Conntrack(clock));
  const enf = new PolicyEnforcer(nf, { localPod: () => ({ key: 'x/a', iface: 'v' }) }, new Tracer(), clock);
  t.false(nf.forward.active);
  t.false(nf.bridgeForward.active);
  t.truthy(nf.forward.run(tcp('10.244.2.2', 1000, '10.244.1.2', 80, SYN), nfState('forward')));
  t.is(enf.flows.size, 0);
});

test('allowed connection: judged once, the reply passes as ESTABLISHED; denied SYN dropped silently and counted', (t) => {
  const { enf, run, nf } = node();
  t.true(nf.forward.active);
  // y/a -> x/a on the same node, bridged: allowed by the rule, remembered.
  t.truthy(run('bridge-forward', tcp('10.244.1.3', 40000, '10.244.1.2', 80, SYN)));
  t.is(enf.accepted, 1);
  // Its reply (x/a's egress is not isolated anyway) and later packets hit the table.
  t.truthy(run('bridge-forward', tcp('10.244.1.2', 80, '10.244.1.3', 40000, SYN_ACK)));
  t.is(enf.accepted, 1);
  // y/b from another node through FORWARD: not y/a, dropped, no answer generated.
  const st = nfState('forward', 'flannel.1');
  t.is(nf.forward.run(tcp('10.244.2.2', 40001, '10.244.1.2', 80, SYN), st), null);
  t.is(st.dropReason, 'policy-denied');
  t.deepEqual(enf.stats().dropsByPolicy, { 'x/only-from-y-a': 1 });
  // A packet between two addresses that are no pods of this node is not this node's to judge.
  t.truthy(run('forward', tcp('10.244.2.2', 40002, '10.244.3.9', 80, SYN)));
});

test('a policy change keeps established connections; removing every policy forgets them', (t) => {
  const { enf, run } = node();
  t.truthy(run('forward', tcp('10.244.1.3', 40000, '10.244.1.2', 80, SYN)));
  enf.update(new PolicySet([np('x', 'deny', { podSelector: {} })], [pod('x', 'a', '10.244.1.2'), pod('y', 'a', '10.244.1.3')], []));
  t.truthy(run('forward', tcp('10.244.1.2', 80, '10.244.1.3', 40000, SYN_ACK)), 'established survives');
  t.is(run('forward', tcp('10.244.1.3', 40001, '10.244.1.2', 80, SYN)), null, 'a new one is judged by the new policy');
  enf.update(new PolicySet([], [], []));
  t.is(enf.flows.size, 0);
});

test('the flow table is bounded (least recently used goes) and entries expire with the clock', (t) => {
  const clock = new ManualClock();
  const ft = new FlowTable(clock, { maxEntries: 2, tcpIdleMs: 1000 });
  const f = (sport: number) => ({ proto: 'tcp' as const, src: '10.0.0.1', sport, dst: '10.0.0.2', dport: 80 });
  ft.add(f(1));
  ft.add(f(2));
  t.true(ft.hit(f(1)));
  ft.add(f(3));
  t.is(ft.size, 2);
  t.is(ft.evicted, 1);
  t.false(ft.hit(f(2)), 'the least recently used entry went');
  t.true(ft.hit({ proto: 'tcp', src: '10.0.0.2', sport: 80, dst: '10.0.0.1', dport: 3 }), 'either direction finds the connection');
  clock.advance(1001);
  t.false(ft.hit(f(3)));
});

test('chain names follow Felix: short names as they are, long ones hashed to 28 characters', (t) => {
  t.is(lengthLimitedId('cali-tw-', 'veth1'), 'cali-tw-veth1');
  const c = policyChain('x/allow-from-namespace-y', 'ingress');
  t.regex(c, /^cali-pi-_[A-Za-z0-9_-]{19}$/);
  t.is(c.length, 28);
  // The hash covers the policy's name only: its ingress and egress chains share it.
  t.is(policyChain('x/allow-from-namespace-y', 'egress'), `cali-po-${c.slice(8)}`);
  t.not(policyChain('x/allow-from-namespace-z', 'ingress'), c);
  t.regex(policyChain('x/p', 'egress'), /^cali-po-_/);
});
