/**
 * The stacks' dispatcher (netstack/ipv4/dispatcher.ts): processing queues what
 * it emits and one loop per namespace sends it afterwards. So a chain of
 * replies, each sent from the handler of the one before, runs to the end
 * inside the call that started it (no microtask, no timer: the clock never
 * moves), in order, and in the same JS stack depth at its 5,000th round as at
 * its first: no namespace is re-entered, however long the exchange.
 */
import test from 'ava';
import { ManualClock } from '../common/clock.ts';
import { IpStack } from '../netstack/ipv4/ip-stack.ts';
import { Bridge } from '../netstack/link/bridge.ts';
import { PodNet } from '../netstack/pod-net.ts';

const ROUNDS = 5000;

/** Frames on the JS stack right now. */
function depth(): number {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = Infinity;
  const n = new Error().stack!.split('\n').length;
  Error.stackTraceLimit = limit;
  return n;
}

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};

function pod(clock: ManualClock, name: string, ip: string): PodNet {
  return new PodNet({
    namespace: 'default',
    name,
    uid: `uid-${name}-0000`,
    ip,
    podCIDR: '10.244.1.0/24',
    gateway: '10.244.1.1',
    clusterCidr: '10.244.0.0/16',
    mtu: 1450,
    seed: 7,
    clock,
    nodeName: 'node-1',
  });
}

/** A node's namespace with cni0 (10.244.1.1/24) and the given pods on it, as the CNI bridge plugin wires them. */
function node(clock: ManualClock, pods: PodNet[]): IpStack {
  const stack = new IpStack('node node-1', { clock, forwarding: true, traceNs: 'node' });
  const cni0 = new Bridge('cni0', '02:00:00:00:00:01', 1450, clock);
  stack.addInterface(cni0.dev, { arp: true });
  stack.addAddress('cni0', '10.244.1.1', 24);
  for (const p of pods) cni0.addPort(p.hostVeth);
  return stack;
}

test('a pod talking TCP to itself over loopback: a chain of request/replies completes inside the first write, in order, in constant stack depth', async (t) => {
  const clock = new ManualClock();
  const p = pod(clock, 'self', '10.244.1.2');
  p.tcp.listen(7000, {}, (s) => s.on('data', (d: Buffer) => s.write(d)));
  const client = p.tcp.connect({ host: '127.0.0.1', port: 7000 });
  // connect() starts after the caller's handlers are attached (a microtask, as Node's): the handshake runs in it.
  await new Promise<void>((resolve) => client.once('connect', resolve));
  const seen: number[] = [];
  const depths: number[] = [];
  client.on('data', (d: Buffer) => {
    seen.push(d.readUInt32BE(0));
    depths.push(depth());
    if (seen.length < ROUNDS) client.write(u32(seen.length));
  });
  client.write(u32(0));
  // Nothing was awaited and the clock did not move: every round ran inside that write.
  t.is(seen.length, ROUNDS);
  t.deepEqual(seen, Array.from({ length: ROUNDS }, (_, i) => i), 'in order');
  t.is(Math.max(...depths), depths[0], `stack depth stays at ${depths[0]} frames`);
  t.true(p.stack.maxQueued <= 4, `the dispatcher held at most ${p.stack.maxQueued} items`);
  t.is(clock.now(), 0);
});

test('ICMP echo to 127.0.0.1: a burst of requests is answered inside the loop that sent it, in order', (t) => {
  const clock = new ManualClock();
  const p = pod(clock, 'pinger', '10.244.1.3');
  const replies: number[] = [];
  p.stack.openIcmp(77, (e) => {
    if (e.kind === 'echo-reply') replies.push(e.seq);
  });
  const data = Buffer.alloc(56, 1);
  for (let seq = 0; seq < ROUNDS; seq++) t.true(p.stack.sendEcho('127.0.0.1', 77, seq & 0xffff, data).ok);
  t.is(replies.length, ROUNDS, 'answered without a microtask');
  t.deepEqual(replies, Array.from({ length: ROUNDS }, (_, i) => i));
});

test('UDP between a pod and its node across the veth and cni0: each reply sent from the last one\'s handler, 5,000 rounds, no recursion', (t) => {
  const clock = new ManualClock();
  const a = pod(clock, 'a', '10.244.1.4');
  const b = pod(clock, 'b', '10.244.1.5');
  const n = node(clock, [a, b]);
  // The node echoes; pod b echoes too (bridged pod to pod, not through the node's stack).
  n.bindUdp(6000, { message: (m) => n.sendUdp(6000, m.srcIp, m.srcPort, m.data) });
  b.stack.bindUdp(6000, { message: (m) => b.stack.sendUdp(6000, m.srcIp, m.srcPort, m.data) });
  for (const peer of ['10.244.1.1', '10.244.1.5']) {
    const seen: number[] = [];
    const depths: number[] = [];
    const sock = a.stack.bindUdp(0, {
      message: (m) => {
        seen.push(m.data.readUInt32BE(0));
        depths.push(depth());
        if (seen.length < ROUNDS) a.stack.sendUdp(sock.port, peer, 6000, u32(seen.length));
      },
    });
    // The first datagram waits for ARP; the answer, and everything after it, comes back in the same call.
    t.true(a.stack.sendUdp(sock.port, peer, 6000, u32(0)).ok);
    t.is(seen.length, ROUNDS, `${peer}: every round inside the first send`);
    t.deepEqual(seen, Array.from({ length: ROUNDS }, (_, i) => i), `${peer}: in order`);
    t.is(Math.max(...depths), depths[depths.length - 1], `${peer}: no growth`);
    t.is(Math.max(...depths.slice(ROUNDS / 2)), Math.max(...depths.slice(1, 10)), `${peer}: the stack at round 2,500 is as deep as at round 2`);
    sock.close();
  }
  t.is(clock.now(), 0);
});
