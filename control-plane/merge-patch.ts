/**
 * The patch flavours of the PATCH verb, except the strategic one (see
 * strategic-merge-patch.ts): JSON merge patch (RFC 7386) and JSON patch
 * (RFC 6902, applied by the fast-json-patch library).
 */
import { createRequire } from 'node:module';
import type * as jsonpatchTypes from 'fast-json-patch';
import { ApiError, badRequest, makeStatus } from './errors.ts';

// Through require: an ESM import of this CommonJS package would make Node
// compile its CommonJS lexer (WebAssembly, some 8 MB RSS) in every node agent,
// whose API client loads this module for its content types. And only on the
// first JSON patch: loading the package costs an agent, which never applies
// one, another ~2.4 MB.
let jsonpatchLib: typeof jsonpatchTypes | undefined;
const jsonpatch = (): typeof jsonpatchTypes => (jsonpatchLib ??= createRequire(import.meta.url)('fast-json-patch') as typeof jsonpatchTypes);

/** Content types the PATCH verb accepts. */
export const MERGE_PATCH_TYPE = 'application/merge-patch+json';
export const STRATEGIC_MERGE_PATCH_TYPE = 'application/strategic-merge-patch+json';
export const JSON_PATCH_TYPE = 'application/json-patch+json';
/** Server-side apply's content type; podlab does not implement server-side apply and refuses it with 415. */
export const APPLY_PATCH_TYPE = 'application/apply-patch+yaml';

/** The patch flavours the store applies. */
export type PatchType = 'merge' | 'strategic' | 'json';

/** Maps a PATCH Content-Type to its flavour, or undefined for anything else. */
export function patchTypeOf(contentType: string | undefined): PatchType | undefined {
  const ct = (contentType ?? '').split(';')[0].trim().toLowerCase();
  if (ct === MERGE_PATCH_TYPE) return 'merge';
  if (ct === STRATEGIC_MERGE_PATCH_TYPE) return 'strategic';
  if (ct === JSON_PATCH_TYPE) return 'json';
  return undefined;
}

/** The 415 a kube-apiserver without server-side apply sends for any other PATCH content type. */
export function unsupportedPatchType(): ApiError {
  return new ApiError(
    makeStatus(
      415,
      'UnsupportedMediaType',
      `the body of the request was in an unknown format - accepted media types include: ${JSON_PATCH_TYPE}, ${MERGE_PATCH_TYPE}, ${STRATEGIC_MERGE_PATCH_TYPE}`,
    ),
  );
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Applies `patch` to `target` per RFC 7386 and returns the result; neither
 * input is modified. `null` members delete, objects merge recursively,
 * everything else (arrays included) replaces.
 */
export function applyMergePatch(target: unknown, patch: unknown): unknown {
  if (!isPlainObject(patch)) return structuredClone(patch);
  const result: Record<string, unknown> = isPlainObject(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key];
    else result[key] = applyMergePatch(result[key], value);
  }
  return result;
}

/**
 * Applies an RFC 6902 operation list to a copy of `target`. A malformed
 * operation is a 400; an operation that cannot apply (a failed `test`, a
 * missing path) is a 422, as kube-apiserver answers.
 */
export function applyJsonPatch(target: unknown, ops: unknown): unknown {
  if (!Array.isArray(ops)) throw badRequest('a JSON patch must be a JSON array of operations');
  const invalid = jsonpatch().validate(ops as jsonpatchTypes.Operation[], target);
  if (invalid && ['OPERATION_NOT_AN_OBJECT', 'OPERATION_OP_INVALID', 'OPERATION_PATH_INVALID', 'OPERATION_FROM_REQUIRED', 'OPERATION_VALUE_REQUIRED', 'OPERATION_VALUE_CANNOT_CONTAIN_UNDEFINED', 'SEQUENCE_NOT_AN_ARRAY'].includes(invalid.name)) {
    throw badRequest(`invalid JSON patch operation ${invalid.index ?? ''}: ${firstLine(invalid.message)}`);
  }
  try {
    return jsonpatch().applyPatch(structuredClone(target), ops as jsonpatchTypes.Operation[], true, true).newDocument;
  } catch (err) {
    const e = err as jsonpatchTypes.JsonPatchError;
    const where = e.operation ? ` (operation ${e.index ?? '?'}: ${JSON.stringify(e.operation)})` : '';
    throw new ApiError(makeStatus(422, 'Invalid', `the server rejected our request due to an error in our request: ${firstLine(e.message ?? String(err))}${where}`));
  }
}

function firstLine(s: string): string {
  return s.split('\n')[0];
}
