/**
 * The connections policy has let through on one node: what Calico's
 * `-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT` consults. Keyed by
 * the connection's two ends whichever way a packet goes, so a reply finds the
 * entry its connection's first packet made. Bounded: idle entries expire
 * (clock injected), and a full table forgets its least recently used entry.
 */
import type { Clock } from '../common/clock.ts';
import type { Tuple } from '../netstack/netfilter/conntrack.ts';

export interface FlowTableOptions {
  maxEntries?: number;
  tcpIdleMs?: number;
  udpIdleMs?: number;
  icmpIdleMs?: number;
}

/** The same key for both directions of a connection. */
export function flowKey(t: Tuple): string {
  const a = `${t.src}:${t.sport}`;
  const b = `${t.dst}:${t.dport}`;
  return a < b ? `${t.proto}|${a}|${b}` : `${t.proto}|${b}|${a}`;
}

export class FlowTable {
  /** Key → expiry; Map order is least recently used first. */
  private readonly flows = new Map<string, number>();
  private readonly o: Required<FlowTableOptions>;
  /** Entries forgotten to make room. */
  evicted = 0;

  constructor(
    private readonly clock: Clock,
    opts: FlowTableOptions = {},
  ) {
    this.o = { maxEntries: 65_536, tcpIdleMs: 600_000, udpIdleMs: 120_000, icmpIdleMs: 30_000, ...opts };
  }

  get size(): number {
    return this.flows.size;
  }

  /** True (and the entry refreshed) when the connection is known and not expired. */
  hit(t: Tuple): boolean {
    const k = flowKey(t);
    const exp = this.flows.get(k);
    if (exp === undefined) return false;
    this.flows.delete(k);
    const now = this.clock.now();
    if (exp <= now) return false;
    this.flows.set(k, now + this.idle(t));
    return true;
  }

  add(t: Tuple): void {
    const k = flowKey(t);
    this.flows.delete(k);
    while (this.flows.size >= this.o.maxEntries) {
      const oldest = this.flows.keys().next().value;
      if (oldest === undefined) break;
      this.flows.delete(oldest);
      this.evicted++;
    }
    this.flows.set(k, this.clock.now() + this.idle(t));
  }

  clear(): void {
    this.flows.clear();
  }

  private idle(t: Tuple): number {
    return t.proto === 'tcp' ? this.o.tcpIdleMs : t.proto === 'udp' ? this.o.udpIdleMs : this.o.icmpIdleMs;
  }
}
