/**
 * Durable storage of the apiserver's whole state as one JSON document.
 *
 * Every committed mutation rewrites `<stateDir>/apiserver/state.json`
 * atomically (temp file, fsync, rename, fsync of the directory) before the
 * store reports the mutation as done, so a `kill -9` right after a 201 loses
 * nothing and a crash mid-write leaves the previous complete file in place.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writevSync } from 'node:fs';
import { join } from 'node:path';

/** Where the store's serialized state lives. */
export interface StatePersister {
  /** Returns the last saved document, or null on first start. */
  load(): string | null;
  /**
   * Durably replaces the saved document, given as UTF-8 chunks to be written
   * back to back (the store caches each object's and event's bytes, so a
   * save is a gather-write rather than a re-serialization). Throws if it could not.
   */
  save(chunks: readonly Uint8Array[]): void;
}

/** A failure reading or parsing the state file; the apiserver refuses to start on it rather than wipe state. */
export class StateFileError extends Error {
  override readonly name = 'StateFileError';
}

/** Persists to `<stateDir>/apiserver/state.json`. */
export class FileStatePersister implements StatePersister {
  /** Directory holding state.json (created on first save). */
  readonly dir: string;
  /** Full path of state.json. */
  readonly path: string;

  constructor(stateDir: string) {
    this.dir = join(stateDir, 'apiserver');
    this.path = join(this.dir, 'state.json');
  }

  load(): string | null {
    try {
      return readFileSync(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new StateFileError(`cannot read ${this.path}: ${(err as Error).message}`);
    }
  }

  save(chunks: readonly Uint8Array[]): void {
    mkdirSync(this.dir, { recursive: true });
    writeFileAtomic(this.path, chunks);
  }
}

/** Keeps the document in memory; for tests that want persistence round trips without disk. */
export class MemoryStatePersister implements StatePersister {
  document: string | null = null;
  /** Number of saves so far (tests assert one save per mutation). */
  saves = 0;

  load(): string | null {
    return this.document;
  }

  save(chunks: readonly Uint8Array[]): void {
    this.document = Buffer.concat(chunks).toString('utf8');
    this.saves++;
  }
}

/**
 * Writes `data` to `path` so that readers (and a post-crash restart) see
 * either the old or the new content, never a torn file.
 */
export function writeFileAtomic(path: string, data: string | readonly Uint8Array[]): void {
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w', 0o644);
  try {
    const chunks = typeof data === 'string' ? [Buffer.from(data, 'utf8')] : data;
    writeAllChunks(fd, chunks);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  renameSync(tmp, path);
  // The rename itself is only durable once the directory entry is flushed.
  const dirFd = openSync(join(path, '..'), 'r');
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
}

/** Gather-writes every chunk, coping with short writes and the iovec limit. */
function writeAllChunks(fd: number, chunks: readonly Uint8Array[]): void {
  const IOV_MAX = 1024;
  let pending = chunks.filter((c) => c.byteLength > 0).map((c) => Buffer.from(c.buffer, c.byteOffset, c.byteLength));
  while (pending.length > 0) {
    const batch = pending.slice(0, IOV_MAX);
    let written = writevSync(fd, batch);
    // Drop fully written chunks; keep the unwritten tail of a partially written one.
    let i = 0;
    while (i < batch.length && written >= batch[i].length) {
      written -= batch[i].length;
      i++;
    }
    const rest = pending.slice(i);
    if (written > 0) rest[0] = rest[0].subarray(written);
    pending = rest;
  }
}
