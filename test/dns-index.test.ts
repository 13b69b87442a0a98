/**
 * CoreDNS's index kept from informer events answers as one built at once from
 * the final lists: seeded random adds, updates (a slice moved to another
 * Service, a Service headless or not) and deletes of Services, EndpointSlices and
 * Namespaces, then A, SRV and PTR questions for every name and address asked
 * of both.
 */
import test from 'ava';
import { SeededRng } from '../common/rng.ts';
import { DnsIndex } from '../apps/dns/dns-index.ts';
import { answerQuery } from '../apps/dns/kubernetes.ts';
import type { EndpointSlice, Service } from '../control-plane/service-resources.ts';
import type { KubeObject } from '../control-plane/types.ts';
import { DnsType, dnsFlags, type DnsMessage } from '../packet/dns.ts';

const NS = ['default', 'shop'];
const NAMES = ['a', 'b', 'c', 'd'];
const svc = (ns: string, name: string, ip: string): Service => ({ metadata: { namespace: ns, name }, spec: { clusterIP: ip, ports: [{ name: 'http', port: 80 }] } }) as unknown as Service;
const slice = (ns: string, name: string, owner: string, ips: string[], ready: boolean): EndpointSlice =>
  ({ metadata: { namespace: ns, name, labels: { 'kubernetes.io/service-name': owner } }, addressType: 'IPv4', endpoints: ips.map((ip) => ({ addresses: [ip], conditions: { ready } })), ports: [{ name: 'http', port: 8080, protocol: 'TCP' }] }) as unknown as EndpointSlice;

test('incremental puts and deletes answer as the final lists do', (t) => {
  const rng = new SeededRng(16);
  const pick = <T>(xs: readonly T[]) => xs[rng.int(0, xs.length - 1)];
  const idx = new DnsIndex();
  const services = new Map<string, Service>();
  const slices = new Map<string, EndpointSlice>();
  const namespaces = new Map<string, KubeObject>();
  for (let step = 0; step < 2000; step++) {
    const ns = pick(NS);
    const r = rng.int(0, 9);
    if (r < 3) {
      // A ClusterIP is one Service's (the apiserver's allocator): derived from its name.
      const name = pick(NAMES);
      const s = svc(ns, name, rng.int(0, 1) ? 'None' : `10.96.${NS.indexOf(ns)}.${NAMES.indexOf(name) + 1}`);
      services.set(`${ns}/${s.metadata.name}`, s);
      idx.putService(s);
    } else if (r < 4) {
      const key = `${ns}/${pick(NAMES)}`;
      const s = services.get(key);
      if (s) {
        services.delete(key);
        idx.deleteService(s);
      }
    } else if (r < 7) {
      const ips = Array.from({ length: rng.int(0, 3) }, () => `10.244.1.${rng.int(1, 8)}`);
      const s = slice(ns, `sl-${rng.int(1, 5)}`, pick(NAMES), ips, rng.int(0, 3) > 0);
      slices.set(`${ns}/${s.metadata.name}`, s);
      idx.putSlice(s);
    } else if (r < 8) {
      const key = `${ns}/sl-${rng.int(1, 5)}`;
      const s = slices.get(key);
      if (s) {
        slices.delete(key);
        idx.deleteSlice(s);
      }
    } else if (r < 9) {
      const n = { metadata: { name: ns } } as KubeObject;
      namespaces.set(ns, n);
      idx.putNamespace(n);
    } else if (namespaces.has(ns)) {
      idx.deleteNamespace(namespaces.get(ns)!);
      namespaces.delete(ns);
    }
    if (step % 100 !== 99) continue;
    const fresh = DnsIndex.of({ services: [...services.values()], slices: [...slices.values()], namespaces: [...namespaces.values()] });
    t.deepEqual(idx.size, fresh.size);
    const questions: [string, number][] = [];
    for (const n of NS) for (const name of NAMES) questions.push([`${name}.${n}.svc.cluster.local`, DnsType.A], [`${name}.${n}.svc.cluster.local`, DnsType.SRV], [`_http._tcp.${name}.${n}.svc.cluster.local`, DnsType.SRV]);
    for (let i = 1; i <= 8; i++) questions.push([`10-244-1-${i}.a.shop.svc.cluster.local`, DnsType.A], [`${i}.1.244.10.in-addr.arpa`, DnsType.PTR], [`${i}.0.96.10.in-addr.arpa`, DnsType.PTR], [`${i}.1.96.10.in-addr.arpa`, DnsType.PTR]);
    for (const [name, type] of questions) {
      const q: DnsMessage = { id: 1, flags: dnsFlags({ rd: true }), questions: [{ name, type, class: 1 }], answers: [], authorities: [], additionals: [] };
      t.deepEqual(answerQuery(idx, q, 1), answerQuery(fresh, q, 1), `${name} ${type} at step ${step}`);
    }
  }
});
