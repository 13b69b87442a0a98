/**
 * JSON merge patch (RFC 7386), the patch flavour the apiserver implements.
 *
 * `application/strategic-merge-patch+json` is accepted too and treated as a
 * merge patch, because kubectl sends it by default for built-in kinds. The
 * difference to real SMP: lists are replaced wholesale (SMP merges lists such
 * as `containers` by their `name` key), and SMP directives (`$patch`,
 * `$setElementOrder/...`, `$retainKeys`, `$deleteFromPrimitiveList/...`) are
 * dropped rather than interpreted. For the small objects podlab serves, every
 * patch kubectl or the node agents send behaves the same under both.
 */

/** Content types the PATCH verb accepts. */
export const MERGE_PATCH_TYPE = 'application/merge-patch+json';
/** Accepted and treated as a merge patch; see the module comment. */
export const STRATEGIC_MERGE_PATCH_TYPE = 'application/strategic-merge-patch+json';

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

/** Removes strategic-merge-patch directive keys (those starting with `$`), recursively. */
export function stripStrategicDirectives(patch: unknown): unknown {
  if (Array.isArray(patch)) return patch.map(stripStrategicDirectives);
  if (!isPlainObject(patch)) return patch;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(patch)) {
    if (k.startsWith('$')) continue;
    out[k] = stripStrategicDirectives(v);
  }
  return out;
}
