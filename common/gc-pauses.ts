/**
 * The garbage collector's pauses on the calling thread (an agent's: the data
 * plane's), for `podlab node NODE memory` and the sync-stall bench: what a big
 * heap costs the packets. Observed only from the first `read` on (an observer
 * costs a little on every collection); `reset` starts a new window, so that a
 * measurement covers just its own.
 */
import { PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';

export interface GcPauseStats {
  /** Collections seen since the last reset. */
  count: number;
  /** Their total and longest pause (ms). */
  totalMs: number;
  maxMs: number;
  /** Pauses of 5 ms or more (the data plane's budget). */
  over5ms: number;
}

export class GcPauses {
  private observer?: PerformanceObserver;
  private s: GcPauseStats = { count: 0, totalMs: 0, maxMs: 0, over5ms: 0 };

  /** The pauses so far; starts observing at the first call; `reset` starts a new window. */
  read(reset = false): GcPauseStats {
    if (!this.observer) {
      this.observer = new PerformanceObserver((list) => this.count(list.getEntries()));
      this.observer.observe({ entryTypes: ['gc'] });
    }
    // Entries queued but not delivered yet belong to the window too.
    if (this.observer) this.count(this.observer.takeRecords());
    const out = { ...this.s, totalMs: Math.round(this.s.totalMs * 10) / 10, maxMs: Math.round(this.s.maxMs * 10) / 10 };
    if (reset) this.s = { count: 0, totalMs: 0, maxMs: 0, over5ms: 0 };
    return out;
  }

  private count(entries: readonly PerformanceEntry[]): void {
    for (const e of entries) {
      this.s.count++;
      this.s.totalMs += e.duration;
      if (e.duration > this.s.maxMs) this.s.maxMs = e.duration;
      if (e.duration >= 5) this.s.over5ms++;
    }
  }

  stop(): void {
    this.observer?.disconnect();
  }
}
