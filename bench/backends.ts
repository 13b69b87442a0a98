/**
 * The backends side by side: one 2-node local lab per registered backend, the
 * same cross-node pod UDP echo load on each (bench/pod-echo.ts), each rate
 * against the default backend's (VXLAN) measured in the same run. flannel's
 * udp backend pays flanneld's user-space copies on every packet; the routed
 * backends save the encapsulation.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BACKEND_NAMES, DEFAULT_BACKEND } from '../backends/registry.ts';
import { down, up } from '../lab/lab.ts';
import { podEchoPps } from './pod-echo.ts';
import { measure, type Measure } from './results.ts';

const N = Number(process.env.BENCH_BACKEND_PACKETS ?? 5_000);
const WINDOW = 32;

/** One lab per backend, each on its own /24 (127.0.174.0 onwards), torn down before the next. */
export async function benchBackends(): Promise<Measure[]> {
  const pps = new Map<string, number>();
  for (const [i, backend] of BACKEND_NAMES.entries()) {
    const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), `podlab-bench-${backend}-`));
    try {
      await up({ stateDir, nodes: 2, podsPerNode: 1, manifests: [], labNet: `127.0.${174 + i}.0/24`, apiPort: 0, clusterCidr: '10.244.0.0/16', vxlanPort: 8472, seed: 1, mtu: 1500, waitReady: true, backend });
      pps.set(backend, await podEchoPps(stateDir, N, WINDOW));
      process.stderr.write(`backend ${backend}: ${pps.get(backend)!.toFixed(0)} pps\n`);
    } finally {
      await down(stateDir);
      fs.rmSync(stateDir, { recursive: true, force: true });
    }
  }
  const base = pps.get(DEFAULT_BACKEND)!;
  return BACKEND_NAMES.map((b) => measure(`cross-node pod UDP echo throughput, --backend ${b}`, pps.get(b)!, 'packets/s', `--backend ${DEFAULT_BACKEND}, same run`, base, `${N} datagrams of 64 bytes, ${WINDOW} in flight; 2-node local lab per backend`));
}

/** `npx tsx bench/backends.ts`: just this comparison. */
if (import.meta.url === `file://${process.argv[1]}`) {
  for (const x of await benchBackends()) process.stdout.write(`${x.name}: ${x.value} ${x.unit} | ratio to ${x.baselineName} ${x.ratio}\n`);
}
