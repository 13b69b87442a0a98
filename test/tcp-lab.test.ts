/**
 * TCP end to end in a real lab (an apiserver and two node-agent processes on
 * 127.0.90.0/24, pods' traffic crossing real VXLAN on UDP 8472): the built-in
 * apps chosen by image answer across nodes (podlab/http, nginx, http-echo, echo, sink),
 * curl's output and exit codes, containers of one pod talking over
 * localhost, a port clash between two containers reported in the pod's
 * status while exec keeps working, nc with stdin forwarded through the
 * control channel, and `transfer` of 5 MB verified by SHA-256, clean and
 * with 5% loss + 5% reordering set on the underlay between the two nodes;
 * and a deleted pod's connections closed at their peer, as a killed process's are.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { Readable } from 'node:stream';
import type { Pod } from '../control-plane/types.ts';
import { callNode, execInPod } from '../cli/commands.ts';
import { ROOT, labApi } from '../lab/lab.ts';
import type { LoadedObject } from '../lab/manifest.ts';
import { eventually, startLab, type TestLab } from './helpers/lab.ts';

const NET = '127.0.90.0/24';
let lab: TestLab;
const ip: Record<string, string> = {};

function pod(name: string, node: string, containers: Pod['spec'] extends infer S ? (S extends { containers: infer C } ? C : never) : never): LoadedObject {
  return {
    obj: { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default' }, spec: { nodeName: node, containers } } as unknown as LoadedObject['obj'],
    file: 'tcp-lab.test.ts',
    line: 1,
  };
}

test.before(async () => {
  lab = await startLab(NET, {
    nodes: 2,
    podsPerNode: 0,
    manifests: [
      pod('client', 'node-1', [{ name: 'sh', image: 'busybox:1.36' }]),
      pod('web', 'node-2', [
        { name: 'http', image: 'docker.io/podlab/http:0.1', ports: [{ containerPort: 80 }] },
        { name: 'sidecar', image: 'hashicorp/http-echo:1.0', args: ['-text=hello from the sidecar', '-listen=:5678'] },
        { name: 'tools', image: 'busybox' },
      ]),
      pod('echo', 'node-2', [{ name: 'echo', image: 'podlab/echo:latest' }]),
      pod('sink', 'node-2', [{ name: 'sink', image: 'podlab/sink', ports: [{ containerPort: 9000 }] }]),
      // Two containers wanting port 80 in one network namespace: the second must fail, clearly.
      pod('clash', 'node-1', [
        { name: 'first', image: 'nginx' },
        { name: 'second', image: 'podlab/http' },
      ]),
    ],
  });
  const api = labApi(lab.rec);
  for (const p of (await api.list<Pod>('pods', { namespace: 'default' })).items) ip[p.metadata.name] = p.status!.podIP!;
});

test.after.always(async () => {
  await lab?.close();
});

async function exec(podName: string, argv: string[], stdin?: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await execInPod(lab.stateDir, podName, argv, {
    stdout: (s) => (out += s),
    stderr: (s) => (err += s),
    stdin: stdin ? Readable.from(stdin.map((s) => Buffer.from(s))) : undefined,
  });
  return { code, out, err };
}

test.serial('curl across nodes: podlab/http answers with its pod and node; /bytes/N; 404; -f gives exit 22', async (t) => {
  t.regex(ip.client, /^10\.244\.1\./);
  t.regex(ip.web, /^10\.244\.2\./);
  const root = await exec('client', ['curl', '-s', `http://${ip.web}/`]);
  t.is(root.code, 0, root.err);
  t.is(root.out, 'web on node-2\n');

  const verbose = await exec('client', ['curl', '-v', `http://${ip.web}/`]);
  t.regex(verbose.err, /\* Connected to 10\.244\.2\.\d+ \(10\.244\.2\.\d+\) port 80/);
  t.regex(verbose.err, /< HTTP\/1\.1 200 OK/);
  t.regex(verbose.err, /< Server: podlab-http\/0\.1/);
  t.regex(verbose.err, /< Content-Length: 14/);
  t.regex(verbose.err, /< Connection: keep-alive/);

  const bytes = await exec('client', ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code} %{size_download} %{remote_ip}:%{remote_port}\\n', `http://${ip.web}/bytes/3000000`]);
  t.is(bytes.code, 0, bytes.err);
  t.is(bytes.out, `200 3000000 ${ip.web}:80\n`);

  const body = await exec('client', ['curl', '-s', `http://${ip.web}/bytes/100`]);
  t.is(body.out.length, 100);
  t.true(body.out.startsWith('podlab-http-bytes:'));

  const missing = await exec('client', ['curl', '-s', '-w', '%{http_code}', `http://${ip.web}/nope`]);
  t.is(missing.code, 0);
  t.is(missing.out, '404 Not Found\n404');
  const failing = await exec('client', ['curl', '-sSf', `http://${ip.web}/nope`]);
  t.is(failing.code, 22);
  t.is(failing.out, '');
  t.is(failing.err, 'curl: (22) The requested URL returned error: 404\n');

  const echoText = await exec('client', ['curl', '-s', `http://${ip.web}:5678/anything`]);
  t.is(echoText.out, 'hello from the sidecar\n');
});

test.serial('curl exit codes: 7 for a closed port (RST), 28 when -m expires, 6 for a name, 23 for -o FILE', async (t) => {
  const refused = await exec('client', ['curl', `http://${ip.web}:81/`]);
  t.is(refused.code, 7);
  t.regex(refused.err, /^curl: \(7\) Failed to connect to 10\.244\.2\.\d+ port 81 after \d+ ms: Couldn't connect to server\n$/);

  const slow = await exec('client', ['curl', '-s', '-S', '-m', '0.3', '-o', '/dev/null', `http://${ip.web}/bytes/1000000000`]);
  t.is(slow.code, 28);
  t.regex(slow.err, /curl: \(28\) Operation timed out after \d+ milliseconds with \d+ bytes received/);

  t.is((await exec('client', ['curl', '-s', 'http://web/'])).code, 6);
  const file = await exec('client', ['curl', '-o', '/tmp/x', `http://${ip.web}/`]);
  t.is(file.code, 23);
  t.regex(file.err, /no filesystem/);
});

test.serial('containers of one pod reach each other on localhost and 127.0.0.1 (shared namespace)', async (t) => {
  const viaLo = await exec('web', ['curl', '-s', 'http://localhost:5678/']);
  t.is(viaLo.code, 0, viaLo.err);
  t.is(viaLo.out, 'hello from the sidecar\n');
  const http = await exec('web', ['curl', '-s', 'http://127.0.0.1/']);
  t.is(http.out, 'web on node-2\n');
  const own = await exec('web', ['curl', '-s', `http://${ip.web}:5678/`]);
  t.is(own.out, 'hello from the sidecar\n');
  const ps = await exec('web', ['ps']);
  t.regex(ps.out, /http\s+image=docker\.io\/podlab\/http:0\.1\s+app=podlab\/http\s+running, listening on tcp 0\.0\.0\.0:80/);
  t.regex(ps.out, /sidecar\s+image=hashicorp\/http-echo:1\.0\s+app=hashicorp\/http-echo\s+running, listening on tcp 0\.0\.0\.0:5678/);
  t.regex(ps.out, /tools\s+image=busybox\s+app=\(none\)/);
});

test.serial('two containers binding one port: the second fails with EADDRINUSE in the pod status; the pod still serves and exec works', async (t) => {
  const api = labApi(lab.rec);
  const p = await api.get<Pod>('pods', 'clash', 'default');
  const statuses = (p?.status as { containerStatuses?: { name: string; ready: boolean; state: Record<string, { reason?: string; message?: string }> }[] })?.containerStatuses ?? [];
  const first = statuses.find((s) => s.name === 'first');
  const second = statuses.find((s) => s.name === 'second');
  t.true(first?.ready);
  t.false(second?.ready);
  t.is(second?.state.waiting?.reason, 'CrashLoopBackOff');
  t.is(second?.state.waiting?.message, 'listen EADDRINUSE :::80');
  const ps = await exec('clash', ['ps']);
  t.regex(ps.out, /second\s+image=podlab\/http\s+app=podlab\/http\s+FAILED: listen EADDRINUSE :::80/);
  const host = await exec('clash', ['hostname']);
  t.is(host.out, 'clash\n');
  const served = await exec('client', ['curl', '-s', `http://${ip.clash}/`]);
  // The first container (nginx) holds port 80: nginx's welcome page answers.
  t.regex(served.out, /<title>Welcome to nginx!<\/title>/);
});

test.serial('nc: stdin is forwarded to the pod; echo across nodes over TCP and UDP; -z and -v', async (t) => {
  const tcp = await exec('client', ['nc', ip.echo, '7'], ['hello, ', 'echo\n', 'second line\n']);
  t.is(tcp.code, 0, tcp.err);
  t.is(tcp.out, 'hello, echo\nsecond line\n');
  const udp = await exec('client', ['nc', '-u', '-w', '0.5', ip.echo, '7'], ['datagram one\n']);
  t.is(udp.code, 0, udp.err);
  t.is(udp.out, 'datagram one\n');
  const open = await exec('client', ['nc', '-zv', ip.web, '80']);
  t.is(open.code, 0);
  t.is(open.err, `Connection to ${ip.web} 80 port [tcp/*] succeeded!\n`);
  const closed = await exec('client', ['nc', '-z', ip.web, '81']);
  t.is(closed.code, 1);
  t.is(closed.err, `nc: connect to ${ip.web} port 81 (tcp) failed: Connection refused\n`);
  // Without stdin, nc sees EOF at once, half-closes, and still prints what comes back.
  const http = await exec('client', ['nc', ip.web, '80'], ['GET / HTTP/1.0\r\n\r\n']);
  t.regex(http.out, /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nweb on node-2\n$/);
  const sink = await exec('client', ['nc', ip.sink, '9000'], ['x'.repeat(10_000)]);
  t.is(sink.code, 0);
  const ps = await exec('sink', ['ps']);
  t.regex(ps.out, /bytes=10000/);
});

test.serial('the podlab CLI forwards a piped stdin to the command (exec ... -- nc), and exits when it is done', async (t) => {
  const child = spawn(process.execPath, [path.join(ROOT, 'bin/podlab.js'), '--state-dir', lab.stateDir, 'exec', 'client', '--', 'nc', ip.echo, '7'], {
    cwd: ROOT,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  child.stdin.write('line one\n');
  setTimeout(() => child.stdin.end('line two\n'), 200);
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  t.is(code, 0, err);
  t.is(out, 'line one\nline two\n');
});

test.serial('transfer 5 MB across nodes to podlab/echo: SHA-256 verified', async (t) => {
  const r = await exec('client', ['transfer', '--bytes', '5M', '--seed', '7', `${ip.echo}:7`]);
  t.is(r.code, 0, r.out + r.err);
  t.regex(r.out, /sent {5}5242880 bytes {2}sha256 ([0-9a-f]{64})\nreceived 5242880 bytes {2}sha256 \1\n/);
  t.regex(r.out, /\nverified\n$/);
  t.log(r.out.split('\n').filter((l) => /duration|tcp:/.test(l)).join('\n'));
});

test.serial('transfer 5 MB with 5% loss and 5% reordering on the underlay between the nodes (both ways): completes, verified', async (t) => {
  const spec = { loss: 0.05, reorder: 0.05 };
  await callNode(lab.stateDir, 'node-1', 'impair.set', { peer: 'node-2', spec });
  await callNode(lab.stateDir, 'node-2', 'impair.set', { peer: 'node-1', spec });
  try {
    const r = await exec('client', ['transfer', '--bytes', '5M', '--seed', '11', `${ip.echo}:7`]);
    t.is(r.code, 0, r.out + r.err);
    t.regex(r.out, /\nverified\n$/);
    const m = /tcp: \d+ segments out, (\d+) retransmitted/.exec(r.out);
    t.true(Number(m?.[1]) > 50, 'the loss was real: the sender retransmitted');
    const stats = await callNode<{ impairments: Record<string, { stats: { lost: number; reordered: number } }> }>(lab.stateDir, 'node-1', 'stats', {});
    const imp = Object.values(stats.impairments)[0];
    t.true(imp.stats.lost > 100 && imp.stats.reordered > 100, JSON.stringify(imp.stats));
    t.log(r.out.split('\n').filter((l) => /duration|tcp:/.test(l)).join('\n'));
    t.log(`node-1 -> node-2 impairment: ${JSON.stringify(imp.stats)}`);
  } finally {
    await callNode(lab.stateDir, 'node-1', 'impair.clear', {});
    await callNode(lab.stateDir, 'node-2', 'impair.clear', {});
  }
});

test.serial('ss shows the pod sockets: LISTEN on the app ports, TIME-WAIT after curl', async (t) => {
  await exec('client', ['curl', '-s', `http://${ip.web}/`]);
  const ss = await exec('client', ['ss', '-tan']);
  t.regex(ss.out, /^State\s+Recv-Q\s+Send-Q\s+Local Address:Port\s+Peer Address:Port\n/);
  t.regex(ss.out, new RegExp(`TIME-WAIT\\s+0\\s+0\\s+${ip.client.replace(/\./g, '\\.')}:\\d+\\s+${ip.web.replace(/\./g, '\\.')}:80`));
  const web = await exec('web', ['ss', '-tln']);
  t.regex(web.out, /LISTEN\s+0\s+128\s+0\.0\.0\.0:80\s/);
  t.regex(web.out, /LISTEN\s+0\s+128\s+0\.0\.0\.0:5678\s/);
});

test.serial('a deleted pod with no app of its own takes its connections with it: the sink across nodes sees them go', async (t) => {
  const api = labApi(lab.rec);
  await api.create('pods', pod('leaver', 'node-1', [{ name: 'sh', image: 'busybox' }]).obj, 'default');
  const leaverIp = await eventually(async () => (await api.get<Pod>('pods', 'leaver', 'default'))?.status?.podIP, 30_000);
  const toSink = new RegExp(`ESTAB\\s+\\d+\\s+\\d+\\s+${ip.sink.replace(/\./g, '\\.')}:9000\\s+${leaverIp.replace(/\./g, '\\.')}:\\d+`);
  // A long one-way transfer from the pod (an exec'd tool, not a container's app) to the sink on the other node.
  const running = exec('leaver', ['transfer', '--discard', '--bytes', '2G', `${ip.sink}:9000`]).catch((e: unknown) => ({ code: -1, out: '', err: String(e) }));
  await eventually(async () => toSink.test((await exec('sink', ['ss', '-tn'])).out), 10_000, 100);
  const t0 = performance.now();
  await api.delete('pods', 'leaver', 'default');
  // The namespace goes, and its sockets with it, as the kernel closes a killed process's: the peer is told
  // (a reset), rather than holding an established connection to an address that no longer answers.
  await eventually(async () => !toSink.test((await exec('sink', ['ss', '-tn'])).out), 10_000, 100);
  t.log(`the sink's connection from the deleted pod went ${(performance.now() - t0).toFixed(0)} ms after the delete`);
  const r = await running;
  t.not(r.code, 0, 'the transfer did not complete');
});
