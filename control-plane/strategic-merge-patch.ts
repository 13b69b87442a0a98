/**
 * Strategic merge patch, as kube-apiserver applies it to built-in kinds.
 *
 * Like a JSON merge patch, except where the schema of the Go type says a
 * list is merged (`x-kubernetes-patch-strategy: merge`): a list of objects
 * is merged element by element on its merge key (`containers` by `name`,
 * `ports` by `containerPort`, `env` by `name`, ...), and a list of scalars
 * (`finalizers`) becomes the union. The directives kubectl sends are
 * honoured: `$patch: replace|delete|merge` on maps and list elements,
 * `$setElementOrder/<list>`, `$deleteFromPrimitiveList/<list>` and
 * `$retainKeys`. Where the schema says nothing, lists are replaced, as in
 * Kubernetes.
 *
 * The schema comes from openapi.ts, so the patch keys are those of the real
 * types, not a table kept here.
 */
import { badRequest } from './errors.ts';
import { deref, type SchemaNode } from './openapi.ts';

type Json = unknown;
type JsonMap = Record<string, Json>;

const SET_ORDER = '$setElementOrder/';
const DELETE_PRIMITIVE = '$deleteFromPrimitiveList/';

function isMap(v: unknown): v is JsonMap {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The schema of member `key` of an object with schema `schema`. */
function memberSchema(schema: SchemaNode | undefined, key: string): SchemaNode | undefined {
  if (!schema) return undefined;
  const prop = schema.properties?.[key];
  if (prop) return prop;
  if (isMap(schema.additionalProperties)) return schema.additionalProperties;
  return undefined;
}

function strategyOf(field: SchemaNode | undefined): { merge: boolean; retainKeys: boolean; key?: string } {
  const strategy = String(field?.['x-kubernetes-patch-strategy'] ?? '').split(',');
  return { merge: strategy.includes('merge'), retainKeys: strategy.includes('retainKeys'), key: field?.['x-kubernetes-patch-merge-key'] };
}

function stripDirectives(v: Json): Json {
  if (Array.isArray(v)) return v.filter((e) => !(isMap(e) && e.$patch !== undefined && Object.keys(e).length === 1)).map(stripDirectives);
  if (!isMap(v)) return v;
  const out: JsonMap = {};
  for (const [k, val] of Object.entries(v)) if (!k.startsWith('$') && val !== null) out[k] = stripDirectives(val);
  return out;
}

/**
 * Applies a strategic merge `patch` to `original` (neither is modified).
 * `schema` is the root schema of the object's kind; without one the patch
 * behaves as a JSON merge patch with its directives dropped. A malformed
 * directive is a 400.
 */
export function applyStrategicMergePatch(original: Json, patch: Json, schema: SchemaNode | undefined): Json {
  if (!isMap(patch)) throw badRequest('a strategic merge patch must be a JSON object');
  return mergeMap(isMap(original) ? structuredClone(original) : {}, patch, deref(schema));
}

function mergeMap(original: JsonMap, patch: JsonMap, schema: SchemaNode | undefined): JsonMap {
  const directive = patch.$patch;
  if (directive === 'replace') return stripDirectives(Object.fromEntries(Object.entries(patch).filter(([k]) => k !== '$patch'))) as JsonMap;
  if (directive === 'delete') return {};
  if (directive !== undefined && directive !== 'merge') throw badRequest(`unknown patch type: ${JSON.stringify(directive)} in map`);
  const result = original;
  if (patch.$retainKeys !== undefined) {
    if (!Array.isArray(patch.$retainKeys)) throw badRequest('$retainKeys must be a list of field names');
    const keep = new Set(patch.$retainKeys.map(String));
    for (const k of Object.keys(result)) if (!keep.has(k)) delete result[k];
  }
  for (const [k, v] of Object.entries(patch)) {
    if (!k.startsWith(DELETE_PRIMITIVE)) continue;
    const field = k.slice(DELETE_PRIMITIVE.length);
    if (!Array.isArray(v)) throw badRequest(`${k} must be a list`);
    const cur = result[field];
    if (Array.isArray(cur)) {
      const drop = new Set(v.map((x) => JSON.stringify(x)));
      result[field] = cur.filter((x) => !drop.has(JSON.stringify(x)));
    }
  }
  for (const [key, value] of Object.entries(patch)) {
    if (key.startsWith('$')) continue;
    if (value === null) {
      delete result[key];
      continue;
    }
    const field = memberSchema(schema, key);
    const fieldSchema = deref(field);
    if (isMap(value)) {
      result[key] = mergeMap(isMap(result[key]) ? (result[key]) : {}, value, fieldSchema);
    } else if (Array.isArray(value)) {
      result[key] = mergeList(result[key], value, field, deref(fieldSchema?.items));
    } else {
      result[key] = value;
    }
  }
  for (const [k, order] of Object.entries(patch)) {
    if (!k.startsWith(SET_ORDER)) continue;
    const field = k.slice(SET_ORDER.length);
    if (!Array.isArray(order)) throw badRequest(`${k} must be a list`);
    if (Array.isArray(result[field])) result[field] = reorder(result[field] as Json[], order, strategyOf(memberSchema(schema, field)).key);
  }
  return result;
}

function mergeList(original: Json, patch: Json[], field: SchemaNode | undefined, itemSchema: SchemaNode | undefined): Json[] {
  const { merge, key } = strategyOf(field);
  if (!merge) return stripDirectives(patch) as Json[];
  // `[{"$patch": "replace"}, ...]` replaces the whole list with the other elements.
  if (patch.some((e) => isMap(e) && e.$patch === 'replace' && Object.keys(e).length === 1)) return stripDirectives(patch) as Json[];
  const base: Json[] = Array.isArray(original) ? [...(original as Json[])] : [];
  if (key === undefined || patch.every((e) => !isMap(e))) {
    // A merge list of scalars: the union, original order first.
    const seen = new Set(base.map((x) => JSON.stringify(x)));
    for (const e of patch) {
      if (isMap(e)) continue;
      const s = JSON.stringify(e);
      if (!seen.has(s)) {
        seen.add(s);
        base.push(e);
      }
    }
    return base;
  }
  for (const elem of patch) {
    if (!isMap(elem)) throw badRequest(`the list merged by ${JSON.stringify(key)} contains a non-object element ${JSON.stringify(elem)}`);
    if (!(key in elem)) throw badRequest(`map: ${JSON.stringify(elem)} does not contain declared merge key: ${key}`);
    const idx = base.findIndex((o) => isMap(o) && isDeepEqualScalar(o[key], elem[key]));
    if (elem.$patch === 'delete') {
      if (idx >= 0) base.splice(idx, 1);
      continue;
    }
    if (idx >= 0) base[idx] = mergeMap(structuredClone(base[idx]) as JsonMap, elem, itemSchema);
    else base.push(mergeMap({}, elem, itemSchema));
  }
  return base;
}

function isDeepEqualScalar(a: Json, b: Json): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Orders `list` as `order` says (elements named there first, in that order; the rest after, as they were). */
function reorder(list: Json[], order: Json[], key: string | undefined): Json[] {
  const idOf = (e: Json): string => JSON.stringify(key !== undefined && isMap(e) ? e[key] : e);
  const rank = new Map(order.map((o, i) => [idOf(o), i]));
  return list
    .map((e, i) => ({ e, i, r: rank.get(idOf(e)) ?? order.length + i }))
    .sort((a, b) => a.r - b.r)
    .map((x) => x.e);
}
