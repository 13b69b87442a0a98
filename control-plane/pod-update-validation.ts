/**
 * Which parts of a Pod's spec may change after creation, as kube-apiserver's
 * ValidatePodUpdate decides: container and init-container images,
 * `activeDeadlineSeconds` (set once, then only lowered), `tolerations`
 * (only additions; an existing toleration's `tolerationSeconds` may be
 * lowered) and `terminationGracePeriodSeconds` (to 1 from a negative value).
 * Everything else (nodeName, ports, command, the number of containers) is
 * fixed: a Pod is replaced, not edited. Without this a `replace -f` of a
 * manifest that lacks `nodeName` would unbind a running Pod.
 */
import { isDeepStrictEqual } from 'node:util';
import type { FieldError } from './errors.ts';
import type { KubeObject } from './types.ts';

/** Kubernetes' list of updatable fields, verbatim (kubectl users grep for it). */
export const POD_UPDATABLE_FIELDS =
  '`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)';

type Spec = Record<string, unknown>;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Copies the old images into the new containers, so only other changes remain visible. */
function mungeImages(next: unknown, old: unknown): unknown {
  if (!Array.isArray(next) || !Array.isArray(old) || next.length !== old.length) return next;
  const prev: unknown[] = old;
  return (next as unknown[]).map((c, i) => {
    const o = prev[i];
    return isRecord(c) && isRecord(o) ? { ...c, image: o.image } : c;
  });
}

/** True when every old toleration is still there (its tolerationSeconds possibly lowered). */
function onlyAddsTolerations(next: unknown, old: unknown): boolean {
  const oldList = Array.isArray(old) ? old : [];
  if (next !== undefined && !Array.isArray(next)) return false;
  const nextList = (next as unknown[] | undefined) ?? [];
  return oldList.every((o) =>
    nextList.some((n) => {
      if (!isRecord(o) || !isRecord(n)) return isDeepStrictEqual(o, n);
      const { tolerationSeconds: os, ...orest } = o;
      const { tolerationSeconds: ns, ...nrest } = n;
      if (!isDeepStrictEqual(orest, nrest)) return false;
      if (os === undefined) return ns === undefined;
      return typeof ns === 'number' && typeof os === 'number' && ns <= os;
    }),
  );
}

function show(v: unknown): string {
  return v === undefined ? '<unset>' : JSON.stringify(v);
}

/** A short per-field diff of two specs (old `-`, new `+`), in place of Go's cmp.Diff. */
function specDiff(old: Spec, next: Spec): string {
  const keys = [...new Set([...Object.keys(old), ...Object.keys(next)])].sort();
  const lines: string[] = [];
  for (const k of keys) {
    if (isDeepStrictEqual(old[k], next[k])) continue;
    lines.push(`  - ${k}: ${show(old[k])}`, `  + ${k}: ${show(next[k])}`);
  }
  return lines.join('\n');
}

/** Field errors for an update of `old` to `obj` (both Pods); empty when the spec change is allowed. */
export function validatePodUpdate(obj: KubeObject, old: KubeObject): FieldError[] {
  const oldSpec: Spec = isRecord(old.spec) ? old.spec : {};
  const newSpec: Spec = isRecord(obj.spec) ? obj.spec : {};
  const errs: FieldError[] = [];
  const munged: Spec = { ...newSpec };
  munged.containers = mungeImages(newSpec.containers, oldSpec.containers);
  if (newSpec.initContainers !== undefined || oldSpec.initContainers !== undefined) munged.initContainers = mungeImages(newSpec.initContainers, oldSpec.initContainers);
  if (newSpec.containers === undefined) delete munged.containers;

  const oldAds = oldSpec.activeDeadlineSeconds;
  const newAds = newSpec.activeDeadlineSeconds;
  if (!isDeepStrictEqual(oldAds, newAds)) {
    const lowered = typeof newAds === 'number' && newAds > 0 && (oldAds === undefined || (typeof oldAds === 'number' && newAds <= oldAds));
    if (!lowered) {
      errs.push({ field: 'spec.activeDeadlineSeconds', type: 'FieldValueInvalid', value: newAds ?? null, detail: 'must be a positive integer no greater than the current value, and may not be unset' });
    }
    if (oldAds === undefined) delete munged.activeDeadlineSeconds;
    else munged.activeDeadlineSeconds = oldAds;
  }
  if (onlyAddsTolerations(newSpec.tolerations, oldSpec.tolerations)) {
    if (oldSpec.tolerations === undefined) delete munged.tolerations;
    else munged.tolerations = oldSpec.tolerations;
  }
  const oldGrace = oldSpec.terminationGracePeriodSeconds;
  if (typeof oldGrace === 'number' && oldGrace < 0 && newSpec.terminationGracePeriodSeconds === 1) munged.terminationGracePeriodSeconds = oldGrace;

  if (!isDeepStrictEqual(munged, oldSpec)) {
    errs.push({ field: 'spec', type: 'FieldValueForbidden', detail: `pod updates may not change fields other than ${POD_UPDATABLE_FIELDS}\n${specDiff(oldSpec, munged)}` });
  }
  return errs;
}
