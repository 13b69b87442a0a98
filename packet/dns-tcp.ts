/**
 * DNS over TCP (RFC 1035 4.2.2, RFC 7766 8): each message is preceded by a
 * two-byte big-endian length. A byte stream carries any number of messages
 * (pipelined queries), split anywhere by the transport, so the reader keeps
 * what has arrived until a whole message is there.
 *
 * A zero length announces no message at all and cannot be resynchronised
 * from: the reader returns a WireError and the connection should be closed.
 */
import { WireError } from './errors.ts';
import { DNS_HEADER_LEN } from './dns.ts';

/** The largest message the two-byte prefix can announce. */
export const DNS_TCP_MAX = 0xffff;

/** `msg` with its length prefix. Throws RangeError above 65535 bytes (a caller's bug, as serializers do). */
export function frameDnsTcp(msg: Buffer): Buffer {
  if (msg.length > DNS_TCP_MAX) throw new RangeError(`DNS message of ${msg.length} bytes does not fit a TCP length prefix`);
  const out = Buffer.allocUnsafe(2 + msg.length);
  out.writeUInt16BE(msg.length, 0);
  msg.copy(out, 2);
  return out;
}

/** Splits a DNS-over-TCP byte stream into messages. */
export class DnsTcpReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private failed?: WireError;

  /** Bytes held waiting for the rest of a message (at most 2 + 65535). */
  get pending(): number {
    return this.buffered;
  }

  /**
   * Adds bytes; returns the messages they complete (possibly none), or a
   * WireError once the stream announced a message shorter than a DNS header
   * (after which every push returns it again).
   */
  push(data: Buffer): Buffer[] | WireError {
    if (this.failed) return this.failed;
    if (data.length) {
      this.chunks.push(data);
      this.buffered += data.length;
    }
    const out: Buffer[] = [];
    for (;;) {
      if (this.buffered < 2) return out;
      const head = this.peek(2);
      const len = head.readUInt16BE(0);
      if (len < DNS_HEADER_LEN) {
        this.failed = new WireError('dns', 'bad-length', `DNS over TCP: a message of ${len} bytes is shorter than the 12-byte header`);
        return this.failed;
      }
      if (this.buffered < 2 + len) return out;
      out.push(this.take(2 + len).subarray(2));
    }
  }

  private peek(n: number): Buffer {
    if (this.chunks[0].length < n) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0].subarray(0, n);
  }

  private take(n: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
    const msg = Buffer.from(all.subarray(0, n));
    const rest = all.subarray(n);
    this.chunks = rest.length ? [rest] : [];
    this.buffered -= n;
    return msg;
  }
}
