/**
 * Injected time source. The store stamps creationTimestamp with it and the
 * informer schedules its reconnect backoff with it, so tests can drive both
 * deterministically instead of sleeping.
 *
 * The Clock type is common/clock.ts's; here `now()` is wall-clock epoch
 * milliseconds because it feeds timestamps, and the manual clock starts at a
 * fixed date.
 */

import { ManualClock as CommonManualClock, type Clock, type Timer } from '../common/clock.ts';

export type { Clock, Timer };

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

/** A manually advanced clock for tests, starting at a fixed wall-clock time (it stamps dates). */
export class ManualClock extends CommonManualClock {
  constructor(startMs = Date.UTC(2026, 10, 25, 11, 30, 0)) {
    super(startMs);
  }
}

/** Formats epoch milliseconds as k8s does: RFC 3339, UTC, no fractional seconds. */
export function formatTimestamp(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * A timer for an in-process controller's housekeeping: on the real clock it
 * does not keep the process alive (an apiserver or a test that is done must
 * be able to exit); a manual clock's timers are driven by the test anyway.
 */
export function backgroundTimer(clock: Clock, fn: () => void, ms: number): Timer {
  if (clock !== systemClock) return clock.setTimeout(fn, ms);
  const t = setTimeout(fn, ms);
  t.unref();
  return { cancel: () => clearTimeout(t) };
}
