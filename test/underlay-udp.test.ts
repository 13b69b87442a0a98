/**
 * The UDP underlay's sending side against real sockets on loopback: a busy
 * (source port, peer) pair moves to a connected socket of its own without the
 * wire seeing a difference, and a datagram that socket fails to send (the
 * refusal a connected socket keeps from an ICMP port unreachable) still
 * reaches the peer; a peer that leaves the VTEP's FDB leaves no socket behind.
 */
import dgram from 'node:dgram';
import { once } from 'node:events';
import test from 'ava';
import { ManualClock } from '../common/clock.ts';
import { SeededRng } from '../common/rng.ts';
import { Eth0Sockets } from '../overlay/eth0-sockets.ts';
import { UdpUnderlay } from '../overlay/underlay-udp.ts';
import { Vtep } from '../backends/vxlan/vtep.ts';
import { NetDevice } from '../netstack/link/netdev.ts';

const A = '127.0.231.1';
const B = '127.0.231.2';

function underlay(ip: string, sourcePorts = 4): UdpUnderlay {
  return new UdpUnderlay({ localIp: ip, port: 0, sourcePorts, allowed: { net: '127.0.231.0', prefixLen: 24 }, clock: new ManualClock(), rng: new SeededRng(1) });
}

async function receiver(port = 0): Promise<{ sock: dgram.Socket; got: { seq: number; from: number }[] }> {
  const sock = dgram.createSocket('udp4');
  const got: { seq: number; from: number }[] = [];
  sock.on('message', (msg, rinfo) => got.push({ seq: msg.readUInt32BE(0), from: rinfo.port }));
  sock.bind(port, B);
  await once(sock, 'listening');
  return { sock, got };
}

const datagram = (seq: number) => {
  const b = Buffer.alloc(64, 0x5a);
  b.writeUInt32BE(seq, 0);
  return b;
};

/** Sends datagrams of flow `hash` to B, a turn of the event loop apart, until a connected socket is up; the next seq. */
async function untilConnected(a: UdpUnderlay, port: number, hash: number, from = 0): Promise<number> {
  let seq = from;
  while (a.connectedSockets === 0 && seq < from + 1000) {
    a.send(B, port, datagram(seq++), hash);
    await new Promise((r) => setImmediate(r));
  }
  return seq;
}

const until = async (cond: () => boolean, ms = 5000) => {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
};

test('a busy flow moves to a connected socket on its own source port: every datagram arrives, from the same port', async (t) => {
  const a = underlay(A);
  await a.start();
  const { sock, got } = await receiver();
  const port = sock.address().port;
  try {
    const hashes = [7, 10];
    let seq = 0;
    // In bursts with the event loop between them, as a node sends: the connected sockets are ready after a few.
    for (let burst = 0; burst < 20; burst++) {
      for (let i = 0; i < 16; i++) for (const h of hashes) t.is(a.send(B, port, datagram(seq++), h), 'sent');
      await new Promise((r) => setImmediate(r));
    }
    await until(() => got.length === seq);
    t.is(got.length, seq);
    t.is(a.connectedSockets, 2, 'one connected socket per busy (source port, peer) pair');
    for (const { seq: s, from } of got) t.is(from, a.sourcePortFor(hashes[s % 2]), `datagram ${s}`);
    t.deepEqual(
      got.map((g) => g.seq),
      [...Array(seq).keys()],
      'in the order sent',
    );
    t.is(new Set(a.sourcePortList).size, 4, 'the pool has four distinct source ports');
    t.is(a.sendErrors, 0);
  } finally {
    sock.close();
    await a.close();
  }
});

test('a send the connected socket refuses (an earlier ICMP port unreachable) goes again from the same source port', async (t) => {
  const a = underlay(A, 1);
  await a.start();
  let r = await receiver();
  const port = r.sock.address().port;
  try {
    const seq = await untilConnected(a, port, 3);
    t.is(a.connectedSockets, 1);
    await until(() => r.got.length === seq);
    r.sock.close();
    // Nothing listens: the kernel answers with a port unreachable, which the connected socket keeps as ECONNREFUSED
    // for its next send. A new listener binds (in the next tick) before that send's failure is called back.
    a.send(B, port, datagram(1_000_000), 3);
    const next = receiver(port);
    a.send(B, port, datagram(1_000_001), 3);
    r = await next;
    await until(() => r.got.length > 0);
    t.deepEqual(
      r.got.map((g) => g.seq),
      [1_000_001],
    );
    t.is(r.got[0].from, a.sourcePortList[0]);
    t.is(a.resent, 1);
    t.is(a.sendErrors, 0);
  } finally {
    r.sock.close();
    await a.close();
  }
});

test('a peer that leaves the FDB leaves no connected socket; its flows start again from the pool, from the same port', async (t) => {
  const a = underlay(A, 2);
  await a.start();
  const vtep = new Vtep({ vni: 1, mac: '02:00:00:00:00:01', mtu: 1450, port: 0, sockets: new Eth0Sockets(new NetDevice('eth0', 'ether', '02:00:00:00:00:02', 1500), a) });
  const { sock, got } = await receiver();
  const port = sock.address().port;
  const busy = (from: number) => untilConnected(a, port, 5, from);
  try {
    vtep.setFdb('02:00:00:00:00:0b', B);
    vtep.setFdb('02:00:00:00:00:0c', B);
    let seq = await busy(0);
    t.is(a.connectedSockets, 1);
    vtep.deleteFdb('02:00:00:00:00:0b');
    t.is(a.connectedSockets, 1, 'another FDB entry still points at the peer');
    vtep.setFdb('02:00:00:00:00:0c', '127.0.231.3');
    t.is(a.connectedSockets, 0, 'no FDB entry points at the peer any more');
    seq = await busy(seq);
    t.is(a.connectedSockets, 1, 'a busy flow to it again connects again');
    await until(() => got.length === seq);
    t.is(got.length, seq);
    t.true(got.every((g) => g.from === a.sourcePortFor(5)));
  } finally {
    sock.close();
    await a.close();
  }
});

test('a datagram an impairment holds past its socket closing is counted as a send error, never thrown', async (t) => {
  const clock = new ManualClock();
  const a = new UdpUnderlay({ localIp: A, port: 0, sourcePorts: 1, allowed: { net: '127.0.231.0', prefixLen: 24 }, clock, rng: new SeededRng(1) });
  await a.start();
  const { sock, got } = await receiver();
  const port = sock.address().port;
  try {
    let seq = await untilConnected(a, port, 0);
    t.is(a.connectedSockets, 1);
    a.setImpairment(B, { delayMs: 50 });
    t.regex(a.send(B, port, datagram(seq++), 0), /^delayed/);
    a.forgetPeer(B);
    t.regex(a.send(B, port, datagram(seq++), 0), /^delayed/, 'from the pool again');
    await a.close();
    t.notThrows(() => clock.advance(100));
    t.is(a.sendErrors, 2, 'the connected socket was closed for one, the whole underlay for the other');
    t.is(got.length, seq - 2);
  } finally {
    sock.close();
  }
});
