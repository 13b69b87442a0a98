/**
 * The `scale` subresource (autoscaling/v1 Scale) of Deployments and
 * ReplicaSets: what `kubectl scale` patches. GET shows spec.replicas, the
 * observed replicas and the selector as a string; PUT and PATCH (merge or
 * JSON patch of the Scale) change only the parent's spec.replicas.
 */
import { badRequest, conflict } from './errors.ts';
import { formatLabelSelector, type LabelSelector } from './label-selector.ts';
import { applyJsonPatch, applyMergePatch } from './merge-patch.ts';
import type { ResourceType } from './resources.ts';
import type { Store } from './store.ts';
import type { KubeObject } from './types.ts';

/** The Scale object of a scalable object. */
export function scaleOf(obj: KubeObject): Record<string, unknown> {
  const spec = (obj.spec ?? {}) as { replicas?: number; selector?: LabelSelector };
  const status = (obj.status ?? {}) as { replicas?: number };
  return {
    kind: 'Scale',
    apiVersion: 'autoscaling/v1',
    metadata: {
      name: obj.metadata.name,
      namespace: obj.metadata.namespace,
      uid: obj.metadata.uid,
      resourceVersion: obj.metadata.resourceVersion,
      creationTimestamp: obj.metadata.creationTimestamp,
    },
    spec: { replicas: spec.replicas ?? 0 },
    status: { replicas: status.replicas ?? 0, selector: formatLabelSelector(spec.selector) },
  };
}

/** Serves one scale request; `patchType` is 'merge' or 'json' for PATCH. Returns the new Scale. */
export function serveScale(
  store: Store,
  rt: ResourceType,
  name: string,
  namespace: string | undefined,
  method: 'GET' | 'PUT' | 'PATCH',
  body?: unknown,
  patchType: 'merge' | 'json' = 'merge',
): Record<string, unknown> {
  const obj = store.get(rt, name, namespace);
  const current = scaleOf(obj);
  if (method === 'GET') return current;
  const next = (method === 'PUT' ? body : patchType === 'json' ? applyJsonPatch(current, body) : applyMergePatch(current, body)) as Record<string, unknown>;
  if (!next || typeof next !== 'object') throw badRequest('a Scale object is required');
  const meta = (next.metadata ?? {}) as { resourceVersion?: string };
  if (method === 'PUT' && meta.resourceVersion && meta.resourceVersion !== obj.metadata.resourceVersion) {
    throw conflict(rt.plural, name, 'the object has been modified; please apply your changes to the latest version and try again', rt.group);
  }
  const replicas = (next.spec as { replicas?: unknown } | undefined)?.replicas;
  if (typeof replicas !== 'number' || !Number.isInteger(replicas) || replicas < 0) {
    throw badRequest(`Scale.spec.replicas: Invalid value: ${JSON.stringify(replicas)}: must be greater than or equal to 0`);
  }
  const updated = store.patch(rt, name, { spec: { replicas } }, { namespace });
  return scaleOf(updated);
}
