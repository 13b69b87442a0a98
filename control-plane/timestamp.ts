/** Formats epoch milliseconds as Kubernetes does: RFC 3339, UTC, no fractional seconds. */
export function formatTimestamp(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}
