/**
 * `kubectl port-forward` in a real lab (127.0.37.0/24): the real kubectl
 * through the apiserver's pods/portforward to the pod's node agent, the
 * connection dialled inside the pod's emulated TCP stack; the real curl on
 * the forwarded local port. Pods on both nodes, `pod/NAME` and `svc/NAME`
 * (which kubectl resolves to a backend pod and its targetPort itself), SPDY
 * and SPDY-in-WebSocket, sequential and concurrent requests, and the
 * kubectl session surviving each of them. And `podlab exec --via-apiserver`,
 * the way kubectl exec goes, also taken by itself when the agent is out of
 * reach.
 */
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execInPod } from '../cli/commands.ts';
import { labApi } from '../lab/lab.ts';
import type { Pod } from '../control-plane/types.ts';
import { kubectl } from './helpers/kubectl.ts';
import { curl, kubectlPortForward } from './helpers/port-forward.ts';
import { eventually, hasTool, requireOrSkip, startLab, type TestLab } from './helpers/lab.ts';

const NET = '127.0.37.0/24';
const LOCAL = '127.0.37.1';
let lab: TestLab | undefined;
const haveTools = hasTool('kubectl') && hasTool('curl');

const MANIFEST = `apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  nodeName: node-2
  containers:
  - {name: nginx, image: "nginx:1.14.2", ports: [{name: http, containerPort: 80}]}
---
apiVersion: v1
kind: Pod
metadata: {name: who, labels: {app: who}}
spec:
  nodeName: node-1
  containers:
  - {name: http, image: podlab/http, ports: [{containerPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 8000, targetPort: http}]
`;

test.before(async () => {
  if (!haveTools) return;
  lab = await startLab(NET, { nodes: 2, podsPerNode: 0 });
  const r = await kubectl(lab.stateDir, ['apply', '-f', '-'], { stdin: MANIFEST });
  if (r.code !== 0) throw new Error(r.stderr);
  await eventually(async () => {
    const pods = await Promise.all(['web', 'who'].map((n) => labApi(lab!.rec).get<Pod>('pods', n)));
    return pods.every((p) => p?.status?.phase === 'Running');
  }, 30_000);
});
test.after.always(async () => {
  await lab?.close();
});

for (const ws of [false, true]) {
  test.serial(`port-forward pod/web (node-2) over ${ws ? 'SPDY in a WebSocket' : 'SPDY/3.1'}: the real curl gets nginx's page, 3 in a row and 10 at once`, async (t) => {
    if (!requireOrSkip(t, haveTools, 'kubectl and curl needed')) return;
    const pf = await kubectlPortForward(lab!.stateDir, 'pod/web', 80, { address: LOCAL, env: { KUBECTL_PORT_FORWARD_WEBSOCKETS: String(ws) } });
    t.teardown(() => pf.stop());
    const url = `http://${LOCAL}:${pf.port}/`;
    for (let i = 0; i < 3; i++) {
      const r = await curl(['-i', url]);
      t.is(r.code, 0, r.stderr + pf.stderr());
      t.regex(r.body.toString(), /^HTTP\/1\.1 200 OK\r\n[\s\S]*Server: nginx\/1\.14\.2[\s\S]*<h1>Welcome to nginx!<\/h1>/);
    }
    const many = await Promise.all(Array.from({ length: 10 }, (_, i) => curl(['-s', '-o', '/dev/null', '-w', '%{http_code}', `${url}${i % 2 ? 'index.html' : ''}`])));
    t.deepEqual(many.map((r) => `${r.code} ${r.body.toString()}`), Array.from({ length: 10 }, () => '0 200'));
    t.is(pf.proc.exitCode, null, 'kubectl still forwarding');
    // nginx logged the forwarded requests as coming from the pod's own loopback, as through the kubelet.
    const logs = await kubectl(lab!.stateDir, ['logs', 'web', '--tail=1']);
    t.regex(logs.stdout, /^127\.0\.0\.1 - - \[.*"GET \/(index\.html)? HTTP\/1\.1" 200 /);
  });
}

test.serial('port-forward svc/web: kubectl picks a backend pod and maps the Service port to the named targetPort', async (t) => {
  if (!requireOrSkip(t, haveTools, 'kubectl and curl needed')) return;
  const pf = await kubectlPortForward(lab!.stateDir, 'svc/web', 8000, { address: LOCAL });
  t.teardown(() => pf.stop());
  t.regex(pf.stdout(), new RegExp(`Forwarding from ${LOCAL.replace(/\./g, '\\.')}:\\d+ -> 80`));
  const r = await curl([`http://${LOCAL}:${pf.port}/index.html`]);
  t.is(r.code, 0, r.stderr + pf.stderr());
  t.regex(r.body.toString(), /Welcome to nginx!/);
});

test.serial('port-forward to a pod on the other node answers as that pod, and a second forward runs beside the first', async (t) => {
  if (!requireOrSkip(t, haveTools, 'kubectl and curl needed')) return;
  const a = await kubectlPortForward(lab!.stateDir, 'pod/who', 8080, { address: LOCAL });
  t.teardown(() => a.stop());
  const b = await kubectlPortForward(lab!.stateDir, 'pod/web', 80, { address: LOCAL });
  t.teardown(() => b.stop());
  const [who, web] = await Promise.all([curl([`http://${LOCAL}:${a.port}/`]), curl([`http://${LOCAL}:${b.port}/`])]);
  t.is(who.body.toString(), 'who on node-1\n');
  t.regex(web.body.toString(), /Welcome to nginx!/);
  // The pod's app saw the connection from its own loopback: the agent dialled inside the pod.
  const ip = await curl([`http://${LOCAL}:${a.port}/ip`]);
  t.is(ip.body.toString(), '127.0.0.1\n');
});

/** `podlab exec` as the CLI runs it, collecting the output. */
async function podlabExec(stateDir: string, pod: string, argv: string[], o: { viaApiserver?: boolean; stdin?: string } = {}): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const stdin = o.stdin === undefined ? undefined : [Buffer.from(o.stdin)][Symbol.iterator]();
  const input = stdin && { [Symbol.asyncIterator]: () => ({ next: () => Promise.resolve(stdin.next()) }) } as AsyncIterable<Uint8Array>;
  const code = await execInPod(stateDir, pod, argv, { stdout: (s) => (out += s), stderr: (s) => (err += s), viaApiserver: o.viaApiserver, stdin: input });
  return { code, out, err };
}

test.serial('podlab exec --via-apiserver: output, stdin and its end, the exit code, all through pods/exec', async (t) => {
  if (!requireOrSkip(t, haveTools, 'kubectl and curl needed')) return;
  const dir = lab!.stateDir;
  t.deepEqual(await podlabExec(dir, 'web', ['hostname'], { viaApiserver: true }), { code: 0, out: 'web\n', err: '' });
  // stdin and its end: nc in web (node-2) to who's podlab/http (node-1), the request piped in.
  const who = (await labApi(lab!.rec).get<Pod>('pods', 'who'))!;
  const nc = await podlabExec(dir, 'web', ['nc', who.status!.podIP!, '8080'], { viaApiserver: true, stdin: 'GET / HTTP/1.0\r\n\r\n' });
  t.is(nc.code, 0, nc.err);
  t.regex(nc.out, /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nwho on node-1\n$/);
  const bad = await podlabExec(dir, 'who', ['ip', 'bogus'], { viaApiserver: true });
  t.not(bad.code, 0);
  t.regex(bad.err, /Usage: ip/);
  const missing = await execInPod(dir, 'nope', ['hostname'], { stdout: () => {}, stderr: () => {}, viaApiserver: true }).catch((e: Error) => e.message);
  t.regex(String(missing), /pods "nope" not found/);
});

test.serial("podlab exec goes through the apiserver by itself when the pod's agent cannot be reached from here", async (t) => {
  if (!requireOrSkip(t, haveTools, 'kubectl and curl needed')) return;
  // A copy of the lab's record whose node-1 socket is nowhere: as a compose container sees a node it cannot dial.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-far-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.cpSync(path.join(lab!.stateDir, 'pki'), path.join(dir, 'pki'), { recursive: true });
  const rec = JSON.parse(fs.readFileSync(path.join(lab!.stateDir, 'lab.json'), 'utf8')) as { nodes: { name: string; control: string }[] };
  for (const n of rec.nodes) n.control = path.join(dir, 'gone', `${n.name}.sock`);
  fs.writeFileSync(path.join(dir, 'lab.json'), JSON.stringify(rec));
  t.deepEqual(await podlabExec(dir, 'who', ['hostname']), { code: 0, out: 'who\n', err: '' });
});
