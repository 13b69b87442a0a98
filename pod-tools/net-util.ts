/**
 * Helpers shared by the pod's network clients (curl, nc, transfer): sleeping on the context's clock, byte counts with suffixes, and a
 * UTF-8 decoder for streaming binary-safe-ish output to the CLI.
 */
import { StringDecoder } from 'node:string_decoder';
import type { ExecContext } from './types.ts';

/** Resolves after `ms` on the context's clock, or at once when the command is aborted. */
export function sleep(ctx: ExecContext, ms: number): Promise<void> {
  return new Promise((resolve) => {
    if (ctx.signal.aborted) return resolve();
    const t = ctx.clock.setTimeout(done, ms);
    function done() {
      t.cancel();
      ctx.signal.removeEventListener('abort', done);
      resolve();
    }
    ctx.signal.addEventListener('abort', done, { once: true });
  });
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
