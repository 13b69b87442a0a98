/**
 * The flow cache (netstack/flow/): two nodes' data planes in one process over
 * real UDP sockets on loopback (127.0.45.0/24 with the cache, 127.0.46.0/24
 * without, 127.0.47-48 for single labs; 127.0.49.0/24 is left to the bench). The same frames, plain flows and awkward packets interleaved, come
 * out byte for byte the same with and without it; every table a cached flow
 * depends on (route, neighbour, VTEP FDB, Service rules, NetworkPolicy,
 * impairment, MTU) is changed between two packets of a flow, and the packet
 * after the change shows the change; a trace forces the slow path.
 */
import test from 'ava';
import dgram from 'node:dgram';
import { monotonicClock } from '../common/clock.ts';
import { ipv4ToInt, readMac } from '../packet/addr.ts';
import { serializeEthernet } from '../packet/ethernet.ts';
import { serializeIcmp } from '../packet/icmp.ts';
import { serializeIpv4, type Ipv4Repr } from '../packet/ipv4.ts';
import { serializeTcp } from '../packet/tcp.ts';
import { serializeUdp } from '../packet/udp.ts';
import { planPeers } from '../backends/registry.ts';
import { NodeDataPlane } from '../node-agent/dataplane.ts';
import type { PodNet } from '../netstack/pod-net.ts';
import type { NatDecision, NatEngine } from '../netstack/netfilter/service-nat.ts';
import { PolicySet } from '../policy/engine.ts';
import { PolicyEnforcer } from '../policy/enforcer.ts';
import { np } from './helpers/netpol-cases.ts';
import { addPod, leaseOf, makeNode, mesh } from './helpers/dataplane.ts';

const node = (net: number, n: number, fastPath: boolean): NodeDataPlane => makeNode(n, { net: `127.0.${net}.0/24`, seed: 7, fastPath });
const hex = (b: Buffer) => b.toString('hex');
const settle = (ms = 60) => new Promise((r) => setTimeout(r, ms));

/** Waits (up to 5 s, for a loaded machine) until `done` holds. */
async function until(done: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !done(); i++) await settle(50);
}

/** Waits until both labs have received as much as each other and nothing more arrives. */
async function quiet(x: Lab, y: Lab): Promise<void> {
  const count = () => [x, y].map((l) => l.inA.length + l.inC.length + l.out2.length).join();
  let last = '';
  for (let i = 0; i < 50; i++) {
    await settle(100);
    const now = count();
    const [p, q] = now.split(',');
    if (now === last && p === q) return;
    last = now;
  }
}

interface Lab {
  n1: NodeDataPlane;
  n2: NodeDataPlane;
  a: PodNet;
  c: PodNet;
  /** VXLAN payloads node-1 sent, with the peer they went to. */
  out1: { peer: string; payload: Buffer }[];
  out2: Buffer[];
  /** Frames pod c and pod a received. */
  inC: Buffer[];
  inA: Buffer[];
  echoed: number;
}

async function lab(t: { teardown(f: () => unknown): void }, net: number, fastPath: boolean): Promise<Lab> {
  const n1 = node(net, 1, fastPath);
  const n2 = node(net, 2, fastPath);
  await n1.start();
  await n2.start();
  t.teardown(() => Promise.all([n1.close(), n2.close()]));
  mesh([n1, n2]);
  const a = addPod(n1, 'a', '10.244.1.2');
  const c = addPod(n2, 'c', '10.244.2.2');
  const l: Lab = { n1, n2, a, c, out1: [], out2: [], inC: [], inA: [], echoed: 0 };
  // Captures copy what they keep, as podlab capture does: the data path may reuse a frame after its taps.
  n1.link.sockets!.outerTaps.add((dir, peer, _port, payload) => dir === 'out' && l.out1.push({ peer: peer.ip, payload: Buffer.from(payload) }));
  n2.link.sockets!.outerTaps.add((dir, _peer, _port, payload) => dir === 'out' && l.out2.push(Buffer.from(payload)));
  c.eth0.taps.add((f, dir) => dir === 'in' && l.inC.push(Buffer.from(f)));
  a.eth0.taps.add((f, dir) => dir === 'in' && l.inA.push(Buffer.from(f)));
  // Pod a's end of the echo flow (without it each echo would draw an ICMP port unreachable back).
  a.stack.bindUdp(40000, { message: () => {} });
  c.stack.bindUdp(7777, {
    message: (m) => {
      l.echoed++;
      c.stack.sendUdp(7777, m.srcIp, m.srcPort, m.data);
    },
  });
  return l;
}

function ip(over: Partial<Ipv4Repr> & { protocol: number; payload: Buffer }): Buffer {
  return serializeIpv4({ src: '10.244.1.2', dst: '10.244.2.2', ttl: 64, id: 1, dontFragment: true, moreFragments: false, fragmentOffset: 0, dscp: 0, ecn: 0, ...over });
}

/** A frame as pod a's eth0 would send it to its gateway (cni0). */
function fromA(l: Lab, datagram: Buffer): Buffer {
  return serializeEthernet({ dst: l.n1.bridge.dev.mac, src: l.a.eth0.mac, etherType: 0x0800, payload: datagram });
}

const udp = (sport: number, dport: number, data: string, over: Partial<Ipv4Repr> = {}) =>
  ip({ protocol: 17, payload: serializeUdp({ srcPort: sport, dstPort: dport, payload: Buffer.from(data) }, over.src ?? '10.244.1.2', over.dst ?? '10.244.2.2'), ...over });

const tcp = (flags: { syn?: boolean; ack?: boolean; psh?: boolean; fin?: boolean }, seq: number, data: string) =>
  ip({
    protocol: 6,
    payload: serializeTcp(
      { srcPort: 41000, dstPort: 80, seq, ack: 1, flags: { fin: !!flags.fin, syn: !!flags.syn, rst: false, psh: !!flags.psh, ack: !!flags.ack, urg: false, ece: false, cwr: false }, window: 65535, urgent: 0, options: {}, payload: Buffer.from(data) },
      '10.244.1.2',
      '10.244.2.2',
    ),
  });

/** One round of traffic: plain flows (cacheable) and every kind the cache must leave to the slow path. */
function round(l: Lab, i: number): Buffer[] {
  const badSum = udp(40001, 7777, `bad ${i}`);
  badSum[10] ^= 0xff;
  const options = ip({ protocol: 17, options: Buffer.from([1, 1, 1, 0]), payload: serializeUdp({ srcPort: 40002, dstPort: 7777, payload: Buffer.from(`opt ${i}`) }, '10.244.1.2', '10.244.2.2') });
  const frag = ip({ protocol: 17, moreFragments: true, dontFragment: false, id: 100 + i, payload: Buffer.alloc(16, i) });
  return [
    udp(40000, 7777, `echo ${i}`),
    ip({ protocol: 1, payload: serializeIcmp({ kind: 'echo-request', id: 77, seq: i, data: Buffer.alloc(16, i) }) }),
    tcp({ ack: true, psh: true }, 1000 + i * 10, `data ${i}`),
    tcp({ syn: true }, 5000 + i, ''),
    tcp({ ack: true, fin: true }, 9000 + i, ''),
    udp(40000, 7777, `low ttl ${i}`, { ttl: 1 }),
    badSum,
    options,
    frag,
    udp(40003, 9, `closed port ${i}`),
    udp(40000, 7777, `again ${i}`),
  ].map((d) => fromA(l, d));
}

test.serial('with and without the flow cache the same frames leave each node and reach each pod, byte for byte', async (t) => {
  const fast = await lab(t, 45, true);
  const slow = await lab(t, 46, false);
  t.truthy(fast.n1.stack.flows);
  t.is(slow.n1.stack.flows, undefined);
  for (let i = 0; i < 6; i++) {
    const f = round(fast, i);
    const s = round(slow, i);
    t.deepEqual(f.map(hex), s.map(hex));
    for (const frame of f) fast.a.eth0.transmit(frame);
    for (const frame of s) slow.a.eth0.transmit(frame);
    await quiet(fast, slow);
  }
  // node-1's datagrams leave in the order the frames came: compared as sequences.
  t.true(fast.out1.length >= 6 * 6, `node-1 sent ${fast.out1.length}`);
  t.deepEqual(fast.out1.map((x) => hex(x.payload)), slow.out1.map((x) => hex(x.payload)));
  // What arrives over the underlay may interleave across the sending sockets: compared as sets.
  const sorted = (xs: Buffer[]) => xs.map(hex).sort();
  t.deepEqual(sorted(fast.inC), sorted(slow.inC));
  t.deepEqual(sorted(fast.out2), sorted(slow.out2));
  t.deepEqual(sorted(fast.inA), sorted(slow.inA));
  t.is(fast.echoed, slow.echoed);
  t.true(fast.echoed >= 12);
  // Replies and errors from node-1 to pod a (TTL exceeded, bad checksum dropped) agree too, and the drops are counted alike.
  t.deepEqual(Object.fromEntries(fast.n1.bridge.dev.counters.drops), Object.fromEntries(slow.n1.bridge.dev.counters.drops));
  const f1 = fast.n1.stack.flows!;
  const f2 = fast.n2.stack.flows!;
  // Both nodes cached the plain flows (UDP, ICMP echo and its reply, TCP ACK/PSH), both ways, and took the rest slowly.
  t.true(f1.hits >= 5 * 3, `node-1 hits ${f1.hits}`);
  t.true(f2.hits >= 5 * 3, `node-2 hits ${f2.hits}`);
  t.true(f1.misses > 0);
});

/** Sends one UDP datagram of the a → c flow; waits for its echo to reach pod a when one is expected. */
async function send(l: Lab, data: string, over: Partial<Ipv4Repr> = {}, echo = false): Promise<void> {
  l.a.eth0.transmit(fromA(l, udp(40000, 7777, data, over)));
  if (echo) await until(() => l.inA.some((f) => f.length > 42 && f.subarray(42).toString() === data));
  else await settle(40);
}

/** The inner frame of node-1's last VXLAN datagram, with its peer. */
function lastOut(l: Lab): { peer: string; dstMac: string; dst: string; data: string } {
  const x = l.out1.at(-1)!;
  const inner = x.payload.subarray(8);
  const dst = `${inner[30]}.${inner[31]}.${inner[32]}.${inner[33]}`;
  return { peer: x.peer, dstMac: readMac(inner, 0), dst, data: inner.subarray(42).toString() };
}

/** Warms the a → c flow up until node-1 answers it from the cache. */
async function warm(t: { true(v: boolean, m?: string): void }, l: Lab, tag: string): Promise<void> {
  // The first reply makes node-1 ARP for pod a: that neighbour's arrival re-decides the flow once more;
  // a flow is recorded from its second packet at one generation, so the third records it.
  await send(l, `${tag} first`, {}, true);
  await send(l, `${tag} second`, {}, true);
  await send(l, `${tag} third`, {}, true);
  const hits = l.n1.stack.flows!.hits;
  await send(l, `${tag} cached`, {}, true);
  // The datagram and, when it is echoed, its reply: both answered from the cache.
  t.true(l.n1.stack.flows!.hits > hits, `${tag}: the flow is answered from the cache before the change`);
}

test.serial('every table a cached flow read, changed between two packets: the next packet follows the new table', async (t) => {
  const l = await lab(t, 47, true);
  const flows = l.n1.stack.flows!;
  const gen = l.n1.stack.generation;

  // Route: deleted, the next packet gets no route (ICMP net unreachable to the pod), none leaves.
  await warm(t, l, 'route');
  let sent = l.out1.length;
  l.n1.stack.routes.delete('10.244.2.0', 24);
  await send(l, 'route after');
  t.is(l.out1.length, sent, 'no datagram: the route is gone');
  t.is(l.n1.bridge.dev.counters.drops.get('no-route'), 1);
  t.true(l.inA.some((f) => f[23] === 1 && f[34] === 3 && f[35] === 0), 'pod a got net unreachable');
  t.is(gen.changes.get('route'), (gen.changes.get('route') ?? 0));
  for (const x of planPeers([leaseOf(l.n1), leaseOf(l.n2)], new Map(), { node: 'node-1', vni: 1 })) l.n1.applyPlan(x);

  // Neighbour: the next hop's MAC changes (and the FDB knows the new MAC at the same peer).
  await warm(t, l, 'neigh');
  l.n1.applyPlan({ op: 'add-fdb', mac: '02:00:00:00:00:99', dst: '127.0.47.12', node: 'node-2' });
  await warm(t, l, 'neigh fdb');
  l.n1.stack.neigh.setPermanent('flannel.1', '10.244.2.0', '02:00:00:00:00:99');
  await send(l, 'neigh after');
  t.is(lastOut(l).dstMac, '02:00:00:00:00:99');
  t.is(lastOut(l).data, 'neigh after');
  l.n1.stack.neigh.setPermanent('flannel.1', '10.244.2.0', '02:00:00:00:00:02');

  // FDB: the VTEP MAC now lives at another address (a socket of this test): the next datagram goes there.
  const other = dgram.createSocket('udp4');
  const got: Buffer[] = [];
  other.on('message', (m) => got.push(m));
  await new Promise<void>((r) => other.bind(8472, '127.0.47.13', () => r()));
  t.teardown(() => other.close());
  await warm(t, l, 'fdb');
  l.n1.applyPlan({ op: 'add-fdb', mac: '02:00:00:00:00:02', dst: '127.0.47.13', node: 'node-2' });
  await send(l, 'fdb after');
  await until(() => got.length > 0);
  t.is(lastOut(l).peer, '127.0.47.13');
  t.is(got.length, 1);
  t.is(got[0].subarray(8 + 42).toString(), 'fdb after');
  l.n1.applyPlan({ op: 'add-fdb', mac: '02:00:00:00:00:02', dst: '127.0.47.12', node: 'node-2' });

  // Service: kube-proxy's rules change to DNAT this destination (a stand-in engine, as node-nat.test.ts uses).
  let dnat = false;
  const engine: NatEngine = {
    mode: 'test',
    wants: (dst) => dnat && dst === ipv4ToInt('10.244.2.2'),
    decide: (p): NatDecision | null => (p.dport === 7777 ? { kind: 'dnat', to: { ip: '10.244.2.3', port: 7777 }, masquerade: false, service: 'default/moved', steps: [] } : null),
  };
  const nat = l.n1.installServiceNat(engine)!;
  await warm(t, l, 'service');
  dnat = true;
  nat.rulesChanged();
  await send(l, 'service after');
  t.is(lastOut(l).dst, '10.244.2.3', 'DNATed by the new rule');
  await send(l, 'service again');
  t.is(lastOut(l).dst, '10.244.2.3', 'a NAT flow stays on the slow path, translated');
  l.n1.installServiceNat(undefined);

  // NetworkPolicy: none at first (the enforcer is idle); one isolating pod a for egress arrives between two packets.
  const enforcer = new PolicyEnforcer(l.n1.netfilter, { localPod: (x) => (x === '10.244.1.2' ? { key: 'default/a', iface: l.a.hostVeth.name } : undefined) }, l.n1.tracer, monotonicClock);
  t.teardown(() => enforcer.close());
  const podA = { namespace: 'default', name: 'a', labels: { app: 'a' }, ip: '10.244.1.2', ports: [] };
  const ns = [{ name: 'default', labels: {} }];
  await warm(t, l, 'policy');
  sent = l.out1.length;
  enforcer.update(new PolicySet([np('default', 'deny', { podSelector: { matchLabels: { app: 'a' } }, policyTypes: ['Egress'] })], [podA], ns));
  await send(l, 'policy after');
  t.is(l.out1.length, sent, 'dropped by the new policy');
  t.is(enforcer.drops, 1);
  // An allowed flow is cached with the policy's upkeep: each packet refreshes its connection, and once the
  // connection is gone (expired, evicted) the next packet is judged again on the slow path.
  enforcer.update(new PolicySet([np('default', 'allow', { podSelector: { matchLabels: { app: 'a' } }, policyTypes: ['Egress'], egress: [{}] })], [podA], ns));
  await warm(t, l, 'policy allowed');
  t.is(enforcer.flows.size, 1, 'the allowed connection is tracked');
  const accepted = enforcer.accepted;
  enforcer.flows.clear();
  await send(l, 'policy forgotten', {}, true);
  t.is(enforcer.accepted, accepted + 1, 'judged again once its connection was forgotten');
  t.is(lastOut(l).data, 'policy forgotten');
  enforcer.close();
  enforcer.update(new PolicySet([], [], []));

  // Impairment: a blackhole towards node-2 set between two packets swallows the next one.
  await warm(t, l, 'impair');
  l.n1.underlay.setImpairment('127.0.47.12', { blackhole: true });
  const echoed = l.echoed;
  await send(l, 'impair after');
  t.is(l.n1.underlay.impairmentsByPeer().get('127.0.47.12')!.stats.blackholed, 1);
  t.is(l.echoed, echoed);
  l.n1.underlay.setImpairment('127.0.47.12', null);

  // MTU: flannel.1 shrinks under the flow; a DF packet now over it gets fragmentation needed.
  await warm(t, l, 'mtu');
  sent = l.out1.length;
  l.n1.stack.interfaces.get('flannel.1')!.dev.mtu = 60;
  await send(l, 'mtu after: a datagram over sixty bytes');
  t.is(l.out1.length, sent);
  t.is(l.n1.stack.interfaces.get('flannel.1')!.dev.counters.drops.get('frag-needed'), 1);
  l.n1.stack.interfaces.get('flannel.1')!.dev.mtu = 1450;

  for (const why of ['route', 'neighbour', 'fdb', 'service', 'policy', 'impairment', 'conntrack'] as const) t.true((gen.changes.get(why) ?? 0) > 0, `${why} moved the generation`);
  t.true(flows.hits > 10);
});

test.serial('a running trace takes every packet on the slow path; capture taps see cached packets', async (t) => {
  const l = await lab(t, 48, true);
  const flannel = l.n1.stack.interfaces.get('flannel.1')!.dev;
  let tapped = 0;
  flannel.taps.add((_f, dir) => void (dir === 'out' && tapped++));
  await warm(t, l, 'trace');
  const hits = l.n1.stack.flows!.hits;
  l.n1.tracer.start({ id: 'tr', a: '10.244.1.9', b: '10.244.2.9', protocol: 17, key: 1 });
  await send(l, 'while tracing', {}, true);
  await send(l, 'while tracing 2', {}, true);
  t.is(l.n1.stack.flows!.hits, hits, 'no hit while a trace runs');
  l.n1.tracer.stop('tr');
  await send(l, 'after the trace', {}, true);
  t.is(l.n1.stack.flows!.hits, hits + 2, 'the datagram and its echo, from the cache again');
  // Four datagrams to warm the flow up, two traced, one after: each left on flannel.1 once.
  t.is(tapped, 7, 'flannel.1 taps saw every packet, cached or not');
  t.is(lastOut(l).data, 'after the trace');
});

/** kube-proxy's decision for 10.96.0.10 (53/udp, 80/tcp), round robin over `backends`; the data path is what is tested. */
function serviceEngine(backends: string[], masquerade: boolean): NatEngine & { decisions: number } {
  const e = {
    mode: 'test',
    decisions: 0,
    wants: (dst: number) => dst === ipv4ToInt('10.96.0.10'),
    decide(p: { dst: string; dport: number }): NatDecision | null {
      if (p.dst !== '10.96.0.10') return null;
      const to = backends[e.decisions++ % backends.length];
      return { kind: 'dnat', to: { ip: to, port: p.dport === 53 ? 5353 : 8080 }, masquerade, service: 'default/svc', steps: [] };
    },
  };
  return e;
}

/** A Service's traffic from pod a: UDP queries and TCP ACK/PSH segments to the VIP. */
function serviceRound(l: Lab, i: number): Buffer[] {
  const vip = '10.96.0.10';
  const tcpSeg = (seq: number) =>
    ip({
      dst: vip,
      protocol: 6,
      payload: serializeTcp({ srcPort: 41000, dstPort: 80, seq, ack: 1, flags: { fin: false, syn: false, rst: false, psh: true, ack: true, urg: false, ece: false, cwr: false }, window: 65535, urgent: 0, options: {}, payload: Buffer.from(`seg ${seq}`) }, '10.244.1.2', vip),
    });
  return [udp(40000, 53, `query ${i}`, { dst: vip }), tcpSeg(1000 + i * 10), udp(40000, 53, `again ${i}`, { dst: vip })].map((d) => fromA(l, d));
}

test.serial('a Service connection (DNAT and masquerade) is cached both ways, byte for byte as without the cache; a removed connection is decided afresh', async (t) => {
  const fast = await lab(t, 45, true);
  const slow = await lab(t, 46, false);
  const engines = [fast, slow].map((l) => {
    const e = serviceEngine(['10.244.2.2', '10.244.2.3', '10.244.2.4'], true);
    l.n1.installServiceNat(e);
    l.c.stack.bindUdp(5353, { message: (m) => l.c.stack.sendUdp(5353, m.srcIp, m.srcPort, Buffer.from(`answer to ${m.data.toString()}`)) });
    return e;
  });
  for (let i = 0; i < 6; i++) {
    for (const frame of serviceRound(fast, i)) fast.a.eth0.transmit(frame);
    for (const frame of serviceRound(slow, i)) slow.a.eth0.transmit(frame);
    await quiet(fast, slow);
  }
  t.deepEqual(fast.out1.map((x) => hex(x.payload)), slow.out1.map((x) => hex(x.payload)));
  const sorted = (xs: Buffer[]) => xs.map(hex).sort();
  t.deepEqual(sorted(fast.inC), sorted(slow.inC));
  t.deepEqual(sorted(fast.inA), sorted(slow.inA));
  t.true(fast.inA.some((f) => f.subarray(42).toString().startsWith('answer to query')), 'pod a got the answers');
  // Connection tracking saw every packet alike (state, replied, assured; the seconds left aside).
  const ct = (l: Lab) => l.n1.netfilter.conntrack.format().replace(/^(\w+ +\d+) \d+ /gm, '$1 ');
  t.is(ct(fast), ct(slow));
  t.deepEqual(engines.map((e) => e.decisions), [2, 2], 'one decision per connection, cached or not');
  const flows = fast.n1.stack.flows!;
  t.true(flows.hits >= 10, `translated packets answered from the cache both ways: ${flows.hits}`);
  t.is(flows.refused, 0);

  // kube-proxy flushes the connection (an endpoint went away): the next packet is decided again, to the next backend.
  const hits = flows.hits;
  fast.n1.netfilter.conntrack.deleteWhere((e) => e.orig.proto === 'udp');
  fast.a.eth0.transmit(fromA(fast, udp(40000, 53, 'after the flush', { dst: '10.96.0.10' })));
  await settle(60);
  t.is(engines[0].decisions, 3);
  t.is(lastOut(fast).dst, '10.244.2.4', 'the third backend: a new decision');
  t.is(lastOut(fast).data, 'after the flush');
  t.is(flows.hits, hits, 'the flushed connection was not used from the cache');
});
