/**
 * Progress on stderr: a line per step (with the running flows' counters) and
 * per checked condition; on a terminal, also a status line at the bottom that
 * is redrawn a few times a second (a text bar of the timeline and the flows'
 * live received/sent counters). Piped output gets the plain lines only.
 */
export interface ProgressOut {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export class Progress {
  private statusFn?: () => string;
  private timer?: NodeJS.Timeout;
  private shown = false;

  constructor(private readonly out: ProgressOut) {}

  get tty(): boolean {
    return !!this.out.isTTY;
  }

  /** A permanent line. */
  line(s: string): void {
    this.clearStatus();
    this.out.write(s + '\n');
    this.drawStatus();
  }

  /** Starts redrawing the live status line (terminals only). */
  live(fn: () => string, everyMs = 250): void {
    this.statusFn = fn;
    if (!this.tty) return;
    this.timer = setInterval(() => {
      this.clearStatus();
      this.drawStatus();
    }, everyMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.clearStatus();
    this.statusFn = undefined;
  }

  private clearStatus(): void {
    if (this.tty && this.shown) this.out.write('\r\x1b[K');
    this.shown = false;
  }

  private drawStatus(): void {
    if (!this.tty || !this.statusFn) return;
    const width = Math.max(40, (this.out.columns || 100) - 1);
    const s = this.statusFn();
    this.out.write(s.length > width ? s.slice(0, width - 1) + '…' : s);
    this.shown = true;
  }
}

/** `[#####.....]` for done/total. */
export function bar(done: number, total: number, width = 16): string {
  const n = total ? Math.round((done / total) * width) : 0;
  return `[${'#'.repeat(n)}${'.'.repeat(width - n)}]`;
}
