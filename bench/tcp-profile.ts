/**
 * `node --import tsx bench/tcp-profile.ts [OUT.cpuprofile]`: where the CPU of
 * the TCP bench's cross-node transfer goes (bench/tcp.ts: two in-process
 * nodes, real VXLAN on loopback, one thread for both). Profiles only the
 * transfer, through the inspector of this process, and prints the breakdown
 * (bench/profile-breakdown.ts) per VXLAN datagram sent, and the CPU time
 * (process.cpuUsage) per datagram and per full segment.
 */
import fs from 'node:fs';
import { Session } from 'node:inspector/promises';
import type { Profile } from './cpu-profile.ts';
import { breakdown } from './profile-breakdown.ts';
import { BYTES, NET, emulatedThroughput } from './tcp.ts';
import { twoNodes } from './two-nodes.ts';

const out = process.argv[2] ?? 'tcp.cpuprofile';
const lab = await twoNodes(NET, 93);
try {
  await emulatedThroughput(lab.a, lab.b, 5000); // warm-up: ARP, JIT
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 200 });
  const sent0 = lab.nodes.reduce((n, dp) => n + dp.eth0.counters.txPackets, 0);
  const cpu0 = process.cpuUsage();
  await session.post('Profiler.start');
  const bps = await emulatedThroughput(lab.a, lab.b, 5001);
  const { profile } = (await session.post('Profiler.stop')) as unknown as { profile: Profile };
  const cpu = process.cpuUsage(cpu0);
  const datagrams = lab.nodes.reduce((n, dp) => n + dp.eth0.counters.txPackets, 0) - sent0;
  session.disconnect();
  fs.writeFileSync(out, JSON.stringify(profile));
  const mss = lab.a.eth0.mtu - 40;
  const cpuUs = cpu.user + cpu.system;
  process.stdout.write(`${(bps / 1e6).toFixed(1)} MB/s; ${datagrams} VXLAN datagrams for ${Math.ceil(BYTES / mss)} segments of ${mss} B; CPU ${(cpuUs / datagrams).toFixed(1)} µs per datagram, ${(cpuUs / (BYTES / mss)).toFixed(1)} µs per full segment\n`);
  process.stdout.write(breakdown(profile, datagrams).replace('datagrams echoed', 'VXLAN datagrams sent (both nodes)'));
} finally {
  await lab.close();
}
