/**
 * The neighbour table (`ip neigh`): IPv4 → MAC per device, with the kernel's
 * states. On devices that ARP (a pod's eth0, cni0) an unknown next hop goes
 * INCOMPLETE, queues up to `queueLen` packets and is solicited every
 * `retransMs` up to `maxProbes` times before going FAILED (the queued packets
 * then get ICMP host unreachable, as Linux does). Confirmed entries are
 * REACHABLE for `reachableMs`, then STALE (still used, re-confirmed by any ARP
 * seen from the neighbour). Flannel's entries on flannel.1 are PERMANENT.
 * The table is bounded as Linux bounds it (gc_thresh3): when full, the oldest
 * STALE or FAILED entries are collected; if none can go, the new neighbour is
 * refused and counted (the kernel's "neighbour table overflow").
 */
import type { Clock, Timer } from '../../common/clock.ts';
import type { FlowGeneration } from '../flow/generation.ts';

export type NeighState = 'PERMANENT' | 'REACHABLE' | 'STALE' | 'INCOMPLETE' | 'FAILED';

interface Pending {
  send: (mac: string) => void;
  fail: () => void;
}

export interface NeighEntry {
  dev: string;
  ip: string;
  mac?: string;
  state: NeighState;
  updatedAt: number;
  probes: number;
  queue: Pending[];
  timer?: Timer;
}

export interface NeighbourOptions {
  reachableMs?: number;
  retransMs?: number;
  maxProbes?: number;
  queueLen?: number;
  /** How long a FAILED entry is kept (for `ip neigh` to show it) before it is forgotten. */
  failedKeepMs?: number;
  /** Most entries (Linux net.ipv4.neigh.default.gc_thresh3: 1024). */
  maxEntries?: number;
  /** Called for each new neighbour refused because the table was full (counted as a drop by the stack). */
  onOverflow?: () => void;
  /** The namespace's flow generation: moved when an entry appears, goes, fails or changes its MAC (cached flows carry MACs). */
  generation?: FlowGeneration;
}

export class NeighbourTable {
  private readonly entries = new Map<string, NeighEntry>();
  private readonly reachableMs: number;
  private readonly retransMs: number;
  private readonly maxProbes: number;
  private readonly queueLen: number;
  private readonly failedKeepMs: number;
  private readonly maxEntries: number;
  private readonly onOverflow: () => void;
  private readonly generation?: FlowGeneration;

  constructor(
    private readonly clock: Clock,
    /** Sends an ARP request for ip out of dev. */
    private readonly solicit: (dev: string, ip: string) => void,
    opts: NeighbourOptions = {},
  ) {
    this.reachableMs = opts.reachableMs ?? 30_000;
    this.retransMs = opts.retransMs ?? 1_000;
    this.maxProbes = opts.maxProbes ?? 3;
    this.queueLen = opts.queueLen ?? 3;
    this.failedKeepMs = opts.failedKeepMs ?? 10_000;
    this.maxEntries = opts.maxEntries ?? 1024;
    this.onOverflow = opts.onOverflow ?? (() => {});
    this.generation = opts.generation;
  }

  private changed(): void {
    this.generation?.bump('neighbour');
  }

  /** Room for one more entry: collects the oldest STALE/FAILED ones when full (neigh_forced_gc); false if none could go. */
  private admit(): boolean {
    if (this.entries.size < this.maxEntries) return true;
    const victims = [...this.entries.entries()]
      .filter(([, e]) => (e.state === 'STALE' || e.state === 'FAILED' || (e.state === 'REACHABLE' && this.clock.now() - e.updatedAt > this.reachableMs)))
      .sort((a, b) => a[1].updatedAt - b[1].updatedAt);
    // Collect a slice at once, so a flood does not pay a scan per packet.
    for (const [k, e] of victims.slice(0, Math.max(1, this.maxEntries >> 3))) {
      e.timer?.cancel();
      this.entries.delete(k);
    }
    this.changed();
    if (this.entries.size < this.maxEntries) return true;
    this.onOverflow();
    return false;
  }

  private key(dev: string, ip: string): string {
    // A stack sends most packets to one next hop (a pod: its gateway): the last key is reused, not rebuilt.
    if (dev === this.lastDev && ip === this.lastIp) return this.lastKey;
    this.lastDev = dev;
    this.lastIp = ip;
    this.lastKey = `${dev}|${ip}`;
    return this.lastKey;
  }

  private lastDev = '';
  private lastIp = '';
  private lastKey = '|';

  /** The entry, with REACHABLE turned STALE once its time is up. */
  get(dev: string, ip: string): NeighEntry | undefined {
    const e = this.entries.get(this.key(dev, ip));
    if (e && e.state === 'REACHABLE' && this.clock.now() - e.updatedAt > this.reachableMs) e.state = 'STALE';
    return e;
  }

  /** `ip neigh replace IP lladdr MAC dev DEV nud permanent`. */
  setPermanent(dev: string, ip: string, mac: string): void {
    const old = this.entries.get(this.key(dev, ip));
    old?.timer?.cancel();
    this.entries.set(this.key(dev, ip), { dev, ip, mac, state: 'PERMANENT', updatedAt: this.clock.now(), probes: 0, queue: [] });
    this.changed();
    if (old) for (const p of old.queue) p.send(mac);
  }

  /** `ip neigh del IP dev DEV`. */
  delete(dev: string, ip: string): boolean {
    const e = this.entries.get(this.key(dev, ip));
    e?.timer?.cancel();
    if (!this.entries.delete(this.key(dev, ip))) return false;
    this.changed();
    return true;
  }

  /** Forgets every entry on a device. */
  flushDev(dev: string): void {
    for (const [k, e] of this.entries) if (e.dev === dev) {
      e.timer?.cancel();
      this.entries.delete(k);
    }
    this.changed();
  }

  /**
   * Learns a MAC from an ARP packet. Only creates an entry when `create` (the
   * packet was addressed to us), as Linux only adds neighbours it needs.
   */
  learn(dev: string, ip: string, mac: string, create: boolean): void {
    const e = this.entries.get(this.key(dev, ip));
    if (!e) {
      if (create && this.admit()) {
        this.entries.set(this.key(dev, ip), { dev, ip, mac, state: 'STALE', updatedAt: this.clock.now(), probes: 0, queue: [] });
        this.changed();
      }
      return;
    }
    if (e.state === 'PERMANENT') return;
    // A confirmation of what is known moves nothing; a new MAC, or an answer to a resolution, does.
    if (e.mac !== mac || e.state === 'INCOMPLETE' || e.state === 'FAILED') this.changed();
    e.timer?.cancel();
    e.timer = undefined;
    e.mac = mac;
    e.state = 'REACHABLE';
    e.updatedAt = this.clock.now();
    e.probes = 0;
    const queue = e.queue;
    e.queue = [];
    for (const p of queue) p.send(mac);
  }

  /** The MAC `resolve` would send to at once (a resolved entry), or undefined when it would have to wait. */
  usable(dev: string, ip: string): string | undefined {
    const e = this.get(dev, ip);
    return e && e.mac && e.state !== 'INCOMPLETE' && e.state !== 'FAILED' ? e.mac : undefined;
  }

  /**
   * Sends through the neighbour: at once if its MAC is known, otherwise after
   * resolution, or `fail` is called when resolution gives up or the queue is full.
   */
  resolve(dev: string, ip: string, send: (mac: string) => void, fail: () => void): void {
    let e = this.get(dev, ip);
    if (e && e.mac && e.state !== 'INCOMPLETE' && e.state !== 'FAILED') {
      send(e.mac);
      return;
    }
    const fresh = !e || e.state === 'FAILED';
    if (!e && !this.admit()) {
      fail();
      return;
    }
    if (fresh) {
      e?.timer?.cancel();
      e = { dev, ip, state: 'INCOMPLETE', updatedAt: this.clock.now(), probes: 0, queue: [] };
      this.entries.set(this.key(dev, ip), e);
    }
    const entry = e!;
    if (entry.queue.length >= this.queueLen) {
      // unres_qlen: the oldest queued packet is dropped to make room.
      entry.queue.shift()?.fail();
    }
    // Queue first: the solicitation may be answered synchronously (same process).
    entry.queue.push({ send, fail });
    if (fresh) this.probe(entry);
  }

  private probe(e: NeighEntry): void {
    // Resolved (possibly synchronously, inside solicit) or replaced: probing is over.
    if (e.state !== 'INCOMPLETE' || this.entries.get(this.key(e.dev, e.ip)) !== e) return;
    if (e.probes >= this.maxProbes) {
      e.state = 'FAILED';
      e.updatedAt = this.clock.now();
      this.changed();
      const queue = e.queue;
      e.queue = [];
      for (const p of queue) p.fail();
      e.timer = this.clock.setTimeout(() => {
        if (this.entries.get(this.key(e.dev, e.ip)) === e && e.state === 'FAILED') {
          this.entries.delete(this.key(e.dev, e.ip));
          this.changed();
        }
      }, this.failedKeepMs);
      return;
    }
    e.probes++;
    this.solicit(e.dev, e.ip);
    if (e.state !== 'INCOMPLETE') return;
    e.timer = this.clock.setTimeout(() => this.probe(e), this.retransMs);
  }

  /** Every entry, for `ip neigh`. */
  list(): NeighEntry[] {
    return [...this.entries.keys()].map((k) => {
      const [dev, ip] = k.split('|');
      return this.get(dev, ip)!;
    });
  }
}
