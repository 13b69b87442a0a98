/**
 * The I/O loop of one namespace's stack, as smoltcp's `Interface::poll`:
 * processing a received frame (or a send from a socket, or a timer) never
 * performs I/O itself. What it emits (frames for its devices, datagrams for
 * its own loopback) is queued here, and the loop performs it once the
 * processing has returned, in the order it was emitted; a frame that reaches
 * the stack while it is busy waits in the ingress queue. When both queues are
 * empty the loop asks the transport protocols for their sockets' output
 * (smoltcp's socket egress: TCP flushes the connections an event touched),
 * and stops once nobody has anything left.
 *
 * So the stack is never re-entered: a segment answered synchronously across a
 * veth and a bridge comes back into the ingress queue and is processed after
 * the current one, not inside it, and a long exchange between two stacks of
 * one process (two pods, a pod and itself) runs as iterations of these
 * loops, with a JS stack no deeper than one frame of each namespace it
 * crosses. Links (veth, bridge, VTEP) stay direct calls: they are wires, not
 * processing.
 *
 * A traced packet keeps its trace: each queued item carries the tracer
 * context current when it was emitted and runs under it.
 */
import type { Ipv4Repr } from '../../packet/ipv4.ts';
import type { NetDevice } from '../link/netdev.ts';
import type { NfState } from '../netfilter/netfilter.ts';
import type { TraceContext, Tracer } from '../trace.ts';

/** What the loop hands back to its stack. */
export interface DispatchTarget {
  /** Processes one received frame (the stack's input, not re-entered). */
  receive(dev: NetDevice, frame: Buffer): void;
  /** Delivers one queued loopback datagram. */
  loopback(item: LoopbackItem): void;
  /** The protocols' pending output; true if it did something (the loop goes round again). */
  egress(): boolean;
}

/** A datagram the stack sent to one of its own addresses (the `lo` route), with its state. */
export interface LoopbackItem {
  readonly ip: Ipv4Repr;
  readonly raw: Buffer;
  readonly st: NfState | undefined;
}

const TX = 0;
const LOOP = 1;

interface Emitted {
  kind: typeof TX | typeof LOOP;
  dev: NetDevice | null;
  frame: Buffer;
  nextHop: string | undefined;
  loop: LoopbackItem | null;
  ctx: TraceContext | null;
}

interface Received {
  dev: NetDevice;
  frame: Buffer;
  ctx: TraceContext | null;
}

/** A FIFO over an array with a moving head: no shift(), no per-item copy. */
class Fifo<T> {
  private items: (T | undefined)[] = [];
  private head = 0;

  get size(): number {
    return this.items.length - this.head;
  }

  push(v: T): void {
    this.items.push(v);
  }

  take(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const v = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head === this.items.length) {
      this.items.length = 0;
      this.head = 0;
    }
    return v;
  }
}

export class Dispatcher {
  /** True while the stack processes or the loop runs: new work is queued, not done. */
  private busy = false;
  private readonly egressQ = new Fifo<Emitted>();
  private readonly ingressQ = new Fifo<Received>();
  /** Deepest the loop has been asked to queue (for tests and stats). */
  maxQueued = 0;

  constructor(
    private readonly tracer: Tracer,
    private readonly target: DispatchTarget,
  ) {}

  get active(): boolean {
    return this.busy;
  }

  /**
   * Runs `fn` as one unit of processing, then the loop, unless already inside
   * one (then just `fn`: its output joins the running loop's queue).
   */
  run<T>(fn: () => T): T {
    if (this.busy) return fn();
    this.busy = true;
    let out: T;
    try {
      out = fn();
    } catch (e) {
      this.drainAfter(e);
      throw e;
    }
    this.drainAfter(undefined);
    return out;
  }

  /** A frame from a device: processed now when the stack is idle, else queued behind the current work. */
  receive(dev: NetDevice, frame: Buffer): void {
    if (this.busy) {
      this.ingressQ.push({ dev, frame, ctx: this.tracer.current });
      this.noteDepth();
      return;
    }
    this.busy = true;
    try {
      this.target.receive(dev, frame);
    } catch (e) {
      this.drainAfter(e);
      throw e;
    }
    this.drainAfter(undefined);
  }

  /** Queues a frame for `dev` (sent when the current processing is over). */
  transmit(dev: NetDevice, frame: Buffer, nextHop?: string): void {
    this.egressQ.push({ kind: TX, dev, frame, nextHop, loop: null, ctx: this.tracer.current });
    this.noteDepth();
    if (!this.busy) this.wake();
  }

  /** Queues a datagram for the stack's own delivery, in order with its frames. */
  loopback(item: LoopbackItem): void {
    this.egressQ.push({ kind: LOOP, dev: null, frame: item.raw, nextHop: undefined, loop: item, ctx: this.tracer.current });
    this.noteDepth();
    if (!this.busy) this.wake();
  }

  /** Runs the loop now if the stack is idle (a protocol has output from outside any processing). */
  wake(): void {
    if (this.busy) return;
    this.busy = true;
    this.drainAfter(undefined);
  }

  private noteDepth(): void {
    const n = this.egressQ.size + this.ingressQ.size;
    if (n > this.maxQueued) this.maxQueued = n;
  }

  /**
   * The loop: emitted work first (the last processing's output leaves right
   * after it), then the next received frame, then the protocols' output.
   * A throw in one item does not strand the others: the loop finishes and
   * rethrows the first error (after `pending`, the caller's own).
   */
  private drainAfter(pending: unknown): void {
    let failed: unknown = pending;
    let threw = pending !== undefined;
    try {
      for (;;) {
        try {
          if (!this.step()) break;
        } catch (e) {
          if (!threw) {
            threw = true;
            failed = e;
          }
        }
      }
    } finally {
      this.busy = false;
    }
    if (threw && pending === undefined) throw failed;
  }

  private step(): boolean {
    const t = this.tracer;
    const e = this.egressQ.take();
    if (e !== undefined) {
      const prev = t.current;
      t.current = e.ctx;
      try {
        if (e.kind === TX) e.dev!.transmit(e.frame, e.nextHop);
        else this.target.loopback(e.loop!);
      } finally {
        t.current = prev;
      }
      return true;
    }
    const r = this.ingressQ.take();
    if (r !== undefined) {
      const prev = t.current;
      t.current = r.ctx;
      try {
        this.target.receive(r.dev, r.frame);
      } finally {
        t.current = prev;
      }
      return true;
    }
    return this.target.egress();
  }
}
