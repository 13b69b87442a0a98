/**
 * Golden-bytes tests for every codec in packet/, four ways each:
 *  - deconstruct: parse known bytes and check every field (incl. derived ones
 *    such as lengths and checksums, read at their RFC offsets);
 *  - construct: serialize a Repr and compare with the known bytes;
 *  - parse: the whole Repr equals the expected one;
 *  - round-trip: serialize(parse(bytes)) == bytes and parse(serialize(repr)) == repr.
 *
 * Unless noted, the bytes are real frames sent by Linux 6.x (ping, bash
 * /dev/udp, the vxlan driver with VNI 1 on port 8472) and captured with
 * dumpcap; see test/fixtures/packet/README.md. Their checksums were computed
 * by the kernel, so they are independent known-good values.
 */
import test from 'ava';
import {
  ARP_REPLY,
  ARP_REQUEST,
  BROADCAST_MAC,
  ETHERNET_HEADER_LEN,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  ICMP_TIMXCEED_INTRANS,
  ICMP_UNREACH_NEEDFRAG,
  ICMP_UNREACH_PORT,
  IPPROTO_ICMP,
  IPPROTO_UDP,
  IPV4_HEADER_LEN,
  LINKTYPE_ETHERNET,
  PcapngWriter,
  UDP_HEADER_LEN,
  VXLAN_HEADER_LEN,
  VXLAN_PORT_LINUX,
  buildArpFrame,
  buildIcmpEchoFrame,
  buildUdpFrame,
  buildVxlanFrame,
  checksumAdjust,
  checksumAdjust32,
  decrementTtlInPlace,
  foldChecksum,
  onesComplementSum,
  icmpErrorQuote,
  internetChecksum,
  internetChecksumSeeded,
  intToIpv4,
  ipv4HeaderLen,
  ipv4ToInt,
  isValidIpv4,
  isValidMac,
  isWireError,
  macToBuffer,
  parseArp,
  parseEthernet,
  parseIcmp,
  parseIpv4,
  parseUdp,
  parseVxlan,
  pseudoHeaderSum,
  readIpv4,
  readIpv4Dst,
  readIpv4DstInt,
  readIpv4Src,
  readMac,
  readPcapng,
  serializeArp,
  serializeEthernet,
  serializeIcmp,
  serializeIpv4,
  serializeUdp,
  serializeVxlan,
  writeIpv4,
  writeMac,
  WireError,
  type ArpRepr,
  type EthernetRepr,
  type IcmpRepr,
  type Ipv4Repr,
  type UdpRepr,
  type VxlanRepr,
} from '../packet/index.ts';
import { fixture, hex, ramp, xorshift32 } from './fixtures/packet/helpers.ts';

/** Narrow a parse result, failing the test with the WireError's message otherwise. */
function ok<T>(r: T | WireError): T {
  if (isWireError(r)) throw new Error(`unexpected WireError ${r.layer}/${r.reason}: ${r.message}`);
  return r;
}

const MAC_A = '02:00:00:00:00:0a';
const MAC_B = '02:00:00:00:00:0b';
const IP_A = '192.0.2.1';
const IP_B = '192.0.2.2';

/** Linux ping's 56-byte payload: struct timeval (16 bytes, little-endian) then 0x10, 0x11, ... */
const pingData = (tv: Buffer): Buffer => Buffer.concat([tv, ramp(0x10, 40)]);

// ---------------------------------------------------------------------------
// Golden frames
// ---------------------------------------------------------------------------

/** `ping 192.0.2.2` from 192.0.2.1 with an empty neighbour cache: the ARP request (42 bytes, unpadded on the sender's veth). */
const ARP_REQUEST_FRAME = hex`
  ff ff ff ff ff ff   # eth.dst = broadcast
  02 00 00 00 00 0a   # eth.src
  08 06               # eth.type = ARP
  00 01               # arp.hw.type = Ethernet (1)
  08 00               # arp.proto.type = IPv4
  06                  # arp.hw.size = 6
  04                  # arp.proto.size = 4
  00 01               # arp.opcode = request (1)
  02 00 00 00 00 0a   # arp.src.hw_mac
  c0 00 02 01         # arp.src.proto_ipv4 = 192.0.2.1
  00 00 00 00 00 00   # arp.dst.hw_mac = unknown
  c0 00 02 02         # arp.dst.proto_ipv4 = 192.0.2.2
`;

/** ... and 192.0.2.2's reply. */
const ARP_REPLY_FRAME = hex`
  02 00 00 00 00 0a   # eth.dst
  02 00 00 00 00 0b   # eth.src
  08 06               # eth.type = ARP
  00 01 08 00 06 04   # Ethernet / IPv4 / 6 / 4
  00 02               # arp.opcode = reply (2)
  02 00 00 00 00 0b   # arp.src.hw_mac
  c0 00 02 02         # arp.src.proto_ipv4 = 192.0.2.2
  02 00 00 00 00 0a   # arp.dst.hw_mac
  c0 00 02 01         # arp.dst.proto_ipv4 = 192.0.2.1
`;

/** Linux `ping -c1 192.0.2.2`: Ethernet / IPv4 / ICMP echo request, 98 bytes. */
const ECHO_TV = hex`ec c7 06 6b 00 00 00 00  c1 26 0d 00 00 00 00 00`;
const ECHO_REQUEST_FRAME = hex`
  02 00 00 00 00 0b   # eth.dst
  02 00 00 00 00 0a   # eth.src
  08 00               # eth.type = IPv4
  45                  # ip.version = 4, ip.hdr_len = 5 words
  00                  # ip.dsfield: DSCP 0, ECN 0
  00 54               # ip.len = 84
  05 e4               # ip.id = 0x05e4
  40 00               # ip.flags = DF, ip.frag_offset = 0
  40                  # ip.ttl = 64
  01                  # ip.proto = ICMP
  b0 c1               # ip.checksum (good)
  c0 00 02 01         # ip.src = 192.0.2.1
  c0 00 02 02         # ip.dst = 192.0.2.2
  08                  # icmp.type = 8 (echo request)
  00                  # icmp.code = 0
  68 e5               # icmp.checksum (good)
  0e ed               # icmp.ident = 0x0eed
  00 01               # icmp.seq = 1
  ec c7 06 6b 00 00 00 00   # data: tv_sec (ping's struct timeval, host order)
  c1 26 0d 00 00 00 00 00   # data: tv_usec
  10 11 12 13 14 15 16 17 18 19 1a 1b 1c 1d 1e 1f   # data: ping's pattern
  20 21 22 23 24 25 26 27 28 29 2a 2b 2c 2d 2e 2f
  30 31 32 33 34 35 36 37
`;

/** The kernel's echo reply to it (note: DF clear, fresh IP id, data echoed). */
const ECHO_REPLY_FRAME = hex`
  02 00 00 00 00 0a  02 00 00 00 00 0b  08 00   # eth: dst, src, IPv4
  45 00 00 54         # IPv4, IHL 5, DSCP 0, len 84
  58 da 00 00         # ip.id = 0x58da, no flags, offset 0
  40 01 9d cb         # ttl 64, ICMP, checksum 0x9dcb
  c0 00 02 02         # ip.src = 192.0.2.2
  c0 00 02 01         # ip.dst = 192.0.2.1
  00 00 70 e5         # icmp echo reply, code 0, checksum 0x70e5
  0e ed 00 01         # ident 0x0eed, seq 1
  ec c7 06 6b 00 00 00 00  c1 26 0d 00 00 00 00 00
  10 11 12 13 14 15 16 17 18 19 1a 1b 1c 1d 1e 1f
  20 21 22 23 24 25 26 27 28 29 2a 2b 2c 2d 2e 2f
  30 31 32 33 34 35 36 37
`;

/** bash `echo -n hello > /dev/udp/192.0.2.2/9999`: Ethernet / IPv4 / UDP, 47 bytes (unpadded on the sender). */
const UDP_FRAME = hex`
  02 00 00 00 00 0b  02 00 00 00 00 0a  08 00   # eth: dst, src, IPv4
  45 00               # IPv4, IHL 5, DSCP 0 ECN 0
  00 21               # ip.len = 33
  93 60               # ip.id = 0x9360
  40 00               # DF
  40 11               # ttl 64, proto UDP (17)
  23 68               # ip.checksum
  c0 00 02 01         # ip.src = 192.0.2.1
  c0 00 02 02         # ip.dst = 192.0.2.2
  99 5d               # udp.srcport = 39261
  27 0f               # udp.dstport = 9999
  00 0d               # udp.length = 13
  77 91               # udp.checksum (computed by the kernel, TX offload off)
  68 65 6c 6c 6f      # "hello"
`;

/**
 * The kernel's port unreachable for it. ICMP errors go out with TOS 0xc0
 * (precedence "internetwork control", DSCP CS6) and quote the whole datagram.
 */
const PORT_UNREACH_FRAME = hex`
  02 00 00 00 00 0a  02 00 00 00 00 0b  08 00   # eth: dst, src, IPv4
  45 c0               # IPv4, IHL 5, DSCP 48 (CS6), ECN 0
  00 3d               # ip.len = 61
  44 02               # ip.id
  00 00               # no flags
  40 01               # ttl 64, ICMP
  b1 fa               # ip.checksum
  c0 00 02 02         # ip.src = 192.0.2.2
  c0 00 02 01         # ip.dst = 192.0.2.1
  03 03               # icmp.type = 3 (dest unreachable), code = 3 (port)
  81 1f               # icmp.checksum
  00 00 00 00         # unused
  45 00 00 21 93 60 40 00 40 11 23 68 c0 00 02 01 c0 00 02 02   # quoted IPv4 header
  99 5d 27 0f 00 0d 77 91                                       # quoted UDP header
  68 65 6c 6c 6f                                                # quoted "hello"
`;

/** `ping -t 1 198.51.100.1` through 192.0.2.2 (forwarding): ICMP time exceeded in transit. */
const TIME_EXCEEDED_FRAME = hex`
  02 00 00 00 00 0a  02 00 00 00 00 0b  08 00   # eth: dst, src, IPv4
  45 c0 00 70         # IPv4, IHL 5, DSCP CS6, len 112
  54 8d 00 00         # ip.id = 0x548d, no flags
  40 01 a1 3c         # ttl 64, ICMP, checksum 0xa13c
  c0 00 02 02         # ip.src = 192.0.2.2
  c0 00 02 01         # ip.dst = 192.0.2.1
  0b 00               # icmp.type = 11 (time exceeded), code 0 (in transit)
  f4 ff               # icmp.checksum
  00 00 00 00         # unused
  45 00 00 54 b1 2e 40 00   # quoted IPv4: len 84, id 0xb12e, DF
  01 01 dc 44               #   ttl 1 (as received: Linux quotes before decrementing), ICMP
  c0 00 02 01 c6 33 64 01   #   192.0.2.1 -> 198.51.100.1
  08 00 a8 2e 0e d2 00 01   # quoted ICMP echo request, ident 0x0ed2, seq 1
  e0 c7 06 6b 00 00 00 00  92 f8 08 00 00 00 00 00
  10 11 12 13 14 15 16 17 18 19 1a 1b 1c 1d 1e 1f
  20 21 22 23 24 25 26 27 28 29 2a 2b 2c 2d 2e 2f
  30 31 32 33 34 35 36 37
`;

/**
 * Linux vxlan (id 1, dstport 8472, udpcsum) carrying a pod-to-pod ping
 * 10.244.1.0 -> 10.244.2.0: Ethernet / IPv4 / UDP / VXLAN / Ethernet / IPv4 / ICMP, 148 bytes.
 */
const VXLAN_FRAME = hex`
  02 00 00 00 00 0b  02 00 00 00 00 0a  08 00   # outer eth: dst, src, IPv4
  45 00 00 86         # outer IPv4, len 134
  96 31 00 00         # ip.id = 0x9631, DF clear (vxlan default "df unset")
  40 11 60 32         # ttl 64, UDP, checksum 0x6032
  c0 00 02 01         # 192.0.2.1 (VTEP)
  c0 00 02 02         # 192.0.2.2 (VTEP)
  91 e3               # udp.srcport = 37347 (hash of the inner flow)
  21 18               # udp.dstport = 8472
  00 72               # udp.length = 114
  89 70               # udp.checksum
  08                  # vxlan.flags: I (VNI valid)
  00 00 00            # reserved
  00 00 01            # vxlan.vni = 1
  00                  # reserved
  0a 58 0a f4 02 01   # inner eth.dst (vx1 of the peer node)
  0a 58 0a f4 01 01   # inner eth.src
  08 00               # inner eth.type = IPv4 (no padding: inner frames are never padded)
  45 00 00 54 0f 94 40 00 40 01 12 2e   # inner IPv4: len 84, id 0x0f94, DF, ttl 64, ICMP, checksum
  0a f4 01 00         # 10.244.1.0
  0a f4 02 00         # 10.244.2.0
  08 00 da 0f 14 38 00 01   # ICMP echo request, checksum 0xda0f, ident 0x1438, seq 1
  34 c9 06 6b 00 00 00 00  01 b0 0e 00 00 00 00 00
  10 11 12 13 14 15 16 17 18 19 1a 1b 1c 1d 1e 1f
  20 21 22 23 24 25 26 27 28 29 2a 2b 2c 2d 2e 2f
  30 31 32 33 34 35 36 37
`;

/** Ethernet payload / IPv4 payload of a golden frame. */
const ipOf = (frame: Buffer): Buffer => frame.subarray(ETHERNET_HEADER_LEN);
const l4Of = (frame: Buffer): Buffer => frame.subarray(ETHERNET_HEADER_LEN + IPV4_HEADER_LEN);
/** A golden frame as our serializer emits it: zero-padded to 60 bytes. */
const padded = (frame: Buffer): Buffer => (frame.length >= 60 ? frame : Buffer.concat([frame, Buffer.alloc(60 - frame.length)]));

// ---------------------------------------------------------------------------
// addr
// ---------------------------------------------------------------------------

test('addr: MAC and IPv4 string <-> bytes', (t) => {
  const b = Buffer.alloc(10);
  writeMac(b, 2, '0A:58:0a:F4:01:01');
  t.deepEqual(b, hex`00 00 0a 58 0a f4 01 01 00 00`);
  t.is(readMac(b, 2), '0a:58:0a:f4:01:01', 'read back in canonical lower case');
  t.deepEqual(macToBuffer(BROADCAST_MAC), hex`ff ff ff ff ff ff`);
  t.true(isValidMac('aa:bb:cc:dd:ee:ff'));
  for (const bad of ['', 'aa:bb:cc:dd:ee', 'aa:bb:cc:dd:ee:fg', 'aa-bb-cc-dd-ee-ff', 'aa:bb:cc:dd:ee:ff:00', 'aabb.ccdd.eeff']) {
    t.false(isValidMac(bad), bad);
    t.throws(() => macToBuffer(bad), { instanceOf: RangeError });
  }

  t.is(ipv4ToInt('10.244.1.2'), 0x0af40102);
  t.is(ipv4ToInt('255.255.255.255'), 0xffffffff, 'unsigned, not -1');
  t.is(ipv4ToInt('0.0.0.0'), 0);
  t.is(intToIpv4(0xc0000201), '192.0.2.1');
  t.is(intToIpv4(-1), '255.255.255.255', 'signed int32 input accepted');
  writeIpv4(b, 0, '198.51.100.1');
  t.deepEqual(b.subarray(0, 4), hex`c6 33 64 01`);
  t.is(readIpv4(b, 0), '198.51.100.1');
  for (const bad of ['', '1.2.3', '1.2.3.4.5', '256.0.0.1', '01.2.3.4', '1.2.3.4 ', ' 1.2.3.4', '1..3.4', 'a.b.c.d', '1.2.3.-4', '1234.1.1.1']) {
    t.false(isValidIpv4(bad), bad);
    t.throws(() => ipv4ToInt(bad), { instanceOf: RangeError });
  }
  t.true(isValidIpv4('10.0.0.0'));
});

// ---------------------------------------------------------------------------
// checksum
// ---------------------------------------------------------------------------

test('checksum: RFC 1071 §3 numerical example', (t) => {
  // Bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2 in one's complement; the checksum is ~0xddf2.
  t.is(internetChecksum(hex`00 01 f2 03 f4 f5 f6 f7`), 0x220d);
  t.is(internetChecksum(hex`00 01 f2 03 f4 f5 f6 f7 22 0d`), 0, 'data + checksum verifies to 0');
  t.is(internetChecksum(Buffer.alloc(0)), 0xffff);
});

test('checksum: the classic IPv4 header example (checksum 0xb861)', (t) => {
  // 192.168.0.1 -> 192.168.0.199, UDP, TTL 64, DF, total length 115.
  const hdr = hex`45 00 00 73 00 00 40 00 40 11 00 00 c0 a8 00 01 c0 a8 00 c7`;
  t.is(internetChecksum(hdr), 0xb861);
  hdr.writeUInt16BE(0xb861, 10);
  t.is(internetChecksum(hdr), 0);
});

test('checksum: odd lengths split across buffers equal the concatenation', (t) => {
  const rnd = xorshift32(1071);
  for (let iter = 0; iter < 500; iter++) {
    const whole = Buffer.from(Array.from({ length: rnd() % 64 }, () => rnd() & 0xff));
    const parts: Buffer[] = [];
    let at = 0;
    while (at < whole.length) {
      const n = Math.min(whole.length - at, rnd() % 6); // includes empty and 1-byte parts
      parts.push(whole.subarray(at, at + n));
      at += n;
    }
    t.is(internetChecksum(...parts), internetChecksum(whole), `iteration ${iter}`);
  }
  t.is(internetChecksum(hex`01`, hex`02`), internetChecksum(hex`01 02`));
  t.is(internetChecksum(hex`01`, Buffer.alloc(0), hex`02 03`), internetChecksum(hex`01 02 03`));
});

test('checksum: onesComplementSum (32-bit fast path) equals a naive 16-bit reference at any offset', (t) => {
  const naive = (b: Buffer, start: number, end: number): number => {
    let s = 0;
    for (let i = start; i < end; i += 2) s += (b[i] << 8) | (i + 1 < end ? b[i + 1] : 0);
    return s;
  };
  const rnd = xorshift32(4);
  const big = Buffer.from(Array.from({ length: 2048 }, () => rnd() & 0xff));
  for (let i = 0; i < 400; i++) {
    const start = rnd() % 1024;
    const end = start + (rnd() % 1024);
    t.is(foldChecksum(onesComplementSum(big, start, end)), foldChecksum(naive(big, start, end)), `[${start}, ${end})`);
  }
  t.is(onesComplementSum(big, 10, 10, 1234), 1234, 'empty range returns the seed');
});

test('checksum: pseudo-header sum matches an explicit pseudo-header', (t) => {
  const explicit = hex`c0 00 02 01  c0 00 02 02  00 11 00 0d`;
  const udp = l4Of(UDP_FRAME);
  t.is(internetChecksumSeeded(pseudoHeaderSum(IP_A, IP_B, IPPROTO_UDP, 13), udp), 0, 'kernel UDP checksum verifies');
  t.is(internetChecksumSeeded(pseudoHeaderSum(0xc0000201, 0xc0000202, 17, 13), udp), internetChecksum(explicit, udp));
});

test('checksum: RFC 1624 incremental update', (t) => {
  // RFC 1624 §4: HC = 0xdd2f, m = 0x5555 -> m' = 0x3285; eqn. 3 gives 0x0000 (eqn. 2 would give 0xffff).
  t.is(checksumAdjust(0xdd2f, 0x5555, 0x3285), 0x0000);
  // Rewriting an address (NAT) matches a full recomputation of the golden IPv4 header.
  const hdr = Buffer.from(ipOf(ECHO_REQUEST_FRAME).subarray(0, 20));
  const old = hdr.readUInt32BE(12);
  const neu = ipv4ToInt('10.244.7.9');
  const adjusted = checksumAdjust32(hdr.readUInt16BE(10), old, neu);
  hdr.writeUInt32BE(neu, 12);
  hdr.writeUInt16BE(0, 10);
  t.is(adjusted, internetChecksum(hdr));
  // Random words: eqn. 3 always agrees with recomputation.
  const rnd = xorshift32(1624);
  for (let i = 0; i < 2000; i++) {
    const words = Buffer.from(Array.from({ length: 20 }, () => rnd() & 0xff));
    words[0] |= 0x40; // never all-zero, like any real header
    words.writeUInt16BE(0, 10);
    const hc = internetChecksum(words);
    const k = 2 * (rnd() % 10);
    if (k === 10) continue;
    const m = words.readUInt16BE(k);
    const m2 = rnd() & 0xffff;
    words.writeUInt16BE(m2, k);
    t.is(checksumAdjust(hc, m, m2), internetChecksum(words));
  }
});

// ---------------------------------------------------------------------------
// Ethernet
// ---------------------------------------------------------------------------

test('ethernet: deconstruct / construct / parse / round-trip', (t) => {
  const eth = ok(parseEthernet(ECHO_REQUEST_FRAME));
  t.is(eth.dst, MAC_B);
  t.is(eth.src, MAC_A);
  t.is(eth.etherType, ETHERTYPE_IPV4);
  t.is(eth.payload.length, 84);
  t.is(eth.payload.buffer, ECHO_REQUEST_FRAME.buffer, 'payload is a view, not a copy');

  const repr: EthernetRepr = { dst: MAC_B, src: MAC_A, etherType: ETHERTYPE_IPV4, payload: ipOf(ECHO_REQUEST_FRAME) };
  t.deepEqual(serializeEthernet(repr), ECHO_REQUEST_FRAME);
  t.deepEqual(eth, repr);
  t.deepEqual(serializeEthernet(eth), ECHO_REQUEST_FRAME);
  t.deepEqual(ok(parseEthernet(serializeEthernet(repr))), repr);
});

test('ethernet: short frames are zero-padded to 60 bytes like a NIC, unless pad: false', (t) => {
  const repr = ok(parseEthernet(ARP_REQUEST_FRAME));
  const out = serializeEthernet(repr);
  t.is(out.length, 60);
  t.deepEqual(out, padded(ARP_REQUEST_FRAME));
  t.deepEqual(serializeEthernet(repr, { pad: false }), ARP_REQUEST_FRAME);
  // Parsing a padded frame keeps the padding in the payload; ARP/IPv4 ignore it.
  t.is(ok(parseEthernet(out)).payload.length, 46);
});

// ---------------------------------------------------------------------------
// ARP
// ---------------------------------------------------------------------------

const ARP_REQ: ArpRepr = { op: ARP_REQUEST, senderMac: MAC_A, senderIp: IP_A, targetMac: '00:00:00:00:00:00', targetIp: IP_B };
const ARP_REP: ArpRepr = { op: ARP_REPLY, senderMac: MAC_B, senderIp: IP_B, targetMac: MAC_A, targetIp: IP_A };

test('arp: deconstruct / construct / parse / round-trip (request and reply)', (t) => {
  const reqBytes = ok(parseEthernet(ARP_REQUEST_FRAME)).payload;
  t.is(reqBytes.length, 28);
  const req = ok(parseArp(reqBytes));
  t.is(req.op, ARP_REQUEST);
  t.is(req.senderMac, MAC_A);
  t.is(req.senderIp, IP_A);
  t.is(req.targetMac, '00:00:00:00:00:00');
  t.is(req.targetIp, IP_B);
  t.deepEqual(req, ARP_REQ);
  t.deepEqual(serializeArp(ARP_REQ), reqBytes);

  const repBytes = ok(parseEthernet(ARP_REPLY_FRAME)).payload;
  const rep = ok(parseArp(repBytes));
  t.deepEqual(rep, ARP_REP);
  t.deepEqual(serializeArp(rep), repBytes);
  t.deepEqual(ok(parseArp(serializeArp(ARP_REP))), ARP_REP);

  // Padded (60-byte) frames parse the same: ARP has no length field.
  t.deepEqual(ok(parseArp(ok(parseEthernet(padded(ARP_REPLY_FRAME))).payload)), ARP_REP);
});

test('frame builders: ARP request/reply frames match Linux (plus NIC padding)', (t) => {
  t.deepEqual(buildArpFrame({ op: ARP_REQUEST, senderMac: MAC_A, senderIp: IP_A, targetIp: IP_B }), padded(ARP_REQUEST_FRAME));
  t.deepEqual(
    buildArpFrame({ op: ARP_REPLY, senderMac: MAC_B, senderIp: IP_B, targetMac: MAC_A, targetIp: IP_A }),
    padded(ARP_REPLY_FRAME),
  );
  t.is(ok(parseEthernet(buildArpFrame({ op: 1, senderMac: MAC_A, senderIp: IP_A, targetIp: IP_B }))).etherType, ETHERTYPE_ARP);
});

// ---------------------------------------------------------------------------
// IPv4
// ---------------------------------------------------------------------------

const ECHO_REQ_IP: Ipv4Repr = {
  src: IP_A,
  dst: IP_B,
  protocol: IPPROTO_ICMP,
  ttl: 64,
  id: 0x05e4,
  dontFragment: true,
  moreFragments: false,
  fragmentOffset: 0,
  dscp: 0,
  ecn: 0,
  payload: l4Of(ECHO_REQUEST_FRAME),
};

test('ipv4: deconstruct / construct / parse / round-trip', (t) => {
  const bytes = ipOf(ECHO_REQUEST_FRAME);
  const ip = ok(parseIpv4(bytes));
  t.is(bytes[0] >> 4, 4, 'version');
  t.is(ipv4HeaderLen(bytes), 20);
  t.is(bytes.readUInt16BE(2), 84, 'total length');
  t.is(bytes.readUInt16BE(10), 0xb0c1, 'header checksum as sent by Linux');
  t.is(ip.src, IP_A);
  t.is(ip.dst, IP_B);
  t.is(ip.protocol, IPPROTO_ICMP);
  t.is(ip.ttl, 64);
  t.is(ip.id, 0x05e4);
  t.true(ip.dontFragment);
  t.false(ip.moreFragments);
  t.is(ip.fragmentOffset, 0);
  t.is(ip.dscp, 0);
  t.is(ip.ecn, 0);
  t.false('options' in ip, 'no options key when IHL = 5');
  t.is(ip.payload.length, 64);

  t.deepEqual(ip, ECHO_REQ_IP);
  t.deepEqual(serializeIpv4(ECHO_REQ_IP), bytes);
  t.deepEqual(serializeIpv4(ip), bytes);
  t.deepEqual(ok(parseIpv4(serializeIpv4(ECHO_REQ_IP))), ECHO_REQ_IP);

  t.is(readIpv4Src(bytes), IP_A);
  t.is(readIpv4Dst(bytes), IP_B);
  t.is(readIpv4DstInt(bytes), 0xc0000202);
});

test('ipv4: DSCP from an ICMP error (TOS 0xc0) and Ethernet padding ignored', (t) => {
  const ip = ok(parseIpv4(ipOf(PORT_UNREACH_FRAME)));
  t.is(ip.dscp, 48);
  t.is(ip.ecn, 0);
  t.false(ip.dontFragment);
  t.is(ip.id, 0x4402);
  // The UDP frame padded to 60 bytes: IPv4 stops at its total length.
  const udpIp = ok(parseIpv4(ok(parseEthernet(padded(UDP_FRAME))).payload));
  t.is(udpIp.payload.length, 13);
  t.deepEqual(serializeIpv4(udpIp), ipOf(UDP_FRAME));
});

test('ipv4: options are carried, padded to 32 bits, and counted in IHL', (t) => {
  // Router Alert (RFC 2113): type 0x94 (copied), length 4, value 0.
  const repr: Ipv4Repr = { ...ECHO_REQ_IP, options: hex`94 04 00 00` };
  const bytes = serializeIpv4(repr);
  t.is(bytes[0], 0x46, 'IHL 6');
  t.is(bytes.readUInt16BE(2), 24 + 64);
  t.is(internetChecksum(bytes.subarray(0, 24)), 0);
  t.deepEqual(ok(parseIpv4(bytes)), repr);
  // A 3-byte option list is padded with End-of-Option-List zeros.
  const odd = serializeIpv4({ ...ECHO_REQ_IP, options: hex`01 01 01` });
  t.deepEqual(odd.subarray(20, 24), hex`01 01 01 00`);
  t.deepEqual(ok(parseIpv4(odd)).options, hex`01 01 01 00`);
  t.throws(() => serializeIpv4({ ...ECHO_REQ_IP, options: Buffer.alloc(41) }), { instanceOf: RangeError });
});

test('ipv4: serialize rejects unencodable Reprs with RangeError', (t) => {
  const bad: Partial<Ipv4Repr>[] = [
    { ttl: 256 },
    { ttl: -1 },
    { id: 0x10000 },
    { protocol: 1.5 },
    { dscp: 64 },
    { ecn: 4 },
    { fragmentOffset: 12 },
    { fragmentOffset: 65536 },
    { src: '300.1.1.1' },
    { payload: Buffer.alloc(65516) },
  ];
  for (const b of bad) t.throws(() => serializeIpv4({ ...ECHO_REQ_IP, ...b }), { instanceOf: RangeError }, JSON.stringify(b));
  t.notThrows(() => serializeIpv4({ ...ECHO_REQ_IP, payload: Buffer.alloc(65515) }));
});

test('ipv4: decrementTtlInPlace patches the checksum like a recomputation', (t) => {
  const bytes = Buffer.from(ipOf(ECHO_REQUEST_FRAME));
  t.is(decrementTtlInPlace(bytes), 63);
  t.is(bytes[8], 63);
  t.deepEqual(bytes, serializeIpv4({ ...ECHO_REQ_IP, ttl: 63 }));
  t.is(bytes.readUInt16BE(10), 0xb1c1, 'Linux ip_decrease_ttl: checksum + 0x0100');

  // All TTLs, over random headers: incremental == full recomputation, and a valid header stays valid.
  const rnd = xorshift32(791);
  for (let i = 0; i < 300; i++) {
    const repr: Ipv4Repr = { ...ECHO_REQ_IP, id: rnd() & 0xffff, ttl: 1 + (rnd() % 255), protocol: rnd() & 0xff, src: intToIpv4(rnd()) };
    const b = serializeIpv4(repr);
    t.is(decrementTtlInPlace(b), repr.ttl - 1);
    t.deepEqual(b, serializeIpv4({ ...repr, ttl: repr.ttl - 1 }));
  }
  const zero = serializeIpv4({ ...ECHO_REQ_IP, ttl: 0 });
  const copy = Buffer.from(zero);
  t.is(decrementTtlInPlace(zero), 0, 'TTL 0 is left alone');
  t.deepEqual(zero, copy);
  t.is(decrementTtlInPlace(Buffer.alloc(10)), 0, 'short buffer: no-op');
});

// ---------------------------------------------------------------------------
// ICMP
// ---------------------------------------------------------------------------

const ECHO_REQ: IcmpRepr = { kind: 'echo-request', id: 0x0eed, seq: 1, data: pingData(ECHO_TV) };

test('icmp: echo request / reply, four ways', (t) => {
  const bytes = l4Of(ECHO_REQUEST_FRAME);
  t.is(bytes[0], 8, 'type');
  t.is(bytes[1], 0, 'code');
  t.is(bytes.readUInt16BE(2), 0x68e5, 'checksum from Linux ping');
  const req = ok(parseIcmp(bytes));
  if (req.kind !== 'echo-request') return t.fail(req.kind);
  t.is(req.id, 0x0eed);
  t.is(req.seq, 1);
  t.is(req.data.length, 56);
  t.deepEqual(req, ECHO_REQ);
  t.deepEqual(serializeIcmp(ECHO_REQ), bytes);
  t.deepEqual(ok(parseIcmp(serializeIcmp(ECHO_REQ))), ECHO_REQ);

  const replyBytes = l4Of(ECHO_REPLY_FRAME);
  const rep = ok(parseIcmp(replyBytes));
  t.deepEqual(rep, { ...ECHO_REQ, kind: 'echo-reply' });
  t.deepEqual(serializeIcmp(rep), replyBytes);
  t.is(replyBytes.readUInt16BE(2), 0x70e5, 'reply checksum = request checksum + 0x0800 (type 8 -> 0)');
});

test('icmp: port unreachable quoting a UDP datagram, four ways', (t) => {
  const bytes = l4Of(PORT_UNREACH_FRAME);
  const r = ok(parseIcmp(bytes));
  if (r.kind !== 'dest-unreachable') return t.fail(r.kind);
  t.is(r.code, ICMP_UNREACH_PORT);
  t.is(r.nextHopMtu, undefined);
  t.false('nextHopMtu' in r, 'no nextHopMtu key unless code 4');
  t.deepEqual(r.original, ipOf(UDP_FRAME));
  t.is(bytes.readUInt16BE(2), 0x811f);

  const quote = icmpErrorQuote(ok(parseEthernet(padded(UDP_FRAME))).payload);
  t.deepEqual(quote, ipOf(UDP_FRAME), 'quote stops at total length, not at the Ethernet padding');
  const repr: IcmpRepr = { kind: 'dest-unreachable', code: ICMP_UNREACH_PORT, original: quote };
  t.deepEqual(serializeIcmp(repr), bytes);
  t.deepEqual(r, repr);
  t.deepEqual(ok(parseIcmp(serializeIcmp(r))), repr);

  const ip = ok(parseIpv4(ipOf(PORT_UNREACH_FRAME)));
  t.deepEqual(
    serializeIpv4({ src: IP_B, dst: IP_A, protocol: IPPROTO_ICMP, ttl: 64, id: 0x4402, dontFragment: false, moreFragments: false, fragmentOffset: 0, dscp: 48, ecn: 0, payload: serializeIcmp(repr) }),
    ipOf(PORT_UNREACH_FRAME),
  );
  t.is(ip.payload.length, 41);
});

test('icmp: time exceeded in transit, four ways', (t) => {
  const bytes = l4Of(TIME_EXCEEDED_FRAME);
  const r = ok(parseIcmp(bytes));
  if (r.kind !== 'time-exceeded') return t.fail(r.kind);
  t.is(r.code, ICMP_TIMXCEED_INTRANS);
  t.is(r.original.length, 84);
  const quoted = ok(parseIpv4(r.original));
  t.is(quoted.ttl, 1);
  t.is(quoted.dst, '198.51.100.1');
  t.deepEqual(serializeIcmp({ kind: 'time-exceeded', code: 0, original: r.original }), bytes);
  t.deepEqual(serializeIcmp(r), bytes);
  t.deepEqual(ok(parseIcmp(serializeIcmp(r))), r);
});

test('icmp: fragmentation needed with next-hop MTU, quoting 548 bytes like Linux', (t) => {
  const frame = fixture('linux-icmp-fragneeded.hex');
  t.is(frame.length, 14 + 576, 'Linux caps ICMP errors at 576 bytes of IP');
  const ip = ok(parseIpv4(ipOf(frame)));
  t.is(ip.dscp, 48);
  const r = ok(parseIcmp(ip.payload));
  if (r.kind !== 'dest-unreachable') return t.fail(r.kind);
  t.is(r.code, ICMP_UNREACH_NEEDFRAG);
  t.is(r.nextHopMtu, 1000);
  t.is(r.original.length, 548);
  t.is(r.original.readUInt16BE(2), 1228, 'quoted total length exceeds the quote, as on the wire');

  // Our quote of the original 1228-byte datagram is byte-identical to the kernel's.
  const original = ipOf(fixture('linux-icmp-echo-1228.hex'));
  t.is(original.length, 1228);
  const quote = icmpErrorQuote(original);
  t.deepEqual(quote, r.original);
  const repr: IcmpRepr = { kind: 'dest-unreachable', code: ICMP_UNREACH_NEEDFRAG, nextHopMtu: 1000, original: quote };
  t.deepEqual(serializeIcmp(repr), ip.payload);
  t.deepEqual(r, repr);
  t.deepEqual(serializeIpv4(ip), ipOf(frame));
  t.is(icmpErrorQuote(original, 28).length, 28, 'RFC 792 minimum: header + 8 bytes');
});

test('icmp: unmodelled types and odd codes are kept losslessly as "other"', (t) => {
  // Timestamp request (type 13), and an echo request with a nonzero code.
  for (const raw of [hex`0d 00 00 00  12 34 00 01  00 00 00 01 00 00 00 00 00 00 00 00`, hex`08 01 00 00 00 01 00 02 61`]) {
    const b = Buffer.from(raw);
    b.writeUInt16BE(internetChecksum(b), 2);
    const r = ok(parseIcmp(b));
    if (r.kind !== 'other') return t.fail(r.kind);
    t.is(r.type, b[0]);
    t.is(r.code, b[1]);
    t.deepEqual(r.rest, b.subarray(4));
    t.deepEqual(serializeIcmp(r), b);
  }
});

// ---------------------------------------------------------------------------
// UDP
// ---------------------------------------------------------------------------

const HELLO: UdpRepr = { srcPort: 39261, dstPort: 9999, payload: Buffer.from('hello') };

test('udp: deconstruct / construct / parse / round-trip', (t) => {
  const bytes = l4Of(UDP_FRAME);
  t.is(bytes.readUInt16BE(4), UDP_HEADER_LEN + 5, 'length');
  t.is(bytes.readUInt16BE(6), 0x7791, 'checksum from the kernel');
  const u = ok(parseUdp(bytes, IP_A, IP_B));
  t.is(u.srcPort, 39261);
  t.is(u.dstPort, 9999);
  t.is(u.payload.toString(), 'hello');
  t.deepEqual(u, HELLO);
  t.deepEqual(serializeUdp(HELLO, IP_A, IP_B), bytes);
  t.deepEqual(ok(parseUdp(serializeUdp(HELLO, IP_A, IP_B), IP_A, IP_B)), HELLO);
  // The checksum covers the pseudo-header: other addresses do not verify.
  t.true(isWireError(parseUdp(bytes, IP_A, '192.0.2.3')));
});

test('udp: checksum 0 means none; a computed 0 is sent as 0xffff', (t) => {
  const none = serializeUdp(HELLO, IP_A, IP_B, { checksum: false });
  t.is(none.readUInt16BE(6), 0);
  t.deepEqual(ok(parseUdp(none, '1.2.3.4', '5.6.7.8')), HELLO, 'no checksum: addresses irrelevant');
  // Choose a 2-byte payload that makes the one's complement sum 0xffff (checksum 0).
  const base: UdpRepr = { srcPort: 1, dstPort: 2, payload: Buffer.alloc(2) };
  const c = serializeUdp(base, '10.0.0.1', '10.0.0.2').readUInt16BE(6);
  const payload = Buffer.alloc(2);
  payload.writeUInt16BE(c === 0xffff ? 0 : c); // adding ~sum to the sum makes it 0xffff
  const zeroSum = serializeUdp({ ...base, payload }, '10.0.0.1', '10.0.0.2');
  t.is(zeroSum.readUInt16BE(6), 0xffff);
  t.deepEqual(ok(parseUdp(zeroSum, '10.0.0.1', '10.0.0.2')).payload, payload);
});

test('frame builders: UDP and ICMP echo frames', (t) => {
  const frame = buildUdpFrame({ srcMac: MAC_A, dstMac: MAC_B, srcIp: IP_A, dstIp: IP_B, id: 0x9360, srcPort: 39261, dstPort: 9999, payload: Buffer.from('hello') });
  t.deepEqual(frame, padded(UDP_FRAME));
  const echo = buildIcmpEchoFrame({ srcMac: MAC_A, dstMac: MAC_B, srcIp: IP_A, dstIp: IP_B, id: 0x05e4, echoId: 0x0eed, seq: 1, data: pingData(ECHO_TV) });
  t.deepEqual(echo, ECHO_REQUEST_FRAME);
  const reply = buildIcmpEchoFrame({ srcMac: MAC_B, dstMac: MAC_A, srcIp: IP_B, dstIp: IP_A, id: 0x58da, dontFragment: false, reply: true, echoId: 0x0eed, seq: 1, data: pingData(ECHO_TV) });
  t.deepEqual(reply, ECHO_REPLY_FRAME);
});

// ---------------------------------------------------------------------------
// VXLAN (full encapsulation stack)
// ---------------------------------------------------------------------------

test('vxlan: deconstruct the Linux datagram layer by layer', (t) => {
  const outerEth = ok(parseEthernet(VXLAN_FRAME));
  const outerIp = ok(parseIpv4(outerEth.payload));
  t.is(outerIp.protocol, IPPROTO_UDP);
  t.false(outerIp.dontFragment);
  t.is(outerIp.id, 0x9631);
  const udp = ok(parseUdp(outerIp.payload, outerIp.src, outerIp.dst));
  t.is(udp.srcPort, 37347);
  t.is(udp.dstPort, VXLAN_PORT_LINUX);
  t.is(outerIp.payload.readUInt16BE(6), 0x8970, 'UDP checksum from the kernel (udpcsum)');
  const vx = ok(parseVxlan(udp.payload));
  t.is(udp.payload[0], 0x08, 'flags: I');
  t.is(vx.vni, 1);
  t.is(vx.payload.length, 98);
  const inner = ok(parseEthernet(vx.payload));
  t.is(inner.dst, '0a:58:0a:f4:02:01');
  t.is(inner.src, '0a:58:0a:f4:01:01');
  t.is(inner.etherType, ETHERTYPE_IPV4);
  const innerIp = ok(parseIpv4(inner.payload));
  t.is(innerIp.src, '10.244.1.0');
  t.is(innerIp.dst, '10.244.2.0');
  t.is(innerIp.ttl, 64);
  const icmp = ok(parseIcmp(innerIp.payload));
  t.like(icmp, { kind: 'echo-request', id: 0x1438, seq: 1 });
});

test('vxlan: construct / parse / round-trip the header and the whole frame', (t) => {
  const vxBytes = VXLAN_FRAME.subarray(14 + 20 + 8);
  const repr: VxlanRepr = { vni: 1, payload: vxBytes.subarray(VXLAN_HEADER_LEN) };
  t.deepEqual(serializeVxlan(repr), vxBytes);
  t.deepEqual(ok(parseVxlan(vxBytes)), repr);
  t.deepEqual(ok(parseVxlan(serializeVxlan({ vni: 0xffffff, payload: Buffer.alloc(0) }))), { vni: 0xffffff, payload: Buffer.alloc(0) });
  t.deepEqual(serializeVxlan({ vni: 0xabcdef, payload: Buffer.alloc(0) }), hex`08 00 00 00 ab cd ef 00`);
  t.throws(() => serializeVxlan({ vni: 0x1000000, payload: Buffer.alloc(0) }), { instanceOf: RangeError });

  // Rebuild all 148 bytes from Reprs, inner first, exactly as the kernel did.
  const innerIcmp = serializeIcmp({ kind: 'echo-request', id: 0x1438, seq: 1, data: pingData(hex`34 c9 06 6b 00 00 00 00 01 b0 0e 00 00 00 00 00`) });
  const innerFrame = serializeEthernet(
    {
      dst: '0a:58:0a:f4:02:01',
      src: '0a:58:0a:f4:01:01',
      etherType: ETHERTYPE_IPV4,
      payload: serializeIpv4({ ...ECHO_REQ_IP, src: '10.244.1.0', dst: '10.244.2.0', id: 0x0f94, payload: innerIcmp }),
    },
    { pad: false },
  );
  const frame = buildVxlanFrame({ srcMac: MAC_A, dstMac: MAC_B, srcIp: IP_A, dstIp: IP_B, id: 0x9631, srcPort: 37347, vni: 1, inner: innerFrame });
  t.deepEqual(frame, VXLAN_FRAME);
});

// ---------------------------------------------------------------------------
// pcapng
// ---------------------------------------------------------------------------

const PCAPNG_GOLDEN = hex`
  # Section Header Block
  0a 0d 0d 0a         # block type SHB
  2c 00 00 00         # total length 44
  4d 3c 2b 1a         # byte-order magic (little-endian)
  01 00 00 00         # version 1.0
  ff ff ff ff ff ff ff ff   # section length: unknown (-1)
  04 00 06 00 70 6f 64 6c 61 62 00 00   # shb_userappl "podlab" (+2 pad)
  00 00 00 00         # opt_endofopt
  2c 00 00 00         # total length
  # Interface Description Block
  01 00 00 00         # block type IDB
  34 00 00 00         # total length 52
  01 00               # LINKTYPE_ETHERNET
  00 00               # reserved
  00 00 04 00         # snaplen 262144
  02 00 04 00 65 74 68 30   # if_name "eth0"
  03 00 08 00 70 6f 64 20 76 65 74 68   # if_description "pod veth"
  09 00 01 00 09 00 00 00   # if_tsresol 9 (nanoseconds) (+3 pad)
  00 00 00 00         # opt_endofopt
  34 00 00 00         # total length
  # Enhanced Packet Block
  06 00 00 00         # block type EPB
  38 00 00 00         # total length 56
  00 00 00 00         # interface 0
  fe 9c 97 17         # timestamp high (1700000000123456789 ns)
  15 cd 85 3d         # timestamp low
  04 00 00 00         # captured length 4
  04 00 00 00         # original length 4
  de ad be ef         # packet data
  01 00 02 00 68 69 00 00   # opt_comment "hi" (+2 pad)
  02 00 04 00 02 00 00 00   # epb_flags: outbound
  00 00 00 00         # opt_endofopt
  38 00 00 00         # total length
`;

test('pcapng: writer emits the documented block layout; reader round-trips it', (t) => {
  const w = new PcapngWriter({ application: 'podlab' });
  const ifc = w.addInterface({ name: 'eth0', description: 'pod veth' });
  t.is(ifc.id, 0);
  const bytes = Buffer.concat([
    w.header(),
    ifc.block,
    w.packet(0, hex`de ad be ef`, { timestampNs: 1700000000123456789n, direction: 'out', comment: 'hi' }),
  ]);
  t.deepEqual(bytes, PCAPNG_GOLDEN);

  const r = readPcapng(PCAPNG_GOLDEN);
  if (isWireError(r)) return t.fail(r.message);
  t.deepEqual(r.interfaces, [{ name: 'eth0', description: 'pod veth', linkType: LINKTYPE_ETHERNET }]);
  t.deepEqual(r.packets, [{ ifId: 0, timestampNs: 1700000000123456789n, data: hex`de ad be ef`, direction: 'out', comment: 'hi' }]);
});

test('pcapng: snaplen truncation, odd lengths, several interfaces, no options', (t) => {
  const w = new PcapngWriter();
  const a = w.addInterface({ name: 'a', snaplen: 5 });
  const b = w.addInterface({ name: 'b', linkType: 101 });
  const frame = ramp(0, 7);
  const out = Buffer.concat([w.header(), a.block, b.block, w.packet(a.id, frame, { timestampNs: 5n, direction: 'in' }), w.packet(b.id, frame, { timestampNs: 6n })]);
  t.is(out.length % 4, 0);
  const r = readPcapng(out);
  if (isWireError(r)) return t.fail(r.message);
  t.deepEqual(r.interfaces.map((i) => [i.name, i.description, i.linkType]), [['a', '', 1], ['b', '', 101]]);
  t.deepEqual(r.packets, [
    { ifId: 0, timestampNs: 5n, data: frame.subarray(0, 5), direction: 'in' },
    { ifId: 1, timestampNs: 6n, data: frame },
  ]);
  t.throws(() => w.packet(2, frame), { instanceOf: RangeError });
});

test('pcapng: default timestamps are wall-clock ns and strictly increase', (t) => {
  const w = new PcapngWriter();
  const i = w.addInterface({ name: 'x' });
  const before = BigInt(Date.now()) * 1_000_000n;
  const blocks = [w.header(), i.block, w.packet(i.id, ramp(0, 1)), w.packet(i.id, ramp(0, 1))];
  const r = readPcapng(Buffer.concat(blocks));
  if (isWireError(r)) return t.fail(r.message);
  const [a, b] = r.packets.map((p) => p.timestampNs);
  t.true(b > a);
  t.true(a >= before - 5_000_000n && a < before + 5_000_000_000n, `${a} vs ${before}`);
});
