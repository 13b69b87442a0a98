/**
 * The send buffer of a connection: the bytes the application wrote that the
 * peer has not acknowledged yet, as the list of the application's own
 * Buffers (no copy on write). Segments copy straight out of it into the
 * packet being built; acknowledged bytes are dropped from the front.
 */
export class SendQueue {
  private chunks: Buffer[] = [];
  /** Index of the first live chunk, and the bytes of it already consumed. */
  private head = 0;
  private headOff = 0;
  /** Bytes queued. */
  length = 0;
  /** Lookup cursor: chunk index and the queue offset its first live byte has. */
  private curIdx = 0;
  private curStart = 0;

  push(buf: Buffer): void {
    if (!buf.length) return;
    this.chunks.push(buf);
    this.length += buf.length;
  }

  /** Drops `n` bytes from the front (acknowledged data). */
  consume(n: number): void {
    if (n <= 0) return;
    if (n > this.length) n = this.length;
    this.length -= n;
    while (n > 0) {
      const c = this.chunks[this.head];
      const left = c.length - this.headOff;
      if (n < left) {
        this.headOff += n;
        n = 0;
      } else {
        n -= left;
        this.head++;
        this.headOff = 0;
      }
    }
    if (this.head > 64 && this.head * 2 > this.chunks.length) {
      this.chunks = this.chunks.slice(this.head);
      this.head = 0;
    }
    this.curIdx = this.head;
    this.curStart = 0;
  }

  /** Copies `len` bytes from queue offset `off` into `dst` at `dstOff`. */
  copyTo(dst: Buffer, dstOff: number, off: number, len: number): void {
    if (off < 0 || off + len > this.length) throw new RangeError(`send queue range ${off}+${len} outside 0..${this.length}`);
    // Find the chunk holding `off`, starting from the cursor when it is not past it.
    let idx = this.head;
    let start = 0; // queue offset of chunks[idx]'s first live byte
    if (this.curIdx >= this.head && this.curStart <= off) {
      idx = this.curIdx;
      start = this.curStart;
    }
    for (;;) {
      const c = this.chunks[idx];
      const first = idx === this.head ? this.headOff : 0;
      const size = c.length - first;
      if (off < start + size) break;
      start += size;
      idx++;
    }
    this.curIdx = idx;
    this.curStart = start;
    while (len > 0) {
      const c = this.chunks[idx];
      const first = idx === this.head ? this.headOff : 0;
      const from = first + (off - start);
      const n = Math.min(len, c.length - from);
      c.copy(dst, dstOff, from, from + n);
      dstOff += n;
      off += n;
      len -= n;
      start += c.length - first;
      idx++;
    }
  }
}
