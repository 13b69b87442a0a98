import test from 'ava';
import { buildArpFrame, buildIcmpEchoFrame, buildUdpFrame, buildVxlanFrame } from '../packet/frame.ts';
import { FilterError, compileFilter } from '../node-agent/capture/filter.ts';

const addrs = { srcMac: '02:00:00:00:00:01', dstMac: '02:00:00:00:00:02', srcIp: '10.244.1.2', dstIp: '10.244.2.3' };
const icmp = buildIcmpEchoFrame({ ...addrs, echoId: 1, seq: 1 });
const dns = buildUdpFrame({ ...addrs, srcPort: 40000, dstPort: 53, payload: Buffer.from('q') });
const arp = buildArpFrame({ op: 1, senderMac: addrs.srcMac, senderIp: '10.244.1.2', targetIp: '10.244.1.1' });
const vxlan = buildVxlanFrame({ srcMac: '02:00:00:00:01:01', dstMac: '02:00:00:00:01:02', srcIp: '127.0.0.11', dstIp: '127.0.0.12', srcPort: 51000, vni: 1, inner: icmp });

const cases: [string, Buffer, boolean][] = [
  ['', icmp, true],
  ['icmp', icmp, true],
  ['icmp', dns, false],
  ['udp port 53', dns, true],
  ['udp dst port 53', dns, true],
  ['udp src port 53', dns, false],
  ['tcp port 53', dns, false],
  ['port 53', dns, true],
  ['host 10.244.1.2', icmp, true],
  ['host 10.244.9.9', icmp, false],
  ['src host 10.244.1.2 and dst host 10.244.2.3', icmp, true],
  ['dst host 10.244.1.2', icmp, false],
  ['10.244.2.3', icmp, true],
  ['net 10.244.2.0/24', icmp, true],
  ['src net 10.244.2.0/24', icmp, false],
  ['arp', arp, true],
  ['arp and host 10.244.1.1', arp, true],
  ['not arp', arp, false],
  ['icmp or arp', arp, true],
  ['!(icmp || udp)', dns, false],
  ['ether src host 02:00:00:00:00:01', icmp, true],
  ['ether dst host 02:00:00:00:00:01', icmp, false],
  ['udp port 8472', vxlan, true],
  ['udp port 8472 and host 127.0.0.12', vxlan, true],
  // Outer headers only, as libpcap: the inner ICMP is not seen.
  ['icmp', vxlan, false],
];

for (const [expr, frame, want] of cases) {
  test(`filter '${expr}' ${want ? 'matches' : 'rejects'} ${frame === icmp ? 'icmp' : frame === dns ? 'dns' : frame === arp ? 'arp' : 'vxlan'}`, (t) => {
    t.is(compileFilter(expr)(frame), want);
  });
}

test('bad filters name the token and position', (t) => {
  const e1 = t.throws(() => compileFilter('host 10.244.1'), { instanceOf: FilterError });
  t.regex(e1.message, /'10\.244\.1' is not an IPv4 address at position 6/);
  t.regex(t.throws(() => compileFilter('icmp and')).message, /unexpected end of expression/);
  t.regex(t.throws(() => compileFilter('vlan 3')).message, /unknown or unsupported term 'vlan' at position 1/);
  t.regex(t.throws(() => compileFilter('(icmp')).message, /missing '\)'|unexpected end/);
  t.regex(t.throws(() => compileFilter('port 70000')).message, /not a port number/);
});
