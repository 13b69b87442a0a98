/**
 * MetalLB's speaker in layer-2 mode, one per node agent: for every address
 * in a LoadBalancer Service's `status.loadBalancer.ingress` whose pool an
 * L2Advertisement selects (and whose nodeSelectors admit this node), the node
 * stands for election; the one elected owns the address.
 *
 * Election: MetalLB uses memberlist plus a hash of node and address; podlab
 * uses one coordination.k8s.io Lease per address in `metallb-system`
 * (`l2-<a>-<b>-<c>-<d>`), as client-go's leader election (and kube-vip's
 * per-Service election) does, so the owner is visible with `kubectl get
 * leases -n metallb-system` and failover follows the lease timing below.
 *
 * Eligibility follows MetalLB: with `externalTrafficPolicy: Local` only nodes
 * with a ready endpoint of the Service stand (a node whose endpoints go away
 * releases the address); with `Cluster` every node does.
 *
 * Owning an address means what `announce` does (node-agent: real sockets on
 * the address, carried into the node). The host's loopback needs no
 * gratuitous ARP: the first bind wins, and a dead owner's sockets die with it.
 * In a netns lab the owner first adds the address to its namespace's eth0 and
 * sends a gratuitous ARP (hostnet/lb-address.ts).
 */
import type { ApiClient } from '../control-plane/client.ts';
import { METALLB_NAMESPACE, type Advertisement, type IpAddressPool } from '../control-plane/metallb.ts';
import { eligibleAddresses, type Announcement } from './lb-eligibility.ts';
import type { LbService } from './lb-services.ts';
import { LeaseElector, type ElectionTiming } from './lease-election.ts';

export type { AnnouncedPort, Announcement } from './lb-eligibility.ts';

/**
 * podlab's L2 election timing: a 5 s lease, tried (and renewed) every 1 s.
 * A holder that dies is replaced within leaseDuration + 2 × retryPeriod = 7 s
 * of its last renewal: a candidate sees the last renewal at most one retry
 * period late, waits the lease out, and tries again at most one period later.
 */
export const L2_TIMING: ElectionTiming = { leaseDurationMs: 5000, retryPeriodMs: 1000 };
/** The documented failover bound that follows from {@link L2_TIMING}. */
export const L2_FAILOVER_MS = L2_TIMING.leaseDurationMs + 2 * L2_TIMING.retryPeriodMs;
/**
 * The kernel lifetime (seconds) of an LB address a netns node holds on eth0,
 * renewed every round: shorter than the lease, so a dead holder's kernel has
 * dropped it (and stopped answering ARP) before another node can be elected.
 */
export const L2_ADDRESS_LIFETIME_S = Math.floor(L2_TIMING.leaseDurationMs / 1000) - 2;

/** The Lease name for an address. */
export function leaseNameFor(ip: string): string {
  return `l2-${ip.replaceAll('.', '-')}`;
}

/** The addresses this node stands for in layer 2, from the LoadBalancer Services and MetalLB's objects (pure). */
export function l2Candidates(
  node: string,
  nodeLabels: Record<string, string>,
  lbs: readonly LbService[],
  pools: readonly IpAddressPool[],
  advertisements: readonly Advertisement[],
): Announcement[] {
  return eligibleAddresses(node, nodeLabels, lbs, pools, advertisements).map((e) => e.announcement);
}

/**
 * What owning an address does; `close` gives it up, `renew` (optional) runs
 * every round the node still leads (a netns node's kernel address lifetime).
 */
export type Announcer = (a: Announcement) => Promise<{ close(): void | Promise<void>; renew?(): Promise<void> }>;

export interface L2SpeakerOptions {
  api: ApiClient;
  node: string;
  announce: Announcer;
  timing?: ElectionTiming;
  now?: () => number;
  /** Delay before a first attempt (seeded by the caller), so candidates do not all race at once. */
  firstTryDelayMs?: number;
  log?: (msg: string, fields: Record<string, unknown>) => void;
}

interface Held {
  elector: LeaseElector;
  want: Announcement;
  /** The open announcement and the fingerprint of what it serves. */
  open?: { close(): void | Promise<void>; renew?(): Promise<void>; fingerprint: string };
}

/** The speaker: one elector per candidate address, tried every retry period. */
export class L2Speaker {
  private readonly held = new Map<string, Held>();
  private timer?: NodeJS.Timeout;
  private running = false;
  private stopped = false;
  readonly timing: ElectionTiming;

  constructor(private readonly o: L2SpeakerOptions) {
    this.timing = o.timing ?? L2_TIMING;
  }

  /** Sets what this node stands for; takes effect on the next round. */
  setCandidates(list: readonly Announcement[]): void {
    const want = new Map(list.map((a) => [a.ip, a]));
    for (const [ip, h] of this.held) {
      if (want.has(ip)) continue;
      this.held.delete(ip);
      void this.give(ip, h);
      void h.elector.release();
    }
    for (const [ip, a] of want) {
      const h = this.held.get(ip);
      if (h) h.want = a;
      else {
        const elector = new LeaseElector(this.o.api, { namespace: METALLB_NAMESPACE, name: leaseNameFor(ip), identity: this.o.node, timing: this.timing, now: this.o.now ?? (() => performance.now()) });
        this.held.set(ip, { elector, want: a });
      }
    }
  }

  start(): void {
    const loop = () => {
      if (this.stopped) return;
      void this.round().finally(() => {
        if (!this.stopped) this.timer = setTimeout(loop, this.timing.retryPeriodMs);
      });
    };
    this.timer = setTimeout(loop, this.o.firstTryDelayMs ?? 0);
  }

  /** One election round over every candidate address (also used by tests). */
  async round(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      await Promise.all(
        [...this.held.entries()].map(async ([ip, h]) => {
          const leading = await h.elector.tryAcquireOrRenew();
          if (this.held.get(ip) !== h || this.stopped) return;
          if (!leading) return this.give(ip, h);
          const fp = JSON.stringify(h.want);
          if (h.open?.fingerprint === fp) {
            await h.open.renew?.().catch((e: unknown) => this.o.log?.('cannot renew', { ip, error: String(e) }));
            return;
          }
          await this.give(ip, h);
          try {
            const open = await this.o.announce(h.want);
            if (this.held.get(ip) !== h || this.stopped) return void (await open.close());
            h.open = { close: () => open.close(), renew: open.renew && (() => open.renew!()), fingerprint: fp };
            this.o.log?.('announcing', { ip, service: h.want.service, node: this.o.node, protocol: 'layer2' });
          } catch (e) {
            this.o.log?.('cannot announce', { ip, error: String(e) });
            // Not serving it: let another node have it.
            await h.elector.release();
          }
        }),
      );
    } finally {
      this.running = false;
    }
  }

  private give(ip: string, h: Held): Promise<void> {
    if (!h.open) return Promise.resolve();
    const closed = Promise.resolve(h.open.close()).catch((e: unknown) => this.o.log?.('cannot withdraw', { ip, error: String(e) }));
    h.open = undefined;
    this.o.log?.('withdrawn', { ip, service: h.want.service, node: this.o.node });
    return closed;
  }

  /** `podlab node N lb`: the addresses this node stands for and who holds them. */
  view(): string {
    const rows = [...this.held.entries()].sort(([a], [b]) => (a < b ? -1 : 1));
    if (!rows.length) return 'no LoadBalancer addresses for this node\n';
    return rows.map(([ip, h]) => `${ip}\t${h.want.service}\tlayer2\t${h.open ? 'announcing (leader)' : `standby (holder ${h.elector.holder || '<none>'})`}\n`).join('');
  }

  /** Stops electing and closes what is announced; `release` gives the Leases up (a clean shutdown). */
  async stop(release = true): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await Promise.all([...this.held.entries()].map(([ip, h]) => this.give(ip, h)));
    if (release) await Promise.all([...this.held.values()].map((h) => h.elector.release()));
  }
}
