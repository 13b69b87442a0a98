/**
 * Property-based fuzzing of every wire codec that reads outside input:
 * Ethernet, ARP, IPv4 (and its reassembly), ICMP, UDP, TCP, VXLAN, BGP, DNS. For
 * any bytes, a parser returns its Repr or its typed error, never throws; for
 * any valid Repr, parse(serialize(x)) gives x back. Seeded and bounded in
 * `npm test`; `npm run fuzz` runs the same properties for as long as asked
 * (test/helpers/fuzz.ts).
 */
import test from 'ava';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import { isBgpError } from '../bgp/codec/error.ts';
import { parseBgpMessage, serializeBgpMessage } from '../bgp/codec/message.ts';
import { parseArp, serializeArp, type ArpRepr } from '../packet/arp.ts';
import { isWireError } from '../packet/errors.ts';
import { ethernetType, parseEthernet, serializeEthernet } from '../packet/ethernet.ts';
import { parseIcmp } from '../packet/icmp.ts';
import { Reassembler, fragmentIpv4, parseIpv4, serializeIpv4, type Ipv4Repr } from '../packet/ipv4.ts';
import { parseTcp } from '../packet/tcp.ts';
import { parseUdp, serializeUdp } from '../packet/udp.ts';
import { parseVxlan, serializeVxlan } from '../packet/vxlan.ts';
import { DnsType, dnsFlags, parseDns, serializeDns, type DnsMessage, type DnsRecord } from '../packet/dns.ts';
import { fixture as bgpFixture } from './fixtures/bgp/helpers.ts';
import { fixture } from './fixtures/packet/helpers.ts';
import { bytes, fuzz, mutated } from './helpers/fuzz.ts';

const mac = fc.uint8Array({ minLength: 6, maxLength: 6 }).map((b) => [...b].map((x) => x.toString(16).padStart(2, '0')).join(':'));
const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((o) => o.join('.'));
const payload = (max: number) => fc.uint8Array({ maxLength: max }).map((u) => Buffer.from(u));

/** A parser's outcome is its value or its own typed error: anything thrown fails the property. */
const neverThrows = (parse: (b: Buffer) => unknown) => (b: Buffer) => {
  parse(b);
};

test('every packet parser takes any bytes without throwing', (t) => {
  const parsers: [string, (b: Buffer) => unknown][] = [
    ['ethernet', parseEthernet],
    ['arp', parseArp],
    ['ipv4', (b) => parseIpv4(b)],
    ['icmp', (b) => parseIcmp(b)],
    ['udp', (b) => parseUdp(b, '10.0.0.1', '10.0.0.2')],
    ['tcp', (b) => parseTcp(b, '10.0.0.1', '10.0.0.2')],
    ['vxlan', parseVxlan],
    ['dns', parseDns],
  ];
  for (const [name, parse] of parsers) {
    fuzz(fc.property(bytes, neverThrows(parse)));
    t.pass(name);
  }
});

test('ethernetType (the receive path\'s header read, no MAC strings) agrees with parseEthernet on any bytes: the same EtherType or the same refusal', (t) => {
  const agree = (b: Buffer) => {
    const full = parseEthernet(b);
    const type = ethernetType(b);
    if (isWireError(full) !== isWireError(type)) throw new Error(`disagree on ${b.toString('hex')}`);
    if (isWireError(full) && isWireError(type) && full.reason !== type.reason) throw new Error(`reasons ${full.reason} / ${type.reason}`);
    if (!isWireError(full) && full.etherType !== type) throw new Error(`etherType ${full.etherType} / ${String(type)}`);
  };
  fuzz(fc.property(bytes, agree));
  for (const f of ['linux-icmp-echo-1228.hex', 'linux-icmp-fragneeded.hex'].map(fixture)) {
    agree(f);
    t.is(ethernetType(f), 0x0800);
  }
  const llc = ethernetType(Buffer.from('ffffffffffff0a0000000001002e', 'hex'));
  t.true(isWireError(llc) && llc.reason === 'unsupported', 'an 802.3 length field is refused');
});

test('real Linux frames with bytes flipped, cut or extended: parsed or refused with a typed error', (t) => {
  const frames = ['linux-icmp-echo-1228.hex', 'linux-icmp-echo-frag1.hex', 'linux-icmp-fragneeded.hex'].map(fixture);
  for (const f of frames) {
    fuzz(
      fc.property(mutated(f), (b) => {
        const eth = parseEthernet(b);
        if (isWireError(eth)) return;
        const ip = parseIpv4(eth.payload);
        if (isWireError(ip)) return;
        const r = ip.protocol === 1 ? parseIcmp(ip.payload) : parseUdp(ip.payload, ip.src, ip.dst);
        if (!isWireError(r)) return;
        if (!(r instanceof Error) || !r.reason) throw new Error('an error without a reason');
      }),
    );
  }
  t.pass();
});

test('round trips: Ethernet, ARP, VXLAN, UDP and IPv4 give back what was serialized', (t) => {
  fuzz(
    fc.property(mac, mac, fc.integer({ min: 0x0600, max: 0xffff }), payload(1500), (dst, src, etherType, p) => {
      const r = parseEthernet(serializeEthernet({ dst, src, etherType, payload: p }, { pad: false }));
      if (isWireError(r) || r.dst !== dst || r.src !== src || r.etherType !== etherType || !r.payload.equals(p)) throw new Error(`ethernet: ${JSON.stringify(r)}`);
    }),
  );
  fuzz(
    fc.property(fc.constantFrom<1 | 2>(1, 2), mac, ipv4, mac, ipv4, (op, senderMac, senderIp, targetMac, targetIp) => {
      const repr: ArpRepr = { op, senderMac, senderIp, targetMac, targetIp };
      t.deepEqual(parseArp(serializeArp(repr)), repr);
    }),
  );
  fuzz(
    fc.property(fc.integer({ min: 0, max: 0xffffff }), payload(1500), (vni, p) => {
      const r = parseVxlan(serializeVxlan({ vni, payload: p }));
      if (isWireError(r) || r.vni !== vni || !r.payload.equals(p)) throw new Error(`vxlan ${vni}`);
    }),
  );
  fuzz(
    fc.property(ipv4, ipv4, fc.integer({ min: 0, max: 65535 }), fc.integer({ min: 0, max: 65535 }), payload(1472), (src, dst, srcPort, dstPort, p) => {
      const r = parseUdp(serializeUdp({ srcPort, dstPort, payload: p }, src, dst), src, dst);
      if (isWireError(r) || r.srcPort !== srcPort || r.dstPort !== dstPort || !r.payload.equals(p)) throw new Error('udp');
    }),
  );
  fuzz(
    fc.property(ipv4Repr(1480), (repr) => {
      const r = parseIpv4(serializeIpv4(repr));
      if (isWireError(r)) throw r;
      t.deepEqual({ ...r, payload: [...r.payload] }, { ...repr, payload: [...repr.payload] });
    }),
  );
});

function ipv4Repr(maxPayload: number): fc.Arbitrary<Ipv4Repr> {
  return fc.record({
    src: ipv4,
    dst: ipv4,
    protocol: fc.nat(255),
    ttl: fc.nat(255),
    id: fc.nat(0xffff),
    dontFragment: fc.boolean(),
    moreFragments: fc.constant(false),
    fragmentOffset: fc.constant(0),
    dscp: fc.nat(63),
    ecn: fc.nat(3),
    payload: payload(maxPayload),
  });
}

test('reassembly: any datagram, fragmented to any MTU, in any order and with duplicates, comes back whole', (t) => {
  fuzz(
    fc.property(
      ipv4Repr(4000).map((r) => ({ ...r, dontFragment: false })),
      fc.integer({ min: 68, max: 1500 }),
      fc.infiniteStream(fc.nat()),
      fc.array(fc.nat(), { maxLength: 3 }),
      (repr, mtu, order, dups) => {
        const frags = fragmentIpv4(repr, mtu);
        const shuffled = [...frags];
        for (let i = shuffled.length - 1; i > 0; i--) {
          const j = order.next().value % (i + 1);
          [shuffled[i], shuffled[j]] = [shuffled[j], shuffled[i]];
        }
        for (const d of dups) shuffled.splice(d % (shuffled.length + 1), 0, shuffled[d % shuffled.length]);
        const r = new Reassembler();
        let whole: Ipv4Repr | null = null;
        for (const f of shuffled) whole = r.push(f, 0) ?? whole;
        if (!whole || !whole.payload.equals(repr.payload)) throw new Error(`${frags.length} fragments of ${repr.payload.length} bytes at mtu ${mtu}: not reassembled`);
      },
    ),
  );
  t.pass();
});

test('reassembly: arbitrary fragments (overlapping, oversized, past 64 KiB) never throw and never assemble more than 64 KiB', (t) => {
  const frag = fc.record({
    src: fc.constantFrom('10.0.0.1', '10.0.0.2'),
    dst: fc.constant('10.0.0.9'),
    protocol: fc.constant(17),
    ttl: fc.constant(64),
    id: fc.nat(3),
    dontFragment: fc.constant(false),
    moreFragments: fc.boolean(),
    fragmentOffset: fc.nat(8191).map((o) => o * 8),
    dscp: fc.constant(0),
    ecn: fc.constant(0),
    payload: payload(1500),
  });
  fuzz(
    fc.property(fc.array(frag, { maxLength: 60 }), (frags) => {
      const r = new Reassembler({ maxDatagrams: 4 });
      for (const f of frags) {
        const out = r.push(f, 0);
        if (out && out.payload.length + 20 > 65535) throw new Error('a datagram larger than Total Length can describe');
      }
      if (r.size > 4) throw new Error(`${r.size} queues held, cap 4`);
    }),
  );
  t.pass();
});

const bgpCorpus = readFileSync(new URL('./fixtures/bgp/fuzz-corpus.hex', import.meta.url), 'utf8')
  .split('\n')
  .filter((l) => l && !l.startsWith('#'))
  .map((l) => Buffer.from(l.replace(/\s+/g, ''), 'hex'));

test('BGP: any bytes and any mutation of real messages parse or give a NOTIFICATION code, never throw', (t) => {
  const real = ['bird-open.hex', 'bird-update.hex', 'bird-end-of-rib.hex', 'bird-cease-shutdown.hex'].map(bgpFixture);
  const check = (b: Buffer) => {
    for (const as4 of [true, false]) {
      const m = parseBgpMessage(b, { as4 });
      if (isBgpError(m)) {
        if (!(m.code >= 1 && m.code <= 7)) throw new Error(`NOTIFICATION code ${m.code}`);
      } else {
        // What parses serializes again, and that parses to the same message.
        const again = parseBgpMessage(serializeBgpMessage(m, { as4 }), { as4 });
        if (isBgpError(again)) throw new Error(`re-serialized ${m.type} no longer parses: ${again.message}`);
      }
    }
  };
  fuzz(fc.property(bytes, check));
  for (const msg of [...real, ...bgpCorpus]) fuzz(fc.property(mutated(msg), check));
  t.pass();
});

const dnsFixture = (name: string) => Buffer.from(readFileSync(new URL(`./fixtures/dns/${name}`, import.meta.url), 'utf8').trim(), 'hex');

test('DNS: mutations of real dig queries parse or give a typed error; what parses serializes and parses back the same', (t) => {
  for (const q of ['dig-9.18-query-a.hex', 'dig-9.18-query-srv.hex', 'dig-9.18-query-ptr.hex'].map(dnsFixture)) {
    fuzz(
      fc.property(mutated(q), (b) => {
        const m = parseDns(b);
        if (isWireError(m)) {
          if (m.layer !== 'dns') throw new Error(`layer ${m.layer}`);
          return;
        }
        let again: ReturnType<typeof parseDns>;
        try {
          again = parseDns(serializeDns(m));
        } catch (e) {
          // Labels read off the wire can hold bytes a presentation name cannot carry back (e.g. > 0x7e): a RangeError, never a crash.
          if (e instanceof RangeError) return;
          throw e;
        }
        if (isWireError(again) || JSON.stringify(again) !== JSON.stringify(m)) throw new Error(`round trip: ${JSON.stringify(m)}`);
      }),
    );
  }
  t.pass();
});

const label = fc.stringMatching(/^[a-z0-9_-]{1,20}$/);
const dnsName = fc.array(label, { minLength: 0, maxLength: 5 }).map((l) => l.join('.'));
const rr: fc.Arbitrary<DnsRecord> = fc.oneof(
  fc.tuple(dnsName, ipv4).map(([name, address]) => ({ name, type: DnsType.A, class: 1, ttl: 5, data: { type: 1 as const, address } })),
  fc.tuple(dnsName, dnsName).map(([name, target]) => ({ name, type: DnsType.PTR, class: 1, ttl: 30, data: { type: 12 as const, target } })),
  fc.tuple(dnsName, dnsName, fc.nat(65535), fc.nat(65535)).map(([name, target, port, weight]) => ({ name, type: DnsType.SRV, class: 1, ttl: 5, data: { type: 33 as const, srv: { priority: 0, weight, port, target } } })),
  fc.tuple(dnsName, dnsName, dnsName, fc.nat()).map(([name, mname, rname, serial]) => ({ name, type: DnsType.SOA, class: 1, ttl: 5, data: { type: 6 as const, soa: { mname, rname, serial, refresh: 7200, retry: 1800, expire: 86400, minimum: 5 } } })),
);

test('DNS: any message of names and records round-trips, compressed or not', (t) => {
  fuzz(
    fc.property(fc.nat(65535), fc.array(dnsName, { maxLength: 3 }), fc.array(rr, { maxLength: 6 }), fc.array(rr, { maxLength: 2 }), fc.boolean(), (id, qs, answers, authorities, compress) => {
      const m: DnsMessage = { id, flags: dnsFlags({ qr: true, aa: true, rcode: 3 }), questions: qs.map((name) => ({ name, type: 1, class: 1 })), answers, authorities, additionals: [] };
      const back = parseDns(serializeDns(m, { compress }));
      if (isWireError(back) || JSON.stringify(back) !== JSON.stringify(m)) throw new Error(`round trip: ${JSON.stringify(back)}`);
    }),
  );
  t.pass();
});
