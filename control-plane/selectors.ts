/**
 * Label and field selectors, parsed once per request and matched against a
 * compact "selectable attributes" record of each object. The store keeps
 * those attributes for the previous version of every object in its watch
 * history, which is what lets a watch turn "stopped matching" into DELETED.
 */
import { badRequest } from './errors.ts';
import type { ResourceType } from './resources.ts';
import type { KubeObject } from './types.ts';

/** The parts of an object that selectors look at. */
export interface SelectableAttrs {
  labels: Record<string, string>;
  /** Every selectable field of the kind, including metadata.name/namespace. */
  fields: Record<string, string>;
}

/** One label requirement. */
export type LabelRequirement =
  | { key: string; op: 'exists' | 'notexists' }
  | { key: string; op: 'in' | 'notin'; values: string[] };

/** One field requirement (`spec.nodeName=node-1`, `status.phase!=Running`). */
export interface FieldRequirement {
  field: string;
  op: '=' | '!=';
  value: string;
}

/** A parsed pair of selectors; empty lists match everything. */
export interface Selector {
  labels: LabelRequirement[];
  fields: FieldRequirement[];
}

/** Computes the selectable attributes of an object of kind `rt`. */
export function selectableAttrs(rt: ResourceType, obj: KubeObject): SelectableAttrs {
  const fields: Record<string, string> = { 'metadata.name': obj.metadata.name };
  if (rt.namespaced) fields['metadata.namespace'] = obj.metadata.namespace ?? '';
  for (const [name, get] of Object.entries(rt.fieldSelectors ?? {})) fields[name] = get(obj);
  return { labels: { ...(obj.metadata.labels ?? {}) }, fields };
}

/** Splits on commas that are not inside parentheses. */
function splitTopLevel(s: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth = Math.max(0, depth - 1);
    if (ch === ',' && depth === 0) {
      parts.push(cur);
      cur = '';
    } else cur += ch;
  }
  parts.push(cur);
  return parts;
}

const LABEL_KEY = '[A-Za-z0-9][-A-Za-z0-9_./]*';
const LABEL_VALUE = '[-A-Za-z0-9_.]*';
const RE_NOTEXISTS = new RegExp(`^!\\s*(${LABEL_KEY})$`);
const RE_EXISTS = new RegExp(`^(${LABEL_KEY})$`);
const RE_SET = new RegExp(`^(${LABEL_KEY})\\s+(in|notin)\\s*\\(([^()]*)\\)$`);
const RE_EQ = new RegExp(`^(${LABEL_KEY})\\s*(==|!=|=)\\s*(${LABEL_VALUE})$`);

/**
 * Parses a label selector (`app=web,tier!=db,env in (a,b),!legacy,canary`).
 * Throws a 400 ApiError worded like k8s on a syntax error.
 */
export function parseLabelSelector(selector: string | undefined): LabelRequirement[] {
  if (selector === undefined || selector.trim() === '') return [];
  const reqs: LabelRequirement[] = [];
  for (const raw of splitTopLevel(selector)) {
    const part = raw.trim();
    let m: RegExpExecArray | null;
    if ((m = RE_NOTEXISTS.exec(part))) reqs.push({ key: m[1], op: 'notexists' });
    else if ((m = RE_SET.exec(part))) {
      const values = m[3].split(',').map((v) => v.trim()).filter((v) => v !== '');
      if (values.some((v) => !new RegExp(`^${LABEL_VALUE}$`).test(v))) {
        throw badRequest(`unable to parse requirement: invalid label value in "${part}"`);
      }
      reqs.push({ key: m[1], op: m[2] === 'in' ? 'in' : 'notin', values });
    } else if ((m = RE_EQ.exec(part))) {
      reqs.push({ key: m[1], op: m[2] === '!=' ? 'notin' : 'in', values: [m[3]] });
    } else if ((m = RE_EXISTS.exec(part))) reqs.push({ key: m[1], op: 'exists' });
    else throw badRequest(`unable to parse requirement: found '${part}', expected: key, !key, key=value, key!=value, key in (...), key notin (...)`);
  }
  return reqs;
}

/** Unescapes a field-selector value (`\,` `\=` `\\`). */
function unescapeFieldValue(v: string): string {
  return v.replace(/\\([\\,=!])/g, '$1');
}

/** Splits on commas not preceded by a backslash escape. */
function splitUnescaped(s: string, sep: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i];
    if (ch === '\\' && i + 1 < s.length) {
      cur += ch + s[i + 1];
      i++;
    } else if (ch === sep) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

/**
 * Parses a field selector against the fields the kind supports. Unknown
 * fields get k8s' `field label not supported: x` (400).
 */
export function parseFieldSelector(selector: string | undefined, rt: ResourceType): FieldRequirement[] {
  if (selector === undefined || selector.trim() === '') return [];
  const supported = new Set(['metadata.name', ...(rt.namespaced ? ['metadata.namespace'] : []), ...Object.keys(rt.fieldSelectors ?? {})]);
  const reqs: FieldRequirement[] = [];
  for (const raw of splitUnescaped(selector, ',')) {
    const part = raw.trim();
    const m = /^([A-Za-z0-9_.]+)\s*(==|!=|=)(.*)$/.exec(part);
    if (!m) throw badRequest(`invalid selector: '${part}'; can't understand '${part}'`);
    const field = m[1];
    if (!supported.has(field)) throw badRequest(`field label not supported: ${field}`);
    reqs.push({ field, op: m[2] === '!=' ? '!=' : '=', value: unescapeFieldValue(m[3].trim()) });
  }
  return reqs;
}

/** Parses both selectors of a request for kind `rt`. */
export function parseSelector(rt: ResourceType, labelSelector?: string, fieldSelector?: string): Selector {
  return { labels: parseLabelSelector(labelSelector), fields: parseFieldSelector(fieldSelector, rt) };
}

/** True when the object's attributes satisfy every requirement. */
export function matches(sel: Selector, attrs: SelectableAttrs): boolean {
  for (const r of sel.labels) {
    const has = Object.prototype.hasOwnProperty.call(attrs.labels, r.key);
    const v = attrs.labels[r.key];
    switch (r.op) {
      case 'exists':
        if (!has) return false;
        break;
      case 'notexists':
        if (has) return false;
        break;
      case 'in':
        if (!has || !r.values.includes(v)) return false;
        break;
      case 'notin':
        if (has && r.values.includes(v)) return false;
        break;
    }
  }
  for (const r of sel.fields) {
    const v = attrs.fields[r.field] ?? '';
    if (r.op === '=' ? v !== r.value : v === r.value) return false;
  }
  return true;
}

/** True when the selector has no requirements at all. */
export function isEmptySelector(sel: Selector): boolean {
  return sel.labels.length === 0 && sel.fields.length === 0;
}
