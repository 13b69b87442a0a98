/**
 * Test helper (not a test file): two namespaces' IPv4 stacks, each with a TCP
 * stack, joined by a veth pair whose wire is an in-memory link with a delay
 * and seeded faults (loss, reordering, a drop filter), all on a ManualClock.
 * Permanent neighbour entries keep ARP out of the way unless a test wants it.
 */
import { ManualClock, type Clock } from '../../common/clock.ts';
import { SeededRng } from '../../common/rng.ts';
import { isWireError } from '../../packet/errors.ts';
import { parseIpv4 } from '../../packet/ipv4.ts';
import { parseTcp, type TcpRepr } from '../../packet/tcp.ts';
import { IpStack } from '../../netstack/ipv4/ip-stack.ts';
import { NetDevice, vethPair } from '../../netstack/link/netdev.ts';
import type { TcpConfig } from '../../netstack/tcp/config.ts';
import { TcpStack } from '../../netstack/tcp/stack.ts';

export const A_IP = '10.0.0.1';
export const B_IP = '10.0.0.2';

/** A segment seen on the link, decoded. */
export interface Seen {
  at: number;
  dir: 'a>b' | 'b>a';
  src: string;
  dst: string;
  seg: TcpRepr;
  dropped: boolean;
}

export interface LinkOptions {
  /** One-way delay, ms (default 1). */
  delayMs?: number;
  /** Probability of losing a frame, each direction. */
  loss?: number;
  /** Probability that a frame is held back and sent after the next one. */
  reorder?: number;
  seed?: number;
  mtu?: number;
  config?: Partial<TcpConfig>;
  configB?: Partial<TcpConfig>;
  /**
   * Give the TCP stacks receive batches, as real I/O has (Clock.afterIo): the
   * frames arriving at one instant are one batch, its end after the last of them.
   */
  batches?: boolean;
}

export class TcpLink {
  readonly clock = new ManualClock();
  readonly a: IpStack;
  readonly b: IpStack;
  readonly tcpA: TcpStack;
  readonly tcpB: TcpStack;
  readonly ethA: NetDevice;
  readonly ethB: NetDevice;
  /** Every TCP segment put on the wire, in order, with whether the link dropped it. */
  readonly seen: Seen[] = [];
  /** Return true to drop a segment (called before random loss). */
  drop: (s: Seen) => boolean = () => false;
  /** Blackholes a direction entirely. */
  down = { 'a>b': false, 'b>a': false };
  loss: number;
  reorder: number;
  private readonly rng: SeededRng;
  private readonly held: { 'a>b': (() => void) | null; 'b>a': (() => void) | null } = { 'a>b': null, 'b>a': null };

  constructor(readonly opts: LinkOptions = {}) {
    const mtu = opts.mtu ?? 1500;
    this.loss = opts.loss ?? 0;
    this.reorder = opts.reorder ?? 0;
    this.rng = new SeededRng(opts.seed ?? 7);
    const { hostEnd, podEnd } = vethPair({ name: 'eth0', mac: '02:00:00:00:00:0a', netns: 'a' }, { name: 'eth0', mac: '02:00:00:00:00:0b', netns: 'b' }, mtu);
    this.ethA = hostEnd;
    this.ethB = podEnd;
    this.a = this.makeStack('a', hostEnd, A_IP);
    this.b = this.makeStack('b', podEnd, B_IP);
    this.a.neigh.setPermanent('eth0', B_IP, podEnd.mac);
    this.b.neigh.setPermanent('eth0', A_IP, hostEnd.mac);
    hostEnd.connect((f) => this.carry(f, 'a>b', podEnd));
    podEnd.connect((f) => this.carry(f, 'b>a', hostEnd));
    const mc = this.clock;
    // A timer of 0 ms fires at this instant, after every timer already due at it: after the frames of the burst.
    const clock: Clock = opts.batches ? { now: () => mc.now(), setTimeout: (fn, ms) => mc.setTimeout(fn, ms), afterIo: (fn) => void mc.setTimeout(fn, 0) } : mc;
    this.tcpA = new TcpStack(this.a, { clock, rng: new SeededRng(101), config: opts.config });
    this.tcpB = new TcpStack(this.b, { clock, rng: new SeededRng(202), config: { ...opts.config, ...opts.configB } });
  }

  private makeStack(name: string, eth: NetDevice, ip: string): IpStack {
    const s = new IpStack(name, { clock: this.clock, forwarding: false, idSeed: name.charCodeAt(0) });
    const lo = new NetDevice('lo', 'loopback', '00:00:00:00:00:00', 65536);
    s.addInterface(lo, { arp: false });
    s.addAddress('lo', '127.0.0.1', 8);
    s.addInterface(eth, { arp: true });
    s.addAddress('eth0', ip, 24);
    return s;
  }

  private carry(frame: Buffer, dir: 'a>b' | 'b>a', to: NetDevice): void {
    let dropped = this.down[dir];
    const ip = frame.readUInt16BE(12) === 0x0800 ? parseIpv4(frame.subarray(14)) : null;
    if (ip && !isWireError(ip) && ip.protocol === 6) {
      const seg = parseTcp(ip.payload, ip.src, ip.dst);
      if (!isWireError(seg)) {
        const s: Seen = { at: this.clock.now(), dir, src: ip.src, dst: ip.dst, seg, dropped };
        if (!dropped && this.drop(s)) dropped = true;
        if (!dropped && this.rng.chance(this.loss)) dropped = true;
        s.dropped = dropped;
        this.seen.push(s);
      }
    }
    if (dropped) return;
    const copy = Buffer.from(frame);
    const deliver = () => this.clock.setTimeout(() => to.receive(copy), this.opts.delayMs ?? 1);
    if (this.rng.chance(this.reorder) && !this.held[dir]) {
      this.held[dir] = deliver;
      // Released after the next frame in this direction, or after 20 ms.
      this.clock.setTimeout(() => this.release(dir), 20);
      return;
    }
    deliver();
    this.release(dir);
  }

  private release(dir: 'a>b' | 'b>a'): void {
    const h = this.held[dir];
    this.held[dir] = null;
    h?.();
  }

  /** Lets queued microtasks (connect() starts in one) run. */
  async settle(): Promise<void> {
    for (let i = 0; i < 5; i++) await Promise.resolve();
  }

  /** Advances the clock in steps, letting microtasks run between them. */
  async run(ms: number, stepMs = 50): Promise<void> {
    for (let t = 0; t < ms; t += stepMs) {
      this.clock.advance(Math.min(stepMs, ms - t));
      await this.settle();
    }
  }

  /** Advances until `cond()` or `maxMs` pass; returns the time taken. */
  async until(cond: () => boolean, maxMs: number, stepMs = 10): Promise<number> {
    const start = this.clock.now();
    await this.settle();
    while (!cond() && this.clock.now() - start < maxMs) {
      this.clock.advance(stepMs);
      await this.settle();
    }
    return this.clock.now() - start;
  }

  /** Data segments (with payload) sent in one direction. */
  dataSegs(dir: 'a>b' | 'b>a'): Seen[] {
    return this.seen.filter((s) => s.dir === dir && s.seg.payload.length > 0);
  }
}

/** Deterministic bytes for transfers. */
export function pattern(n: number, seed = 1): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}
