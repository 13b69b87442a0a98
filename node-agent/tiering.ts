/**
 * V8's tier-up, made quicker once the agent is up. V8 optimizes a function after it has run some ticks' worth
 * of bytecode (3 ticks + 1 per 150 bytes of its size, a tick every 66 KB by default), so a function of the data
 * path that runs once per packet, as a ping's do, stays in the baseline tier for a thousand packets or more:
 * a cross-node ping's JS ran 5-10x slower than in a hot loop (bench/ping-hops.ts, bench/README.md). Set from
 * the command line the same flags would also tier up the start-up's code: 20-50 ms more CPU per agent to come up
 * at 8 KB ticks, 60-80 ms and ~1 MB RSS at 4 KB (6 nodes x 10 pods). Set once the agent is ready they cost the
 * start nothing; what runs after (packets, watch events, syncs) is optimized sooner. The price moves to the
 * first packets of a path, compiled while they pass: a fresh lab's first 200 pings had a higher mean RTT (rare
 * stalls of a few ms), the warm ones 17-30% less JS. PODLAB_AGENT_STEADY_V8_FLAGS overrides them (empty: none).
 * They wait for the cluster's start-up to settle around the node as well (tierUpOnceSettled).
 */
import type { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { v8 } from '../common/lazy-builtins.ts';

export const STEADY_V8_FLAGS = '--interrupt-budget=8192 --bytecode-size-allowance-per-tick=1000';

/** V8's own tick (Node 20's V8 11.3), where the steady flags leave it when they do not set one. */
const DEFAULT_INTERRUPT_BUDGET = 67_584;

/**
 * A tick 16 times V8's while the agent comes up. A start-up's code runs a few hundred times at most (a watch
 * event per Node, a plan per lease change), enough to get optimized at V8's tick and not enough to repay it: in a
 * 100-node up the agents' optimizing compiles (the peers' diff and plan, stream reads) were 9% of their CPU,
 * and 2% with this tick. PODLAB_AGENT_START_V8_FLAGS overrides it (empty: none).
 */
export const START_V8_FLAGS = `--interrupt-budget=${16 * DEFAULT_INTERRUPT_BUDGET}`;

let startFlagsSet = false;

/**
 * Built-ins every agent loads once it runs, by Node's own lazy requires: dgram's first bind loads `cluster` (and
 * through it `child_process`), its first lookup `dns`; `process.stdout` is made at its first use. A built-in
 * loaded after V8's flags change misses Node's code cache (its flag hash differs) and is compiled from source:
 * these three took 7.4-7.8 ms of CPU that way against 3.6-4.5 ms from the cache.
 */
const LOADED_ANYWAY = ['node:cluster', 'node:dns'];

/** Applies the start flags (once the agent's modules are loaded: a flag changed earlier has Node compile its built-ins from source). */
export function tierUpLater(flags = process.env.PODLAB_AGENT_START_V8_FLAGS ?? START_V8_FLAGS): void {
  if (!flags.trim()) return;
  const require = createRequire(import.meta.url);
  for (const m of LOADED_ANYWAY) require(m);
  void process.stdout;
  v8().setFlagsFromString(flags);
  startFlagsSet = true;
}

/**
 * Applies the flags to this process (every isolate in it: V8's flags are process-wide), after putting V8's tick
 * back where the start flags raised it (the only flag they set; other flags given in PODLAB_AGENT_START_V8_FLAGS stay).
 */
export function tierUpSooner(flags = process.env.PODLAB_AGENT_STEADY_V8_FLAGS ?? STEADY_V8_FLAGS): void {
  if (startFlagsSet) v8().setFlagsFromString(`--interrupt-budget=${DEFAULT_INTERRUPT_BUDGET}`);
  startFlagsSet = false;
  if (flags.trim()) v8().setFlagsFromString(flags);
}

/**
 * Tiers up (`tierUp`, by default tierUpSooner) once `nodes` (the agent's Node informer) has had no event for
 * `settleMs` (2 s), or after `maxMs` (60 s) whatever comes. An agent is ready long before a big lab is: at 100
 * nodes x 10 pods the first agents handle the other 99 nodes' registrations for half a minute after their own,
 * and with the flags already set V8 optimized that start-up storm's code (watch decoding, the peers' diff: one
 * function's optimizing compile took 340 ms of wall time on a crowded machine) on the two cores every agent was
 * starting on. Returns a function that cancels.
 */
export function tierUpOnceSettled(nodes: Pick<EventEmitter, 'on' | 'off'>, { settleMs = 2000, maxMs = 60_000, tierUp = (): void => tierUpSooner() } = {}): () => void {
  const events = ['add', 'update', 'delete'] as const;
  const stop = () => {
    clearTimeout(quiet);
    clearTimeout(cap);
    for (const e of events) nodes.off(e, bump);
  };
  const settled = () => {
    stop();
    tierUp();
  };
  const quiet = setTimeout(settled, settleMs).unref();
  const cap = setTimeout(settled, maxMs).unref();
  const bump = () => void quiet.refresh();
  for (const e of events) nodes.on(e, bump);
  return stop;
}
