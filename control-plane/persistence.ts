/**
 * Durable storage of the apiserver's whole state as one JSON document.
 *
 * Every committed mutation rewrites `<stateDir>/apiserver/state.json`
 * atomically (temp file, fsync, rename, fsync of the directory) before the
 * store reports the mutation as done, so a `kill -9` right after a 201 loses
 * nothing and a crash mid-write leaves the previous complete file in place.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/** Where the store's serialized state lives. */
export interface StatePersister {
  /** Returns the last saved document, or null on first start. */
  load(): string | null;
  /** Durably replaces the saved document; throws if it could not. */
  save(document: string): void;
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

  save(document: string): void {
    mkdirSync(this.dir, { recursive: true });
    writeFileAtomic(this.path, document);
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

  save(document: string): void {
    this.document = document;
    this.saves++;
  }
}

/**
 * Writes `data` to `path` so that readers (and a post-crash restart) see
 * either the old or the new content, never a torn file.
 */
export function writeFileAtomic(path: string, data: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w', 0o644);
  try {
    const buf = Buffer.from(data, 'utf8');
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
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
