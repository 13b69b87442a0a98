/**
 * The store on SQLite, laid out as k3s's kine lays etcd's model onto SQL: one
 * `log` table keyed by revision, one row per put or delete. Compaction drops
 * the revisions that newer ones superseded once they leave the history
 * window, so the file holds the current objects plus a bounded window, and a
 * write costs its own row.
 *
 * Durability: WAL with synchronous=FULL, so a commit is on disk (WAL fsync)
 * before the store acknowledges it; kill -9 loses nothing acknowledged and a
 * torn write is rolled back by SQLite on the next open. A full disk makes the
 * transaction fail (SQLITE_FULL), never half-apply. A delete row carries no
 * object, so a DELETE needs only a few pages; so that it can always have them,
 * the store keeps a small reserve file (ballast) beside the database and
 * gives it up when a DELETE hits a full disk, then takes it back once there
 * is room again.
 */
import Database from 'better-sqlite3';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import {
  readLegacyState,
  removeLegacyState,
  StateFileError,
  stateFromRows,
  type ChangeType,
  type LoadedState,
  type PersistBatch,
  type StorePersister,
} from './persistence.ts';
import type { SelectableAttrs } from './selectors.ts';

/** Version tag kept in the meta table. */
const FORMAT = 'podlab-store/sqlite-v1';

/** File name under `<stateDir>/apiserver/`. */
export const SQLITE_STORE_FILE = 'store.db';

/** Free pages kept after compaction (4 MiB at 4 KiB pages), so a DELETE on a full disk still has room. */
const SLACK_PAGES = 1024;

/** Ballast beside the database, given up so DELETEs work on a full disk. */
export const RESERVE_FILE = 'store.db.reserve';
const RESERVE_BYTES = 2 * 1024 * 1024;
/** While the reserve is gone, retaking it is tried every this many commits. */
const RESERVE_RETRY_COMMITS = 100;

/** The WAL is cut back to this after a checkpoint, so one big write does not leave a big WAL behind. */
const WAL_SIZE_LIMIT = 4 * 1024 * 1024;

const TYPE_CODE: Record<ChangeType, number> = { ADDED: 0, MODIFIED: 1, DELETED: 2 };
const CODE_TYPE: ChangeType[] = ['ADDED', 'MODIFIED', 'DELETED'];

type Row = [number, number, string, string, string | null, number, string | null];

/** Persists to `<stateDir>/apiserver/store.db`; imports an old `state.json` once. */
export class SqlitePersister implements StorePersister {
  /** One better-sqlite3 transaction per commit. */
  readonly atomicCommit = true;
  readonly dir: string;
  readonly path: string;
  private db?: Database.Database;
  private statements?: {
    insert: Database.Statement;
    setMeta: Database.Statement;
    dropSuperseded: Database.Statement;
    dropDeletes: Database.Statement;
  };
  private compactRv = 0;
  private readonly reservePath: string;
  /** Commits since the reserve was last found missing (0 = present). */
  private reserveMissingFor = 0;
  private txn?: (batch: PersistBatch) => void;

  constructor(stateDir: string) {
    this.dir = join(stateDir, 'apiserver');
    this.path = join(this.dir, SQLITE_STORE_FILE);
    this.reservePath = join(this.dir, RESERVE_FILE);
  }

  /** Writes the ballast if it is missing; on a full disk leaves nothing behind and tries again later. */
  private takeReserve(): void {
    if (existsSync(this.reservePath)) {
      this.reserveMissingFor = 0;
      return;
    }
    let fd: number | undefined;
    try {
      fd = openSync(this.reservePath, 'w', 0o600);
      const chunk = Buffer.alloc(64 * 1024);
      for (let n = 0; n < RESERVE_BYTES; n += chunk.length) writeSync(fd, chunk);
      fsyncSync(fd);
      this.reserveMissingFor = 0;
    } catch {
      if (fd !== undefined) closeSync(fd);
      fd = undefined;
      rmSync(this.reservePath, { force: true });
      this.reserveMissingFor = 1;
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }

  private open(): Database.Database {
    if (this.db) return this.db;
    mkdirSync(this.dir, { recursive: true });
    let db: Database.Database;
    try {
      db = new Database(this.path);
      // auto_vacuum only takes effect before the first table exists.
      db.pragma('auto_vacuum = INCREMENTAL');
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT}`);
      db.exec(`
        CREATE TABLE IF NOT EXISTS log (
          id INTEGER PRIMARY KEY,
          type INTEGER NOT NULL,
          resource TEXT NOT NULL,
          name TEXT NOT NULL,
          value TEXT,
          prev_revision INTEGER NOT NULL,
          prev_attrs TEXT
        );
        CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      `);
    } catch (err) {
      throw new StateFileError(`cannot open ${this.path}: ${(err as Error).message}`);
    }
    this.db = db;
    this.statements = {
      insert: db.prepare('INSERT INTO log (id, type, resource, name, value, prev_revision, prev_attrs) VALUES (?, ?, ?, ?, ?, ?, ?)'),
      setMeta: db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value'),
      // kine's compaction: a revision superseded by one at or below the compact revision, and deletes there, are history no one can ask for.
      dropSuperseded: db.prepare('DELETE FROM log WHERE id IN (SELECT prev_revision FROM log WHERE id > ? AND id <= ? AND prev_revision > 0)'),
      dropDeletes: db.prepare('DELETE FROM log WHERE id > ? AND id <= ? AND type = 2'),
    };
    this.txn = db.transaction((batch: PersistBatch) => this.apply(batch));
    this.takeReserve();
    return db;
  }

  load(): LoadedState | null {
    const db = this.open();
    const meta = new Map((db.prepare('SELECT key, value FROM meta').all() as { key: string; value: string }[]).map((r) => [r.key, r.value] as const));
    if (meta.get('format') === undefined) return this.importLegacy();
    if (meta.get('format') !== FORMAT) throw new StateFileError(`${this.path} has an unknown format ${meta.get('format')} (want ${FORMAT})`);
    const rv = Number(meta.get('rv') ?? 0);
    this.compactRv = Number(meta.get('compact_rv') ?? 0);
    const sections: Record<string, unknown> = {};
    for (const [k, v] of meta) if (k.startsWith('section:')) sections[k.slice('section:'.length)] = JSON.parse(v);
    const rows = (db.prepare('SELECT id, type, resource, name, value, prev_revision, prev_attrs FROM log').raw().all() as Row[]).map((r) => ({
      rv: r[0],
      type: CODE_TYPE[r[1]],
      resource: r[2],
      name: r[3],
      json: r[4],
      prevRv: r[5],
      ...(r[6] ? { prevAttrs: JSON.parse(r[6]) as SelectableAttrs } : {}),
    }));
    return stateFromRows(rows, rv, this.compactRv, sections);
  }

  /** First start: take over an old state.json if there is one, in one transaction, then remove it. */
  private importLegacy(): LoadedState | null {
    const legacy = readLegacyState(this.dir);
    const db = this.open();
    const { insert, setMeta } = this.statements as NonNullable<typeof this.statements>;
    db.transaction(() => {
      setMeta.run('format', FORMAT);
      if (!legacy) return;
      for (const o of legacy.objects) {
        const obj = JSON.parse(o.json) as { metadata: { name: string; namespace?: string; resourceVersion?: string } };
        const rv = Number(obj.metadata.resourceVersion);
        if (!Number.isInteger(rv) || rv <= 0) throw new StateFileError(`state file object ${obj.metadata.name} has a bad resourceVersion`);
        const key = obj.metadata.namespace ? `${obj.metadata.namespace}/${obj.metadata.name}` : obj.metadata.name;
        insert.run(rv, TYPE_CODE.ADDED, o.resource, key, o.json, 0, null);
      }
      setMeta.run('rv', String(legacy.rv));
      setMeta.run('compact_rv', String(legacy.compactRv));
      for (const [k, v] of Object.entries(legacy.sections)) setMeta.run(`section:${k}`, JSON.stringify(v));
    })();
    if (!legacy) return null;
    removeLegacyState(this.dir);
    this.compactRv = legacy.compactRv;
    return legacy;
  }

  commit(batch: PersistBatch): void {
    this.open();
    const txn = this.txn as (b: PersistBatch) => void;
    try {
      txn(batch);
    } catch (err) {
      // Deleting is how an operator makes room: give up the ballast for it, once.
      const onlyDeletes = batch.changes.length > 0 && batch.changes.every((c) => c.type === 'DELETED');
      if ((err as { code?: string }).code !== 'SQLITE_FULL' || !onlyDeletes || !existsSync(this.reservePath)) throw err;
      rmSync(this.reservePath, { force: true });
      this.reserveMissingFor = 1;
      txn(batch);
    }
    if (this.reserveMissingFor > 0 && this.reserveMissingFor++ % RESERVE_RETRY_COMMITS === 0) this.takeReserve();
    this.compactRv = Math.max(this.compactRv, batch.compactRv);
    this.reclaim();
  }

  private apply(batch: PersistBatch): void {
    const st = this.statements as NonNullable<typeof this.statements>;
    let last = 0;
    for (const ch of batch.changes) {
      st.insert.run(ch.rv, TYPE_CODE[ch.type], ch.resource, ch.key, ch.json, ch.prevRv, ch.prevAttrs ? JSON.stringify(ch.prevAttrs) : null);
      last = ch.rv;
    }
    if (last > 0) st.setMeta.run('rv', String(last));
    for (const [k, v] of Object.entries(batch.sections ?? {})) st.setMeta.run(`section:${k}`, JSON.stringify(v));
    if (batch.compactRv > this.compactRv) {
      st.dropSuperseded.run(this.compactRv, batch.compactRv);
      st.dropDeletes.run(this.compactRv, batch.compactRv);
      st.setMeta.run('compact_rv', String(batch.compactRv));
    }
  }

  /** Gives freed pages back to the file system past a slack, so compaction shrinks the file. */
  private reclaim(): void {
    const db = this.db as Database.Database;
    const free = db.pragma('freelist_count', { simple: true }) as number;
    if (free <= 2 * SLACK_PAGES) return;
    try {
      db.pragma(`incremental_vacuum(${free - SLACK_PAGES})`);
    } catch {
      // Only space reclamation failed; the commit itself is already durable.
    }
  }

  close(): void {
    this.db?.close();
    this.db = undefined;
  }
}
