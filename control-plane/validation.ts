/**
 * Validation and defaulting, with the error texts kube-apiserver uses, so
 * that what a student sees from podlab matches what they will later see from
 * a real cluster (`metadata.name: Invalid value: "Foo_": a lowercase RFC 1123
 * subdomain must consist of ...`).
 *
 * Bodies arrive as untyped JSON, so every check here tolerates wrong types
 * and reports them as field errors instead of throwing.
 */
import { isIpAddress, isIpv4Cidr } from '../packet/ip-input.ts';
import type { FieldError } from './errors.ts';
import type { KubeObject } from './types.ts';
import { validatePodUpdate } from './pod-update-validation.ts';

const DNS1123_LABEL_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const QUALIFIED_NAME_RE = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE_RE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

/** k8s' message for a bad DNS-1123 label. */
export const DNS1123_LABEL_MSG =
  "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

/** k8s' message for a bad DNS-1123 subdomain. */
export const DNS1123_SUBDOMAIN_MSG =
  "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

/** Problems with `value` as a DNS-1123 label (max 63), as k8s IsDNS1123Label reports them. */
export function dns1123LabelErrors(value: string): string[] {
  const errs: string[] = [];
  if (value.length > 63) errs.push('must be no more than 63 characters');
  if (!DNS1123_LABEL_RE.test(value)) errs.push(DNS1123_LABEL_MSG);
  return errs;
}

/** Problems with `value` as a DNS-1123 subdomain (max 253). */
export function dns1123SubdomainErrors(value: string): string[] {
  const errs: string[] = [];
  if (value.length > 253) errs.push('must be no more than 253 characters');
  if (!DNS1123_SUBDOMAIN_RE.test(value)) errs.push(DNS1123_SUBDOMAIN_MSG);
  return errs;
}

/** Which naming rule a kind's `metadata.name` follows. */
export type NameRule = 'dns1123-label' | 'dns1123-subdomain';

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function nameErrors(field: string, value: string, rule: NameRule): FieldError[] {
  const msgs = rule === 'dns1123-label' ? dns1123LabelErrors(value) : dns1123SubdomainErrors(value);
  return msgs.map((detail) => ({ field, type: 'FieldValueInvalid' as const, value, detail }));
}

function labelKeyErrors(field: string, key: string): FieldError[] {
  const slash = key.indexOf('/');
  const prefix = slash >= 0 ? key.slice(0, slash) : '';
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  const errs: FieldError[] = [];
  if (slash >= 0 && (prefix.length === 0 || dns1123SubdomainErrors(prefix).length > 0)) {
    errs.push({ field, type: 'FieldValueInvalid', value: key, detail: `prefix part ${DNS1123_SUBDOMAIN_MSG}` });
  }
  if (name.length === 0 || name.length > 63 || !QUALIFIED_NAME_RE.test(name)) {
    errs.push({
      field,
      type: 'FieldValueInvalid',
      value: key,
      detail:
        "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
    });
  }
  return errs;
}

/**
 * Validates `metadata` common to all kinds: name (per `rule`), labels and
 * annotations. `name` has already been filled from generateName if needed.
 */
export function validateObjectMeta(obj: KubeObject, rule: NameRule): FieldError[] {
  const errs: FieldError[] = [];
  const meta: unknown = obj.metadata;
  if (!isRecord(meta)) return [{ field: 'metadata', type: 'FieldValueRequired' }];
  const name = meta.name;
  if (typeof name !== 'string' || name === '') {
    errs.push({ field: 'metadata.name', type: 'FieldValueRequired', detail: 'name or generateName is required' });
  } else {
    errs.push(...nameErrors('metadata.name', name, rule));
  }
  const labels = meta.labels;
  if (labels !== undefined) {
    if (!isRecord(labels)) {
      errs.push({ field: 'metadata.labels', type: 'FieldValueInvalid', value: labels, detail: 'must be a map of string to string' });
    } else {
      for (const [k, v] of Object.entries(labels)) {
        errs.push(...labelKeyErrors('metadata.labels', k));
        if (typeof v !== 'string') {
          errs.push({ field: `metadata.labels`, type: 'FieldValueInvalid', value: v, detail: 'label values must be strings' });
        } else if (v.length > 63 || !LABEL_VALUE_RE.test(v)) {
          errs.push({
            field: 'metadata.labels',
            type: 'FieldValueInvalid',
            value: v,
            detail:
              "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
          });
        }
      }
    }
  }
  const annotations = meta.annotations;
  if (annotations !== undefined) {
    if (!isRecord(annotations)) {
      errs.push({ field: 'metadata.annotations', type: 'FieldValueInvalid', value: annotations, detail: 'must be a map of string to string' });
    } else {
      for (const [k, v] of Object.entries(annotations)) {
        errs.push(...labelKeyErrors('metadata.annotations', k));
        if (typeof v !== 'string') {
          errs.push({ field: `metadata.annotations`, type: 'FieldValueInvalid', value: v, detail: 'annotation values must be strings' });
        }
      }
    }
  }
  return errs;
}

/** True when `s` is an IPv4 CIDR such as `10.244.1.0/24` (host bits must be zero). */
export function isIPv4Cidr(s: string): boolean {
  return isIpv4Cidr(s, { strict: true });
}

/** Pod defaulting: phase Pending, restartPolicy Always, port protocol TCP. */
export function defaultPod(obj: KubeObject, op: 'create' | 'update'): void {
  if (!isRecord(obj.spec)) return;
  const spec = obj.spec;
  if (spec.restartPolicy === undefined) spec.restartPolicy = 'Always';
  if (Array.isArray(spec.containers)) {
    for (const c of spec.containers) {
      if (!isRecord(c) || !Array.isArray(c.ports)) continue;
      for (const p of c.ports) if (isRecord(p) && p.protocol === undefined) p.protocol = 'TCP';
    }
  }
  if (op === 'create') {
    const status = isRecord(obj.status) ? obj.status : {};
    if (status.phase === undefined) status.phase = 'Pending';
    obj.status = status;
  }
}

/** Namespace defaulting: phase Active, the `kubernetes` finalizer, and the name label k8s adds. */
export function defaultNamespace(obj: KubeObject): void {
  const spec = isRecord(obj.spec) ? obj.spec : {};
  if (spec.finalizers === undefined) spec.finalizers = ['kubernetes'];
  obj.spec = spec;
  const status = isRecord(obj.status) ? obj.status : {};
  if (status.phase === undefined) status.phase = 'Active';
  obj.status = status;
  if (typeof obj.metadata.name === 'string' && obj.metadata.name) {
    obj.metadata.labels = { ...(obj.metadata.labels ?? {}), 'kubernetes.io/metadata.name': obj.metadata.name };
  }
}

/** Namespace validation: the name must be a DNS-1123 label (checked by the store's name rule). */
export function validateNamespace(): FieldError[] {
  return [];
}

/** Pod validation: at least one container, each with a DNS-1123 label name and an image. */
export function validatePod(obj: KubeObject, old?: KubeObject): FieldError[] {
  const errs: FieldError[] = old ? validatePodUpdate(obj, old) : [];
  const spec = obj.spec;
  if (!isRecord(spec)) return [{ field: 'spec', type: 'FieldValueRequired' }];
  const containers = spec.containers;
  if (!Array.isArray(containers) || containers.length === 0) {
    errs.push({ field: 'spec.containers', type: 'FieldValueRequired' });
  } else {
    const seen = new Set<string>();
    containers.forEach((c: unknown, i) => {
      const base = `spec.containers[${i}]`;
      if (!isRecord(c)) {
        errs.push({ field: base, type: 'FieldValueInvalid', value: c, detail: 'must be an object' });
        return;
      }
      if (typeof c.name !== 'string' || c.name === '') {
        errs.push({ field: `${base}.name`, type: 'FieldValueRequired' });
      } else {
        errs.push(...nameErrors(`${base}.name`, c.name, 'dns1123-label'));
        if (seen.has(c.name)) errs.push({ field: `${base}.name`, type: 'FieldValueDuplicate', value: c.name });
        seen.add(c.name);
      }
      if (typeof c.image !== 'string' || c.image.trim() === '') {
        errs.push({ field: `${base}.image`, type: 'FieldValueRequired' });
      }
      if (c.ports !== undefined) {
        if (!Array.isArray(c.ports)) {
          errs.push({ field: `${base}.ports`, type: 'FieldValueInvalid', value: c.ports, detail: 'must be a list' });
        } else {
          c.ports.forEach((p: unknown, j) => {
            const pf = `${base}.ports[${j}]`;
            if (!isRecord(p)) {
              errs.push({ field: pf, type: 'FieldValueInvalid', value: p, detail: 'must be an object' });
              return;
            }
            const port = p.containerPort;
            if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
              errs.push({ field: `${pf}.containerPort`, type: 'FieldValueInvalid', value: port ?? 0, detail: 'must be between 1 and 65535, inclusive' });
            }
            if (p.protocol !== undefined && p.protocol !== 'TCP' && p.protocol !== 'UDP' && p.protocol !== 'SCTP') {
              errs.push({ field: `${pf}.protocol`, type: 'FieldValueNotSupported', value: p.protocol, detail: 'supported values: "SCTP", "TCP", "UDP"' });
            }
          });
        }
      }
      for (const key of ['args', 'command'] as const) {
        const v = c[key];
        if (v !== undefined && (!Array.isArray(v) || v.some((x) => typeof x !== 'string'))) {
          errs.push({ field: `${base}.${key}`, type: 'FieldValueInvalid', value: v, detail: 'must be a list of strings' });
        }
      }
      if (c.env !== undefined && (!Array.isArray(c.env) || c.env.some((e) => !isRecord(e) || typeof e.name !== 'string' || e.name === ''))) {
        errs.push({ field: `${base}.env`, type: 'FieldValueInvalid', value: c.env, detail: 'each entry needs a name' });
      }
    });
  }
  if (spec.nodeName !== undefined && spec.nodeName !== '') {
    if (typeof spec.nodeName !== 'string') {
      errs.push({ field: 'spec.nodeName', type: 'FieldValueInvalid', value: spec.nodeName, detail: 'must be a string' });
    } else {
      errs.push(...nameErrors('spec.nodeName', spec.nodeName, 'dns1123-subdomain'));
    }
  }
  const status = obj.status;
  if (status !== undefined) {
    if (!isRecord(status)) {
      errs.push({ field: 'status', type: 'FieldValueInvalid', value: status, detail: 'must be an object' });
    } else {
      const phases = ['Pending', 'Running', 'Succeeded', 'Failed', 'Unknown'];
      if (status.phase !== undefined && !(typeof status.phase === 'string' && phases.includes(status.phase))) {
        errs.push({ field: 'status.phase', type: 'FieldValueNotSupported', value: status.phase, detail: 'supported values: "Failed", "Pending", "Running", "Succeeded", "Unknown"' });
      }
      for (const key of ['podIP', 'hostIP'] as const) {
        const v = status[key];
        if (v !== undefined && v !== '' && !isIpAddress(v)) {
          errs.push({ field: `status.${key}`, type: 'FieldValueInvalid', value: v, detail: 'must be a valid IP address' });
        }
      }
    }
  }
  return errs;
}

/** Node validation: podCIDR(s) well-formed and, once set, immutable (as in k8s). */
export function validateNode(obj: KubeObject, old: KubeObject | undefined): FieldError[] {
  const errs: FieldError[] = [];
  const spec = obj.spec === undefined ? {} : obj.spec;
  if (!isRecord(spec)) return [{ field: 'spec', type: 'FieldValueInvalid', value: spec, detail: 'must be an object' }];
  const cidr = spec.podCIDR;
  if (cidr !== undefined && cidr !== '' && (typeof cidr !== 'string' || !isIPv4Cidr(cidr))) {
    errs.push({ field: 'spec.podCIDR', type: 'FieldValueInvalid', value: cidr, detail: 'must be a valid IPv4 CIDR with no host bits set (e.g. 10.244.1.0/24)' });
  }
  const cidrs = spec.podCIDRs;
  if (cidrs !== undefined) {
    if (!Array.isArray(cidrs) || cidrs.some((c) => typeof c !== 'string')) {
      errs.push({ field: 'spec.podCIDRs', type: 'FieldValueInvalid', value: cidrs, detail: 'must be a list of CIDR strings' });
    } else if (cidrs.length > 0 && cidrs[0] !== cidr) {
      errs.push({ field: 'spec.podCIDRs', type: 'FieldValueInvalid', value: cidrs, detail: 'first entry must equal spec.podCIDR' });
    }
  }
  if (spec.unschedulable !== undefined && typeof spec.unschedulable !== 'boolean') {
    errs.push({ field: 'spec.unschedulable', type: 'FieldValueInvalid', value: spec.unschedulable, detail: 'must be a boolean' });
  }
  const oldSpec = old && isRecord(old.spec) ? old.spec : undefined;
  if (oldSpec && typeof oldSpec.podCIDR === 'string' && oldSpec.podCIDR !== '' && cidr !== oldSpec.podCIDR) {
    errs.push({ field: 'spec.podCIDR', type: 'FieldValueForbidden', detail: 'node updates may not change podCIDR except from "" to valid' });
  }
  const status = obj.status;
  if (status !== undefined && isRecord(status)) {
    if (status.conditions !== undefined) {
      if (!Array.isArray(status.conditions)) {
        errs.push({ field: 'status.conditions', type: 'FieldValueInvalid', value: status.conditions, detail: 'must be a list' });
      } else {
        status.conditions.forEach((c: unknown, i) => {
          if (!isRecord(c) || typeof c.type !== 'string' || !['True', 'False', 'Unknown'].includes(String(c.status))) {
            errs.push({ field: `status.conditions[${i}]`, type: 'FieldValueInvalid', value: c, detail: 'needs a type and a status of "True", "False" or "Unknown"' });
          }
        });
      }
    }
    if (status.addresses !== undefined) {
      const types = ['InternalIP', 'ExternalIP', 'Hostname', 'InternalDNS', 'ExternalDNS'];
      if (!Array.isArray(status.addresses) || status.addresses.some((a) => !isRecord(a) || !types.includes(String(a.type)) || typeof a.address !== 'string')) {
        errs.push({ field: 'status.addresses', type: 'FieldValueInvalid', value: status.addresses, detail: 'each entry needs a type (InternalIP, Hostname, ...) and an address' });
      }
    }
  }
  return errs;
}

/** Node defaulting on update: a podCIDR that the update omits is kept (it is immutable once set). */
export function defaultNodeFromOld(obj: KubeObject, old: KubeObject | undefined): void {
  if (!old || !isRecord(old.spec)) return;
  const spec = isRecord(obj.spec) ? obj.spec : {};
  if ((spec.podCIDR === undefined || spec.podCIDR === '') && typeof old.spec.podCIDR === 'string') {
    spec.podCIDR = old.spec.podCIDR;
    if (spec.podCIDRs === undefined && Array.isArray(old.spec.podCIDRs)) spec.podCIDRs = [...(old.spec.podCIDRs as unknown[])];
  }
  obj.spec = spec;
}
