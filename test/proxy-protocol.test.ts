/**
 * The PROXY protocol v2 codec (packet/proxy-protocol.ts): golden bytes from
 * HAProxy's proxy-protocol.txt layout, typed errors for bad input (never a
 * throw), and tshark's own PROXY dissector reading what we write at the start
 * of a TCP stream (the lab router's hand-off to a node).
 */
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PROXY_V2_SIGNATURE, type WireReason, isWireError, parseProxyV2, serializeProxyV2, type ProxyV2Repr } from '../packet/index.ts';
import { TcpConversation, toPcapng } from './fixtures/bgp/capture.ts';
import { TSHARK, flattenTsharkJson, hasTshark, runTshark, tsharkTestFor } from './helpers/tshark.ts';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// TCP over IPv4, 127.0.9.9:40000 -> 127.0.155.200:80, one TLV (PP2_TYPE_NOOP 0x04, 2 bytes).
const GOLDEN = hex(`
  0d0a0d0a 000d0a51 5549540a
  21 11 0011
  7f000909 7f009bc8 9c40 0050
  04 0002 abcd`);
const REPR: ProxyV2Repr = {
  command: 'proxy',
  family: 'inet',
  transport: 'stream',
  src: { ip: '127.0.9.9', port: 40000 },
  dst: { ip: '127.0.155.200', port: 80 },
  tlvs: [{ type: 0x04, value: hex('abcd') }],
};

test('golden bytes: serialize and parse an AF_INET STREAM header with a TLV', (t) => {
  t.deepEqual(GOLDEN.subarray(0, 12), PROXY_V2_SIGNATURE);
  t.deepEqual(serializeProxyV2(REPR), GOLDEN);
  const p = parseProxyV2(Buffer.concat([GOLDEN, Buffer.from('GET / HTTP/1.1\r\n')]));
  if (isWireError(p)) return t.fail(p.message);
  t.is(p.headerLength, GOLDEN.length);
  const { headerLength, ...repr } = p;
  t.is(headerLength, 33);
  t.deepEqual(repr, REPR);
});

test('LOCAL with UNSPEC carries no addresses; an UNSPEC block is skipped', (t) => {
  const local = serializeProxyV2({ command: 'local', family: 'unspec', transport: 'unspec', tlvs: [] });
  t.deepEqual(local, Buffer.concat([PROXY_V2_SIGNATURE, hex('20 00 0000')]));
  const skipped = Buffer.concat([PROXY_V2_SIGNATURE, hex('20 00 0003 010203')]);
  const p = parseProxyV2(skipped);
  if (isWireError(p)) return t.fail(p.message);
  t.is(p.headerLength, 19);
  t.is(p.src, undefined);
});

test('bad input is a typed error, never a throw; a prefix is truncated', (t) => {
  const cases: [string, Buffer, WireReason][] = [
    ['empty', Buffer.alloc(0), 'truncated'],
    ['half a signature', GOLDEN.subarray(0, 7), 'truncated'],
    ['fixed part cut', GOLDEN.subarray(0, 15), 'truncated'],
    ['address block cut', GOLDEN.subarray(0, 24), 'truncated'],
    ['PROXY v1 text', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n'), 'bad-value'],
    ['version 1 in a v2 header', Buffer.concat([PROXY_V2_SIGNATURE, hex('11 11 000c'), Buffer.alloc(12)]), 'bad-version'],
    ['command 2', Buffer.concat([PROXY_V2_SIGNATURE, hex('22 11 000c'), Buffer.alloc(12)]), 'bad-value'],
    ['transport 3', Buffer.concat([PROXY_V2_SIGNATURE, hex('21 13 000c'), Buffer.alloc(12)]), 'bad-value'],
    ['AF_INET block too short', Buffer.concat([PROXY_V2_SIGNATURE, hex('21 11 0008'), Buffer.alloc(8)]), 'bad-length'],
    ['AF_INET6', Buffer.concat([PROXY_V2_SIGNATURE, hex('21 21 0024'), Buffer.alloc(36)]), 'unsupported'],
    ['TLV past the end', Buffer.concat([PROXY_V2_SIGNATURE, hex('21 11 0010'), Buffer.alloc(12), hex('04 0009 00')]), 'bad-length'],
    ['TLV header cut', Buffer.concat([PROXY_V2_SIGNATURE, hex('21 11 000e'), Buffer.alloc(12), hex('04 00')]), 'bad-length'],
    ['longer than accepted', Buffer.concat([PROXY_V2_SIGNATURE, hex('21 11 ffff')]), 'bad-length'],
  ];
  for (const [what, buf, reason] of cases) {
    const r = parseProxyV2(buf);
    t.true(isWireError(r), what);
    if (isWireError(r)) {
      t.is(r.reason, reason, what);
      t.is(r.layer, 'proxy', what);
    }
  }
  t.throws(() => serializeProxyV2({ ...REPR, src: { ip: '300.1.1.1', port: 1 } }), { instanceOf: RangeError });
  t.throws(() => serializeProxyV2({ ...REPR, dst: { ip: '1.1.1.1', port: 70000 } }), { instanceOf: RangeError });
});

test('random bytes after the signature never throw', (t) => {
  let seed = 7;
  const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) & 0xff;
  for (let i = 0; i < 2000; i++) {
    const body = Buffer.from(Array.from({ length: next() % 40 }, next));
    const r = parseProxyV2(Buffer.concat([PROXY_V2_SIGNATURE, body]));
    if (!isWireError(r)) t.true(r.headerLength <= 12 + body.length);
  }
  t.pass();
});

const tsharkTest = tsharkTestFor('proxy-protocol');

tsharkTest('tshark decodes our PROXY v2 header at the start of a TCP stream', async (t) => {
  if (!hasTshark) return t.fail(`CI=true but ${TSHARK} is missing`);
  const dir = mkdtempSync(join(tmpdir(), 'podlab-proxy-tshark-'));
  try {
    const c = new TcpConversation({ mac: '02:00:7f:00:9b:09', ip: '127.0.155.9', port: 40001 }, { mac: '02:00:7f:00:9b:0b', ip: '127.0.155.11', port: 8474 });
    c.send(true, Buffer.concat([serializeProxyV2({ ...REPR, tlvs: [] }), Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')]), 'hand-off');
    const file = join(dir, 'proxy.pcapng');
    writeFileSync(file, toPcapng([c]).pcap);
    const json = JSON.parse(await runTshark(['-r', file, '-n', '-T', 'json', '--no-duplicate-keys', '-Y', 'proxy'])) as { _source: { layers: Record<string, unknown> } }[];
    t.is(json.length, 1);
    const f = flattenTsharkJson(json[0]._source.layers);
    t.false(f.has('_ws.malformed'));
    t.deepEqual(f.get('proxy.v2.version'), ['2']);
    t.deepEqual(f.get('proxy.v2.cmd'), ['1']);
    t.deepEqual(f.get('proxy.v2.addr_family'), ['0x01']);
    t.deepEqual(f.get('proxy.v2.protocol'), ['0x01']);
    t.deepEqual(f.get('proxy.v2.length'), ['12']);
    t.deepEqual(f.get('proxy.src.ipv4'), ['127.0.9.9']);
    t.deepEqual(f.get('proxy.dst.ipv4'), ['127.0.155.200']);
    t.deepEqual(f.get('proxy.srcport'), ['40000']);
    t.deepEqual(f.get('proxy.dstport'), ['80']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
