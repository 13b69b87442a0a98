/**
 * The TCP layer of one network namespace (a pod's stack): demultiplexes
 * segments to connections by 4-tuple, keeps the listeners, answers segments
 * for closed ports with RST (RFC 9293 §3.10.7.1), hands ICMP errors to the
 * connection whose segment they quote, and is the host of every
 * TcpConnection: it builds each segment straight into one buffer (header,
 * options, data copied from the send queue, checksum) and gives it to the
 * IPv4 stack.
 *
 * Reentrancy: there is none to guard against. Every entry (a datagram from
 * the IP layer, a timer, a call from an application) runs as one unit of the
 * IP stack's processing (`ip.run`), and what it sends leaves only after it,
 * from the IP stack's dispatcher (../ipv4/dispatcher.ts): a segment answered
 * synchronously across a veth and a bridge comes back as a later datagram,
 * never inside this one. Connections an event touched are flushed (events to
 * the application, then output) by the dispatcher's egress step, one at a
 * time once nothing else is queued, so the application is only called
 * between events.
 */
import type { Clock } from '../../common/clock.ts';
import type { SeededRng } from '../../common/rng.ts';
import { isValidIpv4 } from '../../packet/addr.ts';
import { isWireError } from '../../packet/errors.ts';
import { IPPROTO_TCP, type Ipv4Repr } from '../../packet/ipv4.ts';
import { Ipv4Packet } from '../../packet/ipv4-packet.ts';
import { TCP_ACK, TCP_RST, parseTcp, tcpHeaderLength, writeTcpHeader, type TcpOptions, type TcpRepr } from '../../packet/tcp.ts';
import { FRAME_ROOM, type IpStack } from '../ipv4/ip-stack.ts';
import { DEFAULT_TCP_CONFIG, type TcpConfig } from './config.ts';
import { TcpConnection, type ConnectionHost } from './connection.ts';
import { TcpError } from './errors.ts';
import { seqAdd, seqGe, seqGt, seqLe } from './seq.ts';
import { TcpServer, TcpSocket } from './socket.ts';

export interface TcpStackOptions {
  clock: Clock;
  /** ISNs and ephemeral ports come from here, so runs replay. */
  rng: SeededRng;
  /** Overrides the MSS we advertise (default: the route's interface MTU - 40). */
  mss?: number;
  config?: Partial<TcpConfig>;
}

export interface ListenOptions {
  /** Most connections still in the handshake (SYN-RECEIVED); further SYNs are dropped. */
  backlog?: number;
  /** Local address to accept on; default all ('0.0.0.0'). */
  host?: string;
  /** Keep our side open after the peer's FIN (Node's allowHalfOpen); default false. */
  allowHalfOpen?: boolean;
}

export interface ConnectOptions {
  host: string;
  port: number;
  localPort?: number;
  /** Source address (default: the route's preferred source), as bind() before connect(). */
  localAddress?: string;
  allowHalfOpen?: boolean;
}

/** `netstat -s`-like counters of the stack. */
export interface TcpCounters {
  activeOpens: number;
  passiveOpens: number;
  segsIn: number;
  segsOut: number;
  rstOut: number;
  badSegments: number;
  listenOverflows: number;
  /** Errors of connections their applications had closed both ways, which nobody is told of (the kernel's orphans). */
  orphanErrors: number;
  noPort: number;
}

interface Listener {
  port: number;
  host: string;
  backlog: number;
  halfOpen: number;
  allowHalfOpen: boolean;
  server: TcpServer;
}

export class TcpStack implements ConnectionHost {
  readonly clock: Clock;
  readonly config: TcpConfig;
  readonly counters: TcpCounters = { activeOpens: 0, passiveOpens: 0, segsIn: 0, segsOut: 0, rstOut: 0, badSegments: 0, listenOverflows: 0, orphanErrors: 0, noPort: 0 };
  /** Called when an application's event handler throws, or a socket error has no listener (default: logged to stderr). */
  onAppError: (err: unknown) => void = (err) =>
    process.stderr.write(
      err instanceof TcpError
        ? `podlab tcp (${this.ip.name}): socket error nobody listened to: ${err.message}\n`
        : `podlab tcp (${this.ip.name}): application handler threw: ${(err as Error)?.stack ?? String(err)}\n`,
    );
  private readonly rng: SeededRng;
  private readonly mssOverride?: number;
  private readonly conns = new Map<string, TcpConnection>();
  private readonly listeners = new Map<number, Listener>();
  private readonly portUse = new Map<number, number>();
  private readonly halfOpenOf = new Map<TcpConnection, Listener>();
  private readonly dirty = new Set<TcpConnection>();
  /** Connections owing an ACK at the end of the current receive batch (GRO-like, see TcpConnection). */
  private readonly batchAcks = new Set<TcpConnection>();
  private batchEndQueued = false;
  private readonly afterIo: ((fn: () => void) => void) | undefined;
  private nextPort: number;

  constructor(
    readonly ip: IpStack,
    opts: TcpStackOptions,
  ) {
    this.clock = opts.clock;
    this.rng = opts.rng;
    this.mssOverride = opts.mss;
    this.config = { ...DEFAULT_TCP_CONFIG, ...opts.config };
    this.afterIo = opts.clock.afterIo?.bind(opts.clock);
    this.nextPort = 32768 + opts.rng.int(0, 28231);
    ip.registerProtocol(IPPROTO_TCP, {
      input: (d, raw) => this.segmentIn(d, raw),
      icmpError: (e) => this.icmpError(e),
      egress: () => this.egress(),
    });
  }

  /** An error of a connection its application had closed both ways: counted, as the kernel's orphans fail unseen. */
  onOrphanError(): void {
    this.counters.orphanErrors++;
  }

  // ================================================================ application API

  /**
   * Listens on `port` (all local addresses unless `host`). Throws a TcpError
   * EADDRINUSE when the port is taken (the containers of one pod share this
   * stack, so a second container binding the same port fails here).
   */
  listen(port: number, opts: ListenOptions = {}, onConnection?: (s: TcpSocket) => void): TcpServer {
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new TcpError('EINVAL', 'listen', undefined, port, 'port must be 0-65535');
    if (port === 0) port = this.ephemeralPort();
    const host = opts.host ?? '0.0.0.0';
    if (this.listeners.has(port)) throw new TcpError('EADDRINUSE', 'listen', host === '0.0.0.0' ? '::' : host, port);
    if (host !== '0.0.0.0' && !this.ip.isLocal(host)) throw new TcpError('EADDRNOTAVAIL', 'listen', host, port);
    const server = new TcpServer(port, host, () => this.unlisten(port, server));
    if (onConnection) server.on('connection', onConnection);
    this.listeners.set(port, {
      port,
      host,
      backlog: Math.max(1, opts.backlog ?? this.config.backlog),
      halfOpen: 0,
      allowHalfOpen: opts.allowHalfOpen ?? false,
      server,
    });
    return server;
  }

  private unlisten(port: number, server: TcpServer): void {
    const l = this.listeners.get(port);
    if (!l || l.server !== server) return;
    this.listeners.delete(port);
    // Half-open connections of a closed listener are reset, as close(2) on a listening socket does.
    this.run(() => {
      for (const [c, owner] of this.halfOpenOf) if (owner === l) c.abort();
    });
  }

  /**
   * Opens a connection. Errors (ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH,
   * ENETUNREACH...) arrive as the socket's 'error' event, never synchronously.
   */
  connect(opts: ConnectOptions): TcpSocket {
    const dst = opts.host === 'localhost' ? '127.0.0.1' : opts.host;
    if (!isValidIpv4(dst)) throw new TcpError('EINVAL', 'connect', opts.host, opts.port, 'host must be an IPv4 address');
    if (!Number.isInteger(opts.port) || opts.port < 1 || opts.port > 65535) throw new TcpError('EINVAL', 'connect', dst, opts.port, 'port must be 1-65535');
    const path = this.pathTo(dst);
    const localPort = opts.localPort ?? this.ephemeralPort();
    const src = opts.localAddress ?? path?.src ?? '0.0.0.0';
    if (this.conns.has(key(src, localPort, dst, opts.port))) throw new TcpError('EADDRINUSE', 'connect', dst, opts.port);
    const c = new TcpConnection(this, src, localPort, dst, opts.port, { iss: this.isn(), mss: path?.mss ?? 536, passive: false });
    const sock = new TcpSocket(this, c, { allowHalfOpen: opts.allowHalfOpen ?? false });
    this.counters.activeOpens++;
    this.register(c);
    // Like Node, the attempt starts after the caller has attached its handlers.
    queueMicrotask(() =>
      this.run(() => {
        if (sock.destroyed) return this.release(c); // destroyed before it started
        if (!path) c.localSendError('ENETUNREACH');
        else c.open();
        this.touch(c);
      }),
    );
    return sock;
  }

  /** Every connection (TIME-WAIT included), for `ss`. */
  connections(): TcpConnection[] {
    return [...this.conns.values()];
  }

  /** Listening ports, for `ss -l`. */
  listening(): { port: number; host: string; backlog: number; halfOpen: number }[] {
    return [...this.listeners.values()].map((l) => ({ port: l.port, host: l.host, backlog: l.backlog, halfOpen: l.halfOpen }));
  }

  /**
   * The namespace goes away (pod deleted): listeners close and every
   * connection is reset, as the kernel resets the sockets of killed processes.
   */
  shutdown(): void {
    for (const l of [...this.listeners.values()]) l.server.close();
    for (const c of [...this.conns.values()]) this.run(() => c.abort(new TcpError('ECONNABORTED', 'read', c.remoteAddr, c.remotePort)));
  }

  // ================================================================ host interface

  /** Runs `fn` as one unit of the IP stack's processing; touched connections are flushed after. */
  run(fn: () => void): void {
    this.ip.run(fn);
  }

  touch(c: TcpConnection): void {
    this.dirty.add(c);
    this.ip.wake();
  }

  ackAfterBatch(c: TcpConnection): boolean {
    if (!this.afterIo) return false;
    this.batchAcks.add(c);
    if (!this.batchEndQueued) {
      this.batchEndQueued = true;
      this.afterIo(this.endBatch);
    }
    return true;
  }

  /** The batch of received datagrams is over: the ACKs it deferred go out. */
  private readonly endBatch = (): void => {
    this.batchEndQueued = false;
    const cs = [...this.batchAcks];
    this.batchAcks.clear();
    this.run(() => {
      for (const c of cs) c.batchEnded();
    });
  };

  release(c: TcpConnection): void {
    const k = key(c.localAddr, c.localPort, c.remoteAddr, c.remotePort);
    if (this.conns.get(k) !== c) return;
    this.conns.delete(k);
    const n = (this.portUse.get(c.localPort) ?? 1) - 1;
    if (n > 0) this.portUse.set(c.localPort, n);
    else this.portUse.delete(c.localPort);
    const l = this.halfOpenOf.get(c);
    if (l) {
      l.halfOpen--;
      this.halfOpenOf.delete(c);
    }
  }

  accept(c: TcpConnection): void {
    const l = this.halfOpenOf.get(c);
    if (!l) return;
    l.halfOpen--;
    this.halfOpenOf.delete(c);
    if (this.listeners.get(l.port) !== l) {
      c.abort();
      return;
    }
    const sock = new TcpSocket(this, c, { allowHalfOpen: l.allowHalfOpen });
    l.server.connectionCount++;
    sock.once('close', () => l.server.connectionCount--);
    try {
      l.server.emit('connection', sock);
    } catch (e) {
      this.onAppError(e);
    }
  }

  transmit(c: TcpConnection, flags: number, seq: number, ack: number, window: number, dataOff: number, dataLen: number, options?: TcpOptions): boolean {
    const hlen = tcpHeaderLength(options);
    // The segment is written behind room for its Ethernet and IPv4 headers, so the stack frames it in place
    // rather than copying it into a new frame (one allocation and one copy of the data per segment, not two).
    const frame = Buffer.allocUnsafe(FRAME_ROOM + hlen + dataLen);
    if (dataLen) c.sendQueue.copyTo(frame, FRAME_ROOM + hlen, dataOff, dataLen);
    writeTcpHeader(frame, FRAME_ROOM, { srcPort: c.localPort, dstPort: c.remotePort, seq, ack, flags, window, options }, dataLen, c.localAddr, c.remoteAddr, c.pseudoSeed);
    this.counters.segsOut++;
    const r = this.ip.send({ dst: c.remoteAddr, src: c.localAddr, protocol: IPPROTO_TCP, payload: frame.subarray(FRAME_ROOM), frame });
    if (!r.ok) {
      c.localSendError(r.error === 'ENETUNREACH' ? 'ENETUNREACH' : r.error === 'EMSGSIZE' ? 'EMSGSIZE' : 'EINVAL');
      return false;
    }
    return true;
  }

  // ================================================================ input

  /**
   * The dispatcher's egress step: flushes one touched connection (its events
   * to the application, then its output). One at a time, so what it sent
   * leaves, and what that brings back is processed, before the next.
   */
  private egress(): boolean {
    if (this.dirty.size === 0) return false;
    const c = this.dirty.values().next().value as TcpConnection;
    this.dirty.delete(c);
    c.flush();
    return true;
  }

  private segmentIn(d: Ipv4Repr, raw: Buffer): void {
    // The pseudo header from the IPv4 header's words, not from d's address strings parsed back.
    const seg = parseTcp(d.payload, raw.readUInt32BE(12), raw.readUInt32BE(16));
    if (isWireError(seg)) {
      this.counters.badSegments++;
      this.ip.counters.drop(`malformed-tcp:${seg.reason}`);
      return;
    }
    this.counters.segsIn++;
    const k = key(d.dst, seg.dstPort, d.src, seg.srcPort);
    const c = this.conns.get(k);
    if (c) {
      // RFC 6191-style reuse: a new SYN beyond the old incarnation ends a TIME-WAIT.
      if (c.state === 'TIME-WAIT' && seg.flags.syn && !seg.flags.ack && seqGt(seg.seq, c.rcvNxt) && this.listeners.has(seg.dstPort)) {
        c.abort();
      } else {
        c.segmentArrives(seg);
        this.touch(c);
        return;
      }
    }
    const l = this.listeners.get(seg.dstPort);
    if (l && (l.host === '0.0.0.0' || l.host === d.dst)) return this.listenInput(l, d, seg);
    this.counters.noPort++;
    this.ip.counters.drop('tcp-no-socket');
    this.sendReset(d, seg);
  }

  /** RFC 9293 §3.10.7.2 (LISTEN). */
  private listenInput(l: Listener, d: Ipv4Repr, seg: TcpRepr): void {
    const f = seg.flags;
    if (f.rst) return;
    if (f.ack) return this.sendReset(d, seg);
    if (!f.syn) return;
    if (l.halfOpen >= l.backlog) {
      // As Linux: a full queue drops the SYN silently; the client retransmits.
      this.counters.listenOverflows++;
      this.ip.counters.drop('tcp-listen-overflow');
      return;
    }
    const c = new TcpConnection(this, d.dst, seg.dstPort, d.src, seg.srcPort, { iss: this.isn(), mss: this.pathTo(d.src)?.mss ?? 536, passive: true });
    this.counters.passiveOpens++;
    this.register(c);
    this.halfOpenOf.set(c, l);
    l.halfOpen++;
    c.acceptSyn(seg);
    this.touch(c);
  }

  /** RST for a segment no connection wants (RFC 9293 §3.10.7.1). */
  private sendReset(d: Ipv4Repr, seg: TcpRepr): void {
    if (seg.flags.rst) return;
    const len = seg.payload.length + (seg.flags.syn ? 1 : 0) + (seg.flags.fin ? 1 : 0);
    const buf = Buffer.allocUnsafe(20);
    const fields = seg.flags.ack
      ? { srcPort: seg.dstPort, dstPort: seg.srcPort, seq: seg.ack, ack: 0, flags: TCP_RST, window: 0 }
      : { srcPort: seg.dstPort, dstPort: seg.srcPort, seq: 0, ack: seqAdd(seg.seq, len), flags: TCP_RST | TCP_ACK, window: 0 };
    writeTcpHeader(buf, 0, fields, 0, d.dst, d.src);
    this.counters.rstOut++;
    this.counters.segsOut++;
    this.ip.send({ dst: d.src, src: d.dst, protocol: IPPROTO_TCP, payload: buf });
  }

  /** An ICMP error quoting one of our segments: validated (RFC 5927 §4.1) and handed to its connection. */
  private icmpError(e: { type: 'dest-unreachable' | 'time-exceeded'; code: number; nextHopMtu?: number; quote: Buffer }): void {
    const q = Ipv4Packet.quoted(e.quote);
    if (isWireError(q) || q.payload.length < 8) return;
    const src = q.src;
    const dst = q.dst;
    const l4 = q.payload;
    const sport = l4.readUInt16BE(0);
    const dport = l4.readUInt16BE(2);
    const seq = l4.readUInt32BE(4);
    const c = this.conns.get(key(src, sport, dst, dport));
    if (!c) return;
    // The quoted sequence number must be one we have outstanding.
    if (!(seqGe(seq, c.sndUna) && seqLe(seq, c.sndMax)) && !(c.state === 'SYN-SENT' && seq === c.iss)) return;
    c.icmpError(e.type === 'time-exceeded' ? 'time-exceeded' : 'unreachable', e.code, e.nextHopMtu);
    this.touch(c);
  }

  // ================================================================ helpers

  private register(c: TcpConnection): void {
    this.conns.set(key(c.localAddr, c.localPort, c.remoteAddr, c.remotePort), c);
    this.portUse.set(c.localPort, (this.portUse.get(c.localPort) ?? 0) + 1);
  }

  /** Source address and MSS towards `dst`, or undefined without a route. */
  private pathTo(dst: string): { src: string; mss: number } | undefined {
    // On lo (MTU 65536) the MSS is 65495, as Linux advertises: a datagram cannot exceed 65535 bytes.
    if (this.ip.isLocal(dst)) return { src: dst, mss: this.mssOverride ?? Math.min(this.ip.interfaces.get('lo')?.dev.mtu ?? 65536, 65535) - 40 };
    const route = this.ip.routes.lookup(dst);
    if (!route) return undefined;
    const src = this.ip.sourceFor(route);
    if (!src) return undefined;
    const mtu = this.ip.interfaces.get(route.dev)?.dev.mtu ?? 1500;
    return { src, mss: this.mssOverride ?? Math.min(mtu, 65535) - 40 };
  }

  /** A seeded initial sequence number (RFC 9293 §3.4.1 wants unpredictable; we want replayable). */
  private isn(): number {
    return Math.floor(this.rng.next() * 0x100000000) >>> 0;
  }

  /** An ephemeral port (Linux's ip_local_port_range 32768-60999) free of listeners and connections. */
  private ephemeralPort(): number {
    for (let i = 0; i < 28232; i++) {
      const p = this.nextPort;
      this.nextPort = this.nextPort >= 60999 ? 32768 : this.nextPort + 1;
      if (!this.portUse.has(p) && !this.listeners.has(p)) return p;
    }
    throw new TcpError('EADDRNOTAVAIL', 'connect', undefined, undefined, 'no free ephemeral port');
  }
}

function key(localAddr: string, localPort: number, remoteAddr: string, remotePort: number): string {
  return `${localAddr}:${localPort}>${remoteAddr}:${remotePort}`;
}

