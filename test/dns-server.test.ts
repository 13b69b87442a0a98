/**
 * What the CoreDNS app answers (apps/dns/kubernetes.ts), from fixed cluster
 * objects: A for Services (ClusterIP and headless), SRV for named ports with
 * additional A records, endpoint and pod names, PTR for ClusterIPs and
 * endpoint addresses, NXDOMAIN and NODATA with the SOA, SERVFAIL outside the
 * zone, FORMERR and NOTIMP; plus the pod side: resolv.conf and the search list.
 */
import test from 'ava';
import { answerQuery, type ClusterObjects } from '../apps/dns/kubernetes.ts';
import type { EndpointSlice, Service } from '../control-plane/service-resources.ts';
import type { KubeObject } from '../control-plane/types.ts';
import { DnsRcode, DnsType, dnsFlags, parseDns, reverseName, serializeDns, type DnsMessage } from '../packet/dns.ts';
import { formatResolvConf, kubeletResolvConf, searchCandidates } from '../pod-tools/resolver.ts';
import { clusterDnsIP } from '../lab/cluster-dns.ts';

const svc = (ns: string, name: string, clusterIP: string, ports: { name?: string; port: number; protocol?: 'TCP' | 'UDP' }[]): Service =>
  ({ metadata: { namespace: ns, name }, spec: { clusterIP, ports } }) as unknown as Service;
const slice = (ns: string, svcName: string, ips: string[], ports: { name?: string; port: number; protocol?: string }[], ready = true): EndpointSlice =>
  ({
    metadata: { namespace: ns, name: `${svcName}-abcde`, labels: { 'kubernetes.io/service-name': svcName } },
    addressType: 'IPv4',
    endpoints: ips.map((ip) => ({ addresses: [ip], conditions: { ready } })),
    ports,
  }) as unknown as EndpointSlice;
const ns = (name: string) => ({ metadata: { name } }) as KubeObject;

const CLUSTER: ClusterObjects = {
  namespaces: [ns('default'), ns('kube-system'), ns('shop')],
  services: [
    svc('default', 'web', '10.96.0.200', [{ name: 'http', port: 80 }, { port: 8080 }]),
    svc('kube-system', 'kube-dns', '10.96.0.10', [{ name: 'dns', port: 53, protocol: 'UDP' }, { name: 'dns-tcp', port: 53, protocol: 'TCP' }]),
    svc('shop', 'db', 'None', [{ name: 'pg', port: 5432 }]),
  ],
  slices: [
    slice('default', 'web', ['10.244.2.2', '10.244.3.2'], [{ name: 'http', port: 80, protocol: 'TCP' }]),
    slice('shop', 'db', ['10.244.2.7', '10.244.1.9'], [{ name: 'pg', port: 5432, protocol: 'TCP' }]),
    slice('shop', 'db', ['10.244.3.3'], [{ name: 'pg', port: 5432, protocol: 'TCP' }], false),
  ],
};

const SERIAL = 1764806400;
const ask = (name: string, type: number, o: Partial<DnsMessage> = {}): DnsMessage => {
  const q: DnsMessage = { id: 4242, flags: dnsFlags({ rd: true }), questions: [{ name, type, class: 1 }], answers: [], authorities: [], additionals: [], ...o };
  // Through the wire both ways, as the app sees it.
  const parsed = parseDns(serializeDns(q));
  if ('layer' in parsed) throw new Error(parsed.message);
  const r = parseDns(serializeDns(answerQuery(CLUSTER, parsed, SERIAL)));
  if ('layer' in r) throw new Error(r.message);
  return r;
};
const data = (m: DnsMessage) => m.answers.map((a) => a.data);

test('A: a ClusterIP Service, case-insensitively; TTL 5; authoritative, no recursion', (t) => {
  const r = ask('Web.Default.svc.cluster.local', DnsType.A);
  t.is(r.id, 4242);
  t.deepEqual(r.flags, dnsFlags({ qr: true, aa: true, rd: true }));
  t.deepEqual(r.answers, [{ name: 'Web.Default.svc.cluster.local', type: DnsType.A, class: 1, ttl: 5, data: { type: 1, address: '10.96.0.200' } }]);
});

test('A: a headless Service gives its ready endpoints, sorted; an endpoint by its dashed name', (t) => {
  t.deepEqual(data(ask('db.shop.svc.cluster.local', DnsType.A)), [{ type: 1, address: '10.244.1.9' }, { type: 1, address: '10.244.2.7' }]);
  t.deepEqual(data(ask('10-244-2-7.db.shop.svc.cluster.local', DnsType.A)), [{ type: 1, address: '10.244.2.7' }]);
  t.is(ask('10-244-3-3.db.shop.svc.cluster.local', DnsType.A).flags.rcode, DnsRcode.NXDOMAIN, 'not ready: no record');
});

test('SRV: a named port of a ClusterIP Service, the target\'s A in additional; an unnamed port has no _name', (t) => {
  const r = ask('_http._tcp.web.default.svc.cluster.local', DnsType.SRV);
  t.deepEqual(data(r), [{ type: 33, srv: { priority: 0, weight: 100, port: 80, target: 'web.default.svc.cluster.local' } }]);
  t.deepEqual(r.additionals.map((a) => a.data), [{ type: 1, address: '10.96.0.200' }]);
  t.is(ask('_dns._udp.kube-dns.kube-system.svc.cluster.local', DnsType.SRV).answers.length, 1);
  t.is(ask('_dns._tcp.kube-dns.kube-system.svc.cluster.local', DnsType.SRV).answers.length, 0, 'dns is UDP');
  t.is(ask('_dns._tcp.kube-dns.kube-system.svc.cluster.local', DnsType.SRV).flags.rcode, DnsRcode.NXDOMAIN);
  t.is(ask('_dns-tcp._tcp.kube-dns.kube-system.svc.cluster.local', DnsType.SRV).answers.length, 1);
});

test('SRV: a headless Service, one record per endpoint sharing weight 100, targets named by address', (t) => {
  const r = ask('_pg._tcp.db.shop.svc.cluster.local', DnsType.SRV);
  t.deepEqual(data(r), [
    { type: 33, srv: { priority: 0, weight: 50, port: 5432, target: '10-244-1-9.db.shop.svc.cluster.local' } },
    { type: 33, srv: { priority: 0, weight: 50, port: 5432, target: '10-244-2-7.db.shop.svc.cluster.local' } },
  ]);
  t.deepEqual(r.additionals.map((a) => [a.name, 'address' in a.data && a.data.address]), [
    ['10-244-1-9.db.shop.svc.cluster.local', '10.244.1.9'],
    ['10-244-2-7.db.shop.svc.cluster.local', '10.244.2.7'],
  ]);
});

test('PTR: a ClusterIP names its Service, an endpoint address its endpoint; others NXDOMAIN', (t) => {
  t.deepEqual(data(ask(reverseName('10.96.0.10'), DnsType.PTR)), [{ type: 12, target: 'kube-dns.kube-system.svc.cluster.local' }]);
  t.deepEqual(data(ask(reverseName('10.244.2.2'), DnsType.PTR)), [{ type: 12, target: '10-244-2-2.web.default.svc.cluster.local' }]);
  t.deepEqual(data(ask(reverseName('10.244.1.9'), DnsType.PTR)), [{ type: 12, target: '10-244-1-9.db.shop.svc.cluster.local' }]);
  t.is(ask(reverseName('10.244.9.9'), DnsType.PTR).flags.rcode, DnsRcode.NXDOMAIN);
});

test('pods insecure: a-b-c-d.ns.pod.cluster.local answers a.b.c.d; bad addresses do not exist', (t) => {
  t.deepEqual(data(ask('10-244-1-5.default.pod.cluster.local', DnsType.A)), [{ type: 1, address: '10.244.1.5' }]);
  t.is(ask('10-244-1-500.default.pod.cluster.local', DnsType.A).flags.rcode, DnsRcode.NXDOMAIN);
  t.is(ask('10-244-1-5.nowhere.pod.cluster.local', DnsType.A).flags.rcode, DnsRcode.NXDOMAIN);
});

test('NXDOMAIN and NODATA carry the zone SOA; the apex answers SOA and NS', (t) => {
  const soa = { type: 6, soa: { mname: 'ns.dns.cluster.local', rname: 'hostmaster.cluster.local', serial: SERIAL, refresh: 7200, retry: 1800, expire: 86400, minimum: 30 } };
  for (const [name, type, rcode] of [
    ['nope.default.svc.cluster.local', DnsType.A, DnsRcode.NXDOMAIN],
    ['web.nowhere.svc.cluster.local', DnsType.A, DnsRcode.NXDOMAIN],
    ['web.default.svc.cluster.local', DnsType.AAAA, DnsRcode.NOERROR],
    ['default.svc.cluster.local', DnsType.A, DnsRcode.NOERROR],
    ['svc.cluster.local', DnsType.A, DnsRcode.NOERROR],
    ['x.y.cluster.local', DnsType.A, DnsRcode.NXDOMAIN],
  ] as const) {
    const r = ask(name, type);
    t.is(r.flags.rcode, rcode, name);
    t.true(r.flags.aa);
    t.deepEqual(r.answers, []);
    t.deepEqual(r.authorities, [{ name: 'cluster.local', type: DnsType.SOA, class: 1, ttl: 30, data: soa }], name);
  }
  t.deepEqual(data(ask('cluster.local', DnsType.SOA)), [soa]);
  t.deepEqual(data(ask('cluster.local', DnsType.NS)), [{ type: 2, target: 'ns.dns.cluster.local' }]);
});

test('outside the zones: SERVFAIL (no forward plugin); bad queries: FORMERR, NOTIMP, REFUSED for class CH', (t) => {
  const r = ask('example.com', DnsType.A);
  t.is(r.flags.rcode, DnsRcode.SERVFAIL);
  t.false(r.flags.aa);
  t.is(ask('web.default.svc.cluster.local', DnsType.A, { questions: [] }).flags.rcode, DnsRcode.FORMERR);
  t.is(ask('web.default.svc.cluster.local', DnsType.A, { flags: dnsFlags({ opcode: 2 }) }).flags.rcode, DnsRcode.NOTIMP);
  t.is(ask('version.bind', DnsType.TXT, { questions: [{ name: 'version.bind', type: DnsType.TXT, class: 3 }] }).flags.rcode, DnsRcode.REFUSED);
});

test('the pod side: the kubelet\'s resolv.conf, res_search\'s candidate order, kube-dns at the tenth service address', (t) => {
  t.is(formatResolvConf(kubeletResolvConf('shop')), 'search shop.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n');
  const rc = kubeletResolvConf('default');
  t.deepEqual(searchCandidates('web', rc), ['web.default.svc.cluster.local', 'web.svc.cluster.local', 'web.cluster.local', 'web']);
  t.deepEqual(searchCandidates('a.b.c.d.e.f', rc).slice(0, 2), ['a.b.c.d.e.f', 'a.b.c.d.e.f.default.svc.cluster.local']);
  t.deepEqual(searchCandidates('web.default.svc.cluster.local.', rc), ['web.default.svc.cluster.local']);
  t.is(clusterDnsIP(), '10.96.0.10');
  t.is(clusterDnsIP('172.20.0.0/16'), '172.20.0.10');
});
