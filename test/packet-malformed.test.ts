/**
 * Malformed input: every parser returns a WireError with the expected layer
 * and reason, and never throws. Then a seeded fuzz pass (xorshift32, so a
 * failure reproduces from its seed): random buffers and random bit flips of
 * valid packets, per parser. Whatever parses must also re-serialize to
 * something that parses back to the same Repr.
 */
import test from 'ava';
import {
  PcapngWriter,
  WireError,
  buildArpFrame,
  buildIcmpEchoFrame,
  buildUdpFrame,
  buildVxlanFrame,
  icmpErrorQuote,
  internetChecksum,
  isWireError,
  parseArp,
  parseEthernet,
  parseIcmp,
  parseIpv4,
  parseUdp,
  parseVxlan,
  readPcapng,
  serializeArp,
  serializeEthernet,
  serializeIcmp,
  serializeIpv4,
  serializeUdp,
  serializeVxlan,
  type WireLayer,
  type WireReason,
} from '../packet/index.ts';
import { IPPROTO_IPIP, decapIpip } from '../packet/ipip.ts';
import { hex, xorshift32 } from './fixtures/packet/helpers.ts';

const A = { srcMac: '02:00:00:00:00:0a', dstMac: '02:00:00:00:00:0b', srcIp: '192.0.2.1', dstIp: '192.0.2.2' };

/** Valid specimens, one layer each (payload of the layer below). */
// 32 data bytes: long enough that the frame needs no Ethernet padding, so each layer is exact.
const ETH = buildIcmpEchoFrame({ ...A, echoId: 7, seq: 1, data: Buffer.from('abcdefghijklmnopqrstuvwxyz012345') });
const IP = ETH.subarray(14);
const ICMP = IP.subarray(20);
const ARP = buildArpFrame({ op: 1, senderMac: A.srcMac, senderIp: A.srcIp, targetIp: A.dstIp }).subarray(14, 42);
const UDP = buildUdpFrame({ ...A, srcPort: 1234, dstPort: 53, payload: Buffer.from('query') }).subarray(34, 34 + 13);
const VX_FRAME = buildVxlanFrame({ ...A, srcPort: 40000, vni: 1, inner: ETH });
const VXLAN = VX_FRAME.subarray(42);
const PCAP = (() => {
  const w = new PcapngWriter({ application: 'x' });
  const i = w.addInterface({ name: 'eth0' });
  return Buffer.concat([w.header(), i.block, w.packet(i.id, ETH, { timestampNs: 1n, direction: 'in', comment: 'c' })]);
})();

type Parser = (b: Buffer) => unknown;
type Layer = Exclude<WireLayer, 'tcp' | 'dns' | 'spdy' | 'proxy'>; // no TCP codec yet; DNS's, SPDY's and PROXY's cases are in their own tests
const parsers: Record<Layer, Parser> = {
  ethernet: parseEthernet,
  arp: parseArp,
  ipv4: (b) => parseIpv4(b),
  icmp: (b) => parseIcmp(b),
  udp: (b) => parseUdp(b, A.srcIp, A.dstIp),
  vxlan: parseVxlan,
  // An IPIP outer packet's payload: the inner datagram is checked as ip_rcv checks it after decap.
  ipip: (b) => decapIpip({ protocol: IPPROTO_IPIP, payload: b }),
  pcapng: readPcapng,
};

/** Copy of `b` with `mutate` applied. */
function patch(b: Buffer, mutate: (c: Buffer) => void): Buffer {
  const c = Buffer.from(b);
  mutate(c);
  return c;
}

/** Copy of an IPv4 header with a field changed and the checksum fixed, so only the intended check fails. */
function ipPatch(mutate: (c: Buffer) => void, len = IP.length): Buffer {
  return patch(IP.subarray(0, len), (c) => {
    mutate(c);
    const hlen = Math.min((c[0] & 0x0f) * 4, c.length);
    if (hlen >= 20) {
      c.writeUInt16BE(0, 10);
      c.writeUInt16BE(internetChecksum(c.subarray(0, hlen)), 10);
    }
  });
}

/** Fix an ICMP checksum after mutating. */
function icmpPatch(mutate: (c: Buffer) => void): Buffer {
  return patch(ICMP, (c) => {
    mutate(c);
    c.writeUInt16BE(0, 2);
    c.writeUInt16BE(internetChecksum(c), 2);
  });
}

interface Case {
  name: string;
  layer: Layer;
  input: Buffer;
  reason: WireReason;
}

const cases: Case[] = [];
const truncations = (layer: Layer, valid: Buffer, upTo: number, reason: WireReason = 'truncated'): void => {
  for (let n = 0; n < upTo; n++) cases.push({ name: `${layer} truncated to ${n} bytes`, layer, input: valid.subarray(0, n), reason });
};

// Ethernet
truncations('ethernet', ETH, 14);
cases.push({ name: 'ethernet 802.3 length field (LLC)', layer: 'ethernet', input: patch(ETH, (c) => c.writeUInt16BE(0x05dc, 12)), reason: 'unsupported' });

// ARP
truncations('arp', ARP, 28);
cases.push(
  { name: 'arp htype 6 (IEEE 802)', layer: 'arp', input: patch(ARP, (c) => c.writeUInt16BE(6, 0)), reason: 'unsupported' },
  { name: 'arp ptype IPv6', layer: 'arp', input: patch(ARP, (c) => c.writeUInt16BE(0x86dd, 2)), reason: 'unsupported' },
  { name: 'arp hlen 8', layer: 'arp', input: patch(ARP, (c) => (c[4] = 8)), reason: 'unsupported' },
  { name: 'arp plen 16', layer: 'arp', input: patch(ARP, (c) => (c[5] = 16)), reason: 'unsupported' },
  { name: 'arp opcode 3 (RARP request)', layer: 'arp', input: patch(ARP, (c) => c.writeUInt16BE(3, 6)), reason: 'unsupported' },
  { name: 'arp opcode 0', layer: 'arp', input: patch(ARP, (c) => c.writeUInt16BE(0, 6)), reason: 'unsupported' },
);

// IPv4
truncations('ipv4', IP, 20);
for (const v of [0, 6, 15]) {
  cases.push({ name: `ipv4 version ${v}`, layer: 'ipv4', input: ipPatch((c) => (c[0] = (v << 4) | 5)), reason: 'bad-version' });
}
for (const ihl of [0, 1, 4]) {
  cases.push({ name: `ipv4 IHL ${ihl}`, layer: 'ipv4', input: ipPatch((c) => (c[0] = 0x40 | ihl)), reason: 'bad-ihl' });
}
cases.push(
  // IHL 15 = 60 header bytes, but the buffer is shorter.
  { name: 'ipv4 IHL 15 beyond a 40-byte buffer', layer: 'ipv4', input: patch(IP.subarray(0, 40), (c) => (c[0] = 0x4f)), reason: 'truncated' },
  { name: 'ipv4 IHL 6 with only 21 bytes', layer: 'ipv4', input: patch(IP.subarray(0, 21), (c) => (c[0] = 0x46)), reason: 'truncated' },
  { name: 'ipv4 total length 19 (< header)', layer: 'ipv4', input: ipPatch((c) => c.writeUInt16BE(19, 2)), reason: 'bad-length' },
  { name: 'ipv4 total length 0', layer: 'ipv4', input: ipPatch((c) => c.writeUInt16BE(0, 2)), reason: 'bad-length' },
  { name: 'ipv4 total length 23 < IHL 6 header', layer: 'ipv4', input: ipPatch((c) => { c[0] = 0x46; c.writeUInt16BE(23, 2); }), reason: 'bad-length' },
  { name: 'ipv4 total length one past the buffer', layer: 'ipv4', input: ipPatch((c) => c.writeUInt16BE(IP.length + 1, 2)), reason: 'truncated' },
  { name: 'ipv4 total length 65535, short buffer', layer: 'ipv4', input: ipPatch((c) => c.writeUInt16BE(0xffff, 2)), reason: 'truncated' },
  { name: 'ipv4 payload cut short (buffer < total length)', layer: 'ipv4', input: IP.subarray(0, IP.length - 1), reason: 'truncated' },
  { name: 'ipv4 bad header checksum', layer: 'ipv4', input: patch(IP, (c) => (c[10] ^= 0x01)), reason: 'bad-checksum' },
  { name: 'ipv4 TTL changed without checksum update', layer: 'ipv4', input: patch(IP, (c) => (c[8] -= 1)), reason: 'bad-checksum' },
  { name: 'ipv4 zero checksum field', layer: 'ipv4', input: patch(IP, (c) => c.writeUInt16BE(0, 10)), reason: 'bad-checksum' },
);

// ICMP
truncations('icmp', ICMP, 8);
cases.push(
  { name: 'icmp bad checksum', layer: 'icmp', input: patch(ICMP, (c) => (c[2] ^= 0x80)), reason: 'bad-checksum' },
  { name: 'icmp data changed without checksum update', layer: 'icmp', input: patch(ICMP, (c) => (c[c.length - 1] ^= 1)), reason: 'bad-checksum' },
  { name: 'icmp zero checksum', layer: 'icmp', input: patch(ICMP, (c) => c.writeUInt16BE(0, 2)), reason: 'bad-checksum' },
);

// UDP
truncations('udp', UDP, 8);
cases.push(
  { name: 'udp length 7 (< header)', layer: 'udp', input: patch(UDP, (c) => c.writeUInt16BE(7, 4)), reason: 'bad-length' },
  { name: 'udp length 0', layer: 'udp', input: patch(UDP, (c) => c.writeUInt16BE(0, 4)), reason: 'bad-length' },
  { name: 'udp length one past the buffer', layer: 'udp', input: patch(UDP, (c) => c.writeUInt16BE(UDP.length + 1, 4)), reason: 'truncated' },
  { name: 'udp payload cut short', layer: 'udp', input: UDP.subarray(0, UDP.length - 1), reason: 'truncated' },
  { name: 'udp bad checksum', layer: 'udp', input: patch(UDP, (c) => (c[6] ^= 0x10)), reason: 'bad-checksum' },
  { name: 'udp payload changed without checksum update', layer: 'udp', input: patch(UDP, (c) => (c[8] ^= 0x01)), reason: 'bad-checksum' },
);

// VXLAN
truncations('vxlan', VXLAN, 8);
for (const f of [0x00, 0x88, 0x0c, 0x09, 0xff, 0x80]) {
  cases.push({ name: `vxlan flags 0x${f.toString(16).padStart(2, '0')}`, layer: 'vxlan', input: patch(VXLAN, (c) => (c[0] = f)), reason: 'bad-flags' });
}
for (const i of [1, 2, 3, 7]) {
  cases.push({ name: `vxlan reserved byte ${i} set`, layer: 'vxlan', input: patch(VXLAN, (c) => (c[i] = 0x01)), reason: 'reserved-bits' });
}

// IPIP (the inner datagram of a protocol-4 packet)
truncations('ipip', IP, 20);
cases.push(
  { name: 'ipip inner version 6', layer: 'ipip', input: ipPatch((c) => (c[0] = 0x65)), reason: 'bad-version' },
  { name: 'ipip inner bad checksum', layer: 'ipip', input: patch(IP, (c) => (c[10] ^= 0x01)), reason: 'bad-checksum' },
  { name: 'ipip inner total length past the outer payload', layer: 'ipip', input: ipPatch((c) => c.writeUInt16BE(IP.length + 1, 2)), reason: 'truncated' },
);

// pcapng
cases.push(
  { name: 'pcapng empty', layer: 'pcapng', input: Buffer.alloc(0), reason: 'truncated' },
  { name: 'pcapng cut inside the first block header', layer: 'pcapng', input: PCAP.subarray(0, 11), reason: 'truncated' },
  { name: 'pcapng cut inside the last block', layer: 'pcapng', input: PCAP.subarray(0, PCAP.length - 4), reason: 'truncated' },
  { name: 'pcapng bad byte-order magic', layer: 'pcapng', input: patch(PCAP, (c) => c.writeUInt32LE(0xdeadbeef, 8)), reason: 'bad-value' },
  { name: 'pcapng not starting with an SHB', layer: 'pcapng', input: PCAP.subarray(PCAP.readUInt32LE(4)), reason: 'bad-value' },
  { name: 'pcapng SHB length not a multiple of 4', layer: 'pcapng', input: patch(PCAP, (c) => c.writeUInt32LE(29, 4)), reason: 'bad-length' },
  { name: 'pcapng trailing length mismatch', layer: 'pcapng', input: patch(PCAP, (c) => c.writeUInt32LE(8, c.length - 4)), reason: 'bad-length' },
  { name: 'pcapng packet on an undeclared interface', layer: 'pcapng', input: patch(PCAP, (c) => c.writeUInt32LE(3, PCAP.length - c.readUInt32LE(c.length - 4) + 8)), reason: 'bad-value' },
  { name: 'pcapng pcapng major version 2', layer: 'pcapng', input: patch(PCAP, (c) => c.writeUInt16LE(2, 12)), reason: 'unsupported' },
);

for (const c of cases) {
  test(`malformed: ${c.name} -> ${c.layer}/${c.reason}`, (t) => {
    let r: unknown;
    t.notThrows(() => {
      r = parsers[c.layer](c.input);
    });
    if (!(r instanceof WireError)) return t.fail(`expected WireError, got ${JSON.stringify(r)}`);
    t.true(isWireError(r));
    t.is(r.name, 'WireError');
    t.is(r.layer, c.layer);
    t.is(r.reason, c.reason, r.message);
    t.true(r.message.length > 0);
  });
}

test('malformed: the specimens themselves are valid (sanity)', (t) => {
  for (const [layer, valid] of [['ethernet', ETH], ['arp', ARP], ['ipv4', IP], ['icmp', ICMP], ['udp', UDP], ['vxlan', VXLAN], ['ipip', IP], ['pcapng', PCAP]] as const) {
    t.false(isWireError(parsers[layer](valid)), layer);
  }
});

test('malformed: checksum verification can be turned off', (t) => {
  t.false(isWireError(parseIpv4(patch(IP, (c) => (c[10] ^= 1)), { verifyChecksum: false })));
  t.false(isWireError(parseIcmp(patch(ICMP, (c) => (c[2] ^= 1)), { verifyChecksum: false })));
  t.false(isWireError(parseUdp(patch(UDP, (c) => (c[6] ^= 1)), A.srcIp, A.dstIp, { verifyChecksum: false })));
});

test('malformed: accepted oddities (what Linux accepts too)', (t) => {
  // Reserved IPv4 flag bit: ignored (Linux does not check it), written back as 0.
  const evil = ipPatch((c) => (c[6] |= 0x80));
  const r = parseIpv4(evil);
  if (isWireError(r)) return t.fail(r.message);
  t.is(serializeIpv4(r)[6] & 0x80, 0);
  // Trailing bytes after IPv4 total length / UDP length: ignored.
  t.false(isWireError(parseIpv4(Buffer.concat([IP, Buffer.alloc(10)]))));
  t.false(isWireError(parseUdp(Buffer.concat([UDP, hex`ff ff`]), A.srcIp, A.dstIp)));
  // ICMP unused bytes in an error message are ignored (RFC 1122 §3.2.2).
  const unreach = serializeIcmp({ kind: 'dest-unreachable', code: 3, original: icmpErrorQuote(IP) });
  unreach[5] = 0x11;
  unreach.writeUInt16BE(0, 2);
  unreach.writeUInt16BE(internetChecksum(unreach), 2);
  t.like(parseIcmp(unreach), { kind: 'dest-unreachable', code: 3 });
  // ICMP with checksum fixed up after a type change.
  t.like(parseIcmp(icmpPatch((c) => (c[0] = 0))), { kind: 'echo-reply', id: 7, seq: 1 });
});

// ---------------------------------------------------------------------------
// Seeded fuzz
// ---------------------------------------------------------------------------

interface FuzzTarget {
  layer: Layer;
  valid: Buffer;
  parse: (b: Buffer) => unknown;
  /** Re-serialize a successful parse; must parse back to the same Repr. */
  reserialize?: (r: never) => Buffer;
}

const targets: FuzzTarget[] = [
  { layer: 'ethernet', valid: ETH, parse: parseEthernet, reserialize: serializeEthernet },
  { layer: 'arp', valid: ARP, parse: parseArp, reserialize: serializeArp },
  { layer: 'ipv4', valid: IP, parse: (b) => parseIpv4(b), reserialize: serializeIpv4 },
  // Unverified checksums let bit flips reach the type-specific decoding.
  { layer: 'icmp', valid: ICMP, parse: (b) => parseIcmp(b, { verifyChecksum: false }), reserialize: serializeIcmp },
  {
    layer: 'udp',
    valid: UDP,
    parse: (b) => parseUdp(b, A.srcIp, A.dstIp, { verifyChecksum: false }),
    reserialize: ((r: Parameters<typeof serializeUdp>[0]) => serializeUdp(r, A.srcIp, A.dstIp)),
  },
  { layer: 'vxlan', valid: VXLAN, parse: parseVxlan, reserialize: serializeVxlan },
  { layer: 'pcapng', valid: PCAP, parse: readPcapng },
];

const RANDOM_BUFFERS = 3000;
const BIT_FLIPS = 3000;

for (const target of targets) {
  test(`fuzz: ${target.layer} never throws (seeded)`, (t) => {
    const seed = 0x5eed0000 + target.layer.length * 7919 + target.valid.length;
    const rnd = xorshift32(seed);
    let accepted = 0;
    let rejected = 0;
    const check = (input: Buffer, what: string): void => {
      let r: unknown;
      try {
        r = target.parse(input);
      } catch (e) {
        t.fail(`${what} (seed ${seed}) threw ${String(e)} on ${input.toString('hex')}`);
        return;
      }
      if (isWireError(r)) {
        rejected++;
        if (r.layer !== target.layer) t.fail(`${what}: WireError from layer ${r.layer}`);
        return;
      }
      accepted++;
      if (target.reserialize) {
        // Parsing is lossless up to documented normalisations, so parse . serialize . parse == parse.
        let again: unknown;
        try {
          again = target.parse(target.reserialize(r as never));
        } catch (e) {
          t.fail(`${what}: re-serialize threw ${String(e)} on ${input.toString('hex')}`);
          return;
        }
        if (target.layer === 'ethernet') {
          // serializeEthernet pads to 60 bytes, which lands in the payload of short frames.
          const a = r as { payload: Buffer };
          const b = again as { payload: Buffer };
          t.deepEqual({ ...b, payload: b.payload.subarray(0, a.payload.length) }, a, what);
        } else {
          t.deepEqual(again, r, what);
        }
      }
    };
    for (let i = 0; i < RANDOM_BUFFERS; i++) {
      const len = rnd() % (i % 4 === 0 ? 16 : 128);
      const b = Buffer.allocUnsafe(len);
      for (let k = 0; k < len; k++) b[k] = rnd() & 0xff;
      // Give a quarter of them a plausible first byte so deeper checks run.
      if (len > 0 && i % 4 === 1) b[0] = target.valid[0];
      check(b, `random #${i}`);
    }
    for (let i = 0; i < BIT_FLIPS; i++) {
      const b = Buffer.from(target.valid);
      const flips = 1 + (rnd() % 3);
      for (let f = 0; f < flips; f++) {
        const bit = rnd() % (b.length * 8);
        b[bit >> 3] ^= 1 << (bit & 7);
      }
      const cut = i % 5 === 0 ? rnd() % (b.length + 1) : b.length;
      check(b.subarray(0, cut), `bit-flip #${i}`);
    }
    t.true(rejected > 0, 'some inputs rejected');
    t.log(`${target.layer}: ${accepted} accepted, ${rejected} rejected (seed 0x${seed.toString(16)})`);
  });
}

test('fuzz: serializers reject garbage Reprs with RangeError, not silently', (t) => {
  t.throws(() => serializeEthernet({ dst: 'nope', src: A.srcMac, etherType: 0x0800, payload: Buffer.alloc(0) }), { instanceOf: RangeError });
  t.throws(() => serializeEthernet({ dst: A.dstMac, src: A.srcMac, etherType: 0x05dc, payload: Buffer.alloc(0) }), { instanceOf: RangeError });
  t.throws(() => serializeArp({ op: 3 as 1, senderMac: A.srcMac, senderIp: A.srcIp, targetMac: A.dstMac, targetIp: A.dstIp }), { instanceOf: RangeError });
  t.throws(() => serializeUdp({ srcPort: 70000, dstPort: 1, payload: Buffer.alloc(0) }, A.srcIp, A.dstIp), { instanceOf: RangeError });
  t.throws(() => serializeUdp({ srcPort: 1, dstPort: 1, payload: Buffer.alloc(0) }, 'x', A.dstIp, { checksum: false }), { instanceOf: RangeError });
  t.throws(() => serializeIcmp({ kind: 'echo-request', id: -1, seq: 0, data: Buffer.alloc(0) }), { instanceOf: RangeError });
  t.throws(() => serializeIcmp({ kind: 'dest-unreachable', code: 4, nextHopMtu: 70000, original: Buffer.alloc(0) }), { instanceOf: RangeError });
});
