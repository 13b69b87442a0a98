/**
 * One TCP connection: the RFC 9293 state machine as a plain class, driven by
 * four kinds of event (a segment arrives, a timer fires, the application
 * calls write/end/destroy/pause/resume, an ICMP error arrives) and acting
 * through a thin host (the TcpStack): `transmit` a segment, `release` the
 * connection, `accept` it. Time comes from the injected Clock only.
 *
 * Design notes
 * - Events in, segments out. `transmit` only queues a segment: the IP
 *   stack's dispatcher sends it once the current event is processed, so an
 *   answer (which can come back in the same turn, across a veth and a
 *   bridge) is a later event, never a nested one. A connection never calls
 *   the application in the middle of processing: data, 'end', 'error' and
 *   'close' are collected and handed out by `flush()`, which the host runs
 *   after the event, followed by `output()`.
 * - Sending (RFC 5681, RFC 6582, RFC 6298): slow start and congestion
 *   avoidance on a byte-counted cwnd (initial 10 segments), fast retransmit
 *   on the third duplicate ACK with NewReno recovery (partial ACKs retransmit
 *   the next hole), limited transmit (RFC 3042) on the first two duplicates,
 *   RTO from SRTT/RTTVAR, sampled (as Linux without timestamps) by every ACK
 *   that covers data sent only once, from that data's send time (Karn's
 *   rule: never from retransmitted data; a sample ends the backoff),
 *   exponential backoff, go-back-N after a timeout. No SACK, no timestamps:
 *   options we do not implement are ignored, and we never offer them.
 * - Receiving: in-order data is delivered at once (or held while paused),
 *   out-of-order segments are buffered within the window and cost an
 *   immediate duplicate ACK; ACKs are delayed (every second full segment, or
 *   after `delayedAckMs`) except for out-of-order data, hole fills, FINs and
 *   window updates. With real I/O (the clock's `afterIo`), the ACK owed for
 *   every second segment waits for the end of the batch of datagrams being
 *   received (GRO-like: at most 64 KiB, not past a PSH), so a burst costs one
 *   ACK, except for the 16 segments after out-of-order data, a hole fill or
 *   a duplicate (Linux's quick-ACK mode: a recovery needs its ACKs); slow
 *   start and congestion avoidance count the bytes an ACK covers (RFC
 *   3465), so such stretch ACKs slow neither. The advertised window is
 *   the free receive buffer, never shrunk (its right edge only moves right)
 *   and opened only by at least min(rcvBuf/2, MSS) (receiver-side silly
 *   window avoidance, RFC 9293 §3.8.6.2.2). As Linux, a pure ACK may sit at
 *   that right edge, and an ACK that moves SND.UNA always brings its window.
 * - Zero window: with data to send, nothing in flight and a closed window, a
 *   persist timer sends one-byte probes with backoff; a peer that answers
 *   them keeps the connection alive forever, one that does not is given up
 *   on like a retransmission timeout.
 * - Failure bounds: connect() gives up after `synRetries` SYN retransmissions
 *   (ETIMEDOUT, or the ICMP error seen: EHOSTUNREACH...); an established
 *   connection gives up `userTimeoutMs` after its first retransmission or
 *   after `maxRetransmits`, whichever comes first. ICMP unreachables fail a
 *   connect at once (as Linux does) and are "soft" errors afterwards: they
 *   name the error reported at the timeout.
 * - RSTs (RFC 5961 §3): reset only on an exact sequence match, challenge ACK
 *   for an in-window RST or SYN.
 */
import type { Clock } from '../../common/clock.ts';
import { pseudoHeaderSum } from '../../packet/checksum.ts';
import { TCP_ACK, TCP_FIN, TCP_MAX_WSCALE, TCP_PSH, TCP_RST, TCP_SYN, type TcpOptions, type TcpRepr } from '../../packet/tcp.ts';
import type { TcpConfig } from './config.ts';
import { TcpError, type TcpErrorCode } from './errors.ts';
import { SendQueue } from './send-queue.ts';
import { SentTimes } from './sent-times.ts';
import { seqAdd, seqDiff, seqGe, seqGt, seqLe, seqLt } from './seq.ts';

/** RFC 9293 connection states (LISTEN lives in the stack's listener table). */
export type TcpState =
  | 'CLOSED'
  | 'SYN-SENT'
  | 'SYN-RECEIVED'
  | 'ESTABLISHED'
  | 'FIN-WAIT-1'
  | 'FIN-WAIT-2'
  | 'CLOSE-WAIT'
  | 'CLOSING'
  | 'LAST-ACK'
  | 'TIME-WAIT';

/** What a connection needs from its stack. */
export interface ConnectionHost {
  readonly clock: Clock;
  readonly config: TcpConfig;
  /**
   * Sends one segment of `c`; the `dataLen` data bytes are at offset `dataOff`
   * of `c.sendQueue`. Returns false if the IP layer refused it (no route).
   */
  transmit(c: TcpConnection, flags: number, seq: number, ack: number, window: number, dataOff: number, dataLen: number, options?: TcpOptions): boolean;
  /** Runs `fn` (a timer) inside the stack's critical section, then flushes. */
  run(fn: () => void): void;
  /** Asks for `c.flush()` once the current event is processed. */
  touch(c: TcpConnection): void;
  /**
   * Defers the ACK `c` owes to the end of the batch of datagrams being
   * received, then calls `c.batchEnded()`; false if the host has no batches
   * (no real I/O): the ACK goes at once.
   */
  ackAfterBatch(c: TcpConnection): boolean;
  /** `c` reached CLOSED: forget its 4-tuple. */
  release(c: TcpConnection): void;
  /** `c`, a passive open, reached ESTABLISHED: hand it to its listener. */
  accept(c: TcpConnection): void;
}

/** What the connection tells its socket. */
export interface ConnectionEvents {
  connect(): void;
  data(chunk: Buffer): void;
  end(): void;
  drain(): void;
  error(err: TcpError): void;
  close(hadError: boolean): void;
}

/** Counters of one connection (`ss -ti`-like). */
export interface ConnectionStats {
  segsOut: number;
  segsIn: number;
  bytesSent: number;
  bytesRetrans: number;
  bytesReceived: number;
  retransmits: number;
  fastRetransmits: number;
  timeouts: number;
  dupAcksIn: number;
  oooSegments: number;
  zeroWindowProbes: number;
}

type TimerKind = 'rto' | 'persist' | 'time-wait' | null;

const SYNCHRONIZED_SEND: ReadonlySet<TcpState> = new Set(['ESTABLISHED', 'CLOSE-WAIT', 'FIN-WAIT-1', 'CLOSING', 'LAST-ACK']);
const RECEIVES_DATA: ReadonlySet<TcpState> = new Set(['ESTABLISHED', 'FIN-WAIT-1', 'FIN-WAIT-2']);
const MAX_CWND = 1 << 24;
/** Most data one coalesced ACK covers: Linux's GRO packet limit (GRO_LEGACY_MAX_SIZE, gro_max_size's default). */
const GRO_MAX_BYTES = 65536;
/** In-order segments ACKed without waiting for the batch's end after a loss sign (Linux's TCP_MAX_QUICKACKS). */
const QUICK_ACKS = 16;

interface OooSegment {
  seq: number;
  data: Buffer;
  fin: boolean;
}

/** Chooses our window-scale shift so the receive buffer fits the 16-bit field. */
export function wscaleFor(rcvBuf: number): number {
  let s = 0;
  while (s < TCP_MAX_WSCALE && rcvBuf >> s > 0xffff) s++;
  return s;
}

export class TcpConnection {
  state: TcpState = 'CLOSED';
  /** False until open()/acceptSyn(): a new socket may be written to before it connects. */
  private started = false;
  readonly stats: ConnectionStats = {
    segsOut: 0,
    segsIn: 0,
    bytesSent: 0,
    bytesRetrans: 0,
    bytesReceived: 0,
    retransmits: 0,
    fastRetransmits: 0,
    timeouts: 0,
    dupAcksIn: 0,
    oooSegments: 0,
    zeroWindowProbes: 0,
  };
  /** Set by the socket that owns this connection. */
  events: ConnectionEvents | null = null;
  /** True for a passive open (created by a listener). */
  readonly passive: boolean;
  /** The error the connection ended with, if any. */
  error: TcpError | null = null;
  /** Unfolded pseudo-header sum (addresses + protocol) for this 4-tuple's checksums. */
  readonly pseudoSeed: number;

  // ---- send sequence space (RFC 9293 §3.3.1)
  readonly iss: number;
  sndUna: number;
  sndNxt: number;
  /** Highest sequence number sent + 1 (snd.nxt can go back after a timeout). */
  sndMax: number;
  /** Peer's window in bytes (scaled). */
  sndWnd = 0;
  private sndWl1 = 0;
  private sndWl2 = 0;
  private maxSndWnd = 0;
  private sndShift = 0;
  private rcvShift = 0;
  private offerWscale: boolean;
  /** Sequence number of the first byte in `sendQueue`. */
  private qSeq: number;
  readonly sendQueue = new SendQueue();
  private finQueued = false;
  private finSeq = 0;
  private writeBlocked = false;
  /** The send buffer's size now (`sndBuf`, grown by expandSndBuf). */
  private sndBufSize: number;

  // ---- receive sequence space
  irs = 0;
  rcvNxt = 0;
  private rcvAdvRight = 0;
  private readonly rcvHeld: Buffer[] = [];
  private rcvHeldBytes = 0;
  private paused = false;
  private ooo: OooSegment[] = [];
  private peerFin = false;
  private endPending = false;

  // ---- MSS
  /** Effective send MSS: min(peer's MSS option, ours). */
  sndMss: number;
  /** The MSS we advertise (interface MTU - 40). */
  readonly rcvMss: number;

  // ---- RTT and timers
  srtt = 0;
  rttvar = 0;
  rto: number;
  private hasRtt = false;
  /** When each segment in flight first left: an RTT sample from every ACK of data sent once. */
  private readonly sentTimes = new SentTimes();
  /** End of the highest data retransmitted (at most SND.UNA when none is outstanding). */
  private rtxEnd: number;
  /** When data was last retransmitted. */
  private rtxAt = -Infinity;
  /** When our SYN first left, while it is being timed (data segments are timed through `sentTimes`). */
  private synSentAt: number | undefined;
  /** Consecutive timeouts of the oldest outstanding segment (or SYN). */
  private retries = 0;
  private firstRtoAt = 0;
  private probes = 0;
  /** When the peer last sent an acceptable ACK (bounds zero-window probing of a dead peer). */
  private lastAckAt = 0;
  private timerKind: TimerKind = null;
  private timerDeadline = 0;
  private timerHandle: { cancel(): void } | null = null;
  private timerFireAt = 0;
  private delackDeadline = 0;
  private delackHandle: { cancel(): void } | null = null;
  private delackFireAt = 0;

  // ---- congestion control
  cwnd: number;
  ssthresh = 0x7fffffff;
  private dupAcks = 0;
  private inRecovery = false;
  /** In the slow start that follows a retransmission timeout. */
  private rtoSlowStart = false;
  /** Bytes acknowledged in congestion avoidance towards the next SMSS of cwnd. */
  private caBytes = 0;
  private recover: number;

  // ---- ACK state
  private ackNow = false;
  private dupAckNow = false;
  private lastOowAck = -Infinity;
  private delackBytes = 0;
  /** In-order segments still to be ACKed every second one, not per batch (quick-ACK mode). */
  private quickAcks = 0;
  private softError: TcpErrorCode | null = null;

  // ---- events for flush()
  private readonly pendingData: Buffer[] = [];
  private pendingConnect = false;
  private pendingAccept = false;
  private pendingEnd = false;
  private pendingDrain = false;
  private pendingError: TcpError | null = null;
  private pendingClose = false;
  private closeEmitted = false;

  constructor(
    private readonly host: ConnectionHost,
    readonly localAddr: string,
    readonly localPort: number,
    readonly remoteAddr: string,
    readonly remotePort: number,
    opts: { iss: number; mss: number; passive: boolean },
  ) {
    this.passive = opts.passive;
    this.pseudoSeed = pseudoHeaderSum(localAddr, remoteAddr, 6, 0);
    this.iss = opts.iss >>> 0;
    this.sndUna = this.iss;
    this.sndNxt = this.iss;
    this.sndMax = this.iss;
    this.qSeq = seqAdd(this.iss, 1);
    this.recover = this.iss;
    this.rtxEnd = this.qSeq;
    this.rcvMss = opts.mss;
    this.sndMss = Math.min(opts.mss, 536);
    this.rto = host.config.initialRtoMs;
    this.cwnd = host.config.initialCwnd * this.sndMss;
    this.offerWscale = true;
    this.sndBufSize = host.config.sndBuf;
  }

  private get cfg(): TcpConfig {
    return this.host.config;
  }

  private get now(): number {
    return this.host.clock.now();
  }

  /** Bytes written by the application and not yet acknowledged. */
  get bufferedAmount(): number {
    return this.sendQueue.length;
  }

  /** Our FIN has gone out, so all the application wrote has been sent at least once. */
  get finSent(): boolean {
    return this.finQueued && seqGt(this.sndMax, this.finSeq);
  }

  /** The 4-tuple as `ss` prints it. */
  toString(): string {
    return `${this.localAddr}:${this.localPort} ${this.remoteAddr}:${this.remotePort} ${this.state}`;
  }

  // ================================================================ opens

  /** Active open: sends the SYN (RFC 9293 §3.10.1). */
  open(): void {
    this.started = true;
    this.state = 'SYN-SENT';
    this.sndNxt = seqAdd(this.iss, 1);
    this.sndMax = this.sndNxt;
    this.sendSyn();
    this.armTimer('rto', this.now + this.rto);
  }

  /** Passive open: a listener got `seg`, a SYN (RFC 9293 §3.10.7.2). */
  acceptSyn(seg: TcpRepr): void {
    this.started = true;
    this.stats.segsIn++;
    this.irs = seg.seq;
    this.rcvNxt = seqAdd(seg.seq, 1);
    this.takeSynOptions(seg);
    this.offerWscale = seg.options.windowScale !== undefined;
    this.sndWnd = seg.window; // never scaled in a SYN (RFC 7323 §2.2)
    this.maxSndWnd = this.sndWnd;
    this.sndWl1 = seg.seq;
    this.sndWl2 = 0;
    this.state = 'SYN-RECEIVED';
    this.sndNxt = seqAdd(this.iss, 1);
    this.sndMax = this.sndNxt;
    this.sendSyn();
    this.armTimer('rto', this.now + this.rto);
  }

  private takeSynOptions(seg: TcpRepr): void {
    this.sndMss = Math.max(64, Math.min(this.rcvMss, seg.options.mss ?? 536));
    this.cwnd = this.cfg.initialCwnd * this.sndMss;
    if (seg.options.windowScale !== undefined && this.offerWscale) {
      this.sndShift = Math.min(seg.options.windowScale, TCP_MAX_WSCALE);
      this.rcvShift = wscaleFor(this.cfg.rcvBuf);
    } else {
      this.sndShift = 0;
      this.rcvShift = 0;
    }
  }

  /** Sends our SYN or SYN-ACK (with MSS and, when allowed, window scale). */
  private sendSyn(): void {
    const synAck = this.state === 'SYN-RECEIVED';
    const options: TcpOptions = { mss: this.rcvMss };
    if (this.offerWscale) options.windowScale = wscaleFor(this.cfg.rcvBuf);
    const window = Math.min(this.cfg.rcvBuf, 0xffff);
    if (synAck) this.rcvAdvRight = seqAdd(this.rcvNxt, window);
    if (this.retries === 0 && this.synSentAt === undefined) this.synSentAt = this.now;
    this.send(synAck ? TCP_SYN | TCP_ACK : TCP_SYN, this.iss, synAck ? this.rcvNxt : 0, window, 0, 0, options);
  }

  // ================================================================ application calls

  /** Queues data; false when the send buffer is full (wait for 'drain'). */
  write(data: Buffer): boolean {
    if (this.finQueued || (this.state === 'CLOSED' && this.started) || this.state === 'TIME-WAIT') {
      throw new TcpError('EPIPE', 'write', undefined, undefined, 'the socket has been ended');
    }
    this.sendQueue.push(data);
    this.host.touch(this);
    const ok = this.sendQueue.length < this.sndBufSize;
    if (!ok) this.writeBlocked = true;
    return ok;
  }

  /** Half-close: FIN after the queued data (RFC 9293 §3.10.4). */
  end(): void {
    if (this.finQueued || (this.state === 'CLOSED' && this.started) || this.state === 'TIME-WAIT') return;
    this.finQueued = true;
    this.finSeq = seqAdd(this.qSeq, this.sendQueue.length);
    if (this.state === 'ESTABLISHED') this.state = 'FIN-WAIT-1';
    else if (this.state === 'CLOSE-WAIT') this.state = 'LAST-ACK';
    this.host.touch(this);
  }

  /** Abort: RST to the peer (unless nothing was synchronized) and CLOSED (RFC 9293 §3.10.5). */
  abort(err?: TcpError): void {
    if (this.state === 'CLOSED') return;
    if (this.state !== 'SYN-SENT' && this.state !== 'TIME-WAIT') {
      this.send(TCP_RST | TCP_ACK, this.sndMax, this.rcvNxt, 0, 0, 0);
    }
    this.closeNow(err ?? null);
  }

  /** Holds received data in the receive buffer (the window closes as it fills). */
  pause(): void {
    this.paused = true;
  }

  /** Delivers held data and reopens the window. */
  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.host.touch(this);
  }

  get isPaused(): boolean {
    return this.paused;
  }

  // ================================================================ input

  /** A segment for this connection's 4-tuple (checksum already verified). */
  segmentArrives(seg: TcpRepr): void {
    this.stats.segsIn++;
    if (this.state === 'CLOSED') return;
    if (this.state === 'SYN-SENT') return this.synSentInput(seg);
    const f = seg.flags;

    // A retransmitted SYN of a half-open connection: our SYN-ACK was lost.
    if (this.state === 'SYN-RECEIVED' && f.syn && !f.ack && seg.seq === this.irs) {
      this.sendSyn();
      return;
    }

    // 1. Acceptability (RFC 9293 §3.10.7.4, first check). A segment without data may sit AT
    // the right edge of the window we advertised, as Linux's tcp_sequence allows (SEG.SEQ <=
    // RCV.NXT + RCV.WND): a peer whose data filled our window sends its ACKs at SND.NXT, that
    // edge, while part of that data is still missing here. RFC 793's strict "<" drops those
    // ACKs, and with them the only news that our own data arrived: when our window stays
    // (nearly) closed, as an echo server's does while its writes wait for those very ACKs, we
    // retransmit into ACKs we refuse until the user timeout kills the connection.
    const len = seg.payload.length + (f.syn ? 1 : 0) + (f.fin ? 1 : 0);
    const wnd = this.rcvWindow();
    let ok: boolean;
    if (len === 0) ok = seqLe(this.rcvNxt, seg.seq) && seqLe(seg.seq, seqAdd(this.rcvNxt, wnd));
    else ok = wnd > 0 && (this.inWindow(seg.seq, wnd) || this.inWindow(seqAdd(seg.seq, len - 1), wnd));
    if (!ok) {
      if (f.rst) return;
      if (this.state === 'TIME-WAIT' && f.fin) this.armTimer('time-wait', this.now + this.cfg.timeWaitMs);
      // RFC 9293 §3.10.7.4: with a zero window, still take valid ACKs.
      if (wnd === 0 && len === 0 && f.ack && !f.syn && this.state !== 'SYN-RECEIVED') this.processAck(seg);
      if (len > 0 || seg.seq === seqAdd(this.rcvNxt, -1)) {
        // A duplicate, or a zero-window probe (seq = RCV.NXT - 1): tell the peer where we are.
        this.ackNow = true;
        if (len === 0) this.stats.zeroWindowProbes++;
      } else if (this.now - this.lastOowAck >= 500) {
        // An out-of-window pure ACK: answer, but at most twice a second, so two
        // confused ends cannot ping-pong ACKs forever (Linux's tcp_invalid_ratelimit).
        this.lastOowAck = this.now;
        this.ackNow = true;
      }
      return;
    }

    // 2. RST (RFC 5961 §3.2): exact match resets, in-window gets a challenge ACK.
    if (f.rst) {
      if (seg.seq === this.rcvNxt) this.resetReceived();
      else this.ackNow = true;
      return;
    }

    // 4. SYN in a synchronized state: challenge ACK (RFC 5961 §4.2).
    if (f.syn) {
      this.ackNow = true;
      return;
    }

    // 5. ACK.
    if (!f.ack) return;
    if (this.state === 'SYN-RECEIVED') {
      if (seqLt(this.sndUna, seg.ack) && seqLe(seg.ack, this.sndMax)) {
        this.establish(seg);
        this.sndWnd = seg.window << this.sndShift;
        this.maxSndWnd = Math.max(this.maxSndWnd, this.sndWnd);
        this.sndWl1 = seg.seq;
        this.sndWl2 = seg.ack;
        this.pendingAccept = true;
      } else {
        this.send(TCP_RST, seg.ack, 0, 0, 0, 0);
        return;
      }
    } else if (!this.processAck(seg)) {
      return;
    }
    if ((this.state as TcpState) === 'CLOSED') return; // processAck may have closed it

    // 7. Text, 8. FIN.
    if (RECEIVES_DATA.has(this.state)) {
      if (seg.payload.length || f.fin) this.processData(seg.seq, seg.payload, f.fin, f.psh);
    } else if (this.state === 'TIME-WAIT' && f.fin) {
      this.ackNow = true; // the peer lost our ACK of its FIN
      this.armTimer('time-wait', this.now + this.cfg.timeWaitMs);
    }
  }

  private synSentInput(seg: TcpRepr): void {
    const f = seg.flags;
    let ackOk = false;
    if (f.ack) {
      if (seqLe(seg.ack, this.iss) || seqGt(seg.ack, this.sndMax)) {
        if (!f.rst) this.send(TCP_RST, seg.ack, 0, 0, 0, 0);
        return;
      }
      ackOk = true;
    }
    if (f.rst) {
      if (ackOk) this.fail('ECONNREFUSED', 'connect');
      return;
    }
    if (!f.syn) return;
    this.irs = seg.seq;
    this.rcvNxt = seqAdd(seg.seq, 1);
    this.takeSynOptions(seg);
    this.sndWnd = seg.window; // unscaled in a SYN-ACK
    this.maxSndWnd = this.sndWnd;
    this.sndWl1 = seg.seq;
    this.sndWl2 = seg.ack;
    this.rcvAdvRight = seqAdd(this.rcvNxt, Math.min(this.cfg.rcvBuf, 0xffff));
    if (ackOk) {
      this.establish(seg);
      this.pendingConnect = true;
      this.ackNow = true;
      // Data in a SYN-ACK is not accepted (we would have to buffer it before ESTABLISHED); the peer retransmits it.
    } else {
      // Simultaneous open (RFC 9293 §3.5, figure 8).
      this.state = 'SYN-RECEIVED';
      this.retries = 0;
      this.sendSyn();
      this.armTimer('rto', this.now + this.rto);
    }
  }

  /** SYN acknowledged: ESTABLISHED (or FIN-WAIT-1 if the application already called end()). */
  private establish(seg: TcpRepr): void {
    // Only an acceptable ACK (of our SYN) gets here.
    if (this.synSentAt !== undefined) this.rttSample(this.now - this.synSentAt);
    this.synSentAt = undefined;
    this.sndUna = seg.ack;
    if (seqLt(this.sndNxt, this.sndUna)) this.sndNxt = this.sndUna;
    this.retries = 0;
    this.lastAckAt = this.now;
    this.cancelTimer();
    this.state = this.finQueued ? 'FIN-WAIT-1' : 'ESTABLISHED';
  }

  /** ACK processing for synchronized states (RFC 9293 §3.10.7.4 fifth check). False: drop the segment. */
  private processAck(seg: TcpRepr): boolean {
    const ack = seg.ack;
    if (seqGt(ack, this.sndMax)) {
      this.ackNow = true; // acks something never sent
      return false;
    }
    const wnd = seg.window << this.sndShift;
    if (seqLt(ack, this.sndUna)) return true; // old duplicate: ignore the ACK field, keep the data
    // The peer is alive: zero-window probing starts its count again (Linux: icsk_probes_out = 0).
    this.probes = 0;
    this.lastAckAt = this.now;

    if (ack === this.sndUna) {
      const outstanding = this.sndNxt !== this.sndUna;
      const isDup = outstanding && seg.payload.length === 0 && !seg.flags.fin && wnd === this.sndWnd;
      this.updateWindow(seg, wnd);
      if (isDup) this.onDupAck();
      return true;
    }

    // New data acknowledged.
    const acked = seqDiff(ack, this.sndUna);
    // RTT: timed from the first segment this ACK covers that was sent only once (Linux's seq_rtt
    // in tcp_clean_rtx_queue; Karn's rule for the rest). A valid sample recomputes the RTO, which
    // ends any backoff (RFC 6298 §5.7, Linux's tcp_ack_update_rtt). When the ACK also covers a
    // retransmission, the receiver may have held the data sent before it until that hole was
    // filled, so only data sent after it is timed (Linux times none; BSD times the first new
    // segment sent after it): a sample that never includes the wait for a lost segment.
    const notBefore = seqGt(this.rtxEnd, this.sndUna) ? this.rtxAt : -Infinity;
    const sentAt = this.sentTimes.ack(this.sndUna, ack, this.rtxEnd, notBefore);
    if (sentAt >= 0) this.rttSample(this.now - sentAt);
    const dataAcked = Math.max(0, Math.min(seqDiff(ack, this.qSeq), this.sendQueue.length));
    this.sendQueue.consume(dataAcked);
    this.qSeq = seqAdd(this.qSeq, dataAcked);
    this.sndUna = ack;
    if (seqLt(this.sndNxt, this.sndUna)) this.sndNxt = this.sndUna;
    if (seqLt(this.rtxEnd, this.sndUna)) this.rtxEnd = this.sndUna; // stays within 2^31 of SND.UNA
    this.retries = 0;
    this.probes = 0;

    // Congestion control.
    const mss = this.sndMss;
    if (this.inRecovery) {
      if (seqGe(ack, this.recover)) {
        // Full ACK: leave recovery (RFC 6582 §3.2 step 3, option 1 bounded by flight).
        this.inRecovery = false;
        const flight = seqDiff(this.sndMax, this.sndUna);
        this.cwnd = Math.min(this.ssthresh, Math.max(flight, mss) + mss);
      } else {
        // Partial ACK: the next hole is lost too; retransmit it, deflate cwnd.
        this.retransmitOne(this.sndUna);
        this.cwnd = Math.max(this.cwnd - acked + (acked >= mss ? mss : 0), mss);
        this.armTimer('rto', this.now + this.rto);
      }
    } else if (this.cwnd < this.ssthresh) {
      // Every byte a stretch ACK covers counts (Linux's tcp_slow_start), so coalesced ACKs do
      // not slow the start down; never past ssthresh in one step. Except in the slow start after
      // a timeout (RFC 3465 §2.3: one SMSS per ACK): without SACK it resends go-back-N, much of
      // it data the peer holds already, and a faster ramp only resends more of that.
      const inc = this.rtoSlowStart ? Math.min(acked, mss) : acked;
      this.cwnd = Math.min(this.cwnd + inc, Math.max(this.ssthresh, this.cwnd + mss), MAX_CWND);
      if (this.cwnd >= this.ssthresh) this.rtoSlowStart = false;
    } else {
      // Congestion avoidance counts bytes too (RFC 5681 §3.1's recommended way, RFC 3465 §2.1;
      // Linux's tcp_cong_avoid_ai counts segments): one SMSS per cwnd of data acknowledged. The
      // per-ACK SMSS*SMSS/cwnd grows once per ACK, so with one ACK per receive batch it hardly
      // grew at all, and a window kept small after a loss has too few segments in flight for
      // three duplicate ACKs: the next loss costs a retransmission timeout instead.
      this.caBytes += acked;
      if (this.caBytes >= this.cwnd) {
        const n = Math.floor(this.caBytes / this.cwnd);
        this.caBytes -= n * this.cwnd;
        this.cwnd = Math.min(this.cwnd + n * mss, MAX_CWND);
      }
    }
    this.dupAcks = 0;
    this.updateWindow(seg, wnd, true);
    this.expandSndBuf();

    // Timers.
    if (this.sndUna === this.sndMax || this.sndNxt === this.sndUna) {
      if (this.timerKind === 'rto') this.cancelTimer();
    } else if (!this.inRecovery || seqGe(ack, this.recover)) {
      this.armTimer('rto', this.now + this.rto);
    }

    if (this.writeBlocked && this.sendQueue.length <= this.sndBufSize / 2) {
      this.writeBlocked = false;
      this.pendingDrain = true;
    }

    // Our FIN acknowledged?
    if (this.finQueued && seqGt(ack, this.finSeq)) {
      if (this.state === 'FIN-WAIT-1') this.state = 'FIN-WAIT-2';
      else if (this.state === 'CLOSING') this.enterTimeWait();
      else if (this.state === 'LAST-ACK') this.closeNow(null);
    }
    return true;
  }

  /**
   * Grows the send buffer (never shrinks it) to two windows the connection can
   * fill, up to `sndBufMax`, as Linux's tcp_sndbuf_expand sizes sk_sndbuf at
   * twice the congestion window ("extra cushion: the application might react
   * slowly to EPOLLOUT"). A buffer of one window holds only what is in flight:
   * the ACKs of its first half then free space with nothing left to send, until
   * 'drain' lets the writer refill half a window, which leaves in one burst, so
   * the two ends take turns instead of overlapping. Linux's cwnd stops growing
   * when the window does not fill it (tcp_is_cwnd_limited); ours does not, so
   * the window counted is bounded by the largest the peer offered.
   */
  private expandSndBuf(): void {
    const want = Math.min(2 * Math.min(this.cwnd, this.maxSndWnd), this.cfg.sndBufMax);
    if (want > this.sndBufSize) this.sndBufSize = want;
  }

  /**
   * SND.WND update rule (RFC 9293 §3.10.7.4): only from newer segments, and, as Linux's
   * tcp_may_update_window, always from one whose ACK moved SND.UNA (`advanced`): the peer's
   * ACKs only grow, so that window is its newest even when the segment carrying it is an older
   * retransmission (SEG.SEQ < SND.WL1, reordered or resent). Keeping the older window with the
   * newer SND.UNA instead moves the right edge we send to past the one the peer offered: we
   * send beyond its window, and our ACKs, sequenced at SND.MAX, then fall outside it too.
   */
  private updateWindow(seg: TcpRepr, wnd: number, advanced = false): void {
    if (advanced || seqLt(this.sndWl1, seg.seq) || (this.sndWl1 === seg.seq && seqLe(this.sndWl2, seg.ack))) {
      this.sndWnd = wnd;
      this.sndWl1 = seg.seq;
      this.sndWl2 = seg.ack;
      if (wnd > this.maxSndWnd) this.maxSndWnd = wnd;
      if (wnd > 0 && this.timerKind === 'persist') {
        this.cancelTimer();
        this.probes = 0;
      }
    }
  }

  private onDupAck(): void {
    this.stats.dupAcksIn++;
    this.dupAcks++;
    const mss = this.sndMss;
    if (this.inRecovery) {
      this.cwnd += mss; // window inflation: one segment left the network
      return;
    }
    // `recover` holds SND.MAX at the last loss event (RFC 6582's "highest sequence number
    // transmitted" + 1), so "the ACK covers more than recover" reads SND.UNA >= recover.
    if (this.dupAcks === this.dupThreshold() && seqGe(this.sndUna, this.recover)) {
      // Fast retransmit (RFC 5681 §3.2, RFC 6582 §3.2 step 2).
      const flight = seqDiff(this.sndMax, this.sndUna);
      this.ssthresh = Math.max(Math.floor(flight / 2), 2 * mss);
      this.recover = this.sndMax;
      this.stats.fastRetransmits++;
      this.retransmitOne(this.sndUna);
      this.cwnd = this.ssthresh + 3 * mss;
      this.caBytes = 0;
      this.inRecovery = true;
      this.armTimer('rto', this.now + this.rto);
    }
  }

  /**
   * Duplicate ACKs that trigger fast retransmit: 3, or fewer with little in
   * flight and nothing new to send (early retransmit, RFC 5827), so a loss
   * near the end of a burst need not wait for the RTO.
   */
  private dupThreshold(): number {
    const outstanding = Math.ceil(seqDiff(this.sndNxt, this.sndUna) / this.sndMss);
    const unsent = seqDiff(seqAdd(this.qSeq, this.sendQueue.length), this.sndNxt) > 0;
    if (outstanding < 4 && !unsent) return Math.max(1, outstanding - 1);
    return 3;
  }

  private processData(seq: number, data: Buffer, fin: boolean, psh: boolean): void {
    // Trim what we already have.
    let off = 0;
    if (seqLt(seq, this.rcvNxt)) {
      off = seqDiff(this.rcvNxt, seq);
      if (off > data.length) return this.dupData(); // only an old FIN
      seq = this.rcvNxt;
    }
    // Trim beyond the window's right edge (and with it the FIN).
    const room = Math.max(0, seqDiff(this.rcvAdvRight, seq));
    let end = data.length;
    if (end - off > room) {
      end = off + room;
      fin = false;
    }
    const chunk = off === 0 && end === data.length ? data : data.subarray(off, end);
    if (seq !== this.rcvNxt) {
      this.insertOoo(seq, chunk, fin);
      this.stats.oooSegments++;
      this.quickAcks = QUICK_ACKS;
      // A duplicate ACK, sent pure even if we have data going the other way: an
      // ACK riding on data does not count as a duplicate (RFC 5681 §2).
      this.ackNow = true;
      this.dupAckNow = true;
      return;
    }
    if (!chunk.length && !fin) return this.dupData();
    const hadOoo = this.ooo.length > 0;
    this.deliver(chunk);
    if (fin) this.finReceived();
    if (hadOoo) {
      this.pullOoo();
      this.ackNow = true; // a hole was filled: ACK at once (RFC 5681 §4.2)
      this.quickAcks = QUICK_ACKS;
    } else if (!this.ackNow) {
      const quick = this.quickAcks > 0;
      if (quick) this.quickAcks--;
      this.delackBytes += chunk.length;
      if (this.delackBytes >= 2 * this.rcvMss) {
        // Every second full segment is owed an ACK (RFC 1122 §4.2.3.2); it waits for the end of
        // the batch being received, as GRO hands Linux's TCP the segments of one NAPI poll as one
        // (flushed at a PSH or at 64 KiB) and the receiver ACKs that: one ACK for a batch, not
        // one per two datagrams, each of which costs both agents a datagram and a trip through
        // their stacks.
        // After out-of-order data or a hole fill, as Linux's quick-ACK mode (tcp_enter_quickack_mode),
        // the next segments are ACKed every second one, not per batch: in a loss recovery one lost
        // ACK would otherwise be the only news of a whole batch, and cost the sender a timeout.
        if (psh || quick || this.delackBytes >= GRO_MAX_BYTES || !this.host.ackAfterBatch(this)) this.ackNow = true;
      } else if (!this.delackDeadline) this.armDelack();
    }
  }

  /** The batch of received datagrams is over: the ACK it deferred goes, unless one went meanwhile. */
  batchEnded(): void {
    if (this.state === 'CLOSED' || this.delackBytes < 2 * this.rcvMss) return;
    this.ackNow = true;
    this.host.touch(this);
  }

  private dupData(): void {
    this.ackNow = true;
    this.quickAcks = QUICK_ACKS; // a retransmission we did not need: our ACKs were lost (Linux's tcp_data_queue)
  }

  private deliver(chunk: Buffer): void {
    if (!chunk.length) return;
    this.rcvNxt = seqAdd(this.rcvNxt, chunk.length);
    this.stats.bytesReceived += chunk.length;
    if (this.paused || this.rcvHeldBytes) {
      this.rcvHeld.push(chunk);
      this.rcvHeldBytes += chunk.length;
    } else {
      this.pendingData.push(chunk);
    }
  }

  private insertOoo(seq: number, data: Buffer, fin: boolean): void {
    if (!data.length && !fin) return;
    let i = this.ooo.length;
    while (i > 0 && seqGt(this.ooo[i - 1].seq, seq)) i--;
    const prev = this.ooo[i - 1];
    if (prev && prev.seq === seq && prev.data.length >= data.length && (prev.fin || !fin)) return; // duplicate
    this.ooo.splice(i, 0, { seq, data, fin });
  }

  /** Moves now-contiguous out-of-order segments into the stream. */
  private pullOoo(): void {
    while (this.ooo.length) {
      const s = this.ooo[0];
      if (seqGt(s.seq, this.rcvNxt)) break;
      this.ooo.shift();
      const skip = seqDiff(this.rcvNxt, s.seq);
      if (skip < s.data.length) this.deliver(s.data.subarray(skip));
      if (s.fin && skip <= s.data.length && !this.peerFin) {
        this.finReceived();
        this.ooo.length = 0;
        break;
      }
    }
  }

  private finReceived(): void {
    if (this.peerFin) return;
    this.peerFin = true;
    this.rcvNxt = seqAdd(this.rcvNxt, 1);
    this.ackNow = true;
    this.endPending = true;
    switch (this.state) {
      case 'ESTABLISHED':
        this.state = 'CLOSE-WAIT';
        break;
      case 'FIN-WAIT-1':
        // Our FIN not acked yet (else we would be in FIN-WAIT-2): simultaneous close.
        this.state = 'CLOSING';
        break;
      case 'FIN-WAIT-2':
        this.enterTimeWait();
        break;
      default:
        break;
    }
  }

  private resetReceived(): void {
    switch (this.state) {
      case 'SYN-RECEIVED':
        if (this.passive) return this.closeNow(null, true); // back to LISTEN, silently
        return this.fail('ECONNREFUSED', 'connect');
      case 'ESTABLISHED':
      case 'FIN-WAIT-1':
      case 'FIN-WAIT-2':
      case 'CLOSE-WAIT':
        return this.fail('ECONNRESET', 'read');
      default:
        return this.closeNow(null); // CLOSING, LAST-ACK, TIME-WAIT
    }
  }

  /** An ICMP error quoting one of our segments (RFC 5927: the quoted seq was validated by the stack). */
  icmpError(kind: 'unreachable' | 'time-exceeded', code: number, nextHopMtu?: number): void {
    if (kind === 'unreachable' && code === 4) {
      // Fragmentation needed (PMTUD, RFC 1191): shrink the MSS and resend what is outstanding.
      if (nextHopMtu && nextHopMtu >= 68 && nextHopMtu - 40 < this.sndMss) {
        this.sndMss = Math.max(nextHopMtu - 40, 28);
        this.sndNxt = this.sndUna;
        this.host.touch(this);
      }
      return;
    }
    const err: TcpErrorCode =
      kind === 'time-exceeded' ? 'EHOSTUNREACH' : code === 0 || code === 6 || code === 11 ? 'ENETUNREACH' : code === 2 || code === 3 ? 'ECONNREFUSED' : 'EHOSTUNREACH';
    if (this.state === 'SYN-SENT' || (this.state === 'SYN-RECEIVED' && !this.passive)) {
      this.fail(err, 'connect');
      return;
    }
    this.softError = err;
  }

  /** The IP layer refused to send (no route): a local hard error. */
  localSendError(code: TcpErrorCode): void {
    if (this.state === 'SYN-SENT') this.fail(code, 'connect');
    else this.softError = code;
  }

  // ================================================================ output

  /**
   * Hands out collected events, then sends what the windows allow and any
   * ACK owed. The host calls it after each event.
   */
  flush(): void {
    this.dispatch();
    if (this.state !== 'CLOSED') this.output();
  }

  private dispatch(): void {
    if (this.pendingAccept) {
      this.pendingAccept = false;
      // The stack creates the socket and calls the listener, which sets `events`.
      this.host.accept(this);
    }
    if (this.pendingConnect) {
      this.pendingConnect = false;
      this.events?.connect();
    }
    if (!this.paused && this.rcvHeldBytes) {
      // Resumed: held data goes first, then the window may reopen.
      this.pendingData.unshift(...this.rcvHeld);
      this.rcvHeld.length = 0;
      this.rcvHeldBytes = 0;
      if (this.windowGrowth() >= this.windowThreshold()) this.ackNow = true;
    }
    while (this.pendingData.length && !this.paused) {
      const chunk = this.pendingData.shift()!;
      this.events?.data(chunk);
    }
    if (this.paused && this.pendingData.length) {
      // Paused from inside a 'data' handler: hold the rest.
      for (const b of this.pendingData) {
        this.rcvHeld.push(b);
        this.rcvHeldBytes += b.length;
      }
      this.pendingData.length = 0;
    }
    if (this.pendingDrain) {
      this.pendingDrain = false;
      this.events?.drain();
    }
    if (this.endPending && !this.paused && !this.rcvHeldBytes) {
      this.endPending = false;
      this.pendingEnd = true;
    }
    if (this.pendingEnd) {
      this.pendingEnd = false;
      this.events?.end();
    }
    if (this.pendingError) {
      const e = this.pendingError;
      this.pendingError = null;
      this.events?.error(e);
    }
    if (this.pendingClose && !this.closeEmitted) {
      this.pendingClose = false;
      this.closeEmitted = true;
      this.events?.close(this.error !== null);
    }
  }

  private output(): void {
    const st = this.state;
    if (st === 'SYN-SENT' || st === 'SYN-RECEIVED') {
      // Owed an ACK before the handshake completed: repeat our SYN-ACK instead.
      if (this.ackNow && st === 'SYN-RECEIVED') this.sendSyn();
      this.ackNow = false;
      return;
    }
    if (st === 'TIME-WAIT' || st === 'FIN-WAIT-2' || st === 'CLOSED') {
      if (this.ackNow) this.sendAck();
      return;
    }
    let sent = 0;
    if (this.dupAckNow) {
      this.dupAckNow = false;
      this.sendAck();
    }
    if (SYNCHRONIZED_SEND.has(st)) {
      const limitedTransmit = !this.inRecovery && this.dupAcks > 0 && this.dupAcks < 3 ? this.dupAcks * this.sndMss : 0;
      for (;;) {
        const dataEnd = seqAdd(this.qSeq, this.sendQueue.length);
        if (seqLt(this.sndNxt, dataEnd)) {
          const flight = seqDiff(this.sndNxt, this.sndUna);
          const wnd = Math.min(this.cwnd + limitedTransmit, this.sndWnd);
          const usable = wnd - flight;
          const avail = seqDiff(dataEnd, this.sndNxt);
          const len = Math.min(this.sndMss, avail, usable);
          if (len <= 0) break;
          // Sender-side silly window avoidance (RFC 9293 §3.8.6.2.1), without Nagle.
          if (len < this.sndMss && len < avail && flight > 0 && len < this.maxSndWnd / 2) break;
          const fin = this.finQueued && seqAdd(this.sndNxt, len) === this.finSeq;
          this.sendData(this.sndNxt, len, fin);
          sent++;
          continue;
        }
        if (this.finQueued && this.sndNxt === this.finSeq) {
          this.sendData(this.sndNxt, 0, true);
          sent++;
        }
        break;
      }
      // Zero window with data waiting and nothing in flight: probe (RFC 9293 §3.8.6.1).
      const waiting = seqLt(this.sndNxt, seqAdd(this.qSeq, this.sendQueue.length));
      if (waiting && this.sndNxt === this.sndUna && this.sndWnd === 0 && this.timerKind !== 'persist') {
        this.armTimer('persist', this.now + this.persistInterval());
      }
      if (this.sndNxt !== this.sndUna && this.timerKind !== 'rto') this.armTimer('rto', this.now + this.rto);
    }
    if (!sent && this.ackNow) this.sendAck();
  }

  /** Sends a data (and/or FIN) segment at `seq`; advances snd.nxt when it is new. */
  private sendData(seq: number, len: number, fin: boolean): void {
    const off = seqDiff(seq, this.qSeq);
    const end = seqAdd(seq, len + (fin ? 1 : 0));
    const isNew = seqGe(seq, this.sndMax);
    let flags = TCP_ACK;
    if (fin) flags |= TCP_FIN;
    if (len && off + len === this.sendQueue.length) flags |= TCP_PSH;
    if (isNew) {
      this.stats.bytesSent += len;
    } else {
      if (seqGt(end, this.rtxEnd)) this.rtxEnd = end; // Karn: never time a retransmission
      this.rtxAt = this.now;
      const fresh = Math.max(0, Math.min(len, seqDiff(seqAdd(seq, len), this.sndMax)));
      this.stats.retransmits++;
      this.stats.bytesRetrans += len - fresh;
      this.stats.bytesSent += fresh;
    }
    if (seq === this.sndNxt) this.sndNxt = end;
    if (seqGt(end, this.sndMax)) {
      if (isNew) this.sentTimes.push(this.sndMax, end, this.now);
      this.sndMax = end;
    }
    this.send(flags, seq, this.rcvNxt, this.advertise(), off, len);
  }

  /** Retransmits the segment starting at `seq` (fast retransmit, partial ACK). */
  private retransmitOne(seq: number): void {
    const dataEnd = seqAdd(this.qSeq, this.sendQueue.length);
    const avail = Math.max(0, seqDiff(dataEnd, seq));
    // Never beyond the peer's window edge (it never shrinks, so SND.UNA's segment always fits).
    const room = Math.max(1, seqDiff(seqAdd(this.sndUna, this.sndWnd), seq));
    const len = Math.min(this.sndMss, avail, room);
    const fin = this.finQueued && seqAdd(seq, len) === this.finSeq && seqGt(this.sndMax, this.finSeq);
    if (!len && !fin) return;
    this.sendData(seq, len, fin);
  }

  /** A pure ACK. Its sequence number is SND.MAX, as Linux's snd_nxt, which never goes back. */
  private sendAck(): void {
    this.send(TCP_ACK, this.sndMax, this.rcvNxt, this.advertise(), 0, 0);
  }

  private send(flags: number, seq: number, ack: number, window: number, dataOff: number, dataLen: number, options?: TcpOptions): void {
    if (flags & TCP_ACK) {
      this.ackNow = false;
      this.delackBytes = 0;
      if (this.delackDeadline) this.delackDeadline = 0;
    }
    this.stats.segsOut++;
    this.host.transmit(this, flags, seq, ack, window, dataOff, dataLen, options);
  }

  // ================================================================ windows

  /** The receive window we are bound by (what was advertised, never shrunk). */
  private rcvWindow(): number {
    return Math.max(0, seqDiff(this.rcvAdvRight, this.rcvNxt));
  }

  private inWindow(s: number, wnd: number): boolean {
    return seqLe(this.rcvNxt, s) && seqLt(s, seqAdd(this.rcvNxt, wnd));
  }

  private windowThreshold(): number {
    return Math.min(this.cfg.rcvBuf >> 1, this.rcvMss);
  }

  /** How much further the window could open now than it is advertised. */
  private windowGrowth(): number {
    return Math.max(0, this.cfg.rcvBuf - this.rcvHeldBytes) - this.rcvWindow();
  }

  /** The window field for the next segment; moves the advertised right edge. */
  private advertise(): number {
    const cur = this.rcvWindow();
    const free = Math.max(0, this.cfg.rcvBuf - this.rcvHeldBytes);
    const wnd = free > cur && free - cur >= this.windowThreshold() ? free : cur;
    const field = Math.min(wnd >> this.rcvShift, 0xffff);
    const right = seqAdd(this.rcvNxt, field << this.rcvShift);
    if (seqGt(right, this.rcvAdvRight)) this.rcvAdvRight = right;
    return field;
  }

  // ================================================================ RTT and timers

  /** RFC 6298 §2.2-2.4. */
  private rttSample(r: number): void {
    if (r < 0) return;
    if (!this.hasRtt) {
      this.srtt = r;
      this.rttvar = r / 2;
      this.hasRtt = true;
    } else {
      this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - r);
      this.srtt = 0.875 * this.srtt + 0.125 * r;
    }
    this.rto = Math.min(Math.max(this.srtt + Math.max(1, 4 * this.rttvar), this.cfg.minRtoMs), this.cfg.maxRtoMs);
  }

  private persistInterval(): number {
    return Math.min(Math.max(this.rto, this.cfg.minRtoMs) * 2 ** Math.min(this.probes, 16), this.cfg.maxPersistMs);
  }

  /**
   * The one protocol timer (RTO, persist or TIME-WAIT), re-armed lazily: moving
   * the deadline later costs no clock call; the armed timer re-arms itself
   * for the rest when it fires early.
   */
  private armTimer(kind: Exclude<TimerKind, null>, at: number): void {
    this.timerKind = kind;
    this.timerDeadline = at;
    if (this.timerHandle && this.timerFireAt <= at) return;
    this.timerHandle?.cancel();
    this.timerFireAt = at;
    this.timerHandle = this.host.clock.setTimeout(() => this.host.run(() => this.timerFired()), Math.max(0, at - this.now));
  }

  private cancelTimer(): void {
    this.timerKind = null;
    this.timerDeadline = 0;
  }

  private timerFired(): void {
    this.timerHandle = null;
    if (!this.timerKind || this.state === 'CLOSED') return;
    const now = this.now;
    if (now < this.timerDeadline) {
      this.timerFireAt = this.timerDeadline;
      this.timerHandle = this.host.clock.setTimeout(() => this.host.run(() => this.timerFired()), this.timerDeadline - now);
      return;
    }
    const kind = this.timerKind;
    this.timerKind = null;
    this.timerDeadline = 0;
    if (kind === 'rto') this.onRto();
    else if (kind === 'persist') this.onPersist();
    else if (kind === 'time-wait') this.closeNow(null);
    this.host.touch(this);
  }

  private onRto(): void {
    const cfg = this.cfg;
    if (this.state === 'SYN-SENT' || this.state === 'SYN-RECEIVED') {
      this.retries++;
      const limit = this.state === 'SYN-SENT' || !this.passive ? cfg.synRetries : cfg.synAckRetries;
      if (this.retries > limit) {
        if (this.passive) return this.closeNow(null, true); // a half-open connection just goes away
        return this.fail(this.softError ?? 'ETIMEDOUT', 'connect');
      }
      this.synSentAt = undefined; // Karn: a retransmitted SYN is not timed
      this.rto = Math.min(this.rto * 2, cfg.maxRtoMs);
      this.stats.timeouts++;
      this.stats.retransmits++;
      this.sendSyn();
      this.armTimer('rto', this.now + this.rto);
      return;
    }
    if (this.sndUna === this.sndMax) return;
    const now = this.now;
    if (this.retries === 0) this.firstRtoAt = now;
    this.retries++;
    if (this.retries > cfg.maxRetransmits || now - this.firstRtoAt >= cfg.userTimeoutMs) {
      return this.fail(this.softError ?? 'ETIMEDOUT', this.finQueued ? 'close' : 'write');
    }
    const mss = this.sndMss;
    if (this.retries === 1) this.ssthresh = Math.max(Math.floor(seqDiff(this.sndMax, this.sndUna) / 2), 2 * mss);
    this.cwnd = mss;
    this.caBytes = 0;
    this.rtoSlowStart = true;
    this.inRecovery = false;
    this.dupAcks = 0;
    this.recover = this.sndMax;
    this.rto = Math.min(this.rto * 2, cfg.maxRtoMs);
    this.stats.timeouts++;
    this.sndNxt = this.sndUna; // go back N: resend from the oldest unacknowledged byte
    this.retransmitOne(this.sndUna);
    this.armTimer('rto', Math.min(now + this.rto, this.firstRtoAt + cfg.userTimeoutMs));
  }

  private onPersist(): void {
    const dataEnd = seqAdd(this.qSeq, this.sendQueue.length);
    if (this.sndWnd > 0 || !seqLt(this.sndNxt, dataEnd) || this.sndNxt !== this.sndUna) return;
    const now = this.now;
    this.probes++;
    // Unanswered probes: a peer that went away while its window was closed fails like a timeout.
    if (this.probes > this.cfg.maxRetransmits || now - this.lastAckAt >= this.cfg.userTimeoutMs) {
      return this.fail(this.softError ?? 'ETIMEDOUT', 'write');
    }
    // Linux's probe (tcp_xmit_probe_skb): an empty segment with an old sequence number,
    // SND.UNA - 1, which the peer must answer with an ACK carrying its current window.
    this.stats.zeroWindowProbes++;
    this.send(TCP_ACK, seqAdd(this.sndUna, -1), this.rcvNxt, this.advertise(), 0, 0);
    this.armTimer('persist', Math.min(now + this.persistInterval(), this.lastAckAt + this.cfg.userTimeoutMs));
  }

  private armDelack(): void {
    const at = this.now + this.cfg.delayedAckMs;
    this.delackDeadline = at;
    if (this.delackHandle && this.delackFireAt <= at) return;
    this.delackHandle?.cancel();
    this.delackFireAt = at;
    this.delackHandle = this.host.clock.setTimeout(() => this.host.run(() => this.delackFired()), this.cfg.delayedAckMs);
  }

  private delackFired(): void {
    this.delackHandle = null;
    if (!this.delackDeadline || this.state === 'CLOSED') return;
    const now = this.now;
    if (now < this.delackDeadline) {
      this.delackFireAt = this.delackDeadline;
      this.delackHandle = this.host.clock.setTimeout(() => this.host.run(() => this.delackFired()), this.delackDeadline - now);
      return;
    }
    this.delackDeadline = 0;
    this.ackNow = true;
    this.host.touch(this);
  }

  // ================================================================ endings

  private enterTimeWait(): void {
    this.state = 'TIME-WAIT';
    this.ooo.length = 0;
    this.armTimer('time-wait', this.now + this.cfg.timeWaitMs);
    this.pendingClose = true; // the application's socket is done; the 4-tuple lingers
  }

  private fail(code: TcpErrorCode, syscall: string): void {
    this.closeNow(new TcpError(code, syscall, this.remoteAddr, this.remotePort));
  }

  /** CLOSED: timers off, forgotten by the stack; `error` and 'close' reported (unless `silent`). */
  private closeNow(err: TcpError | null, silent = false): void {
    if (this.state === 'CLOSED') return;
    this.state = 'CLOSED';
    this.cancelTimer();
    this.timerHandle?.cancel();
    this.timerHandle = null;
    this.delackDeadline = 0;
    this.delackHandle?.cancel();
    this.delackHandle = null;
    this.ooo.length = 0;
    this.ackNow = false;
    if (err) {
      this.error = err;
      this.pendingError = err;
    }
    if (!silent) this.pendingClose = true;
    this.host.release(this);
    this.host.touch(this);
  }

  /** A snapshot for `ss`-like views and tests. */
  info(): Record<string, number | string | boolean> {
    return {
      state: this.state,
      cwnd: this.cwnd,
      ssthresh: this.ssthresh,
      sndMss: this.sndMss,
      rcvMss: this.rcvMss,
      rto: Math.round(this.rto),
      srtt: Math.round(this.srtt * 1000) / 1000,
      rttvar: Math.round(this.rttvar * 1000) / 1000,
      sndWnd: this.sndWnd,
      rcvWnd: this.rcvWindow(),
      sndShift: this.sndShift,
      rcvShift: this.rcvShift,
      unacked: seqDiff(this.sndMax, this.sndUna),
      queued: this.sendQueue.length,
      sndBuf: this.sndBufSize,
      retries: this.retries,
      inRecovery: this.inRecovery,
    };
  }
}
