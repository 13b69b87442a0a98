import { isoUtc } from '../common/utc-time.ts';

/** Formats epoch milliseconds as Kubernetes does: RFC 3339, UTC, no fractional seconds. */
export function formatTimestamp(ms: number): string {
  return isoUtc(ms, 0);
}
