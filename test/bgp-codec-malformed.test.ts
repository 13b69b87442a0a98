/**
 * Malformed BGP input: a named table of messages, each mapped to the exact
 * NOTIFICATION (code, subcode, data) RFC 4271 §6 prescribes; then the
 * session-level OPEN/UPDATE checks; then a seeded fuzz pass over every
 * parser (random bytes, bit flips and truncations of valid messages, random
 * stream chunking): nothing throws, every error is a BgpError with a
 * NOTIFICATION code, and whatever parses re-serializes to something that
 * parses back to the same Repr. Failures print the seed and the input hex;
 * inputs that once broke a parser live in test/fixtures/bgp/fuzz-corpus.hex.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import {
  BgpError,
  BgpFramer,
  isBgpError,
  parseAttributes,
  parseBgpMessage,
  parseHeader,
  parseNotificationBody,
  parseOpenBody,
  parseRouteRefreshBody,
  parseUpdateBody,
  serializeBgpMessage,
  serializeKeepalive,
  serializeOpen,
  serializeUpdate,
  serializeNotification,
  serializeRouteRefresh,
  checkOpen,
  normalizeUpdate,
  buildOpen,
  type OpenRepr,
  type UpdateRepr,
} from '../bgp/index.ts';
import { SeededRng } from '../common/rng.ts';
import { fixture, hex } from './fixtures/bgp/helpers.ts';

const M = Buffer.alloc(16, 0xff);

/** A message of `type` around `body`, header length computed. */
function msg(type: number, body: Buffer): Buffer {
  const h = Buffer.alloc(19, 0xff);
  h.writeUInt16BE(19 + body.length, 16);
  h[18] = type;
  return Buffer.concat([h, body]);
}

const OPEN_HEAD = hex`04 fc 00 00 09 7f 00 60 02`; // v4, AS 64512, hold 9, id 127.0.96.2
const GOOD_ATTRS = hex`40 01 01 00  40 02 00  40 03 04 7f 00 60 01`; // ORIGIN IGP, AS_PATH empty, NEXT_HOP 127.0.96.1
const NLRI = hex`18 0a f4 01`; // 10.244.1.0/24

/** An UPDATE with the given withdrawn, attributes and NLRI fields (length fields computed). */
function upd(attrs: Buffer, nlri: Buffer = NLRI, withdrawn: Buffer = Buffer.alloc(0)): Buffer {
  const w = Buffer.alloc(2);
  w.writeUInt16BE(withdrawn.length);
  const a = Buffer.alloc(2);
  a.writeUInt16BE(attrs.length);
  return msg(2, Buffer.concat([w, withdrawn, a, attrs, nlri]));
}

interface Case {
  name: string;
  bytes: Buffer;
  code: number;
  subcode: number;
  /** Expected NOTIFICATION data; omitted = empty. */
  data?: Buffer;
  /** Decode as a 2-octet AS session. */
  as2?: boolean;
}

const CASES: Case[] = [
  // --- Message Header Error (RFC 4271 §6.1) ---
  { name: 'marker byte 5 is 0xfe', bytes: hex`ff ff ff ff ff fe ff ff ff ff ff ff ff ff ff ff 00 13 04`, code: 1, subcode: 1 },
  { name: 'marker all zero (RFC 1771-era authentication)', bytes: hex`00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 13 04`, code: 1, subcode: 1 },
  { name: 'length 18 < 19', bytes: hex`${M.toString('hex')} 00 12 04`, code: 1, subcode: 2, data: hex`00 12` },
  { name: 'length 4097 > 4096', bytes: hex`${M.toString('hex')} 10 01 02`, code: 1, subcode: 2, data: hex`10 01` },
  { name: 'KEEPALIVE of 20 bytes', bytes: hex`${M.toString('hex')} 00 14 04 00`, code: 1, subcode: 2, data: hex`00 14` },
  { name: 'OPEN of 28 bytes (< 29)', bytes: hex`${M.toString('hex')} 00 1c 01 04 fc 00 00 09 7f 00 60 02`, code: 1, subcode: 2, data: hex`00 1c` },
  { name: 'UPDATE of 22 bytes (< 23)', bytes: hex`${M.toString('hex')} 00 16 02 00 00 00`, code: 1, subcode: 2, data: hex`00 16` },
  { name: 'NOTIFICATION of 20 bytes (< 21)', bytes: hex`${M.toString('hex')} 00 14 03 06`, code: 1, subcode: 2, data: hex`00 14` },
  { name: 'ROUTE-REFRESH of 24 bytes (!= 23)', bytes: hex`${M.toString('hex')} 00 18 05 00 01 00 01 00`, code: 1, subcode: 2, data: hex`00 18` },
  { name: 'length field larger than the message', bytes: hex`${M.toString('hex')} 00 20 02 00 00 00 00  # UPDATE says 32, has 23`, code: 1, subcode: 2, data: hex`00 20` },
  { name: 'type 6 (unknown)', bytes: hex`${M.toString('hex')} 00 13 06`, code: 1, subcode: 3, data: hex`06` },
  { name: 'type 0', bytes: hex`${M.toString('hex')} 00 13 00`, code: 1, subcode: 3, data: hex`00` },

  // --- OPEN Message Error (§6.2) ---
  { name: 'OPEN version 3', bytes: msg(1, hex`03 fc 00 00 09 7f 00 60 02 00`), code: 2, subcode: 1, data: hex`00 04  # our version` },
  { name: 'OPEN hold time 1', bytes: msg(1, hex`04 fc 00 00 01 7f 00 60 02 00`), code: 2, subcode: 6 },
  { name: 'OPEN hold time 2', bytes: msg(1, hex`04 fc 00 00 02 7f 00 60 02 00`), code: 2, subcode: 6 },
  { name: 'OPEN BGP identifier 0.0.0.0', bytes: msg(1, hex`04 fc 00 00 09 00 00 00 00 00`), code: 2, subcode: 3 },
  {
    name: 'OPEN optional parameter type 1 (deprecated authentication)',
    bytes: msg(1, hex`${OPEN_HEAD.toString('hex')} 04  01 02 ab cd  # parameter type 1, length 2`),
    code: 2,
    subcode: 4,
  },
  { name: 'OPEN parameters length 8, 4 bytes follow', bytes: msg(1, hex`${OPEN_HEAD.toString('hex')} 08  02 02 02 00`), code: 2, subcode: 0 },
  { name: 'OPEN parameter overruns the parameters', bytes: msg(1, hex`${OPEN_HEAD.toString('hex')} 04  02 05 02 00`), code: 2, subcode: 0 },
  { name: 'OPEN capability overruns its parameter', bytes: msg(1, hex`${OPEN_HEAD.toString('hex')} 06  02 04  41 04 00 00  # AS4 cap says 4, 2 left`), code: 2, subcode: 0 },
  { name: 'OPEN multiprotocol capability of length 3', bytes: msg(1, hex`${OPEN_HEAD.toString('hex')} 07  02 05  01 03 00 01 01`), code: 2, subcode: 0 },
  { name: 'OPEN 4-octet AS capability of length 2', bytes: msg(1, hex`${OPEN_HEAD.toString('hex')} 06  02 04  41 02 fc 00`), code: 2, subcode: 0 },
  { name: 'OPEN route refresh capability with a value', bytes: msg(1, hex`${OPEN_HEAD.toString('hex')} 05  02 03  02 01 00`), code: 2, subcode: 0 },
  { name: 'OPEN graceful restart capability of length 3', bytes: msg(1, hex`${OPEN_HEAD.toString('hex')} 07  02 05  40 03 00 78 00`), code: 2, subcode: 0 },

  // --- UPDATE Message Error (§6.3) ---
  { name: 'UPDATE withdrawn routes length overruns', bytes: msg(2, hex`00 10  18 0a f4  00 00`), code: 3, subcode: 1 },
  { name: 'UPDATE total attribute length overruns', bytes: msg(2, hex`00 00  00 30  40 01 01 00`), code: 3, subcode: 1 },
  { name: 'UPDATE attribute header cut short', bytes: upd(hex`${GOOD_ATTRS.toString('hex')} 40 01`), code: 3, subcode: 1 },
  { name: 'UPDATE attribute length overruns the attribute list', bytes: upd(hex`40 01 05 00`), code: 3, subcode: 1 },
  { name: 'UPDATE extended-length header cut short', bytes: upd(hex`${GOOD_ATTRS.toString('hex')} d0 08 00`), code: 3, subcode: 1 },
  { name: 'UPDATE ORIGIN twice', bytes: upd(hex`${GOOD_ATTRS.toString('hex')} 40 01 01 01`), code: 3, subcode: 1 },
  {
    name: 'UPDATE unrecognized well-known attribute 99',
    bytes: upd(hex`${GOOD_ATTRS.toString('hex')} 40 63 02 ab cd   # flags 0x40: not optional`),
    code: 3,
    subcode: 2,
    data: hex`40 63 02 ab cd`,
  },
  { name: 'UPDATE NLRI without ORIGIN', bytes: upd(hex`40 02 00  40 03 04 7f 00 60 01`), code: 3, subcode: 3, data: hex`01` },
  { name: 'UPDATE NLRI without AS_PATH', bytes: upd(hex`40 01 01 00  40 03 04 7f 00 60 01`), code: 3, subcode: 3, data: hex`02` },
  { name: 'UPDATE NLRI without NEXT_HOP', bytes: upd(hex`40 01 01 00  40 02 00`), code: 3, subcode: 3, data: hex`03` },
  { name: 'UPDATE ORIGIN flagged optional', bytes: upd(hex`c0 01 01 00  40 02 00  40 03 04 7f 00 60 01`), code: 3, subcode: 4, data: hex`c0 01 01 00` },
  { name: 'UPDATE NEXT_HOP with the partial bit', bytes: upd(hex`40 01 01 00  40 02 00  60 03 04 7f 00 60 01`), code: 3, subcode: 4, data: hex`60 03 04 7f 00 60 01` },
  { name: 'UPDATE MED flagged transitive', bytes: upd(hex`${GOOD_ATTRS.toString('hex')} c0 04 04 00 00 00 01`), code: 3, subcode: 4, data: hex`c0 04 04 00 00 00 01` },
  { name: 'UPDATE COMMUNITIES flagged non-transitive', bytes: upd(hex`${GOOD_ATTRS.toString('hex')} 80 08 04 fc 00 00 01`), code: 3, subcode: 4, data: hex`80 08 04 fc 00 00 01` },
  { name: 'UPDATE LOCAL_PREF flagged optional', bytes: upd(hex`${GOOD_ATTRS.toString('hex')} 80 05 04 00 00 00 64`), code: 3, subcode: 4, data: hex`80 05 04 00 00 00 64` },
  { name: 'UPDATE ORIGIN of length 2', bytes: upd(hex`40 01 02 00 00  40 02 00  40 03 04 7f 00 60 01`), code: 3, subcode: 5, data: hex`40 01 02 00 00` },
  { name: 'UPDATE NEXT_HOP of length 5', bytes: upd(hex`40 01 01 00  40 02 00  40 03 05 7f 00 60 01 00`), code: 3, subcode: 5, data: hex`40 03 05 7f 00 60 01 00` },
  { name: 'UPDATE LOCAL_PREF of length 3', bytes: upd(hex`${GOOD_ATTRS.toString('hex')} 40 05 03 00 00 64`), code: 3, subcode: 5, data: hex`40 05 03 00 00 64` },
  { name: 'UPDATE ATOMIC_AGGREGATE of length 1', bytes: upd(hex`${GOOD_ATTRS.toString('hex')} 40 06 01 00`), code: 3, subcode: 5, data: hex`40 06 01 00` },
  { name: 'UPDATE COMMUNITIES of length 6', bytes: upd(hex`${GOOD_ATTRS.toString('hex')} c0 08 06 fc 00 00 01 00 00`), code: 3, subcode: 5, data: hex`c0 08 06 fc 00 00 01 00 00` },
  { name: 'UPDATE AGGREGATOR of 6 bytes on a 4-octet session', bytes: upd(hex`${GOOD_ATTRS.toString('hex')} c0 07 06 fc 00 0a 00 00 01`), code: 3, subcode: 5, data: hex`c0 07 06 fc 00 0a 00 00 01` },
  { name: 'UPDATE CLUSTER_LIST of length 0', bytes: upd(hex`${GOOD_ATTRS.toString('hex')} 80 0a 00`), code: 3, subcode: 5, data: hex`80 0a 00` },
  { name: 'UPDATE ORIGINATOR_ID of length 8', bytes: upd(hex`${GOOD_ATTRS.toString('hex')} 80 09 08 01 01 01 01 02 02 02 02`), code: 3, subcode: 5, data: hex`80 09 08 01 01 01 01 02 02 02 02` },
  { name: 'UPDATE ORIGIN 3', bytes: upd(hex`40 01 01 03  40 02 00  40 03 04 7f 00 60 01`), code: 3, subcode: 6, data: hex`40 01 01 03` },
  { name: 'UPDATE NEXT_HOP 0.0.0.0', bytes: upd(hex`40 01 01 00  40 02 00  40 03 04 00 00 00 00`), code: 3, subcode: 8, data: hex`40 03 04 00 00 00 00` },
  { name: 'UPDATE NEXT_HOP 224.0.0.5 (multicast)', bytes: upd(hex`40 01 01 00  40 02 00  40 03 04 e0 00 00 05`), code: 3, subcode: 8, data: hex`40 03 04 e0 00 00 05` },
  { name: 'UPDATE NEXT_HOP 255.255.255.255', bytes: upd(hex`40 01 01 00  40 02 00  40 03 04 ff ff ff ff`), code: 3, subcode: 8, data: hex`40 03 04 ff ff ff ff` },
  {
    name: 'UPDATE AS4_PATH with segment type 5',
    bytes: upd(hex`${GOOD_ATTRS.toString('hex')} c0 11 06 05 01 00 00 fc 00`),
    code: 3,
    subcode: 9,
    data: hex`c0 11 06 05 01 00 00 fc 00`,
    as2: true,
  },
  { name: 'UPDATE NLRI prefix length 33', bytes: upd(GOOD_ATTRS, hex`21 0a f4 01 00 00`), code: 3, subcode: 10 },
  { name: 'UPDATE NLRI prefix cut short', bytes: upd(GOOD_ATTRS, hex`18 0a f4`), code: 3, subcode: 10 },
  { name: 'UPDATE withdrawn prefix length 40', bytes: upd(Buffer.alloc(0), Buffer.alloc(0), hex`28 0a 00 00 00 00`), code: 3, subcode: 10 },
  { name: 'UPDATE AS_PATH segment type 0', bytes: upd(hex`40 01 01 00  40 02 06 00 01 00 00 fc 00  40 03 04 7f 00 60 01`), code: 3, subcode: 11 },
  { name: 'UPDATE AS_PATH segment count overruns', bytes: upd(hex`40 01 01 00  40 02 06 02 02 00 00 fc 00  40 03 04 7f 00 60 01`), code: 3, subcode: 11 },
  { name: 'UPDATE AS_PATH empty segment', bytes: upd(hex`40 01 01 00  40 02 02 02 00  40 03 04 7f 00 60 01`), code: 3, subcode: 11 },
  { name: 'UPDATE AS_PATH with a stray byte', bytes: upd(hex`40 01 01 00  40 02 07 02 01 00 00 fc 00 00  40 03 04 7f 00 60 01`), code: 3, subcode: 11 },
  { name: 'UPDATE 2-octet AS_PATH read on a 2-octet session, odd length', bytes: upd(hex`40 01 01 00  40 02 05 02 01 fc 00 00  40 03 04 7f 00 60 01`), code: 3, subcode: 11, as2: true },
];

for (const c of CASES) {
  test(`malformed: ${c.name} → ${c.code}/${c.subcode}`, (t) => {
    const r = parseBgpMessage(c.bytes, { as4: !c.as2 });
    if (!isBgpError(r)) return t.fail(`parsed: ${JSON.stringify(r)}`);
    t.is(`${r.code}/${r.subcode}`, `${c.code}/${c.subcode}`, r.toString());
    t.deepEqual(r.data, c.data ?? Buffer.alloc(0), 'NOTIFICATION data');
    t.true(r instanceof BgpError && r.stack !== undefined);
    // The framer agrees, however the bytes arrive.
    const f = new BgpFramer({ as4: !c.as2 });
    let got: unknown = undefined;
    for (const b of c.bytes) {
      const out = f.write(Buffer.from([b]));
      if (isBgpError(out)) {
        got = out;
        break;
      }
    }
    if (c.name === 'length field larger than the message') {
      t.is(got, undefined, 'the framer waits for the rest');
    } else {
      t.true(isBgpError(got) && got.code === c.code && got.subcode === c.subcode, `framer: ${String(got)}`);
    }
  });
}

// ---------------------------------------------------------------------------
// Checks that need the session: bad peer AS, own identifier, capabilities,
// eBGP leftmost AS.
// ---------------------------------------------------------------------------

const LOCAL = { localAsn: 64512, routerId: '127.0.96.1', holdTime: 9, peerAsn: 64512 };

function open(o: Partial<OpenRepr>): OpenRepr {
  return { ...buildOpen({ ...LOCAL, routerId: '127.0.96.2' }), ...o };
}

test('session: OPEN from the wrong AS → 2/2 Bad Peer AS', (t) => {
  const e = checkOpen(open({ myAs: 64513, capabilities: [{ kind: 'multiprotocol', afi: 1, safi: 1 }, { kind: 'four-octet-as', asn: 64513 }] }), LOCAL);
  t.true(isBgpError(e) && e.code === 2 && e.subcode === 2);
  // Without the AS4 capability My AS is the ASN; with it, the capability wins.
  const e2 = checkOpen(open({ myAs: 64512, capabilities: [{ kind: 'four-octet-as', asn: 4_200_000_000 }] }), LOCAL);
  t.true(isBgpError(e2) && e2.subcode === 2);
  t.false(isBgpError(checkOpen(open({ myAs: 23456, capabilities: [{ kind: 'four-octet-as', asn: 4_200_000_000 }] }), { ...LOCAL, peerAsn: 4_200_000_000 })));
});

test('session: iBGP peer with our BGP identifier → 2/3', (t) => {
  const e = checkOpen(open({ bgpId: '127.0.96.1' }), LOCAL);
  t.true(isBgpError(e) && e.code === 2 && e.subcode === 3);
  // eBGP may share it (RFC 6286 §2.2).
  t.false(isBgpError(checkOpen(open({ bgpId: '127.0.96.1', myAs: 65000, capabilities: [] }), { ...LOCAL, peerAsn: 65000 })));
});

test('session: MP capabilities without IPv4 unicast → 2/7 Unsupported Capability, data = the MP capability we need', (t) => {
  const e = checkOpen(open({ capabilities: [{ kind: 'multiprotocol', afi: 2, safi: 1 }] }), LOCAL);
  t.true(isBgpError(e) && e.code === 2 && e.subcode === 7);
  t.deepEqual(isBgpError(e) && e.data, hex`01 04 00 01 00 01`);
  // No capabilities at all: implicit IPv4 unicast, fine.
  t.false(isBgpError(checkOpen(open({ capabilities: [] }), LOCAL)));
});

test('session: hold time and keepalive negotiation (smaller hold, keepalive = min(ours, hold/3))', (t) => {
  const s = checkOpen(open({ holdTime: 3 }), LOCAL);
  t.false(isBgpError(s));
  if (!isBgpError(s)) t.like(s, { holdTime: 3, keepaliveTime: 1, as4: true, ibgp: true, routeRefresh: true });
  const z = checkOpen(open({ holdTime: 0 }), LOCAL);
  if (!isBgpError(z)) t.like(z, { holdTime: 0, keepaliveTime: 0 });
  const big = checkOpen(open({ holdTime: 240 }), LOCAL);
  if (!isBgpError(big)) t.like(big, { holdTime: 9, keepaliveTime: 3 });
});

test('session: eBGP UPDATE whose leftmost AS is not the peer → 3/11', (t) => {
  const u: UpdateRepr = { withdrawn: [], attributes: { origin: 'igp', asPath: [{ type: 'sequence', asns: [65001] }], nextHop: '192.0.2.1' }, nlri: ['10.0.0.0/8'] };
  const e = normalizeUpdate(u, { as4: true, ibgp: false, remoteAsn: 65002 });
  t.true(isBgpError(e) && e.code === 3 && e.subcode === 11);
  t.false(isBgpError(normalizeUpdate(u, { as4: true, ibgp: false, remoteAsn: 65001 })));
  const empty = normalizeUpdate({ ...u, attributes: { ...u.attributes, asPath: [] } }, { as4: true, ibgp: false, remoteAsn: 65001 });
  t.true(isBgpError(empty) && empty.subcode === 11);
});

// ---------------------------------------------------------------------------
// Fuzz
// ---------------------------------------------------------------------------

const VALID: Buffer[] = [
  serializeOpen(buildOpen(LOCAL)),
  fixture('bird-open.hex'),
  fixture('bird-update.hex'),
  fixture('bird-end-of-rib.hex'),
  fixture('bird-cease-shutdown.hex'),
  serializeKeepalive(),
  serializeRouteRefresh({ afi: 1, safi: 1, subtype: 0 }),
  serializeNotification({ code: 3, subcode: 6, data: hex`40 01 01 03` }),
  serializeUpdate({
    withdrawn: ['10.244.9.0/24'],
    attributes: {
      origin: 'egp',
      asPath: [
        { type: 'sequence', asns: [64512, 4_200_000_001] },
        { type: 'set', asns: [1, 2] },
      ],
      nextHop: '127.0.96.1',
      med: 5,
      localPref: 200,
      atomicAggregate: true,
      aggregator: { asn: 64512, address: '10.0.0.1' },
      communities: [1, 2],
      originatorId: '1.2.3.4',
      clusterList: ['1.1.1.1', '2.2.2.2'],
      other: [{ flags: 0xc0, type: 32, value: Buffer.alloc(12, 7) }],
    },
    nlri: ['10.244.1.0/24', '0.0.0.0/0', '10.0.0.0/8'],
  }),
  upd(hex`40 01 01 00 40 02 06 02 02 fc 00 5b a0 40 03 04 7f 00 60 01 c0 11 0a 02 02 00 00 fc 00 fa 56 ea 01`),
];

/** Every parser entry point, each must return a value and never throw. */
const PARSERS: Record<string, (b: Buffer) => unknown> = {
  'parseBgpMessage(as4)': (b) => parseBgpMessage(b, { as4: true }),
  'parseBgpMessage(as2)': (b) => parseBgpMessage(b, { as4: false }),
  parseHeader: (b) => parseHeader(b),
  parseOpenBody: (b) => parseOpenBody(b),
  'parseUpdateBody(as4)': (b) => parseUpdateBody(b, { as4: true }),
  'parseUpdateBody(as2)': (b) => parseUpdateBody(b, { as4: false }),
  parseAttributes: (b) => parseAttributes(b),
  parseNotificationBody: (b) => parseNotificationBody(b),
  parseRouteRefreshBody: (b) => parseRouteRefreshBody(b),
};

/** The serializer writes attributes in ascending type order: compare raw attributes sorted. */
function canonical(m: unknown): unknown {
  const u = m as { type?: string; attributes?: { other?: { type: number }[] } };
  if (u?.type !== 'update' || !u.attributes?.other) return m;
  return { ...u, attributes: { ...u.attributes, other: [...u.attributes.other].sort((a, b) => a.type - b.type) } };
}

/** Checks one input against one parser: no throw; error = BgpError with a code 1..3; success round-trips. */
function check(name: string, b: Buffer, seed: number): string | undefined {
  let r: unknown;
  try {
    r = PARSERS[name](b);
  } catch (err) {
    return `${name} threw ${String(err)} (seed ${seed}) on ${b.toString('hex')}`;
  }
  if (isBgpError(r)) {
    if (r.code < 1 || r.code > 3) return `${name}: error code ${r.code} (seed ${seed}) on ${b.toString('hex')}`;
    return undefined;
  }
  if (name.startsWith('parseBgpMessage')) {
    const as4 = name.endsWith('(as4)');
    try {
      const again = parseBgpMessage(serializeBgpMessage(r as never, { as4 }), { as4 });
      if (!isDeepStrictEqual(canonical(again), canonical(r))) return `${name}: round trip differs (seed ${seed}) on ${b.toString('hex')}`;
    } catch (err) {
      return `${name}: re-serialize threw ${String(err)} (seed ${seed}) on ${b.toString('hex')}`;
    }
  }
  return undefined;
}

test('fuzz: regression corpus', (t) => {
  const lines = readFileSync(new URL('./fixtures/bgp/fuzz-corpus.hex', import.meta.url), 'utf8')
    .split('\n')
    .map((l) => l.replace(/#.*$/, '').trim())
    .filter(Boolean);
  t.true(lines.length > 0);
  for (const l of lines) for (const name of Object.keys(PARSERS)) t.is(check(name, Buffer.from(l, 'hex'), 0), undefined);
});

test('fuzz: random bytes, bit flips and truncations never make a parser throw', (t) => {
  const SEED = 20240501;
  const rng = new SeededRng(SEED);
  t.log(`seed ${SEED}`);
  const failures: string[] = [];
  let parsed = 0;
  let errors = 0;
  for (let i = 0; i < 6000 && failures.length < 5; i++) {
    const kind = i % 3;
    let b: Buffer;
    if (kind === 0) {
      // Random body behind a valid-looking header half of the time.
      const body = Buffer.from(Array.from({ length: rng.int(0, 80) }, () => rng.int(0, 255)));
      b = rng.chance(0.5) ? msg(rng.int(1, 5), body) : body;
    } else if (kind === 1) {
      b = Buffer.from(VALID[rng.int(0, VALID.length - 1)]);
      const flips = rng.int(1, 4);
      for (let k = 0; k < flips; k++) b[rng.int(16, b.length - 1)] ^= 1 << rng.int(0, 7);
    } else {
      const v = VALID[rng.int(0, VALID.length - 1)];
      b = v.subarray(0, rng.int(0, v.length));
    }
    for (const name of Object.keys(PARSERS)) {
      const input = name.startsWith('parseBgpMessage') || name === 'parseHeader' ? b : b.subarray(Math.min(19, b.length));
      const f = check(name, input, SEED);
      if (f) failures.push(`#${i} ${f}`);
    }
    const r = parseBgpMessage(b);
    if (isBgpError(r)) errors++;
    else parsed++;
  }
  t.log(`${parsed} inputs parsed, ${errors} rejected with a NOTIFICATION`);
  t.deepEqual(failures, []);
  t.true(parsed > 100 && errors > 1000, 'the fuzz reaches both outcomes');
});

test('fuzz: the framer over random chunkings of valid and corrupted streams', (t) => {
  const SEED = 77;
  const rng = new SeededRng(SEED);
  for (let i = 0; i < 400; i++) {
    const parts = Array.from({ length: rng.int(1, 6) }, () => VALID[rng.int(0, VALID.length - 1)]);
    const stream = Buffer.concat(parts);
    if (i % 2) stream[rng.int(0, stream.length - 1)] ^= 0xff;
    const f = new BgpFramer({ as4: true });
    let off = 0;
    try {
      while (off < stream.length) {
        const n = rng.int(1, 64);
        const out = f.write(stream.subarray(off, off + n));
        off += n;
        if (isBgpError(out)) break;
      }
    } catch (err) {
      return t.fail(`framer threw ${String(err)} (seed ${SEED}, round ${i})`);
    }
    t.true(f.buffered <= 4096 + 64);
  }
  t.pass();
});
