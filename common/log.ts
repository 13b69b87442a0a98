/**
 * Namespaced loggers (`podlab:agent`, `podlab:vtep`) writing one line per event
 * to stderr. Debug lines appear when PODLAB_DEBUG matches the namespace
 * (`*`, `podlab:*`, or a comma list of prefixes), as the `debug` package does.
 */
import { isoUtc } from './utc-time.ts';

export interface Logger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  debug(msg: string, fields?: Record<string, unknown>): void;
  readonly debugEnabled: boolean;
}

function debugMatches(ns: string): boolean {
  const spec = process.env.PODLAB_DEBUG;
  if (!spec) return false;
  return spec.split(',').some((p) => {
    const pat = p.trim();
    if (pat === '*' || pat === '1' || pat === 'true') return true;
    return pat.endsWith('*') ? ns.startsWith(pat.slice(0, -1)) : ns === pat;
  });
}

/** A logger for one namespace. */
export function createLogger(ns: string): Logger {
  const debugEnabled = debugMatches(ns);
  const line = (level: string, msg: string, fields?: Record<string, unknown>) => {
    const extra = fields ? ' ' + JSON.stringify(fields) : '';
    process.stderr.write(`${isoUtc(Date.now())} ${level} ${ns} ${msg}${extra}\n`);
  };
  return {
    debugEnabled,
    info: (m, f) => line('INFO', m, f),
    warn: (m, f) => line('WARN', m, f),
    error: (m, f) => line('ERROR', m, f),
    debug: (m, f) => {
      if (debugEnabled) line('DEBUG', m, f);
    },
  };
}
