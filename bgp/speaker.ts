/**
 * BgpSpeaker: a BGP-4 speaker over real TCP (node:net), the I/O edge around
 * the pure codec (bgp/codec/), FSM (bgp/fsm.ts) and RIB (bgp/rib.ts).
 *
 * Design note
 * -----------
 * What it is for. A podlab node running the Calico-style backend runs one
 * speaker. It announces the node's pod CIDR(s) with next hop = the node IP,
 * learns every other node's, and tells the node agent through `route-add` /
 * `route-del` events, which the agent installs as `<podCIDR> via <node IP>
 * proto bird`. It peers with other podlab nodes and with real BIRD 2
 * byte-for-byte (test/bgp-bird.test.ts runs one).
 *
 * Shape. Everything that decides is pure and clock-driven; this file only
 * maps sockets to connection ids and applies actions:
 *   socket bytes → BgpFramer → BgpPeerFsm.message() → FsmAction[] → apply():
 *     send/close/connect → sockets;  update → Rib.applyUpdate() → BestChange[]
 *     → route events + Rib.exportsFor(peer) for every Established peer →
 *     packUpdates() → UPDATEs.
 * One FSM pair per configured peer (collisions, RFC 4271 §6.8), one RIB per
 * speaker.
 *
 * Who connects (full mesh). Calico's rule, from its BIRD template: a node
 * sets `passive on` towards every peer whose IP compares greater *as a
 * string*, so of each pair the node with the greater IP string dials and the
 * other waits. `addPeer` applies that rule when `passive` is not given
 * (`calicoMeshPassive`). Against a peer that dials too (BIRD without
 * `passive on`), both connections may come up; collision detection keeps the
 * one opened by the speaker with the higher BGP Identifier and closes the
 * other with Cease 6/7. Set `passive: false` explicitly when the other side
 * is passive, or nobody will dial.
 *
 * Transport. Listens on `listen.host:listen.port` (179 needs root; podlab's
 * local mode uses e.g. 1179, one speaker per 127.0.0.x address, all on the
 * same port) and dials out from `localAddress` (default: the listen host),
 * so peers recognize us by source address, as BGP requires. Incoming
 * connections from unconfigured addresses are closed at once. Only IPv4.
 *
 * Errors. A message that fails to decode is answered with the NOTIFICATION
 * its BgpError carries, then the connection is closed; the speaker, its other
 * sessions and the process carry on; per-peer counters record it. A peer that
 * stops talking is dropped when the hold timer expires (NOTIFICATION 4/0),
 * and its routes are withdrawn everywhere. `stop()` sends Cease 6/2
 * (Administrative Shutdown) so peers withdraw our routes at once rather than
 * after their hold time.
 *
 * Capabilities: MP IPv4 unicast, 4-octet AS, route refresh; no graceful
 * restart (see bgp/session.ts for why). End-of-RIB is sent after the initial
 * table and noted when received.
 *
 * Not here: policy beyond the RFC defaults, IPv6 / MP_REACH families, MD5
 * (TCP-AO) authentication, confederations, add-path, RFC 7606 treat-as-
 * withdraw (errors reset the session as RFC 4271 §6 says).
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import type { Clock } from '../common/clock.ts';
import { monotonicClock } from '../common/clock.ts';
import { type Logger, createLogger } from '../common/log.ts';
import { LogThrottle } from '../common/log-throttle.ts';
import { SeededRng } from '../common/rng.ts';
import { isValidIpv4 } from '../packet/addr.ts';
import {
  AS_TRANS,
  ATTR_LARGE_COMMUNITY,
  CEASE_PEER_DECONFIGURED,
  type LargeCommunity,
  type Announcement,
  type BgpError,
  type BgpMessage,
  type BgpMessageType,
  type Capability,
  type Origin,
  type PathAttributes,
  type UpdateRepr,
  BgpFramer,
  CAPABILITY_NAMES,
  asPathToString,
  capabilityCode,
  describeMessage,
  flattenAsPath,
  isBgpError,
  isEndOfRib,
  largeCommunityAttribute,
  normalizePrefix,
  parseLargeCommunities,
  packUpdates,
  serializeBgpMessage,
  toTwoOctetPath,
  endOfRib,
} from './codec/index.ts';
import { type BgpState, type ConnDirection, type FsmAction, type SessionError, BgpPeerFsm, shutdownCommunication } from './fsm.ts';
import { type BestChange, type BestPathReason, type RejectReason, type RibPeer, type RibPolicy, type RoutePath, Rib, comparePrefixes } from './rib.ts';
import type { NegotiatedSession } from './session.ts';

/** Speaker configuration. Times in seconds unless named `...Ms`. */
export interface BgpSpeakerOptions {
  /** Our AS (Calico's default is 64512). */
  asn: number;
  /** BGP Identifier, dotted quad (podlab uses the node IP). */
  routerId: string;
  /** Where to accept connections; omit for a speaker that only dials out. */
  listen?: { host: string; port: number };
  /** Proposed hold time (0 or >= 3; default 9). */
  holdTime?: number;
  /** Keepalive interval (default holdTime / 3). */
  keepaliveTime?: number;
  /** First reconnect interval (default 2000 ms), doubling per failure up to `connectRetryMaxMs` (default 30000). */
  connectRetryMs?: number;
  connectRetryMaxMs?: number;
  /** Be a route reflector (RFC 4456) with this CLUSTER_ID. */
  routeReflector?: { clusterId: string };
  clock?: Clock;
  log?: Logger;
  /** Seed of the retry jitter (RFC 4271 §10); default 1. */
  seed?: number;
  /** Import/export policy beyond the RFC's checks (route filters); replace it with `setPolicy`. */
  policy?: RibPolicy;
  /** Interval of the throttled WARN lines (rejected connections, filtered routes, malformed messages); default 60 s. */
  logIntervalMs?: number;
}

/** One configured neighbour. */
export interface BgpPeerOptions {
  /** The peer's IPv4 address: we dial it and recognize its connections by it. */
  address: string;
  /** The peer's BGP port (default: our listen port, else 179). */
  port?: number;
  /** The peer's AS: equal to ours for iBGP. */
  asn: number;
  /** Never dial; wait for the peer. Default: Calico's rule, `calicoMeshPassive(localAddress, address)`. */
  passive?: boolean;
  /** A route-reflector client (only meaningful with `routeReflector`). */
  rrClient?: boolean;
  /** Source address of our connections and our next hop towards this peer (default: listen host, else routerId). */
  localAddress?: string;
  /** Per-peer hold time (default: the speaker's). */
  holdTime?: number;
  /** Free text for `summary()`. */
  description?: string;
}

/** Extra attributes of a locally originated route. */
export interface AnnounceOptions {
  /** NEXT_HOP; default: our session address towards each peer (Calico: the node IP). */
  nextHop?: string;
  origin?: Origin;
  localPref?: number;
  med?: number;
  /** RFC 1997 communities as u32 (e.g. (65000 << 16) | 100, or COMMUNITY_NO_EXPORT). */
  communities?: number[];
  /** RFC 8092 large communities. */
  largeCommunities?: LargeCommunity[];
}

/** What `route-add` tells the agent: install `<prefix> via <nextHop> proto bird`. */
export interface RouteInfo {
  nextHop: string;
  /** AS_PATH flattened (empty inside one AS). */
  path: number[];
  /** Address of the peer the best path was learned from. */
  peer: string;
  origin: Origin;
  localPref: number;
  med?: number;
  communities: number[];
  /** Why this path won. */
  reason: BestPathReason;
}

/** Events a speaker emits. */
export interface BgpSpeakerEvents {
  /** The best path of `prefix` is now this learned route (new, or replacing the previous one). */
  'route-add': [prefix: string, route: RouteInfo];
  /** No learned route for `prefix` any more (gone, or our own announcement took over). */
  'route-del': [prefix: string];
  /** A peer's session state changed. */
  'peer-state': [peer: string, state: BgpState, reason: string];
  /** A malformed message arrived from `peer`; the NOTIFICATION `error` describes has been sent. */
  malformed: [peer: string, error: BgpError];
  /** The import policy rejected `prefix` from `peer` (`rule` says which rule). */
  filtered: [peer: string, prefix: string, rule: string];
}

/** Per-peer status, like one block of `birdc show protocols all` / a row of `calicoctl node status`. */
export interface PeerSummary {
  address: string;
  port: number;
  asn: number;
  localAddress: string;
  description?: string;
  passive: boolean;
  rrClient: boolean;
  type: 'internal' | 'external';
  state: BgpState;
  /** Milliseconds in the current state. */
  since: number;
  /** Milliseconds since the session came up, or null when it is not Established. */
  uptime: number | null;
  /** The peer's BGP Identifier (once an OPEN was accepted). */
  routerId?: string;
  holdTime?: number;
  keepaliveTime?: number;
  as4?: boolean;
  capabilities?: { local: string[]; remote: string[] };
  prefixes: { received: number; accepted: number; rejected: number; preferred: number; sent: number };
  messages: { received: Record<BgpMessageType, number>; sent: Record<BgpMessageType, number> };
  /** Messages from this peer that failed to decode. */
  malformed: number;
  /** Connection collisions resolved. */
  collisions: number;
  endOfRibReceived: boolean;
  lastError: SessionError | null;
}

/** `summary()` result. */
export interface SpeakerSummary {
  asn: number;
  routerId: string;
  clusterId?: string;
  listen?: { host: string; port: number };
  peers: PeerSummary[];
  /** Malformed messages, all peers. */
  malformed: number;
  /** Incoming connections from unconfigured addresses. */
  rejectedConnections: number;
}

/** One path in `routes()`. */
export interface RoutePathSummary {
  best: boolean;
  /** For the best path: why it won; for the others: the step that eliminated them. */
  reason?: BestPathReason;
  source: 'local' | 'peer';
  peer?: string;
  nextHop?: string;
  asPath: number[];
  asPathText: string;
  origin?: Origin;
  localPref?: number;
  med?: number;
  communities: number[];
  /** RFC 8092 large communities (from the raw LARGE_COMMUNITY attribute). */
  largeCommunities: LargeCommunity[];
  originatorId?: string;
  clusterList: string[];
}

/** One prefix in `routes()`. */
export interface RouteSummary {
  prefix: string;
  paths: RoutePathSummary[];
}

/** A received path that the import checks rejected (`rejected()`). */
export interface RejectedRoute {
  prefix: string;
  peer: string;
  reason: RejectReason;
  /** For 'filtered': the rule that rejected it. */
  rule?: string;
  nextHop?: string;
  localPref?: number;
  asPathText: string;
}

/**
 * Calico's full-mesh rule: towards a peer whose IP compares greater as a
 * *string*, be passive (the peer dials us). So of each pair, the node with
 * the greater IP string opens the connection.
 */
export function calicoMeshPassive(localAddress: string, peerAddress: string): boolean {
  return peerAddress > localAddress;
}

type Counts = Record<BgpMessageType, number>;
const zeroCounts = (): Counts => ({ open: 0, update: 0, notification: 0, keepalive: 0, 'route-refresh': 0 });

interface Conn {
  id: number;
  socket: net.Socket;
  framer: BgpFramer;
  direction: ConnDirection;
  connected: boolean;
  closing: boolean;
  as4: boolean;
  killTimer?: { cancel(): void };
}

interface Peer {
  opts: Required<Pick<BgpPeerOptions, 'address' | 'port' | 'asn' | 'passive' | 'rrClient' | 'localAddress'>> & { description?: string };
  fsm: BgpPeerFsm;
  conns: Map<number, Conn>;
  /** Set while Established: the RIB's view of the peer. */
  rib?: RibPeer;
  session?: NegotiatedSession;
  received: Counts;
  sent: Counts;
  malformed: number;
  endOfRibReceived: boolean;
}

/** How long a closing socket may linger (a frozen peer never answers our FIN). */
const CLOSE_LINGER_MS = 2000;

/** A BGP-4 speaker (see the design note at the top of this file). */
export class BgpSpeaker extends EventEmitter<BgpSpeakerEvents> {
  readonly asn: number;
  readonly routerId: string;
  /** The RIBs (read-only use: `adjRibIn`, `adjRibOut`, `routes`, `best`). */
  readonly rib: Rib;
  private readonly opts: BgpSpeakerOptions;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly rng: SeededRng;
  private readonly peers = new Map<string, Peer>();
  private server: net.Server | undefined;
  private running = false;
  private rejectedConnections = 0;
  private readonly sockets = new Set<net.Socket>();
  /** One WARN line per source per interval: outsiders trigger these at will. */
  private readonly warnings: LogThrottle;

  constructor(opts: BgpSpeakerOptions) {
    super();
    if (!Number.isInteger(opts.asn) || opts.asn < 1 || opts.asn > 0xffffffff) throw new RangeError(`invalid ASN ${opts.asn}`);
    if (!isValidIpv4(opts.routerId) || opts.routerId === '0.0.0.0') throw new RangeError(`invalid router ID ${opts.routerId}`);
    if (opts.routeReflector && !isValidIpv4(opts.routeReflector.clusterId)) throw new RangeError(`invalid cluster ID ${opts.routeReflector.clusterId}`);
    if (opts.listen && !isValidIpv4(opts.listen.host)) throw new RangeError(`invalid listen address ${opts.listen.host}`);
    this.opts = opts;
    this.asn = opts.asn;
    this.routerId = opts.routerId;
    this.clock = opts.clock ?? monotonicClock;
    this.log = opts.log ?? createLogger(`podlab:bgp:${opts.routerId}`);
    this.rng = new SeededRng(opts.seed ?? 1);
    this.rib = new Rib({ asn: opts.asn, routerId: opts.routerId, clusterId: opts.routeReflector?.clusterId, clock: this.clock, policy: opts.policy });
    this.warnings = new LogThrottle({
      clock: this.clock,
      intervalMs: opts.logIntervalMs,
      write: ({ count, fields, repeated }) => {
        const { msg, ...rest } = fields as { msg: string };
        this.log.warn(repeated ? `${msg} (${count} times in the last ${Math.round((opts.logIntervalMs ?? 60_000) / 1000)} s)` : msg, { ...rest, count });
      },
    });
  }

  /**
   * Replaces the import/export policy: every received path is judged again,
   * the agent hears of changed best paths, and every Established peer gets
   * what changed for it (soft reconfiguration; no session reset).
   */
  setPolicy(policy: RibPolicy): void {
    this.propagate(this.rib.setPolicy(policy));
    for (const p of this.peers.values()) if (p.rib) this.sendExports(p, this.rib.exportsFor(p.rib));
  }

  /** The bound listen address (port resolved if 0 was asked), once started. */
  get address(): { host: string; port: number } | undefined {
    const a = this.server?.address();
    return a && typeof a === 'object' ? { host: a.address, port: a.port } : undefined;
  }

  /** Starts listening (if configured) and starts every peer's FSM. Rejects if the address cannot be bound. */
  async start(): Promise<void> {
    if (this.running) return;
    if (this.opts.listen) {
      const server = net.createServer((s) => this.onIncoming(s));
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host: this.opts.listen!.host, port: this.opts.listen!.port }, () => {
          server.off('error', reject);
          resolve();
        });
      });
      server.on('error', (err) => this.log.error('listen socket error', { err: String(err) }));
      this.server = server;
    }
    this.running = true;
    this.log.info('speaker started', { asn: this.asn, routerId: this.routerId, listen: this.address });
    for (const p of this.peers.values()) this.apply(p, p.fsm.start());
  }

  /**
   * Stops: NOTIFICATION Cease/Administrative Shutdown (6/2, with an RFC 9003
   * shutdown communication) to every peer with a session, closes all
   * connections and the listener. Resolves once every socket is closed.
   */
  async stop(message = 'podlab speaker stopping'): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.warnings.flush();
    for (const p of this.peers.values()) {
      this.apply(p, p.fsm.stop(shutdownCommunication(message)));
      this.apply(p, p.fsm.dispose());
    }
    const server = this.server;
    this.server = undefined;
    await Promise.all([
      server ? new Promise<void>((r) => server.close(() => r())) : undefined,
      ...[...this.sockets].map((s) => new Promise<void>((r) => (s.destroyed ? r() : s.once('close', () => r())))),
    ]);
    this.log.info('speaker stopped');
  }

  /** Adds a neighbour (started at once if the speaker runs). Throws RangeError on bad input or a duplicate. */
  addPeer(o: BgpPeerOptions): void {
    if (!isValidIpv4(o.address)) throw new RangeError(`invalid peer address ${o.address}`);
    if (this.peers.has(o.address)) throw new RangeError(`peer ${o.address} already configured`);
    if (!Number.isInteger(o.asn) || o.asn < 1 || o.asn > 0xffffffff) throw new RangeError(`invalid peer ASN ${o.asn}`);
    const localAddress = o.localAddress ?? this.opts.listen?.host ?? this.routerId;
    if (!isValidIpv4(localAddress)) throw new RangeError(`invalid local address ${localAddress}`);
    const passive = o.passive ?? calicoMeshPassive(localAddress, o.address);
    const jitterRng = this.rng.fork(o.address);
    const fsm = new BgpPeerFsm({
      localAsn: this.asn,
      routerId: this.routerId,
      peerAsn: o.asn,
      peerAddress: o.address,
      passive,
      holdTime: o.holdTime ?? this.opts.holdTime,
      keepaliveTime: o.holdTime !== undefined ? undefined : this.opts.keepaliveTime,
      connectRetryMs: this.opts.connectRetryMs,
      connectRetryMaxMs: this.opts.connectRetryMaxMs,
      clock: this.clock,
      jitter: () => 0.75 + 0.25 * jitterRng.next(),
    });
    const peer: Peer = {
      opts: { address: o.address, port: o.port ?? this.opts.listen?.port ?? 179, asn: o.asn, passive, rrClient: o.rrClient ?? false, localAddress, description: o.description },
      fsm,
      conns: new Map(),
      received: zeroCounts(),
      sent: zeroCounts(),
      malformed: 0,
      endOfRibReceived: false,
    };
    fsm.onActions = (a) => this.apply(peer, a);
    this.peers.set(o.address, peer);
    this.log.info('peer added', { peer: o.address, asn: o.asn, passive, rrClient: peer.opts.rrClient });
    if (this.running) this.apply(peer, fsm.start());
  }

  /** Removes a neighbour: Cease 3 (Peer De-configured), connections closed, its routes withdrawn. */
  removePeer(address: string): boolean {
    const p = this.peers.get(address);
    if (!p) return false;
    this.apply(p, p.fsm.stop(undefined, CEASE_PEER_DECONFIGURED));
    this.apply(p, p.fsm.dispose());
    this.peers.delete(address);
    this.propagate(this.rib.peerDown(address));
    return true;
  }

  /** Announces `prefix` (canonicalized) to every peer; replaces an earlier announcement of it. */
  announce(prefix: string, o: AnnounceOptions = {}): void {
    if (o.nextHop !== undefined && !isValidIpv4(o.nextHop)) throw new RangeError(`invalid next hop ${o.nextHop}`);
    const a: PathAttributes = { origin: o.origin ?? 'igp', asPath: [] };
    if (o.nextHop !== undefined) a.nextHop = o.nextHop;
    if (o.localPref !== undefined) a.localPref = o.localPref;
    if (o.med !== undefined) a.med = o.med;
    if (o.communities?.length) a.communities = [...o.communities];
    if (o.largeCommunities?.length) a.other = [largeCommunityAttribute(o.largeCommunities)];
    this.propagate(this.rib.originate(prefix, a));
  }

  /** Withdraws a prefix announced with `announce`. Returns false if it was not announced. */
  withdraw(prefix: string): boolean {
    const known = this.rib.localPrefixes().includes(normalizePrefix(prefix));
    this.propagate(this.rib.withdrawLocal(prefix));
    return known;
  }

  /** Per-peer status. */
  summary(): SpeakerSummary {
    const now = this.clock.now();
    const peers: PeerSummary[] = [];
    let malformed = 0;
    for (const p of this.peers.values()) {
      const main = p.fsm.main;
      const s = p.session;
      malformed += p.malformed;
      peers.push({
        address: p.opts.address,
        port: p.opts.port,
        asn: p.opts.asn,
        localAddress: p.opts.localAddress,
        description: p.opts.description,
        passive: p.opts.passive,
        rrClient: p.opts.rrClient,
        type: p.opts.asn === this.asn ? 'internal' : 'external',
        state: main.state,
        since: now - main.stateSince,
        uptime: main.establishedAt !== undefined ? now - main.establishedAt : null,
        routerId: s?.remoteId,
        holdTime: s?.holdTime,
        keepaliveTime: s?.keepaliveTime,
        as4: s?.as4,
        capabilities: s ? { local: s.localCapabilities.map(capName), remote: s.remoteCapabilities.map(capName) } : undefined,
        prefixes: this.rib.counts(p.opts.address),
        messages: { received: { ...p.received }, sent: { ...p.sent } },
        malformed: p.malformed,
        collisions: p.fsm.collisions,
        endOfRibReceived: p.endOfRibReceived,
        lastError: main.lastError ?? null,
      });
    }
    return {
      asn: this.asn,
      routerId: this.routerId,
      clusterId: this.opts.routeReflector?.clusterId,
      listen: this.address,
      peers,
      malformed,
      rejectedConnections: this.rejectedConnections,
    };
  }

  /** The Loc-RIB: every prefix with all candidate paths, the best first, each with its reason. */
  routes(): RouteSummary[] {
    return this.rib.routes().map((e) => ({
      prefix: e.prefix,
      paths: e.paths.map(({ path, best, eliminatedBy }) => ({
        best,
        reason: best ? e.reason : eliminatedBy,
        source: path.source,
        peer: path.peer?.address,
        nextHop: path.attributes.nextHop,
        asPath: flattenAsPath(path.attributes.asPath ?? []),
        asPathText: asPathToString(path.attributes.asPath ?? []),
        origin: path.attributes.origin,
        localPref: path.attributes.localPref,
        med: path.attributes.med,
        communities: path.attributes.communities ?? [],
        largeCommunities: parseLargeCommunities(path.attributes.other?.find((o) => o.type === ATTR_LARGE_COMMUNITY)?.value ?? Buffer.alloc(0)) ?? [],
        originatorId: path.attributes.originatorId,
        clusterList: path.attributes.clusterList ?? [],
      })),
    }));
  }

  /** Received paths the import checks or the policy rejected (loops, our own next hop, filters), by prefix. */
  rejected(): RejectedRoute[] {
    const out: RejectedRoute[] = [];
    for (const addr of this.peers.keys()) {
      for (const e of this.rib.adjRibIn(addr)) {
        if (!e.rejected) continue;
        const a = e.path.attributes;
        out.push({ prefix: e.path.prefix, peer: addr, reason: e.rejected, rule: e.rule, nextHop: a.nextHop, localPref: a.localPref, asPathText: asPathToString(a.asPath ?? []) });
      }
    }
    return out.sort((x, y) => comparePrefixes(x.prefix, y.prefix) || (x.peer < y.peer ? -1 : 1));
  }

  // -------------------------------------------------------------------------
  // Sockets
  // -------------------------------------------------------------------------

  private onIncoming(socket: net.Socket): void {
    const remote = (socket.remoteAddress ?? '').replace(/^::ffff:/, '');
    const peer = this.peers.get(remote);
    if (!peer || !this.running) {
      this.rejectedConnections++;
      this.warnings.note(`conn ${remote}`, { msg: 'connection from an unconfigured address closed', remote });
      socket.destroy();
      return;
    }
    const id = peer.fsm.allocConn();
    this.track(peer, id, socket, 'incoming', true);
    this.log.debug('incoming connection', { peer: remote, conn: id });
    this.apply(peer, peer.fsm.tcpConnected(id, 'incoming'));
  }

  private connect(peer: Peer, id: number): void {
    const socket = net.connect({ host: peer.opts.address, port: peer.opts.port, localAddress: peer.opts.localAddress });
    const c = this.track(peer, id, socket, 'outgoing', false);
    socket.once('connect', () => {
      c.connected = true;
      this.log.debug('outgoing connection up', { peer: peer.opts.address, conn: id });
      this.apply(peer, peer.fsm.tcpConnected(id, 'outgoing'));
    });
  }

  private track(peer: Peer, id: number, socket: net.Socket, direction: ConnDirection, connected: boolean): Conn {
    const c: Conn = { id, socket, framer: new BgpFramer({ as4: false }), direction, connected, closing: false, as4: false };
    peer.conns.set(id, c);
    this.sockets.add(socket);
    socket.setNoDelay(true);
    socket.on('data', (chunk) => this.onData(peer, c, chunk));
    socket.on('error', (err) => this.log.debug('socket error', { peer: peer.opts.address, conn: id, err: String(err) }));
    socket.on('close', () => {
      this.sockets.delete(socket);
      c.killTimer?.cancel();
      if (peer.conns.get(id) === c) peer.conns.delete(id);
      if (!c.closing) {
        c.closing = true;
        if (this.peers.get(peer.opts.address) === peer) this.apply(peer, peer.fsm.tcpFailed(id));
      }
    });
    return c;
  }

  private onData(peer: Peer, c: Conn, chunk: Buffer): void {
    if (c.closing) return;
    c.framer.push(chunk);
    while (!c.closing) {
      const m = c.framer.next();
      if (m === undefined) return;
      if (isBgpError(m)) {
        peer.malformed++;
        this.warnings.note(`malformed ${peer.opts.address}`, { msg: 'malformed message: sending NOTIFICATION', peer: peer.opts.address, error: m.toString() });
        this.emit('malformed', peer.opts.address, m);
        this.apply(peer, peer.fsm.messageError(c.id, m));
        if (!c.closing) this.closeConn(peer, c.id); // the connection was not the FSM's: still, the stream is broken
        return;
      }
      peer.received[m.type]++;
      if (this.log.debugEnabled && m.type !== 'keepalive') this.log.debug(`received ${describeMessage(m)}`, { peer: peer.opts.address, conn: c.id });
      this.apply(peer, peer.fsm.message(c.id, m));
    }
  }

  private closeConn(peer: Peer, id: number): void {
    const c = peer.conns.get(id);
    if (!c || c.closing) return;
    c.closing = true;
    if (!c.connected) {
      c.socket.destroy();
      return;
    }
    c.socket.end(); // flushes a NOTIFICATION queued just before
    // Real time, not the protocol clock: this is socket hygiene, and must run even under a ManualClock.
    const linger = setTimeout(() => c.socket.destroy(), CLOSE_LINGER_MS);
    linger.unref();
    c.killTimer = { cancel: () => clearTimeout(linger) };
  }

  private send(peer: Peer, id: number, msg: BgpMessage): void {
    const c = peer.conns.get(id);
    if (!c || c.closing || c.socket.destroyed) return;
    let bytes: Buffer;
    try {
      bytes = serializeBgpMessage(msg, { as4: c.as4 });
    } catch (err) {
      this.log.error('cannot encode message', { peer: peer.opts.address, err: String(err), msg: describeMessage(msg) });
      return;
    }
    peer.sent[msg.type]++;
    if (msg.type === 'notification') this.log.warn(`sent ${describeMessage(msg)}`, { peer: peer.opts.address });
    else if (this.log.debugEnabled && msg.type !== 'keepalive') this.log.debug(`sent ${describeMessage(msg)}`, { peer: peer.opts.address, conn: id });
    c.socket.write(bytes);
  }

  // -------------------------------------------------------------------------
  // Applying FSM actions
  // -------------------------------------------------------------------------

  private apply(peer: Peer, actions: FsmAction[]): void {
    for (const a of actions) {
      switch (a.type) {
        case 'connect':
          this.connect(peer, a.conn);
          break;
        case 'send':
          this.send(peer, a.conn, a.message);
          break;
        case 'close':
          this.closeConn(peer, a.conn);
          break;
        case 'state':
          this.log.info(`${peer.opts.address}: ${a.from} -> ${a.to}`, { reason: a.reason });
          this.emit('peer-state', peer.opts.address, a.to, a.reason);
          break;
        case 'established':
          this.onEstablished(peer, a.conn, a.session);
          break;
        case 'update':
          this.onUpdate(peer, a.update);
          break;
        case 'route-refresh':
          if (peer.rib) {
            this.rib.resetAdjRibOut(peer.opts.address);
            this.sendExports(peer, this.rib.exportsFor(peer.rib));
            this.sendUpdate(peer, endOfRib());
          }
          break;
        case 'routes-withdrawn':
          peer.rib = undefined;
          peer.session = undefined;
          this.propagate(this.rib.peerDown(peer.opts.address));
          break;
      }
    }
  }

  private onEstablished(peer: Peer, id: number, session: NegotiatedSession): void {
    const c = peer.conns.get(id);
    if (c) {
      c.as4 = session.as4;
      c.framer.options.as4 = session.as4;
    }
    peer.session = session;
    peer.endOfRibReceived = false;
    peer.rib = {
      address: peer.opts.address,
      asn: session.remoteAsn,
      routerId: session.remoteId,
      ibgp: session.ibgp,
      rrClient: peer.opts.rrClient,
      localAddress: peer.opts.localAddress,
    };
    this.rib.resetAdjRibOut(peer.opts.address);
    this.sendExports(peer, this.rib.exportsFor(peer.rib));
    this.sendUpdate(peer, endOfRib());
  }

  private onUpdate(peer: Peer, u: UpdateRepr): void {
    if (!peer.rib) return;
    if (isEndOfRib(u)) {
      peer.endOfRibReceived = true;
      return;
    }
    this.propagate(this.rib.applyUpdate(peer.rib, u));
    for (const prefix of u.nlri) {
      const e = this.rib.adjInEntry(peer.opts.address, prefix);
      if (e?.rejected !== 'filtered') continue;
      this.warnings.note(`filtered ${peer.opts.address}`, { msg: 'route filtered', peer: peer.opts.address, prefix, rule: e.rule });
      this.emit('filtered', peer.opts.address, prefix, e.rule!);
    }
  }

  /** Route events for the agent, then the changed prefixes to every Established peer. */
  private propagate(changes: BestChange[]): void {
    if (!changes.length) return;
    for (const ch of changes) {
      const wasLearned = ch.previous?.source === 'peer';
      if (ch.best?.source === 'peer') this.emit('route-add', ch.prefix, routeInfo(ch.best, ch.reason!));
      else if (wasLearned) this.emit('route-del', ch.prefix);
    }
    const prefixes = changes.map((c) => c.prefix);
    for (const p of this.peers.values()) if (p.rib) this.sendExports(p, this.rib.exportsFor(p.rib, prefixes));
  }

  private sendExports(peer: Peer, ex: { withdraw: string[]; announce: Announcement[] }): void {
    if (!ex.withdraw.length && !ex.announce.length) return;
    const as4 = peer.session?.as4 ?? true;
    const announce = as4 ? ex.announce : ex.announce.map((a) => ({ ...a, attributes: forTwoOctetPeer(a.attributes) }));
    for (const u of packUpdates(ex.withdraw, announce, { as4 })) this.sendUpdate(peer, u);
  }

  private sendUpdate(peer: Peer, u: UpdateRepr): void {
    this.apply(peer, peer.fsm.send({ type: 'update', ...u }));
  }
}

/** RFC 6793 §4.2.2: AS_TRANS in AS_PATH/AGGREGATOR plus AS4_PATH/AS4_AGGREGATOR for a 2-octet peer. */
function forTwoOctetPeer(a: PathAttributes): PathAttributes {
  const out: PathAttributes = { ...a };
  const { asPath, as4Path } = toTwoOctetPath(a.asPath ?? []);
  out.asPath = asPath;
  if (as4Path) out.as4Path = as4Path;
  if (a.aggregator && a.aggregator.asn > 0xffff) {
    out.as4Aggregator = a.aggregator;
    out.aggregator = { asn: AS_TRANS, address: a.aggregator.address };
  }
  return out;
}

function routeInfo(p: RoutePath, reason: BestPathReason): RouteInfo {
  const a = p.attributes;
  const info: RouteInfo = {
    nextHop: a.nextHop!,
    path: flattenAsPath(a.asPath ?? []),
    peer: p.peer!.address,
    origin: a.origin ?? 'incomplete',
    localPref: a.localPref ?? 100,
    communities: a.communities ?? [],
    reason,
  };
  if (a.med !== undefined) info.med = a.med;
  return info;
}

function capName(c: Capability): string {
  const code = capabilityCode(c);
  const name = CAPABILITY_NAMES[code] ?? `capability ${code}`;
  if (c.kind === 'multiprotocol') return `${name} (AFI ${c.afi}, SAFI ${c.safi})`;
  if (c.kind === 'four-octet-as') return `${name} (${c.asn})`;
  if (c.kind === 'graceful-restart') return `${name} (restart time ${c.restartTime} s)`;
  return name;
}

/**
 * `birdc show protocols`-style table of a summary, one line per peer:
 * `name  proto  state  since  info`, e.g. `127.0.96.2  BGP  up  12.3s  Established`.
 */
export function formatSummary(s: SpeakerSummary): string {
  const rows = [['Peer', 'AS', 'Type', 'State', 'Since', 'Info', 'Routes (rcv/acc/sent)']];
  for (const p of s.peers) {
    const info = p.state === 'Established' ? 'Established' : p.lastError ? `${p.state}: ${p.lastError.name}` : p.state;
    rows.push([
      p.address,
      String(p.asn),
      p.type === 'internal' ? (p.rrClient ? 'iBGP rr-client' : 'iBGP') : 'eBGP',
      p.state === 'Established' ? 'up' : 'start',
      `${(p.since / 1000).toFixed(1)}s`,
      info,
      `${p.prefixes.received}/${p.prefixes.accepted}/${p.prefixes.sent}`,
    ]);
  }
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(w[i])).join('  ').trimEnd()).join('\n');
}
