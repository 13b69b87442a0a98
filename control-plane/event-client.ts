/**
 * Events written by processes outside the apiserver (the node agents, as
 * the kubelet writes its own), through the REST API.
 */
import type { ApiClient } from './client.ts';
import type { KubeObject } from './types.ts';

/** Distinguishes events posted in the same millisecond. */
let seq = 0;

/** Posts one core/v1 Event about `obj`; rejects on API errors (callers usually ignore them). */
export async function postEvent(
  api: ApiClient,
  obj: KubeObject,
  type: 'Normal' | 'Warning',
  reason: string,
  message: string,
  source: { component: string; host?: string },
): Promise<void> {
  const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
  const namespace = obj.metadata.namespace ?? 'default';
  await api.create(
    'events',
    {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { name: `${obj.metadata.name}.${(BigInt(Date.now()) * 1_000_000n + BigInt(seq++ % 1_000_000)).toString(16)}`, namespace },
      involvedObject: { kind: obj.kind, name: obj.metadata.name, uid: obj.metadata.uid, apiVersion: obj.apiVersion, resourceVersion: obj.metadata.resourceVersion, ...(obj.metadata.namespace ? { namespace } : {}) },
      reason,
      message,
      source,
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
      type,
      eventTime: null,
      reportingComponent: source.component,
      reportingInstance: source.host ?? '',
    },
    namespace,
  );
}
