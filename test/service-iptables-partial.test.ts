/**
 * kube-proxy iptables mode, partial syncs: after any sequence of Service and
 * EndpointSlice additions, removals and updates, the engine that re-rendered
 * only what changed (and built its service chains lazily, when a packet walked
 * into them) prints exactly the `iptables-save` / restore text of an engine
 * that rendered the final state from scratch, that text is the one the rule
 * objects themselves format to, and both engines decide alike. Unchanged
 * services keep their objects between syncs, as informer caches keep them, so
 * the engine's reuse of unchanged service ports and shared chains is what runs.
 * Sequences are random from fixed seeds.
 */
import test from 'ava';
import { SeededRng } from '../common/rng.ts';
import type { KubeObject } from '../control-plane/types.ts';
import { createServiceProxyEngine, type Decision } from '../service-proxy/index.ts';
import { strcmpOrder, type IptablesProxier } from '../service-proxy/iptables-mode.ts';
import { RuleWalker } from '../service-proxy/iptables/evaluate.ts';
import { formatIptablesSave, rule } from '../service-proxy/iptables/rules.ts';
import { engineOpts, slice, svc, type Ep, type SvcOpts } from './helpers/service-fixtures.ts';

/** A SeededRng whose stream can be restarted, so two engines can be offered the same draws. */
class ReseedableRng extends SeededRng {
  private inner = new SeededRng(0);

  reseed(seed: number): void {
    this.inner = new SeededRng(seed);
  }

  override next(): number {
    return this.inner.next();
  }

  override int(min: number, max: number): number {
    return this.inner.int(min, max);
  }
}

interface SvcState {
  name: string;
  opts: SvcOpts;
  eps: Ep[];
}

const NODES = ['node-1', 'node-2', 'node-3'];

function pick<T>(rng: SeededRng, list: readonly T[]): T {
  return list[rng.int(0, list.length - 1)];
}

function randomEndpoints(rng: SeededRng, n: number, base: number): Ep[] {
  const eps: Ep[] = [];
  for (let i = 0; i < n; i++) eps.push([`10.244.${rng.int(1, 3)}.${(base + i * 7) % 250 + 2}`, pick(rng, NODES), !rng.chance(0.15), rng.chance(0.1)]);
  return eps;
}

function randomService(rng: SeededRng, id: number): SvcState {
  const nodePort = rng.chance(0.4);
  const ports: SvcOpts['ports'] = [{ name: 'http', port: 80, protocol: 'TCP', ...(nodePort ? { nodePort: 30000 + id * 2 } : {}) }];
  if (rng.chance(0.3)) ports.push({ name: 'dns', port: 53, protocol: 'UDP', ...(nodePort ? { nodePort: 30001 + id * 2 } : {}) });
  return {
    name: `svc-${id}`,
    opts: {
      ns: pick(rng, ['default', 'kube-system', 'team-a']),
      type: nodePort ? 'NodePort' : 'ClusterIP',
      clusterIP: `10.96.${Math.floor(id / 200)}.${(id % 200) + 10}`,
      ports,
      affinity: rng.chance(0.25) ? rng.int(10, 10800) : undefined,
      etp: nodePort && rng.chance(0.4) ? 'Local' : undefined,
      itp: rng.chance(0.2) ? 'Local' : undefined,
    },
    eps: randomEndpoints(rng, rng.int(0, 5), rng.int(0, 249)),
  };
}

/** One random change to one service: endpoints come and go, readiness flips, the spec changes. */
function mutate(rng: SeededRng, s: SvcState): SvcState {
  const eps = s.eps.map((e) => [...e] as Ep);
  switch (rng.int(0, 5)) {
    case 0:
      eps.push(...randomEndpoints(rng, 1, rng.int(0, 249)));
      break;
    case 1:
      if (eps.length) eps.splice(rng.int(0, eps.length - 1), 1);
      break;
    case 2:
      if (eps.length) {
        const e = eps[rng.int(0, eps.length - 1)];
        e[2] = !e[2];
      }
      break;
    case 3:
      return { ...s, eps, opts: { ...s.opts, affinity: s.opts.affinity ? undefined : rng.int(10, 10800) } };
    case 4:
      return { ...s, eps, opts: { ...s.opts, itp: s.opts.itp === 'Local' ? 'Cluster' : 'Local', etp: s.opts.type === 'NodePort' ? pick(rng, ['Local', 'Cluster'] as const) : undefined } };
    default:
      return { ...s, eps: randomEndpoints(rng, rng.int(0, 5), rng.int(0, 249)) };
  }
  return { ...s, eps };
}

/** Objects per state, made once: an unchanged service hands the engine the very objects of the last sync, as an informer's cache does. */
const made = new WeakMap<SvcState, { service: KubeObject; slice: KubeObject }>();

function objects(state: Map<string, SvcState>): { services: KubeObject[]; slices: KubeObject[] } {
  const services: KubeObject[] = [];
  const slices: KubeObject[] = [];
  for (const s of state.values()) {
    let o = made.get(s);
    if (!o) {
      o = { service: svc(s.name, s.opts), slice: slice(s.name, s.eps, s.opts.ports.map((p) => ({ name: p.name, port: p.port, protocol: p.protocol })), s.opts.ns) };
      made.set(s, o);
    }
    services.push(o.service);
    slices.push(o.slice);
  }
  return { services, slices };
}

function iptables(seed: number): { e: IptablesProxier; rng: ReseedableRng } {
  const rng = new ReseedableRng(seed);
  const e = createServiceProxyEngine('iptables', engineOpts(seed, { rng }));
  return { e, rng };
}

/** The first packet `i` of a probe, to a random service address of the state (ClusterIP or NodePort). */
function probe(rng: SeededRng, state: Map<string, SvcState>, i: number) {
  const s = pick(rng, [...state.values()]);
  const port = pick(rng, s.opts.ports);
  const protocol = port.protocol === 'UDP' ? ('udp' as const) : ('tcp' as const);
  // A new source each time: ClientIP affinity state (per source) is then equally empty in both engines.
  const src = rng.chance(0.5) ? `10.244.1.${(i % 200) + 20}` : `172.16.${Math.floor(i / 200) % 250}.${(i % 200) + 1}`;
  if (port.nodePort && rng.chance(0.5)) return { src, dst: '192.168.0.11', protocol, sport: 40000 + (i % 20000), dport: port.nodePort, localDst: true, fromLocalPod: src.startsWith('10.244.1.') };
  return { src, dst: s.opts.clusterIP, protocol, sport: 40000 + (i % 20000), dport: port.port, localDst: false, fromLocalPod: src.startsWith('10.244.1.') };
}

function sameDecision(a: Decision | null, b: Decision | null): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

for (const seed of [1, 2, 3, 4]) {
  test(`seed ${seed}: partial syncs over random add/remove/update sequences print what a render from scratch prints`, (t) => {
    const rng = new SeededRng(seed * 7919);
    const state = new Map<string, SvcState>();
    let nextId = 0;
    for (let i = 0; i < 25; i++) {
      const s = randomService(rng, nextId++);
      state.set(s.name, s);
    }
    const { e, rng: erng } = iptables(seed);
    let init = objects(state);
    e.update(init.services, init.slices);
    let probes = 0;
    const kinds = new Map<string, number>();
    for (let step = 0; step < 60; step++) {
      const op = rng.int(0, 9);
      const names = [...state.keys()];
      if (op === 0 || names.length < 5) {
        const s = randomService(rng, nextId++);
        state.set(s.name, s);
      } else if (op === 1) {
        state.delete(pick(rng, names));
      } else {
        const name = pick(rng, names);
        state.set(name, mutate(rng, state.get(name)!));
      }
      init = objects(state);
      e.update(init.services, init.slices);
      const fresh = iptables(seed);
      fresh.e.update(init.services, init.slices);
      // Packets into some services between syncs: their chains are loaded into the walker, others stay unrendered.
      for (let k = 0; k < 8; k++) {
        const p = probe(rng, state, probes++);
        const draws = rng.int(1, 0x7fffffff);
        erng.reseed(draws);
        fresh.rng.reseed(draws);
        const a = e.decide(p);
        const b = fresh.e.decide(p);
        kinds.set(a?.kind ?? 'none', (kinds.get(a?.kind ?? 'none') ?? 0) + 1);
        if (!sameDecision(a, b)) return t.fail(`step ${step}: decisions differ for ${JSON.stringify(p)}:\n${JSON.stringify(a)}\n${JSON.stringify(b)}`);
      }
      for (const table of ['nat', 'filter'] as const) {
        const text = e.iptablesSave(table);
        if (text !== fresh.e.iptablesSave(table)) return t.fail(`step ${step}: iptables-save -t ${table} differs from a full render`);
        if (text !== formatIptablesSave(fresh.e.table(table))) return t.fail(`step ${step}: iptables-save -t ${table} differs from the rule objects' own text`);
        if (e.iptablesRestore(table) !== fresh.e.iptablesRestore(table)) return t.fail(`step ${step}: the restore payload for ${table} differs`);
      }
    }
    // The probes reached services with endpoints and without (REJECT, or DROP under Local policies).
    t.true((kinds.get('dnat') ?? 0) > 100, JSON.stringify([...kinds]));
    t.true((kinds.get('reject') ?? 0) + (kinds.get('drop') ?? 0) > 10, JSON.stringify([...kinds]));
  });
}

test('crossing the large-cluster threshold (1000 endpoints) both ways re-renders every service, as a full sync', (t) => {
  const rng = new SeededRng(99);
  const state = new Map<string, SvcState>();
  for (let i = 0; i < 10; i++) {
    const s = randomService(rng, i);
    state.set(s.name, s);
  }
  const { e } = iptables(5);
  const apply = () => {
    const o = objects(state);
    e.update(o.services, o.slices);
    const fresh = iptables(5);
    fresh.e.update(o.services, o.slices);
    for (const table of ['nat', 'filter'] as const) t.is(e.iptablesSave(table), fresh.e.iptablesSave(table));
    t.is(e.iptablesSave('nat'), formatIptablesSave(fresh.e.table('nat')));
  };
  apply();
  const eps: Ep[] = [];
  for (let i = 0; i < 1001; i++) eps.push([`10.245.${Math.floor(i / 250)}.${(i % 250) + 1}`, pick(rng, NODES)]);
  state.set('big', { name: 'big', opts: { clusterIP: '10.96.50.1', ports: [{ name: 'http', port: 80, protocol: 'TCP' }] }, eps });
  apply();
  t.false(e.iptablesSave('nat').includes(' -> '), 'large-cluster mode: no per-endpoint comments');
  state.delete('big');
  apply();
  t.true(e.iptablesSave('nat').includes(' -> '));
});

test('the walker follows a replaced chain, never a link to its old rules', (t) => {
  const w = new RuleWalker(new SeededRng(1), { now: () => 0 });
  const p = () => ({ src: 1, srcStr: '0.0.0.1', dst: 2, dstStr: '0.0.0.2', proto: 'tcp' as const, sport: 1, dport: 80, mark: 0, ctDnat: false });
  const env = { isLocal: () => false };
  w.load('nat', [rule('nat', 'PREROUTING').jump('KUBE-SVC-A')]);
  w.setChain('nat', 'KUBE-SVC-A', [rule('nat', 'KUBE-SVC-A').dnat('10.244.1.2', 80)]);
  t.like(w.walk('nat', 'PREROUTING', p(), env, null), { kind: 'dnat', ip: '10.244.1.2' });
  w.setChain('nat', 'KUBE-SVC-A', [rule('nat', 'KUBE-SVC-A').dnat('10.244.9.9', 80)]);
  t.like(w.walk('nat', 'PREROUTING', p(), env, null), { kind: 'dnat', ip: '10.244.9.9' });
  w.setChain('nat', 'KUBE-SVC-A', []);
  t.like(w.walk('nat', 'PREROUTING', p(), env, null), { kind: 'accept' });
  t.like(w.walk('nat', 'PREROUTING', p(), env, null), { kind: 'accept' }, 'the miss is remembered');
  w.setChain('nat', 'KUBE-SVC-A', [rule('nat', 'KUBE-SVC-A').dnat('10.244.5.5', 80)]);
  t.like(w.walk('nat', 'PREROUTING', p(), env, null), { kind: 'dnat', ip: '10.244.5.5' }, 'a chain added after a miss is found');
  w.setChain('nat', 'KUBE-SVC-A', []);
  // A chain loaded on demand the first time a jump misses it.
  let asked = 0;
  w.onMissingChain = (_table, chain) => {
    asked++;
    w.setChain('nat', chain, [rule('nat', chain).dnat('10.244.3.3', 80)]);
    return true;
  };
  t.like(w.walk('nat', 'PREROUTING', p(), env, null), { kind: 'dnat', ip: '10.244.3.3' });
  t.like(w.walk('nat', 'PREROUTING', p(), env, null), { kind: 'dnat', ip: '10.244.3.3' });
  t.is(asked, 1);
});

test('chain names are listed in strcmp order, as libiptc keeps them', (t) => {
  const rng = new SeededRng(11);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567-_';
  const names = ['KUBE-SERVICES', 'KUBE-SEP-', 'KUBE-SEP', 'KUBE-SEPA', 'KUBE-MARK-MASQ', 'KUBE-PROXY-CANARY', 'KUBE-SERVICES', 'x'.repeat(40), `${'x'.repeat(39)}y`];
  for (let i = 0; i < 3000; i++) {
    let s = pick(rng, ['KUBE-SEP-', 'KUBE-SVC-', 'KUBE-EXT-', 'KUBE-SVL-', 'KUBE-', '']);
    const len = rng.int(0, 34);
    for (let j = 0; j < len; j++) s += alphabet[rng.int(0, alphabet.length - 1)];
    names.push(s);
  }
  const want = [...names].sort();
  t.deepEqual(strcmpOrder(names).map((i) => names[i]), want);
  const wide = [...names.slice(0, 50), 'KUBE-SÉP', 'KUBE-SEQ'];
  t.deepEqual(strcmpOrder(wide).map((i) => wide[i]), [...wide].sort(), 'non-ASCII names fall back to comparing strings');
  // kube-proxy's names: few prefixes, so they sort on one number each; a small alphabet makes many alike in their
  // first 13 characters, and duplicates keep their index order (the first declaration is the one printed).
  const kube: string[] = ['KUBE-SERVICES', 'KUBE-NODEPORTS', 'KUBE-POSTROUTING', 'KUBE-MARK-MASQ', 'KUBE-PROXY-CANARY', 'KUBE-SEP', 'KUBE-SEP-', 'KUBE-'];
  for (let i = 0; i < 20_000; i++) {
    let s = pick(rng, ['KUBE-SEP-', 'KUBE-SVC-', 'KUBE-EXT-', 'KUBE-SVL-', 'KUBE-FW-']);
    const len = rng.int(0, 18);
    for (let j = 0; j < len; j++) s += 'AB2-'[rng.int(0, 3)];
    kube.push(s);
  }
  const stable = kube.map((_, i) => i).sort((a, b) => (kube[a] < kube[b] ? -1 : kube[a] > kube[b] ? 1 : 0));
  t.deepEqual(strcmpOrder(kube), stable);
});
