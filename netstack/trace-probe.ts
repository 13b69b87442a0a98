/**
 * The one real packet `podlab trace` sends: an ICMP echo request or a UDP
 * datagram from a pod, sent inside a trace context so every hop it takes
 * (and its reply, or the ICMP error it provokes) is recorded.
 */
import type { Clock } from '../common/clock.ts';
import { IPPROTO_ICMP } from '../packet/ipv4.ts';
import type { IcmpEvent } from './ipv4/ip-stack.ts';
import type { PodNet } from './pod-net.ts';
import type { TraceFilter } from './trace.ts';

export type ProbeResult =
  | { kind: 'reply'; from: string; ttl?: number; rttMs: number; text?: string }
  | { kind: 'icmp-error'; from: string; type: string; code: number; nextHopMtu?: number; rttMs: number }
  | { kind: 'no-reply'; waitedMs: number }
  | { kind: 'local-error'; error: string };

export interface ProbeOptions {
  timeoutMs?: number;
  /** Payload bytes (ICMP data or UDP payload); 56 like ping by default. */
  size?: number;
  ttl?: number;
}

export async function sendProbe(pod: PodNet, f: TraceFilter, clock: Clock, opts: ProbeOptions = {}): Promise<ProbeResult> {
  const timeoutMs = opts.timeoutMs ?? 2000;
  const size = opts.size ?? 56;
  const ttl = opts.ttl ?? 64;
  const t0 = clock.now();
  let settle!: (r: ProbeResult) => void;
  const result = new Promise<ProbeResult>((r) => (settle = r));
  const timer = clock.setTimeout(() => settle({ kind: 'no-reply', waitedMs: timeoutMs }), timeoutMs);
  const ctx = { filter: f, leg: 'request' as const };
  const onIcmpError = (from: string, type: string, code: number, nextHopMtu?: number) => settle({ kind: 'icmp-error', from, type, code, nextHopMtu, rttMs: clock.now() - t0 });
  let close: () => void;
  let sent;
  if (f.protocol === IPPROTO_ICMP) {
    const sock = pod.stack.openIcmp(f.key, (e: IcmpEvent) => {
      if (e.kind === 'echo-reply') settle({ kind: 'reply', from: e.from, ttl: e.ttl, rttMs: clock.now() - t0 });
      else onIcmpError(e.from, e.type, e.code, e.nextHopMtu);
    });
    close = () => sock.close();
    const data = Buffer.alloc(size);
    for (let i = 16; i < size; i++) data[i] = (0x10 + i - 16) & 0xff;
    sent = pod.stack.tracer.run(ctx, () => pod.stack.sendEcho(f.b, f.key, 1, data, { ttl }));
  } else if (f.protocol === 6) {
    // A TCP probe is one connection attempt: the SYN and what answers it (SYN-ACK, or RST from a closed port).
    const sock = pod.stack.tracer.run(ctx, () => pod.tcp.connect({ host: f.b, port: f.port ?? 80, localPort: f.key }));
    sock.on('connect', () => settle({ kind: 'reply', from: f.b, rttMs: clock.now() - t0, text: 'SYN-ACK: connection established' }));
    sock.on('error', (e: Error & { code?: string }) =>
      e.code === 'ECONNREFUSED' ? settle({ kind: 'reply', from: f.b, rttMs: clock.now() - t0, text: 'RST: connection refused (port closed)' }) : settle({ kind: 'local-error', error: `${e.code ?? ''} ${e.message}`.trim() }),
    );
    close = () => sock.destroy();
    sent = { ok: true as const };
  } else {
    const sock = pod.stack.bindUdp(f.key, {
      message: (m) => settle({ kind: 'reply', from: m.srcIp, ttl: m.ttl, rttMs: clock.now() - t0, text: m.data.toString('utf8', 0, 200) }),
      error: (e) => onIcmpError(e.from, e.type, e.code),
    });
    close = () => sock.close();
    const data = Buffer.alloc(size, 0x2e);
    data.write('podlab trace probe\n'.slice(0, size));
    sent = pod.stack.tracer.run(ctx, () => pod.stack.sendUdp(f.key, f.b, f.port ?? 53, data, { ttl }));
  }
  if (!sent.ok) settle({ kind: 'local-error', error: sent.error === 'EMSGSIZE' ? `message too long (mtu ${sent.mtu})` : sent.error === 'ENETUNREACH' ? 'network is unreachable (no route)' : sent.error });
  try {
    return await result;
  } finally {
    timer.cancel();
    close();
  }
}
