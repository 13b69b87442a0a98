/**
 * What capture costs the data plane. One node's data plane in this process
 * forwards UDP datagrams between two pods on cni0 (veth → bridge → veth), with:
 *   - the stock devices, nobody capturing (taps idle, trace idle);
 *   - the same devices with the capture/trace hooks removed (the baseline:
 *     what the data path would cost without capture support at all);
 *   - a capture running on cni0 (frames copied to a sink, as `podlab capture` does).
 * Rounds are interleaved and the median taken, so machine noise hits all alike.
 */
import { monotonicClock } from '../common/clock.ts';
import { SeededRng } from '../common/rng.ts';
import { NodeDataPlane } from '../node-agent/dataplane.ts';
import { NetDevice, type FrameDispatcher, type FrameLink } from '../netstack/link/netdev.ts';
import { runCapture, captureTargets } from '../node-agent/capture/session.ts';
import { measure, type Measure } from './results.ts';

const N = Number(process.env.BENCH_FRAMES ?? 100_000);
const ROUNDS = 5;

function makeNode(): NodeDataPlane {
  return new NodeDataPlane({
    name: 'bench',
    ip: '127.0.98.11',
    underlayCidr: '127.0.98.0/24',
    podCIDR: '10.244.1.0/24',
    vtepMac: '02:00:00:00:00:01',
    clusterCidr: '10.244.0.0/16',
    vxlanPort: 8472,
    vni: 1,
    seed: 1,
    mtu: 1500,
    clock: monotonicClock,
    rng: new SeededRng(1),
  });
}

/** Datagrams per second from pod a to pod b on one bridge. */
function forwardRate(dp: NodeDataPlane): number {
  const a = dp.pods.get('default/a')!;
  const b = dp.pods.get('default/b')!;
  let got = 0;
  const sock = b.stack.bindUdp(9000, { message: () => got++ });
  const src = a.stack.bindUdp(0, { message: () => {} });
  const payload = Buffer.alloc(64);
  const t0 = performance.now();
  for (let i = 0; i < N; i++) a.stack.sendUdp(src.port, b.ip, 9000, payload);
  const secs = (performance.now() - t0) / 1000;
  sock.close();
  src.close();
  if (got !== N) throw new Error(`bench: ${got} of ${N} datagrams arrived`);
  return N / secs;
}

const median = (xs: number[]) => xs.slice().sort((x, y) => x - y)[Math.floor(xs.length / 2)];

export async function benchCapture(): Promise<Measure[]> {
  const dp = makeNode();
  dp.addPod({ namespace: 'default', name: 'a', uid: 'a', ip: '10.244.1.2' });
  dp.addPod({ namespace: 'default', name: 'b', uid: 'b', ip: '10.244.1.3' });
  forwardRate(dp); // warm up: ARP, JIT

  // Descriptors, not method reads: the stock methods go back onto the prototype unchanged.
  const { transmit, receive } = Object.getOwnPropertyDescriptors(NetDevice.prototype);
  const stock = { transmit, receive };
  // The device's link and dispatcher are private: the baseline reaches them as the stock methods do.
  type Ends = { link: FrameLink; dispatcher: FrameDispatcher };
  const bare = {
    transmit(this: NetDevice, frame: Buffer) {
      if (!this.up) return this.counters.drop('link-down');
      this.counters.txPackets++;
      this.counters.txBytes += frame.length;
      (this as unknown as Ends).link(frame, this);
    },
    receive(this: NetDevice, frame: Buffer) {
      if (!this.up) return this.counters.drop('link-down');
      this.counters.rxPackets++;
      this.counters.rxBytes += frame.length;
      (this as unknown as Ends).dispatcher(frame, this);
    },
  };
  const idle: number[] = [];
  const hookless: number[] = [];
  const capturing: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    idle.push(forwardRate(dp));
    Object.assign(NetDevice.prototype, bare);
    hookless.push(forwardRate(dp));
    Object.defineProperties(NetDevice.prototype, stock);
    const ac = new AbortController();
    const cap = runCapture([captureTargets(dp, 'bench', 1, () => undefined).get('cni0')!], { signal: ac.signal, emit: () => true });
    capturing.push(forwardRate(dp));
    ac.abort();
    await cap;
  }
  const idleRate = median(idle);
  const bareRate = median(hookless);
  const capRate = median(capturing);
  return [
    measure('same-node forwarding, capture support idle', idleRate, 'packets/s', 'the same data path with the capture/trace hooks removed', bareRate, `${N} UDP datagrams pod→cni0→pod in one process, median of ${ROUNDS}; ratio 1 = no cost`),
    measure('same-node forwarding while capturing cni0', capRate, 'packets/s', 'the same, nobody capturing', idleRate, 'every frame copied to the capture sink'),
  ];
}
