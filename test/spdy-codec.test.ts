/**
 * The SPDY/3.1 codec (packet/spdy.ts) and its header compression
 * (packet/spdy-headers.ts): golden bytes per frame type, round trips,
 * incremental parsing, the bytes the real kubectl 1.30 sent (Go's framer and
 * zlib: its header blocks decompress with our dictionary, whose Adler-32 is
 * the DICTID Go wrote), our compressed blocks read back by Node's own zlib,
 * every malformed input answered with a typed WireError, and the cross-check
 * against Wireshark's SPDY dissector (which inflates both directions' header
 * blocks itself).
 */
import test from 'ava';
import fc from 'fast-check';
import { SpdyServerSession } from '../control-plane/spdy-session.ts';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inflateSync, deflateSync, constants } from 'node:zlib';
import { isWireError, type WireReason } from '../packet/errors.ts';
import { SpdyFlag, SpdyRstStatus, parseHeaderBlock, parseSpdyFrame, serializeHeaderBlock, serializeSpdyFrame, type SpdyFrame } from '../packet/spdy.ts';
import { MAX_HEADER_BLOCK, SPDY_DICTIONARY, SpdyHeaderCompressor, SpdyHeaderDecompressor, adler32 } from '../packet/spdy-headers.ts';
import { TcpConversation, toPcapng } from './fixtures/bgp/capture.ts';
import { fixture } from './fixtures/bgp/helpers.ts';
import { expertInfo, flattenTsharkJson, runTshark, tsharkTestFor, EXPERT } from './helpers/tshark.ts';

const tsharkTest = tsharkTestFor('spdy-codec');
const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** The kubectl 1.30 capture, one frame per line (test/fixtures/spdy/README.md). */
const KUBECTL = fixture('../spdy/kubectl-1.30-portforward-client.hex');

function parseAll(b: Buffer): SpdyFrame[] {
  const out: SpdyFrame[] = [];
  while (b.length) {
    const r = parseSpdyFrame(b);
    if (isWireError(r)) throw r;
    if ('need' in r) throw new Error(`${b.length} trailing bytes`);
    out.push(r.frame);
    b = b.subarray(r.length);
  }
  return out;
}

const GOLDEN: { what: string; frame: SpdyFrame; bytes: string }[] = [
  { what: 'DATA stream 7, FIN, "hi"', frame: { kind: 'data', streamId: 7, flags: SpdyFlag.FIN, data: Buffer.from('hi') }, bytes: '00000007 01000002 6869' },
  { what: 'DATA stream 0x7fffffff, empty', frame: { kind: 'data', streamId: 0x7fffffff, flags: 0, data: Buffer.alloc(0) }, bytes: '7fffffff 00000000' },
  {
    what: 'SYN_STREAM 3, priority 2, slot 0, unidirectional',
    frame: { kind: 'syn_stream', flags: SpdyFlag.UNIDIRECTIONAL, streamId: 3, associatedTo: 1, priority: 2, slot: 0, headerBlock: hex('aabb') },
    bytes: '8003 0001 0200000c 00000003 00000001 40 00 aabb',
  },
  { what: 'SYN_REPLY 5', frame: { kind: 'syn_reply', flags: 0, streamId: 5, headerBlock: hex('ccdd') }, bytes: '8003 0002 00000006 00000005 ccdd' },
  { what: 'RST_STREAM 5 CANCEL', frame: { kind: 'rst_stream', flags: 0, streamId: 5, status: SpdyRstStatus.CANCEL }, bytes: '8003 0003 00000008 00000005 00000005' },
  { what: 'SETTINGS initial window 65536', frame: { kind: 'settings', flags: 0, entries: [{ flags: 0, id: 7, value: 65536 }] }, bytes: '8003 0004 0000000c 00000001 00000007 00010000' },
  { what: 'PING 1', frame: { kind: 'ping', flags: 0, id: 1 }, bytes: '8003 0006 00000004 00000001' },
  { what: 'GOAWAY last 7 PROTOCOL_ERROR', frame: { kind: 'goaway', flags: 0, lastGoodStreamId: 7, status: 1 }, bytes: '8003 0007 00000008 00000007 00000001' },
  { what: 'HEADERS 9 FIN', frame: { kind: 'headers', flags: SpdyFlag.FIN, streamId: 9, headerBlock: hex('ee') }, bytes: '8003 0008 01000005 00000009 ee' },
  { what: 'WINDOW_UPDATE 9 +1024', frame: { kind: 'window_update', flags: 0, streamId: 9, delta: 1024 }, bytes: '8003 0009 00000008 00000009 00000400' },
  { what: 'an unknown control type (CREDENTIAL, 10) is kept', frame: { kind: 'unknown', version: 3, type: 10, flags: 0, payload: hex('0102') }, bytes: '8003 000a 00000002 0102' },
];

for (const g of GOLDEN) {
  test(`golden: ${g.what}`, (t) => {
    t.is(serializeSpdyFrame(g.frame).toString('hex'), g.bytes.replace(/\s+/g, ''));
    const r = parseSpdyFrame(hex(g.bytes));
    if (isWireError(r) || 'need' in r) return t.fail(String(isWireError(r) ? r.message : 'need'));
    t.deepEqual(r.frame, g.frame);
    t.is(r.length, hex(g.bytes).length);
  });
}

test('parsing is incremental: every proper prefix asks for more, never errs', (t) => {
  const all = Buffer.concat(GOLDEN.map((g) => hex(g.bytes)));
  const first = hex(GOLDEN[2].bytes);
  for (let n = 0; n < first.length; n++) {
    const r = parseSpdyFrame(first.subarray(0, n));
    t.false(isWireError(r));
    t.true(!isWireError(r) && 'need' in r && r.need > 0, `prefix ${n}`);
  }
  t.is(parseAll(all).length, GOLDEN.length);
});

test('the header block: golden bytes, NUL-joined values, round trip', (t) => {
  const b = serializeHeaderBlock([['port', '80'], ['x', 'a\0b']]);
  t.is(b.toString('hex'), '00000002' + '00000004' + Buffer.from('port').toString('hex') + '00000002' + '3830' + '00000001' + '78' + '00000003' + '610062');
  t.deepEqual(parseHeaderBlock(b), [['port', '80'], ['x', 'a\0b']]);
  t.throws(() => serializeHeaderBlock([['Port', '80']]), { instanceOf: RangeError });
});

test("the dictionary is the spec's: 1423 bytes whose Adler-32 is the DICTID kubectl's zlib stream names", (t) => {
  t.is(SPDY_DICTIONARY.length, 1423);
  t.is(adler32(SPDY_DICTIONARY), 0xe3c6a7c2);
  t.is(adler32(Buffer.from('Wikipedia')), 0x11e60398);
  const first = parseAll(KUBECTL)[0];
  if (first.kind !== 'syn_stream') return t.fail();
  // 78 f9: deflate, 32K window, best compression, FDICT; then the dictionary's id.
  t.is(first.headerBlock.subarray(0, 6).toString('hex'), '78f9e3c6a7c2');
});

test("kubectl's frames: two forwarded connections, their header blocks decompressed in order with our dictionary", (t) => {
  const frames = parseAll(KUBECTL);
  t.deepEqual(frames.map((f) => `${f.kind}:${(f as { streamId: number }).streamId}:${f.flags}`), [
    'syn_stream:1:0', 'data:1:1', 'syn_stream:3:0', 'data:3:0', 'data:3:1', 'syn_stream:5:0', 'data:5:1', 'syn_stream:7:0', 'data:7:0', 'data:7:1',
  ]);
  const inflate = new SpdyHeaderDecompressor();
  const headers = frames.filter((f) => f.kind === 'syn_stream').map((f) => {
    const h = inflate.decompress((f as { headerBlock: Buffer }).headerBlock);
    if (isWireError(h)) throw h;
    return Object.fromEntries(h);
  });
  t.deepEqual(headers, [
    { streamtype: 'error', port: '80', requestid: '0' },
    { streamtype: 'data', port: '80', requestid: '0' },
    { streamtype: 'error', port: '80', requestid: '1' },
    { streamtype: 'data', port: '80', requestid: '1' },
  ]);
  const req = frames[3];
  t.regex(req.kind === 'data' ? req.data.toString() : '', /^GET \/ HTTP\/1\.1\r\nHost: 127\.0\.36\.1:\d+\r\nUser-Agent: curl\//);
  // Out of order, the zlib stream cannot be read: a typed error, and the decompressor stays failed.
  const fresh = new SpdyHeaderDecompressor();
  const third = fresh.decompress((frames[5] as { headerBlock: Buffer }).headerBlock);
  t.true(isWireError(third));
  t.true(isWireError(fresh.decompress((frames[0] as { headerBlock: Buffer }).headerBlock)));
});

test("our compressed blocks are one zlib stream with the dictionary: Node's own inflate reads them, each sync-flushed", (t) => {
  const c = new SpdyHeaderCompressor();
  const blocks = [c.compress([]), c.compress([['streamtype', 'data'], ['port', '8080']]), c.compress([])];
  for (const b of blocks) t.is(b.subarray(-4).toString('hex'), '0000ffff', 'ends with the sync flush marker');
  const all = inflateSync(Buffer.concat(blocks), { dictionary: SPDY_DICTIONARY, finishFlush: constants.Z_SYNC_FLUSH });
  t.deepEqual(all, Buffer.concat([serializeHeaderBlock([]), serializeHeaderBlock([['streamtype', 'data'], ['port', '8080']]), serializeHeaderBlock([])]));
  const d = new SpdyHeaderDecompressor();
  t.deepEqual(blocks.map((b) => d.decompress(b)), [[], [['streamtype', 'data'], ['port', '8080']], []]);
});

const BAD: { what: string; bytes: Buffer; reason: WireReason }[] = [
  { what: 'version 2', bytes: hex('8002 0006 00000004 00000001'), reason: 'bad-version' },
  { what: 'data on stream 0', bytes: hex('00000000 00000000'), reason: 'bad-value' },
  { what: 'SYN_STREAM shorter than its fixed part', bytes: hex('8003 0001 00000004 00000001'), reason: 'truncated' },
  { what: 'SYN_STREAM for stream 0', bytes: hex('8003 0001 0000000a 00000000 00000000 0000'), reason: 'bad-value' },
  { what: 'SYN_REPLY without a stream id', bytes: hex('8003 0002 00000002 0000'), reason: 'truncated' },
  { what: 'RST_STREAM of 4 bytes', bytes: hex('8003 0003 00000004 00000001'), reason: 'bad-length' },
  { what: 'RST_STREAM status 0', bytes: hex('8003 0003 00000008 00000001 00000000'), reason: 'bad-value' },
  { what: 'SETTINGS claiming 2 entries with 1', bytes: hex('8003 0004 0000000c 00000002 00000007 00010000'), reason: 'bad-length' },
  { what: 'SETTINGS with a huge count', bytes: hex('8003 0004 00000004 ffffffff'), reason: 'bad-length' },
  { what: 'PING of 8 bytes', bytes: hex('8003 0006 00000008 00000001 00000002'), reason: 'bad-length' },
  { what: 'GOAWAY of 4 bytes (SPDY/2 form)', bytes: hex('8003 0007 00000004 00000001'), reason: 'bad-length' },
  { what: 'WINDOW_UPDATE delta 0', bytes: hex('8003 0009 00000008 00000001 00000000'), reason: 'bad-value' },
];

for (const b of BAD) {
  test(`malformed: ${b.what} is a typed error`, (t) => {
    const r = parseSpdyFrame(b.bytes);
    t.true(isWireError(r));
    t.like(r, { layer: 'spdy', reason: b.reason });
  });
}

test('malformed: a frame over the caller\'s limit is refused from its header alone', (t) => {
  t.like(parseSpdyFrame(hex('00000001 00100001'), 1 << 20), { layer: 'spdy', reason: 'bad-length' });
});

test('malformed header blocks: lying count, truncated strings, upper case, duplicates, trailing bytes, empty names', (t) => {
  const cases: [Buffer, WireReason][] = [
    [hex('00'), 'truncated'],
    [hex('7fffffff'), 'bad-length'],
    [hex('00000001 00000004 706f7274 00000009 3830'), 'truncated'],
    [Buffer.concat([serializeHeaderBlock([['port', '80']]), hex('00')]), 'bad-length'],
    [Buffer.from(serializeHeaderBlock([['port', '80']]).toString('hex').replace(Buffer.from('port').toString('hex'), Buffer.from('Port').toString('hex')), 'hex'), 'bad-value'],
    [hex('00000002 00000001 61 00000000 00000001 61 00000000'), 'bad-value'],
    [hex('00000001 00000000 00000000'), 'bad-value'],
  ];
  for (const [b, reason] of cases) t.like(parseHeaderBlock(b), { layer: 'spdy', reason }, b.toString('hex'));
});

test('decompression: garbage and a bomb past the header-block limit are typed errors', (t) => {
  t.like(new SpdyHeaderDecompressor().decompress(hex('78f9 0000 0000 ffff ffff')), { layer: 'spdy' });
  // A well-formed zlib stream with our dictionary inflating to 1 MiB of zeros.
  const bomb = deflateSync(Buffer.alloc(MAX_HEADER_BLOCK * 16), { dictionary: SPDY_DICTIONARY, level: 9, finishFlush: constants.Z_SYNC_FLUSH });
  t.true(bomb.length < 4096);
  t.like(new SpdyHeaderDecompressor().decompress(bomb), { layer: 'spdy', reason: 'bad-length' });
});

tsharkTest("Wireshark's SPDY dissector reads kubectl's frames and ours alike, header blocks inflated", async (t) => {
  const conv = new TcpConversation({ mac: '02:00:7f:00:26:01', ip: '127.0.38.1', port: 41000 }, { mac: '02:00:7f:00:26:0a', ip: '127.0.38.10', port: 6443 });
  const frames = parseAll(KUBECTL);
  const deflate = new SpdyHeaderCompressor();
  const ours = (f: SpdyFrame): Buffer => serializeSpdyFrame(f);
  // kubectl's two connections' SYN_STREAMs, our SYN_REPLYs (compressed by us), the data, FINs and the rest.
  const KB = (i: number): Buffer => serializeSpdyFrame(frames[i]);
  conv.send(true, KB(0), 'syn_stream 1');
  conv.send(false, ours({ kind: 'syn_reply', flags: 0, streamId: 1, headerBlock: deflate.compress([]) }), 'syn_reply 1');
  conv.send(true, KB(1), 'fin 1');
  conv.send(true, KB(2), 'syn_stream 3');
  conv.send(false, ours({ kind: 'syn_reply', flags: 0, streamId: 3, headerBlock: deflate.compress([['x-podlab', 'ok']]) }), 'syn_reply 3');
  conv.send(true, Buffer.concat([KB(3), KB(4)]), 'request + fin 3');
  conv.send(false, ours({ kind: 'data', streamId: 3, flags: 0, data: Buffer.from('HTTP/1.1 200 OK\r\n\r\n') }), 'response 3');
  conv.send(false, Buffer.concat([ours({ kind: 'data', streamId: 3, flags: SpdyFlag.FIN, data: Buffer.alloc(0) }), ours({ kind: 'data', streamId: 1, flags: SpdyFlag.FIN, data: Buffer.alloc(0) })]), 'fins');
  conv.send(true, KB(5), 'syn_stream 5');
  conv.send(false, ours({ kind: 'syn_reply', flags: 0, streamId: 5, headerBlock: deflate.compress([]) }), 'syn_reply 5');
  conv.send(true, ours({ kind: 'ping', flags: 0, id: 1 }), 'ping');
  conv.send(false, ours({ kind: 'ping', flags: 0, id: 1 }), 'pong');
  conv.send(false, ours({ kind: 'rst_stream', flags: 0, streamId: 5, status: SpdyRstStatus.CANCEL }), 'rst 5');
  conv.send(false, ours({ kind: 'goaway', flags: 0, lastGoodStreamId: 5, status: 0 }), 'goaway');
  const { pcap } = toPcapng([conv]);
  const dir = mkdtempSync(join(tmpdir(), 'podlab-spdy-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'spdy.pcapng');
  writeFileSync(file, pcap);
  const common = ['-n', '-d', 'tcp.port==6443,spdy', '-o', 'tcp.check_checksum:TRUE'];
  const json = JSON.parse(await runTshark(['-r', file, ...common, '-T', 'json', '--no-duplicate-keys'])) as unknown[];
  const spdyOf = (i: number): Map<string, string[]> => flattenTsharkJson((json[i] as { _source: { layers: { spdy?: unknown } } })._source.layers.spdy ?? {});
  // Frames 4.. carry the payloads (after the handshake), in the order sent.
  const at = (what: string): Map<string, string[]> => spdyOf(3 + conv.frames.slice(3).findIndex((f) => f.what === what));
  t.deepEqual(at('syn_stream 1').get('spdy.type'), ['1']);
  t.deepEqual(at('syn_stream 1').get('spdy.streamid'), ['1']);
  const names1 = at('syn_stream 1').get('spdy.header.name') ?? [];
  const values1 = at('syn_stream 1').get('spdy.header.value') ?? [];
  t.deepEqual(Object.fromEntries(names1.map((n, i) => [n, values1[i]])), { streamtype: 'error', port: '80', requestid: '0' });
  const names5 = at('syn_stream 5').get('spdy.header.name') ?? [];
  const values5 = at('syn_stream 5').get('spdy.header.value') ?? [];
  t.deepEqual(Object.fromEntries(names5.map((n, i) => [n, values5[i]])), { streamtype: 'error', port: '80', requestid: '1' });
  t.deepEqual(at('syn_reply 1').get('spdy.numheaders'), ['0']);
  t.deepEqual(at('syn_reply 3').get('spdy.header.name'), ['x-podlab']);
  t.deepEqual(at('syn_reply 3').get('spdy.header.value'), ['ok']);
  t.deepEqual(at('fins').get('spdy.streamid'), ['3', '1']);
  t.deepEqual(at('fins').get('spdy.flags.fin'), ['1', '1']);
  t.deepEqual(at('pong').get('spdy.ping_id'), ['1']);
  t.deepEqual(at('rst 5').get('spdy.rst_stream_status'), ['5']);
  t.deepEqual(at('goaway').get('spdy.goaway_last_good_stream_id'), ['5']);
  for (const f of await expertInfo(file, common)) {
    t.false(f.malformed, `frame ${f.frame} malformed`);
    for (const i of f.infos) t.true(i.severity < EXPERT.warn, `frame ${f.frame}: ${i.message}`);
  }
});

test('fuzz: random bytes, and kubectl frames with random corruption, never throw out of the parser or a server session', (t) => {
  const kubectl = KUBECTL;
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 256 }), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }), fc.nat({ max: 64 }), (junk, flips, split) => {
      // The parser alone on junk: a frame, a need or a WireError.
      const r = parseSpdyFrame(Buffer.from(junk));
      if (!isWireError(r) && !('need' in r) && !('frame' in r)) return false;
      // A session fed kubectl's bytes with a few bytes changed, in two pieces, then junk.
      const bytes = Buffer.from(kubectl);
      for (const [i, v] of flips) bytes[i % bytes.length] = v;
      let closed = false;
      const session = new SpdyServerSession({ write: () => true, onDrain: () => {}, pause: () => {}, resume: () => {}, close: () => (closed = true) });
      session.on('stream', (s) => (s.id % 4 === 1 ? s.reply() : s.abort()));
      const cut = Math.min(split, bytes.length);
      session.feed(bytes.subarray(0, cut));
      session.feed(bytes.subarray(cut));
      session.feed(Buffer.from(junk));
      // A session that closed said why; one that did not is still usable.
      return closed ? session.protocolErrors > 0 || session.streamCount === 0 : true;
    }),
    { seed: 42, numRuns: 500 },
  );
  t.pass();
});
