/**
 * Containers' standard output, kept as the kubelet keeps container logs:
 * per container, timestamped, bounded (the oldest lines go first, as a
 * rotated log file loses them), readable with kubectl's options (tailLines,
 * sinceSeconds, timestamps, limitBytes) and followable. A deleted pod's logs
 * go with it.
 */
import { isoUtc } from '../common/utc-time.ts';
export interface LogLine {
  /** Wall-clock milliseconds. */
  at: number;
  text: string;
}

export interface LogQuery {
  tailLines?: number;
  sinceSeconds?: number;
  timestamps?: boolean;
  limitBytes?: number;
}

/** Lines and bytes one container keeps (the kubelet's containerLogMaxSize is 10 MiB; a lab needs less). */
export const MAX_LINES = 10_000;
export const MAX_BYTES = 1 << 20;

interface Stream {
  lines: LogLine[];
  bytes: number;
  followers: Set<(l: LogLine) => void>;
}

/** RFC 3339 with nanoseconds, as `kubectl logs --timestamps` prints them. */
export function logTimestamp(ms: number): string {
  return isoUtc(ms, 9);
}

export function formatLine(l: LogLine, timestamps?: boolean): string {
  return timestamps ? `${logTimestamp(l.at)} ${l.text}\n` : `${l.text}\n`;
}

export class ContainerLogs {
  private readonly streams = new Map<string, Stream>();

  constructor(private readonly now: () => number = Date.now) {}

  private stream(pod: string, container: string): Stream {
    const k = `${pod}/${container}`;
    let s = this.streams.get(k);
    if (!s) this.streams.set(k, (s = { lines: [], bytes: 0, followers: new Set() }));
    return s;
  }

  /** The writer a container's app prints through. */
  writer(pod: string, container: string): (text: string) => void {
    return (text) => {
      const s = this.stream(pod, container);
      for (const part of text.split('\n')) {
        const l = { at: this.now(), text: part };
        s.lines.push(l);
        s.bytes += part.length + 1;
        while (s.lines.length > MAX_LINES || s.bytes > MAX_BYTES) s.bytes -= s.lines.shift()!.text.length + 1;
        for (const f of s.followers) f(l);
      }
    };
  }

  /** The lines a query selects. */
  read(pod: string, container: string, q: LogQuery = {}): LogLine[] {
    let lines = this.streams.get(`${pod}/${container}`)?.lines ?? [];
    if (q.sinceSeconds !== undefined) {
      const from = this.now() - q.sinceSeconds * 1000;
      lines = lines.filter((l) => l.at >= from);
    }
    if (q.tailLines !== undefined) lines = q.tailLines <= 0 ? [] : lines.slice(-q.tailLines);
    return lines;
  }

  /** The selected lines as text, cut at `limitBytes` as the API does. */
  text(pod: string, container: string, q: LogQuery = {}): string {
    const out = this.read(pod, container, q).map((l) => formatLine(l, q.timestamps)).join('');
    return q.limitBytes !== undefined ? Buffer.from(out).subarray(0, q.limitBytes).toString() : out;
  }

  /** Calls `cb` for every new line until the returned function is called. */
  follow(pod: string, container: string, cb: (l: LogLine) => void): () => void {
    const s = this.stream(pod, container);
    s.followers.add(cb);
    return () => s.followers.delete(cb);
  }

  /** Forgets a pod's containers (the pod was deleted). */
  drop(pod: string): void {
    for (const k of [...this.streams.keys()]) if (k.startsWith(`${pod}/`)) this.streams.delete(k);
  }
}
