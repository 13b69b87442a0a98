/**
 * `podlab/echo`: TCP and UDP echo (RFC 862) on the containerPorts (TCP ports
 * echo over TCP, UDP ports over UDP; default port 7, both). `podlab/sink`:
 * the discard service (RFC 863), counting what it throws away (default port
 * 9, both).
 */
import type { Container } from '../control-plane/types.ts';
import type { PodNet } from '../netstack/pod-net.ts';
import type { TcpServer, TcpSocket } from '../netstack/tcp/socket.ts';
import { UdpSocket } from '../netstack/tcp/udp-socket.ts';
import { type AppContext, type AppInstance, type BuiltinApp } from './types.ts';

/** The TCP and UDP ports an app binds: declared ones by protocol, else `dflt` for both. */
function bindPorts(container: Container, dflt: number): { tcp: number[]; udp: number[] } {
  const ports = container.ports ?? [];
  if (!ports.length) return { tcp: [dflt], udp: [dflt] };
  return {
    tcp: ports.filter((p) => (p.protocol ?? 'TCP') === 'TCP').map((p) => p.containerPort),
    udp: ports.filter((p) => p.protocol === 'UDP').map((p) => p.containerPort),
  };
}

interface Counters {
  connections: number;
  bytes: number;
  datagrams: number;
}

function startService(
  appName: string,
  dflt: number,
  onTcp: (s: TcpSocket, c: Counters) => void,
  onUdp: (u: UdpSocket, data: Buffer, from: { address: string; port: number }, c: Counters) => void,
) {
  return (pod: PodNet, container: Container, ctx: AppContext): AppInstance => {
    void ctx;
    const { tcp, udp } = bindPorts(container, dflt);
    const counters: Counters = { connections: 0, bytes: 0, datagrams: 0 };
    const servers: TcpServer[] = [];
    const udps: UdpSocket[] = [];
    const socks = new Set<TcpSocket>();
    const stop = () => {
      servers.forEach((s) => s.close());
      udps.forEach((u) => u.close());
      socks.forEach((s) => s.destroy());
    };
    try {
      for (const port of tcp) {
        servers.push(
          pod.tcp.listen(port, {}, (s) => {
            counters.connections++;
            socks.add(s);
            s.on('close', () => socks.delete(s));
            s.on('error', () => {});
            onTcp(s, counters);
          }),
        );
      }
      for (const port of udp) {
        const u = new UdpSocket(pod.stack).bind(port);
        u.on('message', (d, from) => onUdp(u, d, from, counters));
        udps.push(u);
      }
    } catch (e) {
      stop();
      throw e;
    }
    return {
      stop,
      status: () => ({
        app: appName,
        listening: [...servers.map((s) => `tcp 0.0.0.0:${s.port}`), ...udps.map((u) => `udp 0.0.0.0:${u.address().port}`)],
        counters: { ...counters },
      }),
    };
  };
}

export const echoApp: BuiltinApp = {
  name: 'podlab/echo',
  description: 'TCP and UDP echo on containerPorts (default 7)',
  start: startService(
    'podlab/echo',
    7,
    (s, c) =>
      s.on('data', (d) => {
        c.bytes += d.length;
        // Flow control: stop reading while the peer is not reading our echo.
        if (!s.write(d)) {
          s.pause();
          s.once('drain', () => s.resume());
        }
      }),
    (u, d, from, c) => {
      c.datagrams++;
      c.bytes += d.length;
      u.send(d, from.port, from.address);
    },
  ),
};

export const sinkApp: BuiltinApp = {
  name: 'podlab/sink',
  description: 'discards and counts what it receives, TCP and UDP (default 9)',
  start: startService(
    'podlab/sink',
    9,
    (s, c) => s.on('data', (d) => (c.bytes += d.length)),
    (_u, d, _from, c) => {
      c.datagrams++;
      c.bytes += d.length;
    },
  ),
};
