/**
 * The apps/v1 workload kinds (Deployment, ReplicaSet, DaemonSet): registry
 * entries with apps/v1's defaults (pkg/apis/apps/v1/defaults.go), the
 * validation kubectl users meet first (selector must match the template's
 * labels and is immutable), and the server-side printers of `kubectl get
 * deploy,rs,ds`. The controllers that act on them live in
 * replicaset-controller.ts, deployment-controller.ts and daemonset-controller.ts.
 */
import type { FieldError } from './errors.ts';
import { formatLabelSelector, isEmptyLabelSelector, labelSelectorMatches, type LabelSelector } from './label-selector.ts';
import type { ResourceType } from './resources.ts';
import { humanDuration, type TableColumn, type TableDefinition } from './tables.ts';
import type { Container, KubeObject, PodSpec } from './types.ts';
import { validatePod } from './validation.ts';

/** A pod template (`spec.template`). */
export interface PodTemplateSpec {
  metadata?: { labels?: Record<string, string>; annotations?: Record<string, string>; [k: string]: unknown };
  spec?: PodSpec;
}

/** Deployment `spec.strategy`. */
export interface DeploymentStrategy {
  type?: 'RollingUpdate' | 'Recreate';
  rollingUpdate?: { maxSurge?: number | string; maxUnavailable?: number | string };
}

/** A condition of a Deployment or ReplicaSet. */
export interface WorkloadCondition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  lastUpdateTime?: string;
  lastTransitionTime?: string;
  reason?: string;
  message?: string;
}

export interface DeploymentSpec {
  replicas?: number;
  selector?: LabelSelector;
  template?: PodTemplateSpec;
  strategy?: DeploymentStrategy;
  minReadySeconds?: number;
  revisionHistoryLimit?: number;
  progressDeadlineSeconds?: number;
  paused?: boolean;
  [extra: string]: unknown;
}

export interface DeploymentStatus {
  observedGeneration?: number;
  replicas?: number;
  updatedReplicas?: number;
  readyReplicas?: number;
  availableReplicas?: number;
  unavailableReplicas?: number;
  conditions?: WorkloadCondition[];
  collisionCount?: number;
}

export type Deployment = KubeObject<DeploymentSpec, DeploymentStatus>;

export interface ReplicaSetSpec {
  replicas?: number;
  selector?: LabelSelector;
  template?: PodTemplateSpec;
  minReadySeconds?: number;
}

export interface ReplicaSetStatus {
  replicas?: number;
  fullyLabeledReplicas?: number;
  readyReplicas?: number;
  availableReplicas?: number;
  observedGeneration?: number;
  conditions?: WorkloadCondition[];
}

export type ReplicaSet = KubeObject<ReplicaSetSpec, ReplicaSetStatus>;

export interface DaemonSetSpec {
  selector?: LabelSelector;
  template?: PodTemplateSpec;
  updateStrategy?: { type?: 'RollingUpdate' | 'OnDelete'; rollingUpdate?: { maxUnavailable?: number | string; maxSurge?: number | string } };
  minReadySeconds?: number;
  revisionHistoryLimit?: number;
}

export interface DaemonSetStatus {
  currentNumberScheduled?: number;
  numberMisscheduled?: number;
  desiredNumberScheduled?: number;
  numberReady?: number;
  observedGeneration?: number;
  updatedNumberScheduled?: number;
  numberAvailable?: number;
  numberUnavailable?: number;
}

export type DaemonSet = KubeObject<DaemonSetSpec, DaemonSetStatus>;

/** An ownerReferences entry. */
export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

/** Label that ties a ReplicaSet and its pods to one template of a Deployment. */
export const POD_TEMPLATE_HASH_LABEL = 'pod-template-hash';
/** Label that ties a DaemonSet's pods to one template revision. */
export const CONTROLLER_REVISION_HASH_LABEL = 'controller-revision-hash';
/** Annotation with a Deployment's (and its ReplicaSets') revision number. */
export const REVISION_ANNOTATION = 'deployment.kubernetes.io/revision';
export const DESIRED_REPLICAS_ANNOTATION = 'deployment.kubernetes.io/desired-replicas';
export const MAX_REPLICAS_ANNOTATION = 'deployment.kubernetes.io/max-replicas';

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The ownerReferences of an object (metadata keeps unknown fields as sent). */
export function ownerReferencesOf(obj: KubeObject): OwnerReference[] {
  const refs = (obj.metadata as unknown as { ownerReferences?: unknown }).ownerReferences;
  return Array.isArray(refs) ? (refs.filter(isRecord) as unknown as OwnerReference[]) : [];
}

/** The controlling owner reference, if any (metav1.GetControllerOf). */
export function controllerOf(obj: KubeObject): OwnerReference | undefined {
  return ownerReferencesOf(obj).find((r) => r.controller === true);
}

/** An owner reference naming `owner` as the controller. */
export function controllerRef(owner: KubeObject): OwnerReference {
  return { apiVersion: owner.apiVersion, kind: owner.kind, name: owner.metadata.name, uid: owner.metadata.uid, controller: true, blockOwnerDeletion: true };
}

/** Pod template defaults, as the apiserver fills them into every template (SetDefaults_PodSpec and friends). */
export function defaultPodTemplate(template: unknown): void {
  if (!isRecord(template)) return;
  if (!isRecord(template.metadata)) template.metadata = {};
  const spec = template.spec;
  if (!isRecord(spec)) return;
  spec.restartPolicy ??= 'Always';
  spec.terminationGracePeriodSeconds ??= 30;
  spec.dnsPolicy ??= 'ClusterFirst';
  spec.schedulerName ??= 'default-scheduler';
  spec.securityContext ??= {};
  if (Array.isArray(spec.containers)) {
    for (const c of spec.containers as unknown[]) {
      if (!isRecord(c)) continue;
      const image = typeof c.image === 'string' ? c.image : '';
      c.imagePullPolicy ??= image.endsWith(':latest') || !/:[^/]+$/.test(image) ? 'Always' : 'IfNotPresent';
      c.terminationMessagePath ??= '/dev/termination-log';
      c.terminationMessagePolicy ??= 'File';
      c.resources ??= {};
      if (Array.isArray(c.ports)) for (const p of c.ports as unknown[]) if (isRecord(p)) p.protocol ??= 'TCP';
    }
  }
}

function defaultDeployment(obj: KubeObject): void {
  if (!isRecord(obj.spec)) return;
  const spec = obj.spec;
  spec.replicas ??= 1;
  const strategy = isRecord(spec.strategy) ? spec.strategy : (spec.strategy = {});
  strategy.type ??= 'RollingUpdate';
  if (strategy.type === 'RollingUpdate') {
    const ru = isRecord(strategy.rollingUpdate) ? strategy.rollingUpdate : (strategy.rollingUpdate = {});
    ru.maxUnavailable ??= '25%';
    ru.maxSurge ??= '25%';
  }
  spec.revisionHistoryLimit ??= 10;
  spec.progressDeadlineSeconds ??= 600;
  defaultPodTemplate(spec.template);
}

function defaultReplicaSet(obj: KubeObject): void {
  if (!isRecord(obj.spec)) return;
  const spec = obj.spec;
  spec.replicas ??= 1;
  defaultPodTemplate(spec.template);
}

function defaultDaemonSet(obj: KubeObject): void {
  if (!isRecord(obj.spec)) return;
  const spec = obj.spec;
  const us = isRecord(spec.updateStrategy) ? spec.updateStrategy : (spec.updateStrategy = {});
  us.type ??= 'RollingUpdate';
  if (us.type === 'RollingUpdate') {
    const ru = isRecord(us.rollingUpdate) ? us.rollingUpdate : (us.rollingUpdate = {});
    ru.maxUnavailable ??= 1;
    ru.maxSurge ??= 0;
  }
  spec.revisionHistoryLimit ??= 10;
  defaultPodTemplate(spec.template);
}

/** Checks an int-or-percent field (`maxSurge: 25%`). */
function intOrPercentErrors(field: string, v: unknown): FieldError[] {
  if (v === undefined) return [];
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return [];
  if (typeof v === 'string' && /^\d+%$/.test(v)) return [];
  return [{ field, type: 'FieldValueInvalid', value: v, detail: 'must be a non-negative integer or a percentage like "25%"' }];
}

/** Validation shared by the three kinds: selector, template and its labels, replicas. */
function validateWorkload(obj: KubeObject, old: KubeObject | undefined, withReplicas: boolean): FieldError[] {
  const errs: FieldError[] = [];
  if (!isRecord(obj.spec)) return [{ field: 'spec', type: 'FieldValueRequired' }];
  const spec = obj.spec;
  if (withReplicas && spec.replicas !== undefined && (typeof spec.replicas !== 'number' || !Number.isInteger(spec.replicas) || spec.replicas < 0)) {
    errs.push({ field: 'spec.replicas', type: 'FieldValueInvalid', value: spec.replicas, detail: 'must be greater than or equal to 0' });
  }
  const selector = spec.selector as LabelSelector | undefined;
  if (!isRecord(selector)) errs.push({ field: 'spec.selector', type: 'FieldValueRequired' });
  else if (isEmptyLabelSelector(selector)) errs.push({ field: 'spec.selector', type: 'FieldValueInvalid', value: selector, detail: 'empty selector is invalid for deployment' });
  const template = spec.template as PodTemplateSpec | undefined;
  if (!isRecord(template)) {
    errs.push({ field: 'spec.template', type: 'FieldValueRequired' });
  } else {
    const labels = isRecord(template.metadata) ? (template.metadata.labels as Record<string, string> | undefined) : undefined;
    if (isRecord(selector) && !isEmptyLabelSelector(selector) && !labelSelectorMatches(selector, labels)) {
      errs.push({ field: 'spec.template.metadata.labels', type: 'FieldValueInvalid', value: labels ?? {}, detail: '`selector` does not match template `labels`' });
    }
    const podErrs = validatePod({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'template', uid: '', resourceVersion: '', creationTimestamp: '' }, spec: template.spec });
    for (const e of podErrs) errs.push({ ...e, field: `spec.template.${e.field}` });
    const restart = isRecord(template.spec) ? template.spec.restartPolicy : undefined;
    if (restart !== undefined && restart !== 'Always') {
      errs.push({ field: 'spec.template.spec.restartPolicy', type: 'FieldValueNotSupported', value: restart, detail: 'supported values: "Always"' });
    }
  }
  if (old && isRecord(old.spec) && JSON.stringify(old.spec.selector) !== JSON.stringify(selector)) {
    errs.push({ field: 'spec.selector', type: 'FieldValueInvalid', value: selector, detail: 'field is immutable' });
  }
  return errs;
}

function validateDeployment(obj: KubeObject, old: KubeObject | undefined): FieldError[] {
  const errs = validateWorkload(obj, old, true);
  const strategy = isRecord(obj.spec) && isRecord(obj.spec.strategy) ? obj.spec.strategy : undefined;
  if (strategy) {
    if (strategy.type !== 'RollingUpdate' && strategy.type !== 'Recreate') {
      errs.push({ field: 'spec.strategy.type', type: 'FieldValueNotSupported', value: strategy.type, detail: 'supported values: "Recreate", "RollingUpdate"' });
    }
    const ru = isRecord(strategy.rollingUpdate) ? strategy.rollingUpdate : undefined;
    if (strategy.type === 'Recreate' && ru) errs.push({ field: 'spec.strategy.rollingUpdate', type: 'FieldValueForbidden', detail: 'may not be specified when strategy `type` is \'Recreate\'' });
    if (ru) {
      errs.push(...intOrPercentErrors('spec.strategy.rollingUpdate.maxSurge', ru.maxSurge), ...intOrPercentErrors('spec.strategy.rollingUpdate.maxUnavailable', ru.maxUnavailable));
      const zero = (v: unknown) => v === 0 || v === '0%';
      if (zero(ru.maxSurge) && zero(ru.maxUnavailable)) {
        errs.push({ field: 'spec.strategy.rollingUpdate.maxUnavailable', type: 'FieldValueInvalid', value: ru.maxUnavailable, detail: 'may not be 0 when `maxSurge` is 0' });
      }
    }
  }
  return errs;
}

const col = (name: string, description: string, priority = 0): TableColumn => ({ name, type: name === 'Age' ? 'string' : 'string', format: name === 'Name' ? 'name' : '', description, priority });
const NAME_COL = col('Name', 'Name must be unique within a namespace.');
const AGE_COL = col('Age', 'CreationTimestamp is a timestamp representing the server time when this object was created.');
const CONTAINERS_COL = col('Containers', 'Names of each container in the template.', 1);
const IMAGES_COL = col('Images', 'Images referenced by each container in the template.', 1);
const SELECTOR_COL = col('Selector', 'Label selector for pods.', 1);

function age(obj: KubeObject, now: number): string {
  const created = Date.parse(obj.metadata.creationTimestamp);
  return Number.isNaN(created) ? '<unknown>' : humanDuration(now - created);
}

function templateCells(spec: { template?: PodTemplateSpec; selector?: LabelSelector } | undefined): string[] {
  const containers: Container[] = Array.isArray(spec?.template?.spec?.containers) ? spec.template.spec.containers : [];
  return [containers.map((c) => c.name).join(','), containers.map((c) => c.image).join(','), formatLabelSelector(spec?.selector) || '<none>'];
}

const num = (v: unknown): number => (typeof v === 'number' ? v : 0);

/** `kubectl get deploy`: NAME READY UP-TO-DATE AVAILABLE AGE [CONTAINERS IMAGES SELECTOR]. */
export const DEPLOYMENT_TABLE: TableDefinition = {
  columns: [
    NAME_COL,
    col('Ready', 'Number of the pod with ready state'),
    col('Up-to-date', 'Total number of non-terminated pods targeted by this deployment that have the desired template spec.'),
    col('Available', 'Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.'),
    AGE_COL,
    CONTAINERS_COL,
    IMAGES_COL,
    SELECTOR_COL,
  ],
  cells(obj, now) {
    const spec = obj.spec as DeploymentSpec | undefined;
    const st = (obj.status ?? {}) as DeploymentStatus;
    return [obj.metadata.name, `${num(st.readyReplicas)}/${num(spec?.replicas)}`, num(st.updatedReplicas), num(st.availableReplicas), age(obj, now), ...templateCells(spec)];
  },
};

/** `kubectl get rs`: NAME DESIRED CURRENT READY AGE [CONTAINERS IMAGES SELECTOR]. */
export const REPLICASET_TABLE: TableDefinition = {
  columns: [
    NAME_COL,
    col('Desired', 'Number of desired pods.'),
    col('Current', 'Number of actual replicas.'),
    col('Ready', 'The number of ready replicas for this replica set.'),
    AGE_COL,
    CONTAINERS_COL,
    IMAGES_COL,
    SELECTOR_COL,
  ],
  cells(obj, now) {
    const spec = obj.spec as ReplicaSetSpec | undefined;
    const st = (obj.status ?? {}) as ReplicaSetStatus;
    return [obj.metadata.name, num(spec?.replicas), num(st.replicas), num(st.readyReplicas), age(obj, now), ...templateCells(spec)];
  },
};

/** `kubectl get ds`: NAME DESIRED CURRENT READY UP-TO-DATE AVAILABLE NODE SELECTOR AGE [CONTAINERS IMAGES SELECTOR]. */
export const DAEMONSET_TABLE: TableDefinition = {
  columns: [
    NAME_COL,
    col('Desired', 'The total number of nodes that should be running the daemon pod.'),
    col('Current', 'The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.'),
    col('Ready', 'The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.'),
    col('Up-to-date', 'The total number of nodes that are running updated daemon pod'),
    col('Available', 'The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available.'),
    col('Node Selector', 'NodeSelector is a selector which must be true for the pod to fit on a node.'),
    AGE_COL,
    CONTAINERS_COL,
    IMAGES_COL,
    SELECTOR_COL,
  ],
  cells(obj, now) {
    const spec = obj.spec as DaemonSetSpec | undefined;
    const st = (obj.status ?? {}) as DaemonSetStatus;
    const nodeSelector = spec?.template?.spec?.nodeSelector as Record<string, string> | undefined;
    const sel = nodeSelector && Object.keys(nodeSelector).length ? Object.entries(nodeSelector).map(([k, v]) => `${k}=${v}`).join(',') : '<none>';
    return [
      obj.metadata.name,
      num(st.desiredNumberScheduled),
      num(st.currentNumberScheduled),
      num(st.numberReady),
      num(st.updatedNumberScheduled),
      num(st.numberAvailable),
      sel,
      age(obj, now),
      ...templateCells(spec),
    ];
  },
};

/** apps/v1 Deployment. */
export const DEPLOYMENTS: ResourceType = {
  group: 'apps',
  version: 'v1',
  kind: 'Deployment',
  plural: 'deployments',
  singular: 'deployment',
  namespaced: true,
  listKind: 'DeploymentList',
  shortNames: ['deploy'],
  categories: ['all'],
  hasStatus: true,
  scalable: true,
  defaulting: (obj) => defaultDeployment(obj),
  validate: validateDeployment,
  table: DEPLOYMENT_TABLE,
};

/** apps/v1 ReplicaSet. */
export const REPLICASETS: ResourceType = {
  group: 'apps',
  version: 'v1',
  kind: 'ReplicaSet',
  plural: 'replicasets',
  singular: 'replicaset',
  namespaced: true,
  listKind: 'ReplicaSetList',
  shortNames: ['rs'],
  categories: ['all'],
  hasStatus: true,
  scalable: true,
  defaulting: (obj) => defaultReplicaSet(obj),
  validate: (obj, old) => validateWorkload(obj, old, true),
  table: REPLICASET_TABLE,
};

/** apps/v1 DaemonSet. */
export const DAEMONSETS: ResourceType = {
  group: 'apps',
  version: 'v1',
  kind: 'DaemonSet',
  plural: 'daemonsets',
  singular: 'daemonset',
  namespaced: true,
  listKind: 'DaemonSetList',
  shortNames: ['ds'],
  categories: ['all'],
  hasStatus: true,
  defaulting: (obj) => defaultDaemonSet(obj),
  validate: (obj, old) => validateWorkload(obj, old, false),
  table: DAEMONSET_TABLE,
};
