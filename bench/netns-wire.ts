/**
 * The raw-frame wire (root only): cross-node pod UDP echo throughput with
 * `--backend bgp` in a netns lab, pod packets as raw frames on eth0 (libpcap
 * in and out, nftables keeping the namespace kernel off them) versus the same
 * lab with podlab's bare-IPv4 UDP wire, measured one after the other in this
 * run. Without root, the cap addon or nft it measures nothing and says why.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { podEchoPps } from './pod-echo.ts';
import { down, up } from '../lab/lab.ts';
import { hasTool, isRoot } from '../hostnet/netns.ts';
import { capAvailable } from '../overlay/underlay-raw.ts';
import { bgp } from '../backends/bgp/index.ts';
import { measure, type Measure } from './results.ts';

const N = Number(process.env.BENCH_PACKETS ?? 20_000);
const WINDOW = 32;

async function echoPps(wire: 'raw' | 'udp'): Promise<number> {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), `podlab-bench-${wire}-`));
  try {
    await up({
      stateDir, nodes: 2, podsPerNode: 1, manifests: [], labNet: '127.0.0.0/24', apiPort: 0, clusterCidr: '10.244.0.0/16', vxlanPort: 8472, seed: 1, mtu: 1500,
      waitReady: true, mode: 'netns', backend: bgp.name, wire, netnsPrefix: `podlab-bw${wire[0]}`, underlayNet: wire === 'raw' ? '10.250.91.0/24' : '10.250.92.0/24',
    });
    return await podEchoPps(stateDir, N, WINDOW);
  } finally {
    await down(stateDir);
    fs.rmSync(stateDir, { recursive: true, force: true });
  }
}

export async function benchNetnsWire(): Promise<Measure[]> {
  const why = !isRoot() ? 'not root' : !capAvailable() ? "the 'cap' addon does not load" : !hasTool('nft') ? 'nft is not installed' : '';
  if (why) {
    process.stderr.write(`raw-frame wire bench skipped: ${why}\n`);
    return [];
  }
  const udp = await echoPps('udp');
  const raw = await echoPps('raw');
  return [measure('cross-node pod UDP echo throughput (bgp, raw frames on eth0, netns)', raw, 'packets/s', 'the same lab on the bare-IPv4 UDP wire', udp, `${N} datagrams of 64 bytes, ${WINDOW} in flight; 2 emulated nodes in namespaces`)];
}
