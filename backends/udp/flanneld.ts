/**
 * flanneld's UDP backend in user space (flannel's pkg/backend/udp, proxy.c):
 * flannel0 is a TUN device (no Ethernet header, point-to-point, MTU 1472);
 * the kernel routes 10.244.0.0/16 into it, flanneld read()s each packet from
 * the TUN file descriptor, looks the destination up in its table of subnets
 * (from the leases: subnet -> the peer's public IP) and sendto()s the bare
 * packet, with no header of its own, in a UDP datagram to the peer's port 8285.
 * The peer's flanneld recvfrom()s it and write()s it into its flannel0, from
 * where its kernel routes it to the pod.
 *
 * Every packet crossed the kernel/user boundary twice per node (TUN read and
 * socket send; socket receive and TUN write), each crossing a copy and a
 * switch between the kernel and a process that had to be scheduled: what made
 * the backend slow. Here the node's own thread plays the kernel and flanneld
 * runs in a thread of its own (./flanneld-worker.ts), so each crossing is real:
 * the packet is copied into a buffer of its own and posted to the other thread,
 * which runs when its event loop gets to it. flannel0 is the boundary one way,
 * eth0's socket path (overlay/eth0-sockets.ts: counters, captures,
 * impairments, whichever underlay the lab has) the other; flanneld never
 * touches a socket itself: sending from a socket of its own would skip eth0's
 * accounting, captures and impairments, and measured no cheaper (the agents'
 * CPU per echoed datagram was the same, its rate within the shared machine's
 * noise). It counts its crossings in memory both threads see (`podlab node
 * NODE stats`).
 *
 * A traced packet's context stays here while the packet is in flanneld's
 * thread, under a number the packet's messages carry there and back: the hop
 * is asynchronous, as the ARP queue's is, but the packet is the same one.
 */
import type { Worker } from 'node:worker_threads';
import { createLogger } from '../../common/log.ts';
import { RestartingWorker } from '../../common/module-worker.ts';
import { NetDevice, type IfindexAllocator } from '../../netstack/link/netdev.ts';
import type { TraceContext, Tracer } from '../../netstack/trace.ts';
import { writeEthernetHeader } from '../../packet/ethernet.ts';
import { Cidr } from '../../packet/cidr.ts';
import { flowHash } from '../../packet/flow-hash.ts';
import type { Eth0Sockets } from '../../overlay/eth0-sockets.ts';
import { COUNTERS, COUNTER_SLOT, type FromFlanneld, type ToFlanneld } from './flanneld-messages.ts';

export const TUN_DEV = 'flannel0';
/** flanneld's UDP port (flannel's `Port` default for the udp backend). */
export const FLANNEL_UDP_PORT = 8285;
/** How long a crashed flanneld thread stays down before it is started again. */
const RESTART_DELAY_MS = 1000;

const log = createLogger('podlab:flanneld');

/** flanneld's crossings, as `stats` shows them. */
export interface FlanneldCopies {
  /** Packets read from flannel0: kernel -> flanneld. */
  tunReads: number;
  /** Packets written into flannel0: flanneld -> kernel. */
  tunWrites: number;
  /** Datagrams flanneld sent (flanneld -> kernel again, into a socket). */
  sent: number;
  /** Datagrams flanneld received (kernel -> flanneld, out of a socket). */
  received: number;
  /** Bytes copied across the boundary, all four ways together. */
  bytesCopied: number;
  /** Packets flanneld could not place: no subnet for the destination. */
  noRoute: number;
  /** Packets that were not IPv4, either way. */
  malformed: number;
  /** flanneld's thread: its id, the milliseconds its event loop was busy, its restarts. */
  thread: { id: number; busyMs: number; restarts: number };
}

export class Flanneld {
  readonly dev: NetDevice;
  /** Subnet -> peer public IP: what flanneld's table holds, kept to start a new thread with. */
  private readonly routes = new Map<string, string>();
  private readonly counters = new BigUint64Array(new SharedArrayBuffer(COUNTERS.length * 8));
  private readonly runner: RestartingWorker<FromFlanneld>;
  private alive = false;
  /** Contexts of traced packets now in flanneld's thread, by the number their messages carry. */
  private readonly traced = new Map<number, TraceContext>();
  private nextTrace = 1;
  private readonly tracer: Tracer;

  constructor(private readonly o: { sockets: Eth0Sockets; port: number; mtu: number; ifindexes: IfindexAllocator; tracer: Tracer }) {
    this.tracer = o.tracer;
    this.dev = new NetDevice(TUN_DEV, 'tun', '00:00:00:00:00:00', o.mtu, { ifindexes: o.ifindexes, tracer: o.tracer });
    this.dev.connect((frame) => this.fromTun(frame));
    o.sockets.bind({ port: o.port, innerFrame: (buf) => framed(buf), receive: (buf, from) => this.fromSocket(buf, from) });
    // flanneld dies: the node's supervisor starts it again after a second, with the table from the leases.
    this.runner = new RestartingWorker<FromFlanneld>(
      'backends/udp/flanneld-worker.ts',
      { counters: this.counters.buffer },
      'flanneld thread',
      {
        message: (m) => this.fromWorker(m),
        started: () => {
          this.alive = true;
          for (const [cidr, publicIp] of this.routes) this.post({ k: 'route', cidr, publicIp });
        },
        exited: (reason, inMs) => {
          this.alive = false;
          this.traced.clear();
          log.warn('flanneld thread exited; starting it again', { reason, inMs });
        },
      },
      { restartMs: { min: RESTART_DELAY_MS, max: RESTART_DELAY_MS }, name: `flanneld ${this.o.sockets.underlay.localIp}` },
    );
    this.runner.start();
  }

  private get worker(): Worker {
    return this.runner.thread;
  }

  private post(m: ToFlanneld, transfer: ArrayBuffer[] = []): void {
    this.worker.postMessage(m, transfer);
  }

  /** The route step of a plan: `ip route` has only 10.244.0.0/16 dev flannel0; the per-node table is flanneld's. */
  setRoute(cidr: string, publicIp: string): void {
    // A bad subnet throws here, in the plan's step, not in flanneld's thread.
    Cidr.parse(cidr);
    const old = this.routes.get(cidr);
    this.routes.set(cidr, publicIp);
    if (this.alive) this.post({ k: 'route', cidr, publicIp });
    if (old !== undefined && old !== publicIp) this.forgetIfUnused(old);
  }

  deleteRoute(cidr: string): boolean {
    const publicIp = this.routes.get(cidr);
    if (publicIp === undefined) return false;
    this.routes.delete(cidr);
    if (this.alive) this.post({ k: 'unroute', cidr });
    this.forgetIfUnused(publicIp);
    return true;
  }

  /** A node no subnet routes to any more: the underlay lets go of the connected socket it may keep for it. */
  private forgetIfUnused(publicIp: string): void {
    for (const ip of this.routes.values()) if (ip === publicIp) return;
    this.o.sockets.forgetPeer(publicIp);
  }

  /** The crossings so far, read from the memory flanneld counts in. */
  copies(): FlanneldCopies {
    const c = Object.fromEntries(COUNTERS.map((n) => [n, Number(Atomics.load(this.counters, COUNTER_SLOT[n]))])) as Omit<FlanneldCopies, 'thread'>;
    const busyMs = this.alive ? Math.round(this.worker.performance.eventLoopUtilization().active) : 0;
    return { ...c, thread: { id: this.worker.threadId, busyMs, restarts: this.runner.restarts } };
  }

  async close(): Promise<void> {
    this.alive = false;
    await this.runner.close();
  }

  /** A packet the kernel routed into flannel0: read() copies it out to flanneld. */
  private fromTun(frame: Buffer): void {
    const packet = frame.subarray(14);
    if (!this.running('tun', packet.length)) return;
    const copy = new ArrayBuffer(packet.length);
    new Uint8Array(copy).set(packet);
    const trace = this.keep(`read() by flanneld: ${packet.length} bytes copied from ${TUN_DEV} into its thread (kernel -> user space)`);
    this.post({ k: 'tun', packet: copy, flowHash: flowHash(frame), trace }, [copy]);
  }

  /** A datagram on UDP 8285: recvfrom() copies it out to flanneld. */
  private fromSocket(buf: Buffer, from: { address: string; port: number }): void {
    if (!this.running('udp', buf.length)) return;
    const copy = new ArrayBuffer(buf.length);
    new Uint8Array(copy).set(buf);
    const trace = this.keep(`recvfrom() by flanneld: ${buf.length} bytes from ${from.address}:${from.port} copied into its thread (kernel -> user space)`);
    this.post({ k: 'udp', payload: copy, from: from.address, fromPort: from.port, trace }, [copy]);
  }

  /** Whether flanneld's thread runs; while it is down the packet is counted as dropped. */
  private running(side: 'tun' | 'udp', len: number): boolean {
    if (this.alive) return true;
    if (side === 'tun') this.dev.counters.drop('flanneld-down');
    else this.o.sockets.drop('flanneld-down');
    if (this.tracer.current) this.tracer.hop('node', 'flanneld', `flanneld is not running: ${len} bytes dropped`, { drop: 'flanneld-down' });
    return false;
  }

  /** Records the hop into flanneld and keeps the trace context for the packet's way back; 0 when untraced. */
  private keep(summary: string): number {
    const ctx = this.tracer.current;
    if (!ctx) return 0;
    this.tracer.hop('node', 'flanneld', summary);
    const id = this.nextTrace++;
    this.traced.set(id, ctx);
    return id;
  }

  private fromWorker(m: FromFlanneld): void {
    const ctx = m.trace ? this.traced.get(m.trace) : undefined;
    if (!ctx) return this.handle(m);
    this.traced.delete(m.trace);
    this.tracer.run(ctx, () => this.handle(m));
  }

  private handle(m: FromFlanneld): void {
    const traced = this.tracer.current !== null;
    switch (m.k) {
      case 'send':
        if (traced) {
          this.tracer.hop('node', 'flanneld', `flanneld: ${m.dst} is in a subnet of ${m.peer}; sendto ${m.peer}:${this.o.port} UDP, no header added: ${m.payload.byteLength} bytes copied back (user space -> kernel)`, {
            detail: { flanneld: { dst: m.dst, peer: m.peer, port: this.o.port, thread: this.worker.threadId } },
          });
        }
        this.o.sockets.send(m.peer, this.o.port, Buffer.from(m.payload), m.flowHash);
        return;
      case 'write':
        if (traced) this.tracer.hop('node', 'flanneld', `flanneld: ${m.src} > ${m.dst} write() into ${TUN_DEV}: ${m.frame.byteLength - 14} bytes copied back (user space -> kernel)`);
        this.dev.receive(Buffer.from(m.frame));
        return;
      case 'drop':
        if (m.side === 'tun') this.dev.counters.drop(m.reason);
        else this.o.sockets.drop(m.reason);
        if (traced) this.tracer.hop('node', 'flanneld', `flanneld: ${m.text}`, { drop: m.reason });
        return;
    }
  }
}

/** podlab moves packets as frames: a zero Ethernet header in front (captures of flannel0 strip it). */
function framed(packet: Buffer): Buffer {
  const frame = Buffer.allocUnsafe(14 + packet.length);
  writeEthernetHeader(frame, 0, '00:00:00:00:00:00', '00:00:00:00:00:00', 0x0800);
  packet.copy(frame, 14);
  return frame;
}
