/**
 * The node's end of a lab router's hand-off (edge/lb-handoff.ts): a real TCP
 * listener and UDP socket on the node's address; each stream from a BGPPeer's
 * address opens with a PROXY v2 header (each datagram carries one), and the
 * rest is carried into the node as the
 * client's connection to the LB IP and port (KubeProxy.carryIn), meeting
 * kube-proxy's KUBE-SERVICES "loadbalancer IP" rule → KUBE-EXT (→ KUBE-SVL for
 * Local, KUBE-FW with source ranges) or IPVS's virtual server, as the
 * connection of an elected L2 node does. The client's own address is carried
 * in where it can be (ExternalClients), so a Local backend sees it.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { createLogger } from '../common/log.ts';
import { LogThrottle } from '../common/log-throttle.ts';
import { monotonicClock } from '../common/clock.ts';
import { HANDOFF_HEADER_TIMEOUT_MS, HandoffHeaderReader, parseHandoffDatagram } from '../edge/lb-handoff.ts';
import type { KubeProxy } from './kube-proxy.ts';

const log = createLogger('podlab:lb-handoff');

export interface HandoffCounters {
  accepted: number;
  refused: number;
}

/** Starts the TCP listener and the UDP socket on the same port; resolves once both are bound (rejects, closing both, if not). */
export async function listenLbHandoff(o: { host: string; port: number; kubeProxy: KubeProxy; allowed: (ip: string) => boolean }): Promise<{ close(): void; counters: HandoffCounters }> {
  const counters: HandoffCounters = { accepted: 0, refused: 0 };
  // Outsiders can trigger refusals at will: one line per source per minute.
  const warn = new LogThrottle({ clock: monotonicClock, write: ({ count, fields }) => log.warn(String(fields.msg), { ...fields, count }) });
  const refuse = (sock: net.Socket, from: string, why: string) => {
    counters.refused++;
    warn.note(`refused ${from}`, { msg: 'LoadBalancer hand-off refused', from, why });
    sock.destroy();
  };
  const server = net.createServer((sock) => {
    const from = (sock.remoteAddress ?? '').replace(/^::ffff:/, '');
    if (!o.allowed(from)) return refuse(sock, from, 'not a BGPPeer of this node');
    const reader = new HandoffHeaderReader();
    const timer = setTimeout(() => refuse(sock, from, 'no PROXY v2 header in time'), HANDOFF_HEADER_TIMEOUT_MS);
    const onData = (chunk: Buffer) => {
      const r = reader.push(chunk);
      if ('more' in r) return;
      clearTimeout(timer);
      sock.off('data', onData);
      sock.pause();
      if ('error' in r) return refuse(sock, from, r.error);
      const { src, dst } = r.header;
      const to = o.kubeProxy.loadBalancerTarget(dst!.ip, dst!.port, 'tcp');
      if (!to) return refuse(sock, from, `${dst!.ip}:${dst!.port}/tcp is no LoadBalancer Service's`);
      counters.accepted++;
      o.kubeProxy.carryIn(sock, src!.ip, to, r.rest);
    };
    sock.on('data', onData);
    sock.on('error', () => clearTimeout(timer));
    sock.on('close', () => clearTimeout(timer));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (e) => log.error('hand-off listener error', { error: String(e) }));

  // UDP: every datagram carries its header; one emulated socket per (router socket, client) pair.
  const udp = dgram.createSocket('udp4');
  const table = o.kubeProxy.udpClients();
  udp.on('message', (msg, rinfo) => {
    const from = rinfo.address;
    if (!o.allowed(from)) {
      counters.refused++;
      warn.note(`refused ${from}`, { msg: 'LoadBalancer hand-off refused', from, why: 'not a BGPPeer of this node' });
      return;
    }
    const d = parseHandoffDatagram(msg);
    const to = 'error' in d ? undefined : o.kubeProxy.loadBalancerTarget(d.header.dst!.ip, d.header.dst!.port, 'udp');
    if ('error' in d || !to) {
      counters.refused++;
      warn.note(`refused ${from}`, { msg: 'LoadBalancer hand-off refused', from, why: 'error' in d ? d.error : `${d.header.dst!.ip}:${d.header.dst!.port}/udp is no LoadBalancer Service's` });
      return;
    }
    const { src, dst } = d.header;
    counters.accepted++;
    table.send(`${from}:${rinfo.port}|${src!.ip}:${src!.port}|${dst!.ip}:${dst!.port}`, src!.ip, to, d.payload, (reply) => udp.send(reply, rinfo.port, rinfo.address));
  });
  udp.on('close', () => table.close());
  try {
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(o.port, o.host, () => {
        udp.off('error', reject);
        resolve();
      });
    });
  } catch (e) {
    server.close();
    table.close();
    throw e;
  }
  udp.on('error', (e) => log.error('hand-off socket error', { error: String(e) }));
  return {
    counters,
    close: () => {
      server.close();
      udp.close();
    },
  };
}
