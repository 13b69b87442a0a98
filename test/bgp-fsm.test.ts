/**
 * The BGP FSM (RFC 4271 §8) driven by events and a ManualClock: no sockets,
 * no real waits. Actions are summarized as short strings
 * ('connect#1', 'send#1:open', 'close#1', 'Connect>OpenSent', ...) so each
 * test reads as the RFC's event/action tables do.
 */
import test from 'ava';
import { ManualClock } from '../common/clock.ts';
import {
  BgpFsm,
  BgpPeerFsm,
  type BgpMessage,
  type FsmAction,
  type FsmOptions,
  BgpError,
  podlabCapabilities,
} from '../bgp/index.ts';

const LOCAL_ID = '127.0.96.1';
const PEER_ID = '127.0.96.2';

function fmt(a: FsmAction): string {
  switch (a.type) {
    case 'connect':
      return `connect#${a.conn}`;
    case 'send':
      return `send#${a.conn}:${a.message.type === 'notification' ? `notification ${a.message.code}/${a.message.subcode}` : a.message.type}`;
    case 'close':
      return `close#${a.conn}`;
    case 'state':
      return `${a.from}>${a.to}`;
    case 'established':
      return `established#${a.conn}`;
    case 'update':
      return `update#${a.conn}`;
    case 'route-refresh':
      return `route-refresh#${a.conn}`;
    case 'routes-withdrawn':
      return 'routes-withdrawn';
  }
}

function setup(o: Partial<FsmOptions> = {}) {
  const clock = new ManualClock();
  const fsm = new BgpPeerFsm({ localAsn: 64512, routerId: LOCAL_ID, peerAsn: 64512, peerAddress: PEER_ID, clock, ...o });
  const timed: FsmAction[] = [];
  fsm.onActions = (a) => timed.push(...a);
  /** Actions raised by timers since the last call. */
  const drain = (): string[] => timed.splice(0).map(fmt);
  const s = (actions: FsmAction[]): string[] => actions.map(fmt);
  return { clock, fsm, drain, s, timed };
}

const peerOpen = (o: Partial<Extract<BgpMessage, { type: 'open' }>> = {}): BgpMessage => ({
  type: 'open',
  myAs: 64512,
  holdTime: 9,
  bgpId: PEER_ID,
  capabilities: podlabCapabilities(64512),
  ...o,
});
const KA: BgpMessage = { type: 'keepalive' };
const UPDATE: BgpMessage = { type: 'update', withdrawn: [], attributes: { origin: 'igp', asPath: [], nextHop: PEER_ID }, nlri: ['10.244.2.0/24'] };

/** Brings a fresh FSM to Established over outgoing connection #1. */
function establish(h: ReturnType<typeof setup>, open: BgpMessage = peerOpen()) {
  h.fsm.start();
  h.fsm.tcpConnected(1, 'outgoing');
  h.fsm.message(1, open);
  return h.fsm.message(1, KA);
}

test('active open: Idle → Connect → OpenSent → OpenConfirm → Established, with the RFC actions', (t) => {
  const h = setup();
  t.deepEqual(h.s(h.fsm.start()), ['connect#1', 'Idle>Connect']);
  const sent = h.fsm.tcpConnected(1, 'outgoing');
  t.deepEqual(h.s(sent), ['send#1:open', 'Connect>OpenSent']);
  const open = sent[0].type === 'send' ? sent[0].message : undefined;
  t.like(open, { type: 'open', myAs: 64512, holdTime: 9, bgpId: LOCAL_ID });
  t.deepEqual(h.s(h.fsm.message(1, peerOpen({ holdTime: 3 }))), ['send#1:keepalive', 'OpenSent>OpenConfirm']);
  const up = h.fsm.message(1, KA);
  t.deepEqual(h.s(up), ['established#1', 'OpenConfirm>Established']);
  const est = up[0];
  t.like(est.type === 'established' ? est.session : {}, { holdTime: 3, keepaliveTime: 1, as4: true, ibgp: true, remoteId: PEER_ID });
  const st = up[1];
  t.regex(st.type === 'state' ? st.reason : '', /hold 3 s, keepalive 1 s/);
  t.is(h.fsm.state, 'Established');
  t.is(h.fsm.main.establishedAt, 0);
});

test('keepalive every hold/3; sending an UPDATE restarts the keepalive timer', (t) => {
  const h = setup();
  establish(h, peerOpen({ holdTime: 3 })); // negotiated hold 3 s, keepalive 1 s
  h.drain();
  h.clock.advance(999);
  t.deepEqual(h.drain(), []);
  h.clock.advance(1);
  t.deepEqual(h.drain(), ['send#1:keepalive']);
  h.fsm.message(1, KA);
  h.clock.advance(600);
  t.deepEqual(h.s(h.fsm.send(UPDATE)), ['send#1:update']);
  h.clock.advance(999);
  t.deepEqual(h.drain(), [], 'the UPDATE counted as a keepalive');
  h.clock.advance(1);
  t.deepEqual(h.drain(), ['send#1:keepalive']);
});

test('hold timer: refreshed by KEEPALIVE/UPDATE; expiry → NOTIFICATION 4/0, close, routes withdrawn, Idle', (t) => {
  const h = setup({ keepaliveTime: 3 });
  establish(h, peerOpen({ holdTime: 9 }));
  h.drain();
  h.clock.advance(8000);
  h.fsm.message(1, KA);
  h.clock.advance(8000);
  const u = h.fsm.message(1, UPDATE);
  t.deepEqual(h.s(u), ['update#1']);
  h.clock.advance(8999);
  t.is(h.fsm.state, 'Established');
  h.drain();
  h.clock.advance(1);
  t.deepEqual(h.drain(), ['send#1:notification 4/0', 'close#1', 'routes-withdrawn', 'Established>Idle']);
  t.like(h.fsm.main.lastError, { direction: 'sent', code: 4, subcode: 0, name: 'Hold Timer Expired / Unspecific' });
});

test('automatic restart after an error, with exponential backoff on consecutive failures', (t) => {
  const h = setup({ connectRetryMs: 1000, connectRetryMaxMs: 5000 });
  establish(h, peerOpen({ holdTime: 3 }));
  h.clock.advance(3000); // hold timer expires
  t.is(h.fsm.state, 'Idle');
  h.drain();
  h.clock.advance(1000); // IdleHold = 1000 ms (first failure)
  t.deepEqual(h.drain(), ['connect#2', 'Idle>Connect']);
  // Refused connections: Connect → Active, then ConnectRetry doubles each time, capped at 5 s.
  const gaps: number[] = [];
  let conn = 2;
  let last = h.clock.now();
  for (let i = 0; i < 5; i++) {
    t.deepEqual(h.s(h.fsm.tcpFailed(conn)), ['Connect>Active']);
    for (let k = 0; k < 100_000; k++) {
      h.clock.advance(100);
      const a = h.drain();
      if (a.length) {
        t.deepEqual(a, [`connect#${conn + 1}`, 'Active>Connect']);
        break;
      }
    }
    conn++;
    gaps.push(h.clock.now() - last);
    last = h.clock.now();
  }
  // failures 2, 3, 4, ...: 1000 × 2^(n-1) capped at 5000.
  t.deepEqual(gaps, [2000, 4000, 5000, 5000, 5000]);
  // A successful session resets the backoff.
  h.fsm.tcpConnected(conn, 'outgoing');
  h.fsm.message(conn, peerOpen());
  h.fsm.message(conn, KA);
  t.is(h.fsm.main.failures, 0);
});

test('ConnectRetry: an attempt that hangs is abandoned and retried', (t) => {
  const h = setup({ connectRetryMs: 2000 });
  h.fsm.start();
  h.clock.advance(2000);
  t.deepEqual(h.drain(), ['close#1', 'connect#2']);
  t.is(h.fsm.state, 'Connect');
  // The stale first attempt completing late is closed, not used.
  t.deepEqual(h.s(h.fsm.tcpConnected(1, 'outgoing')), ['close#1']);
  t.deepEqual(h.s(h.fsm.tcpConnected(2, 'outgoing')), ['send#2:open', 'Connect>OpenSent']);
});

test('passive peer: never dials, accepts the peer connection', (t) => {
  const h = setup({ passive: true });
  t.deepEqual(h.s(h.fsm.start()), ['Idle>Active']);
  h.clock.advance(600_000);
  t.deepEqual(h.drain(), []);
  const c = h.fsm.allocConn();
  t.deepEqual(h.s(h.fsm.tcpConnected(c, 'incoming')), [`send#${c}:open`, 'Active>OpenSent']);
});

test('an incoming connection in Connect replaces our own attempt', (t) => {
  const h = setup();
  h.fsm.start(); // connect#1
  const c = h.fsm.allocConn();
  t.deepEqual(h.s(h.fsm.tcpConnected(c, 'incoming')), ['close#1', `send#${c}:open`, 'Connect>OpenSent']);
});

test('hold time 0 (agreed by either side): no keepalives, no hold timer', (t) => {
  const h = setup();
  const up = establish(h, peerOpen({ holdTime: 0 }));
  t.like(up[0].type === 'established' ? up[0].session : {}, { holdTime: 0, keepaliveTime: 0 });
  h.drain();
  h.clock.advance(3_600_000);
  t.deepEqual(h.drain(), []);
  t.is(h.fsm.state, 'Established');
});

test('illegal local hold times are refused at configuration', (t) => {
  for (const holdTime of [1, 2, -1, 70000]) t.throws(() => new BgpFsm({ localAsn: 1, routerId: '1.1.1.1', peerAsn: 1, peerAddress: '1.1.1.2', holdTime }, () => 1), { instanceOf: RangeError });
});

test('OPEN errors → the NOTIFICATION, close, Idle (bad peer AS, own identifier, no IPv4 unicast)', (t) => {
  const cases: [BgpMessage, string][] = [
    [peerOpen({ capabilities: [{ kind: 'four-octet-as', asn: 65000 }] }), 'send#1:notification 2/2'],
    [peerOpen({ bgpId: LOCAL_ID }), 'send#1:notification 2/3'],
    [peerOpen({ capabilities: [{ kind: 'multiprotocol', afi: 2, safi: 1 }] }), 'send#1:notification 2/7'],
  ];
  for (const [open, notif] of cases) {
    const h = setup();
    h.fsm.start();
    h.fsm.tcpConnected(1, 'outgoing');
    t.deepEqual(h.s(h.fsm.message(1, open)), [notif, 'close#1', 'OpenSent>Idle']);
  }
});

test('unexpected messages → FSM Error 5/1, 5/2, 5/3 (RFC 6608 subcodes)', (t) => {
  let h = setup();
  h.fsm.start();
  h.fsm.tcpConnected(1, 'outgoing');
  t.deepEqual(h.s(h.fsm.message(1, KA)), ['send#1:notification 5/1', 'close#1', 'OpenSent>Idle']);
  h = setup();
  h.fsm.start();
  h.fsm.tcpConnected(1, 'outgoing');
  h.fsm.message(1, peerOpen());
  t.deepEqual(h.s(h.fsm.message(1, UPDATE)), ['send#1:notification 5/2', 'close#1', 'OpenConfirm>Idle']);
  h = setup();
  establish(h);
  t.deepEqual(h.s(h.fsm.message(1, peerOpen())), ['send#1:notification 5/3', 'close#1', 'routes-withdrawn', 'Established>Idle']);
});

test('a decode error sends the NOTIFICATION the BgpError carries', (t) => {
  const h = setup();
  establish(h);
  const err = new BgpError(3, 6, Buffer.from([0x40, 1, 1, 3]), 'ORIGIN value 3');
  const a = h.fsm.messageError(1, err);
  t.deepEqual(h.s(a), ['send#1:notification 3/6', 'close#1', 'routes-withdrawn', 'Established>Idle']);
  const n = a[0].type === 'send' ? a[0].message : undefined;
  t.deepEqual(n && n.type === 'notification' ? n.data : undefined, Buffer.from([0x40, 1, 1, 3]));
});

test('eBGP: an UPDATE whose first AS is not the peer AS → 3/11', (t) => {
  const h = setup({ peerAsn: 65001 });
  establish(h, peerOpen({ myAs: 65001, capabilities: [{ kind: 'four-octet-as', asn: 65001 }] }));
  t.deepEqual(h.s(h.fsm.message(1, { ...UPDATE, attributes: { origin: 'igp', asPath: [{ type: 'sequence', asns: [65002] }], nextHop: PEER_ID } })), [
    'send#1:notification 3/11',
    'close#1',
    'routes-withdrawn',
    'Established>Idle',
  ]);
});

test('NOTIFICATION received: Idle, routes withdrawn, last error recorded, automatic restart', (t) => {
  const h = setup({ connectRetryMs: 500 });
  establish(h);
  t.deepEqual(h.s(h.fsm.message(1, { type: 'notification', code: 6, subcode: 2, data: Buffer.from('\x03bye') })), ['close#1', 'routes-withdrawn', 'Established>Idle']);
  t.like(h.fsm.main.lastError, { direction: 'received', code: 6, subcode: 2, name: 'Cease / Administrative Shutdown', message: 'shutdown communication: bye' });
  h.clock.advance(500);
  t.deepEqual(h.drain(), ['connect#2', 'Idle>Connect']);
});

test('TCP failure in Established: routes withdrawn; in OpenSent: back to Active', (t) => {
  let h = setup();
  establish(h);
  t.deepEqual(h.s(h.fsm.tcpFailed(1)), ['close#1', 'routes-withdrawn', 'Established>Idle']);
  h = setup();
  h.fsm.start();
  h.fsm.tcpConnected(1, 'outgoing');
  t.deepEqual(h.s(h.fsm.tcpFailed(1)), ['OpenSent>Active']);
});

test('ManualStop: Cease 6/2 with the shutdown communication, no automatic restart', (t) => {
  const h = setup();
  establish(h);
  const a = h.fsm.stop(Buffer.from('\x04down'));
  t.deepEqual(h.s(a), ['send#1:notification 6/2', 'close#1', 'routes-withdrawn', 'Established>Idle']);
  h.clock.advance(600_000);
  t.deepEqual(h.drain(), []);
  // Administratively down: a connection from the peer is refused with Cease 6/5.
  const c = h.fsm.allocConn();
  t.deepEqual(h.s(h.fsm.tcpConnected(c, 'incoming')), [`send#${c}:notification 6/5`, `close#${c}`]);
});

test('ROUTE-REFRESH in Established (IPv4 unicast) asks for the Adj-RIB-Out; other families are ignored', (t) => {
  const h = setup();
  establish(h);
  t.deepEqual(h.s(h.fsm.message(1, { type: 'route-refresh', afi: 1, safi: 1, subtype: 0 })), ['route-refresh#1']);
  t.deepEqual(h.s(h.fsm.message(1, { type: 'route-refresh', afi: 2, safi: 1, subtype: 0 })), []);
});

// ---------------------------------------------------------------------------
// Collisions (RFC 4271 §6.8)
// ---------------------------------------------------------------------------

test('collision, our identifier higher: the connection we opened survives, the peer one gets Cease 6/7', (t) => {
  const h = setup({ routerId: '127.0.96.9' }); // > PEER_ID
  h.fsm.start();
  h.fsm.tcpConnected(1, 'outgoing'); // ours, OpenSent
  const inc = h.fsm.allocConn();
  t.deepEqual(h.s(h.fsm.tcpConnected(inc, 'incoming')), [`send#${inc}:open`], 'a second FSM answers the peer connection');
  t.truthy(h.fsm.second);
  // The peer's OPEN arrives first on its own connection: collision detected, it loses.
  t.deepEqual(h.s(h.fsm.message(inc, peerOpen())), [`send#${inc}:notification 6/7`, `close#${inc}`]);
  t.is(h.fsm.second, undefined);
  t.deepEqual(h.s(h.fsm.message(1, peerOpen())), ['send#1:keepalive', 'OpenSent>OpenConfirm']);
  t.deepEqual(h.s(h.fsm.message(1, KA)), ['established#1', 'OpenConfirm>Established']);
  t.is(h.fsm.collisions, 1);
});

test('collision, our identifier lower: our connection is dropped and the peer one promoted', (t) => {
  const h = setup({ routerId: '127.0.96.1' }); // < PEER_ID
  h.fsm.start();
  h.fsm.tcpConnected(1, 'outgoing');
  const inc = h.fsm.allocConn();
  h.fsm.tcpConnected(inc, 'incoming');
  // The OPEN arrives on our connection: it loses; no state change visible (OpenSent → OpenSent).
  t.deepEqual(h.s(h.fsm.message(1, peerOpen())), ['send#1:notification 6/7', 'close#1']);
  t.is(h.fsm.main.conn, inc);
  t.is(h.fsm.state, 'OpenSent');
  t.deepEqual(h.s(h.fsm.message(inc, peerOpen())), [`send#${inc}:keepalive`, 'OpenSent>OpenConfirm']);
  t.deepEqual(h.s(h.fsm.message(inc, KA)), [`established#${inc}`, 'OpenConfirm>Established']);
  // The promoted FSM restarts automatically like the original.
  h.drain();
  h.clock.advance(9000);
  t.deepEqual(h.drain().slice(-2), ['routes-withdrawn', 'Established>Idle']);
  h.clock.advance(2000);
  t.deepEqual(h.drain(), [`connect#${inc + 1}`, 'Idle>Connect']);
});

test('collision with OpenConfirm: the surviving connection is the one initiated by the higher identifier', (t) => {
  const h = setup({ routerId: '127.0.96.1' });
  h.fsm.start();
  h.fsm.tcpConnected(1, 'outgoing');
  h.fsm.message(1, peerOpen()); // ours in OpenConfirm
  const inc = h.fsm.allocConn();
  h.fsm.tcpConnected(inc, 'incoming');
  const a = h.s(h.fsm.message(inc, peerOpen()));
  // The peer's state is that of the surviving connection: briefly OpenSent, then OpenConfirm on its OPEN.
  t.deepEqual(a, ['send#1:notification 6/7', 'close#1', 'OpenConfirm>OpenSent', `send#${inc}:keepalive`, 'OpenSent>OpenConfirm']);
  t.is(h.fsm.main.conn, inc);
  t.is(h.fsm.state, 'OpenConfirm');
});

test('a connection arriving while Established is closed with Cease 6/7', (t) => {
  const h = setup();
  establish(h);
  const inc = h.fsm.allocConn();
  t.deepEqual(h.s(h.fsm.tcpConnected(inc, 'incoming')), [`send#${inc}:notification 6/7`, `close#${inc}`]);
  t.is(h.fsm.state, 'Established');
});

test('the peer connection overtakes our attempt still in Connect/Active: it is adopted', (t) => {
  const h = setup();
  h.fsm.start();
  h.fsm.tcpFailed(1); // Connect → Active
  const inc = h.fsm.allocConn();
  t.deepEqual(h.s(h.fsm.tcpConnected(inc, 'incoming')), [`send#${inc}:open`, 'Active>OpenSent']);
  t.is(h.fsm.second, undefined, 'taken by the main FSM directly');
});

test('our session reaches Established while the peer connection is still in OpenSent: that one is closed', (t) => {
  const h = setup();
  h.fsm.start();
  h.fsm.tcpConnected(1, 'outgoing');
  h.fsm.message(1, peerOpen()); // OpenConfirm
  const inc = h.fsm.allocConn();
  h.fsm.tcpConnected(inc, 'incoming');
  t.deepEqual(h.s(h.fsm.message(1, KA)), ['established#1', 'OpenConfirm>Established', `send#${inc}:notification 6/7`, `close#${inc}`]);
  t.is(h.fsm.second, undefined);
});
