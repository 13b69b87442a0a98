/**
 * The floor under the pod ping: the least JavaScript that answers a ping carried
 * in VXLAN, in its own process. It takes a VXLAN datagram (VNI 1) holding an
 * Ethernet frame with an ICMP echo request, checks the outer and inner headers,
 * and answers in place, as a node and its pod together would at the very least:
 * MACs and addresses swapped, type 0, the checksum adjusted (RFC 1624), back to
 * the sender. The answer is written by hand on purpose (not podlab's stack or
 * parsers; only its RFC 1624 checksum update): it stands for the smallest path Node can run, so that the pod
 * ping's ratio can be split into what Node costs and what podlab's path costs.
 * Prints
 * `{"event":"listening","port":N}` once bound.
 */
import dgram from 'node:dgram';
import { checksumAdjust } from '../packet/index.ts';
import { FLOOR_ETH, FLOOR_ICMP, FLOOR_IP, FLOOR_LEN, checksumGood } from './vxlan-floor-frame.ts';

const host = process.argv[2] ?? '127.0.0.1';
const sock = dgram.createSocket('udp4');
sock.on('message', (m, rinfo) => {
  if (m.length < FLOOR_LEN || (m[0] & 0x08) === 0 || m.readUIntBE(4, 3) !== 1) return;
  if (m.readUInt16BE(FLOOR_ETH + 12) !== 0x0800 || m[FLOOR_IP + 9] !== 1 || m[FLOOR_ICMP] !== 8) return;
  if (!checksumGood(m, FLOOR_IP, FLOOR_IP + 20)) return;
  for (let i = 0; i < 6; i++) {
    const t = m[FLOOR_ETH + i];
    m[FLOOR_ETH + i] = m[FLOOR_ETH + 6 + i];
    m[FLOOR_ETH + 6 + i] = t;
  }
  for (let i = 0; i < 4; i++) {
    const t = m[FLOOR_IP + 12 + i];
    m[FLOOR_IP + 12 + i] = m[FLOOR_IP + 16 + i];
    m[FLOOR_IP + 16 + i] = t;
  }
  // Type 8 -> 0 changes the ICMP header's first 16-bit word: its checksum follows by RFC 1624's update.
  const typeCode = m.readUInt16BE(FLOOR_ICMP);
  m[FLOOR_ICMP] = 0;
  m.writeUInt16BE(checksumAdjust(m.readUInt16BE(FLOOR_ICMP + 2), typeCode, typeCode & 0xff), FLOOR_ICMP + 2);
  sock.send(m, rinfo.port, rinfo.address);
});
sock.bind(0, host, () => process.stdout.write(JSON.stringify({ event: 'listening', port: sock.address().port }) + '\n'));
process.on('SIGTERM', () => process.exit(0));
