/**
 * The DNS codec (packet/dns.ts): golden bytes (real queries dig 9.18 sent,
 * responses laid out by hand from RFC 1035 4.1 with their compression
 * pointers), malformed input refused with typed errors (pointer loops,
 * forward pointers, overlong names), tshark's decoding of every field, and
 * a real `dig` reading answers from a UDP server that uses the serializer.
 */
import test from 'ava';
import dgram from 'node:dgram';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DnsType, dnsFlags, parseDns, reverseName, serializeDns, type DnsMessage } from '../packet/dns.ts';
import { WireError, isWireError, type WireReason } from '../packet/errors.ts';
import { buildUdpFrame } from '../packet/frame.ts';
import { PcapngWriter } from '../packet/pcapng.ts';
import { hex } from './fixtures/packet/helpers.ts';
import { expertInfo, flattenTsharkJson, runTshark, tsharkTestFor } from './helpers/tshark.ts';
import { testWithProgram } from './helpers/tool.ts';
import { readFileSync } from 'node:fs';

const fixture = (name: string) => Buffer.from(readFileSync(new URL(`./fixtures/dns/${name}`, import.meta.url), 'utf8').trim(), 'hex');
const QUERY_A = fixture('dig-9.18-query-a.hex');
const QUERY_SRV = fixture('dig-9.18-query-srv.hex');
const QUERY_PTR = fixture('dig-9.18-query-ptr.hex');

const must = <T>(r: T | WireError): T => {
  if (isWireError(r)) throw new Error(`unexpected ${r.reason}: ${r.message}`);
  return r;
};

test('golden: dig 9.18 queries parse field by field and re-serialize byte for byte', (t) => {
  const q = must(parseDns(QUERY_A));
  t.is(q.id, 0x8937);
  t.deepEqual(q.flags, dnsFlags({ rd: true, ad: true }));
  t.deepEqual(q.questions, [{ name: 'web.default.svc.cluster.local', type: DnsType.A, class: 1 }]);
  t.deepEqual([q.answers.length, q.authorities.length, q.additionals.length], [0, 0, 1]);
  const opt = q.additionals[0];
  t.is(opt.name, '');
  t.is(opt.type, DnsType.OPT);
  t.is(opt.class, 1232, 'EDNS UDP payload size');
  t.true('raw' in opt.data && opt.data.raw.readUInt16BE(0) === 10, 'a COOKIE option');
  for (const b of [QUERY_A, QUERY_SRV, QUERY_PTR]) t.deepEqual(serializeDns(must(parseDns(b))), b);
  t.deepEqual(must(parseDns(QUERY_SRV)).questions[0], { name: '_http._tcp.web.default.svc.cluster.local', type: DnsType.SRV, class: 1 });
  t.deepEqual(must(parseDns(QUERY_PTR)).questions[0], { name: reverseName('10.96.0.10'), type: DnsType.PTR, class: 1 });
});

const A_RESPONSE: DnsMessage = {
  id: 0x8937,
  flags: dnsFlags({ qr: true, aa: true, rd: true }),
  questions: [{ name: 'web.default.svc.cluster.local', type: DnsType.A, class: 1 }],
  answers: [{ name: 'web.default.svc.cluster.local', type: DnsType.A, class: 1, ttl: 5, data: { type: 1, address: '10.96.0.200' } }],
  authorities: [],
  additionals: [],
};

test('golden: an A answer points its owner name at the question (c0 0c)', (t) => {
  const want = hex`
    89 37  85 00  00 01 00 01 00 00 00 00          # id, QR AA RD, 1 question, 1 answer
    03 776562 07 64656661756c74 03 737663 07 636c7573746572 05 6c6f63616c 00  00 01 00 01
    c0 0c  00 01  00 01  00 00 00 05  00 04  0a 60 00 c8   # pointer to offset 12, A IN ttl 5, 10.96.0.200
  `;
  t.deepEqual(serializeDns(A_RESPONSE), want);
  t.deepEqual(parseDns(want), A_RESPONSE);
  t.is(serializeDns(A_RESPONSE, { compress: false }).length, want.length + 29, 'uncompressed: the 31-byte name instead of 2');
});

const SRV_RESPONSE: DnsMessage = {
  id: 0x4da8,
  flags: dnsFlags({ qr: true, aa: true, rd: true }),
  questions: [{ name: '_http._tcp.web.default.svc.cluster.local', type: DnsType.SRV, class: 1 }],
  answers: [{ name: '_http._tcp.web.default.svc.cluster.local', type: DnsType.SRV, class: 1, ttl: 5, data: { type: 33, srv: { priority: 0, weight: 100, port: 80, target: 'web.default.svc.cluster.local' } } }],
  authorities: [],
  additionals: [{ name: 'web.default.svc.cluster.local', type: DnsType.A, class: 1, ttl: 5, data: { type: 1, address: '10.96.0.200' } }],
};

test('golden: SRV target written whole (RFC 2782), the additional A points into the question', (t) => {
  const want = hex`
    4d a8 85 00 00 01 00 01 00 00 00 01
    05 5f68747470 04 5f746370 03 776562 07 64656661756c74 03 737663 07 636c7573746572 05 6c6f63616c 00  00 21 00 01
    c0 0c 00 21 00 01 00 00 00 05 00 25  00 00 00 64 00 50      # SRV prio 0 weight 100 port 80
    03 776562 07 64656661756c74 03 737663 07 636c7573746572 05 6c6f63616c 00   # target, uncompressed
    c0 17 00 01 00 01 00 00 00 05 00 04 0a 60 00 c8               # web.default... at offset 23
  `;
  t.deepEqual(serializeDns(SRV_RESPONSE), want);
  t.deepEqual(parseDns(want), SRV_RESPONSE);
});

const SOA = { mname: 'ns.dns.cluster.local', rname: 'hostmaster.cluster.local', serial: 1764806400, refresh: 7200, retry: 1800, expire: 86400, minimum: 30 };
const NX_RESPONSE: DnsMessage = {
  id: 0x1234,
  flags: dnsFlags({ qr: true, aa: true, rd: true, rcode: 3 }),
  questions: [{ name: 'nope.default.svc.cluster.local', type: DnsType.A, class: 1 }],
  answers: [],
  authorities: [{ name: 'cluster.local', type: DnsType.SOA, class: 1, ttl: 30, data: { type: 6, soa: SOA } }],
  additionals: [],
};

test('golden: NXDOMAIN with the zone SOA in authority, every name compressed into the question', (t) => {
  const want = hex`
    12 34 85 03 00 01 00 00 00 01 00 00
    04 6e6f7065 07 64656661756c74 03 737663 07 636c7573746572 05 6c6f63616c 00 00 01 00 01
    c0 1d 00 06 00 01 00 00 00 1e 00 2a              # cluster.local at offset 29
    02 6e73 03 646e73 c0 1d                          # ns.dns.<cluster.local>
    0a 686f73746d6173746572 c0 1d                    # hostmaster.<cluster.local>
    69 30 cf 00  00 00 1c 20  00 00 07 08  00 01 51 80  00 00 00 1e
  `;
  t.deepEqual(serializeDns(NX_RESPONSE), want);
  t.deepEqual(parseDns(want), NX_RESPONSE);
});

const MIXED: DnsMessage = {
  id: 7,
  flags: dnsFlags({ qr: true, aa: true, rcode: 0 }),
  questions: [{ name: 'x.cluster.local', type: DnsType.ANY, class: 1 }],
  answers: [
    { name: 'x.cluster.local', type: DnsType.CNAME, class: 1, ttl: 5, data: { type: 5, target: 'web.default.svc.cluster.local' } },
    { name: 'x.cluster.local', type: DnsType.TXT, class: 1, ttl: 5, data: { type: 16, texts: [Buffer.from('hello world'), Buffer.from('')] } },
    { name: 'x.cluster.local', type: DnsType.AAAA, class: 1, ttl: 5, data: { type: 28, address: 'fd00::a60:c8' } },
    { name: '200.0.96.10.in-addr.arpa', type: DnsType.PTR, class: 1, ttl: 5, data: { type: 12, target: 'web.default.svc.cluster.local' } },
  ],
  authorities: [],
  additionals: [],
};

test('round trip: CNAME, TXT, AAAA, PTR; escaped labels', (t) => {
  t.deepEqual(parseDns(serializeDns(MIXED)), MIXED);
  const odd: DnsMessage = { ...A_RESPONSE, answers: [], questions: [{ name: 'a\\.b.c\\\\d.\\007x', type: 1, class: 1 }] };
  const b = serializeDns(odd);
  t.deepEqual(b.subarray(12, 12 + 12), hex`03 612e62 03 635c64 02 0778 00`);
  t.deepEqual(parseDns(b), odd);
  t.throws(() => serializeDns({ ...odd, questions: [{ name: 'a..b', type: 1, class: 1 }] }), { instanceOf: RangeError });
  t.throws(() => serializeDns({ ...odd, questions: [{ name: 'x'.repeat(64), type: 1, class: 1 }] }), { instanceOf: RangeError });
});

const header = (qd: number, an = 0) => hex`00 01 81 00 ${qd.toString(16).padStart(4, '0')} ${an.toString(16).padStart(4, '0')} 00 00 00 00`;
const malformed: [string, Buffer, WireReason][] = [
  ['empty', Buffer.alloc(0), 'truncated'],
  ['11-byte header', Buffer.alloc(11), 'truncated'],
  ['a question count no bytes back', header(3), 'truncated'],
  ['a pointer to itself', Buffer.concat([header(1), hex`c0 0c 00 01 00 01`]), 'bad-value'],
  ['a pointer forwards', Buffer.concat([header(1), hex`c0 0e 00 01 00 01 00`]), 'bad-value'],
  ['a two-pointer loop', Buffer.concat([header(1), hex`01 61 c0 10 c0 0c 00 01 00 01`]), 'bad-value'],
  ['a pointer cut in half', Buffer.concat([header(1), hex`01 61 c0`]), 'truncated'],
  ['label type 01 (extended labels)', Buffer.concat([header(1), hex`41 00 00 01 00 01`]), 'bad-value'],
  ['a label past the end', Buffer.concat([header(1), hex`05 61 62 00 01 00`]), 'truncated'],
  ['a 256-byte name', Buffer.concat([header(1), Buffer.concat(Array.from({ length: 5 }, () => Buffer.concat([Buffer.from([50]), Buffer.alloc(50, 0x61)]))), hex`00 00 01 00 01`]), 'bad-length'],
  ['A RDATA of 5 bytes', Buffer.concat([header(0, 1), hex`00 00 01 00 01 00 00 00 05 00 05 01 02 03 04 05`]), 'bad-length'],
  ['RDLENGTH past the end', Buffer.concat([header(0, 1), hex`00 00 01 00 01 00 00 00 05 00 09 01 02 03 04`]), 'truncated'],
  ['a PTR name longer than RDLENGTH', Buffer.concat([header(0, 1), hex`00 00 0c 00 01 00 00 00 05 00 02 01 61 00`]), 'bad-length'],
  ['SOA without its numbers', Buffer.concat([header(0, 1), hex`00 00 06 00 01 00 00 00 05 00 02 00 00`]), 'bad-length'],
  ['trailing bytes', Buffer.concat([serializeDns(A_RESPONSE), hex`00`]), 'bad-length'],
];
for (const [name, input, reason] of malformed) {
  test(`malformed: ${name} -> dns/${reason}`, (t) => {
    const r = parseDns(input);
    if (!(r instanceof WireError)) return t.fail(`parsed: ${JSON.stringify(r)}`);
    t.is(r.layer, 'dns');
    t.is(r.reason, reason, r.message);
  });
}

test('malformed: a pointer chain as long as the message allows ends (every pointer goes strictly back)', (t) => {
  // A ladder of pointers each one back: legal, and walked in linear time.
  const parts = [header(1), hex`01 61 00`];
  for (let at = 12; at < 12 + 2 * 2000; at += 2) parts.push(Buffer.from([0xc0 | (at >> 8), at & 0xff]));
  const b = Buffer.concat(parts);
  t.true(isWireError(parseDns(b)), 'the counts do not match the bytes, but the walk ended');
});

const tsharkTest = tsharkTestFor('dns-codec');

tsharkTest('tshark decodes every field the way the Repr says, with nothing malformed', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'podlab-dns-'));
  try {
    const msgs = [parseDns(QUERY_A), A_RESPONSE, SRV_RESPONSE, NX_RESPONSE, MIXED, parseDns(QUERY_PTR)].map(must);
    const w = new PcapngWriter({ application: 'podlab dns-codec test' });
    const i = w.addInterface({ name: 'cni0' });
    const blocks = [w.header(), i.block];
    msgs.forEach((m, k) => {
      const reply = m.flags.qr;
      const frame = buildUdpFrame({
        srcMac: '02:00:00:00:00:01', dstMac: '02:00:00:00:00:02',
        srcIp: reply ? '10.244.1.2' : '10.244.2.3', dstIp: reply ? '10.244.2.3' : '10.244.1.2',
        srcPort: reply ? 53 : 40000 + k, dstPort: reply ? 40000 + k : 53, payload: serializeDns(m),
      });
      blocks.push(w.packet(i.id, frame, { timestampNs: BigInt(k + 1) * 1000n }));
    });
    const file = join(dir, 'dns.pcapng');
    writeFileSync(file, Buffer.concat(blocks));
    const json = JSON.parse(await runTshark(['-r', file, '-T', 'json', '-J', 'dns'])) as { _source: { layers: unknown } }[];
    t.is(json.length, msgs.length);
    const f = json.map((p) => flattenTsharkJson(p._source.layers));
    const one = (k: number, field: string) => f[k].get(field) ?? [];
    // Query from dig.
    t.deepEqual(one(0, 'dns.id'), ['0x8937']);
    t.deepEqual(one(0, 'dns.flags.recdesired'), ['1']);
    t.deepEqual(one(0, 'dns.qry.name'), ['web.default.svc.cluster.local']);
    t.deepEqual(one(0, 'dns.rr.udp_payload_size'), ['1232']);
    // A answer.
    t.deepEqual(one(1, 'dns.flags.response'), ['1']);
    t.deepEqual(one(1, 'dns.flags.authoritative'), ['1']);
    t.deepEqual(one(1, 'dns.a'), ['10.96.0.200']);
    t.deepEqual(one(1, 'dns.resp.ttl'), ['5']);
    t.deepEqual(one(1, 'dns.resp.name'), ['web.default.svc.cluster.local']);
    // SRV and its additional A.
    t.deepEqual(one(2, 'dns.srv.port'), ['80']);
    t.deepEqual(one(2, 'dns.srv.weight'), ['100']);
    t.deepEqual(one(2, 'dns.srv.priority'), ['0']);
    t.deepEqual(one(2, 'dns.srv.target'), ['web.default.svc.cluster.local']);
    t.deepEqual(one(2, 'dns.count.add_rr'), ['1']);
    t.deepEqual(one(2, 'dns.a'), ['10.96.0.200']);
    // NXDOMAIN with SOA.
    t.deepEqual(one(3, 'dns.flags.rcode'), ['3']);
    t.deepEqual(one(3, 'dns.soa.mname'), ['ns.dns.cluster.local']);
    t.deepEqual(one(3, 'dns.soa.rname'), ['hostmaster.cluster.local']);
    t.deepEqual(one(3, 'dns.soa.serial_number'), ['1764806400']);
    t.deepEqual(one(3, 'dns.soa.refresh_interval'), ['7200']);
    t.deepEqual(one(3, 'dns.soa.retry_interval'), ['1800']);
    t.deepEqual(one(3, 'dns.soa.expire_limit'), ['86400']);
    t.deepEqual(one(3, 'dns.soa.minimum_ttl'), ['30']);
    // CNAME, TXT, AAAA, PTR.
    t.deepEqual(one(4, 'dns.cname'), ['web.default.svc.cluster.local']);
    // -T json repeats the key for each TXT string (JSON.parse keeps the last): read them as fields.
    const txt = await runTshark(['-r', file, '-Y', 'frame.number == 5', '-T', 'fields', '-E', 'occurrence=a', '-E', 'aggregator=|', '-e', 'dns.txt', '-e', 'dns.txt.length']);
    t.is(txt.replace(/\n$/, ''), 'hello world|\t11|0');
    t.deepEqual(one(4, 'dns.aaaa'), ['fd00::a60:c8']);
    t.deepEqual(one(4, 'dns.ptr.domain_name'), ['web.default.svc.cluster.local']);
    t.deepEqual(one(5, 'dns.qry.name'), ['10.0.96.10.in-addr.arpa']);
    const expert = await expertInfo(file, []);
    t.deepEqual(expert.filter((e) => e.malformed).map((e) => e.frame), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const DIG = '/usr/bin/dig';
const digTest = testWithProgram('dns-codec', DIG, 'dig cross-check', 'bind9-dnsutils');

function dig(args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(DIG, args, { timeout: 10_000 }, (e, out, errOut) => (e ? reject(new Error(`dig ${args.join(' ')}: ${e.message}\n${errOut}`)) : resolve(out))),
  );
}

digTest('a real dig reads what the serializer writes (A, SRV with additional, NXDOMAIN with SOA)', async (t) => {
  const sock = dgram.createSocket('udp4');
  sock.on('message', (b, from) => {
    const q = must(parseDns(b));
    const name = q.questions[0].name;
    const base = name.startsWith('_http') ? SRV_RESPONSE : name.startsWith('nope') ? NX_RESPONSE : A_RESPONSE;
    sock.send(serializeDns({ ...base, id: q.id, flags: { ...base.flags, ad: false } }), from.port, from.address);
  });
  await new Promise<void>((r) => sock.bind(5353, '127.0.180.1', r));
  try {
    const at = ['@127.0.180.1', '-p', '5353', '+tries=1', '+time=2'];
    t.is((await dig([...at, '+short', 'web.default.svc.cluster.local'])).trim(), '10.96.0.200');
    t.is((await dig([...at, '+short', '-t', 'SRV', '_http._tcp.web.default.svc.cluster.local'])).trim(), '0 100 80 web.default.svc.cluster.local.');
    const full = await dig([...at, '-t', 'SRV', '_http._tcp.web.default.svc.cluster.local']);
    t.regex(full, /;; ADDITIONAL SECTION:\nweb\.default\.svc\.cluster\.local\.\s+5\s+IN\s+A\s+10\.96\.0\.200/);
    const nx = await dig([...at, 'nope.default.svc.cluster.local']);
    t.regex(nx, /status: NXDOMAIN/);
    t.regex(nx, /;; AUTHORITY SECTION:\ncluster\.local\.\s+30\s+IN\s+SOA\s+ns\.dns\.cluster\.local\. hostmaster\.cluster\.local\. 1764806400 7200 1800 86400 30/);
    // dig's only complaint is the mDNS reminder every cluster.local query draws (CoreDNS's answers draw it too).
    t.notRegex(full + nx, /malformed|FORMERR|parse|trailing garbage/i);
  } finally {
    sock.close();
  }
});
