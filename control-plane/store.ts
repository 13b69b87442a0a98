/**
 * The apiserver's object store: what etcd plus the generic registry do in a
 * real cluster, in one synchronous in-memory class.
 *
 * Why synchronous: a mutation validates, runs admission (IPAM, scheduler),
 * bumps the single resourceVersion counter, persists the change and
 * only then delivers watch events, all in one call. Nothing can interleave,
 * so there is no window in which a watcher sees an event that a crash could
 * still lose, and no window between replaying history and going live.
 * Persistence is per change (see persistence.ts): a write costs the object
 * written, and the watch history is a window of revisions, compacted as etcd
 * compacts, bounded in count and bytes.
 *
 * Group commit (the apiserver's mode): a transaction's fsync, not its rows,
 * is what a write costs, so the writes of one event-loop turn are applied in
 * memory at once (each gets its resourceVersion, conflicts are checked against
 * them) and persisted together in one transaction at the end of the turn.
 * Their watch events and in-process subscribers only run after that commit,
 * and the HTTP layer awaits {@link Store.committed} before answering, so a 2xx
 * still means on disk and no watcher sees what a crash could lose. If the
 * transaction fails, exactly its writes are rolled back and answered 500.
 */
import { randomUUID, randomInt } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { wallClock, type Clock } from '../common/clock.ts';
import { createLogger } from '../common/log.ts';
import { formatTimestamp } from './timestamp.ts';
import { alreadyExists, ApiError, badRequest, conflict, expired, forbidden, internalError, invalid, makeStatus, notFound } from './errors.ts';
import { applyJsonPatch, applyMergePatch, type PatchType } from './merge-patch.ts';
import { schemaOf } from './openapi.ts';
import { applyStrategicMergePatch } from './strategic-merge-patch.ts';
import { NodeIpam, parseIpamConfig } from './ipam.ts';
import { StateFileError, type LoadedState, type PersistedChange, type StorePersister } from './persistence.ts';
import { SqlitePersister } from './sqlite-persister.ts';
import { Scheduler } from './scheduler.ts';
import { ServiceAllocator, parseServiceAllocConfig } from './service-allocator.ts';
import { EndpointSliceController } from './endpointslice-controller.ts';
import { EndpointsController } from './endpoints-controller.ts';
import { ServiceAccountController } from './serviceaccount-controller.ts';
import { LoadBalancerAllocator } from './lb-allocator.ts';
import { installDefaultIngressClass } from './ingress-resources.ts';
import { EventRecorder } from './event-recorder.ts';
import { GarbageCollector } from './garbage-collector.ts';
import { PodEventController } from './pod-event-controller.ts';
import { ReplicaSetController } from './replicaset-controller.ts';
import { DeploymentController } from './deployment-controller.ts';
import { DaemonSetController } from './daemonset-controller.ts';
import { NodeLifecycleController, type NodeLifecycleOptions } from './node-lifecycle-controller.ts';
import { apiVersionOf, NAMESPACES, registry as defaultRegistry, resourceKeyOf, type ResourceRegistry, type ResourceType } from './resources.ts';
import { matches, parseSelector, selectableAttrs, type SelectableAttrs, type Selector } from './selectors.ts';
import type { KubeObject, List, WatchEventType } from './types.ts';
import { validateObjectMeta } from './validation.ts';

/** Default number of watch events kept in memory for `watch?resourceVersion=N`. */
export const DEFAULT_HISTORY_LIMIT = 10_000;

/**
 * Default bytes of object JSON the watch history may hold. Memory and disk
 * keep the same window, so this bounds both: 100 patches of a 3 MiB object
 * keep the newest ~10 versions, not 100. Older resume points get 410 and a
 * relist, as when etcd has compacted.
 */
export const DEFAULT_HISTORY_BYTES = 32 * 1024 * 1024;

/** Namespaces that exist from the first start and may not be deleted. */
export const SYSTEM_NAMESPACES = ['default', 'kube-system', 'kube-public', 'kube-node-lease'] as const;

/** A resource as the caller names it: a registry entry or any name the registry resolves. */
export type ResourceRef = ResourceType | string;

/** A committed change, as delivered to in-process subscribers (controllers). */
export interface StoreEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  rt: ResourceType;
  /** The object after the change (for DELETED: the last state, with the deletion's resourceVersion). Do not mutate. */
  object: KubeObject;
  /** The object before the change (MODIFIED/DELETED). Do not mutate. */
  prev?: KubeObject;
  resourceVersion: number;
}

/** What an admission hook sees: it may mutate `obj` or throw an ApiError. */
export interface AdmissionContext {
  op: 'create' | 'update';
  rt: ResourceType;
  obj: KubeObject;
  old?: KubeObject;
  subresource?: 'status';
}

/** A mutating/validating admission step run after validation, before commit. */
export type AdmissionHook = (ctx: AdmissionContext) => void;

/** Extra state a controller persists with the store (e.g. the scheduler's round-robin pointer). */
export interface StateSection {
  save(): unknown;
  load(data: unknown): void;
}

/** Options of list and watch. */
export interface ListOptions {
  /** Limit to one namespace (namespaced kinds only). */
  namespace?: string;
  labelSelector?: string;
  fieldSelector?: string;
}

/** Options of watch. */
export interface WatchOptions extends ListOptions {
  /** Absent or "0": synthetic ADDED for current objects first; "N": every event after N. */
  resourceVersion?: string;
}

/** One event as delivered to a watcher; `json` is the object's serialized form (shared, do not parse twice). */
export interface StoreWatchEvent {
  type: Exclude<WatchEventType, 'BOOKMARK' | 'ERROR'>;
  object: KubeObject;
  json: string;
}

/** Handle of an active watch. */
export interface WatchHandle {
  stop(): void;
}

/** Construction options of {@link Store}. */
export interface StoreOptions {
  persister?: StorePersister;
  clock?: Clock;
  historyLimit?: number;
  /** Bytes of object JSON the history window may hold (default 32 MiB; the newest event always stays). */
  historyBytes?: number;
  registry?: ResourceRegistry;
  /**
   * Persist the writes of one event-loop turn in one commit (see the top of
   * this file); only with a persister whose commit is one atomic transaction.
   * Off by default: every write is then persisted before its call returns.
   */
  groupCommit?: boolean;
  /**
   * Under group commit, how long the first write of a transaction waits for
   * others to join it (ms); 0 (the default) means until the end of the
   * current event-loop turn. A few ms let writes that arrive in quick
   * succession (a hundred agents' status updates) share one fsync.
   */
  groupCommitWindowMs?: number;
}

interface StoredRecord {
  rt: ResourceType;
  obj: KubeObject;
  json: string;
  attrs: SelectableAttrs;
}

interface HistoryEntry {
  rv: number;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  rec: StoredRecord;
  prevAttrs?: SelectableAttrs;
}

interface Watcher {
  rt: ResourceType;
  namespace?: string;
  selector: Selector;
  sink: (ev: StoreWatchEvent) => void;
}

interface Change {
  rt: ResourceType;
  key: string;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  /** New object (ADDED/MODIFIED); its resourceVersion is assigned at commit. */
  next?: KubeObject;
  prev?: StoredRecord;
}

/** Writes applied in memory and not yet persisted: one transaction at the end of the turn. */
interface PendingGroup {
  /** What to restore if the transaction fails. */
  savedRv: number;
  savedHistoryLength: number;
  savedHistoryBytes: number;
  undo: { map: Map<string, StoredRecord>; key: string; prev?: StoredRecord }[];
  persisted: PersistedChange[];
  events: { ev: StoreEvent; entry: HistoryEntry }[];
  /** Settles once the transaction committed (or failed: an ApiError 500). */
  done: Promise<void>;
  resolve: () => void;
  reject: (err: ApiError) => void;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const TOP_ORDER = ['apiVersion', 'kind', 'metadata', 'spec', 'status'];
const META_ORDER = ['name', 'generateName', 'namespace', 'uid', 'resourceVersion', 'generation', 'creationTimestamp', 'labels', 'annotations'];

function ordered<T extends object>(obj: T, order: readonly string[]): T {
  const out: Record<string, unknown> = {};
  const src = obj as Record<string, unknown>;
  for (const k of order) if (src[k] !== undefined) out[k] = src[k];
  for (const [k, v] of Object.entries(src)) if (!order.includes(k) && v !== undefined) out[k] = v;
  return out as T;
}

/** Canonical key order (apiVersion, kind, metadata, spec, status), so stored JSON reads like kubectl output. */
function canonical(obj: KubeObject): KubeObject {
  const top = ordered(obj, TOP_ORDER);
  top.metadata = ordered(obj.metadata, META_ORDER);
  return top;
}

function objectKey(namespace: string | undefined, name: string): string {
  return namespace ? `${namespace}/${name}` : name;
}

const GENERATE_NAME_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789';

/** The store. Construct, register controllers, then {@link Store.open}. */
export class Store {
  readonly clock: Clock;
  readonly registry: ResourceRegistry;
  private readonly persister?: StorePersister;
  private readonly historyLimit: number;
  private readonly historyByteLimit: number;
  /** Bytes of object JSON in `history`. */
  private historyBytes = 0;
  /** Last persisted value of each section, so a commit writes only sections that changed. */
  private readonly savedSections = new Map<string, string>();
  private readonly log = createLogger('podlab:store');
  private readonly objects = new Map<string, Map<string, StoredRecord>>();
  private rv = 0;
  /** Every event with rv > historyStartRv is still in `history`. */
  private historyStartRv = 0;
  private history: HistoryEntry[] = [];
  private readonly watchers = new Set<Watcher>();
  private readonly subscribers = new Set<(ev: StoreEvent) => void>();
  private readonly admission: AdmissionHook[] = [];
  private readonly mutatingAdmission: AdmissionHook[] = [];
  private readonly sections = new Map<string, StateSection>();
  private readonly openHooks: (() => void)[] = [];
  private readonly closeHooks: (() => void)[] = [];
  private readonly queue: StoreEvent[] = [];
  private readonly queuedEntries: HistoryEntry[] = [];
  private draining = false;
  private opened = false;
  private readonly groupCommit: boolean;
  private readonly groupCommitWindowMs: number;
  /** The current group (group commit only). */
  private pending?: PendingGroup;
  /** Transactions persisted, in either mode (the store bench reports writes per commit). */
  commitCount = 0;

  constructor(opts: StoreOptions = {}) {
    this.clock = opts.clock ?? wallClock;
    this.registry = opts.registry ?? defaultRegistry;
    this.persister = opts.persister;
    this.historyLimit = opts.historyLimit ?? DEFAULT_HISTORY_LIMIT;
    this.historyByteLimit = opts.historyBytes ?? DEFAULT_HISTORY_BYTES;
    this.groupCommit = opts.groupCommit === true && this.persister?.atomicCommit === true;
    this.groupCommitWindowMs = opts.groupCommitWindowMs ?? 0;
  }

  // ---------------------------------------------------------------- wiring

  /** Adds an admission step (run in registration order on create/update). */
  addAdmission(hook: AdmissionHook): void {
    this.admission.push(hook);
  }

  /**
   * Adds a mutating admission step: it runs before validation (and in dry
   * runs), as kube-apiserver's mutating admission does, so what it adds is
   * validated with the rest. It must not allocate anything.
   */
  addMutatingAdmission(hook: AdmissionHook): void {
    this.mutatingAdmission.push(hook);
  }

  /** Subscribes to every committed change, in resourceVersion order. Returns an unsubscribe function. */
  subscribe(fn: (ev: StoreEvent) => void): () => void {
    this.subscribers.add(fn);
    return () => this.subscribers.delete(fn);
  }

  /** Registers a named section of controller state saved with every commit. Call before open(). */
  registerSection(name: string, section: StateSection): void {
    this.sections.set(name, section);
  }

  /** Runs `fn` once the state is loaded (controllers catch up here). */
  onOpen(fn: () => void): void {
    if (this.opened) fn();
    else this.openHooks.push(fn);
  }

  /**
   * Loads persisted state, or on first start creates the system namespaces.
   * Throws StateFileError when the saved state cannot be parsed.
   */
  open(): void {
    if (this.opened) return;
    const saved = this.persister?.load() ?? null;
    if (saved !== null) this.loadState(saved);
    this.opened = true;
    // Also after a load: a store may come up empty (a fresh etcd), and these may never be deleted anyway.
    for (const ns of SYSTEM_NAMESPACES) {
      if (!this.lookup(NAMESPACES, undefined, ns)) this.create(NAMESPACES, { metadata: { name: ns } });
    }
    for (const fn of this.openHooks.splice(0)) fn();
    this.flush();
  }

  /** Runs `fn` when the store closes (controllers stop their timers here). */
  onClose(fn: () => void): void {
    this.closeHooks.push(fn);
  }

  /** Drops all watchers, stops controllers' timers and closes the persister; the store stays readable. */
  close(): void {
    for (const fn of this.closeHooks.splice(0)) fn();
    // What was answered from memory is still owed to disk.
    this.flush();
    this.watchers.clear();
    this.subscribers.clear();
    this.persister?.close();
  }

  /**
   * The global resourceVersion counter as committed: under group commit a
   * revision still in the current transaction is not handed out (a list or
   * bookmark naming it could be resumed from after the transaction failed and
   * the revision went to another write).
   */
  resourceVersion(): string {
    return String(this.pending ? this.pending.savedRv : this.rv);
  }

  /**
   * Settles when every write made so far is persisted; rejects with the 500
   * of a failed transaction (so exactly that transaction's writers fail).
   * Resolved at once outside group commit or with nothing pending.
   */
  committed(): Promise<void> {
    return this.pending?.done ?? Promise.resolve();
  }

  /**
   * Waits until nothing is pending, so a read that follows sees only
   * committed state (the writes that in-process controllers make while the
   * previous transaction's events are delivered go into the next one).
   */
  async settled(): Promise<void> {
    while (this.pending) await this.pending.done.catch(() => {});
  }

  /** Oldest resourceVersion a watch may still resume from. */
  oldestResumableVersion(): string {
    return String(this.historyStartRv);
  }

  /** Resolves a resource reference; unknown names are a 404 like an unknown URL. */
  resolve(resource: ResourceRef): ResourceType {
    if (typeof resource !== 'string') return resource;
    const rt = this.registry.resolve(resource);
    if (!rt) throw new ApiError(makeStatus(404, 'NotFound', `the server doesn't have a resource type "${resource}"`));
    return rt;
  }

  // ------------------------------------------------------------------ reads

  /** Returns a copy of the object or throws 404. */
  get<T extends KubeObject = KubeObject>(resource: ResourceRef, name: string, namespace?: string): T {
    const rt = this.resolve(resource);
    const rec = this.lookup(rt, namespace, name);
    if (!rec) throw notFound(rt.plural, name, rt.group);
    return JSON.parse(rec.json) as T;
  }

  /** Like get, but undefined instead of 404. */
  tryGet<T extends KubeObject = KubeObject>(resource: ResourceRef, name: string, namespace?: string): T | undefined {
    const rt = this.resolve(resource);
    const rec = this.lookup(rt, namespace, name);
    return rec ? (JSON.parse(rec.json) as T) : undefined;
  }

  /** Lists copies of matching objects, sorted by namespace/name, with the current resourceVersion. */
  list<T extends KubeObject = KubeObject>(resource: ResourceRef, opts: ListOptions = {}): List<T> {
    return JSON.parse(this.listJson(resource, opts)) as List<T>;
  }

  /** Same as list(), already serialized (the HTTP layer sends this as-is). */
  listJson(resource: ResourceRef, opts: ListOptions = {}): string {
    const rt = this.resolve(resource);
    const recs = this.select(rt, opts.namespace, parseSelector(rt, opts.labelSelector, opts.fieldSelector));
    const head = JSON.stringify({ apiVersion: apiVersionOf(rt), kind: rt.listKind, metadata: { resourceVersion: this.resourceVersion() } });
    // Splice the cached item JSON into the envelope instead of re-serializing every object.
    return `${head.slice(0, -1)},"items":[${recs.map((r) => r.json).join(',')}]}`;
  }

  /** How many live objects of a kind there are. */
  countOf(resource: ResourceRef): number {
    return this.objects.get(resourceKeyOf(this.resolve(resource)))?.size ?? 0;
  }

  /**
   * Read-only view of the live objects of a kind for in-process controllers
   * (no copies: callers must not mutate them).
   */
  objectsOf(resource: ResourceRef): readonly KubeObject[] {
    const rt = this.resolve(resource);
    return [...(this.objects.get(resourceKeyOf(rt))?.values() ?? [])].map((r) => r.obj);
  }

  // -------------------------------------------------------------- mutations

  /**
   * Creates an object (POST). The namespace comes from `opts.namespace`
   * (the URL) or the body, defaulting to `default`; a mismatch is a 400.
   */
  create<T extends KubeObject = KubeObject>(resource: ResourceRef, body: unknown, opts: { namespace?: string; dryRun?: boolean } = {}): T {
    const rt = this.resolve(resource);
    const obj = this.decode(rt, body, opts.namespace);
    const meta = obj.metadata;
    if (rt.namespaced) {
      meta.namespace ??= 'default';
      if (!this.lookup(NAMESPACES, undefined, meta.namespace)) throw notFound('namespaces', meta.namespace);
    }
    if (!meta.name && typeof meta.generateName === 'string' && meta.generateName) {
      meta.name = this.generateName(rt, meta.namespace, meta.generateName);
    }
    meta.uid = randomUUID();
    meta.creationTimestamp = formatTimestamp(this.clock.now());
    meta.generation = 1;
    meta.resourceVersion = '';
    rt.defaulting?.(obj, 'create', undefined);
    for (const hook of this.mutatingAdmission) hook({ op: 'create', rt, obj });
    this.validate(rt, obj, undefined);
    if (this.lookup(rt, meta.namespace, meta.name)) throw alreadyExists(rt.plural, meta.name, rt.group);
    // A dry run validates and returns what would be stored; admission (IPAM, the scheduler,
    // Service allocation) is skipped because its allocations would outlive the request.
    if (opts.dryRun) return canonical(obj) as T;
    for (const hook of this.admission) hook({ op: 'create', rt, obj });
    const [rec] = this.commit([{ rt, key: objectKey(meta.namespace, meta.name), type: 'ADDED', next: obj }]);
    return JSON.parse(rec.json) as T;
  }

  /**
   * Replaces an object (PUT) or, with `subresource: 'status'`, only its
   * status. A set `metadata.resourceVersion` that is not current is a 409.
   * The main resource ignores status changes and the status subresource
   * ignores everything but status, as in k8s. A no-op update commits nothing.
   */
  update<T extends KubeObject = KubeObject>(
    resource: ResourceRef,
    body: unknown,
    opts: { namespace?: string; name?: string; subresource?: 'status'; dryRun?: boolean } = {},
  ): T {
    const rt = this.resolve(resource);
    const incoming = this.decode(rt, body, opts.namespace);
    const name = opts.name ?? incoming.metadata.name;
    if (!name) throw badRequest('name is required to update an object');
    if (incoming.metadata.name && incoming.metadata.name !== name) {
      throw badRequest(`the name of the object (${incoming.metadata.name}) does not match the name on the URL (${name})`);
    }
    const namespace = rt.namespaced ? (incoming.metadata.namespace ?? opts.namespace ?? 'default') : undefined;
    const old = this.lookup(rt, namespace, name);
    if (!old) throw notFound(rt.plural, name, rt.group);
    return this.applyUpdate<T>(rt, old, incoming, opts.subresource, opts.dryRun);
  }

  /**
   * Patches an object or its status: a JSON merge patch (RFC 7386), a
   * strategic merge patch driven by the kind's schema (strategic-merge-patch.ts),
   * or a JSON patch (RFC 6902, an array of operations). The result goes
   * through the same path as an update (validation, admission, conflicts).
   * `strategic: true` is the older spelling of `type: 'strategic'`.
   */
  patch<T extends KubeObject = KubeObject>(
    resource: ResourceRef,
    name: string,
    patch: unknown,
    opts: { namespace?: string; subresource?: 'status'; strategic?: boolean; type?: PatchType; dryRun?: boolean } = {},
  ): T {
    const rt = this.resolve(resource);
    const type: PatchType = opts.type ?? (opts.strategic ? 'strategic' : 'merge');
    if (type === 'json' ? !Array.isArray(patch) : !isRecord(patch)) {
      throw badRequest(type === 'json' ? 'a JSON patch must be a JSON array of operations' : `a ${type} merge patch must be a JSON object`);
    }
    const namespace = rt.namespaced ? (opts.namespace ?? 'default') : undefined;
    const old = this.lookup(rt, namespace, name);
    if (!old) throw notFound(rt.plural, name, rt.group);
    const current = JSON.parse(old.json) as unknown;
    const merged = type === 'json' ? applyJsonPatch(current, patch) : type === 'strategic' ? applyStrategicMergePatch(current, patch, schemaOf(rt)) : applyMergePatch(current, patch);
    const incoming = this.decode(rt, merged, namespace);
    if (incoming.metadata.name !== name) {
      throw badRequest(`the name of the object (${incoming.metadata.name}) does not match the name on the URL (${name})`);
    }
    return this.applyUpdate<T>(rt, old, incoming, opts.subresource, opts.dryRun);
  }

  /**
   * Controller write path: copies the live object, lets `fn` change it
   * (spec and status alike), and commits if anything changed. Skips
   * validation: callers are trusted in-process code.
   */
  mutate<T extends KubeObject = KubeObject>(resource: ResourceRef, name: string, namespace: string | undefined, fn: (draft: T) => void): T {
    const rt = this.resolve(resource);
    const old = this.lookup(rt, rt.namespaced ? namespace : undefined, name);
    if (!old) throw notFound(rt.plural, name, rt.group);
    const draft = JSON.parse(old.json) as T;
    fn(draft);
    this.keepSystemFields(draft, old.obj);
    if (isDeepStrictEqual(draft, old.obj)) return draft;
    const [rec] = this.commit([{ rt, key: objectKey(old.obj.metadata.namespace, name), type: 'MODIFIED', next: draft, prev: old }]);
    return JSON.parse(rec.json) as T;
  }

  /**
   * Deletes an object and returns its final state (with the deletion's
   * resourceVersion). Deleting a namespace deletes everything in it first.
   */
  delete<T extends KubeObject = KubeObject>(
    resource: ResourceRef,
    name: string,
    opts: { namespace?: string; preconditions?: { resourceVersion?: string; uid?: string }; dryRun?: boolean } = {},
  ): T {
    const rt = this.resolve(resource);
    const namespace = rt.namespaced ? (opts.namespace ?? 'default') : undefined;
    const old = this.lookup(rt, namespace, name);
    if (!old) throw notFound(rt.plural, name, rt.group);
    const pre = opts.preconditions;
    if (pre?.uid && pre.uid !== old.obj.metadata.uid) {
      throw conflict(rt.plural, name, `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${old.obj.metadata.uid}`, rt.group);
    }
    if (pre?.resourceVersion && pre.resourceVersion !== old.obj.metadata.resourceVersion) {
      throw conflict(
        rt.plural,
        name,
        `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${old.obj.metadata.resourceVersion}`,
        rt.group,
      );
    }
    const changes: Change[] = [];
    if (rt === NAMESPACES || resourceKeyOf(rt) === resourceKeyOf(NAMESPACES)) {
      if ((SYSTEM_NAMESPACES as readonly string[]).includes(name)) throw forbidden('namespaces', name, 'this namespace may not be deleted');
      // The namespace controller's job, done eagerly: empty the namespace, then remove it.
      for (const other of this.registry.all()) {
        if (!other.namespaced) continue;
        for (const rec of this.objects.get(resourceKeyOf(other))?.values() ?? []) {
          if (rec.obj.metadata.namespace === name) {
            changes.push({ rt: other, key: objectKey(name, rec.obj.metadata.name), type: 'DELETED', prev: rec });
          }
        }
      }
    }
    changes.push({ rt, key: objectKey(namespace, name), type: 'DELETED', prev: old });
    if (opts.dryRun) return JSON.parse(old.json) as T;
    const recs = this.commit(changes);
    return JSON.parse(recs[recs.length - 1].json) as T;
  }

  // ------------------------------------------------------------------ watch

  /**
   * Starts a watch. Delivers history (or synthetic ADDED events) to `sink`
   * synchronously before returning, then live events. Throws a 410 ApiError
   * when `resourceVersion` is older than the retained history, a 504 when it
   * is newer than the store, and a 400 on a bad selector.
   */
  watch(resource: ResourceRef, opts: WatchOptions, sink: (ev: StoreWatchEvent) => void): WatchHandle {
    // The replay below must hold committed revisions only, and none that the pending transaction's delivery would send again.
    this.flush();
    const rt = this.resolve(resource);
    const selector = parseSelector(rt, opts.labelSelector, opts.fieldSelector);
    const namespace = rt.namespaced ? opts.namespace : undefined;
    const watcher: Watcher = { rt, namespace, selector, sink };
    const rvParam = opts.resourceVersion ?? '';
    if (rvParam === '' || rvParam === '0') {
      for (const rec of this.select(rt, namespace, selector)) sink({ type: 'ADDED', object: rec.obj, json: rec.json });
    } else {
      if (!/^\d+$/.test(rvParam)) throw badRequest(`invalid resource version: ${JSON.stringify(rvParam)}`);
      const from = Number(rvParam);
      if (from < this.historyStartRv) throw expired(rvParam, String(this.historyStartRv + 1));
      if (from > this.rv) {
        throw new ApiError(makeStatus(504, 'Timeout', `Too large resource version: ${from}, current: ${this.rv}`));
      }
      // History is contiguous and sorted by rv; start at the first entry after `from`.
      let i = this.history.length;
      while (i > 0 && this.history[i - 1].rv > from) i--;
      for (; i < this.history.length; i++) this.deliverTo(watcher, this.history[i]);
    }
    this.watchers.add(watcher);
    return { stop: () => this.watchers.delete(watcher) };
  }

  // -------------------------------------------------------------- internals

  private lookup(rt: ResourceType, namespace: string | undefined, name: string): StoredRecord | undefined {
    return this.objects.get(resourceKeyOf(rt))?.get(objectKey(rt.namespaced ? namespace : undefined, name));
  }

  private select(rt: ResourceType, namespace: string | undefined, selector: Selector): StoredRecord[] {
    const out: StoredRecord[] = [];
    for (const rec of this.objects.get(resourceKeyOf(rt))?.values() ?? []) {
      if (rt.namespaced && namespace !== undefined && rec.obj.metadata.namespace !== namespace) continue;
      if (matches(selector, rec.attrs)) out.push(rec);
    }
    return out.sort((a, b) => {
      const ka = objectKey(a.obj.metadata.namespace, a.obj.metadata.name);
      const kb = objectKey(b.obj.metadata.namespace, b.obj.metadata.name);
      return ka < kb ? -1 : ka > kb ? 1 : 0;
    });
  }

  /** Turns an untyped body into a KubeObject of kind `rt`, checking shape and namespace. */
  private decode(rt: ResourceType, body: unknown, urlNamespace: string | undefined): KubeObject {
    if (!isRecord(body)) throw badRequest('the body of the request must be a JSON object');
    const copy = structuredClone(body);
    const apiVersion = copy.apiVersion ?? apiVersionOf(rt);
    const kind = copy.kind ?? rt.kind;
    if (apiVersion !== apiVersionOf(rt) || kind !== rt.kind) {
      throw badRequest(`${typeof kind === 'string' ? kind : JSON.stringify(kind)} in version "${typeof apiVersion === 'string' ? apiVersion : JSON.stringify(apiVersion)}" cannot be handled as a ${rt.kind}: the object's kind does not match the resource`);
    }
    const metaIn = copy.metadata ?? {};
    if (!isRecord(metaIn)) throw badRequest('metadata must be a JSON object');
    const meta = { ...metaIn } as Record<string, unknown>;
    for (const key of ['name', 'namespace', 'generateName', 'resourceVersion', 'uid'] as const) {
      if (meta[key] !== undefined && typeof meta[key] !== 'string') throw badRequest(`metadata.${key} must be a string`);
      if (meta[key] === '') delete meta[key];
    }
    if (rt.namespaced) {
      if (urlNamespace !== undefined && meta.namespace !== undefined && meta.namespace !== urlNamespace) {
        throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
      }
      meta.namespace ??= urlNamespace;
    } else {
      delete meta.namespace;
    }
    meta.name ??= '';
    const obj = { ...copy, apiVersion, kind, metadata: meta } as unknown as KubeObject;
    return obj;
  }

  private validate(rt: ResourceType, obj: KubeObject, old: KubeObject | undefined): void {
    const errs = [...validateObjectMeta(obj, rt.nameRule ?? 'dns1123-subdomain'), ...(rt.validate?.(obj, old) ?? [])];
    if (errs.length > 0) throw invalid(rt.kind, obj.metadata.name, errs, rt.group);
  }

  /** Server-owned metadata is never taken from a request body. */
  private keepSystemFields(obj: KubeObject, old: KubeObject): void {
    obj.metadata.uid = old.metadata.uid;
    obj.metadata.creationTimestamp = old.metadata.creationTimestamp;
    obj.metadata.name = old.metadata.name;
    if (old.metadata.namespace !== undefined) obj.metadata.namespace = old.metadata.namespace;
    else delete obj.metadata.namespace;
    obj.metadata.resourceVersion = old.metadata.resourceVersion;
    delete obj.metadata.generateName;
    if (old.metadata.generateName !== undefined) obj.metadata.generateName = old.metadata.generateName;
    const specChanged = !isDeepStrictEqual(obj.spec, old.spec);
    obj.metadata.generation = (old.metadata.generation ?? 1) + (specChanged ? 1 : 0);
  }

  private applyUpdate<T extends KubeObject>(rt: ResourceType, old: StoredRecord, incoming: KubeObject, subresource: 'status' | undefined, dryRun = false): T {
    const name = old.obj.metadata.name;
    const wantRv = incoming.metadata.resourceVersion;
    if (wantRv && wantRv !== old.obj.metadata.resourceVersion) {
      throw conflict(rt.plural, name, 'the object has been modified; please apply your changes to the latest version and try again', rt.group);
    }
    const wantUid = incoming.metadata.uid;
    if (wantUid && wantUid !== old.obj.metadata.uid) {
      throw conflict(rt.plural, name, `Precondition failed: UID in precondition: ${wantUid}, UID in object meta: ${old.obj.metadata.uid}`, rt.group);
    }
    let next: KubeObject;
    if (subresource === 'status') {
      next = JSON.parse(old.json) as KubeObject;
      if (incoming.status === undefined) delete next.status;
      else next.status = incoming.status;
    } else {
      next = incoming;
      if (rt.hasStatus) {
        if (old.obj.status === undefined) delete next.status;
        else next.status = structuredClone(old.obj.status);
      }
    }
    this.keepSystemFields(next, old.obj);
    rt.defaulting?.(next, 'update', old.obj);
    for (const hook of this.mutatingAdmission) hook({ op: 'update', rt, obj: next, old: old.obj, subresource });
    this.validate(rt, next, old.obj);
    if (dryRun) return canonical(next) as T;
    for (const hook of this.admission) hook({ op: 'update', rt, obj: next, old: old.obj, subresource });
    // A no-op update commits nothing, like etcd's guaranteed update: watchers see no event.
    if (isDeepStrictEqual(next, old.obj)) return JSON.parse(old.json) as T;
    const [rec] = this.commit([{ rt, key: objectKey(old.obj.metadata.namespace, name), type: 'MODIFIED', next, prev: old }]);
    return JSON.parse(rec.json) as T;
  }

  private generateName(rt: ResourceType, namespace: string | undefined, prefix: string): string {
    for (let attempt = 0; attempt < 100; attempt++) {
      let suffix = '';
      for (let i = 0; i < 5; i++) suffix += GENERATE_NAME_ALPHABET[randomInt(GENERATE_NAME_ALPHABET.length)];
      const name = `${prefix}${suffix}`;
      if (!this.lookup(rt, namespace, name)) return name;
    }
    throw internalError('could not generate a unique name');
  }

  private makeRecord(rt: ResourceType, input: KubeObject): StoredRecord {
    const obj = canonical(input);
    return { rt, obj, json: JSON.stringify(obj), attrs: selectableAttrs(rt, obj) };
  }

  private makeEntry(rv: number, type: HistoryEntry['type'], rec: StoredRecord, prevAttrs: SelectableAttrs | undefined): HistoryEntry {
    return { rv, type, rec, prevAttrs };
  }

  /** Appends to the history window (trimmed separately, once the commit is durable). */
  private pushHistory(entry: HistoryEntry): void {
    this.history.push(entry);
    this.historyBytes += entry.rec.json.length;
  }

  /**
   * Applies changes, each with its own resourceVersion, persists, then
   * delivers the events. On a persistence failure everything is rolled back
   * and a 500 is thrown, so memory never runs ahead of disk. Under group
   * commit the changes join the turn's transaction instead (see flush).
   */
  private commit(changes: Change[]): StoredRecord[] {
    if (this.groupCommit) return this.commitToGroup(changes);
    const group = this.newGroup();
    const recs = this.applyChanges(changes, group);
    const trim = this.historyExcess();
    try {
      this.persist(group.persisted, trim > 0 ? this.history[trim - 1].rv : this.historyStartRv);
    } catch (err) {
      throw this.rollBack(group, err);
    }
    this.trimHistory(trim);
    this.enqueue(group);
    this.drain();
    return recs;
  }

  private newGroup(): PendingGroup {
    let resolve!: () => void;
    let reject!: (err: ApiError) => void;
    const done = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // A transaction only in-process writers were in is failed with nobody awaiting it; it is logged in rollBack.
    done.catch(() => {});
    return { savedRv: this.rv, savedHistoryLength: this.history.length, savedHistoryBytes: this.historyBytes, undo: [], persisted: [], events: [], done, resolve, reject };
  }

  private commitToGroup(changes: Change[]): StoredRecord[] {
    if (!this.pending) {
      this.pending = this.newGroup();
      if (this.groupCommitWindowMs > 0) setTimeout(() => this.flush(), this.groupCommitWindowMs);
      else setImmediate(() => this.flush());
    }
    return this.applyChanges(changes, this.pending);
  }

  /** Applies changes in memory, each at the next resourceVersion, recording how to undo them into `group`. */
  private applyChanges(changes: Change[], group: PendingGroup): StoredRecord[] {
    const recs: StoredRecord[] = [];
    for (const ch of changes) {
      const rv = ++this.rv;
      const map = this.kindMap(ch.rt);
      group.undo.push({ map, key: ch.key, prev: map.get(ch.key) });
      let rec: StoredRecord;
      if (ch.type === 'DELETED') {
        if (!ch.prev) throw new Error('DELETED change without prev');
        const last = JSON.parse(ch.prev.json) as KubeObject;
        last.metadata.resourceVersion = String(rv);
        rec = this.makeRecord(ch.rt, last);
        map.delete(ch.key);
      } else {
        if (!ch.next) throw new Error(`${ch.type} change without object`);
        const obj = JSON.parse(JSON.stringify(ch.next)) as KubeObject;
        obj.metadata.resourceVersion = String(rv);
        rec = this.makeRecord(ch.rt, obj);
        map.set(ch.key, rec);
      }
      const entry = this.makeEntry(rv, ch.type, rec, ch.prev?.attrs);
      this.pushHistory(entry);
      recs.push(rec);
      group.events.push({ ev: { type: ch.type, rt: ch.rt, object: rec.obj, prev: ch.prev?.obj, resourceVersion: rv }, entry });
      group.persisted.push({
        rv,
        type: ch.type,
        resource: resourceKeyOf(ch.rt),
        key: ch.key,
        json: ch.type === 'DELETED' ? null : rec.json,
        prevRv: ch.prev ? Number(ch.prev.obj.metadata.resourceVersion) : 0,
        ...(ch.prev ? { prevAttrs: ch.prev.attrs } : {}),
      });
    }
    return recs;
  }

  /** Undoes a group that failed to persist (it is the newest: nothing was applied after it); returns the 500 its writers get. */
  private rollBack(group: PendingGroup, err: unknown): ApiError {
    for (const u of group.undo.reverse()) {
      if (u.prev) u.map.set(u.key, u.prev);
      else u.map.delete(u.key);
    }
    this.rv = group.savedRv;
    this.history.length = group.savedHistoryLength;
    this.historyBytes = group.savedHistoryBytes;
    this.log.error('persist failed; change rolled back', { error: (err as Error).message, resourceVersion: group.savedRv + 1, writes: group.persisted.length });
    return internalError(`cannot persist state: ${(err as Error).message}`);
  }

  private enqueue(group: PendingGroup): void {
    for (const { ev, entry } of group.events) {
      this.queue.push(ev);
      this.queuedEntries.push(entry);
    }
  }

  /**
   * Group commit: persists the pending writes in one transaction, then
   * answers their writers and delivers their events in resourceVersion order.
   * What subscribers write meanwhile forms the next group, persisted in the
   * same call, so a controller cascade costs a few transactions, not one per
   * write. Runs at the end of the turn, and at once before a watch starts or
   * the store closes.
   */
  private flush(): void {
    while (this.pending) {
      const group = this.pending;
      this.pending = undefined;
      const trim = this.historyExcess();
      try {
        this.persist(group.persisted, trim > 0 ? this.history[trim - 1].rv : this.historyStartRv);
      } catch (err) {
        group.reject(this.rollBack(group, err));
        continue;
      }
      this.trimHistory(trim);
      group.resolve();
      this.enqueue(group);
      this.drain();
    }
  }

  /** Delivers queued events in order; re-entrant commits (controllers reacting) just enqueue. */
  private drain(): void {
    if (this.draining) return;
    this.draining = true;
    try {
      while (this.queue.length > 0) {
        const ev = this.queue.shift() as StoreEvent;
        const entry = this.queuedEntries.shift() as HistoryEntry;
        for (const fn of [...this.subscribers]) {
          try {
            fn(ev);
          } catch (err) {
            // A broken controller must not break the commit that already happened.
            process.emitWarning(`store subscriber failed: ${(err as Error).stack ?? String(err)}`);
          }
        }
        for (const w of [...this.watchers]) this.deliverTo(w, entry);
      }
    } finally {
      this.draining = false;
    }
  }

  /** Sends one history entry to one watcher, translating selector transitions like the apiserver. */
  private deliverTo(w: Watcher, entry: HistoryEntry): void {
    if (entry.rec.rt !== w.rt && resourceKeyOf(entry.rec.rt) !== resourceKeyOf(w.rt)) return;
    if (w.namespace !== undefined && entry.rec.obj.metadata.namespace !== w.namespace) return;
    const nowMatches = matches(w.selector, entry.rec.attrs);
    let type: StoreWatchEvent['type'] | undefined;
    if (entry.type === 'ADDED') type = nowMatches ? 'ADDED' : undefined;
    else if (entry.type === 'DELETED') type = nowMatches ? 'DELETED' : undefined;
    else {
      const before = entry.prevAttrs ? matches(w.selector, entry.prevAttrs) : false;
      if (before && nowMatches) type = 'MODIFIED';
      else if (!before && nowMatches) type = 'ADDED';
      else if (before && !nowMatches) type = 'DELETED';
    }
    if (!type) return;
    try {
      w.sink({ type, object: entry.rec.obj, json: entry.rec.json });
    } catch (err) {
      this.watchers.delete(w);
      process.emitWarning(`watch sink failed, watch dropped: ${(err as Error).message}`);
    }
  }

  private kindMap(rt: ResourceType): Map<string, StoredRecord> {
    const key = resourceKeyOf(rt);
    let map = this.objects.get(key);
    if (!map) {
      map = new Map();
      this.objects.set(key, map);
    }
    return map;
  }

  /** How many of the oldest events fall out of the window (count and bytes); the newest always stays. */
  private historyExcess(): number {
    let excess = Math.max(0, this.history.length - this.historyLimit);
    let bytes = this.historyBytes;
    for (let i = 0; i < excess; i++) bytes -= this.history[i].rec.json.length;
    while (bytes > this.historyByteLimit && excess < this.history.length - 1) {
      bytes -= this.history[excess].rec.json.length;
      excess++;
    }
    return excess;
  }

  private trimHistory(excess = this.historyExcess()): void {
    if (excess <= 0) return;
    this.historyStartRv = this.history[excess - 1].rv;
    for (let i = 0; i < excess; i++) this.historyBytes -= this.history[i].rec.json.length;
    this.history.splice(0, excess);
  }

  /**
   * Hands the persister this commit's changes, the sections that changed and
   * the new start of the history window (its compaction point).
   */
  private persist(changes: PersistedChange[], compactRv: number): void {
    if (!this.persister) return;
    const sections: Record<string, unknown> = {};
    const fresh: [string, string][] = [];
    for (const [name, sec] of this.sections) {
      const value = sec.save();
      const json = JSON.stringify(value);
      if (this.savedSections.get(name) === json) continue;
      sections[name] = value;
      fresh.push([name, json]);
    }
    this.persister.commit({ changes, sections: fresh.length > 0 ? sections : undefined, compactRv });
    this.commitCount++;
    for (const [name, json] of fresh) this.savedSections.set(name, json);
  }

  private loadState(state: LoadedState): void {
    const byKey = new Map(this.registry.all().map((rt) => [resourceKeyOf(rt), rt] as const));
    const resourceOf = (v: string): ResourceType => {
      const rt = byKey.get(v);
      if (!rt) throw new StateFileError(`saved state names an unknown resource ${JSON.stringify(v)}`);
      return rt;
    };
    const objectOf = (json: string): KubeObject => {
      const v: unknown = JSON.parse(json);
      if (!isRecord(v) || !isRecord(v.metadata) || typeof v.metadata.name !== 'string') throw new StateFileError('saved state holds a malformed object');
      return v as unknown as KubeObject;
    };
    // The newest revision of a current object is also its last event: share one record.
    const byJson = new Map<string, StoredRecord>();
    for (const item of state.objects) {
      const rt = resourceOf(item.resource);
      const rec = this.makeRecord(rt, objectOf(item.json));
      byJson.set(item.json, rec);
      this.kindMap(rt).set(objectKey(rec.obj.metadata.namespace, rec.obj.metadata.name), rec);
    }
    for (const ev of state.events) {
      const rec = byJson.get(ev.json) ?? this.makeRecord(resourceOf(ev.resource), objectOf(ev.json));
      this.pushHistory(this.makeEntry(ev.rv, ev.type, rec, ev.prevAttrs));
    }
    this.rv = state.rv;
    this.historyStartRv = state.compactRv;
    this.trimHistory();
    for (const [name, s] of this.sections) {
      if (state.sections[name] === undefined) continue;
      s.load(state.sections[name]);
      this.savedSections.set(name, JSON.stringify(state.sections[name]));
    }
  }
}

/** Options of {@link openStore}. */
export interface OpenStoreOptions extends Omit<StoreOptions, 'persister'> {
  /** Persist to `<stateDir>/apiserver/store.db` (SQLite); omit for a purely in-memory store. */
  stateDir?: string;
  /** Overrides stateDir (tests use MemoryPersister; `--store etcd://` passes its own). */
  persister?: StorePersister;
  /** `--cluster-cidr`, default 10.244.0.0/16. */
  clusterCidr?: string;
  /** `--node-cidr-mask-size`, default 24. */
  nodeCidrMaskSize?: number;
  /** `--service-cluster-ip-range`, default 10.96.0.0/12. */
  serviceClusterIpRange?: string;
  /** `--service-node-port-range`, default 30000-32767. */
  serviceNodePortRange?: string;
  /** Durations of the workload and node lifecycle controllers. */
  controllers?: WorkloadControllerOptions;
}

/** The controller-manager flags podlab's apiserver takes. */
export interface WorkloadControllerOptions {
  /** How long a terminating pod keeps serving before removal (default 2 s). */
  podDrainMs?: number;
  nodeLifecycle?: NodeLifecycleOptions;
}

/**
 * Builds the apiserver's store with its in-process controllers (node IPAM,
 * scheduler, ClusterIP/NodePort allocation, EndpointSlices) installed, and loads persisted state. Throws ConfigError on bad
 * IPAM flags and StateFileError on an unreadable state file.
 */
export function openStore(opts: OpenStoreOptions = {}): Store {
  const ipam = new NodeIpam(parseIpamConfig(opts.clusterCidr, opts.nodeCidrMaskSize));
  const serviceAlloc = new ServiceAllocator(parseServiceAllocConfig(opts.serviceClusterIpRange, opts.serviceNodePortRange));
  const persister = opts.persister ?? (opts.stateDir !== undefined ? new SqlitePersister(opts.stateDir) : undefined);
  const store = new Store({
    clock: opts.clock,
    historyLimit: opts.historyLimit,
    historyBytes: opts.historyBytes,
    registry: opts.registry,
    persister,
    groupCommit: opts.groupCommit,
    groupCommitWindowMs: opts.groupCommitWindowMs,
  });
  ipam.install(store);
  new Scheduler().install(store);
  serviceAlloc.install(store);
  new EndpointSliceController().install(store);
  new EndpointsController().install(store);
  new ServiceAccountController().install(store);
  const recorder = new EventRecorder(store);
  new LoadBalancerAllocator(recorder).install(store);
  installDefaultIngressClass(store);
  const gc = new GarbageCollector({ podDrainMs: opts.controllers?.podDrainMs });
  gc.install(store);
  new PodEventController(recorder).install(store);
  new ReplicaSetController(recorder, gc).install(store);
  new DeploymentController(recorder).install(store);
  new DaemonSetController(recorder, gc).install(store);
  new NodeLifecycleController(recorder, gc, opts.controllers?.nodeLifecycle).install(store);
  store.open();
  return store;
}
