/**
 * The store on a real etcd (`--store etcd://HOST:PORT`), through etcd's v3
 * JSON gateway. Keys are laid out as kube-apiserver lays them out
 * (/registry/pods/NS/NAME, /registry/minions/NAME,
 * /registry/services/specs/NS/NAME, /registry/GROUP/PLURAL/... for custom
 * resources), values are the objects' JSON, and an object's resourceVersion
 * is its etcd mod_revision.
 *
 * Each change is one etcd transaction guarded, as kube-apiserver guards it,
 * by the key's mod_revision (0 for a create), so the revision etcd gives it
 * is the next one and must equal the one the store assigned; anything else
 * means another writer and the commit fails. Controller sections ride in the
 * same transaction under /registry/podlab.io/sections/NAME so they do not
 * take revisions of their own. Compaction is etcd's own.
 */
import { StateFileError, type LoadedState, type PersistBatch, type PersistedChange, type StorePersister } from './persistence.ts';
import { SyncHttp } from './sync-http.ts';

/** Key prefix of every object. */
const REGISTRY = '/registry/';
const SECTIONS = '/registry/podlab.io/sections/';

/** Core kinds whose etcd paths differ from their plural (as in kube-apiserver's storage). */
const CORE_PATHS: Record<string, string> = { nodes: 'minions', services: 'services/specs' };

/** API groups served by kube-apiserver itself, which store under /registry/PLURAL like core. */
function isBuiltinGroup(group: string): boolean {
  return !group.includes('.') || group.endsWith('.k8s.io');
}

/** The etcd prefix of a resource key (`group/plural`), without the trailing slash. */
export function etcdPrefixOf(resource: string): string {
  const slash = resource.indexOf('/');
  const group = resource.slice(0, slash);
  const plural = resource.slice(slash + 1);
  if (group === '') return `${REGISTRY}${CORE_PATHS[plural] ?? plural}`;
  return isBuiltinGroup(group) ? `${REGISTRY}${plural}` : `${REGISTRY}${group}/${plural}`;
}

/** Parses `etcd://HOST:PORT` into the gateway's base URL. */
export function parseEtcdUrl(text: string): string {
  const m = /^etcd:\/\/([^/:]+|\[[0-9a-fA-F:]+\]):(\d{1,5})\/?$/.exec(text);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) throw new Error(`--store: want etcd://HOST:PORT, got ${JSON.stringify(text)}`);
  return `http://${m[1]}:${m[2]}`;
}

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const unb64 = (s: string | undefined): string => Buffer.from(s ?? '', 'base64').toString('utf8');

/** The key just past every key with this prefix (etcd's range_end for a prefix). */
function prefixEnd(prefix: string): string {
  const buf = Buffer.from(prefix, 'utf8');
  buf[buf.length - 1]++;
  return buf.toString('base64');
}

interface RangeReply {
  header?: { revision?: string };
  kvs?: { key: string; value?: string; mod_revision?: string }[];
  more?: boolean;
}

/** Persists to etcd at `base` (http://HOST:PORT). `resources` are the registry's resource keys, to map keys back. */
export class EtcdPersister implements StorePersister {
  private readonly http = new SyncHttp();
  private readonly prefixes: [string, string][];
  private lastCompacted = 0;

  constructor(
    readonly base: string,
    resources: readonly string[],
  ) {
    // Longest prefix first, so /registry/services/specs wins over a shorter one.
    this.prefixes = resources.map((r) => [`${etcdPrefixOf(r)}/`, r] as [string, string]).sort((a, b) => b[0].length - a[0].length);
  }

  private call<T>(path: string, body: unknown): T {
    const res = this.http.post(`${this.base}${path}`, body);
    if (res.status !== 200) throw new Error(`etcd ${path}: HTTP ${res.status}: ${res.body.slice(0, 300)}`);
    return JSON.parse(res.body) as T;
  }

  /** Current objects from a paged range read at one revision; the history window starts at that revision. */
  load(): LoadedState {
    let revision = 0;
    const objects: LoadedState['objects'] = [];
    const sections: Record<string, unknown> = {};
    let start = b64(REGISTRY);
    for (;;) {
      const reply = this.call<RangeReply>('/v3/kv/range', { key: start, range_end: prefixEnd(REGISTRY), limit: 500, ...(revision ? { revision: String(revision) } : {}) });
      revision ||= Number(reply.header?.revision ?? 0);
      const kvs = reply.kvs ?? [];
      for (const kv of kvs) {
        const key = unb64(kv.key);
        const value = unb64(kv.value);
        if (key.startsWith(SECTIONS)) {
          sections[key.slice(SECTIONS.length)] = JSON.parse(value);
          continue;
        }
        const hit = this.prefixes.find(([p]) => key.startsWith(p));
        if (!hit) continue;
        let obj: { metadata?: Record<string, unknown> };
        try {
          obj = JSON.parse(value) as typeof obj;
        } catch {
          throw new StateFileError(`etcd key ${key} does not hold JSON`);
        }
        if (!obj.metadata) throw new StateFileError(`etcd key ${key} holds an object without metadata`);
        obj.metadata.resourceVersion = String(kv.mod_revision ?? '0');
        objects.push({ resource: hit[1], json: JSON.stringify(obj) });
      }
      if (!reply.more || kvs.length === 0) break;
      // Next page starts just after the last key.
      start = Buffer.concat([Buffer.from(kvs[kvs.length - 1].key, 'base64'), Buffer.from([0])]).toString('base64');
    }
    this.lastCompacted = revision;
    return { rv: revision, compactRv: revision, objects, events: [], sections };
  }

  commit(batch: PersistBatch): void {
    batch.changes.forEach((ch, i) => this.commitOne(ch, i === batch.changes.length - 1 ? batch.sections : undefined));
    if (batch.changes.length === 0 && batch.sections) throw new Error('etcd store: a sections-only commit would take a revision of its own');
    // etcd keeps every revision until compacted; follow the store's window, in steps so it is not a request per write.
    if (batch.compactRv - this.lastCompacted >= 1000) {
      try {
        this.call('/v3/kv/compaction', { revision: String(batch.compactRv) });
        this.lastCompacted = batch.compactRv;
      } catch {
        // Compaction is housekeeping; the commit is already durable.
      }
    }
  }

  private commitOne(ch: PersistedChange, sections: PersistBatch['sections']): void {
    const key = b64(`${etcdPrefixOf(ch.resource)}/${ch.key}`);
    const ops: unknown[] = [ch.json === null ? { request_delete_range: { key } } : { request_put: { key, value: b64(ch.json) } }];
    for (const [name, v] of Object.entries(sections ?? {})) ops.push({ request_put: { key: b64(`${SECTIONS}${name}`), value: b64(JSON.stringify(v)) } });
    const reply = this.call<{ header?: { revision?: string }; succeeded?: boolean }>('/v3/kv/txn', {
      compare: [{ target: 'MOD', key, result: 'EQUAL', mod_revision: String(ch.prevRv) }],
      success: ops,
    });
    if (!reply.succeeded) throw new Error(`etcd: ${ch.resource} ${ch.key} changed underneath (another writer?)`);
    const got = Number(reply.header?.revision ?? 0);
    if (got !== ch.rv) throw new Error(`etcd gave revision ${got}, the store expected ${ch.rv} (another writer on this etcd?)`);
  }

  close(): void {
    this.http.close();
  }
}
