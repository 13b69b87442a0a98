/**
 * Injected time source. The store stamps creationTimestamp with it and the
 * informer schedules its reconnect backoff with it, so tests can drive both
 * deterministically instead of sleeping.
 *
 * The shape matches common/clock.ts (`now()` + `setTimeout()` returning a
 * cancellable timer), so a common ManualClock can be passed in too. Here
 * `now()` is wall-clock epoch milliseconds because it feeds timestamps.
 */

/** A scheduled one-shot timer. */
export interface Timer {
  cancel(): void;
}

/** Wall-clock time plus one-shot timers. */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /** Runs `fn` after `ms`. */
  setTimeout(fn: () => void, ms: number): Timer;
}

/**
 * The real clock. Its timers stay ref'd on purpose: an informer waiting to
 * reconnect is a legitimate reason for a process (e.g. a CLI watch) to stay up.
 */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms);
    return { cancel: () => clearTimeout(t) };
  },
};

/**
 * A manually advanced clock for tests: `advance(ms)` fires due timers in
 * order. Time never moves by itself.
 */
export class ManualClock implements Clock {
  private current: number;
  private seq = 0;
  private timers: { at: number; seq: number; fn: () => void; live: boolean }[] = [];

  constructor(startMs = Date.UTC(2026, 10, 25, 11, 30, 0)) {
    this.current = startMs;
  }

  now(): number {
    return this.current;
  }

  setTimeout(fn: () => void, ms: number): Timer {
    const timer = { at: this.current + Math.max(0, ms), seq: this.seq++, fn, live: true };
    this.timers.push(timer);
    return { cancel: () => void (timer.live = false) };
  }

  /** Moves time forward by `ms`, firing every timer that falls due on the way. */
  advance(ms: number): void {
    const end = this.current + ms;
    for (;;) {
      this.timers = this.timers.filter((x) => x.live).sort((a, b) => a.at - b.at || a.seq - b.seq);
      const next = this.timers[0];
      if (!next || next.at > end) break;
      this.current = next.at;
      next.live = false;
      next.fn();
    }
    this.current = end;
  }
}

/** Formats epoch milliseconds as k8s does: RFC 3339, UTC, no fractional seconds. */
export function formatTimestamp(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}
