/**
 * JSON patch (RFC 6902), `application/json-patch+json`: what `kubectl
 * rollout undo` sends (replace /spec/template and /metadata/annotations)
 * and `kubectl patch --type=json`. Paths are JSON pointers (RFC 6901).
 * Failures are ApiErrors: a malformed patch is a 400, a failed `test` or a
 * missing path a 422, as kube-apiserver answers.
 */
import { ApiError, badRequest, makeStatus } from './errors.ts';
import { isDeepStrictEqual } from 'node:util';

export const JSON_PATCH_TYPE = 'application/json-patch+json';

type Json = unknown;

function unprocessable(message: string): ApiError {
  return new ApiError(makeStatus(422, 'Invalid', message));
}

function parsePointer(path: unknown, field: string): string[] {
  if (typeof path !== 'string' || (path !== '' && !path.startsWith('/'))) throw badRequest(`json patch: ${field} must be a JSON pointer, got ${JSON.stringify(path)}`);
  return path === '' ? [] : path.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function container(doc: Json, tokens: string[], path: string): { parent: Record<string, Json> | Json[]; key: string } {
  let cur = doc;
  for (const t of tokens.slice(0, -1)) {
    if (Array.isArray(cur)) cur = cur[Number(t)];
    else if (cur && typeof cur === 'object') cur = (cur as Record<string, Json>)[t];
    else cur = undefined;
    if (cur === undefined) throw unprocessable(`jsonpatch: the path "${path}" does not exist`);
  }
  if (!cur || typeof cur !== 'object') throw unprocessable(`jsonpatch: the path "${path}" does not exist`);
  return { parent: cur as Record<string, Json> | Json[], key: tokens[tokens.length - 1] };
}

function get(doc: Json, tokens: string[], path: string): Json {
  if (tokens.length === 0) return doc;
  const { parent, key } = container(doc, tokens, path);
  const v = Array.isArray(parent) ? parent[Number(key)] : parent[key];
  if (v === undefined) throw unprocessable(`jsonpatch: the path "${path}" does not exist`);
  return v;
}

function remove(doc: Json, tokens: string[], path: string): Json {
  const { parent, key } = container(doc, tokens, path);
  const v = get(doc, tokens, path);
  if (Array.isArray(parent)) parent.splice(Number(key), 1);
  else delete parent[key];
  return v;
}

function add(doc: Json, tokens: string[], value: Json, path: string, replace: boolean): Json {
  if (tokens.length === 0) return structuredClone(value);
  const { parent, key } = container(doc, tokens, path);
  if (Array.isArray(parent)) {
    const i = key === '-' ? parent.length : Number(key);
    if (!Number.isInteger(i) || i < 0 || i > parent.length - (replace ? 1 : 0)) throw unprocessable(`jsonpatch: index out of range in "${path}"`);
    if (replace) parent[i] = structuredClone(value);
    else parent.splice(i, 0, structuredClone(value));
  } else {
    if (replace && !(key in parent)) throw unprocessable(`jsonpatch: the path "${path}" does not exist`);
    parent[key] = structuredClone(value);
  }
  return doc;
}

/** Applies an RFC 6902 patch to a copy of `target`. */
export function applyJsonPatch(target: Json, patch: unknown): Json {
  if (!Array.isArray(patch)) throw badRequest('json patch: the body must be a JSON array of operations');
  let doc = structuredClone(target);
  patch.forEach((op: unknown, i) => {
    if (!op || typeof op !== 'object') throw badRequest(`json patch: operation ${i} is not an object`);
    const o = op as Record<string, unknown>;
    const path = String(o.path);
    const tokens = parsePointer(o.path, `operation ${i} path`);
    switch (o.op) {
      case 'add':
        doc = add(doc, tokens, o.value, path, false);
        break;
      case 'replace':
        doc = add(doc, tokens, o.value, path, true);
        break;
      case 'remove':
        remove(doc, tokens, path);
        break;
      case 'move': {
        const v = remove(doc, parsePointer(o.from, `operation ${i} from`), String(o.from));
        doc = add(doc, tokens, v, path, false);
        break;
      }
      case 'copy':
        doc = add(doc, tokens, get(doc, parsePointer(o.from, `operation ${i} from`), String(o.from)), path, false);
        break;
      case 'test':
        if (!isDeepStrictEqual(get(doc, tokens, path), o.value)) throw unprocessable(`jsonpatch: test operation for path "${path}" failed`);
        break;
      default:
        throw badRequest(`json patch: operation ${i} has an unknown op ${JSON.stringify(o.op)}`);
    }
  });
  return doc;
}
