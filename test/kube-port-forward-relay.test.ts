/**
 * `kubectl port-forward` against the apiserver's pods/portforward relay,
 * without a lab: the real apiserver (in process, HTTPS on 127.0.36.10), a
 * node agent's real control server and port-forward handler on the socket
 * the apiserver looks for, over a real emulated pod (its own TCP stack,
 * nginx and podlab/http apps); the real kubectl and the real curl.
 *
 * Shown: both ways kubectl speaks (SPDY/3.1 after an HTTP upgrade, kubectl
 * 1.30's default; SPDY tunnelled in WebSocket binary messages, 1.31's default
 * and 1.30's with KUBECTL_PORT_FORWARD_WEBSOCKETS=true), sequential and
 * concurrent connections, 4 MB both ways byte-exact, the kubelet's error for
 * a closed port, the subresource's authorization, and the protocol's edges
 * (PING echo, streams the kubelet refuses, the stream creation timeout, a
 * malformed frame) with a hand-made SPDY client. And the apiserver exec client
 * behind `podlab exec --via-apiserver` against the real exec relay.
 */
import test from 'ava';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { monotonicClock } from '../common/clock.ts';
import { SeededRng } from '../common/rng.ts';
import { startPodApps } from '../apps/index.ts';
import { bytesChunk } from '../apps/http.ts';
import { startApiServer, type ApiServer } from '../control-plane/apiserver.ts';
import { controlSocketPath } from '../control-plane/node-control-protocol.ts';
import { NODES, PODS } from '../control-plane/resources.ts';
import { defaultPkiDir, writeNodeTokenFile } from '../control-plane/pki.ts';
import type { Pod } from '../control-plane/types.ts';
import { ControlServer } from '../node-agent/control-server.ts';
import { NodeDataPlane } from '../node-agent/dataplane.ts';
import { forwardPodPort } from '../node-agent/port-forward.ts';
import { EMPTY_STDIN } from '../node-agent/stdin-queue.ts';
import { podCommands } from '../pod-tools/index.ts';
import { execThroughApiserver } from '../control-plane/exec-client.ts';
import { adminCredentials } from '../control-plane/credentials.ts';
import { writeKubeconfig } from '../lab/launch.ts';
import { isWireError } from '../packet/errors.ts';
import { SpdyFlag, SpdyRstStatus, SpdyType, parseSpdyFrame, serializeSpdyFrame, type SpdyFrame, type SpdyHeaders } from '../packet/spdy.ts';
import { SpdyHeaderCompressor, SpdyHeaderDecompressor } from '../packet/spdy-headers.ts';
import { kubectl } from './helpers/kubectl.ts';
import { curl, kubectlPortForward } from './helpers/port-forward.ts';
import { eventually, hasTool, requireOrSkip } from './helpers/lab.ts';

const HOST = '127.0.36.10';
const LOCAL = '127.0.36.1';
const haveTools = hasTool('kubectl') && hasTool('curl');

let stateDir = '';
let api: ApiServer;
let agent: ControlServer;
const dp = new NodeDataPlane({
  name: 'node-1',
  ip: '127.0.36.11',
  underlayCidr: '127.0.36.0/24',
  podCIDR: '10.244.1.0/24',
  vtepMac: '02:00:00:00:36:01',
  clusterCidr: '10.244.0.0/16',
  vxlanPort: 8472,
  vni: 1,
  seed: 7,
  mtu: 1500,
  clock: monotonicClock,
  rng: new SeededRng(7),
});

function addPod(name: string, ip: string, containers: { name: string; image: string; ports?: { containerPort: number }[] }[]): void {
  const net = dp.addPod({ namespace: 'default', name, uid: `uid-${name}`, ip });
  startPodApps(net, containers, { podName: name, nodeName: 'node-1' });
  const created = api.store.create<Pod>(PODS, { apiVersion: 'v1', kind: 'Pod', metadata: { name, labels: { app: name } }, spec: { nodeName: 'node-1', containers } }, { namespace: 'default' });
  api.store.update(PODS, { ...created, status: { phase: 'Running', podIP: ip, podIPs: [{ ip }], conditions: [{ type: 'Ready', status: 'True' }] } }, { namespace: 'default', name, subresource: 'status' });
}

test.before(async () => {
  stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-pf-'));
  api = await startApiServer({ host: HOST, port: 0, stateDir });
  writeKubeconfig(stateDir, api.url);
  api.store.create(NODES, { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-1' } });
  addPod('web', '10.244.1.2', [{ name: 'nginx', image: 'nginx:1.14.2', ports: [{ containerPort: 80 }] }]);
  addPod('bytes', '10.244.1.3', [{ name: 'http', image: 'podlab/http', ports: [{ containerPort: 8080 }] }, { name: 'echo', image: 'podlab/echo', ports: [{ containerPort: 7 }] }]);
  const sock = controlSocketPath(stateDir, 'node-1');
  fs.mkdirSync(path.dirname(sock), { recursive: true });
  agent = new ControlServer(sock);
  agent.handle('pod.portforward', (params, ctx) => {
    const { pod, port } = params as { pod: string; port: number };
    const net = dp.pods.get(pod);
    if (!net) throw new Error(`pod ${pod} is not on node-1`);
    return forwardPodPort(net, port, ctx);
  });
  // The agent's exec, as NodeAgent runs it, for the apiserver exec client below.
  agent.handle('exec', async (params, ctx) => {
    const { pod, argv, stdin } = params as { pod: string; argv: string[]; stdin?: boolean };
    const net = dp.pods.get(pod)!;
    const exitCode = await podCommands[argv[0]]({ pod: net, argv, stdout: (x) => ctx.stdout(x), stderr: (x) => ctx.stderr(x), signal: ctx.signal, clock: monotonicClock, rng: new SeededRng(1), stdin: stdin ? ctx.stdin : EMPTY_STDIN });
    return { exitCode };
  });
  await agent.listen();
});

test.after.always(async () => {
  await agent?.close();
  await api?.close();
  if (stateDir) fs.rmSync(stateDir, { recursive: true, force: true });
});

const MODES = [
  { name: 'SPDY/3.1 upgrade (kubectl 1.30 default)', env: { KUBECTL_PORT_FORWARD_WEBSOCKETS: 'false' } },
  { name: 'SPDY tunnelled in a WebSocket', env: { KUBECTL_PORT_FORWARD_WEBSOCKETS: 'true' } },
];

for (const mode of MODES) {
  test.serial(`${mode.name}: the real curl gets nginx's page through kubectl port-forward, sequentially and concurrently`, async (t) => {
    if (!requireOrSkip(t, haveTools, 'kubectl and curl needed')) return;
    const pf = await kubectlPortForward(stateDir, 'pod/web', 80, { address: LOCAL, env: mode.env });
    t.teardown(() => pf.stop());
    const url = `http://${LOCAL}:${pf.port}/`;
    for (let i = 0; i < 3; i++) {
      const r = await curl(['-i', url]);
      t.is(r.code, 0, r.stderr + pf.stderr());
      t.regex(r.body.toString(), /^HTTP\/1\.1 200 OK\r\n/);
      t.regex(r.body.toString(), /Server: nginx\/1\.14\.2/);
      t.regex(r.body.toString(), /<h1>Welcome to nginx!<\/h1>/);
    }
    // One connection, several requests (keep-alive), then eight connections at once.
    const keep = await curl([url, `${url}index.html`, `${url}missing`, '-o', '/dev/null', '-o', '/dev/null', '-o', '/dev/null', '-w', '%{http_code} %{num_connects}\n']);
    t.is(keep.code, 0, keep.stderr);
    t.deepEqual(keep.body.toString().trim().split('\n'), ['200 1', '200 0', '404 0']);
    const many = await Promise.all(Array.from({ length: 8 }, () => curl(['-s', url])));
    for (const r of many) {
      t.is(r.code, 0, r.stderr);
      t.true(r.body.toString().includes('Welcome to nginx!'));
    }
    t.regex(pf.stdout(), /Handling connection for \d+/);
    t.is(pf.proc.exitCode, null, 'kubectl is still forwarding');
  });
}

test.serial('4 MB down and up through the tunnel arrive byte-exact: podlab/http /bytes and the echo app', async (t) => {
  if (!requireOrSkip(t, haveTools, 'kubectl and curl needed')) return;
  const pf = await kubectlPortForward(stateDir, 'pod/bytes', 8080, { address: LOCAL, env: { KUBECTL_PORT_FORWARD_WEBSOCKETS: 'true' } });
  t.teardown(() => pf.stop());
  const n = 4 * 1024 * 1024;
  const r = await curl([`http://${LOCAL}:${pf.port}/bytes/${n}`]);
  t.is(r.code, 0, r.stderr + pf.stderr());
  t.is(r.body.length, n);
  // The pattern is one stream however it is cut: build the expectation in other pieces than the server's.
  const want = createHash('sha256');
  for (let off = 0; off < n; off += 10_000) want.update(bytesChunk(off, Math.min(10_000, n - off)));
  t.is(createHash('sha256').update(r.body).digest('hex'), want.digest('hex'));

  // The echo app on port 7 sends back what it reads: the up direction and the half-close (nc -N).
  const echo = await kubectlPortForward(stateDir, 'pod/bytes', 7, { address: LOCAL });
  t.teardown(() => echo.stop());
  const payload = Buffer.alloc(n);
  for (let i = 0; i < n; i++) payload[i] = (i * 7919) & 0xff;
  const back = await new Promise<Buffer>((resolve, reject) => {
    const c = net.connect(echo.port, LOCAL, () => c.end(payload));
    const got: Buffer[] = [];
    c.on('data', (d: Buffer) => got.push(d));
    c.on('end', () => resolve(Buffer.concat(got)));
    c.on('error', reject);
  });
  t.is(back.length, n);
  t.true(back.equals(payload));
});

test.serial("a closed port: kubectl reports the kubelet's error and the client's connection closes", async (t) => {
  if (!requireOrSkip(t, haveTools, 'kubectl and curl needed')) return;
  const pf = await kubectlPortForward(stateDir, 'pod/web', 81, { address: LOCAL });
  t.teardown(() => pf.stop());
  const r = await curl([`http://${LOCAL}:${pf.port}/`]);
  t.not(r.code, 0);
  await eventually(() => /an error occurred forwarding \d+ -> 81: error forwarding port 81 to pod uid-web|failed to connect to localhost:81/.test(pf.stderr()) || undefined, 10_000, 100).catch(() => undefined);
  t.regex(pf.stderr(), /error forwarding port 81 to pod [^,]+, uid : failed to connect to localhost:81 inside namespace "default\/web", IPv4: dial tcp4 127\.0\.0\.1:81: connect: connection refused/);
});

test.serial('only identities allowed to create pods/portforward may forward; discovery lists the subresource', async (t) => {
  if (!requireOrSkip(t, haveTools, 'kubectl needed')) return;
  const token = fs.readFileSync(writeNodeTokenFile(defaultPkiDir(stateDir), 'node-1'), 'utf8').trim();
  const file = path.join(stateDir, 'node-1.kubeconfig');
  fs.writeFileSync(file, fs.readFileSync(path.join(stateDir, 'kubeconfig'), 'utf8').replace(/token: .*/, `token: ${token}`), { mode: 0o600 });
  t.is((await kubectl(stateDir, ['auth', 'can-i', 'create', 'pods', '--subresource=portforward'])).stdout.trim(), 'yes');
  t.is((await kubectl(stateDir, ['auth', 'can-i', 'create', 'pods', '--subresource=portforward'], { kubeconfig: file })).stdout.trim(), 'no');
  const raw = await kubectl(stateDir, ['get', '--raw', '/api/v1']);
  const names = (JSON.parse(raw.stdout) as { resources: { name: string }[] }).resources.map((r) => r.name);
  t.true(names.includes('pods/portforward') && names.includes('pods/exec') && names.includes('pods/log'));
});

/** A minimal SPDY client over the raw upgrade, for the protocol's edges. */
async function spdyClient(): Promise<{ send(f: SpdyFrame): void; syn(id: number, headers: SpdyHeaders, flags?: number): void; next(timeoutMs?: number): Promise<SpdyFrame | 'closed'>; headersOf(f: SpdyFrame | 'closed'): SpdyHeaders; raw(b: Buffer): void; close(): void }> {
  const { ca, adminToken } = { ca: fs.readFileSync(path.join(defaultPkiDir(stateDir), 'ca.crt'), 'utf8'), adminToken: fs.readFileSync(path.join(defaultPkiDir(stateDir), 'admin.token'), 'utf8').trim() };
  const url = new URL(api.url);
  const sock = tls.connect({ host: url.hostname, port: Number(url.port), ca, servername: url.hostname });
  await new Promise<void>((resolve, reject) => sock.once('secureConnect', resolve).once('error', reject));
  sock.write(`POST /api/v1/namespaces/default/pods/web/portforward HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${adminToken}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\nContent-Length: 0\r\n\r\n`);
  let buf = Buffer.alloc(0);
  let upgraded = false;
  const frames: (SpdyFrame | 'closed')[] = [];
  let wake: (() => void) | undefined;
  sock.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    if (!upgraded) {
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.subarray(0, end).toString();
      if (!head.startsWith('HTTP/1.1 101')) throw new Error(head);
      upgraded = true;
      buf = buf.subarray(end + 4);
    }
    for (;;) {
      const r = parseSpdyFrame(buf);
      if (isWireError(r)) throw r;
      if ('need' in r) break;
      frames.push(r.frame);
      buf = buf.subarray(r.length);
    }
    wake?.();
  });
  sock.on('close', () => {
    frames.push('closed');
    wake?.();
  });
  const deflate = new SpdyHeaderCompressor();
  const inflate = new SpdyHeaderDecompressor();
  const send = (f: SpdyFrame): void => void sock.write(serializeSpdyFrame(f));
  return {
    send,
    raw: (b) => void sock.write(b),
    syn: (id, headers, flags = 0) => send({ kind: 'syn_stream', flags, streamId: id, associatedTo: 0, priority: 0, slot: 0, headerBlock: deflate.compress(headers) }),
    async next(timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      while (!frames.length) {
        if (Date.now() > deadline) throw new Error('no frame in time');
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 50);
        });
      }
      return frames.shift()!;
    },
    headersOf: (f: SpdyFrame | 'closed') => {
      const h = inflate.decompress((f as { headerBlock: Buffer }).headerBlock);
      if (isWireError(h)) throw h;
      return h;
    },
    close: () => sock.destroy(),
  };
}

test.serial('the SPDY edges: PING echoed, bad streams reset, a lone stream times out with an error, a malformed frame gets GOAWAY', async (t) => {
  const c = await spdyClient();
  t.teardown(() => c.close());
  c.send({ kind: 'ping', flags: 0, id: 1 });
  t.deepEqual(await c.next(), { kind: 'ping', flags: 0, id: 1 });
  // No port header, then an unknown stream type: reset (CANCEL), as spdystream's Reset.
  c.syn(1, [['streamtype', 'data'], ['requestid', '0']]);
  t.like(await c.next(), { kind: 'rst_stream', streamId: 1, status: SpdyRstStatus.CANCEL });
  c.syn(3, [['streamtype', 'bogus'], ['port', '80'], ['requestid', '0']]);
  t.like(await c.next(), { kind: 'rst_stream', streamId: 3, status: SpdyRstStatus.CANCEL });
  // A full pair: SYN_REPLYs with empty headers, then an HTTP exchange on the data stream.
  c.syn(5, [['streamtype', 'error'], ['port', '80'], ['requestid', '1']], SpdyFlag.FIN);
  const r5 = await c.next();
  t.like(r5, { kind: 'syn_reply', streamId: 5 });
  t.deepEqual(c.headersOf(r5), []);
  c.syn(7, [['streamtype', 'data'], ['port', '80'], ['requestid', '1']]);
  t.like(await c.next(), { kind: 'syn_reply', streamId: 7 });
  c.send({ kind: 'data', streamId: 7, flags: SpdyFlag.FIN, data: Buffer.from('GET / HTTP/1.0\r\n\r\n') });
  let body = '';
  const fins = new Set<number>();
  while (fins.size < 2) {
    const f = await c.next();
    if (f === 'closed') break;
    if (f.kind === 'data') {
      if (f.streamId === 7) body += f.data.toString();
      if (f.streamId === 5) t.is(f.data.length, 0, 'nothing on the error stream');
      if (f.flags & SpdyFlag.FIN) fins.add(f.streamId);
    }
  }
  t.deepEqual([...fins].sort(), [5, 7]);
  t.regex(body, /^HTTP\/1\.1 200 OK[\s\S]*Welcome to nginx!/);
  // Streams must be odd and rising: an even one is refused with PROTOCOL_ERROR, the connection lives on.
  c.syn(8, [['streamtype', 'data'], ['port', '80'], ['requestid', '2']]);
  t.like(await c.next(), { kind: 'rst_stream', streamId: 8, status: SpdyRstStatus.PROTOCOL_ERROR });
  // Garbage where a frame should be: GOAWAY PROTOCOL_ERROR, then the connection closes.
  c.raw(Buffer.from([0x80, 0x07, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00]));
  t.like(await c.next(), { kind: 'goaway', status: 1 });
  t.is(await c.next(), 'closed');
});

test.serial('a pair whose second stream never comes is given up with an error after the stream creation timeout', async (t) => {
  // The relay's timeout is the kubelet's 30 s; this apiserver keeps it, so the test drives a session directly.
  const { SpdyServerSession } = await import('../control-plane/spdy-session.ts');
  const { PortForwardRelay } = await import('../control-plane/pod-port-forward.ts');
  const out: Buffer[] = [];
  const session = new SpdyServerSession({ write: (b) => (out.push(b), true), onDrain: () => {}, pause: () => {}, resume: () => {}, close: () => {} });
  const pod = api.store.get<Pod>(PODS, 'web', 'default');
  new PortForwardRelay(session, pod, { stateDir, getNode: () => undefined, streamCreationTimeoutMs: 100 });
  const deflate = new SpdyHeaderCompressor();
  session.feed(serializeSpdyFrame({ kind: 'syn_stream', flags: SpdyFlag.FIN, streamId: 1, associatedTo: 0, priority: 0, slot: 0, headerBlock: deflate.compress([['streamtype', 'error'], ['port', '80'], ['requestid', '9']]) }));
  await new Promise((r) => setTimeout(r, 300));
  let rest = Buffer.concat(out);
  const frames: SpdyFrame[] = [];
  for (;;) {
    const r = parseSpdyFrame(rest);
    if (isWireError(r) || 'need' in r) break;
    frames.push(r.frame);
    rest = rest.subarray(r.length);
  }
  t.deepEqual(frames.map((f) => f.kind), ['syn_reply', 'data', 'data']);
  t.is((frames[1] as { data: Buffer }).data.toString(), 'timed out waiting for streams for request 9');
  t.is(frames[2].flags, SpdyFlag.FIN);
  t.is(SpdyType.SYN_REPLY, 2);
  session.close();
});

test.serial("the apiserver exec client (podlab exec --via-apiserver): output, stdin and its v5 close, the exit code, refusals", async (t) => {
  const run = async (name: string, argv: string[], stdin?: string): Promise<{ code: number; out: string; err: string }> => {
    let out = '';
    let err = '';
    const input = stdin === undefined ? undefined : { [Symbol.asyncIterator]: () => [Buffer.from(stdin)][Symbol.iterator]() } as unknown as AsyncIterable<Uint8Array>;
    const code = await execThroughApiserver({ apiUrl: api.url, credentials: adminCredentials(stateDir, {}), namespace: 'default', name, argv, stdout: (x) => (out += x), stderr: (x) => (err += x), stdin: input });
    return { code, out, err };
  };
  t.deepEqual(await run('web', ['hostname']), { code: 0, out: 'web\n', err: '' });
  const nc = await run('web', ['nc', '10.244.1.3', '7'], 'echoed through pods/exec\n');
  t.deepEqual(nc, { code: 0, out: 'echoed through pods/exec\n', err: '' });
  const bad = await run('web', ['ip', 'bogus']);
  t.not(bad.code, 0);
  t.regex(bad.err, /Usage: ip/);
  await t.throwsAsync(run('nope', ['hostname']), { message: /404: pods "nope" not found/ });
  await t.throwsAsync(execThroughApiserver({ apiUrl: api.url, credentials: { ...adminCredentials(stateDir, {}), token: 'wrong' }, namespace: 'default', name: 'web', argv: ['hostname'], stdout: () => {}, stderr: () => {} }), { message: /401/ });
});
