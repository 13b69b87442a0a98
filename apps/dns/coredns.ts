/**
 * `coredns/coredns` (and `registry.k8s.io/coredns/coredns`, any tag): a
 * CoreDNS with the Corefile kubeadm installs minus `forward` and `cache`,
 * serving on UDP and TCP 53 in its pod. Its kubernetes plugin lists and
 * watches the apiserver (Services, EndpointSlices, Namespaces) and answers
 * from an index of them (apps/dns/kubernetes.ts says what it answers), apart
 * from the sockets: ./worker-client.ts runs it on the agent's thread while the
 * cluster has few Services, and from 100 on the agent's shared worker thread
 * (a thread of its own without an agent's), so the data plane's thread, where
 * this app runs, keeps only the sockets and moves bytes to and from it (a dead
 * worker is restarted with backoff, the queries it held are dropped and
 * counted, and new ones get SERVFAIL meanwhile).
 * Queries that arrive before the first lists are held (up to 256) and
 * answered once they are in, as CoreDNS holds its readiness until the plugin
 * has synced; without an apiserver at all every query gets SERVFAIL (from
 * this thread: no worker).
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
import type { TcpServer, TcpSocket } from '../../netstack/tcp/socket.ts';
import { UdpSocket } from '../../netstack/tcp/udp-socket.ts';
import { DnsTcpReader, frameDnsTcp } from '../../packet/dns-tcp.ts';
import { isWireError } from '../../packet/errors.ts';
import { portsOf, type AppInstance, type BuiltinApp } from '../types.ts';
import { respond, servfail, takeQuery, type DnsTransport, type Served } from './serve.ts';
import { DnsWorkerClient, type WorkerAnswer } from './worker-client.ts';

/** CoreDNS closes a TCP connection idle this long (its server's idle timeout). */
const TCP_IDLE_MS = 10_000;
/** Open TCP connections at most; more are refused at once (a flood must not grow the pod). */
const TCP_MAX_CONNS = 256;

export const corednsApp: BuiltinApp = {
  name: 'coredns/coredns',
  description: 'cluster DNS on UDP and TCP 53: the kubernetes plugin (cluster.local, in-addr.arpa) from its own apiserver watch',
  start(pod, container, ctx): AppInstance {
    // `dropped`: held beyond the 256 while syncing, or lost with a worker that died; `ignored`: responses sent to us.
    const counters = { queries: 0, tcpQueries: 0, tcpConnections: 0, answered: 0, nxdomain: 0, servfail: 0, malformed: 0, truncated: 0, dropped: 0, ignored: 0 };
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
    const worker = ctx.api ? new DnsWorkerClient({ api: ctx.api }, (m, f) => ctx.log?.(m, { pod: ctx.podName, ...f }), ctx.thread) : undefined;
    if (!worker) ctx.log?.('coredns has no apiserver to watch: every query gets SERVFAIL', { pod: ctx.podName });
    // CoreDNS's start lines, with the version the image's tag names (registry.k8s.io/coredns/coredns:v1.11.1).
    const version = /:v?(\d+\.\d+\.\d+)$/.exec(container.image)?.[1] ?? '1.11.1';
    for (const l of ports.map((p) => `.:${p}`).concat([`CoreDNS-${version}`, 'linux/amd64, go1.21.11 (podlab)'])) ctx.stdout?.(l);

    const count = (a: Served | WorkerAnswer): void => {
      if (a.truncated) counters.truncated++;
      counters[a.outcome]++;
    };

    /** Without a worker to ask (no apiserver, or the worker away): SERVFAIL from here, malformed and responses as ever. */
    const answerHere = (data: Buffer, transport: DnsTransport): Served => {
      const q = takeQuery(data);
      return 'outcome' in q ? q : respond(q, servfail(q), transport);
    };

    /** Takes one query off the wire and calls `reply` with the answer once there is one (the worker holds it while syncing). */
    const handle = (data: Buffer, transport: DnsTransport, reply: (out: Buffer) => void): void => {
      counters.queries++;
      if (transport === 'tcp') counters.tcpQueries++;
      const done = (a: Served | WorkerAnswer) => {
        count(a);
        if (a.out) reply(a.out);
      };
      if (worker?.query(data, transport, done)) return;
      done(answerHere(data, transport));
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

    return {
      stop() {
        socks.forEach((s) => s.close());
        servers.forEach((x) => x.close());
        conns.forEach((c) => c.destroy());
        worker?.close();
      },
      status: () => ({ app: 'coredns/coredns', listening: [...socks.map((s) => `udp 0.0.0.0:${s.address().port}`), ...servers.map((x) => `tcp 0.0.0.0:${x.port}`)], counters: { ...counters, ...(worker ? { workerRestarts: worker.restarts, workerServices: worker.objects.services, workerEndpointSlices: worker.objects.endpointslices } : {}) } }),
    };
  },
};
