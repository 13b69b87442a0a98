/**
 * The TCP machine on a ManualClock: two namespaces' stacks joined by a veth
 * pair whose wire is an in-memory link with a 1 ms delay and seeded faults
 * (test/helpers/tcp-link.ts). Handshake, data, MSS, RST on a closed port,
 * SYN retries, RTO backoff and Karn's rule, the bound on a vanished peer,
 * fast retransmit, zero-window probing, out-of-order buffering, FIN /
 * half-close / TIME-WAIT, RST, backlog, EADDRINUSE, ICMP host unreachable,
 * options we do not implement, loopback, and a lossy, reordering link.
 */
import test from 'ava';
import { createHash } from 'node:crypto';
import { IPPROTO_TCP } from '../packet/ipv4.ts';
import { serializeTcp, NO_FLAGS, TCP_MAX_WSCALE } from '../packet/tcp.ts';
import { TcpError } from '../netstack/tcp/errors.ts';
import type { TcpSocket } from '../netstack/tcp/socket.ts';
import { A_IP, B_IP, TcpLink, pattern, type Seen } from './helpers/tcp-link.ts';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const flagsOf = (s: Seen) => {
  const f = s.seg.flags;
  return (f.syn ? 'S' : '') + (f.fin ? 'F' : '') + (f.rst ? 'R' : '') + (f.psh ? 'P' : '') + (f.ack ? '.' : '');
};

/** A listener on B that collects everything each connection receives. */
function sink(link: TcpLink, port: number, opts: { allowHalfOpen?: boolean; backlog?: number } = {}) {
  const got: Buffer[] = [];
  const socks: TcpSocket[] = [];
  const server = link.tcpB.listen(port, opts, (s) => {
    socks.push(s);
    s.on('data', (d) => got.push(d));
  });
  return { server, socks, data: () => Buffer.concat(got) };
}

/** A TCP echo server on B with flow control. */
function echo(link: TcpLink, port: number) {
  return link.tcpB.listen(port, {}, (s) => {
    s.on('data', (d) => {
      if (!s.write(d)) {
        s.pause();
        s.once('drain', () => s.resume());
      }
    });
    s.on('error', () => {});
  });
}

/** Writes `data` with backpressure, then ends. */
function sendAll(sock: TcpSocket, data: Buffer, chunk = 65536): void {
  let off = 0;
  const pump = () => {
    while (off < data.length) {
      const ok = sock.write(data.subarray(off, off + chunk));
      off += chunk;
      if (!ok) return;
    }
    sock.end();
  };
  sock.on('drain', pump);
  if (sock.state === 'ESTABLISHED') pump();
  else sock.once('connect', pump);
}

test('three-way handshake: SYN with MSS and window scale, seeded ISN, both ends ESTABLISHED', async (t) => {
  const link = new TcpLink();
  const { socks } = sink(link, 80);
  const c = link.tcpA.connect({ host: B_IP, port: 80 });
  let connected = -1;
  c.on('connect', () => (connected = link.clock.now()));
  await link.until(() => connected >= 0 && socks.length > 0, 100, 1);
  t.is(c.state, 'ESTABLISHED');
  t.is(socks.length, 1);
  t.is(socks[0].state, 'ESTABLISHED');
  t.is(socks[0].remoteAddress, A_IP);
  t.is(socks[0].remotePort, c.localPort);
  t.is(c.remoteAddress, B_IP);
  t.is(c.localAddress, A_IP);
  t.true(c.localPort >= 32768 && c.localPort <= 60999, `ephemeral port ${c.localPort}`);
  t.is(connected, 2, 'one RTT of 2 ms');

  const [syn, synAck, ack] = link.seen;
  t.is(link.seen.length, 3);
  t.is(flagsOf(syn), 'S');
  t.deepEqual(syn.seg.options, { mss: 1460, windowScale: 3 });
  t.is(syn.seg.window, 65535, 'a SYN window is never scaled');
  t.is(flagsOf(synAck), 'S.');
  t.is(synAck.seg.ack, (syn.seg.seq + 1) >>> 0);
  t.deepEqual(synAck.seg.options, { mss: 1460, windowScale: 3 });
  t.is(flagsOf(ack), '.');
  t.is(ack.seg.seq, (syn.seg.seq + 1) >>> 0);
  t.is(ack.seg.ack, (synAck.seg.seq + 1) >>> 0);
  t.is(ack.seg.window << 3, 256 * 1024, 'scaled window = the 256 KiB receive buffer');
  t.is(c.conn.info().rto, 200, 'RTO floor of 200 ms after a 2 ms sample');

  // Same seeds, same ISNs and ports: a run replays.
  const again = new TcpLink();
  sink(again, 80);
  const c2 = again.tcpA.connect({ host: B_IP, port: 80 });
  await again.until(() => c2.state === 'ESTABLISHED', 100, 1);
  t.is(again.seen[0].seg.seq, syn.seg.seq);
  t.is(again.seen[1].seg.seq, synAck.seg.seq);
  t.is(c2.localPort, c.localPort);
});

test('data flows both ways in order; segments never exceed the MSS (interface MTU - 40)', async (t) => {
  const link = new TcpLink({ mtu: 1000 });
  const fromA = pattern(300_000, 1);
  const fromB = pattern(200_000, 2);
  const gotB: Buffer[] = [];
  link.tcpB.listen(80, { allowHalfOpen: true }, (s) => {
    s.on('data', (d) => gotB.push(d));
    sendAll(s, fromB);
  });
  const c = link.tcpA.connect({ host: B_IP, port: 80, allowHalfOpen: true });
  const gotA: Buffer[] = [];
  c.on('data', (d) => gotA.push(d));
  let closed = false;
  c.on('close', () => (closed = true));
  sendAll(c, fromA);
  await link.until(() => closed, 10_000, 1);
  t.true(closed);
  t.is(sha(Buffer.concat(gotB)), sha(fromA));
  t.is(sha(Buffer.concat(gotA)), sha(fromB));
  t.is(link.seen[0].seg.options.mss, 960);
  t.true(link.seen.every((s) => s.seg.payload.length <= 960));
  t.is(Math.max(...link.seen.map((s) => s.seg.payload.length)), 960);
});

/** One-way bulk transfer A -> B; B's pure ACKs and A's data segments, grouped by the instant they left. */
/** A connection to a server on B that reads nothing, with a ten-segment receive buffer; `edge`: that window's right edge. */
async function pausedTenSegmentServer() {
  const link = new TcpLink({ configB: { rcvBuf: 10 * 1460 } });
  let accepted: TcpSocket | undefined;
  link.tcpB.listen(80, {}, (s) => {
    accepted = s;
    s.pause();
  });
  const c = link.tcpA.connect({ host: B_IP, port: 80 });
  await link.until(() => c.state === 'ESTABLISHED' && accepted !== undefined, 100, 1);
  return { link, c, server: accepted!, edge: (c.conn.sndUna + 10 * 1460) >>> 0 };
}

async function bulk(link: TcpLink, bytes: number) {
  const { data } = sink(link, 80);
  const c = link.tcpA.connect({ host: B_IP, port: 80 });
  const payload = pattern(bytes, 3);
  sendAll(c, payload);
  const took = await link.until(() => data().length === bytes, 10_000, 1);
  const acks = link.seen.filter((s) => s.dir === 'b>a' && s.seg.payload.length === 0 && flagsOf(s) === '.' && s.seg.ack !== link.seen[1].seg.ack);
  const dataSegs = link.seen.filter((s) => s.dir === 'a>b' && s.seg.payload.length > 0);
  const byInstant = (xs: Seen[]) => {
    const m = new Map<number, Seen[]>();
    for (const x of xs) m.set(x.at, [...(m.get(x.at) ?? []), x]);
    return [...m.values()];
  };
  return { intact: sha(data()) === sha(payload), took, acks, bursts: byInstant(dataSegs), ackBursts: byInstant(acks) };
}

test('ACKs: every second full segment; with receive batches (real I/O), one per batch, at most 64 KiB apart; slow start counts every byte ACKed', async (t) => {
  const plain = await bulk(new TcpLink(), 1_000_000);
  t.true(plain.intact);
  t.is(plain.bursts[0].length, 10, 'initial window: 10 segments');
  t.is(plain.ackBursts[0].length, 5, 'no batches: an ACK for every second segment of the burst');
  t.deepEqual(
    plain.ackBursts[0].map((a) => (a.seg.ack - plain.bursts[0][0].seg.seq) >>> 0),
    [2, 4, 6, 8, 10].map((n) => n * 1460),
  );
  t.is(plain.bursts[1].length, 20, 'slow start: each ACK of two segments opens cwnd by two');

  const gro = await bulk(new TcpLink({ batches: true }), 1_000_000);
  t.true(gro.intact);
  t.is(gro.ackBursts[0].length, 1, 'the burst arrived as one batch: one ACK');
  t.is((gro.ackBursts[0][0].seg.ack - gro.bursts[0][0].seg.seq) >>> 0, 10 * 1460, 'covering all of it');
  t.is(gro.bursts[1].length, 20, 'slow start counts every byte the stretch ACK covers (Linux tcp_slow_start)');
  const advances = gro.acks.slice(1).map((a, i) => (a.seg.ack - gro.acks[i].seg.ack) >>> 0);
  t.true(Math.max(...advances) <= 65536 + 1460, `no ACK covers more than a GRO packet's 64 KiB (${Math.max(...advances)})`);
  t.true(gro.acks.length * 3 < plain.acks.length, `far fewer ACKs: ${gro.acks.length} against ${plain.acks.length}`);
  t.true(gro.took <= plain.took, `no slower on the clock: ${gro.took} ms against ${plain.took} ms (no delayed-ACK waits)`);
});

test("with receive batches, a loss sign (out-of-order data, a hole filled) makes the next 16 segments ACKed every second one (Linux's quick-ACK mode), then batches again", async (t) => {
  const link = new TcpLink({ batches: true });
  const { data } = sink(link, 80);
  const c = link.tcpA.connect({ host: B_IP, port: 80 });
  await link.until(() => c.state === 'ESTABLISHED', 100, 1);
  let n = 0;
  let lost: Seen | undefined;
  link.drop = (s) => s.dir === 'a>b' && s.seg.payload.length > 0 && ++n === 60 && !!(lost = s);
  const payload = pattern(1_000_000, 9);
  sendAll(c, payload);
  await link.until(() => data().length === payload.length, 10_000, 1);
  t.is(sha(data()), sha(payload));
  t.is(c.conn.stats.timeouts, 0);
  const end = (lost!.seg.seq + lost!.seg.payload.length) >>> 0;
  const acks = link.seen.filter((s) => s.dir === 'b>a' && s.seg.payload.length === 0);
  const fill = acks.findIndex((a) => ((a.seg.ack - end) | 0) >= 0);
  t.true(fill > 0, 'the hole was filled');
  // After the ACK of the hole fill: in-order data, one ACK per two segments for 16 segments.
  const after = acks.slice(fill + 1).map((a, i, xs) => (a.seg.ack - (i ? xs[i - 1] : acks[fill]).seg.ack) >>> 0);
  t.deepEqual(after.slice(0, 8), Array(8).fill(2 * 1460), `ACK advances after the hole fill: ${after.slice(0, 12).join(' ')}`);
  t.true(after.slice(8).some((d) => d > 2 * 1460), 'then one ACK per batch again');
});

test('congestion avoidance counts the bytes ACKed (RFC 5681 §3.1, RFC 3465): one SMSS per cwnd of data, with one ACK per batch as with one per two segments', async (t) => {
  const payload = pattern(2_000_000, 7);
  for (const batches of [false, true]) {
    const link = new TcpLink({ batches });
    const { data } = sink(link, 80);
    const c = link.tcpA.connect({ host: B_IP, port: 80 });
    await link.until(() => c.state === 'ESTABLISHED', 100, 1);
    let n = 0;
    link.drop = (s) => s.dir === 'a>b' && s.seg.payload.length > 0 && ++n === 30; // one loss: ssthresh halves
    sendAll(c, payload);
    let wasInRecovery = false;
    let exit: { cwnd: number; una: number } | undefined;
    await link.until(() => {
      const inRecovery = c.conn.info().inRecovery === true;
      if (wasInRecovery && !inRecovery && !exit) exit = { cwnd: c.conn.cwnd, una: c.conn.sndUna };
      wasInRecovery ||= inRecovery;
      return data().length === payload.length;
    }, 10_000, 1);
    t.is(data().length, payload.length);
    t.is(c.conn.stats.fastRetransmits, 1);
    t.is(c.conn.stats.timeouts, 0);
    // d(cwnd) = SMSS * d(acked) / cwnd from the end of recovery: cwnd^2 grows by 2 * SMSS per byte ACKed.
    const acked = (c.conn.sndUna - exit!.una) >>> 0;
    const expected = Math.sqrt(exit!.cwnd ** 2 + 2 * 1460 * acked);
    const ratio = c.conn.cwnd / expected;
    t.true(ratio > 0.95 && ratio < 1.05, `batches ${batches}: cwnd ${exit!.cwnd} -> ${c.conn.cwnd} over ${acked} bytes ACKed, ${Math.round(expected)} expected`);
  }
});

test('the send buffer grows to two usable windows (tcp_sndbuf_expand), up to sndBufMax', async (t) => {
  const link = new TcpLink();
  const { data } = sink(link, 80);
  const c = link.tcpA.connect({ host: B_IP, port: 80 });
  await link.until(() => c.state === 'ESTABLISHED', 100, 1);
  t.is(c.conn.info().sndBuf, 256 * 1024, 'starts at sndBuf');
  const first = pattern(1_000_000, 4);
  t.false(c.write(first), 'past it write() asks to wait');
  await link.until(() => data().length === first.length, 5000, 1);
  t.is(c.conn.info().sndBuf, 512 * 1024, "two of the peer's 256 KiB windows once cwnd has grown past one");
  t.true(c.write(pattern(400_000, 5)), 'which write() now takes without asking to wait');
  const capped = new TcpLink({ config: { sndBufMax: 300_000 } });
  const s2 = sink(capped, 80);
  const c2 = capped.tcpA.connect({ host: B_IP, port: 80 });
  sendAll(c2, pattern(2_000_000, 6));
  await capped.until(() => s2.data().length === 2_000_000, 10_000, 1);
  t.is(c2.conn.info().sndBuf, 300_000, 'never past sndBufMax');
});

test('a closed port answers RST (seq 0, ack ISN+1): connect fails with ECONNREFUSED at once', async (t) => {
  const link = new TcpLink();
  const c = link.tcpA.connect({ host: B_IP, port: 81 });
  let err: TcpError | undefined;
  let closedWithError: boolean | undefined;
  c.on('error', (e) => (err = e));
  c.on('close', (h) => (closedWithError = h));
  const took = await link.until(() => closedWithError !== undefined, 1000, 1);
  t.is(err?.code, 'ECONNREFUSED');
  t.is(err?.message, `connect ECONNREFUSED ${B_IP}:81`);
  t.true(err instanceof TcpError);
  t.true(closedWithError);
  t.is(took, 2);
  const rst = link.seen[1];
  t.is(flagsOf(rst), 'R.');
  t.is(rst.seg.seq, 0);
  t.is(rst.seg.ack, (link.seen[0].seg.seq + 1) >>> 0);
  t.is(link.tcpB.counters.rstOut, 1);
  t.is(link.tcpA.connections().length, 0);
});

test('SYN retries: a silent peer fails connect with ETIMEDOUT after SYNs at 0, 1, 3, 7 s, at 15 s', async (t) => {
  const link = new TcpLink();
  link.down['a>b'] = true;
  const c = link.tcpA.connect({ host: B_IP, port: 80 });
  let err: TcpError | undefined;
  c.on('error', (e) => (err = e));
  const took = await link.until(() => !!err, 30_000, 50);
  t.is(err?.code, 'ETIMEDOUT');
  t.is(took, 15_000);
  t.deepEqual(
    link.seen.map((s) => s.at),
    [0, 1000, 3000, 7000],
  );
  t.true(link.seen.every((s) => flagsOf(s) === 'S' && s.seg.seq === link.seen[0].seg.seq));
});

test('RTO: exponential backoff from 200 ms; a vanished peer fails with ETIMEDOUT 15 s after the first retransmission', async (t) => {
  const link = new TcpLink();
  sink(link, 80);
  const c = link.tcpA.connect({ host: B_IP, port: 80 });
  await link.until(() => c.state === 'ESTABLISHED', 100, 1);
  link.down['a>b'] = true;
  link.down['b>a'] = true;
  const t0 = link.clock.now();
  c.write(pattern(1000));
  let err: TcpError | undefined;
  c.on('error', (e) => (err = e));
  const took = await link.until(() => !!err, 60_000, 10);
  t.is(err?.code, 'ETIMEDOUT');
  const sends = link.dataSegs('a>b').map((s) => s.at - t0);
  t.is(sends[0], 0);
  const gaps = sends.slice(1).map((x, i) => x - sends[i]);
  t.deepEqual(gaps, [200, 400, 800, 1600, 3200, 6400], `retransmissions at ${sends.join(', ')} ms`);
  t.is(took, 200 + 15_000, 'failure 15 s after the first retransmission');
  t.is(c.state, 'CLOSED');
});

/**
 * A server on B whose peer ends the connection while B's segments stop arriving: A's FIN reaches B, whose
 * application gets 'end' (doing `onEnd` first) and ends its side (allowHalfOpen false), and nothing B sends is
 * acknowledged from then on.
 */
async function closedWithoutAcks(link: TcpLink, onEnd: (s: TcpSocket) => void = () => {}) {
  const seen = { server: undefined as TcpSocket | undefined, errors: [] as TcpError[], closeHadError: undefined as boolean | undefined, clientErr: undefined as TcpError | undefined };
  link.tcpB.listen(80, {}, (s) => {
    seen.server = s;
    s.on('error', (e) => seen.errors.push(e));
    s.on('close', (hadError) => (seen.closeHadError = hadError));
    s.on('end', () => onEnd(s));
  });
  const c = link.tcpA.connect({ host: B_IP, port: 80 });
  c.on('error', (e) => (seen.clientErr = e));
  await link.until(() => c.state === 'ESTABLISHED' && seen.server !== undefined, 100, 1);
  link.down['b>a'] = true;
  c.end();
  return seen;
}

test('an application that closed both ways is not told its FIN went unacknowledged: counted as an orphan error, as Node has closed the socket', async (t) => {
  const link = new TcpLink();
  const appErrors: unknown[] = [];
  link.tcpB.onAppError = (e) => appErrors.push(e);
  const seen = await closedWithoutAcks(link);
  t.true((await link.until(() => seen.server?.conn.state === 'LAST-ACK', 1000, 1)) < 1000, 'B closed its side');
  await link.until(() => seen.server?.conn.state === 'CLOSED' && !!seen.clientErr, 60_000, 10);
  t.deepEqual(seen.errors, [], "no 'error' for the socket its application had closed both ways");
  t.deepEqual(appErrors, [], 'nothing reported as unhandled either');
  t.is(link.tcpB.counters.orphanErrors, 1);
  t.is(seen.closeHadError, false, "its 'close' reports no error the application was never given");
  t.is(seen.clientErr?.code, 'ETIMEDOUT', 'A, whose application still waits for the peer to end, is told');
  t.is(link.tcpA.counters.orphanErrors, 0);
});

test('an application that closed both ways with writes still unsent is told they failed (in Node they would still be in its buffer)', async (t) => {
  const link = new TcpLink();
  // B answers the peer's end with 1 MB, more than one window sends, so its FIN never goes out.
  const seen = await closedWithoutAcks(link, (s) => s.write(pattern(1 << 20)));
  await link.until(() => seen.errors.length > 0, 60_000, 10);
  t.is(seen.errors[0]?.code, 'ETIMEDOUT');
  t.false(seen.server!.conn.finSent, 'the FIN never went out: data was still queued');
  t.is(link.tcpB.counters.orphanErrors, 0);
});

test("Karn's rule: a retransmitted segment gives no RTT sample; the backed-off RTO holds until a fresh one", async (t) => {
  const link = new TcpLink();
  const { data } = sink(link, 80);
  const c = link.tcpA.connect({ host: B_IP, port: 80 });
  await link.until(() => c.state === 'ESTABLISHED', 100, 1);
  let dropped = false;
  link.drop = (s) => s.dir === 'a>b' && s.seg.payload.length > 0 && !dropped && (dropped = true);
  c.write(pattern(100));
  await link.until(() => c.bufferedAmount === 0, 2000, 1);
  t.is(data().length, 100);
  const info = c.conn.info();
  t.true(Number(info.srtt) < 5, `srtt ${info.srtt} ms must not include the 200 ms retransmission wait`);
  t.is(info.rto, 400, 'backed off once, no new sample yet');
  c.write(pattern(100));
  await link.until(() => c.bufferedAmount === 0, 2000, 1);
  t.is(c.conn.info().rto, 200, 'a fresh sample recomputes the RTO');
});

test('RTT: every ACK of data sent once is a sample (Linux seq_rtt), so SRTT follows a longer path within a round trip or two', async (t) => {
  const link = new TcpLink();
  const { data } = sink(link, 80);
  const c = link.tcpA.connect({ host: B_IP, port: 80 });
  await link.until(() => c.state === 'ESTABLISHED', 100, 1);
  const payload = pattern(3_000_000, 5);
  sendAll(c, payload);
  await link.until(() => data().length > 500_000, 10_000, 1);
  t.true(c.conn.srtt < 5, `srtt ${c.conn.srtt} ms on the 2 ms path`);
  link.opts.delayMs = 25; // the round trip grows from 2 to 50 ms
  const changed = link.clock.now();
  const took = await link.until(() => c.conn.srtt > 40, 5000, 1);
  t.true(took - changed <= 2 * 50 + 10, `srtt over 40 ms ${took - changed} ms after the change (timing one segment per round trip takes ~12 round trips)`);
  await link.until(() => data().length === payload.length, 20_000, 1);
  t.is(sha(data()), sha(payload));
  t.is(c.conn.stats.timeouts, 0);
});

test("Karn's rule with every ACK timed: an ACK covering a retransmission times no data sent before it (the receiver held that data until the hole was filled); the next ACK of data sent once ends the backoff", async (t) => {
  const link = new TcpLink();
  const { data } = sink(link, 80);
  const c = link.tcpA.connect({ host: B_IP, port: 80 });
  await link.until(() => c.state === 'ESTABLISHED', 100, 1);
  // Ten segments: the first is lost and so are the duplicate ACKs, until the timeout resends it.
  const t0 = link.clock.now();
  let lost = false;
  link.drop = (s) => (s.dir === 'b>a' ? link.clock.now() < t0 + 150 : s.seg.payload.length > 0 && !lost && (lost = true));
  c.write(pattern(10 * 1460));
  await link.until(() => c.bufferedAmount === 0, 2000, 1);
  t.is(data().length, 10 * 1460);
  t.is(c.conn.stats.timeouts, 1);
  let info = c.conn.info();
  t.true(Number(info.srtt) < 5, `srtt ${info.srtt} ms must not include the 200 ms the nine segments waited for the first`);
  t.is(info.rto, 400, 'still backed off: no valid sample yet');
  c.write(pattern(4 * 1460));
  await link.until(() => c.bufferedAmount === 0, 2000, 1);
  info = c.conn.info();
  t.is(info.rto, 200, 'the first ACK of new data is a sample: the RTO is recomputed');
  t.true(Number(info.srtt) < 5, `srtt ${info.srtt} ms`);
});

test('fast retransmit on the third duplicate ACK, NewReno recovery, no timeout', async (t) => {
  const link = new TcpLink();
  const { data } = sink(link, 80);
  const c = link.tcpA.connect({ host: B_IP, port: 80 });
  await link.until(() => c.state === 'ESTABLISHED', 100, 1);
  let n = 0;
  let lostSeq = -1;
  link.drop = (s) => {
    if (s.dir !== 'a>b' || !s.seg.payload.length) return false;
    if (++n === 5) {
      lostSeq = s.seg.seq;
      return true;
    }
    return false;
  };
  const payload = pattern(200_000);
  c.write(payload);
  await link.until(() => data().length === payload.length, 5000, 1);
  t.is(sha(data()), sha(payload));
  t.is(c.conn.stats.fastRetransmits, 1);
  t.is(c.conn.stats.timeouts, 0);
  // The retransmission follows three duplicate ACKs for the lost segment (1 ms on the wire).
  const idx = link.seen.findIndex((s) => s.dir === 'a>b' && s.seg.seq === lostSeq && !s.dropped);
  const rtx = link.seen[idx];
  const arrived = link.seen.slice(0, idx).filter((s) => s.dir === 'b>a' && s.seg.ack === lostSeq && s.seg.payload.length === 0 && s.at + 1 <= rtx.at);
  t.true(arrived.length >= 1 + 3, 'the ACK that first reached the hole, then three duplicates');
  t.true(rtx.at - link.seen.find((s) => s.seg.seq === lostSeq)!.at < 10, 'well before the 200 ms RTO');
});

test('zero window: a paused reader closes the window, the writer probes, and resumes when it opens', async (t) => {
  const link = new TcpLink();
  let server: TcpSocket | undefined;
  const got: Buffer[] = [];
  link.tcpB.listen(80, {}, (s) => {
    server = s;
    s.pause();
    s.on('data', (d) => got.push(d));
  });
  const c = link.tcpA.connect({ host: B_IP, port: 80 });
  const payload = pattern(600_000);
  let drains = 0;
  c.on('drain', () => drains++);
  await link.until(() => c.state === 'ESTABLISHED', 100, 1);
  t.false(c.write(payload), 'over the 256 KiB send buffer: write() asks to wait');
  await link.run(5000, 10);
  t.is(got.length, 0, 'nothing delivered while paused');
  const zeroAcks = link.seen.filter((s) => s.dir === 'b>a' && s.seg.window === 0);
  t.true(zeroAcks.length > 0, 'the receiver advertised a zero window');
  t.is(c.conn.sndWnd, 0);
  t.true(c.conn.stats.zeroWindowProbes >= 3, `probes sent: ${c.conn.stats.zeroWindowProbes}`);
  const probes = link.seen.filter((s) => s.dir === 'a>b' && s.seg.payload.length === 0 && s.seg.seq === ((c.conn.sndUna - 1) >>> 0));
  t.true(probes.length >= 3, 'probes are SND.UNA - 1 segments, as Linux sends');
  const gaps = probes.slice(1).map((p, i) => p.at - probes[i].at);
  t.true(gaps.every((g, i) => i === 0 || g >= gaps[i - 1]), `probe intervals back off: ${gaps.join(', ')}`);
  t.is(c.state, 'ESTABLISHED', 'an answering peer with a zero window is not a dead peer');
  t.is(link.seen.filter((s) => s.dir === 'b>a' && s.seg.payload.length).length, 0);
  const accepted = (c.conn.sndUna - (link.seen[0].seg.seq + 1)) >>> 0;
  t.true(accepted <= 256 * 1024 && accepted > 256 * 1024 - 8, `the receive buffer was filled (${accepted} bytes, window scale rounds down)`);
  server!.resume();
  await link.until(() => Buffer.concat(got).length === payload.length, 10_000, 5);
  t.is(sha(Buffer.concat(got)), sha(payload));
  t.true(drains >= 1);
});

test('zero window, then the peer vanishes: unanswered probes fail the connection with ETIMEDOUT ~15 s after its last ACK', async (t) => {
  const link = new TcpLink();
  link.tcpB.listen(80, {}, (s) => s.pause());
  const c = link.tcpA.connect({ host: B_IP, port: 80 });
  await link.until(() => c.state === 'ESTABLISHED', 100, 1);
  c.write(pattern(400_000));
  await link.until(() => c.conn.sndWnd === 0 && c.conn.sndNxt === c.conn.sndUna, 5000, 1);
  const lastAck = Math.max(...link.seen.filter((s) => s.dir === 'b>a').map((s) => s.at)) + 1;
  link.down['a>b'] = true;
  link.down['b>a'] = true;
  let err: TcpError | undefined;
  c.on('error', (e) => (err = e));
  await link.until(() => !!err, 60_000, 10);
  t.is(err?.code, 'ETIMEDOUT');
  const failedAfter = link.clock.now() - lastAck;
  t.true(failedAfter >= 15_000 && failedAfter <= 16_000, `failed ${failedAfter} ms after the last ACK`);
});

test("a pure ACK at the right edge of the window we offered is taken (Linux's tcp_sequence): the peer's data filled it, its last segment missing here", async (t) => {
  // B reads nothing and has a ten-segment buffer; A fills it, and A's last segment never arrives.
  const { link, c, server, edge } = await pausedTenSegmentServer();
  link.drop = (s) => s.dir === 'a>b' && s.seg.payload.length > 0 && ((s.seg.seq + s.seg.payload.length) >>> 0) === edge;
  c.write(pattern(10 * 1460, 8));
  await link.run(10, 1);
  const b = server.conn;
  t.is(c.conn.sndMax, edge, "A's data reaches B's right edge");
  t.is(b.rcvNxt, (edge - 1460) >>> 0, 'but the last segment is missing at B');
  // B replies; A's ACK of it is a pure ACK sequenced at A's SND.NXT, which is B's right edge.
  server.write(pattern(1000, 9));
  await link.run(100, 1);
  const acks = link.seen.filter((s) => s.dir === 'a>b' && s.seg.payload.length === 0 && s.seg.ack === b.sndMax);
  t.true(acks.length > 0 && acks.every((s) => s.seg.seq === edge), "A's ACK of the reply carries SEG.SEQ = B's right edge");
  t.is(b.sndUna, b.sndMax, 'B took that ACK: its reply is acknowledged');
  t.is(b.stats.timeouts, 0, 'with no retransmission timeout');
});

test("the window an ACK that moves SND.UNA carries is taken even from an older retransmission (Linux's tcp_may_update_window): never sending past the peer's window", async (t) => {
  const { link, c, server, edge } = await pausedTenSegmentServer();
  // B sends two segments; the first is lost until further notice, so A takes its window from the second (SND.WL1).
  const first = server.conn.sndMax;
  let passFirst = false;
  let passAcks = false;
  link.drop = (s) => s.dir === 'b>a' && (s.seg.payload.length ? s.seg.seq === first && !passFirst : !passAcks);
  server.write(pattern(2 * 1460, 10));
  await link.run(5, 1);
  // A fills B's buffer; B's ACKs of it, closing its window, are lost.
  c.write(pattern(20 * 1460, 11));
  await link.until(() => server.conn.rcvNxt === edge, 100, 1);
  t.is(c.conn.sndMax, edge, "A stopped at B's right edge");
  // B's next retransmission of its first segment carries the news: everything ACKed, window zero.
  passFirst = true;
  await link.until(() => c.conn.sndUna === edge, 2000, 1);
  t.is(c.conn.sndUna, edge);
  t.is(c.conn.sndWnd, 0, "A holds B's zero window, though that segment's SEG.SEQ is below SND.WL1");
  passAcks = true;
  await link.run(1000, 5);
  const past = link.seen.filter((s) => s.dir === 'a>b' && s.seg.payload.length > 0 && ((s.seg.seq + s.seg.payload.length - edge) | 0) > 0);
  t.deepEqual(past.map((s) => s.seg.seq), [], "A never sends data past B's right edge");
});

test('out-of-order segments are buffered and delivered in order', async (t) => {
  const link = new TcpLink({ reorder: 0.3, seed: 11 });
  const { data } = sink(link, 80);
  const c = link.tcpA.connect({ host: B_IP, port: 80 });
  const payload = pattern(500_000);
  sendAll(c, payload);
  await link.until(() => data().length === payload.length, 20_000, 1);
  t.is(sha(data()), sha(payload));
  const server = link.tcpB.connections()[0];
  t.true(server.stats.oooSegments > 10, `out-of-order segments: ${server.stats.oooSegments}`);
});

test('FIN, half-close and TIME-WAIT for 2 s (configurable); the passive closer goes LAST-ACK -> CLOSED', async (t) => {
  for (const timeWaitMs of [2000, 500]) {
    const link = new TcpLink({ config: { timeWaitMs } });
    let serverSock: TcpSocket | undefined;
    const serverGot: Buffer[] = [];
    link.tcpB.listen(80, { allowHalfOpen: true }, (s) => {
      serverSock = s;
      s.on('data', (d) => serverGot.push(d));
      // Half-close: after the client's FIN, the server still sends.
      s.on('end', () => {
        s.write('still here after your FIN\n');
        s.end('bye\n');
      });
    });
    const c = link.tcpA.connect({ host: B_IP, port: 80 });
    const got: Buffer[] = [];
    const events: string[] = [];
    c.on('data', (d) => got.push(d));
    c.on('end', () => events.push(`end@${c.state}`));
    c.on('close', () => events.push(`close@${c.state}`));
    await link.until(() => c.state === 'ESTABLISHED', 100, 1);
    c.end('request\n');
    t.is(c.state, 'FIN-WAIT-1');
    await link.until(() => events.length === 2 && serverSock?.state === 'CLOSED', 1000, 1);
    t.is(Buffer.concat(serverGot).toString(), 'request\n');
    t.is(Buffer.concat(got).toString(), 'still here after your FIN\nbye\n');
    t.deepEqual(events, ['end@TIME-WAIT', 'close@TIME-WAIT']);
    t.is(serverSock!.state, 'CLOSED');
    t.is(link.tcpB.connections().length, 0);
    t.is(link.tcpA.connections().length, 1, 'the 4-tuple lingers in TIME-WAIT');
    const enteredTw = link.clock.now();
    await link.until(() => link.tcpA.connections().length === 0, 10_000, 10);
    t.true(Math.abs(link.clock.now() - enteredTw - timeWaitMs) <= 20, `TIME-WAIT lasted ${link.clock.now() - enteredTw} ms`);
    const fins = link.seen.filter((s) => s.seg.flags.fin).map((s) => s.dir);
    t.deepEqual(fins, ['a>b', 'b>a']);
  }
});

test('RST from the peer: ECONNRESET; a segment after it gets RST too', async (t) => {
  const link = new TcpLink();
  link.tcpB.listen(80, {}, (s) => s.on('data', () => s.destroy()));
  const c = link.tcpA.connect({ host: B_IP, port: 80 });
  let err: TcpError | undefined;
  c.on('error', (e) => (err = e));
  await link.until(() => c.state === 'ESTABLISHED', 100, 1);
  c.write('hello');
  await link.until(() => !!err, 1000, 1);
  t.is(err?.code, 'ECONNRESET');
  t.is(c.state, 'CLOSED');
  t.true(link.seen.some((s) => s.dir === 'b>a' && s.seg.flags.rst));
});

test('listen backlog: SYNs beyond it are dropped; the client retransmits and gets in', async (t) => {
  const link = new TcpLink();
  const { socks, server } = sink(link, 80, { backlog: 2 });
  void server;
  link.down['b>a'] = true; // no SYN-ACK gets back: the server's half-open queue fills
  const clients = [0, 1, 2].map(() => link.tcpA.connect({ host: B_IP, port: 80 }));
  await link.run(100, 10);
  t.is(link.tcpB.listening()[0].halfOpen, 2);
  t.is(link.tcpB.counters.listenOverflows, 1);
  t.is(link.seen.filter((s) => s.dir === 'a>b' && s.seg.flags.syn).length, 3);
  link.down['b>a'] = false;
  await link.until(() => clients.every((c) => c.state === 'ESTABLISHED'), 10_000, 10);
  t.true(clients.every((c) => c.state === 'ESTABLISHED'));
  t.is(socks.length, 3);
  t.is(link.tcpB.listening()[0].halfOpen, 0);
});

test('listen on a taken port: EADDRINUSE as a typed error; after close() the port is free', (t) => {
  const link = new TcpLink();
  const s1 = link.tcpB.listen(8080, {});
  const e = t.throws(() => link.tcpB.listen(8080, {}), { instanceOf: TcpError });
  t.is((e).code, 'EADDRINUSE');
  t.is(e?.message, 'listen EADDRINUSE :::8080');
  s1.close();
  t.notThrows(() => link.tcpB.listen(8080, {}));
});

test('ICMP host unreachable from the IP layer (ARP gives up): connect fails with EHOSTUNREACH', async (t) => {
  const link = new TcpLink();
  const c = link.tcpA.connect({ host: '10.0.0.9', port: 80 });
  let err: TcpError | undefined;
  c.on('error', (e) => (err = e));
  const took = await link.until(() => !!err, 30_000, 10);
  t.is(err?.code, 'EHOSTUNREACH');
  t.is(err?.message, 'connect EHOSTUNREACH 10.0.0.9:80');
  t.true(took < 15_000, `failed after ${took} ms, before the SYN retries run out`);
});

test('options we do not implement (SACK-permitted, timestamps, unknown kinds) are ignored; ours are MSS and window scale', async (t) => {
  const link = new TcpLink();
  sink(link, 80);
  link.down['b>a'] = true; // keep A's stack from resetting the SYN-ACK of a connection it never opened
  const syn = serializeTcp(
    {
      srcPort: 40000,
      dstPort: 80,
      seq: 1000,
      ack: 0,
      flags: { ...NO_FLAGS, syn: true },
      window: 64240,
      urgent: 0,
      options: { mss: 1200, sackPermitted: true, timestamp: { value: 1, echo: 0 }, windowScale: 20 },
      payload: Buffer.alloc(0),
    },
    A_IP,
    B_IP,
  );
  link.a.send({ dst: B_IP, protocol: IPPROTO_TCP, payload: syn });
  await link.run(10, 1);
  const synAck = link.seen.find((s) => s.dir === 'b>a')!;
  t.deepEqual(synAck.seg.options, { mss: 1460, windowScale: 3 });
  const conn = link.tcpB.connections()[0];
  t.is(conn.state, 'SYN-RECEIVED');
  t.is(conn.sndMss, 1200, 'the peer MSS bounds ours');
  t.is(conn.info().sndShift, TCP_MAX_WSCALE, 'a shift above 14 is used as 14 (RFC 7323)');
});

test('loopback: two sockets of one stack talk over 127.0.0.1 and the pod address', async (t) => {
  const link = new TcpLink();
  const got: string[] = [];
  link.tcpA.listen(9000, {}, (s) => {
    s.on('data', (d) => s.write(d.toString().toUpperCase()));
    s.on('error', () => {}); // the client destroy()s: ECONNRESET here
  });
  for (const host of ['127.0.0.1', 'localhost', A_IP]) {
    const c = link.tcpA.connect({ host, port: 9000 });
    c.on('data', (d) => got.push(`${host}:${d.toString()}`));
    c.write('ping');
    await link.until(() => got.length === 1, 1000, 1);
    t.deepEqual(got.splice(0), [`${host}:PING`]);
    t.is(c.remoteAddress, host === 'localhost' ? '127.0.0.1' : host);
    t.is(c.localAddress, c.remoteAddress, 'the kernel picks the destination as source on lo');
    t.is(c.conn.sndMss, 65495, 'lo: MTU 65536, but no datagram over 65535 bytes');
    c.destroy();
  }
  // A bulk transfer over lo uses 65495-byte segments.
  const sunk: Buffer[] = [];
  link.tcpA.listen(9001, {}, (s) => s.on('data', (d) => sunk.push(d)));
  const bulk = link.tcpA.connect({ host: '127.0.0.1', port: 9001 });
  const payload = pattern(1_000_000);
  sendAll(bulk, payload);
  await link.until(() => Buffer.concat(sunk).length === payload.length, 5000, 1);
  t.is(sha(Buffer.concat(sunk)), sha(payload));
  t.true(sunk.some((b) => b.length === 65495));
  t.is(link.seen.length, 0, 'nothing crossed eth0');
});

test('5% loss and 5% reordering each way: a 1 MB echo completes intact (seeded)', async (t) => {
  for (const seed of [1, 2, 3]) {
    const link = new TcpLink({ loss: 0.05, reorder: 0.05, seed });
    echo(link, 7);
    const c = link.tcpA.connect({ host: B_IP, port: 7 });
    const got: Buffer[] = [];
    c.on('data', (d) => got.push(d));
    let closed = false;
    c.on('close', () => (closed = true));
    c.on('error', (e) => t.fail(`seed ${seed}: ${e.message}`));
    const payload = pattern(1_000_000, seed);
    sendAll(c, payload);
    const took = await link.until(() => closed, 120_000, 5);
    t.true(closed, `seed ${seed}: finished`);
    t.is(sha(Buffer.concat(got)), sha(payload), `seed ${seed}: echoed stream intact`);
    const lost = link.seen.filter((s) => s.dropped).length;
    t.log(`seed ${seed}: ${took} ms simulated, ${lost}/${link.seen.length} segments lost, client ${JSON.stringify(c.conn.stats)}`);
    t.true(lost > 50);
  }
});
