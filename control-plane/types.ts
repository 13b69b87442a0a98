/**
 * Kubernetes-shaped object types served by the podlab apiserver.
 *
 * These mirror the JSON that a real kube-apiserver speaks (a faithful subset),
 * so that the node agents, the CLI and even a real `kubectl` can read them.
 * Optional fields are optional because real clients omit them; the apiserver
 * fills in defaults (see store.ts / resources.ts).
 */

/** Standard object metadata (`metadata:` of every object). */
export interface ObjectMeta {
  name: string;
  /** Set for namespaced kinds only. */
  namespace?: string;
  /** Asks the server to append a random suffix when `name` is empty. */
  generateName?: string;
  uid: string;
  /** Opaque to clients; a decimal string of the store's global counter. */
  resourceVersion: string;
  /** Bumped by the server whenever `spec` changes. */
  generation?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** RFC 3339 without fractional seconds, e.g. `2026-11-25T11:30:00Z`. */
  creationTimestamp: string;
  /** Set when a graceful deletion has begun (podlab's store deletes at once, so rarely seen). */
  deletionTimestamp?: string;
}

/** Any top-level object: `{apiVersion, kind, metadata, spec, status}`. */
export interface KubeObject<Spec = unknown, Status = unknown> {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec?: Spec;
  status?: Status;
}

/** Values of a condition's `status` field. */
export type ConditionStatus = 'True' | 'False' | 'Unknown';

/** One entry of `Node.status.conditions` (Ready, MemoryPressure, ...). */
export interface NodeCondition {
  type: string;
  status: ConditionStatus;
  lastHeartbeatTime?: string;
  lastTransitionTime?: string;
  reason?: string;
  message?: string;
}

/** One entry of `Node.status.addresses`. */
export interface NodeAddress {
  type: 'InternalIP' | 'Hostname';
  address: string;
}

/** `Node.spec`: the pod CIDR is assigned by the apiserver's node IPAM. */
export interface NodeSpec {
  podCIDR?: string;
  podCIDRs?: string[];
  unschedulable?: boolean;
}

/** `Node.status`, written by the node agent (kubelet role). */
export interface NodeStatus {
  addresses?: NodeAddress[];
  conditions?: NodeCondition[];
  /** Where the node agent (kubelet) serves: its InternalIP and this port (podlab: the agent's control channel). */
  daemonEndpoints?: { kubeletEndpoint?: { Port: number } };
}

/** A cluster node (cluster-scoped). */
export type Node = KubeObject<NodeSpec, NodeStatus>;

/** A container port declaration. */
export interface ContainerPort {
  name?: string;
  containerPort: number;
  protocol?: 'TCP' | 'UDP' | 'SCTP';
}

/** An environment variable of a container. */
export interface EnvVar {
  name: string;
  value?: string;
}

/** A container of a pod: podlab only emulates networking, so this is small. */
export interface Container {
  name: string;
  image: string;
  ports?: ContainerPort[];
  args?: string[];
  command?: string[];
  env?: EnvVar[];
}

/** `Pod.spec`. Unknown extra fields are kept as sent. */
export interface PodSpec {
  nodeName?: string;
  containers: Container[];
  restartPolicy?: 'Always' | 'OnFailure' | 'Never';
  hostNetwork?: boolean;
  [extra: string]: unknown;
}

/** Pod lifecycle phase. */
export type PodPhase = 'Pending' | 'Running' | 'Succeeded' | 'Failed' | 'Unknown';

/** One entry of `Pod.status.conditions` (PodScheduled, Ready, ...). */
export interface PodCondition {
  type: string;
  status: ConditionStatus;
  lastProbeTime?: string | null;
  lastTransitionTime?: string;
  reason?: string;
  message?: string;
}

/** `Pod.status`: phase/IPs are written by the node agent, PodScheduled by the scheduler. */
export interface PodStatus {
  phase?: PodPhase;
  podIP?: string;
  podIPs?: { ip: string }[];
  hostIP?: string;
  conditions?: PodCondition[];
  [extra: string]: unknown;
}

/** A pod (namespaced). */
export type Pod = KubeObject<PodSpec, PodStatus>;

/** `Namespace.spec`. */
export interface NamespaceSpec {
  finalizers?: string[];
}

/** `Namespace.status`. */
export interface NamespaceStatus {
  phase?: 'Active' | 'Terminating';
}

/** A namespace (cluster-scoped). */
export type Namespace = KubeObject<NamespaceSpec, NamespaceStatus>;

/** Reasons used in `Status` failures (a subset of k8s metav1.StatusReason). */
export type StatusReason =
  | 'NotFound'
  | 'AlreadyExists'
  | 'Conflict'
  | 'Invalid'
  | 'Gone'
  | 'Expired'
  | 'BadRequest'
  | 'MethodNotAllowed'
  | 'Forbidden'
  | 'Unauthorized'
  | 'NotAcceptable'
  | 'UnsupportedMediaType'
  | 'RequestEntityTooLarge'
  | 'Timeout'
  | 'InternalError';

/** One field-level problem in a `Status.details.causes` list. */
export interface StatusCause {
  reason: string;
  message: string;
  field?: string;
}

/** The k8s error object (`kind: Status`) returned with every non-2xx response. */
export interface Status {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, never> | { resourceVersion?: string };
  status: 'Failure' | 'Success';
  message: string;
  reason: StatusReason;
  details?: { name?: string; group?: string; kind?: string; causes?: StatusCause[] };
  code: number;
}

/** Types of watch events. BOOKMARK carries only `metadata.resourceVersion`. */
export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

/** One line of a watch stream. For ERROR the object is a `Status`. */
export interface WatchEvent<T = KubeObject> {
  type: WatchEventType;
  object: T;
}

/** A list response (`PodList`, `NodeList`, ...). */
export interface List<T = KubeObject> {
  apiVersion: string;
  kind: string;
  metadata: { resourceVersion: string; continue?: string };
  items: T[];
}
