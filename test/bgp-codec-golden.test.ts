/**
 * Golden bytes for every BGP message type, four ways each (as in
 * test/packet-golden.test.ts):
 *  - deconstruct: read fields of known bytes at their RFC offsets;
 *  - construct: serialize a Repr and compare with the known bytes;
 *  - parse: the whole Repr equals the expected one;
 *  - round trip: serialize(parse(bytes)) == bytes, parse(serialize(repr)) == repr.
 *
 * Two sources of known bytes: hand-assembled messages commented field by
 * field, and real messages BIRD 2.0.12 sent (test/fixtures/bgp/README.md).
 * Then the streaming framer over every split point.
 */
import test from 'ava';
import {
  AS_TRANS,
  BgpFramer,
  COMMUNITY_NO_EXPORT,
  type BgpMessage,
  type OpenRepr,
  type UpdateRepr,
  isBgpError,
  mergeAs4Path,
  notificationName,
  packUpdates,
  parseBgpMessage,
  parseHeader,
  serializeBgpMessage,
  serializeKeepalive,
  serializeNotification,
  serializeOpen,
  serializeRouteRefresh,
  serializeUpdate,
  toTwoOctetPath,
  isEndOfRib,
  endOfRib,
  asPathLength,
  asPathToString,
  prependAs,
  buildOpen,
  normalizeUpdate,
  BGP_MAX_MESSAGE_LEN,
} from '../bgp/index.ts';
import { fixture, hex } from './fixtures/bgp/helpers.ts';

const MARKER = 'ff ff ff ff ff ff ff ff ff ff ff ff ff ff ff ff';

/** Parses, failing the test on a BgpError. */
function parse(buf: Buffer, as4 = true): BgpMessage {
  const m = parseBgpMessage(buf, { as4 });
  if (isBgpError(m)) throw new Error(`unexpected ${m.toString()}`);
  return m;
}

// ---------------------------------------------------------------------------
// OPEN
// ---------------------------------------------------------------------------

/** podlab's OPEN: AS 64512, hold 9, id 127.0.96.1, MP + route refresh + AS4. */
const PODLAB_OPEN = hex`
  ${MARKER}
  00 2d                 # length 45 = 19 + 10 + 16
  01                    # type OPEN
  04                    # version 4
  fc 00                 # My AS 64512
  00 09                 # hold time 9 s
  7f 00 60 01           # BGP identifier 127.0.96.1
  10                    # optional parameters length 16
  02 0e                 #   parameter type 2 (capabilities), length 14
  01 04 00 01 00 01     #     MP (1), len 4: AFI 1 IPv4, reserved, SAFI 1 unicast
  02 00                 #     route refresh (2), len 0
  41 04 00 00 fc 00     #     4-octet AS (65), len 4: 64512
`;
const PODLAB_OPEN_REPR: OpenRepr = {
  myAs: 64512,
  holdTime: 9,
  bgpId: '127.0.96.1',
  capabilities: [{ kind: 'multiprotocol', afi: 1, safi: 1 }, { kind: 'route-refresh' }, { kind: 'four-octet-as', asn: 64512 }],
};

test('OPEN (podlab): deconstruct', (t) => {
  const b = PODLAB_OPEN;
  t.true(b.subarray(0, 16).every((x) => x === 0xff), 'marker');
  t.is(b.readUInt16BE(16), b.length);
  t.is(b[18], 1);
  t.is(b[19], 4);
  t.is(b.readUInt16BE(20), 64512);
  t.is(b.readUInt16BE(22), 9);
  t.is(b.readUInt32BE(24), 0x7f006001);
  t.is(b[28], b.length - 29);
  t.deepEqual(parseHeader(b), { length: 45, type: 1 });
});

test('OPEN (podlab): construct, parse, round trip', (t) => {
  t.deepEqual(serializeOpen(PODLAB_OPEN_REPR), PODLAB_OPEN);
  t.deepEqual(serializeBgpMessage({ type: 'open', ...PODLAB_OPEN_REPR }), PODLAB_OPEN);
  t.deepEqual(parse(PODLAB_OPEN), { type: 'open', ...PODLAB_OPEN_REPR });
  t.deepEqual(serializeBgpMessage(parse(PODLAB_OPEN)), PODLAB_OPEN);
  // buildOpen is what the FSM sends.
  t.deepEqual(buildOpen({ localAsn: 64512, routerId: '127.0.96.1', holdTime: 9, peerAsn: 64512 }), PODLAB_OPEN_REPR);
});

test('OPEN with a 4-octet ASN: My AS is AS_TRANS, the capability carries the real ASN', (t) => {
  const bytes = hex`
    ${MARKER} 00 2d 01
    04
    5b a0                 # My AS = AS_TRANS 23456
    00 5a                 # hold 90
    0a 00 00 01           # id 10.0.0.1
    10 02 0e
    01 04 00 01 00 01
    02 00
    41 04 fa 56 ea 01     # 4-octet AS 4200000001
  `;
  const repr = buildOpen({ localAsn: 4_200_000_001, routerId: '10.0.0.1', holdTime: 90, peerAsn: 1 });
  t.is(repr.myAs, AS_TRANS);
  t.deepEqual(serializeOpen(repr), bytes);
  t.deepEqual(parse(bytes), { type: 'open', ...repr });
});

test('OPEN without optional parameters (what BIRD accepts as implicit IPv4 unicast)', (t) => {
  const bytes = hex`${MARKER} 00 1d 01  04 fc 01 00 b4 c0 00 02 01  00   # AS 64513, hold 180, id 192.0.2.1, no parameters`;
  const repr: OpenRepr = { myAs: 64513, holdTime: 180, bgpId: '192.0.2.1', capabilities: [] };
  t.deepEqual(serializeOpen(repr), bytes);
  t.deepEqual(parse(bytes), { type: 'open', ...repr });
});

test('OPEN from BIRD 2.0.12: GR, enhanced refresh and LLGR accepted, unknown ones kept raw, byte-exact round trip', (t) => {
  const bytes = fixture('bird-open.hex');
  t.deepEqual(
    bytes,
    hex`
      ${MARKER} 00 35 01
      04 fc 00 00 03 7f 00 5f 01   # v4, AS 64512, hold 3, id 127.0.95.1
      18 02 16                     # 24 bytes of parameters: one capabilities parameter of 22
      01 04 00 01 00 01            # MP IPv4 unicast
      02 00                        # route refresh
      40 02 00 78                  # graceful restart: flags 0, restart time 120, no families
      41 04 00 00 fc 00            # 4-octet AS 64512
      46 00                        # enhanced route refresh (70)
      47 00                        # long-lived graceful restart (71), empty
    `,
  );
  const m = parse(bytes);
  t.deepEqual(m, {
    type: 'open',
    myAs: 64512,
    holdTime: 3,
    bgpId: '127.0.95.1',
    capabilities: [
      { kind: 'multiprotocol', afi: 1, safi: 1 },
      { kind: 'route-refresh' },
      { kind: 'graceful-restart', flags: 0, restartTime: 120, families: [] },
      { kind: 'four-octet-as', asn: 64512 },
      { kind: 'unknown', code: 70, value: Buffer.alloc(0) },
      { kind: 'unknown', code: 71, value: Buffer.alloc(0) },
    ],
  });
  t.deepEqual(serializeBgpMessage(m), bytes);
});

test('OPEN: capabilities split over several parameters parse into one list (re-serialized as one parameter)', (t) => {
  const bytes = hex`
    ${MARKER} 00 31 01 04 fc 00 00 09 7f 00 60 02
    14                      # 20 bytes of parameters
    02 06 01 04 00 01 00 01 # parameter 1: MP
    02 02 02 00             # parameter 2: route refresh
    02 06 41 04 00 00 fc 00 # parameter 3: AS4
  `;
  const m = parse(bytes);
  t.deepEqual(m.type === 'open' && m.capabilities.map((c) => c.kind), ['multiprotocol', 'route-refresh', 'four-octet-as']);
  t.deepEqual(parse(serializeBgpMessage(m)), m);
  t.is(serializeBgpMessage(m).length, bytes.length - 4);
});

// ---------------------------------------------------------------------------
// UPDATE
// ---------------------------------------------------------------------------

/** An UPDATE with every attribute podlab decodes plus an unknown transitive one (4-octet AS session). */
const FULL_UPDATE = hex`
  ${MARKER}
  00 71                          # length 113
  02                             # type UPDATE
  00 04                          # withdrawn routes length 4
  18 0a f4 09                    #   10.244.9.0/24
  00 4e                          # total path attribute length 78
  40 01 01 00                    #   ORIGIN (well-known), len 1: IGP
  40 02 0a                       #   AS_PATH (well-known), len 10
     02 02 00 00 fc 00 fa 56 ea 01  #     AS_SEQUENCE of 2: 64512 4200000001
  40 03 04 7f 00 60 01           #   NEXT_HOP 127.0.96.1
  80 04 04 00 00 00 32           #   MULTI_EXIT_DISC (optional non-transitive) 50
  40 05 04 00 00 00 c8           #   LOCAL_PREF 200
  c0 08 08                       #   COMMUNITIES (optional transitive), len 8
     fc 00 00 64 ff ff ff 01     #     64512:100, NO_EXPORT
  80 09 04 7f 00 60 03           #   ORIGINATOR_ID 127.0.96.3
  80 0a 04 01 01 01 01           #   CLUSTER_LIST 1.1.1.1
  e0 20 0c                       #   type 32 (LARGE_COMMUNITY, unknown to podlab): optional, transitive, partial
     00 00 fc 00 00 00 00 01 00 00 00 02
  18 0a f4 01                    # NLRI 10.244.1.0/24
  0c 0a 60                       #      10.96.0.0/12
  00                             #      0.0.0.0/0
`;
const FULL_UPDATE_REPR: UpdateRepr = {
  withdrawn: ['10.244.9.0/24'],
  attributes: {
    origin: 'igp',
    asPath: [{ type: 'sequence', asns: [64512, 4_200_000_001] }],
    nextHop: '127.0.96.1',
    med: 50,
    localPref: 200,
    communities: [64512 * 65536 + 100, COMMUNITY_NO_EXPORT],
    originatorId: '127.0.96.3',
    clusterList: ['1.1.1.1'],
    other: [{ flags: 0xe0, type: 32, value: hex`00 00 fc 00 00 00 00 01 00 00 00 02` }],
  },
  nlri: ['10.244.1.0/24', '10.96.0.0/12', '0.0.0.0/0'],
};

test('UPDATE (all attributes): deconstruct', (t) => {
  const b = FULL_UPDATE;
  t.is(b.readUInt16BE(16), b.length);
  t.is(b[18], 2);
  const wlen = b.readUInt16BE(19);
  t.is(wlen, 4);
  const alen = b.readUInt16BE(21 + wlen);
  t.is(alen, 78);
  t.is(b.length - (23 + wlen + alen), 8, 'NLRI bytes');
  t.is(b[27], 0x40, 'ORIGIN flags: well-known (transitive)');
  t.is(b[27 + 4 + 13 + 7], 0x80, 'MED flags: optional, non-transitive');
});

test('UPDATE (all attributes): construct, parse, round trip', (t) => {
  t.deepEqual(serializeUpdate(FULL_UPDATE_REPR), FULL_UPDATE);
  t.deepEqual(parse(FULL_UPDATE), { type: 'update', ...FULL_UPDATE_REPR });
  t.deepEqual(serializeBgpMessage(parse(FULL_UPDATE)), FULL_UPDATE);
});

test('UPDATE towards a 2-octet speaker: AS_TRANS in AS_PATH, the real path in AS4_PATH, merged back on receipt', (t) => {
  const bytes = hex`
    ${MARKER} 00 3c 02
    00 00                        # no withdrawn routes
    00 21                        # 33 bytes of attributes
    40 01 01 02                  # ORIGIN INCOMPLETE
    40 02 06 02 02 fc 00 5b a0   # AS_PATH (2-octet ASNs): SEQUENCE 64512 23456
    40 03 04 c0 00 02 01         # NEXT_HOP 192.0.2.1
    c0 11 0a                     # AS4_PATH (17, optional transitive), len 10
       02 02 00 00 fc 00 fa 56 ea 01  # SEQUENCE 64512 4200000001
    18 0a f4 02                  # NLRI 10.244.2.0/24
  `;
  const real = [{ type: 'sequence' as const, asns: [64512, 4_200_000_001] }];
  const two = toTwoOctetPath(real);
  t.deepEqual(two, { asPath: [{ type: 'sequence', asns: [64512, AS_TRANS] }], as4Path: real });
  const repr: UpdateRepr = { withdrawn: [], attributes: { origin: 'incomplete', asPath: two.asPath, nextHop: '192.0.2.1', as4Path: two.as4Path }, nlri: ['10.244.2.0/24'] };
  t.deepEqual(serializeUpdate(repr, { as4: false }), bytes);
  const m = parse(bytes, false);
  t.deepEqual(m, { type: 'update', ...repr });
  const n = normalizeUpdate(repr, { as4: false, ibgp: false, remoteAsn: 64512 });
  t.false(isBgpError(n));
  if (!isBgpError(n)) {
    t.deepEqual(n.attributes.asPath, real);
    t.is(n.attributes.as4Path, undefined);
  }
  // The same bytes read as a 4-octet session are a malformed AS_PATH (6 bytes cannot hold two 4-octet ASNs).
  const e = parseBgpMessage(bytes, { as4: true });
  t.true(isBgpError(e) && e.code === 3 && e.subcode === 11);
});

test('UPDATE from BIRD 2.0.12 (static blackhole, next hop self) and its End-of-RIB', (t) => {
  const bytes = fixture('bird-update.hex');
  t.deepEqual(
    bytes,
    hex`
      ${MARKER} 00 2f 02
      00 00 00 15                 # no withdrawn, 21 bytes of attributes
      40 01 01 00                 # ORIGIN IGP
      40 02 00                    # AS_PATH empty (iBGP, originated here)
      40 03 04 7f 00 5f 01        # NEXT_HOP 127.0.95.1
      40 05 04 00 00 00 64        # LOCAL_PREF 100
      10 0a 60                    # NLRI 10.96.0.0/16
    `,
  );
  const repr: UpdateRepr = { withdrawn: [], attributes: { origin: 'igp', asPath: [], nextHop: '127.0.95.1', localPref: 100 }, nlri: ['10.96.0.0/16'] };
  t.deepEqual(parse(bytes), { type: 'update', ...repr });
  t.deepEqual(serializeUpdate(repr), bytes);
  const eor = fixture('bird-end-of-rib.hex');
  t.deepEqual(eor, hex`${MARKER} 00 17 02 00 00 00 00   # withdrawn length 0, attribute length 0, no NLRI`);
  const m = parse(eor);
  t.true(m.type === 'update' && isEndOfRib(m));
  t.deepEqual(serializeUpdate(endOfRib()), eor);
});

test('UPDATE: withdraw only, with extended-length attribute encoding for long values', (t) => {
  const withdrawOnly = hex`${MARKER} 00 1e 02  00 07  18 0a f4 03  10 0a 60  00 00   # withdraw 10.244.3.0/24, 10.96.0.0/16; no attributes`;
  const r: UpdateRepr = { withdrawn: ['10.244.3.0/24', '10.96.0.0/16'], attributes: {}, nlri: [] };
  t.deepEqual(serializeUpdate(r), withdrawOnly);
  t.deepEqual(parse(withdrawOnly), { type: 'update', ...r });
  // 70 communities = 280 bytes: the serializer sets E (0x10) and writes a 2-octet length.
  const communities = Array.from({ length: 70 }, (_, i) => 64512 * 65536 + i);
  const big = serializeUpdate({ withdrawn: [], attributes: { origin: 'igp', asPath: [], nextHop: '10.0.0.1', communities }, nlri: ['10.0.0.0/8'] });
  const at = 23 + 4 + 3 + 7;
  t.is(big[at], 0xd0, 'COMMUNITIES flags: optional, transitive, extended length');
  t.is(big.readUInt16BE(at + 2), 280);
  const back = parse(big);
  t.deepEqual(back.type === 'update' && back.attributes.communities, communities);
});

test('UPDATE: trailing bits past the prefix length are cleared on parse', (t) => {
  const m = parse(hex`
    ${MARKER} 00 29 02 00 00
    00 0e 40 01 01 00  40 02 00  40 03 04 0a 00 00 01   # ORIGIN IGP, empty AS_PATH, NEXT_HOP 10.0.0.1
    14 0a f4 1f                                        # 10.244.31.0 /20 → 10.244.16.0/20
  `);
  t.deepEqual(m.type === 'update' && m.nlri, ['10.244.16.0/20']);
});

// ---------------------------------------------------------------------------
// KEEPALIVE, NOTIFICATION, ROUTE-REFRESH
// ---------------------------------------------------------------------------

test('KEEPALIVE: the bare header', (t) => {
  const bytes = hex`${MARKER} 00 13 04   # length 19, type 4`;
  t.deepEqual(serializeKeepalive(), bytes);
  t.deepEqual(serializeBgpMessage({ type: 'keepalive' }), bytes);
  t.deepEqual(parse(bytes), { type: 'keepalive' });
  t.deepEqual(parseHeader(bytes), { length: 19, type: 4 });
});

test('NOTIFICATION: Cease / Administrative Shutdown with an RFC 9003 shutdown communication', (t) => {
  const bytes = hex`
    ${MARKER} 00 19 03
    06                # error code 6 Cease
    02                # subcode 2 Administrative Shutdown
    03 62 79 65       # data: length 3, "bye"
  `;
  const repr = { code: 6, subcode: 2, data: Buffer.from('\x03bye') };
  t.deepEqual(serializeNotification(repr), bytes);
  t.deepEqual(parse(bytes), { type: 'notification', ...repr });
  t.deepEqual(serializeBgpMessage(parse(bytes)), bytes);
  t.is(notificationName(6, 2), 'Cease / Administrative Shutdown');
  // BIRD's own, on SIGTERM: no data.
  t.deepEqual(parse(fixture('bird-cease-shutdown.hex')), { type: 'notification', code: 6, subcode: 2, data: Buffer.alloc(0) });
});

test('NOTIFICATION names for every RFC 4271 code', (t) => {
  t.is(notificationName(1, 1), 'Message Header Error / Connection Not Synchronized');
  t.is(notificationName(1, 2), 'Message Header Error / Bad Message Length');
  t.is(notificationName(1, 3), 'Message Header Error / Bad Message Type');
  t.is(notificationName(2, 1), 'OPEN Message Error / Unsupported Version Number');
  t.is(notificationName(2, 2), 'OPEN Message Error / Bad Peer AS');
  t.is(notificationName(2, 3), 'OPEN Message Error / Bad BGP Identifier');
  t.is(notificationName(2, 4), 'OPEN Message Error / Unsupported Optional Parameter');
  t.is(notificationName(2, 6), 'OPEN Message Error / Unacceptable Hold Time');
  t.is(notificationName(2, 7), 'OPEN Message Error / Unsupported Capability');
  const upd = ['Malformed Attribute List', 'Unrecognized Well-known Attribute', 'Missing Well-known Attribute', 'Attribute Flags Error', 'Attribute Length Error', 'Invalid ORIGIN Attribute'];
  upd.forEach((n, i) => t.is(notificationName(3, i + 1), `UPDATE Message Error / ${n}`));
  t.is(notificationName(3, 8), 'UPDATE Message Error / Invalid NEXT_HOP Attribute');
  t.is(notificationName(3, 9), 'UPDATE Message Error / Optional Attribute Error');
  t.is(notificationName(3, 10), 'UPDATE Message Error / Invalid Network Field');
  t.is(notificationName(3, 11), 'UPDATE Message Error / Malformed AS_PATH');
  t.is(notificationName(4, 0), 'Hold Timer Expired / Unspecific');
  t.is(notificationName(5, 0), 'Finite State Machine Error / Unspecific');
  t.is(notificationName(6, 7), 'Cease / Connection Collision Resolution');
});

test('ROUTE-REFRESH (RFC 2918)', (t) => {
  const bytes = hex`${MARKER} 00 17 05  00 01  00  01   # AFI 1, reserved 0, SAFI 1`;
  const repr = { afi: 1, safi: 1, subtype: 0 };
  t.deepEqual(serializeRouteRefresh(repr), bytes);
  t.deepEqual(parse(bytes), { type: 'route-refresh', ...repr });
  t.deepEqual(serializeBgpMessage(parse(bytes)), bytes);
});

// ---------------------------------------------------------------------------
// AS paths, packing, framer
// ---------------------------------------------------------------------------

test('AS_PATH helpers: length counts a set as 1, prepend, BIRD notation, RFC 6793 merge', (t) => {
  const p = [
    { type: 'sequence' as const, asns: [65001, 65002] },
    { type: 'set' as const, asns: [65010, 65011, 65012] },
  ];
  t.is(asPathLength(p), 3);
  t.is(asPathToString(prependAs(p, 64512)), '64512 65001 65002 {65010 65011 65012}');
  t.is(asPathToString(prependAs([{ type: 'set', asns: [1] }], 2)), '2 {1}');
  // AS4_PATH shorter than AS_PATH: leading ASes of AS_PATH kept.
  const merged = mergeAs4Path([{ type: 'sequence', asns: [65001, AS_TRANS, AS_TRANS] }], [{ type: 'sequence', asns: [4_200_000_001, 4_200_000_002] }]);
  t.deepEqual(merged, [{ type: 'sequence', asns: [65001, 4_200_000_001, 4_200_000_002] }]);
  // AS4_PATH longer than AS_PATH: ignored (RFC 6793 §4.2.3).
  t.deepEqual(mergeAs4Path([{ type: 'sequence', asns: [AS_TRANS] }], [{ type: 'sequence', asns: [1, 2] }]), [{ type: 'sequence', asns: [AS_TRANS] }]);
});

test('packUpdates: NLRI split so that every UPDATE fits 4096 bytes, withdrawals first', (t) => {
  const prefixes = Array.from({ length: 2000 }, (_, i) => `10.${i >> 8}.${i & 255}.0/24`);
  const ups = packUpdates(['192.0.2.0/24'], [{ attributes: { origin: 'igp', asPath: [], nextHop: '10.0.0.1', localPref: 100 }, prefixes }]);
  t.deepEqual(ups[0], { withdrawn: ['192.0.2.0/24'], attributes: {}, nlri: [] });
  t.true(ups.length > 2);
  let n = 0;
  for (const u of ups.slice(1)) {
    const b = serializeUpdate(u);
    t.true(b.length <= BGP_MAX_MESSAGE_LEN);
    n += u.nlri.length;
  }
  t.is(n, 2000);
  t.true(serializeUpdate(ups[1]).length > 4000, 'messages are filled');
});

test('framer: every split point of a stream of every message type yields the same messages', (t) => {
  const stream = Buffer.concat([PODLAB_OPEN, serializeKeepalive(), FULL_UPDATE, fixture('bird-update.hex'), serializeRouteRefresh({ afi: 1, safi: 1, subtype: 0 }), fixture('bird-cease-shutdown.hex')]);
  const want = [PODLAB_OPEN, serializeKeepalive(), FULL_UPDATE, fixture('bird-update.hex'), serializeRouteRefresh({ afi: 1, safi: 1, subtype: 0 }), fixture('bird-cease-shutdown.hex')].map((b) => parse(b));
  for (let i = 0; i <= stream.length; i++) {
    const f = new BgpFramer({ as4: true });
    const a = f.write(stream.subarray(0, i));
    const b = f.write(stream.subarray(i));
    if (isBgpError(a) || isBgpError(b)) return t.fail(`split ${i}: error`);
    if (i === 0 || i === stream.length || i % 37 === 0) t.deepEqual([...a, ...b], want, `split at ${i}`);
    else if ([...a, ...b].length !== want.length) return t.fail(`split ${i}`);
    t.is(f.buffered, 0);
  }
  // Byte by byte, with next().
  const f = new BgpFramer({ as4: true });
  const got: BgpMessage[] = [];
  for (const byte of stream) {
    f.push(Buffer.from([byte]));
    for (let m = f.next(); m !== undefined; m = f.next()) {
      if (isBgpError(m)) return t.fail(m.toString());
      got.push(m);
    }
  }
  t.deepEqual(got, want);
});

test('framer: a bad header is reported as soon as 19 bytes are in, then the stream stays broken', (t) => {
  const f = new BgpFramer();
  const bad = Buffer.from(PODLAB_OPEN);
  bad[3] = 0;
  t.deepEqual(f.write(bad.subarray(0, 18)), []);
  const e = f.write(bad.subarray(18, 19));
  if (!isBgpError(e)) return t.fail('no error');
  t.like(e, { code: 1, subcode: 1 });
  t.is(f.write(serializeKeepalive()), e, 'still broken');
  t.is(f.error, e);
});
