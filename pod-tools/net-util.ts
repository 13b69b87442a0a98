/**
 * Helpers shared by the pod's network clients (ping, curl, nc, transfer): waiting on the context's clock, byte counts with suffixes, and a
 * UTF-8 decoder for streaming binary-safe-ish output to the CLI.
 */
import { StringDecoder } from 'node:string_decoder';
import type { Clock, Timer } from '../common/clock.ts';
import type { ExecContext } from './types.ts';

/**
 * A command's waits on the context's clock: one timer at a time, and one abort
 * listener for as long as the command keeps it. A listener added and removed
 * around every interval of a ping was an EventTarget round trip per echo, and
 * kept the agent's optimizing compiler busy with it while the pings were timed.
 */
export class Waits {
  private release: (() => void) | undefined;
  private timer: Timer | undefined;
  private forReply = false;
  private readonly end = (): void => {
    this.timer?.cancel();
    this.timer = undefined;
    const release = this.release;
    this.release = undefined;
    release?.();
  };

  constructor(
    private readonly clock: Clock,
    private readonly signal: AbortSignal,
  ) {
    signal.addEventListener('abort', this.end, { once: true });
  }

  /** Sleeps `ms`, or until aborted; with `forReply`, also until {@link replied}. */
  sleep(ms: number, forReply: boolean): Promise<void> {
    if (this.signal.aborted) return Promise.resolve();
    this.forReply = forReply;
    return new Promise<void>((resolve) => {
      this.release = resolve;
      this.timer = this.clock.setTimeout(this.end, ms);
    });
  }

  /** A reply or an error came: ends a wait that was for one. */
  replied(): void {
    if (this.forReply) this.end();
  }

  close(): void {
    this.signal.removeEventListener('abort', this.end);
    this.end();
  }
}

/** Resolves after `ms` on the context's clock, or at once when the command is aborted. */
export async function sleep(ctx: ExecContext, ms: number): Promise<void> {
  const waits = new Waits(ctx.clock, ctx.signal);
  try {
    await waits.sleep(ms, false);
  } finally {
    waits.close();
  }
}

/** `5M`, `5MB`, `5MiB`, `64k`, `1G`, `1000` -> bytes (k/M/G are powers of 1024, as curl and dd read them). */
export function parseBytes(s: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*([kKmMgG]?)(?:i?[bB])?$/.exec(s.trim());
  if (!m) return undefined;
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g'];
  const n = Math.round(Number(m[1]) * mult);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** Human-readable throughput: `94.2 Mbit/s`. */
export function formatRate(bytes: number, ms: number): string {
  if (ms <= 0) return 'n/a';
  const bits = (bytes * 8 * 1000) / ms;
  if (bits >= 1e9) return `${(bits / 1e9).toFixed(2)} Gbit/s`;
  if (bits >= 1e6) return `${(bits / 1e6).toFixed(1)} Mbit/s`;
  if (bits >= 1e3) return `${(bits / 1e3).toFixed(1)} kbit/s`;
  return `${bits.toFixed(0)} bit/s`;
}

/** Streams bytes to the CLI (which carries strings) as UTF-8, never splitting a character. */
export function textOut(write: (s: string) => void): { write(b: Buffer): void; end(): void } {
  const dec = new StringDecoder('utf8');
  return {
    write: (b) => {
      const s = dec.write(b);
      if (s) write(s);
    },
    end: () => {
      const s = dec.end();
      if (s) write(s);
    },
  };
}
