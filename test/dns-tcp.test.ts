/**
 * DNS over TCP framing (packet/dns-tcp.ts, RFC 1035 4.2.2 / RFC 7766): the
 * two-byte length prefix in golden bytes, a stream split anywhere and
 * pipelined messages read back whole, and a length shorter than a header
 * rejected with a typed error. tshark's decoding of the framing on a real
 * capture is in dns-e2e.test.ts.
 */
import test from 'ava';
import { DnsType, dnsFlags, parseDns, serializeDns, type DnsMessage } from '../packet/dns.ts';
import { DnsTcpReader, frameDnsTcp } from '../packet/dns-tcp.ts';
import { isWireError } from '../packet/errors.ts';

const query = (id: number, name: string): DnsMessage => ({ id, flags: dnsFlags({ rd: true }), questions: [{ name, type: DnsType.A, class: 1 }], answers: [], authorities: [], additionals: [] });

test('golden: the length prefix is the message length, big-endian, before the message', (t) => {
  const msg = serializeDns(query(0x1234, 'web'));
  // 12-byte header + 03 'web' 00 + type + class = 21 bytes.
  t.is(msg.length, 21);
  t.is(frameDnsTcp(msg).toString('hex'), '0015' + '123401000001000000000000' + '03776562' + '00' + '0001' + '0001');
  t.throws(() => frameDnsTcp(Buffer.alloc(65536)), { instanceOf: RangeError });
  t.is(frameDnsTcp(Buffer.alloc(65535)).readUInt16BE(0), 65535);
});

test('a stream split at every byte, and pipelined messages in one chunk, read back whole and in order', (t) => {
  const msgs = [query(1, 'a.default.svc.cluster.local'), query(2, 'b'), query(3, 'c.kube-system.svc.cluster.local')].map((m) => serializeDns(m));
  const stream = Buffer.concat(msgs.map(frameDnsTcp));
  const byteWise = new DnsTcpReader();
  const got: Buffer[] = [];
  for (let i = 0; i < stream.length; i++) {
    const r = byteWise.push(stream.subarray(i, i + 1));
    if (isWireError(r)) return t.fail(r.message);
    got.push(...r);
    // Between messages nothing is held; inside one, what has come so far.
    t.true(byteWise.pending <= 2 + Math.max(...msgs.map((m) => m.length)));
  }
  t.deepEqual(got, msgs);
  t.is(byteWise.pending, 0);
  const whole = new DnsTcpReader().push(stream);
  t.deepEqual(whole, msgs);
  // A message and the first byte of the next: one out, one byte held.
  const r = new DnsTcpReader();
  t.deepEqual(r.push(stream.subarray(0, 2 + msgs[0].length + 1)), [msgs[0]]);
  t.is(r.pending, 1);
  const ids = (r.push(stream.subarray(2 + msgs[0].length + 1)) as Buffer[]).map((m) => (parseDns(m) as DnsMessage).id);
  t.deepEqual(ids, [2, 3]);
});

test('malformed: a length shorter than the 12-byte header is a typed error, and stays one', (t) => {
  for (const len of [0, 1, 11]) {
    const r = new DnsTcpReader();
    const head = Buffer.alloc(2);
    head.writeUInt16BE(len);
    const e = r.push(Buffer.concat([head, Buffer.alloc(len)]));
    t.true(isWireError(e));
    t.like(e, { layer: 'dns', reason: 'bad-length' });
    t.true(isWireError(r.push(frameDnsTcp(serializeDns(query(1, 'x'))))));
  }
  // Nothing yet, or only one byte of the length: no message, no error.
  const r = new DnsTcpReader();
  t.deepEqual(r.push(Buffer.alloc(0)), []);
  t.deepEqual(r.push(Buffer.from([0])), []);
});
