/**
 * The garbage collector's pauses on the agent's own thread (the data
 * plane's), for `podlab node NODE memory`: what a big heap costs the packets.
 * Observed only from the first request on (an observer costs a little on
 * every collection), and reset by the caller so that a measurement covers
 * just its window.
 */
import { PerformanceObserver } from 'node:perf_hooks';

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
      this.observer = new PerformanceObserver((list) => {
        for (const e of list.getEntries()) {
          this.s.count++;
          this.s.totalMs += e.duration;
          if (e.duration > this.s.maxMs) this.s.maxMs = e.duration;
          if (e.duration >= 5) this.s.over5ms++;
        }
      });
      this.observer.observe({ entryTypes: ['gc'] });
    }
    const out = { ...this.s, totalMs: Math.round(this.s.totalMs * 10) / 10, maxMs: Math.round(this.s.maxMs * 10) / 10 };
    if (reset) this.s = { count: 0, totalMs: 0, maxMs: 0, over5ms: 0 };
    return out;
  }

  stop(): void {
    this.observer?.disconnect();
  }
}
