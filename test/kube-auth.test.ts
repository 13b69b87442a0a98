/**
 * Authentication and authorization with the real clients against a real lab
 * (127.0.136.0/24): HTTPS with the lab's CA, bearer tokens, 401 for
 * anonymous requests, `kubectl auth can-i` / `whoami` for the admin and a
 * node identity, the node identity's limits, and @kubernetes/client-node 1.x
 * listing, watching and JSON-patching pods over HTTPS with the token.
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { labApi } from '../lab/lab.ts';
import { adminCredentials } from '../control-plane/credentials.ts';
import { defaultPkiDir } from '../control-plane/pki.ts';
import type { Pod } from '../control-plane/types.ts';
import { httpsCall } from './helpers/https.ts';
import { kubectl } from './helpers/kubectl.ts';
import { eventually, hasTool, requireOrSkip, startLab, type TestLab } from './helpers/lab.ts';

const NET = '127.0.136.0/24';
let lab: TestLab | undefined;
const haveKubectl = hasTool('kubectl');

test.before(async () => {
  lab = await startLab(NET, { nodes: 2, podsPerNode: 1 });
});
test.after.always(async () => {
  await lab?.close();
});

/** A kubeconfig for node-1's identity, as its agent authenticates. */
function nodeKubeconfig(): string {
  const dir = lab!.stateDir;
  const token = fs.readFileSync(path.join(defaultPkiDir(dir), 'nodes', 'node-1.token'), 'utf8').trim();
  const text = fs.readFileSync(path.join(dir, 'kubeconfig'), 'utf8').replace(/token: .*/, `token: ${token}`);
  const file = path.join(dir, 'node-1.kubeconfig');
  fs.writeFileSync(file, text, { mode: 0o600 });
  return file;
}

test.serial('the kubeconfig is 0600 and carries the lab CA and the admin token; the server speaks HTTPS only', (t) => {
  const file = path.join(lab!.stateDir, 'kubeconfig');
  t.is((fs.statSync(file).mode & 0o777).toString(8), '600');
  const text = fs.readFileSync(file, 'utf8');
  const creds = adminCredentials(lab!.stateDir, {});
  t.regex(text, new RegExp(`server: https://127\\.0\\.136\\.10:\\d+`));
  t.true(text.includes(`certificate-authority-data: ${Buffer.from(creds.ca).toString('base64')}`));
  t.true(text.includes(`token: ${creds.token}`));
  t.false(text.includes('insecure-skip-tls-verify'));
  for (const f of ['ca.key', 'apiserver.key', 'admin.token', 'node-token.key', 'nodes/node-1.token']) {
    t.is((fs.statSync(path.join(defaultPkiDir(lab!.stateDir), f)).mode & 0o777).toString(8), '600', f);
  }
  // The agents were started with their own node tokens.
  const agents = lab!.rec.procs.filter((p) => p.role === 'node');
  t.is(agents.length, 2);
  for (const a of agents) t.is(a.args[a.args.indexOf('--token-file') + 1], path.join(defaultPkiDir(lab!.stateDir), 'nodes', `${a.name}.token`));
});

test.serial('anonymous and wrong-token requests get 401; health probes stay open', async (t) => {
  const { ca, token } = adminCredentials(lab!.stateDir, {});
  const base = lab!.rec.apiUrl;
  const anon = await httpsCall(`${base}/api/v1/pods`, { ca });
  t.is(anon.code, 401);
  t.like(anon.json, { kind: 'Status', reason: 'Unauthorized', code: 401 });
  t.is((await httpsCall(`${base}/api/v1/namespaces/default/pods`, { ca }, { method: 'POST', body: { metadata: { name: 'x' } } })).code, 401);
  t.is((await httpsCall(`${base}/apis/projectcalico.org/v3/bgppeers`, { ca, token: `${token}x` })).code, 401);
  t.is((await httpsCall(`${base}/api/v1/pods`, { ca, token: 'node.node-1.forged' })).code, 401);
  t.is((await httpsCall(`${base}/openapi/v3`, { ca })).code, 401);
  t.is((await httpsCall(`${base}/healthz`, { ca })).code, 200);
  t.is((await httpsCall(`${base}/api/v1/pods`, { ca, token })).code, 200);
  // A client that does not trust the lab CA cannot even connect.
  await t.throwsAsync(httpsCall(`${base}/healthz`, { ca: '' }), { message: /self[- ]signed|unable to verify|certificate/i });
  if (haveKubectl) {
    const r = await kubectl(lab!.stateDir, ['get', 'pods'], { kubeconfig: path.join(lab!.stateDir, 'kubeconfig'), stdin: '' });
    t.is(r.code, 0, r.stderr);
    // (A kubeconfig with no credentials at all makes kubectl prompt for a password; a wrong token is what gets sent.)
    const noToken = fs.readFileSync(path.join(lab!.stateDir, 'kubeconfig'), 'utf8').replace(/token: .*/, 'token: not-a-podlab-token');
    const file = path.join(lab!.stateDir, 'anon.kubeconfig');
    fs.writeFileSync(file, noToken, { mode: 0o600 });
    const denied = await kubectl(lab!.stateDir, ['get', 'pods'], { kubeconfig: file });
    t.not(denied.code, 0);
    t.regex(denied.stderr, /You must be logged in to the server \(Unauthorized\)|Unauthorized/);
  }
});

test.serial('kubectl auth can-i and whoami: the admin can do everything, a node only what an agent needs', async (t) => {
  if (!requireOrSkip(t, haveKubectl, 'kubectl not installed')) return;
  const dir = lab!.stateDir;
  const can = async (args: string[], kubeconfig?: string) => {
    const r = await kubectl(dir, ['auth', 'can-i', ...args], { kubeconfig });
    return r.stdout.trim();
  };
  t.is(await can(['delete', 'pods']), 'yes');
  t.is(await can(['create', 'bgppeers.projectcalico.org']), 'yes');
  t.is(await can(['*', '*']), 'yes');
  const who = await kubectl(dir, ['auth', 'whoami', '-o', 'json']);
  t.is(who.code, 0, who.stderr);
  t.like(JSON.parse(who.stdout), { status: { userInfo: { username: 'admin', groups: ['system:masters', 'system:authenticated'] } } });

  const node = nodeKubeconfig();
  t.is(await can(['list', 'pods'], node), 'yes');
  t.is(await can(['watch', 'services', '--all-namespaces'], node), 'yes');
  t.is(await can(['delete', 'pods'], node), 'no');
  t.is(await can(['create', 'bgppeers.projectcalico.org'], node), 'no');
  t.is(await can(['patch', 'nodes/node-1'], node), 'yes');
  t.is(await can(['patch', 'nodes/node-2'], node), 'no');
  t.is(await can(['patch', 'pods/pod-1a', '--subresource=status'], node), 'yes', 'pod-1a runs on node-1');
  t.is(await can(['patch', 'pods/pod-2a', '--subresource=status'], node), 'no', 'pod-2a runs on node-2');
  const adminList = await kubectl(dir, ['auth', 'can-i', '--list']);
  t.regex(adminList.stdout, /^\*\.\*\s+\[\]\s+\[\]\s+\[\*\]$/m);
  const nodeList = await kubectl(dir, ['auth', 'can-i', '--list', '-n', 'kube-node-lease'], { kubeconfig: node });
  t.regex(nodeList.stdout, /^nodes\/status\s+\[\]\s+\[node-1\]\s+\[update patch\]$/m);
  t.regex(nodeList.stdout, /^leases\.coordination\.k8s\.io\s+\[\]\s+\[node-1\]\s+\[update patch\]$/m);
  t.notRegex(nodeList.stdout, /\[\*\]$/m);
  const nwho = await kubectl(dir, ['auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username}'], { kubeconfig: node });
  t.is(nwho.stdout, 'system:node:node-1');
  // And the decisions are enforced, in kube-apiserver's words.
  const del = await kubectl(dir, ['delete', 'pod', 'pod-2a', '--wait=false'], { kubeconfig: node });
  t.not(del.code, 0);
  t.regex(del.stderr, /pods "pod-2a" is forbidden: User "system:node:node-1" cannot delete resource "pods" in API group "" in the namespace "default"/);
  t.truthy(await labApi(lab!.rec).get('pods', 'pod-2a'));
});

test.serial('@kubernetes/client-node 1.x over HTTPS with the token: list, JSON patch (its default), and a Watch', async (t) => {
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(path.join(lab!.stateDir, 'kubeconfig'));
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const pods = await core.listNamespacedPod({ namespace: 'default' });
  t.deepEqual(pods.items.map((p) => p.metadata?.name).sort(), ['pod-1a', 'pod-2a']);

  const events: string[] = [];
  const watch = new k8s.Watch(kc);
  const done = new Promise<void>((resolve) => {
    void watch
      .watch(
        '/api/v1/namespaces/default/pods',
        { resourceVersion: pods.metadata?.resourceVersion },
        (type: string, obj: { metadata?: { name?: string } }) => events.push(`${type} ${obj.metadata?.name}`),
        () => resolve(),
      )
      .then((ac) => t.teardown(() => ac.abort()));
  });
  // client-node 1.x sends application/json-patch+json unless told otherwise.
  const patched = await core.patchNamespacedPod({ name: 'pod-1a', namespace: 'default', body: [{ op: 'add', path: '/metadata/labels/patched', value: 'yes' }] });
  t.is(patched.metadata?.labels?.patched, 'yes');
  await core.createNamespacedPod({ namespace: 'default', body: { metadata: { name: 'from-client-node' }, spec: { containers: [{ name: 'c', image: 'busybox' }] } } });
  await eventually(() => events.includes('ADDED from-client-node'), 30_000);
  t.true(events.includes('MODIFIED pod-1a'));
  await core.deleteNamespacedPod({ name: 'from-client-node', namespace: 'default' });
  await eventually(() => events.includes('DELETED from-client-node'), 30_000);
  const pod = await labApi(lab!.rec).get<Pod>('pods', 'pod-1a');
  t.is(pod?.metadata.labels?.patched, 'yes');
  void done;
});
