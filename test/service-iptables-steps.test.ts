/**
 * kube-proxy iptables mode, a sync in steps (as the engine's worker runs it,
 * so that a first packet's decision never waits for a whole sync): between
 * the steps every decision, and every view, comes from the previous, complete
 * rules, never from the half-built new ones; after the last step (the swap)
 * from the new rules, which are exactly what a sync in one go builds. Both a
 * full sync (every service new, past the large-cluster threshold) and a
 * partial one (one service changed, one added), and the same through the
 * worker's EngineServer with decide messages handled between its steps.
 */
import test from 'ava';
import type { KubeObject } from '../control-plane/types.ts';
import { createServiceProxyEngine, type Decision } from '../service-proxy/index.ts';
import type { IptablesProxier } from '../service-proxy/iptables-mode.ts';
import { ipv4ToInt } from '../packet/addr.ts';
import { EngineServer, ServiceAddressSet, type EngineSummary, type FromEngine } from '../service-proxy/worker-protocol.ts';
import { engineOpts, pkt, slice, svc } from './helpers/service-fixtures.ts';

const WEB_VIP = '10.96.0.10';
const API_VIP = '10.96.0.20';

function web(ep: string): KubeObject[] {
  return [svc('web', { clusterIP: WEB_VIP, ports: [{ name: 'http', port: 80 }] }), slice('web', [[ep, 'node-2']], [{ name: 'http', port: 8080 }])];
}

/** `n` more services of one endpoint each (10.96.1.0/24 upwards). */
function others(n: number, from = 0): { services: KubeObject[]; slices: KubeObject[] } {
  const services: KubeObject[] = [];
  const slices: KubeObject[] = [];
  for (let i = from; i < from + n; i++) {
    services.push(svc(`svc-${i}`, { clusterIP: `10.96.${1 + (i >> 8)}.${i & 255}`, ports: [{ name: 'http', port: 80 }] }));
    slices.push(slice(`svc-${i}`, [[`10.244.${2 + (i >> 8)}.${i & 255}`, 'node-2']], [{ name: 'http', port: 8080 }]));
  }
  return { services, slices };
}

const iptables = () => createServiceProxyEngine('iptables', engineOpts(1));

function dnatTo(d: Decision | null): string {
  return d?.kind === 'dnat' ? `${d.to.ip}:${d.to.port}` : String(d?.kind ?? null);
}

/** Steps the sync to its end, asking at every step what the old rules answer; the number of steps. */
function stepThrough(e: IptablesProxier, services: KubeObject[], slices: KubeObject[], between: () => void): number {
  let n = 0;
  for (const steps = e.updateSteps(services, slices, 0); !steps.next().done; n++) between();
  return n;
}

for (const c of [
  { name: 'a full sync (1,500 new services, past the large-cluster threshold)', more: 1500, keep: 0 },
  { name: 'a partial sync (one service changed, one added, 300 kept)', more: 0, keep: 300 },
]) {
  test(`${c.name} in steps: decisions between the steps come from the previous rules, after the swap from the new ones`, (t) => {
    const kept = others(c.keep);
    const [webSvc, webOld] = web('10.244.2.5');
    const e = iptables();
    e.update([webSvc, ...kept.services], [webOld, ...kept.slices]);
    const before = e.iptablesSave('nat');
    t.is(dnatTo(e.decide(pkt('10.244.1.4', WEB_VIP, 80))), '10.244.2.5:8080');

    const more = others(c.more, c.keep);
    const [, webNew] = web('10.244.3.7');
    const api = [svc('api', { clusterIP: API_VIP, ports: [{ name: 'grpc', port: 9000 }] }), slice('api', [['10.244.3.9', 'node-2']], [{ name: 'grpc', port: 9000 }])];
    const services = [webSvc, ...kept.services, ...more.services, api[0]];
    const slices = [webNew, ...kept.slices, ...more.slices, api[1]];
    const seen = new Set<string>();
    let sport = 41000;
    const steps = stepThrough(e, services, slices, () => {
      seen.add(`web ${dnatTo(e.decide(pkt('10.244.1.4', WEB_VIP, 80, { sport: sport++ })))}`);
      seen.add(`api ${dnatTo(e.decide(pkt('10.244.1.4', API_VIP, 9000, { sport: sport++ })))}`);
      if (c.keep) seen.add(`kept ${dnatTo(e.decide(pkt('10.244.1.4', '10.96.1.7', 80, { sport: sport++ })))}`);
    });
    t.true(steps > 5, `only ${steps} steps`);
    t.deepEqual([...seen].sort(), ['api null', ...(c.keep ? ['kept 10.244.2.7:8080'] : []), 'web 10.244.2.5:8080']);
    t.not(e.iptablesSave('nat'), before);
    t.is(dnatTo(e.decide(pkt('10.244.1.4', WEB_VIP, 80))), '10.244.3.7:8080');
    t.is(dnatTo(e.decide(pkt('10.244.1.4', API_VIP, 9000))), '10.244.3.9:9000');
    const fresh = iptables();
    fresh.update(services, slices);
    t.is(e.iptablesSave('nat'), fresh.iptablesSave('nat'));
    t.is(e.iptablesSave('filter'), fresh.iptablesSave('filter'));
  });
}

test('iptables-save between the steps of a sync prints the previous table', (t) => {
  const e = iptables();
  const [webSvc, webOld] = web('10.244.2.5');
  e.update([webSvc], [webOld]);
  const before = e.iptablesSave('nat');
  const more = others(200);
  const saves = new Set<string>();
  stepThrough(e, [webSvc, ...more.services], [webOld, ...more.slices], () => saves.add(e.iptablesSave('nat')));
  t.deepEqual([...saves], [before]);
  t.not(e.iptablesSave('nat'), before);
});

test("the worker's EngineServer answers a decision between a sync's steps from the previous rules, and after the swap from the new", (t) => {
  const posted: FromEngine[] = [];
  const server = new EngineServer(iptables(), (m) => posted.push(m));
  const [webSvc, webOld] = web('10.244.2.5');
  server.handle({ t: 'objects', kind: 'services', put: [webSvc], del: [] });
  server.handle({ t: 'objects', kind: 'endpointslices', put: [webOld], del: [] });
  server.sync();
  const more = others(1500);
  const [, webNew] = web('10.244.3.7');
  server.handle({ t: 'objects', kind: 'services', put: more.services, del: [] });
  server.handle({ t: 'objects', kind: 'endpointslices', put: [webNew, ...more.slices], del: [] });
  posted.length = 0;
  const steps = server.syncSteps(0);
  let id = 0;
  const ask = () => server.handle({ t: 'decide', id: ++id, pkt: { ...pkt('10.244.1.4', WEB_VIP, 80, { sport: 42000 + id }), trace: false } });
  let n = 0;
  while (!steps.next().done) {
    if (n++ % 10 === 0) ask();
  }
  // Before the swap the old endpoint; after it (the summary's last steps) the new one; nothing else, no going back.
  const answers = posted.filter((m) => m.t === 'decision').map((m) => (m.t === 'decision' ? dnatTo(m.d) : ''));
  const old = answers.filter((a) => a === '10.244.2.5:8080').length;
  t.true(old > 3, `${old} decisions from the old rules during ${n} steps`);
  t.deepEqual(answers.slice(old), answers.slice(old).map(() => '10.244.3.7:8080'));
  const summary = posted.find((m) => m.t === 'summary');
  t.is(summary?.t === 'summary' ? summary.s.services : -1, 1501);
  t.is(posted.findIndex((m) => m.t === 'summary'), posted.length - 1, 'the summary comes after every decision asked during the sync');
  ask();
  const last = posted[posted.length - 1];
  t.is(last.t === 'decision' ? dnatTo(last.d) : '', '10.244.3.7:8080');
});

test("the worker's summaries carry only what changed: the data plane's pre-filter applied from them is the Services' own, and a restarted worker's first summary replaces it", (t) => {
  const posted: FromEngine[] = [];
  const post = (m: FromEngine) => posted.push(m);
  let server = new EngineServer(iptables(), post);
  const addresses = new ServiceAddressSet();
  const summaries = (): EngineSummary[] => posted.flatMap((m) => (m.t === 'summary' ? [m.s] : []));
  const nodePort = (name: string, ip: string, port: number) => svc(name, { type: 'NodePort', clusterIP: ip, ports: [{ name: 'http', port: 80, nodePort: port }] });
  const kept = others(300);
  const syncWith = (services: KubeObject[]) => {
    posted.length = 0;
    server.handle({ t: 'objects', kind: 'services', put: services, del: [] });
    server.sync();
    const [s] = summaries();
    addresses.apply(s);
    return s;
  };
  const first = syncWith([...kept.services, nodePort('np-a', '10.96.9.1', 30001)]);
  t.is(first.vips?.add.length, 301);
  t.true(first.vips?.reset);
  t.deepEqual(first.nodePorts, { add: Uint32Array.of(30001), del: Uint32Array.of(), reset: true });
  t.deepEqual(first.sockets, [{ port: 30001, proto: 'tcp' }]);
  // Unchanged Services: nothing of them goes to the thread.
  const same = syncWith([]);
  t.deepEqual([same.vips, same.nodePorts, same.sockets], [undefined, undefined, undefined]);
  // One NodePort Service replaced by another: just that.
  server.handle({ t: 'objects', kind: 'services', put: [], del: ['default/np-a'] });
  const swapped = syncWith([nodePort('np-b', '10.96.9.2', 30002)]);
  t.deepEqual(swapped.vips, { add: Uint32Array.of(ipv4ToInt('10.96.9.2')), del: Uint32Array.of(ipv4ToInt('10.96.9.1')) });
  t.deepEqual(swapped.nodePorts, { add: Uint32Array.of(30002), del: Uint32Array.of(30001) });
  t.deepEqual(swapped.sockets, [{ port: 30002, proto: 'tcp' }]);
  const local = () => true;
  t.false(addresses.wants(ipv4ToInt('10.96.9.1'), 80, local));
  t.true(addresses.wants(ipv4ToInt('10.96.9.2'), 80, local));
  t.true(addresses.wants(ipv4ToInt('10.96.1.7'), 80, local));
  t.false(addresses.wants(ipv4ToInt('10.1.1.1'), 30001, local));
  t.true(addresses.wants(ipv4ToInt('10.1.1.1'), 30002, local));
  // A restarted worker (a new server) holding fewer Services: its first summary replaces the thread's sets.
  server = new EngineServer(iptables(), post);
  const restarted = syncWith(others(10).services);
  t.true(restarted.vips?.reset);
  t.true(addresses.wants(ipv4ToInt('10.96.1.9'), 80, local));
  t.false(addresses.wants(ipv4ToInt('10.96.1.10'), 80, local));
  t.false(addresses.wants(ipv4ToInt('10.96.9.2'), 80, local));
  t.false(addresses.wants(ipv4ToInt('10.1.1.1'), 30002, local));
});
