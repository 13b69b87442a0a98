/**
 * `coredns/coredns` (and `registry.k8s.io/coredns/coredns`, any tag): a
 * CoreDNS with the Corefile kubeadm installs minus `forward` and `cache`,
 * serving on UDP and TCP 53 in its pod. Like CoreDNS it lists and watches the
 * apiserver itself (Services, EndpointSlices, Namespaces) and answers from
 * that cache (apps/dns/kubernetes.ts says what it answers). Queries that
 * arrive before the first lists are held (up to 256) and answered once they
 * are in, as CoreDNS holds its readiness until the plugin has synced; without
 * an apiserver at all every query gets SERVFAIL.
 *
 * Each query is one real UDP datagram on the pod's stack: clients reach it
 * through the kube-dns ClusterIP, kube-proxy's DNAT and the pod's veth, so
 * capture and trace see every hop. Responses above 512 bytes (or the
 * client's EDNS size, at most 1232) are cut to the header and question with
 * TC set (RFC 1035 4.2.1), and the client asks again over TCP: the same port
 * listens for TCP (the `dns-tcp` containerPort), where messages carry a
 * two-byte length (RFC 1035 4.2.2), queries may be pipelined and are
 * answered in full, and a connection idle for 10 s is closed (RFC 7766 6.2.3).
 */
import { ApiClient } from '../../control-plane/client.ts';
import { Informer } from '../../control-plane/informer.ts';
import type { EndpointSlice, Service } from '../../control-plane/service-resources.ts';
import type { KubeObject } from '../../control-plane/types.ts';
import type { TcpServer, TcpSocket } from '../../netstack/tcp/socket.ts';
import { UdpSocket } from '../../netstack/tcp/udp-socket.ts';
import { DnsRcode, DnsType, parseDns, serializeDns, type DnsMessage } from '../../packet/dns.ts';
import { DNS_TCP_MAX, DnsTcpReader, frameDnsTcp } from '../../packet/dns-tcp.ts';
import { isWireError } from '../../packet/errors.ts';
import { portsOf, type AppInstance, type BuiltinApp } from '../types.ts';
import { answerQuery } from './kubernetes.ts';

/** CoreDNS closes a TCP connection idle this long (its server's idle timeout). */
const TCP_IDLE_MS = 10_000;
/** Open TCP connections at most; more are refused at once (a flood must not grow the pod). */
const TCP_MAX_CONNS = 256;

export const corednsApp: BuiltinApp = {
  name: 'coredns/coredns',
  description: 'cluster DNS on UDP and TCP 53: the kubernetes plugin (cluster.local, in-addr.arpa) from its own apiserver watch',
  start(pod, container, ctx): AppInstance {
    const counters = { queries: 0, tcpQueries: 0, tcpConnections: 0, answered: 0, nxdomain: 0, servfail: 0, malformed: 0, truncated: 0 };
    const ports = portsOf(container, 'UDP', [53]);
    // TCP on the DNS ports only (kubeadm's dns-tcp; 9153 is the metrics port, not served here).
    const tcpPorts = portsOf(container, 'TCP', [53]).filter((p) => ports.includes(p));
    const socks = ports.map((p) => new UdpSocket(pod.stack).bind(p));
    const conns = new Set<TcpSocket>();
    let servers: TcpServer[] = [];
    try {
      servers = tcpPorts.map((p) => pod.tcp.listen(p, {}, (s) => serveTcp(s)));
    } catch (e) {
      socks.forEach((u) => u.close());
      servers.forEach((x) => x.close());
      throw e;
    }
    const api = ctx.api ? new ApiClient(ctx.api.url, { credentials: ctx.api.credentials }) : undefined;
    const services = api && new Informer<Service>(api, 'services');
    const slices = api && new Informer<EndpointSlice>(api, 'endpointslices');
    const namespaces = api && new Informer<KubeObject>(api, 'namespaces');
    const informers = [services, slices, namespaces].filter((i): i is NonNullable<typeof i> => !!i);
    // The SOA serial moves with the data, as CoreDNS's does (seconds of the last change).
    let serial = Math.floor(Date.now() / 1000);
    const bump = () => (serial = Math.max(serial + 1, Math.floor(Date.now() / 1000)));
    const held: (() => void)[] = [];
    for (const inf of informers) inf.on('add', bump).on('update', bump).on('delete', bump);
    void Promise.all(informers.map((i) => i.start())).then(() => held.splice(0).forEach((f) => f()));
    if (!api) ctx.log?.('coredns has no apiserver to watch: every query gets SERVFAIL', { pod: ctx.podName });
    const synced = () => informers.length > 0 && informers.every((i) => i.hasSynced);
    // CoreDNS's start lines, with the version the image's tag names (registry.k8s.io/coredns/coredns:v1.11.1).
    const version = /:v?(\d+\.\d+\.\d+)$/.exec(container.image)?.[1] ?? '1.11.1';
    for (const l of ports.map((p) => `.:${p}`).concat([`CoreDNS-${version}`, 'linux/amd64, go1.21.11 (podlab)'])) ctx.stdout?.(l);

    const answer = (q: DnsMessage): DnsMessage => {
      if (!synced()) return { ...q, flags: { ...q.flags, qr: true, ra: false, aa: false, ad: false, rcode: DnsRcode.SERVFAIL }, answers: [], authorities: [], additionals: [] };
      return answerQuery({ services: services!.list(), slices: slices!.list(), namespaces: namespaces!.list() }, q, serial);
    };

    /** FORMERR for a query whose header we can read (RFC 1035 4.1.1); less than that, nothing. */
    const formerr = (data: Buffer): Buffer | undefined => {
      if (data.length < 12 || data[2] & 0x80) return undefined;
      const h = Buffer.from(data.subarray(0, 12));
      h[2] = 0x80 | (h[2] & 0x79);
      h[3] = DnsRcode.FORMERR;
      h.fill(0, 4, 12);
      return h;
    };

    /** Takes one query off the wire and calls `reply` with the answer once there is one (held while syncing). */
    const handle = (data: Buffer, transport: 'udp' | 'tcp', reply: (out: Buffer) => void): void => {
      counters.queries++;
      if (transport === 'tcp') counters.tcpQueries++;
      const q = parseDns(data);
      if (isWireError(q)) {
        counters.malformed++;
        const h = formerr(data);
        if (h) reply(h);
        return;
      }
      if (q.flags.qr) return; // never answer a response
      const go = () => reply(respond(q, transport));
      if (api && !synced()) {
        if (held.length < 256) held.push(go);
        return;
      }
      go();
    };

    for (const sock of socks) sock.on('message', (data, from) => handle(data, 'udp', (out) => sock.send(out, from.port, from.address)));

    function serveTcp(s: TcpSocket): void {
      if (conns.size >= TCP_MAX_CONNS) {
        s.destroy();
        return;
      }
      counters.tcpConnections++;
      conns.add(s);
      const reader = new DnsTcpReader();
      const clock = pod.opts.clock;
      let idle = clock.setTimeout(() => s.end(), TCP_IDLE_MS);
      s.on('error', () => {});
      s.on('close', () => {
        idle.cancel();
        conns.delete(s);
      });
      s.on('data', (chunk) => {
        idle.cancel();
        idle = clock.setTimeout(() => s.end(), TCP_IDLE_MS);
        const msgs = reader.push(chunk);
        if (isWireError(msgs)) {
          // A length the stream cannot be read past: nothing more on this connection makes sense.
          counters.malformed++;
          s.destroy();
          return;
        }
        for (const m of msgs) handle(m, 'tcp', (out) => !s.destroyed && s.write(frameDnsTcp(out)));
      });
    }

    function respond(q: DnsMessage, transport: 'udp' | 'tcp'): Buffer {
      const r = answer(q);
      // EDNS (RFC 6891): echo an OPT record carrying our own UDP size when the query had one.
      const opt = q.additionals.find((x) => x.type === DnsType.OPT);
      const limit = transport === 'tcp' ? DNS_TCP_MAX : opt ? Math.max(512, Math.min(opt.class, 1232)) : 512;
      const ours = opt ? [{ name: '', type: DnsType.OPT, class: 1232, ttl: 0, data: { type: DnsType.OPT, raw: Buffer.alloc(0) } }] : [];
      r.additionals = [...r.additionals, ...ours];
      let out = serializeDns(r);
      if (out.length > limit) {
        counters.truncated++;
        // The OPT record stays in a truncated answer (RFC 6891 7), so the client still sees our size.
        out = serializeDns({ ...r, flags: { ...r.flags, tc: true }, answers: [], authorities: [], additionals: ours });
      }
      if (r.flags.rcode === DnsRcode.NXDOMAIN) counters.nxdomain++;
      else if (r.flags.rcode === DnsRcode.SERVFAIL) counters.servfail++;
      else counters.answered++;
      return out;
    }
    return {
      stop() {
        socks.forEach((s) => s.close());
        servers.forEach((x) => x.close());
        conns.forEach((c) => c.destroy());
        for (const i of informers) void i.stop();
      },
      status: () => ({ app: 'coredns/coredns', listening: [...socks.map((s) => `udp 0.0.0.0:${s.address().port}`), ...servers.map((x) => `tcp 0.0.0.0:${x.port}`)], counters: { ...counters } }),
    };
  },
};
