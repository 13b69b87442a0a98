/**
 * host-local IPAM running out, end to end on a real one-node lab
 * (127.0.40.0/24) whose apiserver gives each node a /29
 * (--node-cidr-mask-size 29: 5 pod addresses). The pod that finds no address
 * stays Pending with the kubelet's status (ContainerCreating,
 * PodReadyToStartContainers=False with reason FailedCreatePodSandBox and the
 * exhausted range, Ready=False), a FailedCreatePodSandBox Event from the
 * kubelet names the range, the real kubectl shows both, and the pod is
 * started as soon as another pod's deletion frees an address.
 */
import test from 'ava';
import { labApi } from '../lab/launch.ts';
import type { ApiClient } from '../control-plane/client.ts';
import type { KubeObject, Pod } from '../control-plane/types.ts';
import { kubectlOk } from './helpers/kubectl.ts';
import { eventually, hasTool, startLab, type TestLab } from './helpers/lab.ts';

const NET = '127.0.40.0/24';
/** The node's /29 less the network, cni0's gateway and the broadcast (host-local's range). */
const RANGE = '10.244.0.10-10.244.0.14';

let lab: TestLab | undefined;
let api: ApiClient | undefined;

test.before(async () => {
  lab = await startLab(NET, { nodes: 1, podsPerNode: 0, nodeCidrMaskSize: 29 });
  api = labApi(lab.rec);
});

test.after.always(async () => {
  api?.close();
  await lab?.close();
});

type Condition = { type: string; status: string; reason?: string; message?: string };
type EventObj = KubeObject & { reason: string; message: string; type: string; involvedObject: { name: string; uid: string }; source: { component: string; host?: string } };

const podBody = (name: string) => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default' }, spec: { containers: [{ name: 'app', image: 'podlab/http' }] } });
const cond = (p: Pod | null | undefined, type: string) => (p?.status?.conditions as Condition[] | undefined)?.find((c) => c.type === type);

test.serial('an exhausted pod CIDR: Pending with a reason in its conditions, an Event naming the range, kubectl shows both; started when an address frees', async (t) => {
  const a = api!;
  const node = (await a.list<KubeObject & { spec?: { podCIDR?: string } }>('nodes')).items[0];
  // The apiserver's node IPAM hands out the second /29 first, as it hands out 10.244.1.0/24 of a /16.
  t.is(node.spec?.podCIDR, '10.244.0.8/29');
  // The DNS addon's CoreDNS pods hold addresses of this node too.
  const taken = (await a.list<Pod>('pods')).items.filter((p) => p.status?.podIP).length;
  const free = 5 - taken;
  t.true(free >= 1, `${taken} addresses taken of 5`);

  const fits: string[] = [];
  for (let i = 0; i < free; i++) {
    fits.push(`fits-${i}`);
    await a.create('pods', podBody(`fits-${i}`), 'default');
    await eventually(async () => (await a.get<Pod>('pods', `fits-${i}`, 'default'))?.status?.phase === 'Running', 30_000, 100);
  }
  await a.create('pods', podBody('late'), 'default');

  const late = await eventually(async () => {
    const p = await a.get<Pod>('pods', 'late', 'default');
    return cond(p, 'PodReadyToStartContainers')?.status === 'False' ? p : undefined;
  }, 30_000, 100);
  t.is(late.status?.phase, 'Pending');
  t.falsy(late.status?.podIP);
  t.like(cond(late, 'PodScheduled'), { status: 'True' });
  t.like(cond(late, 'Ready'), { status: 'False', reason: 'ContainersNotReady' });
  t.like(cond(late, 'ContainersReady'), { status: 'False', reason: 'ContainersNotReady' });
  const sandbox = cond(late, 'PodReadyToStartContainers')!;
  t.is(sandbox.reason, 'FailedCreatePodSandBox');
  t.true(sandbox.message?.includes(`no free address left in ${RANGE}`), sandbox.message);
  t.like((late.status?.containerStatuses as unknown[])[0], { name: 'app', ready: false, state: { waiting: { reason: 'ContainerCreating' } } });

  const events = await eventually(async () => {
    const ev = (await a.list<EventObj>('events', { namespace: 'default' })).items.filter((e) => e.involvedObject.uid === late.metadata.uid && e.reason === 'FailedCreatePodSandBox');
    return ev.length ? ev : undefined;
  }, 10_000, 100);
  t.is(events.length, 1, 'one Event per distinct failure, not one per status update');
  t.like(events[0], { type: 'Warning', source: { component: 'kubelet', host: 'node-1' } });
  t.regex(events[0].message, new RegExp(`^Failed to create pod sandbox: plugin type="host-local" failed \\(add\\): no free address left in ${RANGE.replace(/\./g, '\\.')}$`));
  // No "Failed" Event for a container that is only waiting for its sandbox.
  const all = (await a.list<EventObj>('events', { namespace: 'default' })).items.filter((e) => e.involvedObject.uid === late.metadata.uid);
  t.false(all.some((e) => e.reason === 'Failed'), all.map((e) => e.reason).join(','));

  if (hasTool('kubectl')) {
    const row = await kubectlOk(lab!.stateDir, ['get', 'pod', 'late', '--no-headers']);
    t.regex(row, /^late\s+0\/1\s+ContainerCreating\s+0\s/);
    const describe = await kubectlOk(lab!.stateDir, ['describe', 'pod', 'late']);
    t.regex(describe, /Status:\s+Pending/);
    t.regex(describe, /PodReadyToStartContainers\s+False/);
    t.regex(describe, /Ready\s+False/);
    t.regex(describe, new RegExp(`Warning\\s+FailedCreatePodSandBox\\s+.*kubelet.*no free address left in ${RANGE.replace(/\./g, '\\.')}`));
  } else t.log('kubectl not installed: checked through the API only');

  // An address frees: the waiting pod gets it without any change of its own.
  const freed = (await a.get<Pod>('pods', fits[0], 'default'))!.status!.podIP!;
  await a.delete('pods', fits[0], 'default');
  const started = await eventually(async () => {
    const p = await a.get<Pod>('pods', 'late', 'default');
    return p?.status?.phase === 'Running' ? p : undefined;
  }, 30_000, 100);
  t.is(started.status?.podIP, freed);
  t.like(cond(started, 'PodReadyToStartContainers'), { status: 'True' });
  t.like(cond(started, 'Ready'), { status: 'True' });
  t.is(cond(started, 'PodReadyToStartContainers')?.reason, undefined);
});
