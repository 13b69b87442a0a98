/**
 * Workloads with the real kubectl against a real 3-node lab (127.0.130.0/24):
 * the Kubernetes docs' nginx Deployment (3 x nginx:1.14.2) and a Service for
 * it, applied unchanged (with --validate=false: client-side validation needs
 * the OpenAPI schemas, which are served separately); the Service answers a
 * curl from a pod; `kubectl scale`; a rollout to a new image during which a
 * request loop through the Service sees no failure; `rollout undo`; a
 * DaemonSet with one pod per node; and the read paths users try first
 * (`get all`, `get events`, `get endpoints`, `describe node|svc|deploy`).
 */
import test from 'ava';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { eventually, hasTool, requireOrSkip, startLab, type TestLab } from './helpers/lab.ts';
import { kubectl, kubectlOk } from './helpers/kubectl.ts';

const NET = '127.0.130.0/24';
const FIX = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'kube');
let lab: TestLab | undefined;
const haveKubectl = hasTool('kubectl');

test.before(async () => {
  if (haveKubectl) lab = await startLab(NET, { nodes: 3, podsPerNode: 0 });
});

test.after.always(async () => {
  await lab?.close();
});

interface PodJson {
  metadata: { name: string; labels?: Record<string, string>; deletionTimestamp?: string };
  spec: { nodeName?: string; containers: { image: string }[] };
  status: { phase?: string; podIP?: string; conditions?: { type: string; status: string }[] };
}

const k = (args: string[]) => kubectlOk(lab!.stateDir, args);

async function pods(selector: string): Promise<PodJson[]> {
  return (JSON.parse(await k(['get', 'pods', '-l', selector, '-o', 'json'])) as { items: PodJson[] }).items;
}

const ready = (p: PodJson) => p.status.phase === 'Running' && !p.metadata.deletionTimestamp && (p.status.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');

async function serviceIp(name: string): Promise<string> {
  return (await k(['get', 'svc', name, '-o', 'jsonpath={.spec.clusterIP}'])).trim();
}

/** One request through the Service from the client pod: true when nginx answered. */
/** One request to the Service; `version` is the answering nginx's (its image tag, in the Server header). */
async function curlOnce(ip: string): Promise<{ ok: boolean; out: string; version?: string }> {
  const r = await lab!.exec('client', ['curl', '-s', '-S', '-i', '-m', '3', `http://${ip}/`]);
  const version = /^Server: nginx\/(\S+)/im.exec(r.out)?.[1];
  return { ok: r.code === 0 && version !== undefined && /Welcome to nginx!/.test(r.out), out: r.out, version };
}

test.serial('the docs nginx Deployment and a Service apply unchanged; 3 pods Running; curl from a pod answers', async (t) => {
  if (!requireOrSkip(t, haveKubectl, 'kubectl is not installed (Debian: kubernetes-client)')) return;
  const applied = await k(['apply', '--validate=false', '-f', path.join(FIX, 'nginx-deployment.yaml'), '-f', path.join(FIX, 'nginx-service.yaml'), '-f', path.join(FIX, 'client-pod.yaml')]);
  t.regex(applied, /deployment.apps\/nginx-deployment created/);
  t.regex(applied, /service\/nginx-service created/);
  const running = await eventually(async () => {
    const ps = await pods('app=nginx');
    return ps.length === 3 && ps.every(ready) ? ps : undefined;
  }, 60_000, 250);
  t.is(running.length, 3);
  t.true(running.every((p) => p.spec.containers[0].image === 'nginx:1.14.2'));
  t.true(running.every((p) => /^[a-z0-9]+$/.test(p.metadata.labels?.['pod-template-hash'] ?? '')), 'pods carry pod-template-hash');
  const rs = JSON.parse(await k(['get', 'rs', '-l', 'app=nginx', '-o', 'json'])) as { items: { metadata: { name: string; annotations: Record<string, string>; ownerReferences: { kind: string; name: string }[] } }[] };
  t.is(rs.items.length, 1);
  t.is(rs.items[0].metadata.annotations['deployment.kubernetes.io/revision'], '1');
  t.deepEqual(rs.items[0].metadata.ownerReferences.map((o) => `${o.kind}/${o.name}`), ['Deployment/nginx-deployment']);
  await eventually(async () => ready(JSON.parse(await k(['get', 'pod', 'client', '-o', 'json'])) as PodJson), 30_000, 200);
  const ip = await serviceIp('nginx-service');
  const r = await eventually(async () => {
    const x = await curlOnce(ip);
    return x.ok ? x : undefined;
  }, 20_000, 200);
  t.is(r.version, '1.14.2', 'the docs image answers as nginx/1.14.2');
  const status = await k(['rollout', 'status', 'deployment/nginx-deployment', '--timeout=60s']);
  t.regex(status, /successfully rolled out/);
});

test.serial('kubectl scale goes through the scale subresource, up and down', async (t) => {
  if (!lab) return t.pass();
  t.regex(await k(['scale', 'deployment/nginx-deployment', '--replicas=5']), /scaled/);
  await eventually(async () => (await pods('app=nginx')).filter(ready).length === 5, 60_000, 250);
  const scale = JSON.parse(await k(['get', '--raw', '/apis/apps/v1/namespaces/default/deployments/nginx-deployment/scale'])) as { kind: string; spec: { replicas: number }; status: { selector: string } };
  t.is(scale.kind, 'Scale');
  t.is(scale.spec.replicas, 5);
  t.is(scale.status.selector, 'app=nginx');
  await k(['scale', 'deployment/nginx-deployment', '--replicas=3']);
  await eventually(async () => {
    const ps = await pods('app=nginx');
    return ps.length === 3 && ps.every(ready);
  }, 60_000, 250);
  t.pass();
});

test.serial('a rollout to a new image keeps the Service answering every request; rollout undo goes back', async (t) => {
  if (!lab) return t.pass();
  const ip = await serviceIp('nginx-service');
  let stop = false;
  let ok = 0;
  const failures: string[] = [];
  const loop = (async () => {
    while (!stop) {
      const r = await curlOnce(ip);
      if (r.ok) ok++;
      else failures.push(r.out.trim());
    }
  })();
  await k(['set', 'image', 'deployment/nginx-deployment', 'nginx=nginx:1.16.1']);
  const status = await k(['rollout', 'status', 'deployment/nginx-deployment', '--timeout=120s']);
  t.regex(status, /successfully rolled out/);
  const after = await pods('app=nginx');
  t.is(after.filter(ready).length, 3);
  t.true(after.filter(ready).every((p) => p.spec.containers[0].image === 'nginx:1.16.1'));
  // A few more requests once the old pods are gone: only the new image answers.
  t.is((await curlOnce(ip)).version, '1.16.1');
  const okAtEnd = ok;
  await eventually(() => ok >= okAtEnd + 5, 30_000, 50);
  stop = true;
  await loop;
  t.log(`requests during the rollout: ${ok} answered, ${failures.length} failed`);
  t.deepEqual(failures, []);
  t.true(ok >= 10);

  const history = await k(['rollout', 'history', 'deployment/nginx-deployment']);
  t.regex(history, /^1\s/m);
  t.regex(history, /^2\s/m);
  t.regex(await k(['rollout', 'undo', 'deployment/nginx-deployment']), /rolled back/);
  await k(['rollout', 'status', 'deployment/nginx-deployment', '--timeout=120s']);
  const back = await eventually(async () => {
    const ps = (await pods('app=nginx')).filter(ready);
    return ps.length === 3 && ps.every((p) => p.spec.containers[0].image === 'nginx:1.14.2') ? ps : undefined;
  }, 60_000, 250);
  t.is(back.length, 3);
  const deploy = JSON.parse(await k(['get', 'deploy', 'nginx-deployment', '-o', 'json'])) as { metadata: { annotations: Record<string, string> } };
  t.is(deploy.metadata.annotations['deployment.kubernetes.io/revision'], '3', 'the undone revision comes back as revision 3');
  t.is((await curlOnce(ip)).version, '1.14.2');
});

test.serial('a DaemonSet runs exactly one pod on every node', async (t) => {
  if (!lab) return t.pass();
  await k(['apply', '--validate=false', '-f', path.join(FIX, 'echo-daemonset.yaml')]);
  const ds = await eventually(async () => {
    const ps = (await pods('app=node-echo')).filter(ready);
    return ps.length === 3 ? ps : undefined;
  }, 60_000, 250);
  t.deepEqual(ds.map((p) => p.spec.nodeName).sort(), ['node-1', 'node-2', 'node-3']);
  const status = await k(['rollout', 'status', 'daemonset/node-echo', '--timeout=60s']);
  t.regex(status, /successfully rolled out/);
  const table = await k(['get', 'ds', 'node-echo']);
  t.regex(table, /node-echo\s+3\s+3\s+3\s+3\s+3\s/);
});

test.serial('get all, get events, get endpoints, describe node/svc/deploy read like a cluster', async (t) => {
  if (!lab) return t.pass();
  const all = await k(['get', 'all']);
  for (const re of [/pod\/nginx-deployment-/, /service\/nginx-service\s+ClusterIP/, /deployment.apps\/nginx-deployment\s+3\/3\s+3\s+3/, /replicaset.apps\/nginx-deployment-/, /daemonset.apps\/node-echo/]) t.regex(all, re);

  const events = await k(['get', 'events']);
  for (const reason of ['Scheduled', 'Pulled', 'Created', 'Started', 'SuccessfulCreate', 'ScalingReplicaSet']) t.regex(events, new RegExp(`\\b${reason}\\b`));
  t.regex(events, /deployment\/nginx-deployment\s+Scaled up replica set nginx-deployment-\w+ to/);

  const nginxIps = (await pods('app=nginx')).filter(ready).map((p) => p.status.podIP!).sort();
  const ep = await k(['get', 'endpoints', 'nginx-service']);
  for (const ip of nginxIps) t.true(ep.includes(`${ip}:80`), `endpoints list ${ip}:80`);

  const svc = await k(['describe', 'svc', 'nginx-service']);
  t.regex(svc, /Endpoints:\s+10\.244\.\d+\.\d+:80,/);
  t.notRegex(svc, /Endpoints:\s+<none>/);

  const node = await k(['describe', 'node', 'node-1']);
  t.notRegex(node, /Failed to get lease/);
  t.notRegex(node, /-9223372036854775808/);
  t.regex(node, /Kubelet Version:\s+v1\.30\.0-podlab/);
  t.regex(node, /Lease:\s+HolderIdentity:\s+node-1/);
  t.regex(node, /Non-terminated Pods:\s+\(\d+ in total\)/);
  const wide = await k(['get', 'nodes', '-o', 'wide']);
  t.regex(wide, /node-1\s+Ready\s+<none>\s+\S+\s+v1\.30\.0-podlab\s+127\.0\.130\.11\s+<none>\s+podlab emulated node\s+\S+\s+podlab:\/\/emulated/);

  const deploy = await k(['describe', 'deploy', 'nginx-deployment']);
  t.regex(deploy, /Replicas:\s+3 desired \| 3 updated \| 3 total \| 3 available \| 0 unavailable/);
  t.regex(deploy, /NewReplicaSet:\s+nginx-deployment-\w+ \(3\/3 replicas created\)/);
  t.regex(deploy, /ScalingReplicaSet/);

  const pod = (await pods('app=nginx'))[0].metadata.name;
  const dp = await k(['describe', 'pod', pod]);
  t.regex(dp, /Normal\s+Scheduled\s+\S+\s+default-scheduler\s+Successfully assigned default\//);
  t.regex(dp, /Normal\s+Started\s+\S+\s+kubelet\s+Started container nginx/);

  const resources = await k(['api-resources']);
  for (const re of [/^deployments\s+deploy\s+apps\/v1\s+true\s+Deployment/m, /^leases\s+coordination.k8s.io\/v1\s+true\s+Lease/m, /^events\s+ev\s+v1\s+true\s+Event/m, /^serviceaccounts\s+sa\s+v1/m, /^configmaps\s+cm\s+v1/m]) t.regex(resources, re);
  t.regex(await k(['get', 'sa', '-A']), /kube-node-lease\s+default/);
  t.regex(await k(['get', 'leases', '-n', 'kube-node-lease']), /node-3\s+node-3/);
});

test.serial('ConfigMaps and Secrets are stored and listed; deleting the Deployment collects its ReplicaSets and pods', async (t) => {
  if (!lab) return t.pass();
  await k(['create', 'configmap', 'app-config', '--from-literal=mode=demo', '--from-literal=level=3']);
  await k(['create', 'secret', 'generic', 'app-secret', '--from-literal=password=s3cret']);
  t.regex(await k(['get', 'cm', 'app-config']), /app-config\s+2\s/);
  const secret = JSON.parse(await k(['get', 'secret', 'app-secret', '-o', 'json'])) as { type: string; data: Record<string, string> };
  t.is(secret.type, 'Opaque');
  t.is(Buffer.from(secret.data.password, 'base64').toString(), 's3cret');
  const bad = await kubectl(lab.stateDir, ['create', 'configmap', 'bad', '--from-literal=a b=1']);
  t.not(bad.code, 0);

  // kubectl's own generator (no manifest) makes a working Deployment too.
  await k(['create', 'deployment', 'hello', '--image=podlab/http', '--replicas=2']);
  await eventually(async () => (await pods('app=hello')).filter(ready).length === 2, 60_000, 250);
  await k(['delete', 'deployment', 'hello']);

  await k(['delete', 'deployment', 'nginx-deployment']);
  await eventually(async () => (await pods('app=nginx')).length === 0 && (JSON.parse(await k(['get', 'rs', '-l', 'app=nginx', '-o', 'json'])) as { items: unknown[] }).items.length === 0, 30_000, 250);
  t.pass();
});
