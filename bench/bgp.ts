/**
 * BGP convergence: N speakers (10 and 30) over real loopback TCP in this
 * process, each announcing its podCIDR; the time from starting them all until
 * every speaker has every other's route. Full mesh (N·(N-1)/2 sessions) versus
 * two route reflectors (2·(N-2)+1 sessions); each ratio is against the other
 * topology measured in the same run.
 */
import { BgpSpeaker } from '../bgp/index.ts';
import type { Logger } from '../common/log.ts';
import { measure, type Measure } from './results.ts';

const quiet: Logger = { debugEnabled: false, info() {}, warn() {}, error() {}, debug() {} };

async function converge(n: number, topology: 'mesh' | 'rr', net: string): Promise<number> {
  const ip = (i: number) => `${net}.${11 + i}`;
  const reflector = (i: number) => topology === 'rr' && i < 2;
  const speakers = Array.from({ length: n }, (_, i) =>
    new BgpSpeaker({ asn: 64512, routerId: ip(i), listen: { host: ip(i), port: 1179 }, holdTime: 9, connectRetryMs: 200, log: quiet, routeReflector: reflector(i) ? { clusterId: '244.0.0.1' } : undefined }),
  );
  const learned = speakers.map(() => new Set<string>());
  let complete = 0;
  let done!: () => void;
  const all = new Promise<void>((r) => (done = r));
  speakers.forEach((s, i) => {
    s.on('route-add', (prefix) => {
      const before = learned[i].size;
      learned[i].add(prefix);
      if (before < n - 1 && learned[i].size === n - 1 && ++complete === n) done();
    });
    s.announce(`10.${100 + Math.floor(i / 250)}.${i % 250}.0/24`, { nextHop: ip(i) });
    for (let j = 0; j < n; j++) {
      if (j === i) continue;
      if (topology === 'rr' && !reflector(i) && !reflector(j)) continue;
      s.addPeer({ address: ip(j), port: 1179, asn: 64512, rrClient: reflector(i) && !reflector(j) });
    }
  });
  const t0 = performance.now();
  await Promise.all(speakers.map((s) => s.start()));
  const timeout = new Promise<never>((_, rej) => setTimeout(() => rej(new Error(`bgp bench: ${topology} ${n} did not converge`)), 60_000).unref());
  await Promise.race([all, timeout]);
  const ms = performance.now() - t0;
  await Promise.all(speakers.map((s) => s.stop()));
  return ms;
}

export async function benchBgp(): Promise<Measure[]> {
  const out: Measure[] = [];
  for (const [n, net] of [[10, '127.0.121'], [30, '127.0.122']] as const) {
    const mesh = await converge(n, 'mesh', net);
    const rr = await converge(n, 'rr', net);
    out.push(measure(`BGP convergence, ${n} nodes, full mesh`, mesh, 'ms', `the same with 2 route reflectors`, rr, `${(n * (n - 1)) / 2} sessions over loopback TCP`));
    out.push(measure(`BGP convergence, ${n} nodes, 2 route reflectors`, rr, 'ms', `the same in full mesh`, mesh, `${2 * (n - 2) + 1} sessions`));
  }
  return out;
}
