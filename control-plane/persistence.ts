/**
 * The seam between the store and durable storage: one call per committed
 * mutation, carrying only what changed (a put or delete of each key with its
 * revision), so a write costs the object written, not the whole store.
 *
 * The layout follows etcd/kine: a log of revisions. The current state is the
 * newest revision of every key that is not a delete; the watch history is the
 * log after the compaction revision. An object inside the history window is
 * stored once, as its log row, not once as state and again as an event.
 */
import { closeSync, fsyncSync, openSync, readFileSync, readdirSync, renameSync, rmSync, writevSync } from 'node:fs';
import { join } from 'node:path';
import type { SelectableAttrs } from './selectors.ts';

/** Event type of a log entry. */
export type ChangeType = 'ADDED' | 'MODIFIED' | 'DELETED';

/** One put or delete of one key, at its own revision. */
export interface PersistedChange {
  /** The revision (resourceVersion) this change was given; strictly increasing. */
  rv: number;
  type: ChangeType;
  /** `group/plural` of the kind (resourceKeyOf). */
  resource: string;
  /** `NS/NAME` or `NAME`. */
  key: string;
  /** The object's JSON (with its resourceVersion); null for a delete, whose event is rebuilt from the previous revision. */
  json: string | null;
  /** Revision this change supersedes (0 for a create). */
  prevRv: number;
  /** Selector attributes of the previous revision, so a replayed MODIFIED can become ADDED/DELETED for a filtered watch. */
  prevAttrs?: SelectableAttrs;
}

/** What one commit hands to the persister. */
export interface PersistBatch {
  changes: readonly PersistedChange[];
  /** Controller sections whose value changed since the last commit (JSON-able). */
  sections?: Readonly<Record<string, unknown>>;
  /**
   * The history window now starts after this revision: superseded revisions
   * and deletes at or below it may be dropped (etcd's compaction).
   */
  compactRv: number;
}

/** One event of the history window as loaded. */
export interface LoadedEvent {
  rv: number;
  type: ChangeType;
  resource: string;
  /** For a DELETED event: the last state with the delete's resourceVersion. */
  json: string;
  prevAttrs?: SelectableAttrs;
}

/** Everything the store needs to come back after a restart. */
export interface LoadedState {
  rv: number;
  /** Events with rv > compactRv are in `events`; older resume points get 410. */
  compactRv: number;
  /** Current objects, each with its resource. */
  objects: { resource: string; json: string }[];
  /** The history window in revision order. */
  events: LoadedEvent[];
  sections: Record<string, unknown>;
}

/** Where the store's state lives. Every method is synchronous: the store's commit is one atomic call. */
export interface StorePersister {
  /**
   * True when one commit is one atomic transaction whatever its size, so the
   * store may put many writes into it (group commit); a persister that
   * applies a batch change by change (etcd) leaves it unset.
   */
  readonly atomicCommit?: boolean;
  /** Returns the saved state, or null on first start. Throws StateFileError when it cannot be read. */
  load(): LoadedState | null;
  /** Durably applies one commit before returning, or throws and applies nothing. */
  commit(batch: PersistBatch): void;
  /** Releases files or connections. */
  close(): void;
}

/** A failure reading or parsing saved state; the apiserver refuses to start on it rather than wipe state. */
export class StateFileError extends Error {
  override readonly name = 'StateFileError';
}

interface LogRow {
  rv: number;
  type: ChangeType;
  resource: string;
  name: string;
  json: string | null;
  prevRv: number;
  prevAttrs?: SelectableAttrs;
}

/**
 * The log kept in memory; for tests that want persistence round trips and
 * compaction without disk. Same semantics as the SQLite persister.
 */
export class MemoryPersister implements StorePersister {
  readonly atomicCommit = true;
  /** Number of commits so far (tests assert one per mutation). */
  commits = 0;
  /** The changes of the last commit (tests check a write carries only what changed). */
  lastBatch?: PersistBatch;
  private readonly rows = new Map<number, LogRow>();
  private rv = 0;
  private compactRv = 0;
  private sections: Record<string, unknown> = {};
  private started = false;

  load(): LoadedState | null {
    if (!this.started) return null;
    return stateFromRows([...this.rows.values()], this.rv, this.compactRv, structuredClone(this.sections));
  }

  commit(batch: PersistBatch): void {
    this.started = true;
    for (const ch of batch.changes) {
      this.rows.set(ch.rv, { rv: ch.rv, type: ch.type, resource: ch.resource, name: ch.key, json: ch.json, prevRv: ch.prevRv, prevAttrs: ch.prevAttrs });
      this.rv = Math.max(this.rv, ch.rv);
    }
    if (batch.sections) Object.assign(this.sections, structuredClone(batch.sections));
    if (batch.compactRv > this.compactRv) {
      for (const row of [...this.rows.values()]) {
        if (row.rv > this.compactRv && row.rv <= batch.compactRv) {
          if (row.prevRv > 0) this.rows.delete(row.prevRv);
          if (row.type === 'DELETED') this.rows.delete(row.rv);
        }
      }
      this.compactRv = batch.compactRv;
    }
    this.lastBatch = batch;
    this.commits++;
  }

  /** Rows kept (current objects plus the history window). */
  size(): number {
    return this.rows.size;
  }

  close(): void {}
}

/**
 * Builds the loaded state from log rows: the newest non-delete row of each
 * key is current, rows after compactRv are the history. A delete row holds no
 * object (so a DELETE needs almost no disk): its event is the previous
 * revision's object stamped with the delete's resourceVersion.
 */
export function stateFromRows(rows: readonly LogRow[], rv: number, compactRv: number, sections: Record<string, unknown>): LoadedState {
  const sorted = [...rows].sort((a, b) => a.rv - b.rv);
  const byRv = new Map(sorted.map((r) => [r.rv, r] as const));
  const current = new Map<string, LogRow>();
  const events: LoadedEvent[] = [];
  let maxRv = rv;
  for (const row of sorted) {
    const id = `${row.resource}\u0000${row.name}`;
    maxRv = Math.max(maxRv, row.rv);
    if (row.type === 'DELETED') current.delete(id);
    else current.set(id, row);
    if (row.rv <= compactRv) continue;
    let json = row.json;
    if (row.type === 'DELETED') {
      const prev = byRv.get(row.prevRv);
      if (!prev?.json) throw new StateFileError(`delete at revision ${row.rv} lost its previous revision ${row.prevRv}`);
      json = stampResourceVersion(prev.json, row.rv);
    }
    if (json === null) throw new StateFileError(`revision ${row.rv} has no object`);
    events.push({ rv: row.rv, type: row.type, resource: row.resource, json, ...(row.prevAttrs ? { prevAttrs: row.prevAttrs } : {}) });
  }
  const objects = [...current.values()].map((r) => ({ resource: r.resource, json: r.json as string }));
  return { rv: maxRv, compactRv, objects, events, sections };
}

function stampResourceVersion(json: string, rv: number): string {
  const obj = JSON.parse(json) as { metadata: Record<string, unknown> };
  obj.metadata.resourceVersion = String(rv);
  return JSON.stringify(obj);
}

// ------------------------------------------------------------ the old format

/** Version tag of the whole-document state.json that earlier versions rewrote on every mutation. */
export const LEGACY_STATE_FORMAT = 'podlab-apiserver-state/v1';

/** File name of the old whole-document state. */
export const LEGACY_STATE_FILE = 'state.json';

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Reads an old `<dir>/state.json` for a one-time import: its objects, counter
 * and sections. Its history is not carried over (the import compacts at the
 * file's resourceVersion, so informers resuming across the upgrade get 410
 * and relist once). Returns null when there is no such file.
 */
export function readLegacyState(dir: string): LoadedState | null {
  const path = join(dir, LEGACY_STATE_FILE);
  let doc: string;
  try {
    doc = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new StateFileError(`cannot read ${path}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(doc);
  } catch (err) {
    throw new StateFileError(`state file is not valid JSON: ${(err as Error).message}`);
  }
  if (!isRecord(parsed) || parsed.format !== LEGACY_STATE_FORMAT) throw new StateFileError(`state file has an unknown format (want ${LEGACY_STATE_FORMAT})`);
  const rv = Number(parsed.resourceVersion);
  if (!Number.isInteger(rv)) throw new StateFileError('state file has a bad resourceVersion');
  if (!Array.isArray(parsed.objects)) throw new StateFileError('state file lacks objects');
  const objects: LoadedState['objects'] = [];
  for (const item of parsed.objects) {
    if (!isRecord(item) || typeof item.resource !== 'string' || !isRecord(item.object) || !isRecord(item.object.metadata)) {
      throw new StateFileError('state file holds a malformed object entry');
    }
    objects.push({ resource: item.resource, json: JSON.stringify(item.object) });
  }
  return { rv, compactRv: rv, objects, events: [], sections: isRecord(parsed.sections) ? parsed.sections : {} };
}

/** Once imported, the old file and any temp file a crash left beside it are removed. */
export function removeLegacyState(dir: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const n of names) if (n === LEGACY_STATE_FILE || n.startsWith(`${LEGACY_STATE_FILE}.tmp-`)) rmSync(join(dir, n), { force: true });
}

// --------------------------------------------------------- small atomic files

/**
 * Writes `data` to `path` so that readers (and a post-crash restart) see
 * either the old or the new content, never a torn file. Used for small files
 * (endpoint.json); the store itself goes through a {@link StorePersister}.
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
