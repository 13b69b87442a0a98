/**
 * Echo requests on a fixed schedule (the n-th due at start + n x interval),
 * for a ping latency free of coordinated omission: `ping` sends its next echo
 * an interval after it sent the last, so a stall of the sender's thread
 * delays the echoes it would have sent meanwhile and their round trips never
 * show it. Here every slot's latency is its echo's reply time minus the time the
 * slot was due; after a stall one echo goes for all the slots overdue, and its
 * reply answers each of them, so a stall counts in full for every echo it held
 * up (as wrk2 or HdrHistogram's expected-interval correction count it).
 */
import type { PodNet } from '../netstack/pod-net.ts';

export interface PacedLatency {
  /** Reply time minus due time of every 2 ms slot (ms), sorted; an unanswered echo's slots count as waiting until the end. */
  latencies: number[];
  p99: number;
  max: number;
  /** Echoes unanswered. */
  lost: number;
}

/** A fixed ICMP identifier apart from ping's (which draws one at random from its seeded RNG). */
const ID = 0x5ace;

/**
 * Pings `dst` from `pod` every `intervalMs` until `stop` aborts (or `max` echoes), then waits up to
 * `graceMs` for the replies still due.
 */
export async function pacedPing(pod: PodNet, dst: string, stop: AbortSignal, intervalMs = 2, max = 20_000, graceMs = 200): Promise<PacedLatency> {
  // Per echo sent: the due times of the slots it stands for (several after a stall), and its reply's time.
  const slots: number[][] = [];
  const replyAt: number[] = [];
  let answered = 0;
  const sock = pod.stack.openIcmp(ID, (e) => {
    if (e.kind !== 'echo-reply' || !slots.length) return;
    // Sequence numbers wrap at 2^16: the newest echo sent with that number.
    const n = slots.length - 1 - ((slots.length - 1 - e.seq) & 0xffff);
    if (n < 0 || replyAt[n] !== undefined) return;
    replyAt[n] = performance.now();
    answered++;
  });
  const payload = Buffer.alloc(56);
  const sleep = (ms: number) =>
    new Promise<void>((r) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        stop.removeEventListener('abort', done);
        r();
      }
      stop.addEventListener('abort', done, { once: true });
    });
  const start = performance.now();
  let due = 0;
  try {
    while (!stop.aborted && due < max) {
      const now = performance.now();
      if (now < start + due * intervalMs) {
        await sleep(start + due * intervalMs - now);
        continue;
      }
      // One echo for every slot already due: after a stall it stands for all the slots the stall held up (a
      // burst of hundreds would overflow the underlay's socket buffers, a loss no stall caused).
      const mine: number[] = [];
      for (; due < max && start + due * intervalMs <= now; due++) mine.push(start + due * intervalMs);
      slots.push(mine);
      pod.stack.sendEcho(dst, ID, (slots.length - 1) & 0xffff, payload);
    }
    const until = performance.now() + graceMs;
    while (answered < slots.length && performance.now() < until) await new Promise((r) => setTimeout(r, 2));
  } finally {
    sock.close();
  }
  const end = performance.now();
  let lost = 0;
  const latencies: number[] = [];
  slots.forEach((dues, i) => {
    if (replyAt[i] === undefined) lost++;
    for (const d of dues) latencies.push((replyAt[i] ?? end) - d);
  });
  latencies.sort((a, b) => a - b);
  return { latencies, p99: latencies[Math.floor(latencies.length * 0.99)] ?? NaN, max: latencies[latencies.length - 1] ?? NaN, lost };
}
