/**
 * Link impairments on the underlay, per peer node, seeded: the fault injector
 * that wraps a link (as smoltcp's FaultInjector and Linux netem do), invisible
 * to the protocols above it. Decisions come from a SeededRng, so the same seed
 * and the same traffic give the same drops, duplicates and delays.
 *
 * Semantics follow netem where it has them:
 * - loss: each datagram is dropped with probability `loss`;
 * - delay ± jitter: uniform in [delay - jitter, delay + jitter], never negative;
 * - duplicate: a second copy is sent with probability `duplicate`;
 * - reorder: with probability `reorder` a datagram skips the queue. With a delay
 *   it goes at once while the rest wait (netem); without one it is held back and
 *   sent right after the next datagram (or after `holdMs`), so it arrives late;
 * - corrupt: one random bit of the datagram is flipped with probability `corrupt`;
 * - blackhole: everything is dropped.
 */
import type { Clock, Timer } from '../common/clock.ts';
import type { SeededRng } from '../common/rng.ts';

/** Impairment settings; probabilities are fractions in [0, 1], times in ms. */
export interface ImpairmentSpec {
  loss?: number;
  delayMs?: number;
  jitterMs?: number;
  duplicate?: number;
  reorder?: number;
  corrupt?: number;
  blackhole?: boolean;
}

export interface ImpairmentStats {
  passed: number;
  lost: number;
  blackholed: number;
  duplicated: number;
  reordered: number;
  corrupted: number;
  delayed: number;
}

/** Checks ranges; returns a message naming the bad field, or null. */
export function validateImpairment(spec: ImpairmentSpec): string | null {
  for (const k of ['loss', 'duplicate', 'reorder', 'corrupt'] as const) {
    const v = spec[k];
    if (v !== undefined && !(Number.isFinite(v) && v >= 0 && v <= 1)) return `${k}: must be between 0% and 100%, got ${v}`;
  }
  for (const k of ['delayMs', 'jitterMs'] as const) {
    const v = spec[k];
    if (v !== undefined && !(Number.isFinite(v) && v >= 0 && v <= 60_000)) return `${k}: must be between 0 and 60000 ms, got ${v}`;
  }
  return null;
}

export class Impairment {
  readonly stats: ImpairmentStats = { passed: 0, lost: 0, blackholed: 0, duplicated: 0, reordered: 0, corrupted: 0, delayed: 0 };
  private held: { buf: Buffer; timer: Timer } | null = null;

  constructor(
    readonly spec: ImpairmentSpec,
    private readonly rng: SeededRng,
    private readonly clock: Clock,
    private readonly holdMs = 20,
  ) {}

  /**
   * Passes one datagram through the impairments to `deliver`; returns what
   * was done to it (for traces): 'lost', 'blackholed', or the effects applied.
   */
  apply(buf: Buffer, deliver: (buf: Buffer) => void): string {
    const s = this.spec;
    if (s.blackhole) {
      this.stats.blackholed++;
      return 'blackholed';
    }
    if (this.rng.chance(s.loss ?? 0)) {
      this.stats.lost++;
      return 'lost';
    }
    const effects: string[] = [];
    let out = buf;
    if (this.rng.chance(s.corrupt ?? 0)) {
      out = Buffer.from(buf);
      const bit = this.rng.int(0, out.length * 8 - 1);
      out[bit >> 3] ^= 1 << (bit & 7);
      this.stats.corrupted++;
      effects.push(`corrupted (bit ${bit})`);
    }
    const copies = this.rng.chance(s.duplicate ?? 0) ? 2 : 1;
    if (copies === 2) {
      this.stats.duplicated++;
      effects.push('duplicated');
    }
    const reorder = this.rng.chance(s.reorder ?? 0);
    if (reorder) {
      this.stats.reordered++;
      effects.push('reordered');
    }
    for (let i = 0; i < copies; i++) {
      const delay = reorder ? 0 : this.delay();
      if (reorder && !(s.delayMs ?? 0)) {
        this.hold(out, deliver);
      } else if (delay > 0) {
        this.stats.delayed++;
        if (i === 0) effects.push(`delayed ${delay.toFixed(1)} ms`);
        this.clock.setTimeout(() => deliver(out), delay);
      } else {
        this.stats.passed++;
        deliver(out);
        this.release(deliver);
      }
    }
    return effects.length ? effects.join(', ') : 'passed';
  }

  private delay(): number {
    const d = this.spec.delayMs ?? 0;
    const j = this.spec.jitterMs ?? 0;
    if (!d && !j) return 0;
    return Math.max(0, d + (j ? (this.rng.next() * 2 - 1) * j : 0));
  }

  private hold(buf: Buffer, deliver: (b: Buffer) => void): void {
    this.release(deliver);
    const timer = this.clock.setTimeout(() => this.release(deliver), this.holdMs);
    this.held = { buf, timer };
  }

  private release(deliver: (b: Buffer) => void): void {
    const h = this.held;
    if (!h) return;
    this.held = null;
    h.timer.cancel();
    this.stats.passed++;
    deliver(h.buf);
  }
}
