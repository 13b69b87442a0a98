/**
 * Traffic flows: a stream of probes with fixed sequence numbers 1..count, one
 * per tick, from one pod to another, run by the pod tools themselves (`ping`,
 * `udp send` against `udp listen --echo`) in the background while later steps
 * run. The runner reads their output line by line and keeps, per sequence
 * number, when it went, whether it came back and its round trip.
 *
 * Why this shape: one probe per tick in order means the datagrams cross each
 * underlay link in sequence-number order, so the per-peer seeded impairment
 * draws its decisions in the same order on every run, and the same seed loses
 * the same sequence numbers (given the impairment is set before the flow starts
 * and nothing else crosses that link meanwhile).
 *
 * Adding a flow kind = one FlowDriver in DRIVERS and its name in validate.ts's
 * FLOW_KINDS.
 */
import type { SeededRng } from '../common/rng.ts';
import type { FlowSpec } from './model.ts';
import type { LabIo } from './lab-io.ts';
import { StepError, type PodInfo } from './pods.ts';

export interface Probe {
  seq: number;
  /** Scenario time the probe left (known, or estimated from a reply: arrival − rtt). */
  sentAt?: number;
  rttMs?: number;
  error?: string;
  dups?: number;
}

export interface FlowEndpoint {
  pod?: string;
  node?: string;
  /** A Service target: `namespace/name`, reached at its ClusterIP (`ip`). */
  service?: string;
  ip: string;
}

/** One flow's results, as the JSON report carries them. */
export interface FlowResult {
  name: string;
  kind: string;
  from: FlowEndpoint;
  to: FlowEndpoint;
  rateHz: number;
  count: number;
  size?: number;
  df?: boolean;
  startedAtMs: number;
  endedAtMs?: number;
  state: FlowState;
  note?: string;
  sent: number;
  received: number;
  delivery: number | null;
  lostSeqs: number[];
  duplicates: number;
  errors: Record<string, number>;
  latencyMs: LatencyStats | null;
  /** udp: sequence numbers the echo server saw (tells request loss from reply loss). */
  serverReceived?: number;
  requestLostSeqs?: number[];
  /** [seq, sent at (scenario ms), rtt ms or null] for every sent probe. */
  samples: [number, number, number | null][];
}

export interface LatencyStats {
  n: number;
  min: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  avg: number;
}

export type FlowState = 'starting' | 'running' | 'done' | 'interrupted' | 'failed';

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1];
}

export function latencyStats(rtts: number[]): LatencyStats | null {
  if (!rtts.length) return null;
  const s = [...rtts].sort((a, b) => a - b);
  const r3 = (x: number) => Math.round(x * 1000) / 1000;
  return { n: s.length, min: r3(s[0]), p50: r3(percentile(s, 50)), p90: r3(percentile(s, 90)), p99: r3(percentile(s, 99)), max: r3(s[s.length - 1]), avg: r3(s.reduce((a, b) => a + b, 0) / s.length) };
}

/** Classifies an ICMP error text as the tools print it. */
export function classifyError(text: string): string {
  if (/Frag needed/i.test(text)) return 'frag-needed';
  if (/Host Unreachable/i.test(text)) return 'host-unreachable';
  if (/Net(work)? Unreachable/i.test(text)) return 'net-unreachable';
  if (/Port Unreachable/i.test(text)) return 'port-unreachable';
  if (/Time to live exceeded/i.test(text)) return 'ttl-exceeded';
  return 'other';
}

/** A running (or finished) flow: the probes seen so far and the estimates derived from them. */
export class FlowRecord {
  state: FlowState = 'starting';
  startedAtMs = 0;
  /** When the first probe was due (after the start jitter). */
  firstDueMs = 0;
  endedAtMs?: number;
  note?: string;
  /** Exactly how many probes went, once the tool says so. */
  transmitted?: number;
  readonly probes = new Map<number, Probe>();
  readonly errors: Record<string, number> = {};
  serverSeqs?: Set<number>;
  from!: PodInfo;
  to!: FlowEndpoint;
  done: Promise<void> = Promise.resolve();
  readonly ac = new AbortController();

  constructor(readonly spec: FlowSpec) {}

  get intervalMs(): number {
    return 1000 / this.spec.rateHz;
  }

  get finished(): boolean {
    return this.state === 'done' || this.state === 'interrupted' || this.state === 'failed';
  }

  probe(seq: number): Probe {
    let p = this.probes.get(seq);
    if (!p) this.probes.set(seq, (p = { seq }));
    return p;
  }

  countError(kind: string, seq?: number): void {
    this.errors[kind] = (this.errors[kind] ?? 0) + 1;
    if (seq !== undefined) this.probe(seq).error ??= kind;
  }

  get received(): number {
    let n = 0;
    for (const p of this.probes.values()) if (p.rttMs !== undefined) n++;
    return n;
  }

  /** Probes with a known send time, by sequence number. */
  private anchors(): Probe[] {
    return [...this.probes.values()].filter((p) => p.sentAt !== undefined).sort((a, b) => a.seq - b.seq);
  }

  /** How many probes have gone by scenario time `now` (exact once the tool reported it). */
  sentBy(now: number): number {
    if (this.transmitted !== undefined) return this.transmitted;
    const a = this.anchors();
    const last = a[a.length - 1];
    const until = this.endedAtMs ?? now;
    const base = last ? { seq: last.seq, t: last.sentAt! } : { seq: 0, t: this.firstDueMs - this.intervalMs };
    const projected = base.seq + Math.max(0, Math.floor((until - base.t) / this.intervalMs));
    return Math.min(this.spec.count, Math.max(base.seq, projected));
  }

  /**
   * Every sent probe with its send time (interpolated between known ones for
   * the lost), whether it came back and its rtt. A running flow's probes of the
   * last `graceMs` are left out: their answers may still be on the way.
   */
  samples(now: number, graceMs = 1000): { seq: number; t: number; rtt: number | null; error?: string }[] {
    const n = this.sentBy(now);
    const a = this.anchors();
    const out: { seq: number; t: number; rtt: number | null; error?: string }[] = [];
    let j = 0;
    for (let seq = 1; seq <= n; seq++) {
      while (j < a.length && a[j].seq < seq) j++;
      const p = this.probes.get(seq);
      let t: number;
      if (p?.sentAt !== undefined) t = p.sentAt;
      else {
        const before = j > 0 ? a[j - 1] : undefined;
        const after = a[j]?.seq === seq ? a[j + 1] : a[j];
        if (before && after) t = before.sentAt! + ((after.sentAt! - before.sentAt!) * (seq - before.seq)) / (after.seq - before.seq);
        else if (before) t = before.sentAt! + (seq - before.seq) * this.intervalMs;
        else if (after) t = after.sentAt! - (after.seq - seq) * this.intervalMs;
        else t = this.firstDueMs + (seq - 1) * this.intervalMs;
      }
      if (!this.finished && t > now - graceMs) break;
      out.push({ seq, t, rtt: p?.rttMs ?? null, error: p?.error });
    }
    return out;
  }

  /** Live counter for progress lines: `received/sent`. */
  counter(now: number): string {
    return `${this.received}/${this.sentBy(now)}`;
  }

  result(now: number): FlowResult {
    const s = this.samples(now, 0);
    const rtts = s.filter((x) => x.rtt !== null).map((x) => x.rtt!);
    const lost = s.filter((x) => x.rtt === null).map((x) => x.seq);
    let dups = 0;
    for (const p of this.probes.values()) dups += p.dups ?? 0;
    const r3 = (x: number) => Math.round(x * 1000) / 1000;
    return {
      name: this.spec.name,
      kind: this.spec.kind,
      from: { pod: this.from?.key, node: this.from?.node, ip: this.from?.ip ?? '' },
      to: this.to ?? { ip: '' },
      rateHz: this.spec.rateHz,
      count: this.spec.count,
      size: this.spec.size,
      df: this.spec.df,
      startedAtMs: r3(this.startedAtMs),
      endedAtMs: this.endedAtMs === undefined ? undefined : r3(this.endedAtMs),
      state: this.state,
      note: this.note,
      sent: s.length,
      received: rtts.length,
      delivery: s.length ? rtts.length / s.length : null,
      lostSeqs: lost,
      duplicates: dups,
      errors: { ...this.errors },
      latencyMs: latencyStats(rtts),
      serverReceived: this.serverSeqs?.size,
      requestLostSeqs: this.serverSeqs ? lost.filter((q) => !this.serverSeqs!.has(q)) : undefined,
      samples: s.map((x) => [x.seq, r3(x.t), x.rtt === null ? null : r3(x.rtt)]),
    };
  }
}

/** What a flow driver may use. */
export interface FlowEnv {
  io: LabIo;
  /** Scenario time, ms. */
  now(): number;
  listeners: EchoListeners;
  rng: SeededRng;
}

/** Runs one flow to its end, feeding `rec`; resolves when the tool exits. */
export type FlowDriver = (rec: FlowRecord, env: FlowEnv) => Promise<void>;

/** Splits streamed output into whole lines. */
function lines(fn: (line: string) => void): (chunk: string) => void {
  let buf = '';
  return (chunk) => {
    buf += chunk;
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      fn(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  };
}

const secs = (ms: number) => String(Math.round(ms) / 1000);

/** ping: one ICMP echo per tick; `-M do -s N` for DF probes; replies and ICMP errors by icmp_seq. */
const pingDriver: FlowDriver = async (rec, env) => {
  const s = rec.spec;
  const argv = ['ping', '-c', String(s.count), '-i', secs(rec.intervalMs), '-W', '2'];
  if (s.size !== undefined) argv.push('-s', String(s.size));
  if (s.df !== undefined) argv.push('-M', s.df ? 'do' : 'dont');
  argv.push(rec.to.ip);
  const onLine = (line: string) => {
    const now = env.now();
    let m = /^\d+ bytes from [\d.]+: icmp_seq=(\d+) ttl=\d+ time=([\d.]+) ms( \(DUP!\))?/.exec(line);
    if (m) {
      const p = rec.probe(Number(m[1]));
      if (m[3]) p.dups = (p.dups ?? 0) + 1;
      else {
        p.rttMs = Number(m[2]);
        p.sentAt = now - p.rttMs;
      }
      return;
    }
    if ((m = /^From [\d.]+ icmp_seq=(\d+) (.*)$/.exec(line))) {
      const seq = Number(m[1]);
      rec.countError(classifyError(m[2]), seq);
      rec.probe(seq).sentAt ??= now;
      return;
    }
    if (/^ping: local error/.test(line)) return rec.countError('local');
    if ((m = /^(\d+) packets transmitted, (\d+) received/.exec(line))) rec.transmitted = Number(m[1]);
  };
  const onErr = (line: string) => {
    if (/^ping: /.test(line)) {
      rec.countError('local');
      rec.note = line.trim();
    }
  };
  await env.io.exec(rec.from.node, rec.from.key, argv, { stdout: lines(onLine), stderr: lines(onErr), signal: rec.ac.signal });
};

/** udp: `udp send` one datagram per tick to an echo server in the target pod; replies carry the sequence number. */
const udpDriver: FlowDriver = async (rec, env) => {
  const s = rec.spec;
  const port = s.port ?? 9000;
  const release = rec.to.pod ? await env.listeners.acquire(rec.to.pod, port, rec) : () => {};
  try {
    const argv = ['udp', 'send', rec.to.ip, String(port), '-n', String(s.count), '-i', secs(rec.intervalMs)];
    if (s.size !== undefined) argv.push('-s', String(s.size));
    let n = 0;
    const onLine = (line: string) => {
      const now = env.now();
      let m: RegExpExecArray | null;
      if (/^sent \d+ bytes to /.test(line)) {
        rec.probe(++n).sentAt = now;
        return;
      }
      if ((m = /^reply from [\d.]+:\d+: hello (\d+) from /.exec(line))) {
        const p = rec.probe(Number(m[1]));
        if (p.rttMs !== undefined) p.dups = (p.dups ?? 0) + 1;
        else p.rttMs = Math.max(0, now - (p.sentAt ?? now));
        return;
      }
      if ((m = /^From [\d.]+: (.*)$/.exec(line))) rec.countError(classifyError(m[1]), n || undefined);
    };
    const onErr = (line: string) => {
      if (/^udp: /.test(line)) {
        rec.countError('local', n + 1);
        rec.note = line.trim();
      }
    };
    await env.io.exec(rec.from.node, rec.from.key, argv, { stdout: lines(onLine), stderr: lines(onErr), signal: rec.ac.signal });
    rec.transmitted = n;
  } finally {
    release();
  }
};

/**
 * tcp and http: `probe` opens one new connection per tick (and for http sends
 * a GET on it); every probe prints its sequence number, its outcome and its
 * time, so lost and refused connections are known by number.
 */
function connectionDriver(kind: 'tcp' | 'http'): FlowDriver {
  return async (rec, env) => {
    const s = rec.spec;
    const port = s.port ?? 80;
    const target = kind === 'tcp' ? [rec.to.ip, String(port)] : [`http://${rec.to.ip}:${port}/`];
    const argv = ['probe', kind, ...target, '-c', String(s.count), '-i', secs(rec.intervalMs), '-W', '2'];
    const onLine = (line: string) => {
      const now = env.now();
      const m = /^seq=(\d+) (\S+) time=([\d.]+) ms/.exec(line);
      if (m) {
        const p = rec.probe(Number(m[1]));
        const ms = Number(m[3]);
        p.sentAt = now - ms;
        const failed = m[2].startsWith('error=') || (kind === 'http' && Number(m[2].slice('status='.length)) >= 500);
        if (failed) rec.countError(connectionError(m[2]), p.seq);
        else p.rttMs = ms;
        return;
      }
      const done = /^(\d+) probes, /.exec(line);
      if (done) rec.transmitted = Number(done[1]);
    };
    const onErr = (line: string) => {
      if (/^probe: /.test(line)) {
        rec.countError('local');
        rec.note = line.trim();
      }
    };
    await env.io.exec(rec.from.node, rec.from.key, argv, { stdout: lines(onLine), stderr: lines(onErr), signal: rec.ac.signal });
  };
}

/** A failed connection probe, in the flow's error vocabulary. */
function connectionError(outcome: string): string {
  if (outcome === 'error=ECONNREFUSED') return 'port-unreachable';
  if (outcome === 'error=EHOSTUNREACH') return 'host-unreachable';
  if (outcome === 'error=ENETUNREACH') return 'net-unreachable';
  return 'other';
}

/** Flow kinds → drivers. */
export const DRIVERS: Record<string, FlowDriver> = { ping: pingDriver, udp: udpDriver, tcp: connectionDriver('tcp'), http: connectionDriver('http') };

/**
 * UDP echo servers (`udp listen PORT --echo`) in target pods, one per pod and
 * port, shared by the flows that need them. A server whose agent restarts (or
 * whose pod is replaced) is started again for as long as a flow needs it; what
 * it hears is credited to the flows by source pod.
 */
export class EchoListeners {
  private readonly servers = new Map<string, { refs: Set<FlowRecord>; ac: AbortController; ready: Promise<void>; loop: Promise<void> }>();

  constructor(
    private readonly io: LabIo,
    private readonly podNode: (key: string) => string | undefined,
    private readonly podName: (ip: string) => string | undefined,
  ) {}

  /** Ensures a server on (pod, port); resolves once it listens, with a release function. */
  async acquire(podKey: string, port: number, flow: FlowRecord): Promise<() => void> {
    const id = `${podKey}:${port}`;
    let srv = this.servers.get(id);
    flow.serverSeqs = new Set();
    if (!srv) {
      const ac = new AbortController();
      let markReady!: () => void;
      const ready = new Promise<void>((r) => (markReady = r));
      const refs = new Set<FlowRecord>();
      const loop = this.serve(podKey, port, refs, ac.signal, markReady);
      srv = { refs, ac, ready, loop };
      this.servers.set(id, srv);
    }
    srv.refs.add(flow);
    const s = srv;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([s.ready, new Promise<void>((_, reject) => (timer = setTimeout(() => reject(new StepError(`udp echo server in ${podKey}:${port} did not start within 5 s`)), 5000)))]).finally(() => clearTimeout(timer));
    return () => {
      s.refs.delete(flow);
      if (!s.refs.size) {
        s.ac.abort();
        this.servers.delete(id);
      }
    };
  }

  private async serve(podKey: string, port: number, refs: Set<FlowRecord>, signal: AbortSignal, markReady: () => void): Promise<void> {
    const onLine = (line: string) => {
      if (/^listening on /.test(line)) return markReady();
      const m = /^from ([\d.]+):\d+: hello (\d+) from (\S+)/.exec(line);
      if (!m) return;
      for (const f of refs) if (f.from?.ip === m[1] || f.from?.name === m[3] || this.podName(m[1]) === f.from?.key) f.serverSeqs?.add(Number(m[2]));
    };
    while (!signal.aborted) {
      const node = this.podNode(podKey);
      if (node) {
        let buf = '';
        await this.io
          .exec(node, podKey, ['udp', 'listen', String(port), '--echo'], {
            signal,
            stdout: (chunk) => {
              buf += chunk;
              let i: number;
              while ((i = buf.indexOf('\n')) >= 0) {
                onLine(buf.slice(0, i));
                buf = buf.slice(i + 1);
              }
            },
          })
          .catch(() => {});
      }
      if (signal.aborted) break;
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  /** Stops every server and waits for them. */
  async close(): Promise<void> {
    const all = [...this.servers.values()];
    for (const s of all) s.ac.abort();
    this.servers.clear();
    await Promise.all(all.map((s) => s.loop));
  }
}
