/**
 * What control-plane work costs the data plane when both share one event
 * loop, as they do in a node agent: a pod on one in-process node pings a pod
 * on another (real VXLAN datagrams on 127.0.57.0/24) every 2 ms, and the
 * longest wait between two replies is taken while kube-proxy's iptables
 * engine, in the same process, does a full sync of 10,000 Services x 10
 * endpoints, and while it resyncs after one endpoint changed, against the
 * same with nothing else running.
 * Every millisecond of a sync is a millisecond no packet moves: the figures
 * say how much a worker thread for the control plane would buy.
 */
import { monotonicClock } from '../common/clock.ts';
import { SeededRng } from '../common/rng.ts';
import type { KubeObject } from '../control-plane/types.ts';
import { ping } from '../pod-tools/ping.ts';
import { createServiceProxyEngine } from '../service-proxy/index.ts';
import { measure, type Measure } from './results.ts';
import { makeCluster } from './services.ts';
import { twoNodes } from './two-nodes.ts';

const NET = '127.0.57';

/**
 * The longest wait (ms) between two consecutive echo replies of 150 pings sent 2 ms apart; `during` runs 60 ms
 * after the first. A gap, not a round trip: a stall delays whatever is due while it lasts, whether or not a
 * ping happened to be in flight when it began.
 */
async function worstGap(pod: Parameters<typeof ping>[0]['pod'], dst: string, during?: () => void): Promise<number> {
  const replies: number[] = [];
  let out = '';
  const timer = during ? setTimeout(during, 60) : undefined;
  await ping({
    pod,
    argv: ['ping', '-c', '150', '-i', '0.002', dst],
    stdout: (s) => {
      out += s;
      for (const line of s.split('\n')) if (/bytes from/.test(line)) replies.push(performance.now());
    },
    stderr: (s) => (out += s),
    signal: new AbortController().signal,
    clock: monotonicClock,
    rng: new SeededRng(3),
  });
  clearTimeout(timer);
  if (replies.length < 100) throw new Error(`only ${replies.length} of 150 pings answered:\n${out.slice(-2000)}`);
  let worst = 0;
  for (let i = 1; i < replies.length; i++) worst = Math.max(worst, replies[i] - replies[i - 1]);
  return worst;
}

export async function benchSyncStall(): Promise<Measure[]> {
  const lab = await twoNodes(`${NET}.0/24`, 57);
  const a = lab.a;
  try {
    const big = makeCluster(10_000, 10);
    const changed = big.slices.map((s, i) => (i === 5 ? ({ ...s, endpoints: (s as unknown as { endpoints: unknown[] }).endpoints.slice(1) } as unknown as KubeObject) : s));
    const engine = createServiceProxyEngine('iptables', { nodeName: 'node-1', nodeIP: `${NET}.11`, localAddresses: ['10.244.1.1'], clock: monotonicClock, rng: new SeededRng(1) });
    await worstGap(a, '10.244.2.2'); // warm: ARP, the JIT
    const idle = await worstGap(a, '10.244.2.2');
    const full = await worstGap(a, '10.244.2.2', () => engine.update(big.services, big.slices));
    const resync = await worstGap(a, '10.244.2.2', () => engine.update(big.services, changed));
    return [
      measure('data plane during control-plane work: longest wait between pod ping replies while kube-proxy fully syncs 10,000 Services', full, 'ms', 'the same with nothing else running', idle, 'iptables engine in the agent\'s event loop; 150 pings 2 ms apart'),
      measure('data plane during control-plane work: longest wait between pod ping replies while kube-proxy resyncs one endpoint change at 10,000 Services', resync, 'ms', 'the same with nothing else running', idle, 'a partial sync: unchanged Services are reused'),
    ];
  } finally {
    await lab.close();
  }
}
