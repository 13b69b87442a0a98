/**
 * `kubectl exec` over the WebSocket remote-command protocol
 * (v5.channel.k8s.io) through the apiserver to the pod's node agent, with
 * the real kubectl against a real lab (127.0.137.0/24): output, the exit
 * code carried back, cross-node traffic from inside a pod, and the
 * authorization of the exec subresource; and `kubectl logs [-f]`, relayed
 * the same way to the agent's container logs.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { labApi } from '../lab/lab.ts';
import { defaultPkiDir } from '../control-plane/pki.ts';
import type { Pod } from '../control-plane/types.ts';
import { kubectl } from './helpers/kubectl.ts';
import { eventually, hasTool, requireOrSkip, startLab, type TestLab } from './helpers/lab.ts';

const NET = '127.0.137.0/24';
let lab: TestLab | undefined;
const haveKubectl = hasTool('kubectl');

test.before(async () => {
  if (haveKubectl) lab = await startLab(NET, { nodes: 2, podsPerNode: 1 });
});
test.after.always(async () => {
  await lab?.close();
});

test.serial('kubectl exec runs a command in a pod on either node and returns its output', async (t) => {
  if (!requireOrSkip(t, haveKubectl, 'kubectl not installed')) return;
  const dir = lab!.stateDir;
  const host = await kubectl(dir, ['-v=6', 'exec', 'pod-2a', '--', 'hostname']);
  t.is(host.code, 0, host.stderr);
  t.is(host.stdout, 'pod-2a\n');
  t.regex(host.stderr, /GET https:\/\/127\.0\.137\.10:\d+\/api\/v1\/namespaces\/default\/pods\/pod-2a\/exec\?command=hostname.* 101 Switching Protocols/);
  const pod2 = (await labApi(lab!.rec).get<Pod>('pods', 'pod-2a'))!;
  const ping = await kubectl(dir, ['exec', 'pod-1a', '--', 'ping', '-c', '2', pod2.status!.podIP!]);
  t.is(ping.code, 0, ping.stderr);
  t.regex(ping.stdout, /2 packets transmitted, 2 received, 0% packet loss/);
  const addr = await kubectl(dir, ['exec', 'pod-2a', '-c', 'main', '--', 'ip', 'addr']);
  t.is(addr.code, 0, addr.stderr);
  t.true(addr.stdout.includes(`inet ${pod2.status!.podIP}/24`), addr.stdout);
});

test.serial('kubectl exec -i forwards stdin and its end (v5 close) to the command: nc to an echo pod on the other node', async (t) => {
  if (!requireOrSkip(t, haveKubectl, 'kubectl not installed')) return;
  const dir = lab!.stateDir;
  const made = await kubectl(dir, ['apply', '-f', '-'], { stdin: 'apiVersion: v1\nkind: Pod\nmetadata: {name: echo}\nspec:\n  nodeName: node-2\n  containers:\n  - {name: echo, image: podlab/echo, ports: [{containerPort: 7}]}\n' });
  t.is(made.code, 0, made.stderr);
  const echo = await eventually(async () => {
    const p = await labApi(lab!.rec).get<Pod>('pods', 'echo');
    return p?.status?.phase === 'Running' ? p : undefined;
  }, 30_000);
  const r = await kubectl(dir, ['exec', '-i', 'pod-1a', '--', 'nc', echo.status!.podIP!, '7'], { stdin: 'hello through the apiserver\nsecond line\n' });
  t.is(r.code, 0, `stdout: ${r.stdout}\nstderr: ${r.stderr}`);
  t.is(r.stdout, 'hello through the apiserver\nsecond line\n');
});

test.serial('a failing command\'s exit code comes back through kubectl', async (t) => {
  if (!requireOrSkip(t, haveKubectl, 'kubectl not installed')) return;
  const r = await kubectl(lab!.stateDir, ['exec', 'pod-1a', '--', 'ip', 'bogus']);
  t.not(r.code, 0);
  t.regex(r.stderr, /Usage: ip/);
  t.regex(r.stderr, /command terminated with exit code [1-9]/);
  const missing = await kubectl(lab!.stateDir, ['exec', 'no-such-pod', '--', 'hostname']);
  t.not(missing.code, 0);
  t.regex(missing.stderr, /pods "no-such-pod" not found/);
});

test.serial('a node identity may not exec into pods', async (t) => {
  if (!requireOrSkip(t, haveKubectl, 'kubectl not installed')) return;
  const dir = lab!.stateDir;
  const token = fs.readFileSync(path.join(defaultPkiDir(dir), 'nodes', 'node-1.token'), 'utf8').trim();
  const file = path.join(dir, 'node-1.kubeconfig');
  fs.writeFileSync(file, fs.readFileSync(path.join(dir, 'kubeconfig'), 'utf8').replace(/token: .*/, `token: ${token}`), { mode: 0o600 });
  const r = await kubectl(dir, ['exec', 'pod-1a', '--', 'hostname'], { kubeconfig: file });
  t.not(r.code, 0);
  t.regex(r.stderr, /forbidden|Forbidden/);
  t.is((await kubectl(dir, ['auth', 'can-i', 'create', 'pods', '--subresource=exec'], { kubeconfig: file })).stdout.trim(), 'no');
  t.is((await kubectl(dir, ['auth', 'can-i', 'create', 'pods', '--subresource=exec'])).stdout.trim(), 'yes');
});

test.serial('kubectl logs through the apiserver: nginx access lines, --tail, --timestamps, -f follows new requests, a wrong container is refused', async (t) => {
  if (!requireOrSkip(t, haveKubectl, 'kubectl not installed')) return;
  const dir = lab!.stateDir;
  const made = await kubectl(dir, ['apply', '-f', '-'], { stdin: 'apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  nodeName: node-2\n  containers:\n  - {name: nginx, image: "nginx:1.14.2", ports: [{containerPort: 80}]}\n' });
  t.is(made.code, 0, made.stderr);
  const web = await eventually(async () => {
    const p = await labApi(lab!.rec).get<Pod>('pods', 'web');
    return p?.status?.phase === 'Running' ? p : undefined;
  }, 30_000);
  const get = await kubectl(dir, ['exec', 'pod-1a', '--', 'curl', '-s', '-o', '/dev/null', `http://${web.status!.podIP}/`]);
  t.is(get.code, 0, get.stderr);
  const logs = await eventually(async () => {
    const r = await kubectl(dir, ['logs', 'web']);
    return r.code === 0 && /"GET \/ HTTP\/1\.1" 200 /.test(r.stdout) ? r.stdout : undefined;
  }, 10_000, 200);
  const client = (await labApi(lab!.rec).get<Pod>('pods', 'pod-1a'))!;
  t.true(logs.split('\n').some((l) => l.startsWith(`${client.status!.podIP} - - [`)), `the combined log line names the client: ${logs}`);
  const tail = await kubectl(dir, ['logs', 'web', '--tail=1', '--timestamps']);
  t.is(tail.code, 0, tail.stderr);
  t.regex(tail.stdout, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z .*"GET \/ HTTP\/1\.1" 200 /);
  t.is(tail.stdout.trim().split('\n').length, 1);

  // -f: a second request shows up in the running stream.
  const follow = spawn('kubectl', ['logs', '-f', '--tail=0', 'web'], { env: { ...process.env, KUBECONFIG: path.join(dir, 'kubeconfig'), HOME: dir } });
  t.teardown(() => void follow.kill());
  let streamed = '';
  follow.stdout.on('data', (d: Buffer) => (streamed += d.toString()));
  await new Promise((r) => setTimeout(r, 1000));
  t.is((await kubectl(dir, ['exec', 'pod-1a', '--', 'curl', '-s', '-o', '/dev/null', `http://${web.status!.podIP}/index.html`])).code, 0);
  await eventually(() => streamed.includes('"GET /index.html HTTP/1.1" 200'), 10_000, 100);
  follow.kill();

  const wrong = await kubectl(dir, ['logs', 'web', '-c', 'nope']);
  t.not(wrong.code, 0);
  t.regex(wrong.stderr, /nope/);
});

