/**
 * The lab's upstream router (a top-of-rack switch for a local lab): what
 * MetalLB's BGP mode needs in front of the nodes, and what a local lab on
 * loopback cannot get from the host's kernel (no root, and BIRD drops 127/8
 * prefixes as bogus).
 *
 * - Control plane: podlab's own BGP-4 speaker (bgp/) on the router's address,
 *   passive towards every node (each node dials it as the BGPPeer the lab
 *   created), keeping the learned LoadBalancer routes with all next hops
 *   that tie for best (./ecmp.ts): every announcing node for Cluster, the
 *   nodes with a local endpoint for Local.
 * - Data plane: each LB address a learned route covers (inside the router's
 *   bind range, the lab's loopback net) gets real host-facing listeners for
 *   its Service's TCP and UDP ports. An accepted connection (a UDP client) picks one next hop by a
 *   seeded hash of its 5-tuple, as ECMP does, and is handed to that node's
 *   hand-off port with a PROXY v2 header naming the client and the LB
 *   address (edge/lb-handoff.ts); the node carries it in addressed to the LB
 *   IP, through kube-proxy's rules. A withdrawn route (Service deleted,
 *   Local endpoints gone) closes the listeners: the address stops answering.
 *
 * The router reads Nodes (whom to peer with), the `default` BGPConfiguration
 * (the nodes' AS) and Services (ports of an address) from the apiserver: a
 * real router learns only prefixes and forwards every port, which a
 * user-space socket cannot.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import type { Clock } from '../common/clock.ts';
import { monotonicClock } from '../common/clock.ts';
import { type Logger, createLogger } from '../common/log.ts';
import { BgpSpeaker, formatSummary } from '../bgp/index.ts';
import type { ApiClient } from '../control-plane/client.ts';
import { Informer } from '../control-plane/informer.ts';
import { CALICO_IPV4_ADDRESS } from '../control-plane/annotations.ts';
import { CALICO_DEFAULT_ASN, type BgpConfiguration } from '../control-plane/calico.ts';
import type { Node } from '../control-plane/types.ts';
import type { Cidr } from '../packet/cidr.ts';
import { serializeProxyV2 } from '../packet/proxy-protocol.ts';
import { ecmpTable, longestMatch, pickNextHop, type EcmpRoute } from './ecmp.ts';

export interface LbRouterOptions {
  /** The router's address: BGP identifier, listen address, source of hand-offs. */
  ip: string;
  asn: number;
  /** Where the router's BGP listens (nodes dial it here: the BGPPeer's peerIP port). */
  bgpPort: number;
  /** The nodes' BGP port (only to label the peers: the router never dials). */
  nodeBgpPort: number;
  holdTime: number;
  /** The nodes' hand-off port (edge/lb-handoff.ts). */
  handoffPort: number;
  /** LB addresses the router may bind real sockets on (the lab's loopback net). */
  bindNet: Cidr;
  /** Seed of the ECMP flow hash and the BGP retry jitter. */
  seed: number;
  api: ApiClient;
  clock?: Clock;
  log?: Logger;
}

interface Listener {
  ip: string;
  port: number;
  protocol: 'tcp' | 'udp';
  close(): void;
  services: string;
}

/** A UDP client of an LB address is forgotten after conntrack's unreplied-UDP timeout; at most this many are kept. */
const UDP_CLIENT_IDLE_MS = 30_000;
const MAX_UDP_CLIENTS = 1024;

/** Hand-offs per next hop and the ones that found none. */
interface Counters {
  byNextHop: Map<string, number>;
  noRoute: number;
  failed: number;
}

export class LbRouter {
  readonly speaker: BgpSpeaker;
  private readonly log: Logger;
  private readonly nodes: Informer<Node>;
  private readonly configs: Informer<BgpConfiguration>;
  private readonly services: Informer;
  private readonly listeners = new Map<string, Listener>();
  private readonly peers = new Map<string, number>();
  private readonly live = new Set<net.Socket>();
  private readonly counters: Counters = { byNextHop: new Map(), noRoute: 0, failed: 0 };
  private queue: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(private readonly o: LbRouterOptions) {
    this.log = o.log ?? createLogger('podlab:lb-router');
    this.speaker = new BgpSpeaker({
      asn: o.asn,
      routerId: o.ip,
      listen: { host: o.ip, port: o.bgpPort },
      holdTime: o.holdTime,
      clock: o.clock ?? monotonicClock,
      seed: o.seed,
      // A sink: a ToR reflecting one node's LB routes to the others would only make them reject them.
      policy: { export: () => ({ accept: false, rule: 'the lab router announces nothing' }) },
    });
    this.nodes = new Informer<Node>(o.api, 'nodes');
    this.configs = new Informer<BgpConfiguration>(o.api, 'bgpconfigurations');
    this.services = new Informer(o.api, 'services');
  }

  async start(): Promise<void> {
    await this.speaker.start();
    this.speaker.on('route-add', (prefix, r) => {
      this.log.info('route learned', { prefix, nextHop: r.nextHop, from: r.peer });
      this.sync();
    });
    this.speaker.on('route-del', (prefix) => {
      this.log.info('route withdrawn', { prefix });
      this.sync();
    });
    this.speaker.on('peer-state', (peer, state, reason) => this.log.info('bgp peer', { peer, state, reason }));
    const peers = () => this.reconcilePeers();
    for (const inf of [this.nodes, this.configs] as Informer[]) inf.on('add', peers).on('update', peers).on('delete', peers);
    this.services.on('add', () => this.sync()).on('update', () => this.sync()).on('delete', () => this.sync());
    await Promise.all([this.nodes.start(), this.configs.start(), this.services.start()]);
    this.reconcilePeers();
    this.sync();
    await this.queue;
  }

  /** Every node with a BGP address is a passive peer in the nodes' AS. */
  private reconcilePeers(): void {
    if (this.stopped) return;
    const asn = this.configs.list().find((c) => c.metadata.name === 'default')?.spec?.asNumber ?? CALICO_DEFAULT_ASN;
    const want = new Map<string, string>();
    for (const n of this.nodes.list()) {
      const ip = n.metadata.annotations?.[CALICO_IPV4_ADDRESS]?.split('/')[0];
      if (ip) want.set(ip, n.metadata.name);
    }
    for (const [addr, have] of this.peers) {
      if (want.has(addr) && have === asn) continue;
      this.speaker.removePeer(addr);
      this.peers.delete(addr);
    }
    for (const [addr, name] of want) {
      if (this.peers.has(addr)) continue;
      this.speaker.addPeer({ address: addr, port: this.o.nodeBgpPort, asn, passive: true, localAddress: this.o.ip, holdTime: this.o.holdTime, description: name });
      this.peers.set(addr, asn);
    }
  }

  /** The learned routes with their ECMP next hops. */
  table(): EcmpRoute[] {
    return ecmpTable(this.speaker.routes());
  }

  /** The listeners wanted now: each LB address a route covers, at its Service's ports (`ip:port`, `ip:port/udp`). */
  private wanted(table: EcmpRoute[]): Map<string, { ip: string; port: number; protocol: 'tcp' | 'udp'; services: string[] }> {
    const want = new Map<string, { ip: string; port: number; protocol: 'tcp' | 'udp'; services: string[] }>();
    for (const s of this.services.list()) {
      const spec = (s.spec ?? {}) as { type?: string; ports?: { port: number; protocol?: string }[] };
      if (spec.type !== 'LoadBalancer') continue;
      const ingress = (s.status as { loadBalancer?: { ingress?: { ip?: string }[] } } | undefined)?.loadBalancer?.ingress ?? [];
      for (const { ip } of ingress) {
        if (!ip || !this.o.bindNet.contains(ip) || !longestMatch(table, ip)) continue;
        for (const p of spec.ports ?? []) {
          const protocol = (p.protocol ?? 'TCP').toUpperCase() === 'UDP' ? 'udp' : (p.protocol ?? 'TCP').toUpperCase() === 'TCP' ? 'tcp' : undefined;
          if (!protocol) continue; // SCTP: no user-space socket for it
          const key = protocol === 'tcp' ? `${ip}:${p.port}` : `${ip}:${p.port}/udp`;
          const w = want.get(key) ?? { ip, port: p.port, protocol, services: [] };
          w.services.push(`${s.metadata.namespace ?? 'default'}/${s.metadata.name}`);
          want.set(key, w);
        }
      }
    }
    return want;
  }

  /** Opens and closes listeners to match the routes and Services (one run at a time). */
  sync(): void {
    this.queue = this.queue.then(() => this.syncNow()).catch((e) => this.log.error('sync failed', { error: String(e) }));
  }

  private async syncNow(): Promise<void> {
    if (this.stopped) return;
    const want = this.wanted(this.table());
    for (const [key, l] of this.listeners) {
      if (want.has(key)) continue;
      l.close();
      this.listeners.delete(key);
      this.log.info('LB address unbound', { address: key, services: l.services });
    }
    for (const [key, w] of want) {
      if (this.listeners.has(key)) continue;
      try {
        const sock = w.protocol === 'tcp' ? await this.listen(w.ip, w.port) : await this.listenUdp(w.ip, w.port);
        this.listeners.set(key, { ip: w.ip, port: w.port, protocol: w.protocol, close: () => sock.close(), services: w.services.join(',') });
        this.log.info('LB address bound', { address: key, services: w.services });
      } catch (e) {
        this.log.warn('cannot bind LB address', { address: key, error: String(e) });
      }
    }
  }

  private listen(ip: string, port: number): Promise<net.Server> {
    const server = net.createServer((real) => this.forward(real, ip, port));
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, ip, () => {
        server.off('error', reject);
        server.on('error', (e) => this.log.warn('listener error', { address: `${ip}:${port}`, error: String(e) }));
        resolve(server);
      });
    });
  }

  /**
   * A UDP LB address: each client (address and port, a flow) is hashed to one
   * next hop once and gets its own socket towards that node's hand-off port;
   * every datagram goes behind a PROXY v2 DGRAM header, replies come back bare
   * on that socket and go to the client from the LB address.
   */
  private listenUdp(ip: string, port: number): Promise<dgram.Socket> {
    const sock = dgram.createSocket('udp4');
    const clients = new Map<string, { up: dgram.Socket; hop: string; lastSeen: number }>();
    const sweep = setInterval(() => {
      const idle = Date.now() - UDP_CLIENT_IDLE_MS;
      for (const [k, c] of clients) if (c.lastSeen < idle) {
        c.up.close();
        clients.delete(k);
      }
    }, UDP_CLIENT_IDLE_MS / 2);
    sweep.unref();
    sock.on('message', (msg, rinfo) => {
      const key = `${rinfo.address}:${rinfo.port}`;
      let c = clients.get(key);
      if (c) clients.delete(key); // re-inserted below: least recently used first
      else {
        const flow = { src: rinfo.address, srcPort: rinfo.port, dst: ip, dstPort: port, protocol: 17 };
        const hop = pickNextHop(longestMatch(this.table(), ip)?.nextHops ?? [], flow, this.o.seed);
        if (!hop) {
          this.counters.noRoute++;
          return;
        }
        if (clients.size >= MAX_UDP_CLIENTS) {
          const [oldest, o] = clients.entries().next().value!;
          o.up.close();
          clients.delete(oldest);
        }
        this.counters.byNextHop.set(hop, (this.counters.byNextHop.get(hop) ?? 0) + 1);
        const up = dgram.createSocket('udp4');
        up.on('message', (reply) => sock.send(reply, rinfo.port, rinfo.address));
        up.on('error', (e) => this.log.debug('UDP hand-off error', { nextHop: hop, error: String(e) }));
        up.bind(0, this.o.ip);
        c = { up, hop, lastSeen: 0 };
      }
      c.lastSeen = Date.now();
      clients.set(key, c);
      const header = serializeProxyV2({ command: 'proxy', family: 'inet', transport: 'dgram', src: { ip: rinfo.address, port: rinfo.port }, dst: { ip, port }, tlvs: [] });
      c.up.send(Buffer.concat([header, msg]), this.o.handoffPort, c.hop);
    });
    sock.on('close', () => {
      clearInterval(sweep);
      for (const c of clients.values()) c.up.close();
    });
    return new Promise((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(port, ip, () => {
        sock.off('error', reject);
        sock.on('error', (e) => this.log.warn('UDP listener error', { address: `${ip}:${port}/udp`, error: String(e) }));
        resolve(sock);
      });
    });
  }

  /** One host connection: ECMP picks a node, the stream goes to its hand-off port behind a PROXY v2 header. */
  private forward(real: net.Socket, ip: string, port: number): void {
    real.pause();
    const src = (real.remoteAddress ?? '').replace(/^::ffff:/, '');
    const flow = { src, srcPort: real.remotePort ?? 0, dst: ip, dstPort: port, protocol: 6 };
    const hop = pickNextHop(longestMatch(this.table(), ip)?.nextHops ?? [], flow, this.o.seed);
    if (!hop) {
      this.counters.noRoute++;
      real.destroy();
      return;
    }
    this.counters.byNextHop.set(hop, (this.counters.byNextHop.get(hop) ?? 0) + 1);
    this.log.debug('hand-off', { client: `${src}:${flow.srcPort}`, lb: `${ip}:${port}`, nextHop: hop });
    const up = net.connect({ host: hop, port: this.o.handoffPort, localAddress: this.o.ip });
    up.write(serializeProxyV2({ command: 'proxy', family: 'inet', transport: 'stream', src: { ip: src, port: flow.srcPort }, dst: { ip, port }, tlvs: [] }));
    for (const s of [real, up]) {
      this.live.add(s);
      s.on('close', () => this.live.delete(s));
    }
    let connected = false;
    up.on('connect', () => {
      connected = true;
      real.resume();
    });
    up.on('error', (e) => {
      if (!connected) this.counters.failed++;
      this.log.debug('hand-off failed', { nextHop: hop, error: String(e) });
      real.destroy();
    });
    real.on('error', () => up.destroy());
    real.pipe(up);
    up.pipe(real);
  }

  /** `podlab router`: the sessions, the ECMP table, the bound addresses and the hand-offs per next hop. */
  view(): string {
    const s = this.speaker.summary();
    const table = this.table();
    const inBind = (prefix: string) => this.o.bindNet.contains(prefix.split('/')[0]);
    const routes = table.map((r) => `${r.prefix.padEnd(18)} ${r.nextHops.map((h) => `via ${h}`).join(' ')}${r.nextHops.length > 1 ? '  (ECMP)' : ''}${inBind(r.prefix) ? '' : `  (not forwarded: outside ${this.o.bindNet.toString()})`}`);
    const bound = [...this.listeners.values()].map((l) => `${l.ip}:${l.port}/${l.protocol}  ${l.services}`);
    const hops = [...this.counters.byNextHop].sort(([a], [b]) => (a < b ? -1 : 1)).map(([h, n]) => `${h} ${n}`);
    return [
      `BGP router identifier ${s.routerId}, local AS number ${s.asn}, listening on ${this.o.ip}:${this.o.bgpPort}`,
      formatSummary(s),
      '',
      'Routes (learned, ECMP next hops):',
      ...(routes.length ? routes : ['(none)']),
      '',
      'Bound LB addresses:',
      ...(bound.length ? bound : ['(none)']),
      '',
      `Hand-offs by next hop: ${hops.join(', ') || '(none)'}; no route ${this.counters.noRoute}; failed ${this.counters.failed}`,
      '',
    ].join('\n');
  }

  /** Counters as data (tests, `podlab router --json`). */
  stats(): { byNextHop: Record<string, number>; noRoute: number; failed: number; bound: string[]; routes: EcmpRoute[] } {
    return { byNextHop: Object.fromEntries(this.counters.byNextHop), noRoute: this.counters.noRoute, failed: this.counters.failed, bound: [...this.listeners.keys()].sort(), routes: this.table() };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const l of this.listeners.values()) l.close();
    this.listeners.clear();
    for (const s of this.live) s.destroy();
    for (const inf of [this.nodes, this.configs, this.services] as Informer[]) void inf.stop();
    await this.speaker.stop();
  }
}
