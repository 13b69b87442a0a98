/**
 * Server-side apply (`PATCH` with `application/apply-patch+yaml`, `kubectl
 * apply --server-side`), kept to what its users see: the applied
 * configuration creates the object or is merged into it (strategic merge, so
 * containers merge by name), each field manager's set of applied fields is
 * recorded in `metadata.managedFields` (FieldsV1: `f:` members, `k:` list
 * elements by their merge key, `.` for the node itself), a field a manager
 * applied before and applies no more is removed unless another manager
 * applied it too, and applying a field another applier owns with a
 * different value is a 409 conflict, worded as kube-apiserver words it,
 * unless `force=true` takes it over.
 *
 * Left out: ownership by non-apply writers (PUT, PATCH, POST record no
 * managedFields here, so they never conflict), and atomic/granular list and
 * map types beyond the patch merge keys.
 */
import { isDeepStrictEqual } from 'node:util';
import { ApiError, badRequest, makeStatus } from './errors.ts';
import { deref, type SchemaNode } from './openapi.ts';
import { applyStrategicMergePatch } from './strategic-merge-patch.ts';

/** FieldsV1: `{"f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:image": {}}}}}`. */
export type FieldSet = { [member: string]: FieldSet };

export interface ManagedFieldsEntry {
  manager: string;
  operation: 'Apply' | 'Update';
  apiVersion: string;
  time: string;
  fieldsType: 'FieldsV1';
  fieldsV1: FieldSet;
}

type JsonMap = Record<string, unknown>;
const isMap = (v: unknown): v is JsonMap => typeof v === 'object' && v !== null && !Array.isArray(v);

function member(schema: SchemaNode | undefined, key: string): SchemaNode | undefined {
  const s = deref(schema);
  if (!s) return undefined;
  return deref(s.properties?.[key] ?? (isMap(s.additionalProperties) ? (s.additionalProperties) : undefined));
}

function mergeKeyOf(field: SchemaNode | undefined): string | undefined {
  const f = deref(field);
  return String(f?.['x-kubernetes-patch-strategy'] ?? '').split(',').includes('merge') ? f?.['x-kubernetes-patch-merge-key'] : undefined;
}

/** Members that identify the object or are the server's: never owned. */
const UNOWNED_TOP = new Set(['apiVersion', 'kind', 'status']);
const UNOWNED_META = new Set(['name', 'namespace', 'uid', 'resourceVersion', 'generation', 'creationTimestamp', 'managedFields', 'selfLink', 'deletionTimestamp']);

/** The fields an applied configuration sets. */
export function fieldSetOf(obj: unknown, schema: SchemaNode | undefined, top = true): FieldSet {
  const out: FieldSet = {};
  if (!isMap(obj)) return out;
  for (const [k, v] of Object.entries(obj)) {
    if (top && UNOWNED_TOP.has(k)) continue;
    if (v === null || v === undefined) continue;
    const sub = member(schema, k);
    if (top && k === 'metadata' && isMap(v)) {
      const meta = fieldSetOf(Object.fromEntries(Object.entries(v).filter(([mk]) => !UNOWNED_META.has(mk))), sub, false);
      if (Object.keys(meta).length) out['f:metadata'] = meta;
      continue;
    }
    const key = mergeKeyOf(sub);
    if (Array.isArray(v) && key) {
      const items: FieldSet = { '.': {} };
      const itemSchema = deref(sub)?.items;
      for (const e of v) {
        if (!isMap(e) || e[key] === undefined) continue;
        items[`k:${JSON.stringify({ [key]: e[key] })}`] = { '.': {}, ...fieldSetOf(e, itemSchema, false) };
      }
      out[`f:${k}`] = items;
    } else if (isMap(v) && Object.keys(v).length) {
      out[`f:${k}`] = { '.': {}, ...fieldSetOf(v, sub, false) };
    } else {
      out[`f:${k}`] = {};
    }
  }
  return out;
}

/** Each leaf of a field set as its path of members (`.` entries name a node, not a leaf). */
function leaves(fs: FieldSet, prefix: string[] = []): string[][] {
  const out: string[][] = [];
  for (const [k, sub] of Object.entries(fs)) {
    if (k === '.') continue;
    const kids = Object.keys(sub).filter((x) => x !== '.');
    if (kids.length) out.push(...leaves(sub, [...prefix, k]));
    else out.push([...prefix, k]);
  }
  return out;
}

const keyOf = (p: string[]): string => p.join('\u0000');

/** The value a path names in an object, or undefined. */
function valueAt(obj: unknown, path: string[]): unknown {
  let cur: unknown = obj;
  for (const seg of path) {
    if (seg.startsWith('f:') && isMap(cur)) cur = cur[seg.slice(2)];
    else if (seg.startsWith('k:') && Array.isArray(cur)) {
      const want = JSON.parse(seg.slice(2)) as JsonMap;
      cur = cur.find((e) => isMap(e) && Object.entries(want).every(([k, v]) => isDeepStrictEqual(e[k], v)));
    } else return undefined;
  }
  return cur;
}

function removeAt(obj: unknown, path: string[]): void {
  const parent = valueAt(obj, path.slice(0, -1));
  const last = path[path.length - 1];
  if (last.startsWith('f:') && isMap(parent)) delete parent[last.slice(2)];
  else if (last.startsWith('k:') && Array.isArray(parent)) {
    const want = JSON.parse(last.slice(2)) as JsonMap;
    const i = parent.findIndex((e) => isMap(e) && Object.entries(want).every(([k, v]) => isDeepStrictEqual(e[k], v)));
    if (i >= 0) parent.splice(i, 1);
  }
}

function removeDropped(obj: unknown, prev: FieldSet, kept: Set<string>, prefix: string[] = []): void {
  for (const [k, sub] of Object.entries(prev)) {
    if (k === '.') continue;
    const p = [...prefix, k];
    if (!kept.has(keyOf(p))) removeAt(obj, p);
    else removeDropped(obj, sub, kept, p);
  }
}

function withoutPaths(fs: FieldSet, drop: Set<string>, prefix: string[] = []): FieldSet {
  const out: FieldSet = {};
  for (const [k, sub] of Object.entries(fs)) {
    const p = [...prefix, k];
    if (drop.has(keyOf(p))) continue;
    out[k] = withoutPaths(sub, drop, p);
  }
  return out;
}

/** `.spec.containers[name="web"].image`, as kube-apiserver names a conflicting field. */
export function fieldPathText(path: string[]): string {
  return path
    .map((seg) => {
      if (seg.startsWith('f:')) return `.${seg.slice(2)}`;
      const want = JSON.parse(seg.slice(2)) as JsonMap;
      return `[${Object.entries(want).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(',')}]`;
    })
    .join('');
}

export interface ApplyOptions {
  manager: string;
  force: boolean;
  schema: SchemaNode | undefined;
  apiVersion: string;
  now: string;
}

/** The applied configuration checked: it names the object the path does. */
export function checkApplied(applied: unknown, name: string): JsonMap {
  if (!isMap(applied)) throw badRequest('the apply patch must be an object');
  const meta = applied.metadata;
  if (!isMap(meta) || meta.name !== name) throw badRequest(`the name of the object (${isMap(meta) ? String(meta.name) : ''}) does not match the name on the URL (${name})`);
  return applied;
}

/**
 * What the object becomes: `live` undefined means create. Throws the 409
 * conflict ApiError when another applier owns a field set to another value.
 */
export function serverSideApply(live: JsonMap | undefined, applied: JsonMap, o: ApplyOptions): JsonMap {
  const mine = fieldSetOf(applied, o.schema);
  const entry = (fs: FieldSet): ManagedFieldsEntry => ({ manager: o.manager, operation: 'Apply', apiVersion: o.apiVersion, time: o.now, fieldsType: 'FieldsV1', fieldsV1: fs });
  if (!live) {
    const created = structuredClone(applied);
    (created.metadata as JsonMap).managedFields = [entry(mine)];
    return created;
  }
  const entries = ((live.metadata as JsonMap | undefined)?.managedFields ?? []) as ManagedFieldsEntry[];
  const previous = entries.find((e) => e.manager === o.manager && e.operation === 'Apply');
  let others = entries.filter((e) => e !== previous);
  const newLeaves = leaves(mine);
  const conflicts: { manager: string; apiVersion: string; path: string[] }[] = [];
  for (const other of others) {
    const theirs = new Set(leaves(other.fieldsV1).map(keyOf));
    for (const p of newLeaves) {
      if (theirs.has(keyOf(p)) && !isDeepStrictEqual(valueAt(live, p), valueAt(applied, p))) conflicts.push({ manager: other.manager, apiVersion: other.apiVersion, path: p });
    }
  }
  if (conflicts.length && !o.force) {
    const what = conflicts.map((c) => `conflict with "${c.manager}" using ${c.apiVersion}: ${fieldPathText(c.path)}`);
    const status = makeStatus(409, 'Conflict', `Apply failed with ${conflicts.length} conflict${conflicts.length > 1 ? 's' : ''}: ${what.join('\n')}`);
    status.details = { ...status.details, causes: conflicts.map((c) => ({ reason: 'FieldManagerConflict', message: `conflict with "${c.manager}" using ${c.apiVersion}`, field: fieldPathText(c.path) })) };
    throw new ApiError(status);
  }
  if (conflicts.length) {
    // Forced: the fields change hands.
    others = others.map((e) => {
      const drop = new Set(conflicts.filter((c) => c.manager === e.manager).map((c) => keyOf(c.path)));
      return drop.size ? { ...e, fieldsV1: withoutPaths(e.fieldsV1, drop) } : e;
    });
  }
  const next = structuredClone(live);
  if (previous) {
    // A node goes as a whole (a list element, a map) once no field under it is still applied by anyone.
    const kept = new Set<string>();
    for (const l of [...newLeaves, ...others.flatMap((e) => leaves(e.fieldsV1))]) for (let i = 1; i <= l.length; i++) kept.add(keyOf(l.slice(0, i)));
    removeDropped(next, previous.fieldsV1, kept);
  }
  const merged = applyStrategicMergePatch(next, applied, o.schema) as JsonMap;
  (merged.metadata as JsonMap).managedFields = [...others.filter((e) => leaves(e.fieldsV1).length), entry(mine)];
  return merged;
}
