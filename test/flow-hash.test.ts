/**
 * The VXLAN source-port hash: one flow, one hash, whatever its sequence
 * numbers and checksums; different flows spread.
 */
import test from 'ava';
import { flowHash } from '../packet/flow-hash.ts';
import { serializeEthernet } from '../packet/ethernet.ts';
import { serializeIpv4, fragmentIpv4, type Ipv4Repr } from '../packet/ipv4.ts';
import { serializeIcmp } from '../packet/icmp.ts';
import { serializeUdp } from '../packet/udp.ts';

const frame = (ip: Ipv4Repr) => serializeEthernet({ dst: '02:00:00:00:00:02', src: '02:00:00:00:00:01', etherType: 0x0800, payload: serializeIpv4(ip) });
const base = { src: '10.244.1.2', dst: '10.244.2.2', ttl: 64, id: 1, dontFragment: true, moreFragments: false, fragmentOffset: 0, dscp: 0, ecn: 0 };
const echo = (id: number, seq: number, type: 'echo-request' | 'echo-reply' = 'echo-request') => frame({ ...base, id: seq, protocol: 1, payload: serializeIcmp({ kind: type, id, seq, data: Buffer.alloc(56, seq) }) });
const udp = (sport: number, dport: number, body: string) => frame({ ...base, protocol: 17, payload: serializeUdp({ srcPort: sport, dstPort: dport, payload: Buffer.from(body) }, base.src, base.dst) });

test('ICMP echo: every echo of one ping (same id) hashes alike; another id or the reply direction differs', (t) => {
  const h = flowHash(echo(7, 1));
  for (let seq = 2; seq < 50; seq++) t.is(flowHash(echo(7, seq)), h, `seq ${seq}`);
  t.not(flowHash(echo(8, 1)), h);
  t.not(flowHash(echo(7, 1, 'echo-reply')), h);
});

test('UDP and TCP: the ports are the flow, the payload, TTL and IP id are not', (t) => {
  t.is(flowHash(udp(40000, 53, 'a')), flowHash(udp(40000, 53, 'something else entirely')));
  t.not(flowHash(udp(40000, 53, 'a')), flowHash(udp(40001, 53, 'a')));
});

test('fragments of one datagram share a hash; a non-IPv4 frame hashes to 0', (t) => {
  const big: Ipv4Repr = { ...base, dontFragment: false, protocol: 17, payload: serializeUdp({ srcPort: 1, dstPort: 2, payload: Buffer.alloc(3000) }, base.src, base.dst) };
  const frags = fragmentIpv4(big, 1400).map((f) => frame(f));
  t.true(frags.length >= 3);
  t.is(new Set(frags.map(flowHash)).size, 1);
  t.is(flowHash(serializeEthernet({ dst: 'ff:ff:ff:ff:ff:ff', src: '02:00:00:00:00:01', etherType: 0x0806, payload: Buffer.alloc(28) })), 0);
  t.is(flowHash(Buffer.alloc(10)), 0);
});
