/**
 * Events written by processes outside the apiserver (the node agents, as
 * the kubelet writes its own), through the REST API.
 */
import type { ApiClient } from './client.ts';
import type { KubeObject } from './types.ts';
import { formatTimestamp } from './timestamp.ts';

/** Distinguishes events posted in the same millisecond. */
let seq = 0;

/** An event's name: `<object>.<hex of nanoseconds>`, as client-go's recorder names them. */
export function eventName(obj: KubeObject, ms: number, n: number): string {
  return `${obj.metadata.name}.${(BigInt(ms) * 1_000_000n + BigInt(n % 1_000_000)).toString(16)}`;
}

/** A new core/v1 Event about `obj` (count 1), the one shape the apiserver's recorder and the agents both write. */
export function coreEventObject(
  obj: KubeObject,
  e: { name: string; namespace: string; now: string; type: 'Normal' | 'Warning'; reason: string; message: string; source: { component: string; host?: string }; fieldPath?: string },
) {
  return {
    apiVersion: 'v1',
    kind: 'Event',
    metadata: { name: e.name, namespace: e.namespace },
    involvedObject: {
      kind: obj.kind,
      name: obj.metadata.name,
      uid: obj.metadata.uid,
      apiVersion: obj.apiVersion,
      resourceVersion: obj.metadata.resourceVersion,
      ...(obj.metadata.namespace ? { namespace: obj.metadata.namespace } : {}),
      ...(e.fieldPath ? { fieldPath: e.fieldPath } : {}),
    },
    reason: e.reason,
    message: e.message,
    source: e.source.host ? { component: e.source.component, host: e.source.host } : { component: e.source.component },
    firstTimestamp: e.now,
    lastTimestamp: e.now,
    count: 1,
    type: e.type,
    eventTime: null,
    reportingComponent: e.source.component,
    reportingInstance: e.source.host ?? '',
  };
}

/** Posts one core/v1 Event about `obj`; rejects on API errors (callers usually ignore them). */
export async function postEvent(
  api: ApiClient,
  obj: KubeObject,
  type: 'Normal' | 'Warning',
  reason: string,
  message: string,
  source: { component: string; host?: string },
): Promise<void> {
  const now = formatTimestamp(Date.now());
  const namespace = obj.metadata.namespace ?? 'default';
  await api.create('events', coreEventObject(obj, { name: eventName(obj, Date.now(), seq++), namespace, now, type, reason, message, source }), namespace);
}
