/**
 * kube-proxy engines at scale, per mode (iptables, ipvs, userspace):
 *
 * - sync: one full `update()` of 10,000 Services x 10 endpoints plus rendering
 *   the node's text view (`iptables-save -t nat` / `ipvsadm -Ln`), against the
 *   baseline of building the shared Service/EndpointSlice model alone (what
 *   every mode pays before writing a rule); also a resync after one endpoint
 *   changed (kube-proxy's partial sync: unchanged services keep their rules)
 *   against a full update() of the same state;
 * - decide: the mean cost of `decide()` for a first packet to a ClusterIP at
 *   10 Services against a Map lookup of the same (protocol, address, port)
 *   key (the least any service lookup costs), and at 10,000 Services against
 *   the same mode at 10 Services (how it scales: the iptables walk is
 *   indexed, so it should stay flat like IPVS' hash table).
 *
 * Run alone with `node --import tsx bench/services.ts [MODE...]` (e.g. `iptables`:
 * only that mode's rows). `npm run bench` runs it in a process of its own
 * (benchServicesApart, bench/apart.ts).
 */
import { SeededRng } from '../common/rng.ts';
import type { KubeObject } from '../control-plane/types.ts';
import { buildModel, createServiceProxyEngine, type AnyProxier, type ProxyMode } from '../service-proxy/index.ts';
import { measuresApart, runAsMain } from './apart.ts';
import { measure, timeMs, type Measure } from './results.ts';

const MODES: ProxyMode[] = ['iptables', 'ipvs', 'userspace'];

/** The ClusterIP of makeCluster's service i. */
const clusterIP = (i: number): string => `10.96.${Math.floor(i / 250) + 1}.${(i % 250) + 1}`;

/** `n` Services of `eps` endpoints each, spread over 3 nodes, with their EndpointSlices. */
export function makeCluster(n: number, eps: number): { services: KubeObject[]; slices: KubeObject[] } {
  const services: KubeObject[] = [];
  const slices: KubeObject[] = [];
  for (let i = 0; i < n; i++) {
    const name = `svc-${i}`;
    const meta = (nm: string) => ({ name: nm, namespace: 'default', uid: `u-${nm}`, resourceVersion: '1', creationTimestamp: '2026-11-25T11:30:00Z' });
    services.push({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: meta(name),
      spec: {
        type: i % 10 === 0 ? 'NodePort' : 'ClusterIP',
        clusterIP: clusterIP(i),
        ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080, ...(i % 10 === 0 ? { nodePort: 30000 + (i / 10) } : {}) }],
        selector: { app: name },
      },
    });
    const endpoints = Array.from({ length: eps }, (_, j) => {
      const k = i * eps + j;
      return { addresses: [`10.${244 + Math.floor(k / 65025)}.${Math.floor((k % 65025) / 255)}.${(k % 255) + 1}`], conditions: { ready: true, serving: true, terminating: false }, nodeName: `node-${(k % 3) + 1}` };
    });
    slices.push({
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { ...meta(`${name}-abcde`), labels: { 'kubernetes.io/service-name': name } },
      addressType: 'IPv4',
      endpoints,
      ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    } as unknown as KubeObject);
  }
  return { services, slices };
}

function engine(mode: ProxyMode): AnyProxier {
  return createServiceProxyEngine(mode, { nodeName: 'node-1', nodeIP: '192.168.0.11', localAddresses: ['10.244.1.1'], clock: { now: () => 0 }, rng: new SeededRng(1) });
}

function render(e: AnyProxier): number {
  return e.mode === 'ipvs' ? e.ipvsadmList().length : e.iptablesSave('nat').length;
}

/**
 * Cost per call (µs): the median of 5 rounds' means over `iters` calls each. The first packets after a warm-up
 * share the process with the collection of what the warm-up loaded (10,000 services' chains); a median of rounds
 * is the per-connection cost of a settled process, as the other rounds of this bench are.
 */
function perCallUs(fn: (i: number) => unknown, iters: number): number {
  for (let i = 0; i < Math.min(iters, 2000); i++) fn(i); // warm up
  const rounds: number[] = [];
  let sink = 0;
  for (let r = 0; r < 5; r++) {
    const t0 = performance.now();
    for (let i = r * iters; i < (r + 1) * iters; i++) if (fn(i)) sink++;
    rounds.push(((performance.now() - t0) * 1000) / iters);
  }
  if (sink < 0) throw new Error('unreachable');
  return rounds.sort((a, b) => a - b)[2];
}

function decideCost(e: AnyProxier, services: number, iters: number, trace = false): number {
  const dsts = Array.from({ length: services }, (_, s) => clusterIP(s));
  return perCallUs((i) => {
    const d = e.decide({ src: '10.244.1.5', dst: dsts[(i * 7919) % services], protocol: 'tcp', sport: 1024 + (i % 60000), dport: 80, localDst: false, fromLocalPod: true, trace });
    if (d && d.kind === 'dnat') e.connectionClosed(d.key);
    return d;
  }, iters);
}

export function benchServices(modes: readonly ProxyMode[] = MODES): Measure[] {
  const out: Measure[] = [];
  const big = makeCluster(10_000, 10);
  const small = makeCluster(10, 10);
  const modelMs = timeMs(() => buildModel(big.services, big.slices, 'node-1'), 3);
  const lookup = new Map<string, object>();
  for (const s of small.services) lookup.set(`tcp|${(s.spec as { clusterIP: string }).clusterIP}|80`, s);
  const smallDsts = small.services.map((s) => (s.spec as { clusterIP: string }).clusterIP);
  const mapUs = perCallUs((i) => lookup.get(`tcp|${smallDsts[i % 10]}|80`), 200_000);
  for (const mode of modes) {
    let e = engine(mode);
    const syncMs = timeMs(() => {
      e = engine(mode);
      e.update(big.services, big.slices);
      render(e);
    }, 3);
    out.push(measure(`services: full sync, 10,000 Services x 10 endpoints (${mode})`, syncMs, 'ms', 'building the Service/EndpointSlice model alone', modelMs, `update() + ${mode === 'ipvs' ? 'ipvsadm -Ln' : 'iptables-save -t nat'} text; median of 3`));
    const updateMs = timeMs(() => {
      e = engine(mode);
      e.update(big.services, big.slices);
    }, 3);
    out.push(measure(`services: full sync without the text, 10,000 Services x 10 endpoints (${mode})`, updateMs, 'ms', 'building the Service/EndpointSlice model alone', modelMs, `update() only: the ${mode === 'ipvs' ? 'ipvsadm' : 'iptables-save'} text is built when asked for; median of 3`));
    // One endpoint of one service changes: unchanged services keep their rules (iptables) / virtual servers (ipvs).
    const changed = big.slices.map((s, i) => (i === 5 ? ({ ...s, endpoints: (s as unknown as { endpoints: unknown[] }).endpoints.slice(1) } as unknown as KubeObject) : s));
    let flip = false;
    const resyncMs = timeMs(() => {
      flip = !flip;
      e.update(big.services, flip ? changed : big.slices);
    }, 5);
    out.push(measure(`services: resync after one endpoint change, 10,000 Services (${mode})`, resyncMs, 'ms', 'a full update() of the same state, without text', updateMs, 'update() only; median of 5'));
    // Warm: every service has been visited once (the rule texts quoted in decision steps are formatted on first use).
    decideCost(e, 10_000, 10_000, true);
    const at10k = decideCost(e, 10_000, 20_000);
    const traced10k = decideCost(e, 10_000, 20_000, true);
    const e10 = engine(mode);
    e10.update(small.services, small.slices);
    const at10 = decideCost(e10, 10, 20_000);
    out.push(measure(`services: decide() per new connection, 10 Services (${mode})`, at10, 'µs', 'a Map lookup of the same (protocol, address, port) key', mapUs, 'median of 5 rounds of 20,000 first packets to a ClusterIP, trace: false'));
    out.push(measure(`services: decide() per new connection, 10,000 Services (${mode})`, at10k, 'µs', `decide() at 10 Services (${mode})`, at10, 'median of 5 rounds of 20,000 first packets, trace: false; ratio ~1 = flat with the number of Services'));
    out.push(measure(`services: decide() with its steps, 10,000 Services (${mode})`, traced10k, 'µs', `the same without steps (trace: false)`, at10k, 'the human-readable rule path costs this much more'));
  }
  return out;
}

/**
 * The same figures measured in a process of their own: a per-connection cost of
 * a few microseconds is mostly cache misses, so it depends on what else the heap
 * holds. After the rest of `npm run bench` (two in-process nodes' TCP, BGP
 * speakers) the same decide() measured 2-3x what it costs in a fresh process, where an agent's
 * kube-proxy worker runs it.
 */
export function benchServicesApart(modes: readonly ProxyMode[] = MODES): Promise<Measure[]> {
  return measuresApart(import.meta.url, modes);
}

await runAsMain(import.meta.url, () => {
  const picked = process.argv.slice(2).filter((a): a is ProxyMode => (MODES as string[]).includes(a));
  return benchServices(picked.length ? picked : MODES);
});
