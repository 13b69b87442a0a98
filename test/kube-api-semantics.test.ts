/**
 * API semantics with the real kubectl against a real lab (127.0.135.0/24):
 * the two Pod-corruption cases (apply of a new image must keep the ports;
 * replace without nodeName must be refused), JSON patch, explain from the
 * served OpenAPI, apply with kubectl's default validation, server-side
 * apply merging into a live Pod, and 413 / 400 for oversized and
 * over-deep bodies (never a reset or a 500).
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { labApi } from '../lab/lab.ts';
import { adminCredentials } from '../control-plane/credentials.ts';
import type { Pod } from '../control-plane/types.ts';
import { httpsCall } from './helpers/https.ts';
import { kubectl } from './helpers/kubectl.ts';
import { eventually, hasTool, requireOrSkip, startLab, type TestLab } from './helpers/lab.ts';

const NET = '127.0.135.0/24';
let lab: TestLab | undefined;
const haveKubectl = hasTool('kubectl');

test.before(async () => {
  lab = await startLab(NET, { nodes: 2, podsPerNode: 1 });
});
test.after.always(async () => {
  await lab?.close();
});

const manifest = (image: string, withNode = true): string => `apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
${withNode ? '  nodeName: node-1\n' : ''}  containers:
  - name: web
    image: ${image}
    ports:
    - containerPort: 80
      name: http
    env:
    - {name: GREETING, value: hello}
  - name: side
    image: busybox
`;

function write(name: string, text: string): string {
  const file = path.join(lab!.stateDir, name);
  fs.writeFileSync(file, text);
  return file;
}

test.serial('apply changing one container\'s image keeps its ports and env; the next apply still works', async (t) => {
  if (!requireOrSkip(t, haveKubectl, 'kubectl not installed')) return;
  const dir = lab!.stateDir;
  const first = await kubectl(dir, ['apply', '-f', write('web-1.yaml', manifest('nginx:1.14.2'))]);
  t.is(first.code, 0, first.stderr);
  const second = await kubectl(dir, ['apply', '-f', write('web-2.yaml', manifest('nginx:1.16.1'))]);
  t.is(second.code, 0, second.stderr);
  t.regex(second.stdout, /pod\/web configured/);
  const pod = (await labApi(lab!.rec).get<Pod>('pods', 'web'))!;
  const web = pod.spec!.containers.find((c) => c.name === 'web')!;
  t.is(web.image, 'nginx:1.16.1');
  t.deepEqual(web.ports, [{ containerPort: 80, name: 'http', protocol: 'TCP' }]);
  t.deepEqual((web as unknown as { env: unknown[] }).env, [{ name: 'GREETING', value: 'hello' }]);
  t.deepEqual(pod.spec!.containers.map((c) => c.name), ['web', 'side']);
  t.is(pod.spec!.nodeName, 'node-1');
  const again = await kubectl(dir, ['apply', '-f', path.join(dir, 'web-2.yaml')]);
  t.is(again.code, 0, again.stderr);
  t.regex(again.stdout, /pod\/web unchanged/);
  await eventually(async () => (await labApi(lab!.rec).get<Pod>('pods', 'web'))?.status?.phase === 'Running', 30_000);
});

test.serial('replace -f without nodeName is refused with Kubernetes\' message and the Pod keeps its node', async (t) => {
  if (!requireOrSkip(t, haveKubectl, 'kubectl not installed')) return;
  const r = await kubectl(lab!.stateDir, ['replace', '-f', write('web-nonode.yaml', manifest('nginx:1.16.1', false))]);
  t.not(r.code, 0);
  t.regex(r.stderr, /The Pod "web" is invalid: spec: Forbidden: pod updates may not change fields other than `spec\.containers\[\*\]\.image`,`spec\.initContainers\[\*\]\.image`,`spec\.activeDeadlineSeconds`,`spec\.tolerations` \(only additions to existing tolerations\)/);
  t.regex(r.stderr, /nodeName: "node-1"/);
  const wide = await kubectl(lab!.stateDir, ['get', 'pod', 'web', '-o', 'wide', '--no-headers']);
  t.is(wide.code, 0, wide.stderr);
  t.regex(wide.stdout, /\snode-1\s/);
  // An image alone may change through replace.
  const ok = await kubectl(lab!.stateDir, ['replace', '-f', write('web-3.yaml', manifest('nginx:1.17'))]);
  t.is(ok.code, 0, ok.stderr);
});

test.serial('patch --type=json applies RFC 6902 operations; a failed test operation is refused', async (t) => {
  if (!requireOrSkip(t, haveKubectl, 'kubectl not installed')) return;
  const dir = lab!.stateDir;
  const p = await kubectl(dir, ['patch', 'pod', 'web', '--type=json', '-p', '[{"op":"replace","path":"/spec/containers/1/image","value":"busybox:1.36"},{"op":"add","path":"/metadata/labels/tier","value":"fe"}]']);
  t.is(p.code, 0, p.stderr);
  const pod = (await labApi(lab!.rec).get<Pod>('pods', 'web'))!;
  t.is(pod.spec!.containers[1].image, 'busybox:1.36');
  t.is(pod.metadata.labels?.tier, 'fe');
  const bad = await kubectl(dir, ['patch', 'pod', 'web', '--type=json', '-p', '[{"op":"test","path":"/spec/nodeName","value":"node-2"}]']);
  t.not(bad.code, 0);
  t.regex(bad.stderr, /Test operation failed/);
});

test.serial('explain pod reads Kubernetes\' schemas from /openapi/v3', async (t) => {
  if (!requireOrSkip(t, haveKubectl, 'kubectl not installed')) return;
  const r = await kubectl(lab!.stateDir, ['explain', 'pod']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /KIND:\s+Pod/);
  t.regex(r.stdout, /Pod is a collection of containers that can run on a host/);
  t.regex(r.stdout, /spec\s+<PodSpec>/);
  const ports = await kubectl(lab!.stateDir, ['explain', 'pod.spec.containers.ports.containerPort']);
  t.is(ports.code, 0, ports.stderr);
  t.regex(ports.stdout, /FIELD:\s+containerPort <integer>/);
  const svc = await kubectl(lab!.stateDir, ['explain', 'service.spec.type']);
  t.is(svc.code, 0, svc.stderr);
  t.regex(svc.stdout, /ClusterIP/);
});

test.serial('apply with kubectl\'s default validation: a valid Service is created, a typo is refused naming the field', async (t) => {
  if (!requireOrSkip(t, haveKubectl, 'kubectl not installed')) return;
  const svc = await kubectl(lab!.stateDir, ['apply', '-f', write('svc.yaml', 'apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{port: 80, targetPort: 80}]\n')]);
  t.is(svc.code, 0, svc.stderr);
  t.regex(svc.stdout, /service\/web created/);
  const typo = await kubectl(lab!.stateDir, ['apply', '-f', write('typo.yaml', 'apiVersion: v1\nkind: Pod\nmetadata: {name: typo}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    imagePullPolicyy: Always\n')]);
  t.not(typo.code, 0);
  t.regex(typo.stderr, /strict decoding error: unknown field "spec\.containers\[0\]\.imagePullPolicyy"/);
  t.is(await labApi(lab!.rec).get('pods', 'typo'), null);
});

test.serial('kubectl diff and --dry-run=server show the change and store nothing', async (t) => {
  if (!requireOrSkip(t, haveKubectl, 'kubectl not installed')) return;
  const dir = lab!.stateDir;
  const before = (await labApi(lab!.rec).get<Pod>('pods', 'web'))!;
  const changed = write('web-4.yaml', manifest('nginx:1.19'));
  const diff = await kubectl(dir, ['diff', '-f', changed]);
  t.is(diff.code, 1, diff.stderr); // kubectl diff: 1 means "differences found"
  t.regex(diff.stdout, /^-\s+image: nginx:1\.17$/m);
  t.regex(diff.stdout, /^\+\s+image: nginx:1\.19$/m);
  const dry = await kubectl(dir, ['apply', '--dry-run=server', '-f', changed]);
  t.is(dry.code, 0, dry.stderr);
  t.regex(dry.stdout, /pod\/web configured \(server dry run\)/);
  const after = (await labApi(lab!.rec).get<Pod>('pods', 'web'))!;
  t.is(after.metadata.resourceVersion, before.metadata.resourceVersion);
  t.is(after.spec!.containers[0].image, 'nginx:1.17');
});

test.serial('apply --server-side merges into a live Pod and records kubectl as its applier', async (t) => {
  if (!requireOrSkip(t, haveKubectl, 'kubectl not installed')) return;
  const r = await kubectl(lab!.stateDir, ['apply', '--server-side', '-f', path.join(lab!.stateDir, 'web-3.yaml')]);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout.trim(), 'pod/web serverside-applied');
  const pod = JSON.parse((await kubectl(lab!.stateDir, ['get', 'pod', 'web', '-o', 'json', '--show-managed-fields'])).stdout) as Pod & { metadata: { managedFields?: { manager: string; operation: string }[] } };
  t.like(pod.metadata.managedFields?.find((m) => m.operation === 'Apply'), { manager: 'kubectl' });
  t.is(pod.spec!.nodeName, 'node-1');
  t.is(pod.metadata.labels?.tier, 'fe', 'a label set by another writer stays');
});

test.serial('bodies over 3 MiB get 413 and over-deep JSON gets 400, on a connection that stays usable', async (t) => {
  const creds = adminCredentials(lab!.stateDir, {});
  const url = `${lab!.rec.apiUrl}/api/v1/namespaces/default/pods`;
  const big = JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'big', annotations: { blob: 'x'.repeat(4 * 1024 * 1024) } }, spec: { containers: [{ name: 'c', image: 'busybox' }] } });
  const r413 = await httpsCall(url, creds, { method: 'POST', body: big });
  t.is(r413.code, 413);
  t.like(r413.json, { kind: 'Status', reason: 'RequestEntityTooLarge', code: 413 });
  const deep = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"deep"},"spec":{"containers":[{"name":"c","image":"busybox"}],"x":${'['.repeat(100_000)}${']'.repeat(100_000)}}}`;
  const r400 = await httpsCall(url, creds, { method: 'POST', body: deep });
  t.is(r400.code, 400);
  t.like(r400.json, { kind: 'Status', reason: 'BadRequest' });
  t.regex((r400.json as { message: string }).message, /exceeded max depth/);
  // Nested within the limit is processed normally (unknown field warned about, not a 500).
  const ok = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"nested"},"spec":{"containers":[{"name":"c","image":"busybox"}],"x":${'['.repeat(900)}${']'.repeat(900)}}}`;
  const r201 = await httpsCall(url, creds, { method: 'POST', body: ok });
  t.is(r201.code, 201, r201.text.slice(0, 300));
  t.regex(String(r201.headers.warning), /unknown field \\"spec\.x\\"/);
  if (haveKubectl) {
    const huge = await kubectl(lab!.stateDir, ['create', '-f', write('huge.json', big)]);
    t.not(huge.code, 0);
    t.regex(huge.stderr, /RequestEntityTooLarge|too large/i);
  }
});
