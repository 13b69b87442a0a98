/**
 * Small clusters of node data planes in the test's own process, joined by
 * real sockets on a loopback /24 the test owns: node N is NET.(10+N) with pod
 * CIDR 10.244.N.0/24. Shared by the data-plane tests of every backend.
 */
import { monotonicClock, type Clock } from '../../common/clock.ts';
import { SeededRng } from '../../common/rng.ts';
import type { Lease } from '../../backends/plan.ts';
import { planPeers } from '../../backends/registry.ts';
import { NodeDataPlane, type DataPlaneOptions } from '../../node-agent/dataplane.ts';
import { ping } from '../../pod-tools/ping.ts';
import type { PodNet } from '../../netstack/pod-net.ts';

export interface TestNodeOptions {
  /** The underlay, `127.0.X.0/24`. */
  net: string;
  backend?: string;
  clock?: Clock;
  vxlanPort?: number;
  seed?: number;
  /** A fixed eth0 MAC (`02:00:00:00:01:0N`) for backends whose plan a test writes by hand. */
  fixedEth0Mac?: boolean;
  /** The flow cache (netstack/flow/), on unless a test compares without it. */
  fastPath?: boolean;
}

export function makeNode(n: number, o: TestNodeOptions): NodeDataPlane {
  const opts: DataPlaneOptions = {
    name: `node-${n}`,
    ip: `${o.net.split('.').slice(0, 3).join('.')}.${10 + n}`,
    underlayCidr: o.net,
    podCIDR: `10.244.${n}.0/24`,
    vtepMac: `02:00:00:00:00:0${n}`,
    clusterCidr: '10.244.0.0/16',
    vxlanPort: o.vxlanPort ?? 8472,
    vni: 1,
    seed: o.seed ?? 42,
    mtu: 1500,
    clock: o.clock ?? monotonicClock,
    rng: new SeededRng(n),
    ...(o.backend ? { backend: o.backend } : {}),
    ...(o.fixedEth0Mac ? { eth0Mac: `02:00:00:00:01:0${n}` } : {}),
    ...(o.fastPath === false ? { fastPath: false } : {}),
  };
  return new NodeDataPlane(opts);
}

/** The Flannel lease a node publishes (vxlan: its VTEP; other backends: none). */
export function leaseOf(dp: NodeDataPlane, backend = 'vxlan'): Lease {
  return backend === 'vxlan'
    ? { node: dp.opts.name, podCIDR: dp.opts.podCIDR, publicIp: dp.opts.ip, vtepMac: dp.opts.vtepMac, vni: 1, backend }
    : { node: dp.opts.name, podCIDR: dp.opts.podCIDR, publicIp: dp.opts.ip, backend };
}

/** Every node applies the backend's plan for every other, as its watch of the Nodes would. */
export function mesh(nodes: NodeDataPlane[], backend = 'vxlan'): void {
  for (const me of nodes) for (const a of planPeers(nodes.map((n) => leaseOf(n, backend)), new Map(), { node: me.opts.name, vni: 1, ...(backend === 'vxlan' ? {} : { backend }) })) me.applyPlan(a);
}

/** The pod's `ping ARGV...`: exit code and everything it printed. */
export async function runPing(pod: PodNet, argv: string[], clock: Clock = monotonicClock): Promise<{ code: number; out: string }> {
  let out = '';
  const code = await ping({ pod, argv: ['ping', ...argv], stdout: (s) => (out += s), stderr: (s) => (out += s), signal: new AbortController().signal, clock, rng: new SeededRng(9) });
  return { code, out };
}

export const addPod = (dp: NodeDataPlane, name: string, ip: string): PodNet => dp.addPod({ namespace: 'default', name, uid: `uid-${name}`, ip });
