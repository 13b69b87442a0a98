/**
 * One namespace's flow generation: a number every table a forwarding decision
 * reads moves on change (routes, addresses, neighbours, a tunnel's FDB,
 * netfilter hooks and the rules behind them, conntrack, impairments). A flow
 * entry remembers the generation it was recorded at and is dead once the
 * number moved, so invalidating every cached flow is one increment, whatever
 * their number, and no table needs to know which flows read it.
 */

/** What moved, for `podlab node stats` and tests. */
export type FlowChange = 'route' | 'address' | 'device' | 'neighbour' | 'fdb' | 'hooks' | 'service' | 'conntrack' | 'policy' | 'impairment';

export class FlowGeneration {
  value = 0;
  /** Increments by cause since the namespace was made. */
  readonly changes = new Map<FlowChange, number>();

  bump(why: FlowChange): void {
    this.value++;
    this.changes.set(why, (this.changes.get(why) ?? 0) + 1);
  }
}
