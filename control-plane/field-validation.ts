/**
 * Unknown-field detection against a kind's schema, for the `fieldValidation`
 * query parameter (Strict: 400, Warn: a `Warning` header, Ignore: nothing),
 * which kubectl sets to Strict by default. The wording is kube-apiserver's:
 * `Pod in version "v1" cannot be handled as a Pod: strict decoding error:
 * unknown field "spec.containers[0].imagee"`.
 *
 * `status` is not checked: the main resource ignores it, and node agents
 * may write status fields newer than the schemas (see openapi.ts).
 * Strategic-merge directives (`$patch`, `$setElementOrder/...`) are not
 * fields and are skipped.
 */
import { badRequest } from './errors.ts';
import { deref, type SchemaNode } from './openapi.ts';
import { apiVersionOf, type ResourceType } from './resources.ts';

/** The values of the `fieldValidation` parameter. */
export type FieldValidation = 'Strict' | 'Warn' | 'Ignore';

/** Parses the parameter; absent means Warn, as in kube-apiserver 1.27+. */
export function parseFieldValidation(raw: string | null): FieldValidation {
  if (raw === null || raw === '') return 'Warn';
  if (raw === 'Strict' || raw === 'Warn' || raw === 'Ignore') return raw;
  throw badRequest(`fieldValidation must be one of "Ignore", "Warn" or "Strict", got ${JSON.stringify(raw)}`);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Paths of the members of `value` that `schema` does not declare. */
export function unknownFields(value: unknown, schema: SchemaNode | undefined, path = ''): string[] {
  const s = deref(schema);
  if (!s) return [];
  const out: string[] = [];
  if (Array.isArray(value)) {
    const items = s.items;
    if (items) value.forEach((v, i) => out.push(...unknownFields(v, items, `${path}[${i}]`)));
    return out;
  }
  if (!isRecord(value)) return out;
  const props = s.properties;
  const extra = s.additionalProperties;
  for (const [k, v] of Object.entries(value)) {
    if (k.startsWith('$')) continue;
    if (path === '' && k === 'status') continue;
    const child = path ? `${path}.${k}` : k;
    if (props && k in props) out.push(...unknownFields(v, props[k], child));
    else if (isRecord(extra)) out.push(...unknownFields(v, extra, child));
    else if (props || extra === false) out.push(child);
  }
  return out;
}

/**
 * Checks a request body; returns the warnings to send (Warn), throws the
 * 400 (Strict), or returns nothing (Ignore, or no schema for the kind).
 */
export function checkFields(rt: ResourceType, body: unknown, schema: SchemaNode | undefined, mode: FieldValidation): string[] {
  if (mode === 'Ignore' || !schema) return [];
  const unknown = unknownFields(body, schema);
  if (unknown.length === 0) return [];
  const texts = unknown.map((f) => `unknown field "${f}"`);
  if (mode === 'Strict') {
    throw badRequest(`${rt.kind} in version "${apiVersionOf(rt).split('/').pop()}" cannot be handled as a ${rt.kind}: strict decoding error: ${texts.join(', ')}`);
  }
  return texts;
}
