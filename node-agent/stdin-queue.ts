/**
 * The standard input of a command run by `podlab exec`: chunks forwarded by
 * the CLI over the control channel (`{t:'stdin'}` / `{t:'stdin-end'}`),
 * read by the command as an async iterable of Buffers.
 */
export class StdinQueue implements AsyncIterable<Buffer> {
  private readonly chunks: Buffer[] = [];
  private ended = false;
  private wake: (() => void) | null = null;

  /** Appends data (ignored after end). */
  push(data: Buffer): void {
    if (this.ended || !data.length) return;
    this.chunks.push(data);
    this.wake?.();
  }

  /** End of input (EOF). */
  end(): void {
    this.ended = true;
    this.wake?.();
  }

  get isEnded(): boolean {
    return this.ended;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Buffer> {
    for (;;) {
      if (this.chunks.length) {
        yield this.chunks.shift()!;
        continue;
      }
      if (this.ended) return;
      await new Promise<void>((r) => (this.wake = r));
      this.wake = null;
    }
  }
}

/** An input that is already at EOF (a command run without `-i`). */
export const EMPTY_STDIN: AsyncIterable<Buffer> = {
  async *[Symbol.asyncIterator]() {
    /* EOF */
  },
};
