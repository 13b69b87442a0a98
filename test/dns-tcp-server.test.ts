/**
 * The CoreDNS app's TCP side in the test's own process (one node data
 * plane, never started: two pods talking over its cni0 need no underlay): pipelined queries on one
 * connection are each answered behind their length, a length shorter than
 * a header closes the connection, and the pod resolver's TCP path (dig
 * +tcp's) gets its answer. With no apiserver every answer is SERVFAIL,
 * which is all the framing needs.
 */
import test, { type ExecutionContext } from 'ava';
import { monotonicClock } from '../common/clock.ts';
import { SeededRng } from '../common/rng.ts';
import { corednsApp } from '../apps/dns/coredns.ts';
import type { Container } from '../control-plane/types.ts';
import { DnsRcode, DnsType, dnsFlags, parseDns, serializeDns, type DnsMessage } from '../packet/dns.ts';
import { DnsTcpReader, frameDnsTcp } from '../packet/dns-tcp.ts';
import { isWireError } from '../packet/errors.ts';
import { queryDns } from '../pod-tools/resolver.ts';
import { addPod, makeNode } from './helpers/dataplane.ts';

const DNS: Container = { name: 'coredns', image: 'registry.k8s.io/coredns/coredns:v1.11.1', ports: [{ name: 'dns', containerPort: 53, protocol: 'UDP' }, { name: 'dns-tcp', containerPort: 53, protocol: 'TCP' }, { name: 'metrics', containerPort: 9153, protocol: 'TCP' }] };
const q = (id: number, name: string): DnsMessage => ({ id, flags: dnsFlags({ rd: true }), questions: [{ name, type: DnsType.A, class: 1 }], answers: [], authorities: [], additionals: [] });

function setup(t: ExecutionContext) {
  const node = makeNode(1, { net: '127.0.32.0/24' });
  const server = addPod(node, 'coredns', '10.244.1.2');
  const client = addPod(node, 'client', '10.244.1.3');
  const app = corednsApp.start(server, DNS, { podName: 'coredns', nodeName: 'node-1' });
  t.teardown(async () => {
    app.stop();
    await node.close();
  });
  return { app, client };
}

test.serial('pipelined queries on one connection: each answered behind its own length, in order; TCP only on the DNS port', async (t) => {
  const { app, client } = setup(t);
  t.deepEqual(app.status().listening, ['udp 0.0.0.0:53', 'tcp 0.0.0.0:53']);
  const sock = client.tcp.connect({ host: '10.244.1.2', port: 53 });
  const reader = new DnsTcpReader();
  const got: DnsMessage[] = [];
  const done = new Promise<void>((resolve, reject) => {
    sock.on('data', (d) => {
      const msgs = reader.push(d);
      if (isWireError(msgs)) return reject(msgs);
      for (const m of msgs) got.push(parseDns(m) as DnsMessage);
      if (got.length === 3) resolve();
    });
    sock.on('error', (e) => reject(new Error(e.text)));
  });
  sock.on('connect', () => sock.write(Buffer.concat([q(7, 'a.default.svc.cluster.local'), q(8, 'b'), q(9, 'c.svc.cluster.local')].map((m) => frameDnsTcp(serializeDns(m))))));
  await done;
  t.deepEqual(got.map((m) => [m.id, m.flags.qr, m.flags.rcode, m.questions[0].name]), [
    [7, true, DnsRcode.SERVFAIL, 'a.default.svc.cluster.local'],
    [8, true, DnsRcode.SERVFAIL, 'b'],
    [9, true, DnsRcode.SERVFAIL, 'c.svc.cluster.local'],
  ]);
  sock.end();
  t.like(app.status().counters, { tcpConnections: 1, tcpQueries: 3 });
});

test.serial('a length shorter than a DNS header: the server closes the connection and counts it malformed', async (t) => {
  const { app, client } = setup(t);
  const sock = client.tcp.connect({ host: '10.244.1.2', port: 53 });
  sock.on('error', () => {});
  const closed = new Promise<void>((resolve) => sock.on('close', () => resolve()));
  sock.on('connect', () => sock.write(Buffer.from([0, 0])));
  await closed;
  t.like(app.status().counters, { malformed: 1, tcpQueries: 0 });
});

test.serial('the resolver over TCP (dig +tcp): one connection, the answer matched by id and question', async (t) => {
  const { client } = setup(t);
  const ctx = { pod: client, argv: [], stdout: () => {}, stderr: () => {}, signal: new AbortController().signal, clock: monotonicClock, rng: new SeededRng(3) };
  const r = await queryDns(ctx, 'web.default.svc.cluster.local', DnsType.A, { server: '10.244.1.2', tcp: true, timeoutMs: 2000, attempts: 1 });
  if (!r.ok) return t.fail(JSON.stringify(r));
  t.is(r.transport, 'tcp');
  t.is(r.truncated, undefined);
  t.is(r.response.flags.rcode, DnsRcode.SERVFAIL);
  t.is(r.response.questions[0].name, 'web.default.svc.cluster.local');
  // Nothing listens on TCP 5353: refused at once, reported as unreachable.
  const refused = await queryDns(ctx, 'web', DnsType.A, { server: '10.244.1.2', port: 5353, tcp: true, timeoutMs: 2000, attempts: 1 });
  t.like(refused, { ok: false, error: 'unreachable' });
});
