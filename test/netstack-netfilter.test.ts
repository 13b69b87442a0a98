/**
 * Netfilter's hook chains in the emulated kernel: priority order within a
 * chain, and every hook point called where Linux calls it: PREROUTING then
 * FORWARD then POSTROUTING for a routed packet, PREROUTING then INPUT for a
 * local one, OUTPUT then POSTROUTING for one the namespace sends itself, and
 * the bridge's FORWARD (br_netfilter) for frames switched between two ports.
 * A FORWARD hook that drops, a POSTROUTING hook that rewrites and a bridge
 * hook that drops show that a hook's verdict is obeyed.
 *
 * The topology is built from the real stack pieces (IpStack, veth pairs, a
 * Bridge), driven on a manual clock: frames move synchronously, so every
 * assertion follows the send that caused it.
 */
import test from 'ava';
import { ManualClock } from '../common/clock.ts';
import { IpStack } from '../netstack/ipv4/ip-stack.ts';
import { Bridge } from '../netstack/link/bridge.ts';
import { vethPair } from '../netstack/link/netdev.ts';
import { HookChain, NF_IP_PRI, type NfHookPoint, type NfState } from '../netstack/netfilter/netfilter.ts';
import { Ipv4Packet } from '../packet/ipv4-packet.ts';
import { SeededRng } from '../common/rng.ts';
import { NodeDataPlane } from '../node-agent/dataplane.ts';
import type { NatDecision, NatEngine } from '../netstack/netfilter/service-nat.ts';

function host(name: string, clock: ManualClock, forwarding = false): IpStack {
  return new IpStack(name, { clock, forwarding, idSeed: name.length });
}

/** A --- R --- B: A 10.0.1.2/24, R 10.0.1.1/24 + 10.0.2.1/24 (forwarding), B 10.0.2.2/24. */
function routedLab() {
  const clock = new ManualClock();
  const a = host('A', clock);
  const r = host('R', clock, true);
  const b = host('B', clock);
  const l1 = vethPair({ name: 'eth0', mac: '02:00:00:00:01:01', netns: 'R' }, { name: 'eth0', mac: '02:00:00:00:01:02', netns: 'A' }, 1500);
  const l2 = vethPair({ name: 'eth1', mac: '02:00:00:00:02:01', netns: 'R' }, { name: 'eth0', mac: '02:00:00:00:02:02', netns: 'B' }, 1500);
  r.addInterface(l1.hostEnd, { arp: true });
  r.addInterface(l2.hostEnd, { arp: true });
  r.addAddress('eth0', '10.0.1.1', 24);
  r.addAddress('eth1', '10.0.2.1', 24);
  a.addInterface(l1.podEnd, { arp: true });
  a.addAddress('eth0', '10.0.1.2', 24);
  a.routes.replace({ dst: '0.0.0.0', prefixLen: 0, gateway: '10.0.1.1', dev: 'eth0', proto: 'static', scope: 'global' });
  b.addInterface(l2.podEnd, { arp: true });
  b.addAddress('eth0', '10.0.2.2', 24);
  b.routes.replace({ dst: '0.0.0.0', prefixLen: 0, gateway: '10.0.2.1', dev: 'eth0', proto: 'static', scope: 'global' });
  return { clock, a, r, b, rEth0: l1.hostEnd };
}

/** Records (point, devices, addresses) for every packet a stack's hooks see; accepts all. */
function recorder(s: IpStack, points: NfHookPoint[]): string[] {
  const seen: string[] = [];
  for (const p of points) {
    s.nf.register(p, {
      name: `record ${p}`,
      priority: NF_IP_PRI.FILTER,
      hook: (pkt, st) => {
        seen.push(`${p} in=${st.inDev ?? '-'} out=${st.outDev ?? '-'} ${pkt.src}>${pkt.dst}:${pkt.dstPort}`);
        return pkt;
      },
    });
  }
  return seen;
}

function udpSink(s: IpStack, port: number): string[] {
  const got: string[] = [];
  s.bindUdp(port, { message: (m) => got.push(`${m.srcIp}:${m.srcPort} ${m.data.toString()}`) });
  return got;
}

const ALL: NfHookPoint[] = ['prerouting', 'input', 'forward', 'output', 'postrouting'];

test('a chain runs its hooks by priority, equal priorities in registration order; unregister removes one', (t) => {
  const chain = new HookChain('forward');
  const order: string[] = [];
  const reg = (name: string, priority: number) => chain.register({ name, priority, hook: (p) => (order.push(name), p) });
  reg('filter', NF_IP_PRI.FILTER);
  const offSnat = reg('snat', NF_IP_PRI.NAT_SRC);
  reg('dnat', NF_IP_PRI.NAT_DST);
  reg('mangle', NF_IP_PRI.MANGLE);
  reg('filter-2', NF_IP_PRI.FILTER);
  reg('raw', NF_IP_PRI.RAW);
  t.deepEqual(chain.list().map((h) => `${h.name}@${h.priority}`), ['raw@-300', 'mangle@-150', 'dnat@-100', 'filter@0', 'filter-2@0', 'snat@100']);
  const pkt = Ipv4Packet.unchecked(Buffer.from('450000211c464000401108270af401020a60000a9c400035000d092d68656c6c6f', 'hex'));
  const st: NfState = { hook: 'forward' };
  t.is(chain.run(pkt, st), pkt);
  t.deepEqual(order, ['raw', 'mangle', 'dnat', 'filter', 'filter-2', 'snat']);
  offSnat();
  t.is(chain.size, 5);
  // A drop ends the chain: later hooks never see the packet.
  order.length = 0;
  chain.register({ name: 'drop', priority: NF_IP_PRI.FILTER - 1, hook: () => null });
  t.is(chain.run(pkt, st), null);
  t.deepEqual(order, ['raw', 'mangle', 'dnat']);
  t.is(st.dropReason, 'netfilter-drop');
});

test('a chain whose hooks are all idle is not active: the stack skips it without looking at the packet', (t) => {
  const chain = new HookChain('postrouting');
  t.false(chain.active, 'no hooks');
  let tracked = 0;
  chain.register({ name: 'nat', priority: NF_IP_PRI.NAT_SRC, hook: (p) => p, idle: () => tracked === 0 });
  t.is(chain.size, 1);
  t.false(chain.active, 'nothing tracked: idle');
  tracked = 1;
  t.true(chain.active);
  tracked = 0;
  chain.register({ name: 'filter', priority: NF_IP_PRI.FILTER, hook: (p) => p });
  t.true(chain.active, 'a hook without an idle test always runs');
});

test('a routed packet passes PREROUTING, FORWARD, POSTROUTING; a local one PREROUTING, INPUT; a sent one OUTPUT, POSTROUTING', (t) => {
  const { a, r, b } = routedLab();
  const seen = recorder(r, ALL);
  const atB = udpSink(b, 7000);
  const sock = a.bindUdp(40000, { message: () => {} });
  t.deepEqual(a.sendUdp(sock.port, '10.0.2.2', 7000, Buffer.from('routed')), { ok: true });
  t.deepEqual(atB, ['10.0.1.2:40000 routed']);
  t.deepEqual(seen, ['prerouting in=eth0 out=- 10.0.1.2>10.0.2.2:7000', 'forward in=eth0 out=eth1 10.0.1.2>10.0.2.2:7000', 'postrouting in=eth0 out=eth1 10.0.1.2>10.0.2.2:7000']);

  seen.length = 0;
  const atR = udpSink(r, 7001);
  a.sendUdp(sock.port, '10.0.1.1', 7001, Buffer.from('local'));
  t.deepEqual(atR, ['10.0.1.2:40000 local']);
  t.deepEqual(seen, ['prerouting in=eth0 out=- 10.0.1.2>10.0.1.1:7001', 'input in=eth0 out=- 10.0.1.2>10.0.1.1:7001']);

  seen.length = 0;
  const rs = r.bindUdp(0, { message: () => {} });
  r.sendUdp(rs.port, '10.0.2.2', 7000, Buffer.from('from R'));
  t.deepEqual(atB.slice(1), [`10.0.2.1:${rs.port} from R`]);
  t.deepEqual(seen, ['output in=- out=eth1 10.0.2.1>10.0.2.2:7000', 'postrouting in=- out=eth1 10.0.2.1>10.0.2.2:7000']);
});

test('a FORWARD hook that drops: the packet goes no further and is counted on the receiving device', (t) => {
  const { a, r, b, rEth0 } = routedLab();
  r.nf.register('forward', {
    name: 'deny port 9',
    priority: NF_IP_PRI.FILTER,
    hook: (pkt, st) => {
      if (pkt.dstPort !== 9) return pkt;
      st.dropReason = 'test-deny-9';
      return null;
    },
  });
  const post = recorder(r, ['postrouting']);
  const denied = udpSink(b, 9);
  const allowed = udpSink(b, 10);
  const sock = a.bindUdp(0, { message: () => {} });
  a.sendUdp(sock.port, '10.0.2.2', 9, Buffer.from('x'));
  a.sendUdp(sock.port, '10.0.2.2', 10, Buffer.from('y'));
  t.deepEqual(denied, []);
  t.is(allowed.length, 1);
  t.is(rEth0.counters.drops.get('test-deny-9'), 1);
  t.deepEqual(post.map((s) => s.split(' ').pop()), ['10.0.1.2>10.0.2.2:10'], 'POSTROUTING never saw the dropped packet');
});

test('a POSTROUTING hook that rewrites the source (SNAT) changes what leaves the device', (t) => {
  const { a, r, b } = routedLab();
  r.nf.register('postrouting', {
    name: 'snat to eth1',
    priority: NF_IP_PRI.NAT_SRC,
    hook: (pkt, st) => {
      if (st.outDev !== 'eth1') return pkt;
      const copy = Ipv4Packet.unchecked(Buffer.from(pkt.datagram));
      copy.setSrc('10.0.2.1');
      return copy;
    },
  });
  const atB = udpSink(b, 7000);
  const sock = a.bindUdp(40001, { message: () => {} });
  a.sendUdp(sock.port, '10.0.2.2', 7000, Buffer.from('hi'));
  t.deepEqual(atB, ['10.0.2.1:40001 hi'], 'B sees the rewritten source; the UDP checksum still verifies');
});

test('OUTPUT and INPUT run in a namespace that does not forward (a pod)', (t) => {
  const { a, r } = routedLab();
  const seenA = recorder(a, ['output', 'postrouting', 'input', 'prerouting']);
  r.bindUdp(7002, { message: (m) => r.sendUdp(7002, m.srcIp, m.srcPort, Buffer.from('pong')) });
  const got: string[] = [];
  const sock = a.bindUdp(40002, { message: (m) => got.push(String(m.data)) });
  a.sendUdp(sock.port, '10.0.1.1', 7002, Buffer.from('ping'));
  t.deepEqual(got, ['pong']);
  t.deepEqual(seenA.map((s) => s.split(' ')[0]), ['output', 'postrouting', 'prerouting', 'input']);
});

test('the bridge calls its FORWARD hook for frames between two ports (br_netfilter), not for frames up to its own stack', (t) => {
  const clock = new ManualClock();
  const node = new IpStack('node', { clock, forwarding: true });
  const br = new Bridge('cni0', '02:00:00:00:00:01', 1500, clock, 300_000, { netfilter: node.nf.bridgeForward });
  node.addInterface(br.dev, { arp: true });
  node.addAddress('cni0', '10.244.1.1', 24);
  const pods = [2, 3].map((n) => {
    const v = vethPair({ name: `veth${n}`, mac: `02:00:00:00:10:0${n}`, netns: 'node' }, { name: 'eth0', mac: `02:00:00:00:20:0${n}`, netns: `pod${n}` }, 1500);
    br.addPort(v.hostEnd);
    const s = new IpStack(`pod${n}`, { clock, forwarding: false, idSeed: n });
    s.addInterface(v.podEnd, { arp: true });
    s.addAddress('eth0', `10.244.1.${n}`, 24);
    s.routes.replace({ dst: '0.0.0.0', prefixLen: 0, gateway: '10.244.1.1', dev: 'eth0', proto: 'static', scope: 'global' });
    return { s, veth: v.hostEnd };
  });
  const bridged: string[] = [];
  node.nf.register('bridge-forward', {
    name: 'deny port 9 between pods',
    priority: 0,
    hook: (pkt, st) => {
      bridged.push(`${st.inDev} ${pkt.src}>${pkt.dst}:${pkt.dstPort}`);
      if (pkt.dstPort !== 9) return pkt;
      st.dropReason = 'test-bridge-deny';
      return null;
    },
  });
  const at3 = udpSink(pods[1].s, 10);
  const at3denied = udpSink(pods[1].s, 9);
  const atNode = udpSink(node, 11);
  const sock = pods[0].s.bindUdp(5000, { message: () => {} });
  pods[0].s.sendUdp(sock.port, '10.244.1.3', 10, Buffer.from('a'));
  pods[0].s.sendUdp(sock.port, '10.244.1.3', 9, Buffer.from('b'));
  pods[0].s.sendUdp(sock.port, '10.244.1.1', 11, Buffer.from('c'));
  t.deepEqual(at3, ['10.244.1.2:5000 a']);
  t.deepEqual(at3denied, []);
  t.deepEqual(atNode, ['10.244.1.2:5000 c']);
  t.deepEqual(bridged, ['veth2 10.244.1.2>10.244.1.3:10', 'veth2 10.244.1.2>10.244.1.3:9'], 'frames up to the node (its own MAC) skip the bridge hook');
  t.is(pods[0].veth.counters.drops.get('test-bridge-deny'), 1);
});

test("kube-proxy's hooks on a node: a NodePort reached from the node itself is DNATed at OUTPUT, masqueraded at POSTROUTING, and the reply is restored at PREROUTING and INPUT", async (t) => {
  const dp = new NodeDataPlane({ name: 'node-1', ip: '127.0.61.11', underlayCidr: '127.0.61.0/24', podCIDR: '10.244.1.0/24', vtepMac: '02:00:00:00:00:01', clusterCidr: '10.244.0.0/16', vxlanPort: 8472, vni: 1, seed: 3, mtu: 1500, clock: new ManualClock(), rng: new SeededRng(1) });
  const backend = dp.addPod({ namespace: 'default', name: 'b', uid: 'b', ip: '10.244.1.3' });
  const seenByBackend: string[] = [];
  backend.stack.bindUdp(5353, { message: (m) => (seenByBackend.push(`${m.srcIp}:${m.srcPort}`), backend.stack.sendUdp(5353, m.srcIp, m.srcPort, Buffer.from('answer'))) });
  const engine: NatEngine = {
    mode: 'test',
    wants: (_dst, dport) => dport === 30053,
    decide: (p): NatDecision | null => (p.dport === 30053 && p.localDst ? { kind: 'dnat', to: { ip: '10.244.1.3', port: 5353 }, masquerade: true, service: 'default/dns', steps: [] } : null),
  };
  dp.installServiceNat(engine);
  t.deepEqual(dp.netfilter.prerouting.list(), [{ name: 'kube-proxy nat', priority: NF_IP_PRI.NAT_DST }]);
  t.deepEqual(dp.netfilter.postrouting.list(), [{ name: 'kube-proxy masquerade', priority: NF_IP_PRI.NAT_SRC }]);
  dp.stack.addAddress('lo', '203.0.113.1', 32);
  const replies: string[] = [];
  const client = dp.stack.bindUdp(0, { message: (m) => replies.push(`${m.srcIp}:${m.srcPort} ${m.data.toString()}`) });
  t.deepEqual(dp.stack.sendUdp(client.port, '127.0.61.11', 30053, Buffer.from('q'), { src: '203.0.113.1' }), { ok: true });
  await new Promise((r) => setImmediate(r));
  t.deepEqual(seenByBackend, [`10.244.1.1:${client.port}`], 'the backend sees the masqueraded source (cni0 towards it)');
  t.deepEqual(replies, ['127.0.61.11:30053 answer'], 'the reply comes back from the NodePort');
  t.regex(dp.netfilter.conntrack.format(), /src=203\.0\.113\.1 dst=127\.0\.61\.11 sport=\d+ dport=30053 src=10\.244\.1\.3 dst=10\.244\.1\.1 sport=5353/);
  // Another engine replaces the hooks rather than stacking a second set.
  dp.installServiceNat(engine);
  t.is(dp.netfilter.prerouting.size, 1);
  dp.installServiceNat(undefined);
  t.is(dp.netfilter.output.size + dp.netfilter.postrouting.size + dp.netfilter.input.size + dp.netfilter.bridgeForward.size, 0);
});
