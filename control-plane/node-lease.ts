/**
 * The kubelet's node heartbeat: a coordination.k8s.io/v1 Lease named after
 * the node in kube-node-lease, owned by the Node, whose spec.renewTime the
 * agent bumps every 10 s (the node lifecycle controller reads it).
 */
import type { ApiClient } from './client.ts';
import { NODE_LEASE_NAMESPACE, type Lease } from './core-resources.ts';
import type { Node } from './types.ts';
import { isoUtc } from '../common/utc-time.ts';

/** RFC 3339 with microseconds, as metav1.MicroTime is serialized. */
export function microTime(ms = Date.now()): string {
  return isoUtc(ms, 6);
}

/** Creates or renews the node's Lease. Rejects on API errors (callers retry on the next beat). */
export async function renewNodeLease(api: ApiClient, node: string, leaseDurationSeconds = 40): Promise<void> {
  const now = microTime();
  const existing = await api.get<Lease>('leases', node, NODE_LEASE_NAMESPACE);
  if (existing) {
    await api.patch('leases', node, { spec: { holderIdentity: node, leaseDurationSeconds, renewTime: now } }, NODE_LEASE_NAMESPACE);
    return;
  }
  const owner = await api.get<Node>('nodes', node);
  await api.create(
    'leases',
    {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: {
        name: node,
        namespace: NODE_LEASE_NAMESPACE,
        ...(owner ? { ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: node, uid: owner.metadata.uid }] } : {}),
      },
      spec: { holderIdentity: node, leaseDurationSeconds, renewTime: now },
    },
    NODE_LEASE_NAMESPACE,
  );
}
