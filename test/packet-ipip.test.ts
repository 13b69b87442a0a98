/**
 * The IPIP outer header (packet/ipip.ts over packet/ipv4): golden bytes for
 * one encapsulated echo request, and tshark's reading of the same bytes
 * (raw IPv4 link type, and inside podlab's bare-IPv4 wire on UDP 8473).
 */
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LINKTYPE_RAW, PcapngWriter, buildIcmpEchoFrame, buildUdpFrame, isWireError, serializeIpv4 } from '../packet/index.ts';
import { IPPROTO_IPIP, decapIpip, ipipOuter } from '../packet/ipip.ts';
import { hasTshark, runTshark, tsharkTestFor, TSHARK } from './helpers/tshark.ts';

const tsharkTest = tsharkTestFor('packet-ipip');

// An echo request from pod 10.244.1.2 to 10.244.2.2 (TTL 63 after the node forwarded it, DF set by ping).
const INNER = (() => {
  const f = buildIcmpEchoFrame({ srcMac: '02:00:00:00:00:0a', dstMac: '02:00:00:00:00:0b', srcIp: '10.244.1.2', dstIp: '10.244.2.2', echoId: 0x1234, seq: 1, data: Buffer.from('podlab-ipip'), ttl: 63, dontFragment: true });
  // Without the Ethernet padding: the datagram is its total length.
  return f.subarray(14, 14 + f.readUInt16BE(16));
})();

function outerBytes(): Buffer {
  const o = ipipOuter(INNER, { src: '10.250.0.11', dst: '10.250.0.12', id: 0x0101 });
  if (isWireError(o)) throw o;
  return serializeIpv4(o);
}

test('golden: the outer header inherits TTL and DF, protocol 4, node to node', (t) => {
  const out = outerBytes();
  const inner = INNER;
  const ttl = inner[8];
  const df = (inner[6] & 0x40) !== 0;
  // 45 00 | total 59 | id 0101 | DF | ttl 63, proto 4 | checksum (tshark: Good) | 10.250.0.11 | 10.250.0.12
  t.is(out.subarray(0, 20).toString('hex'), '4500003b' + '01014000' + '3f0424b4' + '0afa000b' + '0afa000c');
  t.is(out.subarray(0, 2).toString('hex'), '4500');
  t.is(out.readUInt16BE(2), 20 + inner.length);
  t.is(out.readUInt16BE(4), 0x0101);
  t.is(out.readUInt16BE(6), df ? 0x4000 : 0);
  t.is(out[8], ttl);
  t.is(out[9], IPPROTO_IPIP);
  t.is(out.subarray(12, 20).toString('hex'), '0afa000b0afa000c');
  t.deepEqual(out.subarray(20), inner, 'the inner datagram follows untouched');
  const back = decapIpip({ protocol: IPPROTO_IPIP, payload: out.subarray(20) });
  if (isWireError(back)) return t.fail(back.message);
  t.is(back.inner.src, '10.244.1.2');
  t.deepEqual(back.bytes, inner);
});

tsharkTest('tshark reads the outer and inner headers as we wrote them, nothing malformed', async (t) => {
  if (!hasTshark) return t.fail(`CI=true but ${TSHARK} is missing`);
  const dir = mkdtempSync(join(tmpdir(), 'podlab-ipip-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const w = new PcapngWriter({ application: 'podlab test' });
  const raw = w.addInterface({ name: 'eth0', linkType: LINKTYPE_RAW });
  const eth = w.addInterface({ name: 'lo' });
  const wire = buildUdpFrame({ srcMac: '00:00:00:00:00:00', dstMac: '00:00:00:00:00:00', srcIp: '127.0.170.11', dstIp: '127.0.170.12', srcPort: 40000, dstPort: 8473, payload: outerBytes() });
  const file = join(dir, 'ipip.pcapng');
  writeFileSync(file, Buffer.concat([w.header(), raw.block, eth.block, w.packet(raw.id, outerBytes(), { timestampNs: 1n }), w.packet(eth.id, wire, { timestampNs: 2n })]));
  const out = await runTshark(['-r', file, '-o', 'ip.check_checksum:TRUE', '-d', 'udp.port==8473,ip', '-T', 'fields', '-E', 'separator=|', '-e', 'frame.protocols', '-e', 'ip.src', '-e', 'ip.proto', '-e', 'ip.ttl', '-e', 'ip.checksum.status', '-e', 'icmp.seq', '-e', '_ws.malformed']);
  const rows = out.trim().split('\n').map((l) => l.split('|'));
  t.deepEqual(rows[0], ['raw:ip:ip:icmp:data', '10.250.0.11,10.244.1.2', '4,1', '63,63', '1,1', '1', '']);
  t.is(rows[1][0], 'eth:ethertype:ip:udp:ip:ip:icmp:data');
  t.is(rows[1][1], '127.0.170.11,10.250.0.11,10.244.1.2');
  t.is(rows[1][6], '');
});
