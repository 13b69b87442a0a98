/**
 * What a pod whose sandbox has no address looks like, without processes: the
 * kubelet-shaped status (node-agent/pod-status.ts), kubectl's STATUS column
 * (a waiting container's reason stands for the pod), and the pod Events
 * controller, which writes no "Failed" Event for a container that is only
 * waiting for its sandbox but does for one in CrashLoopBackOff.
 */
import test from 'ava';
import { ManualClock, MANUAL_WALL_START_MS } from '../common/clock.ts';
import { openStore } from '../control-plane/store.ts';
import { POD_TABLE } from '../control-plane/tables.ts';
import type { KubeObject, Pod } from '../control-plane/types.ts';
import { sandboxFailedPodStatus, runningPodStatus, SANDBOX_FAILED_REASON } from '../node-agent/pod-status.ts';

const MESSAGE = 'Failed to create pod sandbox: plugin type="host-local" failed (add): no free address left in 10.244.0.10-10.244.0.14';
const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'late', namespace: 'default', uid: 'u1' }, spec: { nodeName: 'node-1', containers: [{ name: 'app', image: 'podlab/http' }, { name: 'side', image: 'busybox' }] } } as unknown as Pod;

test('the sandbox-failed status: Pending, the reason and range on PodReadyToStartContainers, not ready, containers ContainerCreating', (t) => {
  const { status } = sandboxFailedPodStatus(pod, '127.0.40.11', MESSAGE);
  t.is(status.phase, 'Pending');
  t.is(status.podIP, undefined);
  const conds = status.conditions as { type: string; status: string; reason?: string; message?: string }[];
  t.deepEqual(conds.map((c) => `${c.type}=${c.status}`), ['PodReadyToStartContainers=False', 'Initialized=True', 'Ready=False', 'ContainersReady=False', 'PodScheduled=True']);
  t.like(conds[0], { reason: SANDBOX_FAILED_REASON, message: MESSAGE });
  t.like(conds[2], { reason: 'ContainersNotReady', message: 'containers with unready status: [app side]' });
  t.deepEqual((status.containerStatuses as { state: unknown }[]).map((c) => c.state), [{ waiting: { reason: 'ContainerCreating' } }, { waiting: { reason: 'ContainerCreating' } }]);
  const cells = POD_TABLE.cells({ ...pod, status }, Date.now());
  t.deepEqual(cells.slice(1, 3), ['0/2', 'ContainerCreating']);
  t.is(POD_TABLE.cells({ ...pod, status: runningPodStatus(pod, '10.244.0.10', '127.0.40.11').status }, Date.now())[2], 'Running');
});

test('pod Events: none for a container waiting for its sandbox, Failed for CrashLoopBackOff', (t) => {
  const store = openStore({ clock: new ManualClock(MANUAL_WALL_START_MS) });
  t.teardown(() => store.close());
  store.create('nodes', { metadata: { name: 'node-1' }, spec: {} });
  store.create('pods', { metadata: { name: 'late', namespace: 'default' }, spec: { nodeName: 'node-1', containers: [{ name: 'app', image: 'podlab/http' }] } });
  const created = store.get<Pod>('pods', 'late', 'default');
  store.patch('pods', 'late', sandboxFailedPodStatus(created, '127.0.40.11', MESSAGE), { namespace: 'default', subresource: 'status' });
  const reasons = () => store.list<KubeObject & { reason: string; involvedObject: { name: string } }>('events').items.filter((e) => e.involvedObject.name === 'late').map((e) => e.reason);
  t.false(reasons().includes('Failed'), reasons().join(','));
  store.patch('pods', 'late', { status: { containerStatuses: [{ name: 'app', state: { waiting: { reason: 'CrashLoopBackOff', message: 'listen EADDRINUSE :::80' } } }] } }, { namespace: 'default', subresource: 'status' });
  t.true(reasons().includes('Failed'), reasons().join(','));
});
