/**
 * flanneld as a thread of its own (backends/udp/flanneld-worker.ts), in two
 * data planes of one process joined by real UDP sockets on 127.0.150.0/24:
 * pods ping both ways only through that thread (with it stopped, nothing
 * crosses), its counters show the four crossings per packet and node, its
 * event loop did the work, a malformed 8285 datagram is counted and dropped
 * while it keeps serving, and a trace follows the packet into the thread and
 * out again on both nodes, a drop inside it included; a busy flow's connected
 * underlay socket is closed once no subnet routes to its node.
 */
import test from 'ava';
import dgram from 'node:dgram';
import { threadId } from 'node:worker_threads';
import { monotonicClock } from '../common/clock.ts';
import type { FlanneldCopies } from '../backends/udp/flanneld.ts';
import type { NodeDataPlane } from '../node-agent/dataplane.ts';
import { sendProbe } from '../netstack/trace-probe.ts';
import { addPod, makeNode as makeTestNode, mesh as meshNodes, runPing } from './helpers/dataplane.ts';

const NET = '127.0.150.0/24';
const makeNode = (n: number) => makeTestNode(n, { net: NET, backend: 'udp' });
const copies = (n: NodeDataPlane) => n.link.stats!().flanneld as FlanneldCopies;

// flanneld's counters come back from its thread: on a busy host (a full suite beside other work) 2 s was once too short.
async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function lab() {
  const n1 = makeNode(1);
  const n2 = makeNode(2);
  await n1.start();
  await n2.start();
  meshNodes([n1, n2], 'udp');
  return { n1, n2, a: addPod(n1, 'a', '10.244.1.2'), c: addPod(n2, 'c', '10.244.2.2'), close: () => Promise.all([n1.close(), n2.close()]) };
}

test.serial('pods ping both ways through flanneld\'s thread; each packet crosses into it and out of it twice per node', async (t) => {
  const { n1, n2, a, c, close } = await lab();
  t.teardown(close);
  t.regex((await runPing(a, ['-c', '3', '-i', '0.01', '10.244.2.2'])).out, /3 packets transmitted, 3 received, 0% packet loss/);
  t.regex((await runPing(c, ['-c', '3', '-i', '0.01', '10.244.1.2'])).out, /3 packets transmitted, 3 received, 0% packet loss/);
  for (const n of [n1, n2]) {
    const f = copies(n);
    // Three requests and three replies each way: on each node six packets read from flannel0 and sent, six received and written.
    t.like(f, { tunReads: 6, sent: 6, received: 6, tunWrites: 6, bytesCopied: 24 * 84, noRoute: 0, malformed: 0 });
    // The counting thread is not this one, and its event loop did the work.
    t.not(f.thread.id, threadId);
    t.true(f.thread.busyMs > 0, JSON.stringify(f.thread));
    t.is(f.thread.restarts, 0);
  }
  t.not(copies(n1).thread.id, copies(n2).thread.id, 'one flanneld per node');

  // Without flanneld nothing crosses: the packet is dropped at flannel0 and no counter moves.
  await n1.link.close!();
  t.regex((await runPing(a, ['-c', '1', '-W', '1', '10.244.2.2'])).out, /1 packets transmitted, 0 received, 100% packet loss/);
  t.is(n1.stack.interfaces.get('flannel0')!.dev.counters.drops.get('flanneld-down'), 1);
  t.like(copies(n1), { tunReads: 6, sent: 6 });
});

test.serial('a malformed datagram on 8285 is counted and dropped; flanneld keeps serving', async (t) => {
  const { n2, a, close } = await lab();
  t.teardown(close);
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.150.99', () => r()));
  // An IPv4 header claiming 84 bytes, cut off at 20; then bytes that are not IP at all.
  const cut = Buffer.from('450000540000400040010000', 'hex');
  for (const bad of [Buffer.concat([cut, Buffer.alloc(8)]), Buffer.from('not an ip packet at all')]) {
    await new Promise<void>((r) => sock.send(bad, 8285, '127.0.150.12', () => r()));
  }
  sock.close();
  await until('two malformed datagrams', () => copies(n2).malformed === 2);
  t.like(copies(n2), { received: 2, tunWrites: 0, malformed: 2 });
  const eth0Drops = Object.fromEntries(n2.eth0.counters.drops);
  t.is(Object.entries(eth0Drops).filter(([r]) => r.startsWith('malformed-flannel-udp:')).reduce((s, [, v]) => s + v, 0), 2, JSON.stringify(eth0Drops));
  t.regex((await runPing(a, ['-c', '2', '-i', '0.01', '10.244.2.2'])).out, /2 received, 0% packet loss/);
  t.like(copies(n2), { received: 4, tunWrites: 2, malformed: 2, thread: { restarts: 0 } });
});

test.serial('a busy flow to a node gets a connected underlay socket, which goes when no subnet routes to that node any more', async (t) => {
  const { n1, a, close } = await lab();
  t.teardown(close);
  // Past the underlay's threshold of busy datagrams to one peer from one source port.
  t.regex((await runPing(a, ['-c', '80', '-i', '0.002', '10.244.2.2'])).out, /80 received, 0% packet loss/);
  t.is(n1.underlay.connectedSockets, 1);
  n1.applyPlan({ op: 'del-route', cidr: '10.244.2.0/24', node: 'node-2' });
  t.is(n1.underlay.connectedSockets, 0, 'no subnet routes to node-2: its socket is closed');
});

test.serial('a trace follows the packet into flanneld\'s thread and out again on both nodes, and a drop inside it', async (t) => {
  const { n1, n2, a, close } = await lab();
  t.teardown(close);
  const filter = { id: 'flanneld-trace', a: '10.244.1.2', b: '10.244.2.2', protocol: 1, key: 4242 };
  for (const n of [n1, n2]) n.tracer.start(filter);
  const r = await sendProbe(a, filter, monotonicClock, { timeoutMs: 2000 });
  t.is(r.kind, 'reply');
  const hops = [...n1.tracer.collect(filter.id), ...n2.tracer.collect(filter.id)].sort((x, y) => x.tsUs - y.tsUs || x.seq - y.seq);
  const lines = hops.map((h) => `${h.leg} ${h.node} ${h.point}: ${h.summary}`);
  const at = (re: RegExp) => lines.findIndex((l) => re.test(l));
  const want = [
    /^request node-1 flanneld: read\(\) by flanneld: 84 bytes copied from flannel0/,
    /^request node-1 flanneld: flanneld: 10\.244\.2\.2 is in a subnet of 127\.0\.150\.12; sendto 127\.0\.150\.12:8285/,
    /^request node-1 eth0: underlay: real UDP datagram sent to 127\.0\.150\.12:8285/,
    /^request node-2 flanneld: recvfrom\(\) by flanneld: 84 bytes from 127\.0\.150\.11:\d+/,
    /^request node-2 flanneld: flanneld: 10\.244\.1\.2 > 10\.244\.2\.2 write\(\) into flannel0/,
    /^reply node-2 flanneld: read\(\) by flanneld/,
    /^reply node-2 flanneld: flanneld: 10\.244\.1\.2 is in a subnet of 127\.0\.150\.11/,
    /^reply node-1 flanneld: recvfrom\(\) by flanneld/,
    /^reply node-1 flanneld: flanneld: 10\.244\.2\.2 > 10\.244\.1\.2 write\(\) into flannel0/,
  ];
  const found = want.map(at);
  t.true(found.every((i, k) => i >= 0 && (k === 0 || i > found[k - 1])), `${JSON.stringify(found)}\n${lines.join('\n')}`);

  // No subnet for the destination in flanneld's table: the drop is flanneld's, on the node that read it.
  const lost = { id: 'flanneld-noroute', a: '10.244.1.2', b: '10.244.77.7', protocol: 1, key: 4243 };
  n1.tracer.start(lost);
  t.is((await sendProbe(a, lost, monotonicClock, { timeoutMs: 300 })).kind, 'no-reply');
  await until('the drop to come back from the thread', () => n1.tracer.collect(lost.id).some((h) => h.drop));
  const drops = n1.tracer.collect(lost.id).filter((h) => h.drop);
  t.deepEqual(drops.map((h) => [h.point, h.drop]), [['flanneld', 'flanneld-no-route']]);
  t.is(copies(n1).noRoute, 1);
});
