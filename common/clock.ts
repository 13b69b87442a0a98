/**
 * Time as an injected dependency: protocol machines (ARP ageing, bridge FDB
 * ageing, reassembly, impairment delays) take a Clock so tests can drive them
 * with a manual clock instead of real waits.
 */
export interface Timer {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds, monotonic. */
  now(): number;
  setTimeout(fn: () => void, ms: number): Timer;
  /**
   * Runs `fn` once the I/O the process has in hand is processed (setImmediate:
   * after the event loop's poll phase), never inside the current callback: the
   * data path's batch boundary, as the end of a NAPI poll is the kernel's. A
   * clock without real I/O (a manual clock) has none.
   */
  afterIo?(fn: () => void): void;
}

/**
 * The monotonic clock, for protocol machines and the data path: performance.now()
 * (never jumps with the wall clock) and real timers that are unref'd, so they
 * never keep a process alive.
 */
export const monotonicClock: Clock = {
  now: () => performance.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms);
    t.unref();
    return { cancel: () => clearTimeout(t) };
  },
  afterIo(fn) {
    setImmediate(fn);
  },
};

/**
 * The wall clock, for what stamps dates (the apiserver's timestamps) and waits a
 * process may legitimately stay up for (an informer's reconnect backoff):
 * Date.now() in epoch milliseconds and ref'd timers.
 */
export const wallClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms);
    return { cancel: () => clearTimeout(t) };
  },
};

/** Where a manual wall clock starts in tests: a fixed date, so stamped objects replay exactly. */
export const MANUAL_WALL_START_MS = Date.UTC(2026, 10, 25, 11, 30, 0);

/** A clock that only moves when told to; timers fire in due order during `advance`. */
export class ManualClock implements Clock {
  private t: number;
  private seq = 0;
  private timers: { at: number; seq: number; fn: () => void; live: boolean }[] = [];

  /** `startMs`: where time begins (0, or an epoch time for clocks that stamp dates). */
  constructor(startMs = 0) {
    this.t = startMs;
  }

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): Timer {
    const timer = { at: this.t + Math.max(0, ms), seq: this.seq++, fn, live: true };
    this.timers.push(timer);
    return { cancel: () => void (timer.live = false) };
  }

  /** Moves time forward by `ms`, firing every timer that falls due on the way. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      this.timers = this.timers.filter((x) => x.live);
      this.timers.sort((a, b) => a.at - b.at || a.seq - b.seq);
      const next = this.timers[0];
      if (!next || next.at > end) break;
      this.t = next.at;
      next.live = false;
      next.fn();
    }
    this.t = end;
  }
}

/**
 * A timer for housekeeping that must not hold a process up (an in-process
 * controller's periodic work: an apiserver or a test that is done must be able
 * to exit). On the wall clock it is unref'd; a manual clock's timers are driven
 * by the test anyway.
 */
export function backgroundTimer(clock: Clock, fn: () => void, ms: number): Timer {
  if (clock !== wallClock) return clock.setTimeout(fn, ms);
  const t = setTimeout(fn, ms);
  t.unref();
  return { cancel: () => clearTimeout(t) };
}
