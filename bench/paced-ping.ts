/**
 * Echo requests on a fixed schedule (the n-th due at start + n x interval),
 * for a ping latency free of coordinated omission: `ping` sends its next echo
 * an interval after it sent the last, so a stall of the sender's thread
 * delays the echoes it would have sent meanwhile and their round trips never
 * show it. Here every echo's latency is its reply's time minus the time it was
 * due, and echoes overdue after a stall all go at once, so a stall counts in
 * full for each echo it held up (as wrk2 or HdrHistogram's expected-interval
 * correction count it).
 */
import type { PodNet } from '../netstack/pod-net.ts';

export interface PacedLatency {
  /** Reply time minus due time of every echo (ms), sorted; an unanswered one counts as waiting until the end. */
  latencies: number[];
  p99: number;
  max: number;
  lost: number;
}

/** A fixed ICMP identifier apart from ping's (which draws one at random from its seeded RNG). */
const ID = 0x5ace;

/**
 * Pings `dst` from `pod` every `intervalMs` until `stop` aborts (or `max` echoes), then waits up to
 * `graceMs` for the replies still due.
 */
export async function pacedPing(pod: PodNet, dst: string, stop: AbortSignal, intervalMs = 2, max = 20_000, graceMs = 200): Promise<PacedLatency> {
  const due: number[] = [];
  const replyAt: number[] = [];
  let answered = 0;
  const sock = pod.stack.openIcmp(ID, (e) => {
    if (e.kind !== 'echo-reply' || !due.length) return;
    // Sequence numbers wrap at 2^16: the newest echo sent with that number.
    const n = due.length - 1 - ((due.length - 1 - e.seq) & 0xffff);
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
  try {
    while (!stop.aborted && due.length < max) {
      const next = start + due.length * intervalMs;
      const now = performance.now();
      if (now < next) {
        await sleep(next - now);
        continue;
      }
      // Every echo already due goes now (after a stall, several at once), each stamped with when it was due.
      due.push(next);
      pod.stack.sendEcho(dst, ID, (due.length - 1) & 0xffff, payload);
    }
    const until = performance.now() + graceMs;
    while (answered < due.length && performance.now() < until) await new Promise((r) => setTimeout(r, 2));
  } finally {
    sock.close();
  }
  const end = performance.now();
  let lost = 0;
  const latencies = due.map((d, i) => {
    if (replyAt[i] !== undefined) return replyAt[i] - d;
    lost++;
    return end - d;
  });
  latencies.sort((a, b) => a - b);
  return { latencies, p99: latencies[Math.floor(latencies.length * 0.99)] ?? NaN, max: latencies[latencies.length - 1] ?? NaN, lost };
}
