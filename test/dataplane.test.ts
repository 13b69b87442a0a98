/**
 * Two nodes' data planes in one process, joined by real UDP sockets on
 * loopback (127.0.60.0/24): pods ping across the bridge and across VXLAN, and
 * the kernel-like error paths (TTL, MTU/DF, ARP failure, bad datagrams) behave.
 */
import test, { type ExecutionContext } from 'ava';
import dgram from 'node:dgram';
import { getEventListeners } from 'node:events';
import { ManualClock, monotonicClock, type Clock } from '../common/clock.ts';
import { SeededRng } from '../common/rng.ts';
import { ping, rttSummary } from '../pod-tools/ping.ts';
import { addPod, makeNode as makeTestNode, mesh, runPing } from './helpers/dataplane.ts';

const NET = '127.0.60.0/24';

const makeNode = (n: number, clock: Clock, port = 8472) => makeTestNode(n, { net: NET, clock, vxlanPort: port });
const pod = addPod;

test.serial('pods ping on one node (bridge, TTL 64) and across nodes (VXLAN, TTL 62)', async (t) => {
  const n1 = makeNode(1, monotonicClock);
  const n2 = makeNode(2, monotonicClock);
  await n1.start();
  await n2.start();
  t.teardown(() => Promise.all([n1.close(), n2.close()]));
  mesh([n1, n2]);
  const a = pod(n1, 'a', '10.244.1.2');
  pod(n1, 'b', '10.244.1.3');
  pod(n2, 'c', '10.244.2.2');

  const same = await runPing(a, ['-c', '3', '-i', '0.01', '10.244.1.3']);
  t.is(same.code, 0, same.out);
  t.regex(same.out, /^PING 10\.244\.1\.3 \(10\.244\.1\.3\) 56\(84\) bytes of data\.$/m);
  t.regex(same.out, /64 bytes from 10\.244\.1\.3: icmp_seq=1 ttl=64 time=/);
  t.regex(same.out, /3 packets transmitted, 3 received, 0% packet loss/);

  const cross = await runPing(a, ['-c', '3', '-i', '0.01', '10.244.2.2']);
  t.is(cross.code, 0, cross.out);
  t.regex(cross.out, /64 bytes from 10\.244\.2\.2: icmp_seq=3 ttl=62 time=/);
  t.regex(cross.out, /3 packets transmitted, 3 received, 0% packet loss/);
  t.true(n1.eth0.counters.txPackets >= 3 && n2.eth0.counters.rxPackets >= 3, 'VXLAN datagrams crossed the underlay');

  // The node itself answers on its cni0 and flannel.1 addresses.
  t.regex((await runPing(a, ['-c', '1', '10.244.1.1'])).out, /ttl=64/);
  t.regex((await runPing(a, ['-c', '1', '10.244.2.0'])).out, /from 10\.244\.2\.0: icmp_seq=1 ttl=63/);

  // Large echo: fragmented by the pod (PMTUDISC_WANT), reassembled by the peer pod, and the reply too.
  const big = await runPing(a, ['-c', '1', '-s', '3000', '10.244.2.2']);
  t.regex(big.out, /3008 bytes from 10\.244\.2\.2/, big.out);
});

test.serial('TTL runs out at the first router; DF over the MTU gets fragmentation-needed', async (t) => {
  const n1 = makeNode(1, monotonicClock);
  const n2 = makeNode(2, monotonicClock);
  await n1.start();
  await n2.start();
  t.teardown(() => Promise.all([n1.close(), n2.close()]));
  mesh([n1, n2]);
  const a = pod(n1, 'a', '10.244.1.2');
  pod(n2, 'c', '10.244.2.2');

  const ttl = await runPing(a, ['-c', '1', '-t', '1', '10.244.2.2']);
  t.is(ttl.code, 1);
  t.regex(ttl.out, /From 10\.244\.1\.1 icmp_seq=1 Time to live exceeded/);
  t.regex(ttl.out, /1 packets transmitted, 0 received, \+1 errors, 100% packet loss/);
  // TTL 2 survives node-1 and expires at node-2, which answers from flannel.1's address.
  t.regex((await runPing(a, ['-c', '1', '-t', '2', '10.244.2.2'])).out, /From 10\.244\.2\.0 icmp_seq=1 Time to live exceeded/);

  n1.stack.interfaces.get('flannel.1')!.dev.mtu = 1400;
  const df = await runPing(a, ['-c', '1', '-M', 'do', '-s', '1422', '10.244.2.2']);
  t.regex(df.out, /From 10\.244\.1\.1 icmp_seq=1 Frag needed and DF set \(mtu = 1400\)/, df.out);
  t.is(n1.stack.interfaces.get('flannel.1')!.dev.counters.drops.get('frag-needed'), 1);
  const local = await runPing(a, ['-c', '1', '-M', 'do', '-s', '2000', '10.244.2.2']);
  t.regex(local.out, /ping: local error: message too long, mtu=1450/);
});

test.serial('malformed and wrong-VNI datagrams on :8472 are counted and dropped; pings go on', async (t) => {
  const n1 = makeNode(1, monotonicClock);
  const n2 = makeNode(2, monotonicClock);
  await n1.start();
  await n2.start();
  t.teardown(() => Promise.all([n1.close(), n2.close()]));
  mesh([n1, n2]);
  const a = pod(n1, 'a', '10.244.1.2');
  pod(n2, 'c', '10.244.2.2');

  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.60.99', () => r()));
  const rng = new SeededRng(1234);
  const send = (b: Buffer) => new Promise<void>((r) => sock.send(b, 8472, '127.0.60.12', () => r()));
  for (let i = 0; i < 200; i++) {
    const b = Buffer.alloc(rng.int(0, 200));
    for (let j = 0; j < b.length; j++) b[j] = rng.int(0, 255);
    if (b.length > 0) b[0] = b[0] & 0xf7; // never a valid I flag
    await send(b);
  }
  const wrongVni = Buffer.alloc(8 + 60);
  wrongVni.writeUInt32BE(0x08000000, 0);
  wrongVni.writeUInt32BE(7 << 8, 4);
  await send(wrongVni);
  sock.close();
  await new Promise((r) => setTimeout(r, 100));
  const drops = n2.eth0.counters.drops;
  const malformed = [...drops.entries()].filter(([k]) => k.startsWith('malformed-vxlan')).reduce((s, [, v]) => s + v, 0);
  t.is(malformed, 200, JSON.stringify(Object.fromEntries(drops)));
  t.is(drops.get('wrong-vni'), 1);
  const after = await runPing(a, ['-c', '2', '-i', '0.01', '10.244.2.2']);
  t.regex(after.out, /2 received, 0% packet loss/);
});

test('an unresolvable neighbour: 3 ARP probes a second apart, then Destination Host Unreachable', async (t) => {
  const clock = new ManualClock();
  const n1 = makeNode(1, clock);
  const a = pod(n1, 'a', '10.244.1.2');
  let out = '';
  const done = ping({ pod: a, argv: ['ping', '-c', '1', '-W', '5', '10.244.1.77'], stdout: (s) => (out += s), stderr: (s) => (out += s), signal: new AbortController().signal, clock, rng: new SeededRng(1) });
  const arps = () => a.eth0.counters.txPackets;
  await Promise.resolve();
  t.is(arps(), 1, 'first ARP request at once');
  for (let i = 0; i < 40; i++) {
    clock.advance(100);
    await new Promise((r) => setImmediate(r));
  }
  const code = await done;
  t.is(arps(), 3);
  t.regex(out, /From 10\.244\.1\.2 icmp_seq=1 Destination Host Unreachable/);
  t.is(code, 1);
  t.regex((await Promise.resolve(a.stack.neigh.get('eth0', '10.244.1.77')))!.state, /FAILED/);
});

test('ping holds one abort listener for its whole run, and an abort ends it with the statistics', async (t) => {
  const clock = new ManualClock();
  const n1 = makeNode(1, clock);
  const a = pod(n1, 'a', '10.244.1.2');
  const ctl = new AbortController();
  let out = '';
  const done = ping({ pod: a, argv: ['ping', '-c', '100', '-i', '1', '10.244.1.1'], stdout: (s) => (out += s), stderr: (s) => (out += s), signal: ctl.signal, clock, rng: new SeededRng(1) });
  let first: ReturnType<typeof getEventListeners>[number] | undefined;
  for (let i = 0; i < 5; i++) {
    await new Promise((r) => setImmediate(r));
    const listeners = getEventListeners(ctl.signal, 'abort');
    t.is(listeners.length, 1, `after ${i} intervals`);
    first ??= listeners[0];
    t.is(listeners[0], first, `the same listener after ${i} intervals, not one added and removed per echo`);
    clock.advance(1000);
  }
  await new Promise((r) => setImmediate(r));
  ctl.abort();
  t.is(await done, 0);
  t.regex(out, /^6 packets transmitted, 6 received, 0% packet loss/m);
  t.is(getEventListeners(ctl.signal, 'abort').length, 0, 'removed when the run ends');
});

test("ping's echoes carry iputils' payload: the send time as a struct timeval, then 0x10, 0x11, ...", async (t) => {
  const n1 = makeNode(1, monotonicClock);
  await n1.start();
  t.teardown(() => n1.close());
  const a = pod(n1, 'a', '10.244.1.2');
  const sent: Buffer[] = [];
  a.eth0.taps.add((frame, dir) => {
    // Ethernet, IPv4 (20 bytes, no options), ICMP type 8: the echo request's data from byte 42.
    if (dir === 'out' && frame.readUInt16BE(12) === 0x0800 && frame[23] === 1 && frame[34] === 8) sent.push(Buffer.from(frame.subarray(42)));
  });
  const before = Date.now();
  const r = await runPing(a, ['-c', '3', '-i', '0.01', '10.244.1.1']);
  const after = Date.now();
  t.is(r.code, 0, r.out);
  t.is(sent.length, 3);
  const times = sent.map((d) => {
    t.is(d.length, 56);
    t.deepEqual([...d.subarray(16)], Array.from({ length: 40 }, (_, i) => 0x10 + i));
    t.is(d.readUInt32LE(4), 0, 'seconds: the high word');
    t.is(d.readUInt32LE(12), 0, 'microseconds: the high word');
    const usec = d.readUInt32LE(8);
    t.true(usec < 1_000_000 && usec % 1000 === 0, `${usec} µs, from a millisecond clock`);
    return d.readUInt32LE(0) * 1000 + usec / 1000;
  });
  for (const ms of times) t.true(ms >= before - 1 && ms <= after, `${ms} within the run (${before}-${after})`);
  t.true(times[2] > times[0], 'each echo stamped when it goes, not once');
});

/**
 * A clock whose timers fire `early(i)` ms before they are due (negative: late), as a Node timer fires up to ~1 ms
 * early on performance.now(), counting whole milliseconds of the event loop's time. Counts the timers set.
 */
function skewedClock(base: ManualClock, early: (i: number) => number): Clock & { timers: number } {
  const c = {
    timers: 0,
    now: () => base.now(),
    setTimeout: (fn: () => void, ms: number) => base.setTimeout(fn, Math.max(0, ms - early(c.timers++))),
  };
  return c;
}

/** ping from pod a to its gateway on a manual clock, advanced in 0.1 ms steps: when each echo went (ms). */
async function pingTimes(t: ExecutionContext, argv: string[], early: (i: number) => number): Promise<{ sent: number[]; timers: number; out: string }> {
  const base = new ManualClock();
  const n1 = makeNode(1, base);
  const a = pod(n1, 'a', '10.244.1.2');
  const sent: number[] = [];
  a.eth0.taps.add((frame, dir) => {
    if (dir === 'out' && frame.readUInt16BE(12) === 0x0800 && frame[23] === 1 && frame[34] === 8) sent.push(base.now());
  });
  const clock = skewedClock(base, early);
  let out = '';
  let code: number | undefined;
  void ping({ pod: a, argv: ['ping', ...argv, '10.244.1.1'], stdout: (s) => (out += s), stderr: (s) => (out += s), signal: new AbortController().signal, clock, rng: new SeededRng(1) }).then((c) => (code = c));
  for (let i = 0; code === undefined && i < 100_000; i++) {
    await new Promise((r) => setImmediate(r));
    base.advance(0.1);
  }
  t.is(code, 0, out);
  return { sent, timers: clock.timers, out };
}

const gaps = (xs: number[]) => xs.slice(1).map((x, i) => x - xs[i]);

test('ping keeps its interval on average with timers that fire early, one timer per interval', async (t) => {
  // Each timer up to 0.9 ms early, as Node's are: iputils' `-c 11 -i 0.005` sends over ~50 ms.
  const { sent, timers, out } = await pingTimes(t, ['-q', '-c', '11', '-i', '0.005'], (i) => [0.9, 0.3, 0.6][i % 3]);
  t.is(sent.length, 11);
  // iputils' `time`: from the start to the last echo sent, in whole milliseconds.
  t.regex(out, new RegExp(`^11 packets transmitted, 11 received, 0% packet loss, time ${Math.floor(sent[10] - sent[0])}ms$`, 'm'));
  t.true(Math.abs(sent[10] - sent[0] - 50) <= 1, `10 intervals of 5 ms took ${(sent[10] - sent[0]).toFixed(1)} ms`);
  for (const g of gaps(sent)) t.true(g >= 4 - 1e-9 && g <= 6 + 1e-9, `a gap of ${g.toFixed(2)} ms`);
  // The last echo's wait for its reply is the one more.
  t.true(timers <= 11, `${timers} timers for 10 intervals`);
});

test("ping's -w deadline takes no echo due at it, when its timer fired early", async (t) => {
  // As iputils' `ping -w 1 -i 0.1` sends 10: here 50 ms at 5 ms intervals, each timer 0.7 ms early.
  const { sent, out } = await pingTimes(t, ['-q', '-w', '0.05', '-i', '0.005'], () => 0.7);
  t.is(sent.length, 10);
  // Its time is the last echo's, not the deadline's.
  t.regex(out, /^10 packets transmitted, 10 received, 0% packet loss, time 4[45]ms$/m);
});

test('a late echo is not made up for by a burst, and the ones after keep the interval', async (t) => {
  // The third timer fires 3 ms late; the others 0.5 ms early.
  const { sent } = await pingTimes(t, ['-q', '-c', '8', '-i', '0.005'], (i) => (i === 2 ? -3 : 0.5));
  t.is(sent.length, 8);
  const g = gaps(sent);
  t.true(g[2] >= 7.9, `the late one: ${g[2].toFixed(2)} ms`);
  for (const x of g) t.true(x >= 4 - 1e-9, `no two echoes closer than the interval less 1 ms: ${x.toFixed(2)} ms`);
  t.true(Math.abs(sent[7] - sent[3] - 20) <= 1, `after it, 4 intervals took ${(sent[7] - sent[3]).toFixed(1)} ms`);
});

test("ping's rtt line: iputils' min/avg/max/mdev, and for a run of 202,000 replies too", (t) => {
  t.is(rttSummary([1, 2, 3, 4]), 'rtt min/avg/max/mdev = 1.000/2.500/4.000/1.118 ms');
  t.is(rttSummary([0.25]), 'rtt min/avg/max/mdev = 0.250/0.250/0.250/0.000 ms');
  // 0.100 ... 0.200 ms, 2,000 times over: mean 0.150, mdev sqrt((101² - 1) / 12) µs = 29.2 µs.
  const many = Array.from({ length: 202_000 }, (_, i) => 0.1 + (i % 101) / 1000);
  t.is(rttSummary(many), 'rtt min/avg/max/mdev = 0.100/0.150/0.200/0.029 ms');
});
