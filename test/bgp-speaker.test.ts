/**
 * BgpSpeakers over real loopback TCP in one process (plus one child process
 * for the frozen-peer test): a Calico full mesh of 4, a route-reflector
 * topology of 6 speakers with 2 reflectors, a stopped peer withdrawn
 * everywhere, a frozen peer (SIGSTOP) dropped after the hold time, malformed
 * messages from a raw socket answered with the right NOTIFICATION while the
 * speaker keeps serving its other peers, and simultaneous dialling (collision
 * detection). Every wait polls until a deadline; nothing sleeps a fixed time.
 *
 * Addresses: 127.0.96.0/24 only, a disjoint range per test; every speaker
 * listens on port 1179 of its own address. Everything started here is stopped
 * in t.teardown (the child process by pid).
 */
import test, { type ExecutionContext } from 'ava';
import { type ChildProcess, spawn } from 'node:child_process';
import net from 'node:net';
import {
  BgpFramer,
  BgpSpeaker,
  type BgpMessage,
  type BgpPeerOptions,
  type BgpSpeakerOptions,
  type RouteInfo,
  formatSummary,
  isBgpError,
  serializeBgpMessage,
  serializeKeepalive,
  buildOpen,
} from '../bgp/index.ts';
import { hex, memoryLogger, waitFor } from './fixtures/bgp/helpers.ts';

const PORT = 1179;
const ASN = 64512;

/** A speaker on 127.0.96.<n>:1179 with an in-memory log, stopped at teardown. */
function speaker(t: ExecutionContext, n: number, o: Partial<BgpSpeakerOptions> = {}): BgpSpeaker {
  const ip = `127.0.96.${n}`;
  const s = new BgpSpeaker({ asn: ASN, routerId: ip, listen: { host: ip, port: PORT }, connectRetryMs: 500, log: memoryLogger(`${ip} `), ...o });
  t.teardown(() => s.stop());
  return s;
}

/** Learned routes as the agent would see them through route-add / route-del. */
function routeTable(s: BgpSpeaker): Map<string, RouteInfo> {
  const table = new Map<string, RouteInfo>();
  s.on('route-add', (p, r) => table.set(p, r));
  s.on('route-del', (p) => table.delete(p));
  return table;
}

const established = (s: BgpSpeaker): boolean => s.summary().peers.every((p) => p.state === 'Established');

test('full mesh of 4 (Calico: one connection per pair, the greater IP string dials): every node learns every pod CIDR', async (t) => {
  const ns = [1, 2, 3, 4];
  const sp = ns.map((n) => speaker(t, n));
  const tables = sp.map(routeTable);
  await Promise.all(sp.map((s) => s.start()));
  const t0 = performance.now();
  sp.forEach((s, i) => {
    for (const m of ns) if (m !== ns[i]) s.addPeer({ address: `127.0.96.${m}`, asn: ASN });
    s.announce(`10.244.${ns[i]}.0/24`);
  });
  await waitFor(() => tables.every((tb) => tb.size === 3) && sp.every(established), 10_000, 'full mesh convergence');
  t.log(`full mesh of 4 converged in ${(performance.now() - t0).toFixed(0)} ms`);
  sp.forEach((s, i) => {
    for (const m of ns) {
      if (m === ns[i]) continue;
      t.like(tables[i].get(`10.244.${m}.0/24`), { nextHop: `127.0.96.${m}`, peer: `127.0.96.${m}`, path: [], localPref: 100, reason: 'only-path' });
    }
    const sum = s.summary();
    for (const p of sum.peers) {
      t.is(p.prefixes.accepted, 1);
      t.is(p.prefixes.sent, 1, 'iBGP split horizon: only our own prefix is sent');
      t.is(p.passive, p.address > s.routerId, 'Calico rule: passive towards greater IP strings');
      t.true(p.endOfRibReceived);
      t.like(p, { holdTime: 9, keepaliveTime: 3, as4: true, malformed: 0 });
    }
  });
  t.log(formatSummary(sp[0].summary()));
  // A withdrawal reaches everyone.
  sp[3].withdraw('10.244.4.0/24');
  await waitFor(() => tables.slice(0, 3).every((tb) => !tb.has('10.244.4.0/24')), 5000, 'withdrawal');
  // A peer stopped (Cease 6/2): its route disappears everywhere at once, not after the hold time.
  sp[3].announce('10.244.4.0/24');
  await waitFor(() => tables.slice(0, 3).every((tb) => tb.has('10.244.4.0/24')), 5000, 're-announcement');
  const t1 = performance.now();
  await sp[3].stop();
  await waitFor(() => tables.slice(0, 3).every((tb) => !tb.has('10.244.4.0/24')), 5000, 'routes of the stopped peer withdrawn');
  const took = performance.now() - t1;
  t.log(`stopped peer withdrawn everywhere in ${took.toFixed(0)} ms`);
  t.true(took < 2000, 'well under the 9 s hold time');
  for (const s of sp.slice(0, 3)) {
    const p = s.summary().peers.find((x) => x.address === '127.0.96.4')!;
    t.like(p.lastError, { direction: 'received', code: 6, subcode: 2 });
  }
});

test('route reflection: 6 speakers, 2 reflectors (one cluster), 4 clients: all routes everywhere', async (t) => {
  const RR = [11, 12];
  const CLIENTS = [13, 14, 15, 16];
  const CLUSTER = '1.0.0.1';
  const all = [...RR, ...CLIENTS];
  const sp = new Map(all.map((n) => [n, speaker(t, n, RR.includes(n) ? { routeReflector: { clusterId: CLUSTER } } : {})]));
  const tables = new Map(all.map((n) => [n, routeTable(sp.get(n)!)]));
  await Promise.all([...sp.values()].map((s) => s.start()));
  const t0 = performance.now();
  for (const rr of RR) {
    const s = sp.get(rr)!;
    for (const other of RR) if (other !== rr) s.addPeer({ address: `127.0.96.${other}`, asn: ASN });
    for (const c of CLIENTS) s.addPeer({ address: `127.0.96.${c}`, asn: ASN, rrClient: true });
  }
  for (const c of CLIENTS) for (const rr of RR) sp.get(c)!.addPeer({ address: `127.0.96.${rr}`, asn: ASN });
  for (const n of all) sp.get(n)!.announce(`10.244.${n}.0/24`);
  await waitFor(() => all.every((n) => tables.get(n)!.size === all.length - 1), 10_000, 'RR convergence');
  const convergence = performance.now() - t0;
  t.log(`6-speaker route-reflector topology converged in ${convergence.toFixed(0)} ms`);
  for (const n of all) {
    for (const m of all) {
      if (m === n) continue;
      t.is(tables.get(n)!.get(`10.244.${m}.0/24`)?.nextHop, `127.0.96.${m}`, `node ${n} reaches ${m}'s pods via ${m}`);
    }
  }
  // A client sees another client's route twice (via both reflectors), with ORIGINATOR_ID and CLUSTER_LIST;
  // the copies tie until the peer address: RR1 (127.0.96.11) wins.
  const r = sp.get(13)!.routes().find((x) => x.prefix === '10.244.14.0/24')!;
  t.is(r.paths.length, 2);
  t.like(r.paths[0], { best: true, reason: 'peer-address', peer: '127.0.96.11', nextHop: '127.0.96.14', originatorId: '127.0.96.14', clusterList: [CLUSTER] });
  t.like(r.paths[1], { best: false, reason: 'peer-address', peer: '127.0.96.12' });
  // Each reflector drops the other's reflection of a client route: its own cluster ID is in CLUSTER_LIST.
  const rej = sp.get(12)!.rejected();
  t.deepEqual(rej.filter((x) => x.peer === '127.0.96.11').map((x) => x.reason).sort(), CLIENTS.map(() => 'cluster-list-loop'));
  // The reflectors' own routes are plain iBGP routes (no reflection attributes).
  const own = sp.get(13)!.routes().find((x) => x.prefix === '10.244.11.0/24')!;
  t.like(own.paths[0], { best: true, peer: '127.0.96.11', clusterList: [] });
  // A client stops: its route is withdrawn everywhere.
  const t1 = performance.now();
  await sp.get(16)!.stop();
  await waitFor(() => all.filter((n) => n !== 16).every((n) => !tables.get(n)!.has('10.244.16.0/24')), 5000, 'withdrawal of the stopped client');
  t.log(`stopped client withdrawn everywhere in ${(performance.now() - t1).toFixed(0)} ms`);
  t.true(convergence < 5000);
});

test('a frozen peer (SIGSTOP: TCP up, no KEEPALIVEs) is dropped after the hold time and its routes withdrawn; other peers unaffected', async (t) => {
  const A = 31;
  const B = 32; // child process
  const C = 33;
  const a = speaker(t, A, { holdTime: 3 });
  const c = speaker(t, C, { holdTime: 3 });
  const table = routeTable(a);
  await a.start();
  await c.start();
  const child = await spawnChildSpeaker(t, {
    asn: ASN,
    routerId: `127.0.96.${B}`,
    listen: { host: `127.0.96.${B}`, port: PORT },
    holdTime: 3,
    peers: [{ address: `127.0.96.${A}`, asn: ASN }],
    announce: ['10.244.32.0/24'],
  });
  a.addPeer({ address: `127.0.96.${B}`, asn: ASN });
  a.addPeer({ address: `127.0.96.${C}`, asn: ASN });
  c.addPeer({ address: `127.0.96.${A}`, asn: ASN });
  c.announce('10.244.33.0/24');
  await waitFor(() => table.has('10.244.32.0/24') && table.has('10.244.33.0/24'), 10_000, 'routes from the child and from C');
  const deleted = new Promise<number>((resolve) => a.on('route-del', (p) => p === '10.244.32.0/24' && resolve(performance.now())));
  const frozenAt = performance.now();
  process.kill(child.pid!, 'SIGSTOP');
  const took = (await deleted) - frozenAt;
  t.log(`frozen peer withdrawn ${took.toFixed(0)} ms after SIGSTOP (hold time 3 s, keepalive 1 s)`);
  t.true(took >= 1900 && took <= 5000, `withdrawn after the hold time, not long after (${took.toFixed(0)} ms)`);
  const pb = a.summary().peers.find((p) => p.address === `127.0.96.${B}`)!;
  t.like(pb.lastError, { direction: 'sent', code: 4, subcode: 0, name: 'Hold Timer Expired / Unspecific' });
  t.not(pb.state, 'Established');
  // C's session and route are untouched.
  t.is(a.summary().peers.find((p) => p.address === `127.0.96.${C}`)!.state, 'Established');
  t.true(table.has('10.244.33.0/24'));
});

test('malformed messages from a raw socket: the right NOTIFICATION, a clean close, and the speaker keeps serving', async (t) => {
  const A = 41;
  const B = 42;
  const RAW = 43;
  const a = speaker(t, A);
  const b = speaker(t, B);
  const table = routeTable(a);
  const malformed: string[] = [];
  a.on('malformed', (peer, e) => malformed.push(`${peer} ${e.code}/${e.subcode}`));
  await a.start();
  await b.start();
  a.addPeer({ address: `127.0.96.${B}`, asn: ASN });
  a.addPeer({ address: `127.0.96.${RAW}`, asn: ASN, passive: true });
  b.addPeer({ address: `127.0.96.${A}`, asn: ASN });
  b.announce('10.244.42.0/24');
  await waitFor(() => table.has('10.244.42.0/24'), 10_000, 'B route');

  // 1. A valid session from the raw socket, then an UPDATE with ORIGIN 3 → 3/6 with the attribute as data.
  const raw1 = await rawSession(t, `127.0.96.${RAW}`, `127.0.96.${A}`);
  await waitFor(() => a.summary().peers.find((p) => p.address === `127.0.96.${RAW}`)?.state === 'Established', 5000, 'raw session up');
  raw1.write(hex`
    ffffffffffffffffffffffffffffffff 00 2d 02 00 00
    00 12 40 01 01 03                # ORIGIN 3: invalid
          40 02 00 40 03 04 7f 00 60 2b 40 05 04 00 00 00 64
    18 0a f4 2b
  `);
  const n1 = await raw1.notification();
  t.like(n1, { code: 3, subcode: 6 });
  t.deepEqual(n1.type === 'notification' && n1.data, hex`40 01 01 03`);
  await raw1.closed;
  // 2. Garbage instead of an OPEN → 1/1 Connection Not Synchronized.
  const raw2 = await rawConnect(`127.0.96.${RAW}`, `127.0.96.${A}`);
  t.teardown(() => raw2.socket.destroy());
  await raw2.next(); // A's OPEN
  raw2.write(Buffer.from('GET / HTTP/1.1\r\nHost: podlab\r\n\r\n'));
  t.like(await raw2.notification(), { code: 1, subcode: 1 });
  await raw2.closed;
  // 3. An OPEN with version 3 → 2/1, data = our version (4).
  const raw3 = await rawConnect(`127.0.96.${RAW}`, `127.0.96.${A}`);
  t.teardown(() => raw3.socket.destroy());
  await raw3.next();
  raw3.write(hex`ffffffffffffffffffffffffffffffff 00 1d 01  03 fc 00 00 09 7f 00 60 2b 00`);
  const n3 = await raw3.notification();
  t.like(n3, { code: 2, subcode: 1 });
  t.deepEqual(n3.type === 'notification' && n3.data, hex`00 04`);
  await raw3.closed;
  // 4. An unconfigured address is refused.
  const stranger = net.connect({ host: `127.0.96.${A}`, port: PORT, localAddress: '127.0.96.44' });
  t.teardown(() => stranger.destroy());
  await new Promise<void>((r) => stranger.once('close', () => r()));

  const sum = a.summary();
  t.is(sum.malformed, 3);
  t.is(sum.rejectedConnections, 1);
  t.deepEqual(malformed, [`127.0.96.${RAW} 3/6`, `127.0.96.${RAW} 1/1`, `127.0.96.${RAW} 2/1`]);
  // The session with B never dropped, and still carries new routes both ways.
  t.like(sum.peers.find((p) => p.address === `127.0.96.${B}`), { state: 'Established', malformed: 0 });
  b.announce('10.244.142.0/24');
  await waitFor(() => table.has('10.244.142.0/24'), 5000, 'new route after the malformed sessions');
  t.pass();
});

test('removePeer: Cease 6/3 (Peer De-configured) to the peer, its routes withdrawn on both sides', async (t) => {
  const a = speaker(t, 61);
  const b = speaker(t, 62);
  const ta = routeTable(a);
  const tb = routeTable(b);
  await a.start();
  await b.start();
  a.addPeer({ address: '127.0.96.62', asn: ASN });
  b.addPeer({ address: '127.0.96.61', asn: ASN });
  a.announce('10.244.61.0/24');
  b.announce('10.244.62.0/24');
  await waitFor(() => ta.size === 1 && tb.size === 1, 10_000, 'routes exchanged');
  t.true(a.removePeer('127.0.96.62'));
  t.false(a.removePeer('127.0.96.62'));
  t.is(ta.size, 0, 'withdrawn locally at once');
  await waitFor(() => tb.size === 0, 5000, 'withdrawn at the peer');
  t.like(b.summary().peers[0].lastError, { direction: 'received', code: 6, subcode: 3, name: 'Cease / Peer De-configured' });
  t.deepEqual(a.summary().peers, []);
});

test('eBGP towards a 2-octet-only speaker: AS_TRANS + AS4_PATH out, next hop self, no LOCAL_PREF; its 2-octet path in', async (t) => {
  const A = '127.0.96.71';
  const OLD = '127.0.96.72';
  const a = speaker(t, 71, { asn: 4_200_000_001 });
  const table = routeTable(a);
  await a.start();
  a.addPeer({ address: OLD, asn: 65001, passive: true });
  a.announce('10.244.71.0/24', { nextHop: '127.0.96.99' });
  const raw = await rawConnect(OLD, A, false);
  t.teardown(() => raw.socket.destroy());
  const open = await raw.next();
  t.like(open, { type: 'open', myAs: 23456 });
  t.deepEqual(open.type === 'open' && open.capabilities.find((c) => c.kind === 'four-octet-as'), { kind: 'four-octet-as', asn: 4_200_000_001 });
  // An old speaker: no capabilities at all (implicit IPv4 unicast, 2-octet ASNs).
  raw.write(serializeBgpMessage({ type: 'open', myAs: 65001, holdTime: 9, bgpId: OLD, capabilities: [] }));
  raw.write(serializeKeepalive());
  let u: BgpMessage;
  do u = await raw.next();
  while (u.type !== 'update' || !u.nlri.length);
  t.deepEqual(u.type === 'update' && u.attributes, {
    origin: 'igp',
    asPath: [{ type: 'sequence', asns: [23456] }],
    nextHop: A,
    as4Path: [{ type: 'sequence', asns: [4_200_000_001] }],
  });
  raw.write(
    serializeBgpMessage(
      { type: 'update', withdrawn: [], attributes: { origin: 'igp', asPath: [{ type: 'sequence', asns: [65001, 65002] }], nextHop: OLD, localPref: 999 }, nlri: ['10.99.0.0/16'] },
      { as4: false },
    ),
  );
  await waitFor(() => table.has('10.99.0.0/16'), 5000, 'route from the 2-octet speaker');
  t.like(table.get('10.99.0.0/16'), { nextHop: OLD, path: [65001, 65002], localPref: 100 });
  t.like(a.summary().peers[0], { type: 'external', as4: false, state: 'Established' });
});

test('both sides dial at once: collision detection leaves exactly one session per pair', async (t) => {
  const ns = [51, 52, 53];
  const sp = ns.map((n) => speaker(t, n));
  const tables = sp.map(routeTable);
  await Promise.all(sp.map((s) => s.start()));
  sp.forEach((s, i) => {
    for (const m of ns) if (m !== ns[i]) s.addPeer({ address: `127.0.96.${m}`, asn: ASN, passive: false });
    s.announce(`10.244.${ns[i]}.0/24`);
  });
  await waitFor(() => tables.every((tb) => tb.size === 2) && sp.every(established), 10_000, 'convergence with both sides dialling');
  // Stable: still one session each after a few keepalive-free moments.
  await new Promise((r) => setTimeout(r, 300));
  t.true(sp.every(established));
  const collisions = sp.map((s) => s.summary().peers.reduce((n, p) => n + p.collisions, 0));
  t.log(`collisions resolved per speaker: ${collisions.join(', ')}`);
  // One session per pair: every UPDATE one side sent, the other received (UPDATEs only flow on the surviving connection).
  for (const x of sp) {
    for (const y of sp) {
      if (x === y) continue;
      const sent = x.summary().peers.find((p) => p.address === y.routerId)!.messages.sent.update;
      const got = y.summary().peers.find((p) => p.address === x.routerId)!.messages.received.update;
      t.is(sent, got, `${x.routerId} → ${y.routerId}`);
    }
  }
});

// ---------------------------------------------------------------------------
// Helpers: a child-process speaker, a raw BGP client
// ---------------------------------------------------------------------------

async function spawnChildSpeaker(
  t: ExecutionContext,
  cfg: { asn: number; routerId: string; listen: { host: string; port: number }; holdTime: number; peers: BgpPeerOptions[]; announce: string[] },
): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', new URL('./fixtures/bgp/speaker-child.ts', import.meta.url).pathname, JSON.stringify(cfg)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL'); // works on a stopped process too
    }
  });
  let err = '';
  child.stderr.on('data', (d) => (err += String(d)));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d) => String(d).includes('ready') && resolve());
    child.once('exit', (code) => reject(new Error(`child speaker exited with ${code}: ${err}`)));
  });
  return child;
}

interface Raw {
  socket: net.Socket;
  write(b: Buffer): void;
  next(): Promise<BgpMessage>;
  notification(): Promise<BgpMessage>;
  closed: Promise<void>;
}

/** A TCP connection from `from` to a speaker, with a framer on the receive side. */
async function rawConnect(from: string, to: string, as4 = true): Promise<Raw> {
  const socket = net.connect({ host: to, port: PORT, localAddress: from });
  await new Promise<void>((r, j) => {
    socket.once('connect', () => r());
    socket.once('error', j);
  });
  const framer = new BgpFramer({ as4 });
  const queue: BgpMessage[] = [];
  let wake: (() => void) | undefined;
  socket.on('data', (d) => {
    const out = framer.write(d);
    if (!isBgpError(out)) queue.push(...out);
    wake?.();
  });
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  const next = async (): Promise<BgpMessage> => {
    const deadline = Date.now() + 5000;
    while (!queue.length) {
      if (Date.now() > deadline) throw new Error('no message from the speaker');
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 50);
      });
    }
    return queue.shift()!;
  };
  return {
    socket,
    write: (b) => socket.write(b),
    next,
    async notification() {
      for (;;) {
        const m = await next();
        if (m.type === 'notification') return m;
      }
    },
    closed,
  };
}

/** A raw connection that completes the OPEN/KEEPALIVE exchange as iBGP peer `from`. */
async function rawSession(t: ExecutionContext, from: string, to: string): Promise<Raw> {
  const r = await rawConnect(from, to);
  t.teardown(() => r.socket.destroy());
  const open = await r.next();
  if (open.type !== 'open') throw new Error(`expected OPEN, got ${open.type}`);
  r.write(serializeBgpMessage({ type: 'open', ...buildOpen({ localAsn: ASN, routerId: from, holdTime: 9, peerAsn: ASN }) }));
  r.write(serializeKeepalive());
  return r;
}
