/**
 * The underlay: real UDP sockets on the node's IP. One socket listens on the
 * VXLAN port (8472, Linux's legacy default that Flannel uses); a small pool of
 * sockets on ephemeral ports sends, picked by a hash of the inner flow, the way
 * the kernel derives a VXLAN source port from the inner headers (RFC 7348
 * section 5: source port entropy for ECMP). Every datagram to a peer passes
 * that peer's impairment first.
 *
 * A busy (source port, peer) pair gets a socket of its own, bound to the same
 * source port (SO_REUSEADDR) and connected to the peer: the same datagram on
 * the wire for less CPU (Node skips its per-send address lookup and the tick
 * it takes, the kernel its route lookup). A send that socket fails
 * (ECONNREFUSED after an ICMP port unreachable, which only a connected socket
 * reports) goes again through the pool's socket: the peer gets what an
 * unconnected sender, or the kernel's VXLAN, would have sent it.
 *
 * The unencapsulated backends (host-gw, bgp) use a second socket in local
 * mode, the "wire" (port 8473 by default), carrying bare IPv4 packets with
 * pod addresses intact, as a Calico underlay carries them (Wireshark:
 * `-d udp.port==8473,ip`).
 *
 * Safety: datagrams are only ever sent to addresses inside `allowed` (127.0.0.0/8
 * in local mode); anything else is refused and counted.
 */
import dgram from 'node:dgram';
import { once } from 'node:events';
import type { Clock } from '../common/clock.ts';
import type { SeededRng } from '../common/rng.ts';
import { Cidr } from '../packet/cidr.ts';
import { Impairment, type ImpairmentSpec } from './impairment.ts';

/** A typed failure to set up the underlay (port in use, bad address). */
export class UnderlayError extends Error {
  override name = 'UnderlayError';
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

export interface UnderlayOptions {
  localIp: string;
  /** The VXLAN port (8472); 0 = no VXLAN socket (unencapsulated backends). */
  port: number;
  /** The bare-IPv4 wire's port (unencapsulated backends in local mode); absent = no wire. */
  wirePort?: number;
  /** Number of sending sockets (distinct source ports). */
  sourcePorts?: number;
  /** Only destinations inside this CIDR are ever sent to. */
  allowed?: { net: string; prefixLen: number };
  clock: Clock;
  rng: SeededRng;
}

export type DatagramHandler = (buf: Buffer, from: { address: string; port: number }) => void;

/** Datagrams from one pool socket to one peer before that pair gets its own connected socket. */
const CONNECT_AFTER = 64;

/** One peer's sending side: per pool slot, the datagrams sent so far and, once busy, a connected socket. */
interface PeerTx {
  ip: string;
  /** The destination port the connected sockets are (to be) connected to. */
  port: number;
  counts: number[];
  /** Per slot: undefined = not yet; null = connecting or failed to; else connected. */
  socks: (ConnectedTx | null | undefined)[];
}

/** A connected socket and the datagrams it has sent whose completion has not come yet (in send order). */
interface ConnectedTx {
  sock: dgram.Socket;
  pending: Buffer[];
  done: (err: Error | null) => void;
  /** Closed (its peer forgotten): a datagram an impairment held until later is dropped, not sent on a closed socket. */
  closed: boolean;
}

export class UdpUnderlay {
  private rx?: dgram.Socket;
  private tx: dgram.Socket[] = [];
  /** After close(): an impairment's delayed datagram finds no socket to throw on. */
  private closed = false;
  private readonly impairments = new Map<string, Impairment>();
  readonly sourcePortList: number[] = [];
  refused = 0;
  sendErrors = 0;
  private onDatagram: DatagramHandler = () => {};
  private onBare: DatagramHandler = () => {};
  /** Called when an impairment is set or cleared (the node's cached flows are re-decided). */
  onImpairmentChange: () => void = () => {};
  private wire?: dgram.Socket;
  /** Where datagrams may go and come from. */
  private readonly allowed: Cidr;
  /** The last peer address found inside `allowed`. */
  private lastAllowed: string | undefined;
  /** The sending side per peer address (inside `allowed`), and the last one used. */
  private readonly peers = new Map<string, PeerTx>();
  private lastPeer: PeerTx | undefined;
  /** Connected (source port, peer) sockets open now. */
  connectedSockets = 0;
  /** Datagrams a connected socket failed to send that went again through the pool's socket. */
  resent = 0;

  constructor(private readonly opts: UnderlayOptions) {
    const allowed = opts.allowed ?? { net: '127.0.0.0', prefixLen: 8 };
    this.allowed = Cidr.of(allowed.net, allowed.prefixLen);
  }

  /**
   * The node's receive side takes what arrives: datagrams on the listening
   * port (VXLAN), bare IPv4 packets on the wire port (host-gw, bgp).
   */
  attach(handlers: { datagram?: DatagramHandler; bare?: DatagramHandler }): void {
    if (handlers.datagram) this.onDatagram = handlers.datagram;
    if (handlers.bare) this.onBare = handlers.bare;
  }

  /** The node's underlay address. */
  get localIp(): string {
    return this.opts.localIp;
  }

  /** Binds the listening socket and the sending pool. */
  async start(): Promise<void> {
    if (this.opts.port) {
      this.rx = await bindUdp(this.opts.localIp, this.opts.port);
      this.rx.on('message', (msg, rinfo) => this.onDatagram(msg, rinfo));
    }
    if (this.opts.wirePort !== undefined) {
      this.wire = await bindUdp(this.opts.localIp, this.opts.wirePort);
      this.wire.on('message', (msg, rinfo) => this.onBare(msg, rinfo));
    }
    while (this.tx.length < (this.opts.sourcePorts ?? 4)) {
      // Shared (SO_REUSEADDR) so that connected sockets can take the same port later. The kernel may then give two
      // of the pool the same ephemeral port, leaving a flow hash without a port of its own: bind that one again.
      const s = await bindUdp(this.opts.localIp, 0, true);
      if (this.sourcePortList.includes(s.address().port)) {
        await closeUdp(s);
        continue;
      }
      // Replies never come to the sending sockets, but drain anything that does.
      s.on('message', (msg, rinfo) => this.onDatagram(msg, rinfo));
      this.tx.push(s);
      this.sourcePortList.push(s.address().port);
    }
  }

  /**
   * Sends one datagram to a peer's underlay address, through its impairment.
   * Returns what happened, for traces: 'sent', 'refused', or the impairment's verdict.
   */
  send(peerIp: string, port: number, buf: Buffer, flowHash: number): string {
    // Every datagram of a flow goes to the same peer (the same string): its address is checked once.
    if (peerIp !== this.lastAllowed) {
      if (!this.allowed.contains(peerIp)) {
        this.refused++;
        return 'refused';
      }
      this.lastAllowed = peerIp;
    }
    const slot = flowHash % this.tx.length;
    const sock = this.tx[slot] ?? this.rx;
    if (!sock) return 'refused';
    // No pool (an underlay that only listens): from the listening socket, never connected.
    if (this.tx.length === 0) return this.throughImpairment(peerIp, buf, (b) => this.sendLater(sock, b, port, peerIp));
    const peer = this.lastPeer?.ip === peerIp ? this.lastPeer : this.peerTx(peerIp, port);
    this.lastPeer = peer;
    const conn = peer.port === port ? peer.socks[slot] : null;
    // Without an impairment, straight to the socket: no closure per datagram.
    const imp = this.impairments.size === 0 ? undefined : this.impairments.get(peerIp);
    if (conn) {
      if (imp) return imp.apply(buf, (b) => (conn.closed ? this.sendErrors++ : sendConnected(conn, b)));
      sendConnected(conn, buf);
      return 'sent';
    }
    if (conn === undefined && ++peer.counts[slot] >= CONNECT_AFTER) this.connect(peer, slot, sock);
    if (imp) return imp.apply(buf, (b) => this.sendLater(sock, b, port, peerIp));
    sock.send(buf, port, peerIp, this.countSendError);
    return 'sent';
  }

  /** The sending side towards `peerIp` (datagrams to `port`), made on first use. */
  private peerTx(peerIp: string, port: number): PeerTx {
    let peer = this.peers.get(peerIp);
    if (!peer) {
      const n = this.tx.length;
      peer = { ip: peerIp, port, counts: new Array<number>(n).fill(0), socks: new Array<ConnectedTx | null | undefined>(n).fill(undefined) };
      this.peers.set(peerIp, peer);
    }
    return peer;
  }

  /**
   * Closes the sockets connected to a peer that is gone (its node left the
   * FDB): a lab whose nodes come and go keeps none for the ones that went. Its
   * datagrams, if any come, start again from the pool.
   */
  forgetPeer(peerIp: string): void {
    const peer = this.peers.get(peerIp);
    if (!peer) return;
    this.peers.delete(peerIp);
    if (this.lastPeer === peer) this.lastPeer = undefined;
    for (const conn of peer.socks) {
      if (!conn) continue;
      this.connectedSockets--;
      conn.closed = true;
      conn.sock.close();
    }
  }

  /**
   * Gives a busy (slot, peer) pair its socket: bound to the slot's port, connected to the peer. Until it is
   * ready, and for good if it cannot be made, the pair's datagrams go through the pool's socket.
   */
  private connect(peer: PeerTx, slot: number, pool: dgram.Socket): void {
    peer.socks[slot] = null;
    const { port } = peer;
    void bindUdp(this.opts.localIp, this.sourcePortList[slot], true)
      .then(
        (sock) =>
          new Promise<void>((resolve) => {
            // Node calls back with the error, if any (its typings say no argument).
            const connected = (err?: Error): void => {
              if (err || this.peers.get(peer.ip) !== peer || this.tx[slot] !== pool) {
                sock.close();
                return resolve();
              }
              // Datagrams the peer sends to this port would now come here rather than to the pool's socket.
              sock.on('message', (msg, rinfo) => this.onDatagram(msg, rinfo));
              const conn: ConnectedTx = {
                sock,
                closed: false,
                pending: [],
                done: (e) => {
                  const b = conn.pending.shift();
                  if (!e || !b || this.tx[slot] !== pool) return;
                  // A refusal the kernel kept from an earlier ICMP error: this datagram was not sent.
                  this.resent++;
                  pool.send(b, port, peer.ip, this.countSendError);
                },
              };
              peer.socks[slot] = conn;
              this.connectedSockets++;
              resolve();
            };
            sock.connect(port, peer.ip, connected);
          }),
      )
      .catch(() => {});
  }

  /** Every send's completion (one function for all, not a closure per datagram). */
  private readonly countSendError = (err: Error | null): void => {
    if (err) this.sendErrors++;
  };

  /** A send an impairment may have delayed past close(): counted as a send error then, never thrown. */
  private sendLater(sock: dgram.Socket, b: Buffer, port: number, peerIp: string): void {
    if (this.closed) this.sendErrors++;
    else sock.send(b, port, peerIp, this.countSendError);
  }

  /**
   * Hands `buf` to `emit` through the impairment towards `peerIp`, if any (also
   * for the raw-frame wire, which shares the per-peer impairments). Returns
   * 'sent' or the impairment's verdict.
   */
  throughImpairment(peerIp: string, buf: Buffer, emit: (b: Buffer) => void): string {
    const imp = this.impairments.get(peerIp);
    if (imp) return imp.apply(buf, emit);
    emit(buf);
    return 'sent';
  }

  /**
   * Sends one bare IPv4 packet over the wire to a peer (unencapsulated
   * backends in local mode), through the peer's impairment, from the wire
   * socket itself so the peer sees a fixed source port. Returns what happened.
   */
  sendBare(peerIp: string, packet: Buffer): string {
    if (!this.allowed.contains(peerIp)) {
      this.refused++;
      return 'refused';
    }
    const sock = this.wire;
    const port = this.opts.wirePort;
    if (!sock || port === undefined) return 'refused';
    return this.throughImpairment(peerIp, packet, (b) => this.sendLater(sock, b, port, peerIp));
  }

  /** The bound wire port, if any. */
  get wirePort(): number | undefined {
    return this.wire?.address().port;
  }

  /**
   * Sets (or with null clears) the impairment towards one peer address. Its
   * random stream is forked from the node's seed and `label` (the peer's node
   * name), so the same seed drops the same datagrams whatever addresses the
   * lab happens to use.
   */
  setImpairment(peerIp: string, spec: ImpairmentSpec | null, label = peerIp): void {
    if (!spec) this.impairments.delete(peerIp);
    else this.impairments.set(peerIp, new Impairment(spec, this.opts.rng.fork(`impair:${label}`), this.opts.clock));
    this.onImpairmentChange();
  }

  impairmentsByPeer(): Map<string, Impairment> {
    return this.impairments;
  }

  /** The source port the kernel would use for a flow hash. */
  sourcePortFor(flowHash: number): number {
    return this.sourcePortList[flowHash % this.sourcePortList.length] ?? this.opts.port;
  }

  async close(): Promise<void> {
    this.closed = true;
    const conns = [...this.peers.values()].flatMap((p) => p.socks).filter((c): c is ConnectedTx => !!c);
    for (const c of conns) c.closed = true;
    const connected = conns.map((c) => c.sock);
    this.peers.clear();
    this.lastPeer = undefined;
    const all = [this.rx, this.wire, ...this.tx, ...connected].filter((s): s is dgram.Socket => !!s);
    await Promise.all(all.map(closeUdp));
    this.rx = undefined;
    this.wire = undefined;
    this.tx = [];
  }
}

/**
 * The receive buffer asked for (the kernel caps it at net.core.rmem_max, 208 KiB on many hosts). Linux's own
 * VXLAN decapsulates in softirq and never queues on a socket, so a full buffer here would be a loss the
 * emulated wire has and the kernel's does not: with the default 208 KiB, a TCP transfer between two agents
 * lost about one datagram in 2,500 (RcvbufErrors) whenever the receiving agent fell behind for a moment.
 */
const RECV_BUFFER = 4 * 1024 * 1024;

/** Sends one datagram through a connected socket; its completion comes back in send order. */
function sendConnected(conn: ConnectedTx, buf: Buffer): void {
  conn.pending.push(buf);
  conn.sock.send(buf, conn.done);
}

function closeUdp(sock: dgram.Socket): Promise<void> {
  return new Promise<void>((r) => sock.close(() => r()));
}

/** Binds a UDP socket; `shared` lets other shared sockets (this underlay's own) bind the same port. */
async function bindUdp(address: string, port: number, shared = false): Promise<dgram.Socket> {
  const sock = dgram.createSocket({ type: 'udp4', reuseAddr: shared, recvBufferSize: RECV_BUFFER });
  const failed = once(sock, 'error').then(([err]) => {
    throw err;
  });
  sock.bind({ address, port, exclusive: true });
  try {
    await Promise.race([once(sock, 'listening'), failed]);
  } catch (err) {
    sock.close();
    const code = (err as NodeJS.ErrnoException).code ?? 'EUNKNOWN';
    const why = code === 'EADDRINUSE' ? 'address already in use' : code === 'EADDRNOTAVAIL' ? 'address not available on this host' : code;
    throw new UnderlayError(`cannot bind UDP ${address}:${port}: ${why}`, code);
  }
  failed.catch(() => {});
  // Keep serving after the first error; later errors are per-send and counted.
  sock.removeAllListeners('error');
  sock.on('error', () => {});
  return sock;
}
