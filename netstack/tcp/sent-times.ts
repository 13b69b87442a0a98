/**
 * When each segment in flight was first sent, for RTT samples from every ACK
 * (Linux keeps a timestamp per skb of its retransmission queue and takes
 * `seq_rtt` in tcp_clean_rtx_queue). Timing one segment at a time (the BSD
 * way) loses the measurement at every retransmission and starts the next
 * only with new data, so after losses a backed-off RTO can outlive many
 * round trips. A ring of (start, end, sentAt) in sequence order, appended at
 * SND.MAX as new data leaves and trimmed from the front as it is ACKed: O(1)
 * per segment.
 *
 * Retransmissions are not recorded here. They always start at SND.UNA (a
 * timeout's go-back-N continues from there), so the retransmitted data still
 * outstanding is one range [SND.UNA, highest retransmitted end); a segment
 * that starts at or beyond that end was sent once, and Karn's rule lets its
 * ACK be timed.
 */
import { seqLe, seqLt } from './seq.ts';

export class SentTimes {
  private start = new Float64Array(64);
  private end = new Float64Array(64);
  private at = new Float64Array(64);
  /** Index of the oldest record, and how many there are (capacity is a power of two). */
  private head = 0;
  private count = 0;

  /** New data [start, end) (sequence numbers, end may include a FIN) left at `at`. */
  push(start: number, end: number, at: number): void {
    if (this.count === this.start.length) this.grow();
    const i = (this.head + this.count) & (this.start.length - 1);
    this.start[i] = start;
    this.end[i] = end;
    this.at[i] = at;
    this.count++;
  }

  /**
   * An ACK up to `ack` arrived: returns the send time of the first segment it
   * newly covers (data below `ack`, at or after `una`, the old SND.UNA) that
   * starts at or beyond `rtxEnd` (never retransmitted) and left at or after
   * `notBefore`, or -1 if there is none; then forgets the segments `ack`
   * covers entirely.
   */
  ack(una: number, ack: number, rtxEnd: number, notBefore: number): number {
    const mask = this.start.length - 1;
    let sentAt = -1;
    for (let k = 0; k < this.count; k++) {
      const i = (this.head + k) & mask;
      if (!seqLt(this.start[i], ack)) break;
      if (seqLe(this.end[i], una)) continue; // acknowledged before (a lagging record)
      if (seqLe(rtxEnd, this.start[i]) && this.at[i] >= notBefore) {
        sentAt = this.at[i];
        break;
      }
    }
    while (this.count && seqLe(this.end[this.head], ack)) {
      this.head = (this.head + 1) & mask;
      this.count--;
    }
    return sentAt;
  }

  private grow(): void {
    const n = this.start.length;
    const copy = (a: Float64Array) => {
      const b = new Float64Array(n * 2);
      for (let k = 0; k < this.count; k++) b[k] = a[(this.head + k) & (n - 1)];
      return b;
    };
    this.start = copy(this.start);
    this.end = copy(this.end);
    this.at = copy(this.at);
    this.head = 0;
  }
}
