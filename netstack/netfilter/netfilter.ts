/**
 * Netfilter as the kernel lays it out: five IPv4 hook points, each an ordered
 * chain of (priority, hook) pairs, plus the bridge's FORWARD hook
 * (br_netfilter), with connection tracking as a service of the namespace that
 * every hook may consult.
 *
 * ```text
 *  --> PREROUTING --> [routing] --> FORWARD --> POSTROUTING -->
 *                        |                          ^
 *                        v                          |
 *                      INPUT --> local         OUTPUT <-- local
 * ```
 *
 * Priorities are the kernel's (`NF_IP_PRI_*` in uapi/linux/netfilter_ipv4.h):
 * within one hook point lower runs first, so a NAT hook registered at
 * NF_IP_PRI_NAT_DST on PREROUTING rewrites the destination before a filter
 * hook at NF_IP_PRI_FILTER on FORWARD sees the packet, and NetworkPolicy or an
 * edge load balancer can slot in beside kube-proxy without touching it.
 *
 * Hooks see an `Ipv4Packet` view. A hook returns the packet (unchanged or
 * rewritten through the view's setters) or a view over a rewritten copy, or
 * null to drop it, naming the reason in `state.dropReason`. Received bytes may
 * be shared with other ports of a bridge: a hook edits in place only once
 * `state.owned` says the bytes are this packet's own.
 */
import type { Ipv4Packet } from '../../packet/ipv4-packet.ts';
import { Conntrack, type CtEntry } from './conntrack.ts';
import type { FlowKeep } from '../flow/flow-cache.ts';
import type { FlowGeneration } from '../flow/generation.ts';

/** The IPv4 hook points (NF_INET_*). */
export type NfHookPoint = 'prerouting' | 'input' | 'forward' | 'output' | 'postrouting';

/** Hook priorities of the IPv4 family (enum nf_ip_hook_priorities). */
export const NF_IP_PRI = {
  FIRST: -2147483648,
  RAW_BEFORE_DEFRAG: -450,
  CONNTRACK_DEFRAG: -400,
  RAW: -300,
  SELINUX_FIRST: -225,
  CONNTRACK: -200,
  MANGLE: -150,
  NAT_DST: -100,
  FILTER: 0,
  SECURITY: 50,
  NAT_SRC: 100,
  SELINUX_LAST: 225,
  CONNTRACK_HELPER: 300,
  CONNTRACK_CONFIRM: 2147483647,
  LAST: 2147483647,
} as const;

/** Hook priorities of the bridge family (enum nf_br_hook_priorities). */
export const NF_BR_PRI = {
  FIRST: -2147483648,
  NAT_DST_BRIDGED: -300,
  FILTER_BRIDGED: -200,
  BRNF: 0,
  NAT_DST_OTHER: 100,
  FILTER_OTHER: 200,
  NAT_SRC: 300,
  LAST: 2147483647,
} as const;

/**
 * What travels with one packet through the hooks of one namespace (the
 * kernel keeps it in the skb): the devices, the connection the first
 * conntrack-aware hook found or created, and why a hook dropped it.
 */
export interface NfState {
  /** The hook point now running. */
  hook: NfHookPoint | 'bridge-forward';
  /** Receiving device (PREROUTING, INPUT, FORWARD, bridge FORWARD). */
  inDev?: string;
  /** Sending device (FORWARD, POSTROUTING, and OUTPUT once routed). */
  outDev?: string;
  /** The packet's connection and its direction (skb->_nfct); absent while untracked. */
  ct?: { e: CtEntry; dir: 'orig' | 'reply' };
  /** True once a hook made the bytes private (a copy): later hooks may edit in place. */
  owned?: boolean;
  /** Set by the hook that returned null. */
  dropReason?: string;
  /**
   * Set while the packet may become a flow entry (../flow/flow-cache.ts): a
   * hook whose pass needs upkeep on every later packet of the flow adds it here.
   */
  flowKeep?: FlowKeep[];
  /** Set when a hook without `flowSafe` ran: the packet's flow stays on the slow path. */
  noFlow?: boolean;
  /**
   * Set by a hook that kept the packet (NF_QUEUE / NF_STOLEN) and returned
   * null: not a drop. The hook's owner hands it back later to the stack's
   * `reinject`, which runs the rest of the chain and goes on from there.
   */
  stolen?: boolean;
}

/** One registered hook: `nf_hook_ops`. */
export interface NfHookOps {
  /** Who registered it, for listings and traces (`kube-proxy nat`, `network-policy`). */
  name: string;
  priority: number;
  /** Returns the packet to pass on (itself or a rewritten copy), or null to drop it. */
  hook(pkt: Ipv4Packet, state: NfState): Ipv4Packet | null;
  /**
   * A cheap test that the hook would pass every packet unchanged right now
   * (NAT with no connection tracked): when every hook of a chain is idle the
   * stack skips the chain without building a view of the packet.
   */
  idle?(): boolean;
  /**
   * The hook's promise to the flow cache: a packet it passes unchanged,
   * leaving no connection in the state, is a decision every later packet of
   * the same flow would get too, as long as the namespace's flow generation
   * does not move (the hook's owner bumps it whenever its rules change), with
   * what it added to `flowKeep` done for each. A hook without it keeps the
   * flows it sees on the slow path.
   */
  flowSafe?: boolean;
}

/** The ordered hooks of one hook point. */
export class HookChain {
  private ops: NfHookOps[] = [];

  constructor(
    readonly point: NfHookPoint | 'bridge-forward',
    /** Moved when hooks come and go: a new hook may judge cached flows differently. */
    private readonly generation?: FlowGeneration,
  ) {}

  /** Number of hooks registered. */
  get size(): number {
    return this.ops.length;
  }

  /** Whether running the chain could change or drop anything now: false with no hooks, or only idle ones (the fast path). */
  get active(): boolean {
    const ops = this.ops;
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i];
      if (op.idle === undefined || !op.idle()) return true;
    }
    return false;
  }

  /**
   * Adds a hook in priority order; equal priorities run in registration order,
   * as nf_register_net_hook inserts after existing entries of the same
   * priority. Returns the unregister function.
   */
  register(ops: NfHookOps): () => void {
    const next = this.ops.slice();
    let i = next.length;
    while (i > 0 && next[i - 1].priority > ops.priority) i--;
    next.splice(i, 0, ops);
    // Copy-on-write: a hook unregistering itself mid-run does not disturb the running loop.
    this.ops = next;
    this.generation?.bump('hooks');
    return () => {
      this.ops = this.ops.filter((o) => o !== ops);
      this.generation?.bump('hooks');
    };
  }

  /** Names and priorities in run order (`nft list hooks`). */
  list(): { name: string; priority: number }[] {
    return this.ops.map((o) => ({ name: o.name, priority: o.priority }));
  }

  /** Runs every hook in order; null as soon as one drops. */
  run(pkt: Ipv4Packet, state: NfState): Ipv4Packet | null {
    state.hook = this.point;
    const ops = this.ops;
    let p: Ipv4Packet | null = pkt;
    for (let i = 0; i < ops.length; i++) {
      if (ops[i].flowSafe !== true) state.noFlow = true;
      p = ops[i].hook(p, state);
      if (p === null) {
        if (!state.stolen) state.dropReason ??= `netfilter-${ops[i].name}`;
        return null;
      }
    }
    return p;
  }

  /**
   * Runs the hooks after `after` on a packet that hook kept and now hands
   * back (nf_reinject); null when one drops or keeps it, or when `after` is
   * no longer registered (the kernel drops the packets queued by a hook that goes).
   */
  runAfter(after: NfHookOps, pkt: Ipv4Packet, state: NfState): Ipv4Packet | null {
    state.hook = this.point;
    state.stolen = false;
    const ops = this.ops;
    const from = ops.indexOf(after);
    if (from < 0) {
      state.dropReason = `netfilter-${after.name}-gone`;
      return null;
    }
    let p: Ipv4Packet | null = pkt;
    for (let i = from + 1; i < ops.length; i++) {
      if (ops[i].flowSafe !== true) state.noFlow = true;
      p = ops[i].hook(p, state);
      if (p === null) {
        if (!state.stolen) state.dropReason ??= `netfilter-${ops[i].name}`;
        return null;
      }
    }
    return p;
  }
}

/** One network namespace's netfilter: the hook chains and the connection table. */
export class Netfilter {
  readonly prerouting: HookChain;
  readonly input: HookChain;
  readonly forward: HookChain;
  readonly output: HookChain;
  readonly postrouting: HookChain;
  /** br_netfilter: IPv4 frames switched between two ports of a bridge in this namespace. */
  readonly bridgeForward: HookChain;

  constructor(
    readonly conntrack: Conntrack,
    /** The namespace's flow generation: hooks' owners bump it when their rules change (absent: nothing is cached). */
    readonly generation?: FlowGeneration,
  ) {
    this.prerouting = new HookChain('prerouting', generation);
    this.input = new HookChain('input', generation);
    this.forward = new HookChain('forward', generation);
    this.output = new HookChain('output', generation);
    this.postrouting = new HookChain('postrouting', generation);
    this.bridgeForward = new HookChain('bridge-forward', generation);
  }

  /** A hook's owner changed its rules: cached flows are judged afresh. */
  changed(why: 'service' | 'policy'): void {
    this.generation?.bump(why);
  }

  /** Registers a hook at a point; returns the unregister function. */
  register(point: NfHookPoint | 'bridge-forward', ops: NfHookOps): () => void {
    return this.chain(point).register(ops);
  }

  chain(point: NfHookPoint | 'bridge-forward'): HookChain {
    switch (point) {
      case 'prerouting':
        return this.prerouting;
      case 'input':
        return this.input;
      case 'forward':
        return this.forward;
      case 'output':
        return this.output;
      case 'postrouting':
        return this.postrouting;
      case 'bridge-forward':
        return this.bridgeForward;
    }
  }
}

/** A fresh per-packet state. */
export function nfState(hook: NfHookPoint | 'bridge-forward', inDev?: string): NfState {
  // Every field present from the start: one object shape for every packet.
  return { hook, inDev, outDev: undefined, ct: undefined, owned: false, dropReason: undefined, flowKeep: undefined, noFlow: false, stolen: false };
}
