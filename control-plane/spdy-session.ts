/**
 * The server side of one SPDY/3.1 connection, as Go's spdystream (the
 * kubelet's and kubectl's) runs it: the client opens streams with
 * SYN_STREAM (odd ids), the server answers each with SYN_REPLY or refuses
 * it with RST_STREAM; each side half-closes a stream with FLAG_FIN; PINGs
 * with the peer's parity are echoed; GOAWAY ends the connection.
 *
 * The bytes come from and go to a `SpdyTransport`: a socket after an HTTP
 * `Upgrade: SPDY/3.1`, or WebSocket binary messages when kubectl tunnels
 * SPDY through a WebSocket. spdystream implements no flow control (it
 * neither sends nor honours WINDOW_UPDATE), so neither does this side: a
 * slow reader is met with the transport's own back-pressure.
 *
 * A malformed frame or header block ends the connection with GOAWAY
 * PROTOCOL_ERROR (the header compression context is lost after one), counted
 * in `protocolErrors`; it never throws into the caller.
 */
import { EventEmitter } from 'node:events';
import { isWireError, type WireError } from '../packet/errors.ts';
import { SpdyFlag, SpdyGoAwayStatus, SpdyRstStatus, parseSpdyFrame, serializeSpdyFrame, type SpdyFrame, type SpdyHeaders } from '../packet/spdy.ts';
import { SpdyHeaderCompressor, SpdyHeaderDecompressor } from '../packet/spdy-headers.ts';

/** Where the connection's bytes go. */
export interface SpdyTransport {
  /** False once the peer reads slower than we write; the session's 'drain' follows. */
  write(b: Buffer): boolean;
  /** Calls `cb` when written data has drained after a false write. */
  onDrain(cb: () => void): void;
  /** Stops and restarts reading the peer (back-pressure towards it). */
  pause(): void;
  resume(): void;
  /** Closes the underlying connection. */
  close(): void;
}

/** A control frame from kubectl is small; data frames carry at most what one socket read gave Go (32 KiB). */
export const MAX_FRAME = 1 << 20;

export interface SpdyStreamEvents {
  data: [Buffer];
  /** The peer half-closed (FLAG_FIN). */
  end: [];
  /** The peer reset the stream, or the connection went away. */
  reset: [status: number];
}

/** One stream the client opened. */
export class SpdyStream extends EventEmitter<SpdyStreamEvents> {
  replied = false;
  /** We sent FLAG_FIN. */
  localClosed = false;
  /** The peer sent FLAG_FIN. */
  remoteClosed = false;
  reset = false;

  constructor(
    private readonly session: SpdyServerSession,
    readonly id: number,
    /** Header names as sent (lower case), values as one string (NUL-joined when several). */
    readonly headers: Map<string, string>,
  ) {
    super();
  }

  /** Accepts the stream (SYN_REPLY, empty headers, as the kubelet answers). */
  reply(headers: SpdyHeaders = []): void {
    if (this.replied || this.reset) return;
    this.replied = true;
    this.session.sendFrame({ kind: 'syn_reply', flags: 0, streamId: this.id, headerBlock: this.session.compress(headers) });
  }

  /** Sends data, large buffers as several frames; false when the transport is backed up (wait for the session's 'drain'). */
  write(data: Buffer): boolean {
    if (!this.replied || this.localClosed || this.reset) return true;
    let ok = true;
    for (let off = 0; off < data.length; off += MAX_FRAME) {
      ok = this.session.sendFrame({ kind: 'data', streamId: this.id, flags: 0, data: data.subarray(off, off + MAX_FRAME) }) && ok;
    }
    return ok;
  }

  /** Half-closes our side (an empty data frame with FLAG_FIN, as spdystream's Close). */
  end(): void {
    if (!this.replied || this.localClosed || this.reset) return;
    this.localClosed = true;
    this.session.sendFrame({ kind: 'data', streamId: this.id, flags: SpdyFlag.FIN, data: Buffer.alloc(0) });
    this.session.forgetIfDone(this);
  }

  /** Aborts the stream (RST_STREAM). */
  abort(status: number = SpdyRstStatus.CANCEL): void {
    if (this.reset) return;
    this.reset = true;
    this.session.sendFrame({ kind: 'rst_stream', flags: 0, streamId: this.id, status });
    this.session.forget(this);
  }
}

export interface SpdySessionEvents {
  /** A new stream: the listener replies or aborts it. */
  stream: [SpdyStream];
  /** The transport took what was written after a false write. */
  drain: [];
  close: [];
}

export class SpdyServerSession extends EventEmitter<SpdySessionEvents> {
  private buf: Buffer = Buffer.alloc(0);
  private readonly streams = new Map<number, SpdyStream>();
  private readonly deflate = new SpdyHeaderCompressor();
  private readonly inflate = new SpdyHeaderDecompressor();
  private lastStreamId = 0;
  private closed = false;
  /** Frames that ended the connection as malformed. */
  protocolErrors = 0;
  lastError: WireError | undefined;

  constructor(private readonly transport: SpdyTransport) {
    super();
    transport.onDrain(() => this.emit('drain'));
  }

  get streamCount(): number {
    return this.streams.size;
  }

  /** Bytes from the peer, in order. */
  feed(chunk: Buffer): void {
    if (this.closed) return;
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    while (!this.closed) {
      const r = parseSpdyFrame(this.buf, MAX_FRAME);
      if (isWireError(r)) return this.fail(r);
      if ('need' in r) break;
      this.buf = this.buf.subarray(r.length);
      this.onFrame(r.frame);
    }
  }

  private fail(e: WireError): void {
    this.protocolErrors++;
    this.lastError = e;
    this.sendFrame({ kind: 'goaway', flags: 0, lastGoodStreamId: this.lastStreamId, status: SpdyGoAwayStatus.PROTOCOL_ERROR });
    this.close();
  }

  private onFrame(f: SpdyFrame): void {
    switch (f.kind) {
      case 'syn_stream': {
        const headers = this.inflate.decompress(f.headerBlock);
        if (isWireError(headers)) return this.fail(headers);
        // Client streams are odd and increasing (section 2.3.2); anything else is refused, not fatal.
        if (f.streamId % 2 === 0 || f.streamId <= this.lastStreamId) {
          this.sendFrame({ kind: 'rst_stream', flags: 0, streamId: f.streamId, status: SpdyRstStatus.PROTOCOL_ERROR });
          return;
        }
        this.lastStreamId = f.streamId;
        const s = new SpdyStream(this, f.streamId, new Map(headers));
        this.streams.set(f.streamId, s);
        if (f.flags & SpdyFlag.FIN) s.remoteClosed = true;
        this.emit('stream', s);
        if (!s.replied && !s.reset) s.abort(SpdyRstStatus.REFUSED_STREAM);
        return;
      }
      case 'data': {
        const s = this.streams.get(f.streamId);
        if (!s || s.remoteClosed) return;
        if (f.data.length) s.emit('data', f.data);
        if (f.flags & SpdyFlag.FIN) this.remoteFin(s);
        return;
      }
      case 'headers': {
        // Keep the compression context in step even though the headers mean nothing here.
        const h = this.inflate.decompress(f.headerBlock);
        if (isWireError(h)) return this.fail(h);
        const s = this.streams.get(f.streamId);
        if (s && f.flags & SpdyFlag.FIN) this.remoteFin(s);
        return;
      }
      case 'syn_reply': {
        const h = this.inflate.decompress(f.headerBlock);
        if (isWireError(h)) return this.fail(h);
        return;
      }
      case 'rst_stream': {
        const s = this.streams.get(f.streamId);
        if (!s) return;
        s.reset = true;
        this.forget(s);
        s.emit('reset', f.status);
        return;
      }
      case 'ping':
        // The client's pings are odd: echo them. Ours would be even, and we send none.
        if (f.id % 2 === 1) this.sendFrame(f);
        return;
      case 'goaway':
        this.close();
        return;
      case 'settings':
      case 'window_update':
      case 'unknown':
        return;
    }
  }

  private remoteFin(s: SpdyStream): void {
    if (s.remoteClosed) return;
    s.remoteClosed = true;
    s.emit('end');
    this.forgetIfDone(s);
  }

  /** @internal */
  compress(headers: SpdyHeaders): Buffer {
    return this.deflate.compress(headers);
  }

  /** @internal */
  sendFrame(f: SpdyFrame): boolean {
    if (this.closed) return true;
    return this.transport.write(serializeSpdyFrame(f));
  }

  /** @internal */
  forgetIfDone(s: SpdyStream): void {
    if (s.localClosed && s.remoteClosed) this.forget(s);
  }

  /** @internal */
  forget(s: SpdyStream): void {
    this.streams.delete(s.id);
  }

  private pausers = 0;

  /** Stops reading the peer until as many resumeInput() calls: a stream's consumer is backed up. */
  pauseInput(): void {
    if (this.pausers++ === 0) this.transport.pause();
  }

  resumeInput(): void {
    if (this.pausers > 0 && --this.pausers === 0) this.transport.resume();
  }

  /** Says goodbye (GOAWAY OK) and closes. */
  goAway(): void {
    this.sendFrame({ kind: 'goaway', flags: 0, lastGoodStreamId: this.lastStreamId, status: SpdyGoAwayStatus.OK });
    this.close();
  }

  /** The transport is gone (or we end it): every open stream is reset. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.transport.close();
    for (const s of [...this.streams.values()]) {
      s.reset = true;
      s.emit('reset', SpdyRstStatus.CANCEL);
    }
    this.streams.clear();
    this.deflate.close();
    this.inflate.close();
    this.emit('close');
  }
}
