/**
 * The node's end of a lab router's hand-off (edge/lb-handoff.ts): a real TCP
 * listener on the node's address; each stream from a BGPPeer's address opens
 * with a PROXY v2 header, and the rest is carried into the node as the
 * client's connection to the LB IP and port (KubeProxy.carryIn), meeting
 * kube-proxy's KUBE-SERVICES "loadbalancer IP" rule → KUBE-EXT (→ KUBE-SVL for
 * Local, KUBE-FW with source ranges) or IPVS's virtual server, as the
 * connection of an elected L2 node does. The client's own address is carried
 * in where it can be (ExternalClients), so a Local backend sees it.
 */
import net from 'node:net';
import { createLogger } from '../common/log.ts';
import { LogThrottle } from '../common/log-throttle.ts';
import { monotonicClock } from '../common/clock.ts';
import { HANDOFF_HEADER_TIMEOUT_MS, HandoffHeaderReader } from '../edge/lb-handoff.ts';
import type { KubeProxy } from './kube-proxy.ts';

const log = createLogger('podlab:lb-handoff');

export interface HandoffCounters {
  accepted: number;
  refused: number;
}

/** Starts the listener; resolves once bound (rejects if the port is taken). */
export async function listenLbHandoff(o: { host: string; port: number; kubeProxy: KubeProxy; allowed: (ip: string) => boolean }): Promise<{ server: net.Server; counters: HandoffCounters }> {
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
  return { server, counters };
}
