/**
 * Server-side printing (`meta.k8s.io/v1` Table), so that a real
 * `kubectl get pods -o wide` shows READY/STATUS/IP/NODE columns instead of
 * just NAME and AGE. kubectl asks for a Table through its Accept header
 * (`application/json;as=Table;v=v1;g=meta.k8s.io`); any other request gets
 * the plain object or List.
 *
 * Column sets and cell formats follow kube-apiserver's printers for Pod,
 * Node and Namespace; kinds without a definition get Name + Created At like
 * k8s' default table convertor.
 */
import type { KubeObject, NodeStatus, PodSpec, PodStatus } from './types.ts';

/** One column of a Table (priority 1 columns only show with `-o wide`). */
export interface TableColumn {
  name: string;
  type: 'string' | 'integer' | 'date';
  format: string;
  description: string;
  priority: number;
}

/** How a kind is printed. */
export interface TableDefinition {
  columns: TableColumn[];
  /** Cells for one object, in column order; `now` is epoch ms for ages. */
  cells(obj: KubeObject, now: number): (string | number)[];
}

/** What `includeObject` asks to embed in each row. */
export type IncludeObject = 'None' | 'Metadata' | 'Object';

/** True when an Accept header asks for a meta.k8s.io Table. */
export function wantsTable(accept: string | undefined): boolean {
  if (!accept) return false;
  return accept.split(',').some((part) => {
    const params = part.split(';').map((p) => p.trim());
    return params.includes('as=Table') && params.includes('g=meta.k8s.io') && (params.includes('v=v1') || params.includes('v=v1beta1'));
  });
}

/** k8s' duration.HumanDuration, used for AGE cells ("45s", "3m20s", "5h", "12d"). */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < -1) return '<invalid>';
  if (seconds < 0) return '0s';
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) return seconds % 60 === 0 ? `${minutes}m` : `${minutes}m${seconds % 60}s`;
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) return minutes % 60 === 0 ? `${hours}h` : `${hours}h${minutes % 60}m`;
  if (hours < 48) return `${hours}h`;
  if (hours < 24 * 8) return hours % 24 === 0 ? `${Math.floor(hours / 24)}d` : `${Math.floor(hours / 24)}d${hours % 24}h`;
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24)}d`;
  const days = Math.floor(hours / 24);
  if (hours < 24 * 365 * 8) return days % 365 === 0 ? `${Math.floor(days / 365)}y` : `${Math.floor(days / 365)}y${days % 365}d`;
  return `${Math.floor(days / 365)}y`;
}

function age(obj: KubeObject, now: number): string {
  const created = Date.parse(obj.metadata.creationTimestamp);
  return Number.isNaN(created) ? '<unknown>' : humanDuration(now - created);
}

const col = (name: string, description: string, priority = 0, type: TableColumn['type'] = 'string', format = ''): TableColumn => ({
  name,
  type,
  format,
  description,
  priority,
});

const NAME_COL = col('Name', 'Name must be unique within a namespace.', 0, 'string', 'name');
const AGE_COL = col('Age', 'CreationTimestamp is a timestamp representing the server time when this object was created.');

interface ContainerStatusLike {
  ready?: boolean;
  restartCount?: number;
  state?: { waiting?: { reason?: string } };
}

/** Pod: NAME READY STATUS RESTARTS AGE [IP NODE NOMINATED NODE READINESS GATES]. */
export const POD_TABLE: TableDefinition = {
  columns: [
    NAME_COL,
    col('Ready', 'The aggregate readiness state of this pod for accepting traffic.'),
    col('Status', 'The aggregate status of the containers in this pod.'),
    col('Restarts', 'The number of times the containers in this pod have been restarted.'),
    AGE_COL,
    col('IP', 'IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.', 1),
    col('Node', 'NodeName is a request to schedule this pod onto a specific node.', 1),
    col('Nominated Node', 'nominatedNodeName is set when this pod preempts other pods on the node.', 1),
    col('Readiness Gates', 'If specified, all readiness gates will be evaluated for pod readiness.', 1),
  ],
  cells(obj, now) {
    const spec = (obj.spec ?? { containers: [] }) as PodSpec;
    const status = (obj.status ?? {}) as PodStatus;
    const total = Array.isArray(spec.containers) ? spec.containers.length : 0;
    const statuses = Array.isArray(status.containerStatuses) ? (status.containerStatuses as ContainerStatusLike[]) : undefined;
    const podReady = status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
    const ready = statuses ? statuses.filter((s) => s.ready === true).length : status.phase === 'Running' && podReady ? total : 0;
    const restarts = statuses ? statuses.reduce((n, s) => n + (typeof s.restartCount === 'number' ? s.restartCount : 0), 0) : 0;
    // kubectl's printPod: a waiting container's reason (ContainerCreating, CrashLoopBackOff) stands for the pod.
    const waiting = statuses?.map((s) => s.state?.waiting?.reason).find((r) => typeof r === 'string' && r);
    const reason = waiting ?? (typeof status.reason === 'string' && status.reason ? status.reason : (status.phase ?? 'Pending'));
    return [obj.metadata.name, `${ready}/${total}`, reason, String(restarts), age(obj, now), status.podIP || '<none>', spec.nodeName || '<none>', '<none>', '<none>'];
  },
};

/** Node: NAME STATUS ROLES AGE VERSION [INTERNAL-IP EXTERNAL-IP OS-IMAGE KERNEL-VERSION CONTAINER-RUNTIME]. */
export const NODE_TABLE: TableDefinition = {
  columns: [
    NAME_COL,
    col('Status', 'The status of the node'),
    col('Roles', 'The roles of the node'),
    AGE_COL,
    col('Version', 'Kubelet Version reported by the node.'),
    col('Internal-IP', 'List of addresses reachable to the node. Queried from cloud provider, if available.', 1),
    col('External-IP', 'List of addresses reachable to the node. Queried from cloud provider, if available.', 1),
    col('OS-Image', 'OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).', 1),
    col('Kernel-Version', "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).", 1),
    col('Container-Runtime', 'Container Runtime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).', 1),
  ],
  cells(obj, now) {
    const status = (obj.status ?? {}) as NodeStatus & { nodeInfo?: Record<string, unknown> };
    const ready = status.conditions?.find((c) => c.type === 'Ready');
    // As kube's printer: any Ready condition that is not True (False or Unknown) prints NotReady; none at all, Unknown.
    let state = !ready ? 'Unknown' : ready.status === 'True' ? 'Ready' : 'NotReady';
    if ((obj.spec as { unschedulable?: boolean } | undefined)?.unschedulable) state += ',SchedulingDisabled';
    const roles = Object.keys(obj.metadata.labels ?? {})
      .filter((k) => k.startsWith('node-role.kubernetes.io/'))
      .map((k) => k.slice('node-role.kubernetes.io/'.length))
      .filter(Boolean)
      .sort();
    const addr = (type: string) => status.addresses?.find((a) => (a.type as string) === type)?.address;
    const info = (k: string) => (typeof status.nodeInfo?.[k] === 'string' && status.nodeInfo[k] !== '' ? (status.nodeInfo[k]) : undefined);
    return [
      obj.metadata.name,
      state,
      roles.length ? roles.join(',') : '<none>',
      age(obj, now),
      info('kubeletVersion') ?? '',
      addr('InternalIP') ?? '<none>',
      addr('ExternalIP') ?? '<none>',
      info('osImage') ?? '<unknown>',
      info('kernelVersion') ?? '<unknown>',
      info('containerRuntimeVersion') ?? '<unknown>',
    ];
  },
};

/** Namespace: NAME STATUS AGE. */
export const NAMESPACE_TABLE: TableDefinition = {
  columns: [NAME_COL, col('Status', 'The status of the namespace'), AGE_COL],
  cells(obj, now) {
    const phase = (obj.status as { phase?: string } | undefined)?.phase ?? '';
    return [obj.metadata.name, phase, age(obj, now)];
  },
};

/** Fallback for kinds without a printer, as k8s' default table convertor. */
export const DEFAULT_TABLE: TableDefinition = {
  columns: [NAME_COL, col('Created At', 'CreationTimestamp is a timestamp representing the server time when this object was created.', 0, 'date')],
  cells(obj) {
    return [obj.metadata.name, obj.metadata.creationTimestamp];
  },
};

/**
 * Builds a Table of `objects`. `withColumns` false omits the column
 * definitions (later events of a watch, as kube-apiserver does).
 */
export function buildTable(
  def: TableDefinition,
  objects: readonly KubeObject[],
  opts: { resourceVersion?: string; now: number; includeObject: IncludeObject; withColumns: boolean },
): unknown {
  return {
    kind: 'Table',
    apiVersion: 'meta.k8s.io/v1',
    metadata: opts.resourceVersion !== undefined ? { resourceVersion: opts.resourceVersion } : {},
    columnDefinitions: opts.withColumns ? def.columns : [],
    rows: objects.map((obj) => {
      const row: Record<string, unknown> = { cells: def.cells(obj, opts.now) };
      if (opts.includeObject === 'Object') row.object = obj;
      else if (opts.includeObject === 'Metadata') {
        row.object = { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: obj.metadata };
      }
      return row;
    }),
  };
}

/** Parses the `includeObject` query parameter (default Metadata, like k8s). */
export function parseIncludeObject(value: string | null): IncludeObject {
  return value === 'None' || value === 'Object' ? value : 'Metadata';
}
