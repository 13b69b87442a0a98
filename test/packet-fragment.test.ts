/**
 * IPv4 fragmentation (RFC 791) and reassembly, checked against real Linux
 * fragments and with out-of-order, duplicate, overlapping and expiring pieces.
 */
import test from 'ava';
import {
  IPPROTO_ICMP,
  IPPROTO_UDP,
  Reassembler,
  fragmentIpv4,
  isWireError,
  parseIcmp,
  parseIpv4,
  serializeIpv4,
  type Ipv4Repr,
  type WireError,
} from '../packet/index.ts';
import { fixture, hex, ramp, xorshift32 } from './fixtures/packet/helpers.ts';

function ok<T>(r: T | WireError): T {
  if (isWireError(r)) throw new Error(`unexpected WireError ${r.layer}/${r.reason}: ${r.message}`);
  return r;
}

/** The two fragments Linux sent for `ping -s 2000 -M dont` (2028-byte datagram, MTU 1500). */
const LINUX_FRAG1 = fixture('linux-icmp-echo-frag1.hex').subarray(14);
const LINUX_FRAG2 = fixture('linux-icmp-echo-frag2.hex').subarray(14);

function datagram(len: number, over: Partial<Ipv4Repr> = {}): Ipv4Repr {
  return {
    src: '10.244.1.5',
    dst: '10.244.2.7',
    protocol: IPPROTO_UDP,
    ttl: 63,
    id: 0x1234,
    dontFragment: false,
    moreFragments: false,
    fragmentOffset: 0,
    dscp: 10,
    ecn: 1,
    payload: ramp(7, len),
    ...over,
  };
}

/** Deterministic Fisher-Yates. */
function shuffle<T>(xs: T[], rnd: () => number): T[] {
  const a = xs.slice();
  for (let i = a.length - 1; i > 0; i--) {
    const j = rnd() % (i + 1);
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

test('fragment: Linux fragments have the layout we expect', (t) => {
  const f1 = ok(parseIpv4(LINUX_FRAG1));
  const f2 = ok(parseIpv4(LINUX_FRAG2));
  t.like(f1, { id: 0xff98, moreFragments: true, fragmentOffset: 0, dontFragment: false, protocol: IPPROTO_ICMP });
  t.like(f2, { id: 0xff98, moreFragments: false, fragmentOffset: 1480, dontFragment: false });
  t.is(f1.payload.length, 1480);
  t.is(f2.payload.length, 528);
});

test('fragment: reassembling the Linux fragments (either order) yields a valid echo request', (t) => {
  for (const order of [[LINUX_FRAG1, LINUX_FRAG2], [LINUX_FRAG2, LINUX_FRAG1]]) {
    const r = new Reassembler();
    t.is(r.push(ok(parseIpv4(order[0])), 0), null);
    t.is(r.size, 1);
    const whole = r.push(ok(parseIpv4(order[1])), 1);
    if (!whole) return t.fail('not reassembled');
    t.is(r.size, 0);
    t.like(whole, { id: 0xff98, moreFragments: false, fragmentOffset: 0, src: '192.0.2.1', dst: '192.0.2.2', ttl: 64 });
    t.is(whole.payload.length, 2008);
    // The ICMP checksum was computed by ping over the whole message: it verifies only if reassembly is exact.
    const icmp = ok(parseIcmp(whole.payload));
    t.like(icmp, { kind: 'echo-request', seq: 1 });
  }
});

test('fragment: fragmenting the reassembled datagram at MTU 1500 reproduces Linux byte for byte', (t) => {
  const r = new Reassembler();
  r.push(ok(parseIpv4(LINUX_FRAG1)), 0);
  const whole = r.push(ok(parseIpv4(LINUX_FRAG2)), 0)!;
  const frags = fragmentIpv4(whole, 1500);
  t.is(frags.length, 2);
  t.deepEqual(serializeIpv4(frags[0]), LINUX_FRAG1);
  t.deepEqual(serializeIpv4(frags[1]), LINUX_FRAG2);
});

test('fragment: sizes, offsets, MF flags and payload views', (t) => {
  const d = datagram(1000);
  for (const mtu of [68, 69, 75, 76, 100, 576, 999, 1019]) {
    const frags = fragmentIpv4(d, mtu);
    t.true(frags.length > 1, `mtu ${mtu}`);
    let expectOffset = 0;
    frags.forEach((f, i) => {
      const last = i === frags.length - 1;
      const bytes = serializeIpv4(f);
      t.true(bytes.length <= mtu, `mtu ${mtu}: fragment ${i} is ${bytes.length}`);
      t.is(f.fragmentOffset, expectOffset);
      t.is(f.fragmentOffset % 8, 0);
      if (!last) t.is(f.payload.length % 8, 0);
      t.is(f.moreFragments, !last);
      t.false(f.dontFragment);
      t.like(f, { src: d.src, dst: d.dst, id: d.id, ttl: d.ttl, protocol: d.protocol, dscp: d.dscp, ecn: d.ecn });
      t.is(f.payload.buffer, d.payload.buffer, 'payload is a view into the original');
      expectOffset += f.payload.length;
    });
    t.is(expectOffset, 1000);
  }
  t.is(fragmentIpv4(datagram(1000), 68).length, Math.ceil(1000 / 48));
});

test('fragment: fits -> unchanged; DF and too big -> []; MTU below 68-ish -> RangeError', (t) => {
  const d = datagram(1480);
  const same = fragmentIpv4(d, 1500);
  t.is(same.length, 1);
  t.is(same[0], d);
  t.deepEqual(fragmentIpv4(datagram(1481, { dontFragment: true }), 1500), []);
  t.throws(() => fragmentIpv4(d, 27), { instanceOf: RangeError });
  t.notThrows(() => fragmentIpv4(d, 28), 'header + 8 bytes is the least that works');
});

test('fragment: options are copied only where the copy flag says (RFC 791 §3.1)', (t) => {
  const options = hex`
    07 07 04 00 00 00 00   # Record Route (type 7: copy flag clear), 1 slot
    01                     # NOP (not copied)
    94 04 00 00            # Router Alert (type 0x94: copy flag set)
  `;
  const d = datagram(200, { options });
  const frags = fragmentIpv4(d, 100);
  t.true(frags.length > 2);
  t.deepEqual(frags[0].options, options, 'first fragment keeps every option');
  for (const f of frags.slice(1)) t.deepEqual(f.options, hex`94 04 00 00`);
  for (const f of frags) t.true(serializeIpv4(f).length <= 100);
  // No copied options at all: later fragments have none.
  const rr = fragmentIpv4(datagram(200, { options: hex`07 07 04 00 00 00 00 00` }), 100);
  t.false('options' in rr[1]);
  // Reassembly restores the first fragment's header, options included.
  const re = new Reassembler();
  let whole: Ipv4Repr | null = null;
  for (const f of frags) whole = re.push(ok(parseIpv4(serializeIpv4(f))), 0) ?? whole;
  t.deepEqual(whole, { ...d, options: Buffer.concat([options, Buffer.alloc(0)]) });
});

test('reassembly: shuffled and duplicated fragments (seeded), many datagrams interleaved', (t) => {
  const rnd = xorshift32(815);
  for (let round = 0; round < 40; round++) {
    const r = new Reassembler();
    const mtu = 68 + (rnd() % 1432);
    const originals = [0, 1, 2].map((k) => datagram(mtu + (rnd() % 4000), { id: 100 + round, src: `10.0.${k}.1` }));
    let pieces = originals.flatMap((d) => fragmentIpv4(d, mtu));
    // Duplicate a third of them, then shuffle everything together.
    pieces = pieces.concat(pieces.filter(() => rnd() % 3 === 0));
    pieces = shuffle(pieces, rnd);
    const done = new Set<string>();
    for (const p of pieces) {
      const out = r.push(ok(parseIpv4(serializeIpv4(p))), round);
      if (out) {
        // (If every piece of a finished datagram is duplicated late, it is delivered twice, as in Linux.)
        t.deepEqual(out, originals.find((d) => d.src === out.src), `round ${round}`);
        done.add(out.src);
      }
    }
    t.is(done.size, 3, `round ${round}, mtu ${mtu}`);
    // Duplicates arriving after completion open a fresh queue that can only time out.
    const leftover = r.size;
    t.is(r.expire(round + r.timeoutMs), leftover);
    t.is(r.size, 0);
  }
});

test('reassembly: non-fragments pass straight through', (t) => {
  const r = new Reassembler();
  const d = datagram(10);
  t.is(r.push(d, 0), d);
  t.is(r.size, 0);
});

test('reassembly: holes keep it pending; duplicates inside received data are ignored', (t) => {
  const d = datagram(64);
  const piece = (off: number, len: number, mf = true): Ipv4Repr => ({ ...d, moreFragments: mf, fragmentOffset: off, payload: d.payload.subarray(off, off + len) });
  const r = new Reassembler();
  t.is(r.push(piece(0, 16), 0), null);
  t.is(r.push(piece(48, 16, false), 0), null, 'hole 16..48');
  t.is(r.push(piece(32, 8), 0), null, 'hole 16..32 and 40..48');
  t.is(r.push(piece(0, 8), 0), null, 'contained duplicate: ignored');
  t.is(r.push(piece(48, 16, false), 0), null, 'exact duplicate of the last: ignored');
  t.is(r.push(piece(16, 16), 0), null, 'hole 40..48 left');
  t.deepEqual(r.push(piece(40, 8), 0), d);
});

test('reassembly: partial overlaps discard the datagram (Linux, CVE-2018-5391)', (t) => {
  const d = datagram(64);
  const piece = (off: number, len: number, mf = true): Ipv4Repr => ({ ...d, moreFragments: mf, fragmentOffset: off, payload: d.payload.subarray(off, off + len) });
  for (const [name, overlap] of [
    ['overlaps the end of a piece', piece(8, 16)],
    ['overlaps the start of a piece', piece(24, 16)],
    ['covers a piece entirely', piece(16, 24)],
    ['same start, longer', piece(32, 16)],
  ] as const) {
    const r = new Reassembler();
    r.push(piece(0, 16), 0);
    r.push(piece(32, 8), 0);
    t.is(r.push(overlap, 0), null, name);
    t.is(r.size, 0, `${name}: queue dropped`);
    // The rest arriving later cannot complete it.
    r.push(piece(16, 16), 0);
    t.is(r.push(piece(40, 24, false), 0), null, name);
  }
});

test('reassembly: inconsistent or oversized ends discard the datagram', (t) => {
  const d = datagram(64);
  const piece = (off: number, len: number, mf = true): Ipv4Repr => ({ ...d, moreFragments: mf, fragmentOffset: off, payload: Buffer.alloc(len) });
  let r = new Reassembler();
  r.push(piece(0, 16), 0);
  r.push(piece(48, 16, false), 0);
  t.is(r.push(piece(56, 16, false), 0), null, 'a second, different last fragment');
  t.is(r.size, 0);

  r = new Reassembler();
  r.push(piece(48, 16, false), 0);
  t.is(r.push(piece(64, 8), 0), null, 'data beyond the known end');
  t.is(r.size, 0);

  r = new Reassembler();
  r.push(piece(64, 8), 0);
  t.is(r.push(piece(16, 16, false), 0), null, 'last fragment ends before data already received');
  t.is(r.size, 0);

  r = new Reassembler();
  t.is(r.push(piece(65528, 8, false), 0), null, '"ping of death": 65528 + 8 + header > 65535');
  t.is(r.size, 0);
  t.is(r.push(piece(65480, 8, false), 0), null);
  t.is(r.size, 1, 'an end of 65488 still fits');
});

test('reassembly: a non-final fragment not a multiple of 8 is trimmed, like Linux', (t) => {
  const d = datagram(24);
  const r = new Reassembler();
  t.is(r.push({ ...d, moreFragments: true, payload: d.payload.subarray(0, 12) }, 0), null); // trimmed to 8
  t.is(r.push({ ...d, moreFragments: false, fragmentOffset: 8, payload: d.payload.subarray(8) }, 0)?.payload.length, 24);
  t.is(r.push({ ...d, moreFragments: true, payload: Buffer.alloc(5) }, 0), null, 'trimmed to nothing: ignored');
  t.is(r.size, 0);
});

test('reassembly: incomplete datagrams time out (injected clock)', (t) => {
  const expired: (Ipv4Repr | undefined)[] = [];
  const r = new Reassembler({ timeoutMs: 30_000, onExpire: (first) => expired.push(first) });
  const a = fragmentIpv4(datagram(100, { id: 1 }), 68); // 3 pieces
  const b = fragmentIpv4(datagram(100, { id: 2 }), 68);
  r.push(a[0], 1_000);
  r.push(b[1], 10_000);
  t.is(r.size, 2);
  t.is(r.expire(30_999), 0, 'not yet');
  t.is(r.expire(31_000), 1, 'a is 30 s old');
  t.is(r.size, 1);
  t.deepEqual(expired, [a[0]], 'onExpire gets the offset-0 fragment, for ICMP time-exceeded (reassembly)');
  t.is(r.expire(40_000), 1);
  t.deepEqual(expired, [a[0], undefined], 'b never got its first fragment: no ICMP');
  t.is(r.size, 0);
  t.is(r.expire(100_000), 0);

  // A stale queue is also dropped when a new fragment for it shows up late.
  r.push(a[0], 0);
  r.push(a[1], 0);
  t.is(r.push(a[2], 30_000), null, 'too late: the old pieces are gone');
  t.is(r.size, 1);
  r.push(a[0], 30_001);
  t.deepEqual(r.push(a[1], 30_002), datagram(100, { id: 1 }), 'a fresh copy completes it');
});

test('reassembly: the oldest datagram is evicted at maxDatagrams', (t) => {
  const r = new Reassembler({ maxDatagrams: 2 });
  const frags = [1, 2, 3].map((id) => fragmentIpv4(datagram(100, { id }), 68));
  r.push(frags[0][0], 0);
  r.push(frags[1][0], 1);
  r.push(frags[2][0], 2);
  t.is(r.size, 2);
  t.is(r.push(frags[0][1], 3), null);
  t.is(r.push(frags[0][2], 3), null, 'id 1 was evicted, so it cannot complete');
  t.deepEqual(r.push(frags[2][2], 4) ?? r.push(frags[2][1], 4), datagram(100, { id: 3 }));
});

test('fragment: a fragment can be fragmented again and still reassembles', (t) => {
  const d = datagram(3000);
  const first = fragmentIpv4(d, 1500);
  const second = first.flatMap((f) => fragmentIpv4(f, 576));
  t.true(second.length > first.length);
  t.is(second.filter((f) => !f.moreFragments).length, 1, 'only the very last piece has MF clear');
  const r = new Reassembler();
  let whole: Ipv4Repr | null = null;
  for (const f of shuffle(second, xorshift32(3))) whole = r.push(f, 0) ?? whole;
  t.deepEqual(whole, d);
});
