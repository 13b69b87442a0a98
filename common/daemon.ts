/**
 * The lifecycle every podlab daemon (node agent, kernel-node agent) shares:
 * start, announce readiness as one JSON line on stdout (the launcher waits for
 * it), stop cleanly on SIGTERM/SIGINT (forced after 3 s), and on a failed
 * start print `{"event":"error"}` and exit 1 having stopped what started.
 */
import { parseArgs } from 'node:util';
import type { Logger } from './log.ts';

export interface Daemon {
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** Prints a startup/usage failure the launcher can read, and exits. */
export function failDaemon(name: string, msg: string, code = 2): never {
  process.stdout.write(JSON.stringify({ event: 'error', message: msg }) + '\n');
  process.stderr.write(`${name}: ${msg}\n`);
  process.exit(code);
}

/** Runs a daemon until a signal; `ready()` gives the fields of the ready line. */
export async function runDaemon(name: string, d: Daemon, log: Logger, ready: () => Record<string, unknown>): Promise<void> {
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info('stopping', { signal });
    setTimeout(() => process.exit(0), 3000).unref();
    await d.stop().catch(() => {});
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
  try {
    await d.start();
    process.stdout.write(JSON.stringify({ event: 'ready', pid: process.pid, ...ready() }) + '\n');
  } catch (e) {
    await d.stop().catch(() => {});
    failDaemon(name, (e as Error).message, 1);
  }
}

/** A daemon flag as node:util's parseArgs declares it. */
type FlagSpec = { type: 'string' | 'boolean'; default?: string | boolean };

/**
 * `--help` / `-h` for a daemon: prints its usage, one line per flag with its
 * default, taken from the very option table the daemon parses with, and exits 0.
 * Does nothing when neither flag is in `argv`.
 */
export function helpIfAsked(name: string, summary: string, options: Record<string, FlagSpec>, argv: readonly string[] = process.argv.slice(2)): void {
  if (!argv.includes('--help') && !argv.includes('-h')) return;
  const lines = Object.entries(options).map(([flag, o]) => {
    const left = `  --${flag}${o.type === 'string' ? ' <value>' : ''}`;
    return o.default === undefined ? left : `${left.padEnd(34)} default: ${String(o.default)}`;
  });
  process.stdout.write(`Usage: podlab ${name} [flags]\n\n${summary}\n\nFlags:\n${lines.join('\n')}\n  -h, --help                       this help\n`);
  process.exit(0);
}

/** What a daemon's flags parse to, with checks that fail the way {@link failDaemon} does. */
export interface DaemonFlags<V> {
  values: V;
  fail(msg: string, code?: number): never;
  /** An integer flag within [min, max]. */
  int(flag: string, s: string, min: number, max: number): number;
  /** A flag with a closed set of values. */
  oneOf<T extends string>(flag: string, s: string, values: readonly T[]): T;
  /** A BGP hold time: 0 (no keepalives) or 3-65535 seconds (RFC 4271 §4.2). */
  holdTime(flag: string, s: string): number;
}

/**
 * A daemon's command line: `--help`, then node:util's parseArgs over `options`,
 * then the flags it cannot run without. Every failure is a usage error (exit 2).
 */
export function parseDaemonFlags<O extends Record<string, FlagSpec>>(
  name: string,
  summary: string,
  options: O,
  required: readonly (keyof O & string)[],
  /** The `podlab` verb that runs it, as its usage line names it. */
  verb = name,
): DaemonFlags<ReturnType<typeof parseArgs<{ options: O }>>['values']> {
  helpIfAsked(verb, summary, options);
  const fail = (msg: string, code = 2): never => failDaemon(name, msg, code);
  type Values = ReturnType<typeof parseArgs<{ options: O }>>['values'];
  let values: Values | undefined;
  try {
    values = parseArgs({ options }).values;
  } catch (e) {
    fail((e as Error).message);
  }
  for (const req of required) if (!(values as Record<string, unknown>)[req]) fail(`--${req} is required`);
  const int = (flag: string, s: string, min: number, max: number): number => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < min || n > max) fail(`--${flag}: '${s}' must be an integer from ${min} to ${max}`);
    return n;
  };
  return {
    values: values!,
    fail,
    int,
    oneOf<T extends string>(flag: string, s: string, allowed: readonly T[]): T {
      if (!(allowed as readonly string[]).includes(s)) fail(`--${flag}: must be one of ${allowed.join(', ')}, got '${s}'`);
      return s as T;
    },
    holdTime(flag: string, s: string): number {
      const n = Number(s);
      if (!Number.isInteger(n) || (n !== 0 && (n < 3 || n > 65535))) fail(`--${flag}: '${s}' must be 0 or 3-65535 seconds (RFC 4271)`);
      return n;
    },
  };
}
