/**
 * packet/tcp.ts: golden bytes of a real Linux SYN (four ways: deconstruct,
 * parse, emit into a 0xa5-filled buffer, construct), option layouts and
 * round trips, a malformed table (named cases, expected reason), lenient
 * option parsing, and a seeded fuzz pass that must never throw.
 */
import test from 'ava';
import { isWireError, parseIpv4, WireError, type WireReason } from '../packet/index.ts';
import {
  NO_FLAGS,
  TCP_ACK,
  TCP_FIN,
  TCP_PSH,
  TCP_SYN,
  formatTcpFlags,
  parseTcp,
  serializeTcp,
  tcpFlagsFromBits,
  tcpFlagsToBits,
  tcpHeaderLength,
  writeTcpHeader,
  type TcpRepr,
} from '../packet/tcp.ts';
import { internetChecksum, pseudoHeaderSum } from '../packet/checksum.ts';
import { hex, xorshift32 } from './fixtures/packet/helpers.ts';

/**
 * A Linux SYN as captured on the wire (Wireshark, Ethernet), published with
 * its dump in a packet-sniffer project's README: 192.168.1.3:58816 ->
 * 63.116.243.97:80, window 5840 with window scale 7 (Linux 2.6-era
 * defaults), options in Linux's tcp_options_write order. Its checksum
 * verifies, so it is the real bytes, not a checksum-offload placeholder.
 */
const LINUX_SYN_FRAME = hex`
  00 26 62 2f 47 87  00 1d 60 b3 01 84  08 00     # Ethernet: dst, src, IPv4
  45 00 00 3c a8 cf 40 00 40 06 9d 6b             # IPv4: 60 bytes, id 0xa8cf, DF, TTL 64, TCP
  c0 a8 01 03  3f 74 f3 61                        # 192.168.1.3 -> 63.116.243.97
  e5 c0 00 50                                     # TCP: src port 58816, dst port 80
  e5 94 3d aa                                     # sequence number 0xe5943daa
  00 00 00 00                                     # acknowledgment number 0
  a0 02                                           # data offset 10 (40 bytes), flags SYN
  16 d0                                           # window 5840
  9d e2                                           # checksum
  00 00                                           # urgent pointer
  02 04 05 b4                                     # MSS 1460
  04 02                                           # SACK permitted
  08 0a 00 17 95 65 00 00 00 00                   # timestamps TSval 1545573, TSecr 0
  01                                              # NOP
  03 03 07                                        # window scale 7
`;
const SRC = '192.168.1.3';
const DST = '63.116.243.97';
const LINUX_SYN = LINUX_SYN_FRAME.subarray(34);

const LINUX_SYN_REPR: TcpRepr = {
  srcPort: 58816,
  dstPort: 80,
  seq: 0xe5943daa,
  ack: 0,
  flags: { ...NO_FLAGS, syn: true },
  window: 5840,
  urgent: 0,
  options: { mss: 1460, sackPermitted: true, timestamp: { value: 1545573, echo: 0 }, windowScale: 7 },
  payload: Buffer.alloc(0),
};

test('golden Linux SYN: the IPv4 layer agrees (addresses, protocol 6, 40 TCP bytes)', (t) => {
  const ip = parseIpv4(LINUX_SYN_FRAME.subarray(14));
  if (isWireError(ip)) return t.fail(ip.message);
  t.is(ip.src, SRC);
  t.is(ip.dst, DST);
  t.is(ip.protocol, 6);
  t.is(ip.payload.length, 40);
  t.true(ip.payload.equals(LINUX_SYN));
});

test('golden Linux SYN: deconstruct (raw fields at their offsets)', (t) => {
  const b = LINUX_SYN;
  t.is(b.readUInt16BE(0), 58816);
  t.is(b.readUInt16BE(2), 80);
  t.is(b.readUInt32BE(4), 0xe5943daa);
  t.is(b.readUInt32BE(8), 0);
  t.is(b[12] >> 4, 10, 'data offset in 32-bit words');
  t.is(b[13], TCP_SYN);
  t.is(b.readUInt16BE(14), 5840);
  t.is(b.readUInt16BE(18), 0);
  // With the pseudo-header, a correct segment sums to zero.
  const pseudo = Buffer.alloc(12);
  pseudo.writeUInt32BE(0xc0a80103, 0);
  pseudo.writeUInt32BE(0x3f74f361, 4);
  pseudo[9] = 6;
  pseudo.writeUInt16BE(40, 10);
  t.is(internetChecksum(pseudo, b), 0);
});

test('golden Linux SYN: parse', (t) => {
  const r = parseTcp(LINUX_SYN, SRC, DST);
  if (isWireError(r)) return t.fail(r.message);
  t.deepEqual({ ...r, payload: [...r.payload] }, { ...LINUX_SYN_REPR, payload: [] });
  // Integer addresses (the hot path) give the same result.
  t.deepEqual(parseTcp(LINUX_SYN, 0xc0a80103, 0x3f74f361), r);
});

test('golden Linux SYN: emit into a 0xa5-filled buffer writes every byte, exactly as Linux did', (t) => {
  const buf = Buffer.alloc(60, 0xa5);
  const hlen = writeTcpHeader(buf, 10, { ...LINUX_SYN_REPR, flags: tcpFlagsToBits(LINUX_SYN_REPR.flags) }, 0, SRC, DST);
  t.is(hlen, 40);
  t.true(buf.subarray(10, 50).equals(LINUX_SYN), buf.subarray(10, 50).toString('hex'));
  t.true(buf.subarray(0, 10).every((x) => x === 0xa5) && buf.subarray(50).every((x) => x === 0xa5), 'nothing outside the segment touched');
  // With a precomputed pseudo-header seed (the stack's per-connection cache) too.
  const buf2 = Buffer.alloc(40, 0xa5);
  writeTcpHeader(buf2, 0, { ...LINUX_SYN_REPR, flags: TCP_SYN }, 0, SRC, DST, pseudoHeaderSum(SRC, DST, 6, 0));
  t.true(buf2.equals(LINUX_SYN));
});

test('golden Linux SYN: construct (serializeTcp) and round trip', (t) => {
  t.true(serializeTcp(LINUX_SYN_REPR, SRC, DST).equals(LINUX_SYN));
  t.is(tcpHeaderLength(LINUX_SYN_REPR.options), 40);
});

test('option layouts follow Linux: every combination round-trips, lengths are multiples of 4', (t) => {
  const combos = [
    {},
    { mss: 1410 },
    { mss: 1410, windowScale: 3 },
    { mss: 65495, sackPermitted: true },
    { mss: 536, timestamp: { value: 0xffffffff, echo: 1 } },
    { timestamp: { value: 7, echo: 9 }, sackPermitted: true, windowScale: 14 },
    { windowScale: 0 },
  ];
  for (const options of combos) {
    const repr: TcpRepr = { ...LINUX_SYN_REPR, options, payload: Buffer.from('data!') };
    const bytes = serializeTcp(repr, SRC, DST);
    t.is((bytes[12] >> 4) * 4, tcpHeaderLength(options), JSON.stringify(options));
    t.is(tcpHeaderLength(options) % 4, 0);
    const back = parseTcp(bytes, SRC, DST);
    if (isWireError(back)) return t.fail(back.message);
    t.deepEqual(back.options, options);
    t.is(back.payload.toString(), 'data!');
  }
  // MSS + window scale alone: what our stack sends in a SYN.
  t.deepEqual(
    [...serializeTcp({ ...LINUX_SYN_REPR, options: { mss: 1410, windowScale: 3 } }, SRC, DST).subarray(20)],
    [0x02, 0x04, 0x05, 0x82, 0x01, 0x03, 0x03, 0x03],
  );
});

test('flags: every bit round-trips; tcpdump-style formatting', (t) => {
  for (let b = 0; b < 256; b++) t.is(tcpFlagsToBits(tcpFlagsFromBits(b)), b);
  t.is(formatTcpFlags(TCP_SYN), '[S]');
  t.is(formatTcpFlags(TCP_SYN | TCP_ACK), '[S.]');
  t.is(formatTcpFlags(TCP_PSH | TCP_ACK), '[P.]');
  t.is(formatTcpFlags(TCP_FIN | TCP_ACK), '[F.]');
  t.is(formatTcpFlags(0), '[none]');
});

test('checksum: an odd-length payload is padded; a segment with data verifies and a flipped bit does not', (t) => {
  const repr: TcpRepr = { ...LINUX_SYN_REPR, flags: { ...NO_FLAGS, ack: true, psh: true }, options: {}, payload: Buffer.from('odd') };
  const bytes = serializeTcp(repr, SRC, DST);
  t.false(isWireError(parseTcp(bytes, SRC, DST)));
  const bad = Buffer.from(bytes);
  bad[bad.length - 1] ^= 0x40;
  const r = parseTcp(bad, SRC, DST);
  t.true(isWireError(r));
  t.is((r as WireError).reason, 'bad-checksum');
  t.false(isWireError(parseTcp(bad, SRC, DST, { verifyChecksum: false })));
  // The pseudo-header counts: the right bytes for the wrong addresses fail.
  t.true(isWireError(parseTcp(bytes, SRC, '63.116.243.98')));
});

/** Recomputes the checksum after a mutation, so only the intended check fails. */
function fixed(seg: Buffer, mutate: (c: Buffer) => void): Buffer {
  const c = Buffer.from(seg);
  mutate(c);
  if (c.length >= 18) {
    c.writeUInt16BE(0, 16);
    const pseudo = Buffer.alloc(12);
    pseudo.writeUInt32BE(0xc0a80103, 0);
    pseudo.writeUInt32BE(0x3f74f361, 4);
    pseudo[9] = 6;
    pseudo.writeUInt16BE(c.length, 10);
    c.writeUInt16BE(internetChecksum(pseudo, c), 16);
  }
  return c;
}

const malformed: { name: string; input: Buffer; reason: WireReason }[] = [
  ...Array.from({ length: 20 }, (_, n) => ({ name: `truncated to ${n} bytes`, input: LINUX_SYN.subarray(0, n), reason: 'truncated' as const })),
  { name: 'data offset 0', input: fixed(LINUX_SYN, (c) => (c[12] = 0x00)), reason: 'bad-length' },
  { name: 'data offset 4 (16 bytes < header)', input: fixed(LINUX_SYN, (c) => (c[12] = 0x40)), reason: 'bad-length' },
  { name: 'data offset 15 (60 bytes) in a 40-byte segment', input: fixed(LINUX_SYN, (c) => (c[12] = 0xf0)), reason: 'truncated' },
  { name: 'data offset 10 but only 30 bytes', input: LINUX_SYN.subarray(0, 30), reason: 'truncated' },
  { name: 'checksum off by one', input: (() => { const c = Buffer.from(LINUX_SYN); c.writeUInt16BE(c.readUInt16BE(16) + 1, 16); return c; })(), reason: 'bad-checksum' },
  { name: 'port changed without checksum update (NAT bug)', input: (() => { const c = Buffer.from(LINUX_SYN); c.writeUInt16BE(8080, 2); return c; })(), reason: 'bad-checksum' },
  { name: 'checksum zeroed (TCP has no "no checksum")', input: (() => { const c = Buffer.from(LINUX_SYN); c.writeUInt16BE(0, 16); return c; })(), reason: 'bad-checksum' },
];

for (const m of malformed) {
  test(`malformed: ${m.name} -> ${m.reason}`, (t) => {
    const r = parseTcp(m.input, SRC, DST);
    t.true(r instanceof WireError, 'a WireError, returned not thrown');
    t.is((r as WireError).layer, 'tcp');
    t.is((r as WireError).reason, m.reason);
  });
}

test('lenient options (RFC 9293 §3.1): unknown kinds skipped, wrong lengths ignored, silly lengths end parsing, reserved bits ignored', (t) => {
  const parse = (opts: number[], mutate?: (c: Buffer) => void) => {
    const optBuf = Buffer.alloc(Math.ceil(opts.length / 4) * 4); // padded with EOL
    Buffer.from(opts).copy(optBuf);
    const base = serializeTcp({ ...LINUX_SYN_REPR, options: {} }, SRC, DST);
    const seg = Buffer.concat([base, optBuf]);
    seg[12] = ((20 + optBuf.length) / 4) << 4;
    const r = parseTcp(fixed(seg, (c) => mutate?.(c)), SRC, DST);
    if (isWireError(r)) throw new Error(r.message);
    return r;
  };
  // Unknown option kind 30 (MPTCP) with 6 bytes, then MSS: MSS still read.
  t.deepEqual(parse([30, 6, 1, 2, 3, 4, 2, 4, 0x05, 0xb4]).options, { mss: 1460 });
  // SACK blocks (kind 5) are skipped; timestamps after them are read.
  t.deepEqual(parse([5, 10, 0, 0, 0, 1, 0, 0, 0, 2, 1, 1, 8, 10, 0, 0, 0, 5, 0, 0, 0, 6]).options, { timestamp: { value: 5, echo: 6 } });
  // MSS with length 3: ignored, parsing continues with the next option.
  t.deepEqual(parse([2, 3, 0x05, 3, 3, 2, 0, 0]).options, { windowScale: 2 });
  // Length 0 and length 1: stop parsing, keep the segment.
  t.deepEqual(parse([3, 3, 5, 2, 0, 0, 0, 0]).options, { windowScale: 5 });
  t.deepEqual(parse([2, 4, 0x01, 0x00, 8, 1, 0, 0]).options, { mss: 256 });
  // An option running past the header: stop.
  t.deepEqual(parse([1, 1, 2, 4, 0x05, 0xb4, 8, 10]).options, { mss: 1460 });
  // EOL ends the list even with bytes after it.
  t.deepEqual(parse([2, 4, 0x05, 0xb4, 0, 3, 3, 7]).options, { mss: 1460 });
  // A kind byte with no room for its length.
  t.deepEqual(parse([1, 1, 1, 3]).options, {});
  // Reserved bits set: ignored (RFC 9293: must be ignored in received segments).
  const r = parse([], (c) => (c[12] |= 0x0f));
  t.is(r.flags.syn, true);
});

test('serializers reject unencodable Reprs with RangeError', (t) => {
  const bad: [string, Partial<TcpRepr>][] = [
    ['port 70000', { srcPort: 70000 }],
    ['negative port', { dstPort: -1 }],
    ['window 65536', { window: 65536 }],
    ['seq 2^32', { seq: 2 ** 32 }],
    ['fractional ack', { ack: 1.5 }],
    ['urgent 65536', { urgent: 65536 }],
    ['MSS 70000', { options: { mss: 70000 } }],
    ['window scale 256', { options: { windowScale: 256 } }],
    ['TSval negative', { options: { timestamp: { value: -1, echo: 0 } } }],
    ['65516 bytes of data', { payload: Buffer.alloc(65516) }],
  ];
  for (const [name, patch] of bad) t.throws(() => serializeTcp({ ...LINUX_SYN_REPR, ...patch }, SRC, DST), { instanceOf: RangeError }, name);
  t.throws(() => serializeTcp(LINUX_SYN_REPR, 'not-an-ip', DST));
});

test('fuzz: random buffers and bit flips never throw; whatever parses re-serializes to itself (seeded)', (t) => {
  const seed = 0x7c9;
  const rnd = xorshift32(seed);
  const specimens = [
    LINUX_SYN,
    serializeTcp({ ...LINUX_SYN_REPR, flags: { ...NO_FLAGS, ack: true, psh: true }, options: {}, payload: Buffer.from('GET / HTTP/1.1\r\n\r\n') }, SRC, DST),
    serializeTcp({ ...LINUX_SYN_REPR, options: { mss: 1410, windowScale: 3 } }, SRC, DST),
  ];
  let parsed = 0;
  for (let i = 0; i < 20_000; i++) {
    let input: Buffer;
    if (i % 2 === 0) {
      input = Buffer.alloc(rnd() % 80);
      for (let k = 0; k < input.length; k++) input[k] = rnd() & 0xff;
    } else {
      const s = specimens[rnd() % specimens.length];
      input = Buffer.from(s.subarray(0, rnd() % 3 === 0 ? rnd() % (s.length + 1) : s.length));
      const flips = 1 + (rnd() % 4);
      for (let k = 0; k < flips && input.length; k++) input[rnd() % input.length] ^= 1 << rnd() % 8;
    }
    let r: ReturnType<typeof parseTcp>;
    try {
      r = parseTcp(input, SRC, DST, { verifyChecksum: i % 4 !== 1 });
    } catch (e) {
      return t.fail(`seed ${seed}, iteration ${i}: threw ${String(e)} on ${input.toString('hex')}`);
    }
    if (isWireError(r)) continue;
    parsed++;
    // Our layout of the options it understood, plus its data, parses back to the same Repr.
    const again = parseTcp(serializeTcp(r, SRC, DST), SRC, DST);
    if (isWireError(again)) return t.fail(`iteration ${i}: re-serialized segment does not parse: ${again.message}`);
    t.deepEqual({ ...again, payload: again.payload.toString('hex') }, { ...r, payload: r.payload.toString('hex') });
  }
  t.true(parsed > 1000, `parsed ${parsed}`);
});
