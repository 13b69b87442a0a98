/**
 * kubectl's output shapes for `podlab get`: the default and `-o wide` tables,
 * and `-o json|yaml` as a Kubernetes `List`.
 */
import YAML from 'yaml';
import { JSONPath } from 'jsonpath-plus';
import type { KubeObject, Node, Pod } from '../control-plane/types.ts';

/** kubectl's human age: 45s, 12m, 3h, 2d. */
export function age(ts: string | undefined, now = Date.now()): string {
  if (!ts) return '<unknown>';
  const s = Math.max(0, Math.floor((now - Date.parse(ts)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 3600 * 2) return `${Math.floor(s / 60)}m`;
  if (s < 86400 * 2) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

/** Left-aligned columns separated by three spaces, as kubectl's printer does. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join('   ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

function nodeStatus(n: Node): string {
  const ready = n.status?.conditions?.find((c) => c.type === 'Ready');
  const s = ready?.status === 'True' ? 'Ready' : 'NotReady';
  return n.spec?.unschedulable ? `${s},SchedulingDisabled` : s;
}

/**
 * kubectl's node table; with `restarts` (the lab's records: how often the
 * supervisor restarted each node's agent) a RESTARTS column, podlab's own.
 */
export function formatNodes(nodes: Node[], wide: boolean, restarts?: ReadonlyMap<string, number>): string {
  const header = ['NAME', 'STATUS', 'ROLES', 'AGE', 'VERSION'];
  if (restarts) header.push('RESTARTS');
  if (wide) header.push('INTERNAL-IP', 'EXTERNAL-IP', 'OS-IMAGE', 'KERNEL-VERSION', 'CONTAINER-RUNTIME');
  const rows = nodes.map((n) => {
    const r = [n.metadata.name, nodeStatus(n), '<none>', age(n.metadata.creationTimestamp), 'v1.30.0-podlab'];
    if (restarts) r.push(String(restarts.get(n.metadata.name) ?? 0));
    if (wide) {
      const ip = n.status?.addresses?.find((a) => a.type === 'InternalIP')?.address ?? '<none>';
      // A kernel node (netns labs, kernel-node/) publishes its own nodeInfo.
      const info = (n.status as { nodeInfo?: Record<string, string> } | undefined)?.nodeInfo;
      r.push(ip, '<none>', info?.osImage || 'podlab emulated node', info?.kernelVersion || 'podlab', info?.containerRuntimeVersion || 'podlab://0.1.0');
    }
    return r;
  });
  return rows.length ? table(header, rows) : 'No resources found\n';
}

export function formatPods(pods: Pod[], wide: boolean, allNamespaces: boolean): string {
  const header = ['NAME', 'READY', 'STATUS', 'RESTARTS', 'AGE'];
  if (allNamespaces) header.unshift('NAMESPACE');
  if (wide) header.push('IP', 'NODE', 'NOMINATED NODE', 'READINESS GATES');
  const rows = pods.map((p) => {
    const total = p.spec?.containers.length ?? 0;
    const ready = (p.status?.containerStatuses as { ready?: boolean }[] | undefined)?.filter((c) => c.ready).length ?? 0;
    const r = [p.metadata.name, `${ready}/${total}`, p.status?.phase ?? 'Pending', '0', age(p.metadata.creationTimestamp)];
    if (allNamespaces) r.unshift(p.metadata.namespace ?? 'default');
    if (wide) r.push(p.status?.podIP ?? '<none>', p.spec?.nodeName ?? '<none>', '<none>', '<none>');
    return r;
  });
  return rows.length ? table(header, rows) : 'No resources found in default namespace.\n';
}

/** `-o json` / `-o yaml`: a `List` as kubectl prints for several objects. */
export function formatList(items: KubeObject[], format: 'json' | 'yaml'): string {
  const list = { apiVersion: 'v1', kind: 'List', items, metadata: { resourceVersion: '' } };
  return format === 'json' ? JSON.stringify(list, null, 4) + '\n' : YAML.stringify(list);
}

/** `-o json|yaml` as kubectl prints it: a named get gives the object itself, anything else a List. */
export function formatObjects(items: KubeObject[], format: 'json' | 'yaml', named: boolean): string {
  if (!named || items.length !== 1) return formatList(items, format);
  return format === 'json' ? JSON.stringify(items[0], null, 4) + '\n' : YAML.stringify(items[0]);
}

/**
 * kubectl's `-o jsonpath=TEMPLATE`: text outside braces is printed as is, each
 * `{.path}` is a JSONPath query (jsonpath-plus) whose results are joined by
 * spaces, as kubectl joins them. kubectl's `range`/`end` loops are refused.
 */
export function formatJsonPath(value: unknown, template: string): string {
  let out = '';
  let i = 0;
  while (i < template.length) {
    const open = template.indexOf('{', i);
    if (open < 0) {
      out += template.slice(i);
      break;
    }
    out += template.slice(i, open);
    const close = template.indexOf('}', open);
    if (close < 0) throw new JsonPathError(`jsonpath: unclosed '{' in ${template}`);
    const expr = template.slice(open + 1, close).trim();
    if (/^(range|end)\b/.test(expr)) throw new JsonPathError(`jsonpath: '${expr}' loops are not supported by podlab get; use {.items[*].field}`);
    if (!expr.startsWith('.') && !expr.startsWith('[') && expr !== '$') throw new JsonPathError(`jsonpath: '{${expr}}' must start with '.' (e.g. {.spec.clusterIP})`);
    const results = JSONPath<unknown[]>({ path: expr === '$' ? '$' : `$${expr}`, json: value as object, wrap: true });
    out += results.map((r) => (typeof r === 'object' && r !== null ? JSON.stringify(r) : String(r))).join(' ');
    i = close + 1;
  }
  return out.replace(/\\n/g, '\n');
}

export class JsonPathError extends Error {
  override name = 'JsonPathError';
}
