/**
 * Two node data planes in the bench's own process, joined by real VXLAN on a
 * loopback /24 the bench owns (node N at NET.(10+N), pod CIDR 10.244.N.0/24),
 * with one pod each: pod a (10.244.1.2) on node-1, pod b (10.244.2.2) on node-2.
 */
import { monotonicClock } from '../common/clock.ts';
import { SeededRng } from '../common/rng.ts';
import type { Lease } from '../backends/plan.ts';
import { DEFAULT_BACKEND, planPeers } from '../backends/registry.ts';
import { NodeDataPlane } from '../node-agent/dataplane.ts';
import type { PodNet } from '../netstack/pod-net.ts';

export async function twoNodes(net: string, seed: number): Promise<{ a: PodNet; b: PodNet; nodes: NodeDataPlane[]; close(): Promise<void> }> {
  const prefix = net.split('.').slice(0, 3).join('.');
  const nodes = [1, 2].map(
    (n) =>
      new NodeDataPlane({
        name: `node-${n}`,
        ip: `${prefix}.${10 + n}`,
        underlayCidr: net,
        podCIDR: `10.244.${n}.0/24`,
        vtepMac: `02:00:00:00:${(seed & 0xff).toString(16).padStart(2, '0')}:0${n}`,
        clusterCidr: '10.244.0.0/16',
        vxlanPort: 8472,
        vni: 1,
        seed,
        mtu: 1500,
        clock: monotonicClock,
        rng: new SeededRng(n),
        // As for the lab's agents (node-agent/main.ts): off only to measure what the flow cache saves.
        fastPath: process.env.PODLAB_FAST_PATH !== 'off',
      }),
  );
  for (const n of nodes) await n.start();
  const leases: Lease[] = nodes.map((dp) => ({ node: dp.opts.name, podCIDR: dp.opts.podCIDR, publicIp: dp.opts.ip, vtepMac: dp.opts.vtepMac, vni: 1, backend: DEFAULT_BACKEND }));
  for (const me of nodes) for (const act of planPeers(leases, new Map(), { node: me.opts.name, vni: 1 })) me.applyPlan(act);
  const a = nodes[0].addPod({ namespace: 'default', name: 'bench-a', uid: 'bench-a', ip: '10.244.1.2' });
  const b = nodes[1].addPod({ namespace: 'default', name: 'bench-b', uid: 'bench-b', ip: '10.244.2.2' });
  return { a, b, nodes, close: async () => void (await Promise.all(nodes.map((n) => n.close()))) };
}
