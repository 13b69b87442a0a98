/**
 * The floor the bench sets the pod ping against (bench/vxlan-echo-floor.ts) does a pod's work on a pod's bytes:
 * what it is sent and what it answers decode in Wireshark as VXLAN (VNI 1) around an ICMP echo with good
 * checksums; the answer swaps the addresses, keeps id, sequence and data, and a datagram that is not such an
 * echo gets no answer while the floor keeps serving. Otherwise the bench would time something else.
 */
import test from 'ava';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PcapngWriter, buildUdpFrame } from '../packet/index.ts';
import { floorPingRtt, startVxlanFloor } from '../bench/raw-udp.ts';
import { FLOOR_ICMP, FLOOR_IP, FLOOR_LEN, floorEchoRequest, isFloorEchoReply } from '../bench/vxlan-floor-frame.ts';
import { runTshark, tsharkTestFor } from './helpers/tshark.ts';

const tsharkTest = tsharkTestFor('bench-floor');

/** Sends `datagrams` in turn to the floor, each answer (or null after 300 ms without one) in order. */
async function exchange(port: number, datagrams: Buffer[]): Promise<(Buffer | null)[]> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  const out: (Buffer | null)[] = [];
  try {
    for (const d of datagrams) {
      out.push(
        await new Promise<Buffer | null>((resolve) => {
          const timer = setTimeout(() => {
            sock.off('message', onMessage);
            resolve(null);
          }, 300);
          const onMessage = (m: Buffer): void => {
            clearTimeout(timer);
            resolve(m);
          };
          sock.once('message', onMessage);
          sock.send(d, port, '127.0.0.1');
        }),
      );
    }
  } finally {
    sock.close();
  }
  return out;
}

test('the floor answers an echo in VXLAN in place and ignores what is not one', async (t) => {
  const floor = await startVxlanFloor();
  try {
    const request = floorEchoRequest(0x1234, 7);
    const badVni = Buffer.from(request);
    badVni[6] = 2;
    const badIpSum = Buffer.from(request);
    badIpSum[FLOOR_IP + 10] ^= 0xff;
    const reply = Buffer.from(request);
    reply[FLOOR_ICMP] = 0;
    const [good, vni, ipSum, notRequest, again] = await exchange(floor.port, [request, badVni, badIpSum, reply, floorEchoRequest(0x1234, 8)]);
    t.truthy(good);
    t.true(isFloorEchoReply(good!, 0x1234, 7), 'type 0, the same id and sequence, a good ICMP checksum');
    t.is(good!.length, FLOOR_LEN);
    t.deepEqual(good!.subarray(FLOOR_IP + 12, FLOOR_IP + 16), request.subarray(FLOOR_IP + 16, FLOOR_IP + 20), 'source: the request destination');
    t.deepEqual(good!.subarray(FLOOR_IP + 16, FLOOR_IP + 20), request.subarray(FLOOR_IP + 12, FLOOR_IP + 16), 'destination: the request source');
    t.deepEqual(good!.subarray(FLOOR_ICMP + 8), request.subarray(FLOOR_ICMP + 8), 'the data unchanged');
    t.is(vni, null, 'another VNI: no answer');
    t.is(ipSum, null, 'a bad inner IPv4 checksum: no answer');
    t.is(notRequest, null, 'an echo reply: no answer');
    t.true(again !== null && isFloorEchoReply(again, 0x1234, 8), 'still serving after what it ignored');
    const rtt = await floorPingRtt(floor.port, 20, 1);
    t.true(rtt > 0 && rtt < 1000, `a mean round trip in ms: ${rtt}`);
  } finally {
    floor.stop();
  }
});

tsharkTest('tshark decodes the floor request and answer as VXLAN around an ICMP echo, checksums good', async (t) => {
  const floor = await startVxlanFloor();
  const dir = mkdtempSync(join(tmpdir(), 'podlab-bench-floor-'));
  try {
    const request = floorEchoRequest(0x4242, 3);
    const [reply] = await exchange(floor.port, [request]);
    t.truthy(reply);
    const w = new PcapngWriter({ application: 'podlab bench-floor test' });
    const lo = w.addInterface({ name: 'lo', description: 'loopback underlay' });
    const hosts = { srcMac: '02:00:00:00:00:01', dstMac: '02:00:00:00:00:02', srcIp: '127.0.0.1', dstIp: '127.0.0.2' };
    const blocks = [w.header(), lo.block];
    let ts = 1_700_000_000_000_000_000n;
    for (const payload of [request, reply!]) {
      ts += 1_000_000n;
      blocks.push(w.packet(lo.id, buildUdpFrame({ ...hosts, srcPort: 40000, dstPort: 8472, payload }), { timestampNs: ts }));
    }
    const file = join(dir, 'floor.pcapng');
    writeFileSync(file, Buffer.concat(blocks));
    const fields = ['frame.protocols', 'vxlan.vni', 'ip.src', 'ip.dst', 'ip.checksum.status', 'icmp.type', 'icmp.checksum.status', 'icmp.ident', 'icmp.seq', '_ws.malformed'];
    const out = await runTshark(['-r', file, '-n', '-d', 'udp.port==8472,vxlan', '-o', 'ip.check_checksum:TRUE', '-T', 'fields', '-E', 'separator=|', ...fields.flatMap((f) => ['-e', f])]);
    const rows = out.trim().split('\n').map((l) => l.split('|'));
    t.is(rows.length, 2);
    const [req, rep] = rows;
    t.is(req[0], 'eth:ethertype:ip:udp:vxlan:eth:ethertype:ip:icmp:data');
    t.is(rep[0], req[0]);
    t.is(req[1], '1');
    t.is(req[2], '127.0.0.1,10.244.1.2');
    t.is(req[3], '127.0.0.2,10.244.2.2');
    t.is(rep[2], '127.0.0.1,10.244.2.2', 'the answer from the pinged address');
    t.is(rep[3], '127.0.0.2,10.244.1.2');
    t.is(req[4], '1,1', 'outer and inner IPv4 checksums good');
    t.is(rep[4], '1,1');
    t.deepEqual([req[5], rep[5]], ['8', '0']);
    t.deepEqual([req[6], rep[6]], ['1', '1'], 'ICMP checksums good');
    t.deepEqual([req[7], req[8], rep[7], rep[8]], ['16962', '3', '16962', '3']);
    t.is(req[9] + rep[9], '', 'nothing malformed');
  } finally {
    floor.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
