/**
 * IPVS schedulers with the Linux kernel's semantics (net/netfilter/ipvs/
 * ip_vs_{rr,wrr,lc,wlc,sh,dh,sed,nq}.c). Each works on the virtual server's
 * destination list in insertion order; a destination with weight 0 is
 * "quiesced" (no new connections); connection overhead is the kernel's
 * `(activeconns << 8) + inactconns` for lc/wlc and `activeconns + 1` for
 * sed/nq. sh and dh use 256-bucket tables built like ip_vs_sh_reassign /
 * ip_vs_dh_reassign, hashed with the kernel's functions.
 */
import type { IpvsSchedulerName } from '../types.ts';

/** A real server (IPVS destination). */
export interface RealServer {
  ip: string;
  port: number;
  /** `ip:port`. */
  key: string;
  weight: number;
  activeConns: number;
  inactConns: number;
  /** Removed from the endpoints but kept (weight 0) until its connections drain, as kube-proxy's graceful termination does. */
  terminating: boolean;
}

/** What a scheduler sees of the packet. */
export interface ScheduleInput {
  /** Source address as an unsigned 32-bit number. */
  saddr: number;
  /** Destination address (the virtual server's address). */
  daddr: number;
}

/** Result: the chosen destination and why. */
export interface ScheduleResult {
  dest: RealServer | null;
  reason: string;
}

/** A scheduler instance bound to one virtual server. */
export interface Scheduler {
  readonly name: IpvsSchedulerName;
  /** The destination list or a weight changed (ip_vs_*_update_svc / dest_changed). */
  changed(dests: readonly RealServer[]): void;
  schedule(dests: readonly RealServer[], input: ScheduleInput): ScheduleResult;
}

const available = (d: RealServer): boolean => d.weight > 0;

/** ip_vs_dest_conn_overhead. */
export function connOverhead(d: RealServer): number {
  return d.activeConns * 256 + d.inactConns;
}

/** Round robin: the next destination after the last one chosen, skipping weight 0. */
class RoundRobin implements Scheduler {
  readonly name = 'rr' as const;
  private last: string | undefined;

  changed(dests: readonly RealServer[]): void {
    // ip_vs_rr_del_dest moves the pointer back; a vanished pointer restarts from the head here.
    if (this.last !== undefined && !dests.some((d) => d.key === this.last)) this.last = undefined;
  }

  schedule(dests: readonly RealServer[]): ScheduleResult {
    const n = dests.length;
    const start = this.last === undefined ? -1 : dests.findIndex((d) => d.key === this.last);
    for (let k = 1; k <= n; k++) {
      const d = dests[(start + k + n) % n];
      if (available(d)) {
        this.last = d.key;
        return { dest: d, reason: `rr: next after ${start < 0 ? 'the list head' : dests[start].key}` };
      }
    }
    return { dest: null, reason: 'rr: no destination with weight > 0' };
  }
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** Weighted round robin (interleaved, by current weight stepping down by the weights' gcd). */
class WeightedRoundRobin implements Scheduler {
  readonly name = 'wrr' as const;
  /** Index of the last chosen destination; -1 = the list head. */
  private cl = -1;
  private cw = 0;
  private mw = 0;
  private di = 1;

  changed(dests: readonly RealServer[]): void {
    this.cl = -1;
    const weights = dests.map((d) => d.weight).filter((w) => w > 0);
    this.di = weights.length ? weights.reduce(gcd) : 1;
    const max = dests.reduce((m, d) => Math.max(m, d.weight), 0);
    this.mw = max - (this.di - 1);
    if (this.cw > this.mw || this.cw === 0) this.cw = this.mw;
    else if (this.di > 1) this.cw = Math.floor(this.cw / this.di) * this.di + 1;
  }

  schedule(dests: readonly RealServer[]): ScheduleResult {
    const n = dests.length;
    if (this.mw <= 0 || n === 0) return { dest: null, reason: 'wrr: no destination with weight > 0' };
    // Two full passes over all current-weight levels are enough to find any dest with weight >= 1.
    for (let guard = 0; guard < n * (this.mw + 2) + 2; guard++) {
      this.cl++;
      if (this.cl >= n) {
        this.cl = -1;
        this.cw -= this.di;
        if (this.cw <= 0) this.cw = this.mw;
        continue;
      }
      const d = dests[this.cl];
      if (d.weight >= this.cw && d.weight > 0) return { dest: d, reason: `wrr: weight ${d.weight} >= current weight ${this.cw}` };
    }
    return { dest: null, reason: 'wrr: no destination available' };
  }
}

/** Least connections: smallest (active << 8) + inactive among weight > 0. */
class LeastConnection implements Scheduler {
  readonly name = 'lc' as const;
  changed(): void {}
  schedule(dests: readonly RealServer[]): ScheduleResult {
    let least: RealServer | null = null;
    let loh = 0;
    for (const d of dests) {
      if (!available(d)) continue;
      const doh = connOverhead(d);
      if (!least || doh < loh) {
        least = d;
        loh = doh;
      }
    }
    return least
      ? { dest: least, reason: `lc: overhead ${loh} (active ${least.activeConns} * 256 + inactive ${least.inactConns}) is the least` }
      : { dest: null, reason: 'lc: no destination with weight > 0' };
  }
}

/** wlc / sed: minimal overhead / weight, compared as cross products like the kernel. */
class WeightedLeast implements Scheduler {
  constructor(readonly name: 'wlc' | 'sed') {}
  changed(): void {}
  private overhead(d: RealServer): number {
    return this.name === 'wlc' ? connOverhead(d) : d.activeConns + 1;
  }
  schedule(dests: readonly RealServer[]): ScheduleResult {
    const first = dests.findIndex(available);
    if (first < 0) return { dest: null, reason: `${this.name}: no destination with weight > 0` };
    let least = dests[first];
    let loh = this.overhead(least);
    for (let i = first + 1; i < dests.length; i++) {
      const d = dests[i];
      const doh = this.overhead(d);
      if (loh * d.weight > doh * least.weight) {
        least = d;
        loh = doh;
      }
    }
    return { dest: least, reason: `${this.name}: overhead ${loh} / weight ${least.weight} is the least` };
  }
}

/** Never queue: an idle destination if any, else sed. */
class NeverQueue implements Scheduler {
  readonly name = 'nq' as const;
  changed(): void {}
  schedule(dests: readonly RealServer[]): ScheduleResult {
    let least: RealServer | null = null;
    let loh = 0;
    for (const d of dests) {
      if (!available(d)) continue;
      const doh = d.activeConns + 1;
      if (d.activeConns === 0) return { dest: d, reason: 'nq: idle destination (no active connection)' };
      if (!least || loh * d.weight > doh * least.weight) {
        least = d;
        loh = doh;
      }
    }
    return least ? { dest: least, reason: `nq: no idle destination; (active + 1) / weight = ${loh}/${least.weight} is the least` } : { dest: null, reason: 'nq: no destination with weight > 0' };
  }
}

const TAB_BITS = 8;
const TAB_SIZE = 1 << TAB_BITS;

/** The kernel's hash_32(val, bits): (val * GOLDEN_RATIO_32) >> (32 - bits). */
export function hash32(val: number, bits: number): number {
  return Math.imul(val >>> 0, 0x61c88647) >>> (32 - bits);
}

/** Source hashing: 256 buckets filled with each destination `weight` times in turn; hashed on the client address. */
class SourceHash implements Scheduler {
  readonly name = 'sh' as const;
  private buckets: (RealServer | null)[] = [];

  changed(dests: readonly RealServer[]): void {
    this.buckets = [];
    let p = 0;
    let count = 0;
    for (let i = 0; i < TAB_SIZE; i++) {
      if (dests.length === 0) {
        this.buckets.push(null);
        continue;
      }
      const d = dests[p % dests.length];
      this.buckets.push(d);
      if (++count >= d.weight) {
        p++;
        count = 0;
      }
    }
  }

  schedule(dests: readonly RealServer[], input: ScheduleInput): ScheduleResult {
    if (this.buckets.length !== TAB_SIZE) this.changed(dests);
    const b = hash32(input.saddr, TAB_BITS) % TAB_SIZE;
    const d = this.buckets[b];
    if (!d || !available(d)) return { dest: null, reason: `sh: bucket ${b} has no available destination` };
    return { dest: d, reason: `sh: source address hashes to bucket ${b}` };
  }
}

/** Destination hashing: 256 buckets round-robin over destinations; hashed on the destination address. */
class DestinationHash implements Scheduler {
  readonly name = 'dh' as const;
  private buckets: (RealServer | null)[] = [];

  changed(dests: readonly RealServer[]): void {
    this.buckets = [];
    for (let i = 0; i < TAB_SIZE; i++) this.buckets.push(dests.length ? dests[i % dests.length] : null);
  }

  schedule(dests: readonly RealServer[], input: ScheduleInput): ScheduleResult {
    if (this.buckets.length !== TAB_SIZE) this.changed(dests);
    // ip_vs_dh_hashkey: (ntohl(addr) * 2654435761UL) & IP_VS_DH_TAB_MASK.
    const b = Math.imul(input.daddr >>> 0, 0x9e3779b1) & (TAB_SIZE - 1);
    const d = this.buckets[b];
    if (!d || !available(d)) return { dest: null, reason: `dh: bucket ${b} has no available destination` };
    return { dest: d, reason: `dh: destination address hashes to bucket ${b}` };
  }
}

/** A fresh scheduler of the given kind. */
export function makeScheduler(name: IpvsSchedulerName): Scheduler {
  switch (name) {
    case 'rr':
      return new RoundRobin();
    case 'wrr':
      return new WeightedRoundRobin();
    case 'lc':
      return new LeastConnection();
    case 'wlc':
      return new WeightedLeast('wlc');
    case 'sed':
      return new WeightedLeast('sed');
    case 'nq':
      return new NeverQueue();
    case 'sh':
      return new SourceHash();
    case 'dh':
      return new DestinationHash();
  }
}
