/**
 * One log line per source per interval, with a count: what an outsider can
 * trigger at will (connections from unknown addresses, filtered routes) must
 * not grow the log without bound. The first event of a source is written at
 * once; later ones within the interval are counted, and when the interval
 * ends one line reports how many there were (then the source's window starts
 * again, or is forgotten when it was quiet). Time comes from a Clock, so tests
 * drive it with a ManualClock.
 */
import type { Clock, Timer } from './clock.ts';

export interface ThrottledLine {
  /** The source (e.g. the remote address). */
  key: string;
  /** Events this line stands for: 1 for the first, then the count of the interval. */
  count: number;
  /** The fields of the latest event. */
  fields: Record<string, unknown>;
  /** True for the interval's summary line. */
  repeated: boolean;
}

interface Window {
  suppressed: number;
  last: Record<string, unknown>;
  timer: Timer;
}

export class LogThrottle {
  private readonly windows = new Map<string, Window>();

  constructor(
    private readonly o: {
      clock: Clock;
      /** Default 60 s. */
      intervalMs?: number;
      /** At most this many sources are tracked (a spoofing flood of sources is itself bounded); default 1024. */
      maxSources?: number;
      write: (line: ThrottledLine) => void;
    },
  ) {}

  /** Notes one event of `key`; writes a line now if it is the first of its window. */
  note(key: string, fields: Record<string, unknown> = {}): void {
    const w = this.windows.get(key);
    if (w) {
      w.suppressed++;
      w.last = fields;
      return;
    }
    if (this.windows.size >= (this.o.maxSources ?? 1024)) {
      // Too many sources: count them under one shared key rather than track each.
      if (key !== '*') this.note('*', { ...fields, source: key });
      return;
    }
    this.open(key, fields);
    this.o.write({ key, count: 1, fields, repeated: false });
  }

  /** Sources currently tracked. */
  get size(): number {
    return this.windows.size;
  }

  /** Writes pending counts and forgets every window (on stop). */
  flush(): void {
    for (const [key, w] of this.windows) {
      w.timer.cancel();
      if (w.suppressed) this.o.write({ key, count: w.suppressed, fields: w.last, repeated: true });
    }
    this.windows.clear();
  }

  private open(key: string, fields: Record<string, unknown>): void {
    const w: Window = { suppressed: 0, last: fields, timer: { cancel() {} } };
    w.timer = this.o.clock.setTimeout(() => this.close(key), this.o.intervalMs ?? 60_000);
    this.windows.set(key, w);
  }

  private close(key: string): void {
    const w = this.windows.get(key);
    if (!w) return;
    this.windows.delete(key);
    if (!w.suppressed) return;
    this.o.write({ key, count: w.suppressed, fields: w.last, repeated: true });
    // Still noisy: keep counting in a new window, so the next line comes an interval later.
    this.open(key, w.last);
  }
}
