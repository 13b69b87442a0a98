/**
 * Node lifecycle with the real kubectl against a real 3-node lab
 * (127.0.131.0/24) whose apiserver runs with shortened controller flags
 * (--node-monitor-grace-period 15s, --node-monitor-period 1s,
 * --default-unreachable-toleration-seconds 20): after `kill -9` of node-2's
 * agent the Node goes Ready=Unknown with the unreachable NoExecute taint, its
 * pods' endpoints leave the Service (not-ready addresses), the Service keeps
 * answering from the remaining endpoints, and after the toleration the pods
 * are evicted and the Deployment brings them back on the live nodes.
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { killProcess } from '../lab/launch.ts';
import { eventually, hasTool, requireOrSkip, startLab, type TestLab } from './helpers/lab.ts';
import { kubectlOk } from './helpers/kubectl.ts';

const NET = '127.0.131.0/24';
const FIX = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'kube');
let lab: TestLab | undefined;
const haveKubectl = hasTool('kubectl');

test.before(async () => {
  if (!haveKubectl) return;
  lab = await startLab(NET, {
    nodes: 3,
    podsPerNode: 0,
    controllerFlags: { nodeMonitorPeriod: '1s', nodeMonitorGracePeriod: '15s', defaultUnreachableTolerationSeconds: 20 },
  });
});

test.after.always(async () => {
  await lab?.close();
});

interface PodJson {
  metadata: { name: string; deletionTimestamp?: string };
  spec: { nodeName?: string; tolerations?: { key?: string; tolerationSeconds?: number }[] };
  status: { phase?: string; podIP?: string; conditions?: { type: string; status: string }[] };
}
interface NodeJson {
  spec: { taints?: { key: string; effect: string }[] };
  status: { conditions: { type: string; status: string; reason?: string }[] };
}

const k = (args: string[]) => kubectlOk(lab!.stateDir, args);
const ready = (p: PodJson) => p.status.phase === 'Running' && !p.metadata.deletionTimestamp && (p.status.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');

async function nginxPods(): Promise<PodJson[]> {
  return (JSON.parse(await k(['get', 'pods', '-l', 'app=nginx', '-o', 'json'])) as { items: PodJson[] }).items;
}

test.serial('kill -9 of a node agent: Unknown, unreachable taint, endpoints leave, the Service answers from the rest, pods evicted and replaced', async (t) => {
  if (!requireOrSkip(t, haveKubectl, 'kubectl is not installed (Debian: kubernetes-client)')) return;
  // The docs' Deployment, but podlab/http: it answers which pod and node served a request (nginx's welcome page does not say).
  const deployment = fs.readFileSync(path.join(FIX, 'nginx-deployment.yaml'), 'utf8').replace('image: nginx:1.14.2', 'image: podlab/http');
  await kubectlOk(lab!.stateDir, ['apply', '--validate=false', '-f', '-'], { stdin: deployment });
  await k(['apply', '--validate=false', '-f', path.join(FIX, 'nginx-service.yaml'), '-f', path.join(FIX, 'client-pod.yaml')]);
  // Six replicas, so that every node has nginx pods whatever the rotation.
  await k(['scale', 'deployment/nginx-deployment', '--replicas=6']);
  const before = await eventually(async () => {
    const ps = await nginxPods();
    return ps.length === 6 && ps.every(ready) ? ps : undefined;
  }, 60_000, 250);
  const client = JSON.parse(await k(['get', 'pod', 'client', '-o', 'json'])) as PodJson;
  await eventually(async () => ready(JSON.parse(await k(['get', 'pod', 'client', '-o', 'json'])) as PodJson), 30_000, 200);
  // The victim: a node with nginx pods that is not the client's.
  const victim = ['node-1', 'node-2', 'node-3'].find((n) => n !== client.spec.nodeName && before.some((p) => p.spec.nodeName === n))!;
  const onVictim = before.filter((p) => p.spec.nodeName === victim);
  t.true(onVictim.length > 0);
  t.true(
    onVictim.every((p) => p.spec.tolerations?.some((x) => x.key === 'node.kubernetes.io/unreachable' && x.tolerationSeconds === 20)),
    'DefaultTolerationSeconds admission added the unreachable toleration with the flag value',
  );
  const lease = JSON.parse(await k(['get', 'lease', victim, '-n', 'kube-node-lease', '-o', 'json'])) as { spec: { holderIdentity: string; renewTime: string } };
  t.is(lease.spec.holderIdentity, victim);

  await killProcess(lab!.stateDir, victim, { kill: true });
  const killedAt = Date.now();

  const node = await eventually(async () => {
    const n = JSON.parse(await k(['get', 'node', victim, '-o', 'json'])) as NodeJson;
    return n.status.conditions.find((c) => c.type === 'Ready')?.status === 'Unknown' ? n : undefined;
  }, 60_000, 500);
  t.log(`${victim} Ready=Unknown ${Math.round((Date.now() - killedAt) / 1000)} s after kill -9`);
  t.is(node.status.conditions.find((c) => c.type === 'Ready')?.reason, 'NodeStatusUnknown');
  t.true(node.spec.taints?.some((x) => x.key === 'node.kubernetes.io/unreachable' && x.effect === 'NoExecute'));
  t.regex(await k(['get', 'nodes']), new RegExp(`${victim}\\s+NotReady`));

  // The victim's pods are no longer ready endpoints.
  const ep = JSON.parse(await k(['get', 'endpoints', 'nginx-service', '-o', 'json'])) as { subsets: { addresses?: { ip: string }[]; notReadyAddresses?: { ip: string }[] }[] };
  const readyIps = ep.subsets.flatMap((s) => s.addresses ?? []).map((a) => a.ip);
  const notReadyIps = ep.subsets.flatMap((s) => s.notReadyAddresses ?? []).map((a) => a.ip);
  for (const p of onVictim) {
    t.false(readyIps.includes(p.status.podIP!), `${p.metadata.name} left the ready endpoints`);
    t.true(notReadyIps.includes(p.status.podIP!), `${p.metadata.name} is a not-ready address`);
  }
  const slices = JSON.parse(await k(['get', 'endpointslices', '-l', 'kubernetes.io/service-name=nginx-service', '-o', 'json'])) as { items: { endpoints: { addresses: string[]; nodeName?: string; conditions: { ready: boolean } }[] }[] };
  t.true(slices.items.flatMap((s) => s.endpoints).filter((e) => e.nodeName === victim).every((e) => e.conditions.ready === false));
  const events = await k(['get', 'events']);
  t.regex(events, new RegExp(`node/${victim}\\s+Node ${victim} status is now: NodeNotReady`));

  // Every request through the Service is answered by a live node's pod.
  const ip = (await k(['get', 'svc', 'nginx-service', '-o', 'jsonpath={.spec.clusterIP}'])).trim();
  const answers: string[] = [];
  for (let i = 0; i < 12; i++) {
    const r = await lab!.exec('client', ['curl', '-s', '-S', '-m', '3', `http://${ip}/`]);
    t.is(r.code, 0, r.out);
    answers.push(r.out.trim());
  }
  t.true(answers.every((a) => / on node-\d/.test(a) && !a.includes(` on ${victim}`)), answers.join(' | '));

  // After the 20 s toleration the pods are evicted and recreated on the live nodes.
  const replaced = await eventually(async () => {
    const ps = await nginxPods();
    const live = ps.filter(ready);
    return live.length === 6 && live.every((p) => p.spec.nodeName !== victim) && !ps.some((p) => p.spec.nodeName === victim) ? live : undefined;
  }, 90_000, 500);
  t.is(replaced.length, 6);
  t.regex(await k(['get', 'events']), /TaintManagerEviction/);
});
