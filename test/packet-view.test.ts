/**
 * The read-only IPv4 view and the Cidr type against golden bytes: every
 * expected datagram below was built and checksummed independently (Python's
 * struct + an RFC 1071 sum), so an in-place NAT rewrite or TTL decrement is
 * checked against what a full recomputation gives, byte for byte. Malformed
 * inputs are rejected with the reason Linux's ip_rcv_core would give, and no
 * accessor of a checked view ever throws.
 */
import test from 'ava';
import { Ipv4Packet } from '../packet/ipv4-packet.ts';
import { Cidr, maskOf } from '../packet/cidr.ts';
import { isWireError, type WireReason } from '../packet/errors.ts';
import { parseIpv4 } from '../packet/ipv4.ts';
import { isIpAddress, isIpv4Address, isIpv4Cidr, parseIpv4CidrInput } from '../packet/ip-input.ts';

const hex = (s: string) => Buffer.from(s, 'hex');

// 10.244.1.2:40000 > 10.96.0.10:53 UDP "hello", ttl 64, id 0x1c46, DF.
const UDP = '450000211c464000401108270af401020a60000a9c400035000d092d68656c6c6f';
// The same after DNAT to 10.244.2.2:5353.
const UDP_DNAT = '450000211c4640004011059b0af401020af402029c4014e9000df1ec68656c6c6f';
// ... and after masquerade to 10.244.1.1:40001.
const UDP_SNAT = '450000211c4640004011059c0af401010af402029c4114e9000df1ec68656c6c6f';
// 10.244.1.2:33000 > 10.96.0.100:80 TCP SYN seq 1000.
const TCP = '450000281c464000400607d10af401020a60006480e80050000003e8000000005002ffff14090000';
const TCP_DNAT = '450000281c4640004006059a0af401020af4020780e81f90000003e8000000005002fffff2910000';
const TCP_TTL63 = '450000281c4640003f0608d10af401020a60006480e80050000003e8000000005002ffff14090000';
// ICMP echo request id 0x1234 seq 1 "ping", and the same with id 0x0777.
const ICMP = '450000201c464000400105ac0af401020af40202080006fa1234000170696e67';
const ICMP_ID = '450000201c464000400105ac0af401020af40202080011b70777000170696e67';
// UDP without a checksum (0: "none", RFC 768), before and after DNAT: it must stay 0.
const UDP0 = '450000211c464000401108270af401020a60000a9c400035000d000068656c6c6f';
const UDP0_DNAT = '450000211c4640004011059b0af401020af402029c4014e9000d000068656c6c6f';
// IHL 6: one 4-byte option (Router Alert), 10.0.0.1:1 > 10.0.0.2:2 UDP "x".
const OPTS = '460000211c4640004011757f0a0000010a0000029404000000010002000973d678';

function view(h: string): Ipv4Packet {
  const p = Ipv4Packet.checked(hex(h));
  if (isWireError(p)) throw p;
  return p;
}

test('accessors read the golden header', (t) => {
  const p = view(UDP);
  t.is(p.version, 4);
  t.is(p.ihl, 5);
  t.is(p.headerLen, 20);
  t.is(p.totalLen, 33);
  t.is(p.ident, 0x1c46);
  t.true(p.dontFragment);
  t.false(p.moreFragments);
  t.is(p.fragmentOffset, 0);
  t.false(p.isFragment);
  t.is(p.ttl, 64);
  t.is(p.protocol, 17);
  t.is(p.checksum, 0x0827);
  t.is(p.src, '10.244.1.2');
  t.is(p.dst, '10.96.0.10');
  t.is(p.srcInt, 0x0af40102);
  t.is(p.dstInt, 0x0a60000a);
  t.is(p.srcPort, 40000);
  t.is(p.dstPort, 53);
  t.is(p.payload.toString('hex'), '9c400035000d092d68656c6c6f');
  t.is(p.options.length, 0);
  t.true(p.verifyChecksum());
  t.is(p.icmpEchoId, -1);
  t.is(p.tcpFlags, -1);
});

test('IHL > 5: options and payload split where the header ends', (t) => {
  const p = view(OPTS);
  t.is(p.headerLen, 24);
  t.is(p.options.toString('hex'), '94040000');
  t.is(p.payload.toString('hex'), '00010002000973d678');
  t.is(p.srcPort, 1);
  t.is(p.dstPort, 2);
  t.true(p.verifyChecksum());
});

test('the view agrees with parseIpv4 on every field both have', (t) => {
  for (const h of [UDP, TCP, ICMP, OPTS]) {
    const p = view(h);
    const r = parseIpv4(hex(h));
    if (isWireError(r)) return t.fail(r.message);
    t.deepEqual(
      { src: p.src, dst: p.dst, ttl: p.ttl, protocol: p.protocol, id: p.ident, df: p.dontFragment, payload: p.payload.toString('hex') },
      { src: r.src, dst: r.dst, ttl: r.ttl, protocol: r.protocol, id: r.id, df: r.dontFragment, payload: r.payload.toString('hex') },
    );
  }
});

test('Ethernet padding past the total length is not payload', (t) => {
  const p = view(UDP + '000000000000');
  t.is(p.payload.length, 13);
  t.is(p.datagram.toString('hex'), UDP);
});

test('NAT rewrites in place match a full recomputation (UDP, TCP, ICMP echo id)', (t) => {
  let p = view(UDP);
  t.false(p.modified);
  p.setDst('10.96.0.10');
  t.false(p.modified, 'writing the same address changes nothing');
  p.setDst('10.244.2.2');
  t.true(p.modified, 'a rewrite is visible to whoever handed the view out');
  p.setDstPort(5353);
  t.is(p.buffer.toString('hex'), UDP_DNAT);
  p.setSrc(0x0af40101);
  p.setSrcPort(40001);
  t.is(p.buffer.toString('hex'), UDP_SNAT);

  p = view(TCP);
  t.is(p.tcpFlags, 0x02);
  p.setDst('10.244.2.7');
  p.setDstPort(8080);
  t.is(p.buffer.toString('hex'), TCP_DNAT);

  p = view(ICMP);
  t.is(p.icmpEchoId, 0x1234);
  t.is(p.srcPort, -1, 'ICMP has no ports');
  p.setIcmpEchoId(0x0777);
  t.is(p.buffer.toString('hex'), ICMP_ID);

  p = view(UDP0);
  p.setDst('10.244.2.2');
  p.setDstPort(5353);
  t.is(p.buffer.toString('hex'), UDP0_DNAT, 'a UDP checksum of 0 means none and stays 0');
});

test('TTL: setTtl patches the header checksum as a recomputation would; fillChecksum recomputes', (t) => {
  const p = view(TCP);
  p.setTtl(63);
  t.is(p.buffer.toString('hex'), TCP_TTL63);
  p.buffer[10] = 0;
  p.buffer[11] = 0;
  t.false(p.verifyChecksum());
  p.fillChecksum();
  t.is(p.buffer.toString('hex'), TCP_TTL63);
});

test('fragments: later fragments have no ports and are left alone by port rewrites', (t) => {
  const b = hex(UDP);
  b.writeUInt16BE(0x2000 | 2, 6); // MF, offset 16 bytes
  const p = Ipv4Packet.unchecked(b);
  p.fillChecksum();
  t.true(p.moreFragments);
  t.true(p.isLaterFragment);
  t.is(p.fragmentOffset, 16);
  t.is(p.srcPort, -1);
  t.is(p.dstPort, -1);
  const before = b.toString('hex');
  p.setDstPort(1);
  t.is(b.toString('hex'), before);
});

const malformed: [string, Buffer, WireReason][] = [
  ['empty', Buffer.alloc(0), 'truncated'],
  ['19 bytes', hex(UDP).subarray(0, 19), 'truncated'],
  ['version 6', (() => { const b = hex(UDP); b[0] = 0x65; return b; })(), 'bad-version'],
  ['IHL 4', (() => { const b = hex(UDP); b[0] = 0x44; return b; })(), 'bad-ihl'],
  ['IHL 15 in 33 bytes', (() => { const b = hex(UDP); b[0] = 0x4f; return b; })(), 'truncated'],
  ['total length 19', (() => { const b = hex(UDP); b.writeUInt16BE(19, 2); return b; })(), 'bad-length'],
  ['total length past the buffer', (() => { const b = hex(UDP); b.writeUInt16BE(200, 2); return b; })(), 'truncated'],
];

for (const [name, buf, reason] of malformed) {
  test(`malformed: ${name} -> ${reason}`, (t) => {
    const p = Ipv4Packet.checked(buf);
    t.true(isWireError(p));
    if (isWireError(p)) {
      t.is(p.layer, 'ipv4');
      t.is(p.reason, reason);
    }
  });
}

test('quoted: an ICMP error quote (header + 8 bytes) is accepted though its total length is not all there', (t) => {
  const quote = hex(UDP).subarray(0, 28);
  t.true(isWireError(Ipv4Packet.checked(quote)));
  const q = Ipv4Packet.quoted(quote);
  if (isWireError(q)) return t.fail(q.message);
  t.is(q.payload.length, 8);
  t.is(q.srcPort, 40000);
  t.is(q.dst, '10.96.0.10');
  t.true(isWireError(Ipv4Packet.quoted(quote.subarray(0, 12))));
});

test('fuzz: no accessor of a checked or quoted view throws (seeded bit flips and truncations)', (t) => {
  let seed = 12345;
  const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const bases = [UDP, TCP, ICMP, OPTS].map(hex);
  let accepted = 0;
  for (let i = 0; i < 3000; i++) {
    const b = Buffer.from(bases[i % bases.length]);
    for (let k = 0; k < 3; k++) b[Math.floor(rnd() * b.length)] ^= 1 << Math.floor(rnd() * 8);
    const cut = b.subarray(0, Math.floor(rnd() * (b.length + 1)));
    for (const p of [Ipv4Packet.checked(cut), Ipv4Packet.quoted(cut)]) {
      if (isWireError(p)) continue;
      accepted++;
      t.notThrows(() => [p.version, p.ihl, p.totalLen, p.ttl, p.protocol, p.src, p.dst, p.srcPort, p.dstPort, p.tcpFlags, p.icmpEchoId, p.payload, p.options, p.fragmentOffset, p.verifyChecksum()]);
    }
  }
  t.true(accepted > 100, `${accepted} inputs accepted`);
});

test('Cidr: parse, mask, network, broadcast, contains, format', (t) => {
  const c = Cidr.parse('10.244.1.7/24');
  t.is(c.network, 0x0af40100);
  t.is(c.networkAddress, '10.244.1.0');
  t.is(c.prefixLen, 24);
  t.is(c.mask, 0xffffff00);
  t.is(c.netmask, '255.255.255.0');
  t.is(c.broadcast, 0x0af401ff);
  t.is(c.broadcastAddress, '10.244.1.255');
  t.is(c.size, 256);
  t.is(c.format(), '10.244.1.0/24');
  t.is(String(c), '10.244.1.0/24');
  t.true(c.contains('10.244.1.200'));
  t.true(c.contains(0x0af401ff));
  t.false(c.contains('10.244.2.0'));
  t.true(Cidr.parse('10.244.0.0/16').covers(c));
  t.false(c.covers(Cidr.parse('10.244.0.0/16')));
  t.true(c.overlaps(Cidr.parse('10.0.0.0/8')));
  t.false(c.overlaps(Cidr.parse('10.244.2.0/24')));
  t.is(Cidr.parse('10.244.0.0/16').subnet(24, 3).format(), '10.244.3.0/24');
  t.is(c.nth(1), 0x0af40101);
  t.true(Cidr.of('10.244.1.0', 24).equals(c));
});

test('Cidr: the edges /0 and /32, and the mask table', (t) => {
  const all = Cidr.parse('0.0.0.0/0');
  t.is(all.mask, 0);
  t.is(all.size, 2 ** 32);
  t.is(all.broadcast, 0xffffffff);
  t.true(all.contains('255.255.255.255'));
  const one = Cidr.parse('192.0.2.1/32');
  t.is(one.mask, 0xffffffff);
  t.is(one.broadcastAddress, '192.0.2.1');
  t.false(one.contains('192.0.2.2'));
  t.deepEqual([0, 1, 8, 12, 24, 31, 32].map(maskOf), [0, 0x80000000, 0xff000000, 0xfff00000, 0xffffff00, 0xfffffffe, 0xffffffff]);
  t.is(Cidr.parse('10.1.2.3', { allowBare: true }).format(), '10.1.2.3/32');
});

test('Cidr: malformed text is rejected, never half-parsed', (t) => {
  for (const bad of ['', '10.244.1.0', '10.244.1.0/', '10.244.1.0/33', '10.244.1.0/024', '10.244.1/24', '10.244.1.256/24', '010.244.1.0/24', ' 10.244.1.0/24', '10.244.1.0/24 ', '10.244.1.0/-1', '10.244.1.0/8.0', 'a.b.c.d/8']) {
    t.is(Cidr.tryParse(bad), undefined, bad);
    t.throws(() => Cidr.parse(bad), { instanceOf: RangeError }, bad);
  }
  t.is(Cidr.tryParse('10.244.1.7/24', { strict: true }), undefined);
  t.truthy(Cidr.tryParse('10.244.1.0/24', { strict: true }));
  t.throws(() => Cidr.of('10.0.0.0', 33), { instanceOf: RangeError });
});

test('boundary input (ipaddr.js): four-part decimal only, strict host bits on request', (t) => {
  t.true(isIpv4Address('10.244.1.2'));
  for (const bad of ['10.244.1', '0x0a.0.0.1', '010.0.0.1', '10.244.1.2 ', '1.2.3.4.5', '256.0.0.1', '', 42]) t.false(isIpv4Address(bad), String(bad));
  t.true(isIpAddress('fd00::1'));
  t.false(isIpAddress('fd00::g'));
  t.is(parseIpv4CidrInput('10.244.1.7/24')?.format(), '10.244.1.0/24');
  t.is(parseIpv4CidrInput('10.244.1.7/24', { strict: true }), undefined);
  for (const bad of ['10.244.0.0', '10.244/16', '10.244.0.0/33', '10.244.0.0/016', '300.1.1.0/16', 'fd00::/64', null]) t.false(isIpv4Cidr(bad), String(bad));
});
