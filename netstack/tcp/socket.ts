/**
 * The application's view of TCP, shaped like Node's `net.Socket` and
 * `net.Server` (a subset): events 'connect', 'data', 'end', 'drain',
 * 'error' (a TcpError with `code`) and 'close'; `write()` returning false
 * past the send buffer, `end()` for a half-close, `destroy()` to abort,
 * `pause()`/`resume()` for flow control (a paused socket's receive window
 * closes as its buffer fills).
 *
 * Differences from Node: `destroy()` aborts with a RST (Node closes with a
 * FIN unless `resetAndDestroy()`); with `allowHalfOpen` false (the default)
 * the socket ends its side after the peer's FIN, as Node does.
 */
import { EventEmitter } from 'node:events';
import type { ConnectionEvents, TcpConnection, TcpState } from './connection.ts';
import { TcpError } from './errors.ts';

/** Minimal view of the stack a socket needs. */
interface SocketHost {
  run(fn: () => void): void;
  onAppError(err: unknown): void;
  /** An error of a connection its application had closed both ways (see the 'error' event below). */
  onOrphanError(): void;
}

export interface TcpSocketEvents {
  connect: [];
  data: [Buffer];
  end: [];
  drain: [];
  error: [TcpError];
  close: [hadError: boolean];
}

export class TcpSocket extends EventEmitter<TcpSocketEvents> {
  private ended = false;
  /** The peer's FIN reached the application ('end'). */
  private readEnded = false;
  /** The connection failed after the application had closed it both ways (see 'error' below). */
  private failedOrphaned = false;
  private destroyedFlag = false;
  private readonly allowHalfOpen: boolean;

  constructor(
    private readonly host: SocketHost,
    /** The protocol machine behind the socket (for `ss` and tests). */
    readonly conn: TcpConnection,
    opts: { allowHalfOpen?: boolean } = {},
  ) {
    super();
    this.allowHalfOpen = opts.allowHalfOpen ?? false;
    const events: ConnectionEvents = {
      connect: () => this.safeEmit('connect'),
      data: (b) => this.safeEmit('data', b),
      end: () => {
        this.readEnded = true;
        this.safeEmit('end');
        if (!this.allowHalfOpen && !this.ended) this.end();
      },
      drain: () => this.safeEmit('drain'),
      error: (e) => {
        this.destroyedFlag = true;
        // Closed both ways by the application (it ended its side and had the peer's 'end') and everything it wrote
        // sent: Node has closed such a socket once its writes reached the kernel, and the kernel finishes the close
        // on its own, or fails it (a FIN never acknowledged), telling nobody. So the error is counted, not emitted.
        // Writes still queued here would still be in Node's own buffer, and their failure is the application's.
        if (this.ended && this.readEnded && this.conn.finSent) {
          this.failedOrphaned = true;
          this.host.onOrphanError();
        }
        // An 'error' nobody listens to must not crash the node: report it instead.
        else if (this.listenerCount('error')) this.safeEmit('error', e);
        else this.host.onAppError(e);
      },
      close: (hadError) => {
        this.destroyedFlag = true;
        // For the application an orphan's close was clean: it never had the error.
        this.safeEmit('close', hadError && !this.failedOrphaned);
      },
    };
    conn.events = events;
  }

  private safeEmit<K extends keyof TcpSocketEvents>(ev: K, ...args: TcpSocketEvents[K]): void {
    try {
      (this.emit as (e: string, ...a: unknown[]) => boolean)(ev, ...args);
    } catch (e) {
      this.host.onAppError(e);
    }
  }

  get remoteAddress(): string {
    return this.conn.remoteAddr;
  }
  get remotePort(): number {
    return this.conn.remotePort;
  }
  get localAddress(): string {
    return this.conn.localAddr;
  }
  get localPort(): number {
    return this.conn.localPort;
  }
  /** The RFC 9293 state of the connection. */
  get state(): TcpState {
    return this.conn.state;
  }
  get bytesRead(): number {
    return this.conn.stats.bytesReceived;
  }
  get bytesWritten(): number {
    return this.conn.stats.bytesSent;
  }
  /** Bytes written and not yet acknowledged by the peer. */
  get bufferedAmount(): number {
    return this.conn.bufferedAmount;
  }
  get destroyed(): boolean {
    return this.destroyedFlag;
  }
  get writableEnded(): boolean {
    return this.ended;
  }

  /** Queues data; false means "wait for 'drain'" (the send buffer is full). */
  write(data: Buffer | string): boolean {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    if (this.ended || this.destroyedFlag) {
      const err = new TcpError('EPIPE', 'write', this.remoteAddress, this.remotePort, 'write after end');
      queueMicrotask(() => (this.listenerCount('error') ? this.emit('error', err) : this.host.onAppError(err)));
      return false;
    }
    let ok = true;
    this.host.run(() => {
      try {
        ok = this.conn.write(buf);
      } catch (e) {
        ok = false; // the connection died under us: its 'error'/'close' are on their way
        void e;
      }
    });
    return ok;
  }

  /** Sends FIN after the queued data (optionally writing `data` first). */
  end(data?: Buffer | string): this {
    if (data !== undefined && !this.ended) this.write(data);
    if (this.ended) return this;
    this.ended = true;
    this.host.run(() => this.conn.end());
    return this;
  }

  /** Aborts the connection (RST) and closes the socket. */
  destroy(err?: TcpError): this {
    if (this.destroyedFlag) return this;
    this.ended = true;
    // Not yet connecting (connect() starts on the next microtask): nothing to abort, but still 'close'.
    if (this.conn.state === 'CLOSED') queueMicrotask(() => this.safeEmit('close', false));
    else this.host.run(() => this.conn.abort(err));
    this.destroyedFlag = true;
    return this;
  }

  pause(): this {
    this.conn.pause();
    return this;
  }

  resume(): this {
    this.host.run(() => this.conn.resume());
    return this;
  }

  get isPaused(): boolean {
    return this.conn.isPaused;
  }

  /** No Nagle in this stack: accepted for compatibility. */
  setNoDelay(): this {
    return this;
  }
}

export interface TcpServerEvents {
  connection: [TcpSocket];
  close: [];
}

/** A listening socket. `close()` stops accepting; established connections carry on. */
export class TcpServer extends EventEmitter<TcpServerEvents> {
  /** Accepted connections not yet closed. */
  connectionCount = 0;
  private closed = false;

  constructor(
    readonly port: number,
    readonly host: string,
    private readonly onClose: () => void,
  ) {
    super();
  }

  address(): { address: string; port: number; family: 'IPv4' } {
    return { address: this.host, port: this.port, family: 'IPv4' };
  }

  get listening(): boolean {
    return !this.closed;
  }

  close(): this {
    if (this.closed) return this;
    this.closed = true;
    this.onClose();
    queueMicrotask(() => this.emit('close'));
    return this;
  }
}
