/**
 * The BGP finite state machine (RFC 4271 §8) as pure classes: events in,
 * actions out, time from an injected Clock. No sockets: the speaker maps
 * connection ids to sockets and applies the actions.
 *
 * Design (after GoBGP's pkg/server/fsm.go): one method per state, each
 * returning a `Transition { next, reason, actions }`; `handle()` applies it
 * and reports a state change with its reason. Two layers:
 *
 *  - `BgpFsm` runs one session attempt at a time: Idle → Connect/Active →
 *    OpenSent → OpenConfirm → Established, with the ConnectRetry, Hold and
 *    Keepalive timers, automatic restart after an error (IdleHold, with
 *    exponential backoff and optional jitter), and the NOTIFICATION every
 *    error calls for. Leaving Established always emits `routes-withdrawn`.
 *  - `BgpPeerFsm` is what the speaker holds per configured peer. It owns the
 *    main `BgpFsm` and, when the peer connects to us while our own attempt is
 *    already in OpenSent/OpenConfirm, a second one for that connection, and
 *    resolves the collision (RFC 4271 §6.8) as soon as either receives an
 *    OPEN: the connection initiated by the speaker with the higher BGP
 *    Identifier survives, the other gets NOTIFICATION Cease/Connection
 *    Collision Resolution (6/7). A connection arriving while a session is
 *    Established is closed the same way (§6.8, last paragraph).
 *
 * Timers: when a timer fires, the resulting actions go to `onActions` (the
 * event methods return theirs directly). Hold time negotiation: the smaller
 * of the two proposals, 0 (no keepalives) or >= 3 s; keepalive = our
 * keepalive time capped at hold/3. Lab defaults: hold 9 s, keepalive 3 s,
 * ConnectRetry 2 s doubling per consecutive failure up to 30 s, a large hold
 * timer of 240 s while waiting for the OPEN (RFC 4271 §8.2.2 suggests 4 min).
 */
import type { Clock, Timer } from '../common/clock.ts';
import { monotonicClock } from '../common/clock.ts';
import { ipv4ToInt } from '../packet/addr.ts';
import {
  AFI_IPV4,
  SAFI_UNICAST,
  type BgpError,
  type BgpMessage,
  type Capability,
  type NotificationRepr,
  type OpenRepr,
  type RouteRefreshRepr,
  type UpdateRepr,
  CEASE_ADMIN_SHUTDOWN,
  CEASE_CONNECTION_COLLISION,
  CEASE_CONNECTION_REJECTED,
  ERR_CEASE,
  ERR_FSM,
  ERR_HOLD_TIMER_EXPIRED,
  FSM_UNEXPECTED_IN_ESTABLISHED,
  FSM_UNEXPECTED_IN_OPENCONFIRM,
  FSM_UNEXPECTED_IN_OPENSENT,
  isBgpError,
  notificationFor,
  notificationName,
} from './codec/index.ts';
import { type NegotiatedSession, buildOpen, checkOpen, normalizeUpdate, podlabCapabilities } from './session.ts';

/** RFC 4271 §8.2.2 session states. */
export type BgpState = 'Idle' | 'Connect' | 'Active' | 'OpenSent' | 'OpenConfirm' | 'Established';

/** Who opened a TCP connection. */
export type ConnDirection = 'outgoing' | 'incoming';

/**
 * FSM input events, named after RFC 4271 §8.1 (the timer events are raised
 * internally; they are in the union so tests and logs can name them).
 */
export type FsmEvent =
  | { type: 'ManualStart' }
  /** Administrative stop: NOTIFICATION Cease with `subcode` (default 2, Administrative Shutdown) and `data`. */
  | { type: 'ManualStop'; subcode?: number; data?: Buffer }
  | { type: 'AutomaticStart' }
  | { type: 'ConnectRetryTimerExpires' }
  | { type: 'HoldTimerExpires' }
  | { type: 'KeepaliveTimerExpires' }
  /** Event 16/17: Tcp_CR_Acked (outgoing) / TcpConnectionConfirmed (incoming). */
  | { type: 'TcpConnectionConfirmed'; conn: number; direction: ConnDirection }
  | { type: 'TcpConnectionFails'; conn: number }
  | { type: 'BGPOpen'; conn: number; open: OpenRepr }
  | { type: 'KeepAliveMsg'; conn: number }
  | { type: 'UpdateMsg'; conn: number; update: UpdateRepr }
  | { type: 'NotifMsg'; conn: number; notification: NotificationRepr }
  | { type: 'RouteRefreshMsg'; conn: number; refresh: RouteRefreshRepr }
  /** Events 21/22/28: BGPHeaderErr, BGPOpenMsgErr, UpdateMsgErr, carrying the NOTIFICATION to send. */
  | { type: 'MessageError'; conn: number; error: BgpError }
  /** Event 23: this connection lost a collision. */
  | { type: 'OpenCollisionDump' };

/** What the adapter must do. Actions are ordered (a NOTIFICATION is sent before its close). */
export type FsmAction =
  /** Open a TCP connection to the peer; report back with conn = this id. */
  | { type: 'connect'; conn: number }
  | { type: 'send'; conn: number; message: BgpMessage }
  /** Close the connection (after flushing what was sent). */
  | { type: 'close'; conn: number }
  | { type: 'state'; from: BgpState; to: BgpState; reason: string }
  | { type: 'established'; conn: number; session: NegotiatedSession }
  /** A received UPDATE, normalized (4-octet AS_PATH), for the Adj-RIB-In. */
  | { type: 'update'; conn: number; update: UpdateRepr }
  /** The peer asked for our Adj-RIB-Out again (RFC 2918). */
  | { type: 'route-refresh'; conn: number }
  /** The session left Established: drop every route learned from the peer. */
  | { type: 'routes-withdrawn'; reason: string };

/** The last error of a session, for `summary()` ("Last error" in `birdc show protocols all`). */
export interface SessionError {
  /** Clock time (ms). */
  at: number;
  /** 'sent'/'received': a NOTIFICATION; 'local': a transport failure. */
  direction: 'sent' | 'received' | 'local';
  code?: number;
  subcode?: number;
  /** 'Hold Timer Expired / Unspecific', 'TCP connection failed', ... */
  name: string;
  message: string;
}

/** Configuration of one peer's FSM. Times in seconds unless named `...Ms`. */
export interface FsmOptions {
  localAsn: number;
  routerId: string;
  peerAsn: number;
  /** Only used in reasons and logs. */
  peerAddress: string;
  /** Never connect out: wait for the peer (ManualStart_with_PassiveTcpEstablishment). */
  passive?: boolean;
  /** Proposed hold time: 0 or >= 3 (default 9, the lab default). */
  holdTime?: number;
  /** Keepalive interval (default holdTime / 3). */
  keepaliveTime?: number;
  /** First ConnectRetry / IdleHold interval (default 2000 ms); doubles per consecutive failure. */
  connectRetryMs?: number;
  /** Backoff ceiling (default 30000 ms). */
  connectRetryMaxMs?: number;
  /** Hold timer while waiting for the peer's OPEN (default 240000 ms). */
  openHoldMs?: number;
  /** Capabilities to advertise (default: MP IPv4 unicast, route refresh, 4-octet AS). */
  capabilities?: Capability[];
  clock?: Clock;
  /** Multiplier for retry intervals, e.g. () => 0.75 + 0.25 * rng.next() (RFC 4271 §10 jitter). Default 1. */
  jitter?: () => number;
}

/** A state method's verdict. */
export interface Transition {
  next: BgpState;
  reason: string;
  actions: FsmAction[];
}

type Resolved = Required<Omit<FsmOptions, 'capabilities' | 'clock' | 'jitter' | 'passive' | 'keepaliveTime'>> & {
  passive: boolean;
  keepaliveTime: number;
  capabilities: Capability[];
  clock: Clock;
  jitter: () => number;
};

/** Validates and fills defaults; throws RangeError on an illegal hold time. */
function resolve(o: FsmOptions): Resolved {
  const holdTime = o.holdTime ?? 9;
  if (!Number.isInteger(holdTime) || holdTime < 0 || holdTime > 0xffff || holdTime === 1 || holdTime === 2) {
    throw new RangeError(`hold time ${holdTime}: must be 0 or 3..65535 seconds`);
  }
  const keepaliveTime = o.keepaliveTime ?? Math.floor(holdTime / 3);
  if (keepaliveTime < 0 || (holdTime > 0 && keepaliveTime === 0) || keepaliveTime > holdTime / 3) {
    throw new RangeError(`keepalive time ${keepaliveTime}: must be 1..hold/3`);
  }
  return {
    localAsn: o.localAsn,
    routerId: o.routerId,
    peerAsn: o.peerAsn,
    peerAddress: o.peerAddress,
    passive: o.passive ?? false,
    holdTime,
    keepaliveTime,
    connectRetryMs: o.connectRetryMs ?? 2000,
    connectRetryMaxMs: o.connectRetryMaxMs ?? 30_000,
    openHoldMs: o.openHoldMs ?? 240_000,
    capabilities: o.capabilities ?? podlabCapabilities(o.localAsn),
    clock: o.clock ?? monotonicClock,
    jitter: o.jitter ?? (() => 1),
  };
}

const notif = (code: number, subcode: number, data?: Buffer): NotificationRepr => ({ code, subcode, data: data ?? Buffer.alloc(0) });

/**
 * One session attempt at a time for one peer (RFC 4271 §8). Drive it with
 * `handle(event)`; apply the returned actions; apply timer actions delivered
 * to `onActions`.
 */
export class BgpFsm {
  /** Current state. */
  state: BgpState = 'Idle';
  /** Clock time of the last state change. */
  stateSince: number;
  /** The connection the session runs on (from TcpConnectionConfirmed to the session's end). */
  conn: number | undefined;
  /** Direction of `conn`. */
  direction: ConnDirection | undefined;
  /** Our outgoing attempt in progress (Connect state). */
  pendingConnect: number | undefined;
  /** Negotiated parameters once the peer's OPEN is accepted. */
  session: NegotiatedSession | undefined;
  /** Clock time the session became Established. */
  establishedAt: number | undefined;
  lastError: SessionError | undefined;
  /** Started by ManualStart and not stopped since: errors lead to an automatic restart. */
  started = false;
  /** Restart automatically after an error (false for a collision candidate that is not the main FSM). */
  autoRestart = true;
  /** Receives the actions of timer events. */
  onActions: (actions: FsmAction[]) => void = () => {};
  /** How many attempts failed in a row (drives the backoff); reset on Established. */
  failures = 0;

  readonly opts: Resolved;
  private readonly clock: Clock;
  private connectRetryTimer: Timer | undefined;
  private holdTimer: Timer | undefined;
  private keepaliveTimer: Timer | undefined;
  private idleHoldTimer: Timer | undefined;

  constructor(
    opts: FsmOptions,
    private readonly allocConn: () => number,
  ) {
    this.opts = resolve(opts);
    this.clock = this.opts.clock;
    this.stateSince = this.clock.now();
  }

  /** Feeds one event; returns the actions to perform (a state change last). */
  handle(ev: FsmEvent): FsmAction[] {
    if ('conn' in ev && ev.type !== 'TcpConnectionConfirmed' && ev.conn !== this.conn && ev.conn !== this.pendingConnect) {
      return []; // a connection this FSM no longer owns
    }
    const from = this.state;
    const t = this.dispatch(ev);
    if (t.next !== from) {
      this.state = t.next;
      this.stateSince = this.clock.now();
      if (t.next === 'Established') this.establishedAt = this.stateSince;
      else if (from === 'Established') this.establishedAt = undefined;
      t.actions.push({ type: 'state', from, to: t.next, reason: t.reason });
    }
    return t.actions;
  }

  /**
   * Sends a message on the Established session (UPDATE, ROUTE-REFRESH),
   * restarting the KeepaliveTimer as RFC 4271 §4.4 asks. Returns [] when not Established.
   */
  send(message: BgpMessage): FsmAction[] {
    if (this.state !== 'Established' || this.conn === undefined) return [];
    this.startKeepalive();
    return [{ type: 'send', conn: this.conn, message }];
  }

  /** Cancels every timer and returns the closes of any connection still owned. The FSM is dead afterwards. */
  dispose(): FsmAction[] {
    this.autoRestart = false;
    this.started = false;
    this.stopTimers();
    clearTimer(this.idleHoldTimer);
    this.idleHoldTimer = undefined;
    const out: FsmAction[] = [];
    if (this.conn !== undefined) out.push({ type: 'close', conn: this.conn });
    if (this.pendingConnect !== undefined) out.push({ type: 'close', conn: this.pendingConnect });
    this.conn = this.pendingConnect = undefined;
    return out;
  }

  private dispatch(ev: FsmEvent): Transition {
    switch (this.state) {
      case 'Idle':
        return this.idle(ev);
      case 'Connect':
        return this.connect(ev);
      case 'Active':
        return this.active(ev);
      case 'OpenSent':
        return this.openSent(ev);
      case 'OpenConfirm':
        return this.openConfirm(ev);
      case 'Established':
        return this.established(ev);
    }
  }

  // -------------------------------------------------------------------------
  // One method per state
  // -------------------------------------------------------------------------

  private idle(ev: FsmEvent): Transition {
    switch (ev.type) {
      case 'ManualStart':
        this.started = true;
        this.autoRestart = true;
        this.failures = 0;
        return this.startSession('ManualStart');
      case 'AutomaticStart':
        if (!this.started) return this.stay('AutomaticStart ignored: administratively down');
        return this.startSession('automatic restart');
      case 'TcpConnectionConfirmed':
        if (ev.direction === 'outgoing') return this.stay('stale outgoing connection closed', [{ type: 'close', conn: ev.conn }]);
        if (!this.started) {
          // Administratively down: refuse (RFC 4271 §8.2.2 Idle, RFC 4486 Connection Rejected).
          return this.stay('connection refused: administratively down', [
            { type: 'send', conn: ev.conn, message: { type: 'notification', ...notif(ERR_CEASE, CEASE_CONNECTION_REJECTED) } },
            { type: 'close', conn: ev.conn },
          ]);
        }
        // Waiting to restart after an error: take the peer's connection instead of waiting.
        clearTimer(this.idleHoldTimer);
        this.idleHoldTimer = undefined;
        return this.acceptConnection(ev.conn, ev.direction, 'incoming TCP connection (automatic start)');
      default:
        return this.stay(`${ev.type} ignored in Idle`);
    }
  }

  private connect(ev: FsmEvent): Transition {
    switch (ev.type) {
      case 'ManualStop':
        return this.down('ManualStop', undefined, true);
      case 'ConnectRetryTimerExpires': {
        this.failures++;
        const actions: FsmAction[] = [];
        if (this.pendingConnect !== undefined) actions.push({ type: 'close', conn: this.pendingConnect });
        this.pendingConnect = this.allocConn();
        actions.push({ type: 'connect', conn: this.pendingConnect });
        this.startConnectRetry();
        return this.stay('ConnectRetry timer expired: connecting again', actions);
      }
      case 'TcpConnectionConfirmed':
        return this.tcpConfirmed(ev.conn, ev.direction);
      case 'TcpConnectionFails':
        this.failures++;
        this.pendingConnect = undefined;
        this.startConnectRetry();
        this.setLocalError('TCP connection failed', `connecting to ${this.opts.peerAddress} failed`);
        return this.go('Active', 'TCP connection failed');
      default:
        return this.stay(`${ev.type} ignored in Connect`);
    }
  }

  private active(ev: FsmEvent): Transition {
    switch (ev.type) {
      case 'ManualStop':
        return this.down('ManualStop', undefined, true);
      case 'ConnectRetryTimerExpires':
        this.startConnectRetry();
        if (this.opts.passive) return this.stay('passive: still waiting for the peer');
        this.pendingConnect = this.allocConn();
        return this.go('Connect', 'ConnectRetry timer expired', [{ type: 'connect', conn: this.pendingConnect }]);
      case 'TcpConnectionConfirmed':
        return this.tcpConfirmed(ev.conn, ev.direction);
      default:
        return this.stay(`${ev.type} ignored in Active`);
    }
  }

  private openSent(ev: FsmEvent): Transition {
    switch (ev.type) {
      case 'ManualStop':
        return this.down('ManualStop', notif(ERR_CEASE, ev.subcode ?? CEASE_ADMIN_SHUTDOWN, ev.data), true);
      case 'HoldTimerExpires':
        return this.down('hold timer expired (no OPEN)', notif(ERR_HOLD_TIMER_EXPIRED, 0));
      case 'TcpConnectionFails':
        // RFC 4271 §8.2.2 OpenSent, event 18: back to Active and keep listening.
        this.failures++;
        this.conn = this.direction = undefined;
        this.stopTimers();
        this.startConnectRetry();
        this.setLocalError('TCP connection failed', 'connection closed before the OPEN exchange completed');
        return this.go('Active', 'TCP connection failed in OpenSent');
      case 'BGPOpen': {
        const s = checkOpen(ev.open, this.openParams(), this.opts.capabilities);
        if (isBgpError(s)) return this.down(`OPEN rejected: ${s.message}`, notificationFor(s));
        this.session = s;
        const actions: FsmAction[] = [{ type: 'send', conn: ev.conn, message: { type: 'keepalive' } }];
        this.stopHold();
        if (s.holdTime > 0) {
          this.startHold(s.holdTime * 1000);
          this.startKeepalive();
        }
        return this.go('OpenConfirm', `OPEN received from ${s.remoteId} (hold ${s.holdTime} s)`, actions);
      }
      case 'MessageError':
        return this.down(`malformed message: ${ev.error.message}`, notificationFor(ev.error));
      case 'NotifMsg':
        return this.notified(ev.notification);
      case 'KeepAliveMsg':
      case 'UpdateMsg':
      case 'RouteRefreshMsg':
        return this.down(`${ev.type} in OpenSent`, notif(ERR_FSM, FSM_UNEXPECTED_IN_OPENSENT));
      case 'OpenCollisionDump':
        return this.down('connection collision resolution', notif(ERR_CEASE, CEASE_CONNECTION_COLLISION));
      default:
        return this.stay(`${ev.type} ignored in OpenSent`);
    }
  }

  private openConfirm(ev: FsmEvent): Transition {
    switch (ev.type) {
      case 'ManualStop':
        return this.down('ManualStop', notif(ERR_CEASE, ev.subcode ?? CEASE_ADMIN_SHUTDOWN, ev.data), true);
      case 'HoldTimerExpires':
        return this.down('hold timer expired', notif(ERR_HOLD_TIMER_EXPIRED, 0));
      case 'KeepaliveTimerExpires':
        return this.keepalive();
      case 'TcpConnectionFails':
        this.setLocalError('TCP connection failed', 'connection closed in OpenConfirm');
        return this.down('TCP connection failed in OpenConfirm');
      case 'NotifMsg':
        return this.notified(ev.notification);
      case 'KeepAliveMsg': {
        this.restartHold();
        this.failures = 0;
        const s = this.session!;
        return this.go('Established', `KEEPALIVE received: session up (hold ${s.holdTime} s, keepalive ${s.keepaliveTime} s)`, [
          { type: 'established', conn: ev.conn, session: s },
        ]);
      }
      case 'MessageError':
        return this.down(`malformed message: ${ev.error.message}`, notificationFor(ev.error));
      case 'BGPOpen':
      case 'UpdateMsg':
      case 'RouteRefreshMsg':
        return this.down(`${ev.type} in OpenConfirm`, notif(ERR_FSM, FSM_UNEXPECTED_IN_OPENCONFIRM));
      case 'OpenCollisionDump':
        return this.down('connection collision resolution', notif(ERR_CEASE, CEASE_CONNECTION_COLLISION));
      default:
        return this.stay(`${ev.type} ignored in OpenConfirm`);
    }
  }

  private established(ev: FsmEvent): Transition {
    switch (ev.type) {
      case 'ManualStop':
        return this.down('ManualStop', notif(ERR_CEASE, ev.subcode ?? CEASE_ADMIN_SHUTDOWN, ev.data), true);
      case 'HoldTimerExpires':
        return this.down('hold timer expired', notif(ERR_HOLD_TIMER_EXPIRED, 0));
      case 'KeepaliveTimerExpires':
        return this.keepalive();
      case 'TcpConnectionFails':
        this.setLocalError('TCP connection failed', 'connection closed by the peer');
        return this.down('TCP connection closed');
      case 'NotifMsg':
        return this.notified(ev.notification);
      case 'KeepAliveMsg':
        this.restartHold();
        return this.stay('KEEPALIVE');
      case 'UpdateMsg': {
        this.restartHold();
        const u = normalizeUpdate(ev.update, this.session!);
        if (isBgpError(u)) return this.down(`UPDATE rejected: ${u.message}`, notificationFor(u));
        return this.stay('UPDATE', [{ type: 'update', conn: ev.conn, update: u }]);
      }
      case 'RouteRefreshMsg':
        this.restartHold();
        // RFC 2918 §4: a refresh for a family we did not advertise is ignored.
        if (ev.refresh.afi !== AFI_IPV4 || ev.refresh.safi !== SAFI_UNICAST) return this.stay('ROUTE-REFRESH for another family ignored');
        return this.stay('ROUTE-REFRESH', [{ type: 'route-refresh', conn: ev.conn }]);
      case 'MessageError':
        return this.down(`malformed message: ${ev.error.message}`, notificationFor(ev.error));
      case 'BGPOpen':
        return this.down('OPEN in Established', notif(ERR_FSM, FSM_UNEXPECTED_IN_ESTABLISHED));
      case 'OpenCollisionDump':
        return this.down('connection collision resolution', notif(ERR_CEASE, CEASE_CONNECTION_COLLISION));
      default:
        return this.stay(`${ev.type} ignored in Established`);
    }
  }

  // -------------------------------------------------------------------------
  // Shared steps
  // -------------------------------------------------------------------------

  private stay(reason: string, actions: FsmAction[] = []): Transition {
    return { next: this.state, reason, actions };
  }

  private go(next: BgpState, reason: string, actions: FsmAction[] = []): Transition {
    return { next, reason, actions };
  }

  private openParams() {
    return {
      localAsn: this.opts.localAsn,
      routerId: this.opts.routerId,
      holdTime: this.opts.holdTime,
      keepaliveTime: this.opts.keepaliveTime,
      peerAsn: this.opts.peerAsn,
    };
  }

  /** Idle → Connect (dial) or Active (passive: wait). */
  private startSession(reason: string): Transition {
    clearTimer(this.idleHoldTimer);
    this.idleHoldTimer = undefined;
    this.startConnectRetry();
    if (this.opts.passive) return this.go('Active', `${reason} (passive)`);
    this.pendingConnect = this.allocConn();
    return this.go('Connect', reason, [{ type: 'connect', conn: this.pendingConnect }]);
  }

  /** Connect/Active + a TCP connection: take it, drop any other attempt, send OPEN. */
  private tcpConfirmed(conn: number, direction: ConnDirection): Transition {
    if (direction === 'outgoing' && conn !== this.pendingConnect) {
      return this.stay('stale outgoing connection closed', [{ type: 'close', conn }]);
    }
    const actions: FsmAction[] = [];
    if (this.pendingConnect !== undefined && this.pendingConnect !== conn) actions.push({ type: 'close', conn: this.pendingConnect });
    this.pendingConnect = undefined;
    const t = this.acceptConnection(conn, direction, `${direction} TCP connection established`);
    t.actions.unshift(...actions);
    return t;
  }

  private acceptConnection(conn: number, direction: ConnDirection, reason: string): Transition {
    this.stopConnectRetry();
    this.conn = conn;
    this.direction = direction;
    this.session = undefined;
    this.startHold(this.opts.openHoldMs);
    const open = buildOpen(this.openParams(), this.opts.capabilities);
    return this.go('OpenSent', reason, [{ type: 'send', conn, message: { type: 'open', ...open } }]);
  }

  private keepalive(): Transition {
    this.startKeepalive();
    return this.stay('KeepaliveTimer expired', [{ type: 'send', conn: this.conn!, message: { type: 'keepalive' } }]);
  }

  private notified(n: NotificationRepr): Transition {
    const name = notificationName(n.code, n.subcode);
    this.lastError = { at: this.clock.now(), direction: 'received', code: n.code, subcode: n.subcode, name, message: describeNotificationData(n) };
    return this.down(`NOTIFICATION received: ${n.code}/${n.subcode} ${name}`);
  }

  private setLocalError(name: string, message: string): void {
    this.lastError = { at: this.clock.now(), direction: 'local', name, message };
  }

  /**
   * Any state → Idle: NOTIFICATION (if given) and close, routes withdrawn if
   * the session was Established, and (unless `manual`) an automatic restart
   * after the backoff interval.
   */
  private down(reason: string, n?: NotificationRepr, manual = false): Transition {
    const actions: FsmAction[] = [];
    if (n) {
      this.lastError = { at: this.clock.now(), direction: 'sent', code: n.code, subcode: n.subcode, name: notificationName(n.code, n.subcode), message: reason };
    }
    if (this.conn !== undefined) {
      if (n) actions.push({ type: 'send', conn: this.conn, message: { type: 'notification', ...n } });
      actions.push({ type: 'close', conn: this.conn });
    }
    if (this.pendingConnect !== undefined) actions.push({ type: 'close', conn: this.pendingConnect });
    if (this.state === 'Established') actions.push({ type: 'routes-withdrawn', reason });
    this.stopTimers();
    this.conn = this.direction = this.pendingConnect = undefined;
    this.session = undefined;
    if (manual) {
      this.started = false;
    } else {
      this.failures++;
      if (this.autoRestart && this.started) {
        clearTimer(this.idleHoldTimer);
        this.idleHoldTimer = this.clock.setTimeout(() => {
          this.idleHoldTimer = undefined;
          this.fire({ type: 'AutomaticStart' });
        }, this.retryDelay());
      }
    }
    return this.go('Idle', reason, actions);
  }

  /** Backoff: connectRetryMs × 2^(failures-1), capped, times the jitter factor. */
  retryDelay(): number {
    const base = this.opts.connectRetryMs * 2 ** Math.max(0, this.failures - 1);
    return Math.round(Math.min(this.opts.connectRetryMaxMs, base) * this.opts.jitter());
  }

  private fire(ev: FsmEvent): void {
    const actions = this.handle(ev);
    if (actions.length) this.onActions(actions);
  }

  private startConnectRetry(): void {
    clearTimer(this.connectRetryTimer);
    this.connectRetryTimer = this.clock.setTimeout(() => {
      this.connectRetryTimer = undefined;
      this.fire({ type: 'ConnectRetryTimerExpires' });
    }, this.retryDelay());
  }

  private stopConnectRetry(): void {
    clearTimer(this.connectRetryTimer);
    this.connectRetryTimer = undefined;
  }

  private startHold(ms: number): void {
    clearTimer(this.holdTimer);
    this.holdTimer = this.clock.setTimeout(() => {
      this.holdTimer = undefined;
      this.fire({ type: 'HoldTimerExpires' });
    }, ms);
  }

  private restartHold(): void {
    const s = this.session;
    if (s && s.holdTime > 0) this.startHold(s.holdTime * 1000);
  }

  private stopHold(): void {
    clearTimer(this.holdTimer);
    this.holdTimer = undefined;
  }

  private startKeepalive(): void {
    const s = this.session;
    clearTimer(this.keepaliveTimer);
    this.keepaliveTimer = undefined;
    if (!s || s.keepaliveTime <= 0) return;
    this.keepaliveTimer = this.clock.setTimeout(() => {
      this.keepaliveTimer = undefined;
      this.fire({ type: 'KeepaliveTimerExpires' });
    }, s.keepaliveTime * 1000);
  }

  private stopTimers(): void {
    this.stopConnectRetry();
    this.stopHold();
    clearTimer(this.keepaliveTimer);
    this.keepaliveTimer = undefined;
  }
}

function clearTimer(t: Timer | undefined): void {
  t?.cancel();
}

/** The data of a NOTIFICATION as text: an RFC 9003 shutdown communication, else hex. */
export function describeNotificationData(n: NotificationRepr): string {
  if (n.code === ERR_CEASE && (n.subcode === CEASE_ADMIN_SHUTDOWN || n.subcode === 4) && n.data.length >= 1 && n.data[0] === n.data.length - 1) {
    return n.data[0] ? `shutdown communication: ${n.data.subarray(1).toString('utf8')}` : '';
  }
  return n.data.length ? `data ${n.data.toString('hex')}` : '';
}

/** RFC 9003 shutdown communication: a length octet and up to 255 bytes of UTF-8. */
export function shutdownCommunication(text: string): Buffer {
  let b = Buffer.from(text, 'utf8');
  if (b.length > 255) b = b.subarray(0, 255);
  return Buffer.concat([Buffer.from([b.length]), b]);
}

// ---------------------------------------------------------------------------
// Per-peer coordinator: collision detection (RFC 4271 §6.8)
// ---------------------------------------------------------------------------

/** The FSM(s) of one configured peer, with connection collision detection. */
export class BgpPeerFsm {
  /** The FSM whose state is the peer's state. */
  main: BgpFsm;
  /** A second session attempt on a connection the peer opened while `main` was in OpenSent/OpenConfirm. */
  second: BgpFsm | undefined;
  /** Receives the actions of timer events (of either FSM). */
  onActions: (actions: FsmAction[]) => void = () => {};
  /** Collisions resolved so far (for `summary()`). */
  collisions = 0;
  private nextConn = 1;

  constructor(readonly options: FsmOptions) {
    this.main = this.spawn();
  }

  /** The peer's state (the main FSM's). */
  get state(): BgpState {
    return this.main.state;
  }

  /** A connection id for an incoming connection, or for tests. */
  allocConn(): number {
    return this.nextConn++;
  }

  /** ManualStart. */
  start(): FsmAction[] {
    return this.run(this.main, { type: 'ManualStart' });
  }

  /**
   * ManualStop on every connection: NOTIFICATION Cease (default subcode 2,
   * Administrative Shutdown; `data` e.g. an RFC 9003 shutdown communication)
   * wherever an OPEN was sent.
   */
  stop(data?: Buffer, subcode: number = CEASE_ADMIN_SHUTDOWN): FsmAction[] {
    const out: FsmAction[] = [];
    if (this.second) {
      out.push(...this.second.handle({ type: 'ManualStop', subcode, data }).filter((a) => a.type !== 'state'));
      out.push(...this.second.dispose());
      this.second = undefined;
    }
    out.push(...this.run(this.main, { type: 'ManualStop', subcode, data }));
    return out;
  }

  /** Cancels all timers (after `stop()`, when the peer is removed). */
  dispose(): FsmAction[] {
    const out = [...(this.second?.dispose() ?? []), ...this.main.dispose()];
    this.second = undefined;
    return out;
  }

  /** A TCP connection is up: `outgoing` = the one a `connect` action asked for; `incoming` = accepted from the peer. */
  tcpConnected(conn: number, direction: ConnDirection): FsmAction[] {
    if (direction === 'outgoing') return this.run(this.owner(conn) ?? this.main, { type: 'TcpConnectionConfirmed', conn, direction });
    switch (this.main.state) {
      case 'Idle':
      case 'Connect':
      case 'Active':
        return this.run(this.main, { type: 'TcpConnectionConfirmed', conn, direction });
      case 'Established':
        this.collisions++;
        return reject(conn); // §6.8: a collision with an Established session closes the new connection
      case 'OpenSent':
      case 'OpenConfirm': {
        if (this.second) return reject(conn); // a third concurrent connection
        this.second = this.spawn();
        this.second.autoRestart = false;
        this.second.started = true;
        return this.run(this.second, { type: 'TcpConnectionConfirmed', conn, direction });
      }
    }
  }

  /** The TCP connection `conn` failed or was closed by the peer. */
  tcpFailed(conn: number): FsmAction[] {
    const f = this.owner(conn);
    return f ? this.run(f, { type: 'TcpConnectionFails', conn }) : [];
  }

  /** A message arrived on `conn`. OPENs go through collision detection first. */
  message(conn: number, msg: BgpMessage): FsmAction[] {
    const f = this.owner(conn);
    if (!f) return [];
    if (msg.type === 'open') {
      if (f === this.second && this.main.state === 'Established') {
        this.collisions++;
        return this.dump(f);
      }
      const other = f === this.main ? this.second : this.main;
      if (other && (other.state === 'OpenSent' || other.state === 'OpenConfirm')) {
        const loser = this.collisionLoser(f, other, msg.bgpId);
        this.collisions++;
        const out = this.dump(loser);
        if (loser !== f) out.push(...this.run(f, { type: 'BGPOpen', conn, open: msg }));
        return out;
      }
    }
    return this.run(f, eventFor(conn, msg));
  }

  /** A message on `conn` failed to decode: the FSM sends the NOTIFICATION the error carries. */
  messageError(conn: number, error: BgpError): FsmAction[] {
    const f = this.owner(conn);
    return f ? this.run(f, { type: 'MessageError', conn, error }) : [];
  }

  /** Sends an UPDATE or ROUTE-REFRESH on the Established session. */
  send(message: BgpMessage): FsmAction[] {
    return this.main.send(message);
  }

  /**
   * RFC 4271 §6.8: if our BGP Identifier is higher, keep the connection we
   * initiated (outgoing), else the one the peer initiated. Two connections of
   * the same direction: the newer (the second) goes.
   */
  private collisionLoser(receiving: BgpFsm, other: BgpFsm, remoteId: string): BgpFsm {
    if (receiving.direction === other.direction) return receiving === this.main ? other : receiving;
    const localHigher = ipv4ToInt(this.options.routerId) > ipv4ToInt(remoteId);
    const keep: ConnDirection = localHigher ? 'outgoing' : 'incoming';
    return receiving.direction === keep ? other : receiving;
  }

  /** Closes the losing connection with Cease 6/7; promotes the second FSM if the main one lost. */
  private dump(loser: BgpFsm): FsmAction[] {
    loser.autoRestart = false;
    const fromState = this.main.state;
    const out: FsmAction[] = loser.handle({ type: 'OpenCollisionDump' }).filter((a) => a.type !== 'state');
    out.push(...loser.dispose());
    if (loser === this.second) {
      this.second = undefined;
      return out;
    }
    const winner = this.second!;
    this.second = undefined;
    this.promote(winner);
    if (this.main.state !== fromState) out.push({ type: 'state', from: fromState, to: this.main.state, reason: 'connection collision: kept the connection the peer initiated' });
    return out;
  }

  private promote(f: BgpFsm): void {
    f.autoRestart = true;
    f.started = true;
    f.onActions = (a) => this.onActions(this.afterTimer(f, a));
    this.main = f;
  }

  /** Runs an event on one FSM and tidies up: drops a dead second FSM, promotes one that overtook main. */
  private run(f: BgpFsm, ev: FsmEvent): FsmAction[] {
    return this.tidy(f, f.handle(ev));
  }

  private afterTimer(f: BgpFsm, actions: FsmAction[]): FsmAction[] {
    return this.tidy(f, actions);
  }

  private tidy(f: BgpFsm, actions: FsmAction[]): FsmAction[] {
    if (f === this.main) {
      // Main reached Established while the peer's own connection is still opening: that one goes (§6.8).
      if (this.main.state === 'Established' && this.second) {
        this.collisions++;
        actions.push(...this.dump(this.second));
      }
      return actions;
    }
    if (f !== this.second) return actions;
    // The second FSM's own state changes are not the peer's.
    const out: FsmAction[] = actions.filter((a) => a.type !== 'state');
    if (f.state === 'Idle') {
      out.push(...f.dispose());
      this.second = undefined;
    } else if ((f.state === 'OpenConfirm' || f.state === 'Established') && ['Idle', 'Connect', 'Active'].includes(this.main.state)) {
      // Our own attempt is not past TCP yet; the peer's connection is ahead: adopt it.
      const old = this.main;
      const from = old.state;
      out.push(...old.dispose());
      this.second = undefined;
      this.promote(f);
      out.push({ type: 'state', from, to: f.state, reason: 'took over the connection the peer opened' });
    }
    return out;
  }

  private owner(conn: number): BgpFsm | undefined {
    if (this.main.conn === conn || this.main.pendingConnect === conn) return this.main;
    if (this.second && this.second.conn === conn) return this.second;
    return undefined;
  }

  private spawn(): BgpFsm {
    const f = new BgpFsm(this.options, () => this.allocConn());
    f.onActions = (a) => this.onActions(this.afterTimer(f, a));
    return f;
  }
}

/** Closes a connection that lost a collision before any FSM took it: Cease 6/7, then close. */
function reject(conn: number): FsmAction[] {
  return [
    { type: 'send', conn, message: { type: 'notification', code: ERR_CEASE, subcode: CEASE_CONNECTION_COLLISION, data: Buffer.alloc(0) } },
    { type: 'close', conn },
  ];
}

/** The FSM event for a received message. */
export function eventFor(conn: number, msg: BgpMessage): FsmEvent {
  switch (msg.type) {
    case 'open':
      return { type: 'BGPOpen', conn, open: msg };
    case 'keepalive':
      return { type: 'KeepAliveMsg', conn };
    case 'update':
      return { type: 'UpdateMsg', conn, update: msg };
    case 'notification':
      return { type: 'NotifMsg', conn, notification: msg };
    case 'route-refresh':
      return { type: 'RouteRefreshMsg', conn, refresh: msg };
  }
}
