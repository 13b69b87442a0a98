/**
 * Seeded randomness. Every random choice in podlab (impairments, load balancing,
 * MAC addresses, ping ids, scenarios) draws from one of these, so a run replays
 * exactly from its seed.
 */
import { createHash } from 'node:crypto';
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';
import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64';
import { uniformInt } from 'pure-rand/distribution/uniformInt';

type Generator = ReturnType<typeof xoroshiro128plus>;

/** A deterministic random stream; `fork(label)` derives an independent stream. */
export class SeededRng {
  private readonly gen: Generator;

  constructor(readonly seed: number) {
    this.gen = xoroshiro128plus(seed | 0);
  }

  /** A float in [0, 1). */
  next(): number {
    return uniformFloat64(this.gen);
  }

  /** An integer in [min, max], both included. */
  int(min: number, max: number): number {
    return uniformInt(this.gen, min, max);
  }

  /** True with probability p (0..1). */
  chance(p: number): boolean {
    return p > 0 && this.next() < p;
  }

  /**
   * An independent stream named by `label`: the same (seed, label) always gives
   * the same stream, whatever else was drawn before. This keeps one peer's
   * impairment decisions stable when another peer's traffic changes.
   */
  fork(label: string): SeededRng {
    return new SeededRng(seedFrom(this.seed, label));
  }
}

/** A 32-bit seed derived from a parent seed and a label. */
export function seedFrom(seed: number, label: string): number {
  return createHash('sha256').update(`${seed}\0${label}`).digest().readInt32BE(0);
}

/**
 * A locally administered unicast MAC derived from (seed, label), as stable as a
 * Flannel VtepMAC that survives restarts, yet different per node and per pod.
 */
export function deriveMac(seed: number, label: string): string {
  const h = createHash('sha256').update(`mac\0${seed}\0${label}`).digest();
  h[0] = (h[0] & 0xfe) | 0x02; // unicast, locally administered
  return Array.from(h.subarray(0, 6), (b) => b.toString(16).padStart(2, '0')).join(':');
}
