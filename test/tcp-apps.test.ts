/**
 * Built-in apps and pod commands on one node's data plane, in process (pods
 * on one cni0 bridge, no sockets): image normalisation, Go-style flags, the
 * HTTP server (keep-alive, pipelining, HTTP/1.0, HEAD, 404/405/400,
 * /bytes/N), TCP and UDP echo, the sink's counters, a port clash between
 * containers, stopping apps, and curl / nc / transfer / ss / ps against them.
 */
import { createHash } from 'node:crypto';
import test from 'ava';
import { monotonicClock } from '../common/clock.ts';
import { SeededRng } from '../common/rng.ts';
import { containerStateOverride, podApps, startPodApps, stopPodApps } from '../apps/index.ts';
import { normaliseImage } from '../apps/image.ts';
import { NGINX_DEFAULT_VERSION, bytesChunk, nginxHandler, nginxVersion, parseGoFlags } from '../apps/http.ts';
import { NodeDataPlane } from '../node-agent/dataplane.ts';
import { podCommands } from '../pod-tools/index.ts';
import { StreamGenerator } from '../pod-tools/transfer.ts';
import type { PodNet } from '../netstack/pod-net.ts';
import { StdinQueue } from '../node-agent/stdin-queue.ts';
import { TcpError } from '../netstack/tcp/errors.ts';
import { UdpSocket } from '../netstack/tcp/udp-socket.ts';

function makeNode(): NodeDataPlane {
  // Never started: pods on one bridge need no underlay socket.
  return new NodeDataPlane({
    name: 'node-1',
    ip: '127.0.94.11',
    underlayCidr: '127.0.94.0/24',
    podCIDR: '10.244.1.0/24',
    vtepMac: '02:00:00:00:94:01',
    clusterCidr: '10.244.0.0/16',
    vxlanPort: 8472,
    vni: 1,
    seed: 5,
    mtu: 1500,
    clock: monotonicClock,
    rng: new SeededRng(5),
  });
}

const node = makeNode();
const client = node.addPod({ namespace: 'default', name: 'client', uid: 'uid-client', ip: '10.244.1.2' });
const server = node.addPod({ namespace: 'default', name: 'server', uid: 'uid-server', ip: '10.244.1.3' });
startPodApps(
  server,
  [
    { name: 'web', image: 'podlab/http' },
    { name: 'site', image: 'nginx:1.14.2', ports: [{ containerPort: 8090 }] },
    { name: 'alt', image: 'podlab/http', ports: [{ containerPort: 8080 }, { containerPort: 8081 }] },
    { name: 'greeter', image: 'hashicorp/http-echo', args: ['-text', 'hi there', '--listen=:5678'] },
    { name: 'echo', image: 'podlab/echo', ports: [{ containerPort: 7 }, { containerPort: 7, protocol: 'UDP' }] },
    { name: 'sink', image: 'podlab/sink' },
    { name: 'oneway', image: 'podlab/sink', ports: [{ containerPort: 19 }] },
    { name: 'sleeper', image: 'busybox' },
  ],
  { podName: 'server', nodeName: 'node-1' },
);

async function run(pod: PodNet, argv: string[], stdin?: AsyncIterable<Buffer>): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await podCommands[argv[0]]({
    pod,
    argv,
    stdout: (s) => (out += s),
    stderr: (s) => (err += s),
    signal: new AbortController().signal,
    clock: monotonicClock,
    rng: new SeededRng(1),
    stdin,
  });
  return { code, out, err };
}

/** Sends raw bytes over one TCP connection and collects everything until the server closes. */
function raw(pod: PodNet, host: string, port: number, data: string, opts: { endAfterWrite?: boolean } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = pod.tcp.connect({ host, port, allowHalfOpen: true });
    let got = '';
    s.on('connect', () => {
      s.write(data);
      if (opts.endAfterWrite) s.end();
    });
    s.on('data', (d) => (got += d.toString('latin1')));
    s.on('end', () => {
      s.end();
      resolve(got);
    });
    s.on('error', reject);
  });
}

test('image names are normalised: registry, library/, tag and digest removed', (t) => {
  const cases: [string, string][] = [
    ['nginx', 'nginx'],
    ['nginx:latest', 'nginx'],
    ['docker.io/library/nginx:1.25', 'nginx'],
    ['library/nginx', 'nginx'],
    ['registry.k8s.io/podlab/http:v1', 'podlab/http'],
    ['localhost:5000/podlab/echo:dev', 'podlab/echo'],
    ['ghcr.io/podlab/sink@sha256:0123abcd', 'podlab/sink'],
    ['hashicorp/http-echo:1.0', 'hashicorp/http-echo'],
    ['Docker.IO/Library/NGINX:Alpine', 'nginx'],
    ['busybox:1.36', 'busybox'],
  ];
  for (const [image, want] of cases) t.is(normaliseImage(image), want, image);
});

test('Go flag parsing for http-echo arguments', (t) => {
  const f = parseGoFlags(['-text=hello world', '--listen=:8080', '-status-code', '201', '-v']);
  t.is(f.get('text'), 'hello world');
  t.is(f.get('listen'), ':8080');
  t.is(f.get('status-code'), '201');
  t.is(f.get('v'), 'true');
});

test('HTTP: keep-alive serves two requests on one connection; pipelined requests answered in order; HTTP/1.0 closes', async (t) => {
  const two = await raw(client, server.ip, 80, 'GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  const responses = two.split(/(?=HTTP\/1\.1 )/);
  t.is(responses.length, 2);
  t.regex(responses[0], /^HTTP\/1\.1 200 OK\r\n/);
  t.regex(responses[0], /\r\nConnection: keep-alive\r\n/);
  t.regex(responses[0], /\r\nContent-Length: 17\r\n/);
  t.regex(responses[0], /\r\nServer: podlab-http\/0\.1\r\n/);
  t.regex(responses[0], /\r\n\r\nserver on node-1\n$/);
  t.regex(responses[1], /\r\nConnection: close\r\n\r\nok\n$/);
  const http10 = await raw(client, server.ip, 80, 'GET / HTTP/1.0\r\n\r\n');
  t.regex(http10, /^HTTP\/1\.1 200 OK\r\n[\s\S]*Connection: close\r\n\r\nserver on node-1\n$/);
});

test('nginx images serve nginx\'s welcome page and error pages, with the Server header of their tag', async (t) => {
  const page = await raw(client, server.ip, 8090, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  t.regex(page, /^HTTP\/1\.1 200 OK\r\n/);
  t.regex(page, /\r\nServer: nginx\/1\.14\.2\r\n/);
  t.regex(page, /\r\nContent-Type: text\/html\r\n/);
  // nginx 1.14's index.html, byte for byte (612 bytes: no color-scheme rule before 1.21.1).
  t.regex(page, /\r\nContent-Length: 612\r\n/);
  t.regex(page, /\r\n\r\n<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!<\/title>\n<style>\n {4}body \{\n {8}width: 35em;/);
  const missing = await raw(client, server.ip, 8090, 'GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n');
  t.regex(missing, /^HTTP\/1\.1 404 Not Found\r\n[\s\S]*<hr><center>nginx\/1\.14\.2<\/center>/);
  t.is(nginxVersion('nginx'), NGINX_DEFAULT_VERSION);
  // Today's page: 615 bytes, with the dark-mode rule.
  t.is((nginxHandler('1.27.3')({ method: 'GET', path: '/', target: '/', version: '1.1', headers: new Map(), remoteAddress: '', remotePort: 0, body: Buffer.alloc(0), length: 0, localPort: 80 }).body as string).length, 615);
  t.is(nginxVersion('docker.io/library/nginx:1.25-alpine'), '1.25');
  t.is(nginxVersion('registry.local:5000/nginx:latest'), NGINX_DEFAULT_VERSION);
});

test('HTTP: HEAD has headers only; 404, 405, 400; /bytes/N streams N bytes of the pattern', async (t) => {
  const head = await raw(client, server.ip, 8080, 'HEAD /bytes/5000 HTTP/1.1\r\nConnection: close\r\n\r\n');
  t.regex(head, /Content-Length: 5000\r\n/);
  t.true(head.endsWith('\r\n\r\n'));
  t.regex(await raw(client, server.ip, 8081, 'GET /missing HTTP/1.1\r\nConnection: close\r\n\r\n'), /^HTTP\/1\.1 404 Not Found\r\n/);
  const post = await raw(client, server.ip, 80, 'POST / HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc');
  t.regex(post, /^HTTP\/1\.1 405 Method Not Allowed\r\n[\s\S]*Allow: GET, HEAD\r\n/);
  t.regex(await raw(client, server.ip, 80, 'NONSENSE\r\n\r\n'), /^HTTP\/1\.1 400 Bad Request\r\n[\s\S]*Connection: close/);
  const big = await raw(client, server.ip, 80, 'GET /bytes/1000000 HTTP/1.1\r\nConnection: close\r\n\r\n');
  const body = big.slice(big.indexOf('\r\n\r\n') + 4);
  t.is(body.length, 1_000_000);
  t.is(body, Buffer.concat([bytesChunk(0, 65536), ...Array.from({ length: 15 }, (_, i) => bytesChunk((i + 1) * 65536, i === 14 ? 1_000_000 - 15 * 65536 : 65536))]).toString('latin1'));
});

test('http-echo answers its -text on -listen', async (t) => {
  const r = await raw(client, server.ip, 5678, 'GET /whatever HTTP/1.1\r\nConnection: close\r\n\r\n');
  t.regex(r, /X-App-Name: http-echo\r\n/);
  t.true(r.endsWith('\r\n\r\nhi there\n'));
});

test('TCP and UDP echo; the sink counts; a UDP socket cannot bind a taken port', async (t) => {
  t.is(await raw(client, server.ip, 7, 'echo me', { endAfterWrite: true }), 'echo me');
  const u = new UdpSocket(client.stack).bind(0);
  const reply = new Promise<string>((resolve) => u.on('message', (d, from) => resolve(`${d.toString()} from ${from.address}:${from.port}`)));
  u.send('ping over udp', 7, server.ip);
  t.is(await reply, `ping over udp from ${server.ip}:7`);
  u.close();
  t.is(await raw(client, server.ip, 9, 'x'.repeat(3000), { endAfterWrite: true }), '');
  const sink = podApps(server).find((a) => a.container === 'sink')!;
  t.is(sink.status?.counters.bytes, 3000);
  const e = t.throws(() => new UdpSocket(server.stack).bind(7), { instanceOf: TcpError });
  t.is((e).code, 'EADDRINUSE');
});

test('two containers on one port: the second fails with EADDRINUSE, the first serves; ps and the status override say so; stop frees the ports', async (t) => {
  const pod = node.addPod({ namespace: 'default', name: 'clash', uid: 'uid-clash', ip: '10.244.1.9' });
  const logs: string[] = [];
  startPodApps(pod, [{ name: 'a', image: 'nginx' }, { name: 'b', image: 'docker.io/library/nginx' }], { podName: 'clash', nodeName: 'node-1', log: (m, f) => logs.push(`${m} ${JSON.stringify(f)}`) });
  const apps = podApps(pod);
  t.is(apps[0].error, undefined);
  t.is(apps[1].error, 'listen EADDRINUSE :::80');
  t.true(logs.some((l) => l.startsWith('container app failed to start') && l.includes('EADDRINUSE')));
  t.deepEqual(containerStateOverride(pod, 'b'), { ready: false, started: false, state: { waiting: { reason: 'CrashLoopBackOff', message: 'listen EADDRINUSE :::80' } } });
  t.deepEqual(containerStateOverride(pod, 'a'), {});
  const ps = await run(pod, ['ps']);
  t.regex(ps.out, /^a {2}image=nginx {2}app=nginx {2}running, listening on tcp 0\.0\.0\.0:80\n/);
  t.regex(ps.out, /b {2}image=docker\.io\/library\/nginx {2}app=nginx {2}FAILED: listen EADDRINUSE :::80\n/);
  t.regex(await raw(client, pod.ip, 80, 'GET / HTTP/1.0\r\n\r\n'), /<title>Welcome to nginx!<\/title>/);
  stopPodApps(pod);
  const refused = await run(client, ['curl', '-sS', `http://${pod.ip}/`]);
  t.is(refused.code, 7);
  node.removePod(pod);
});

test('curl: -i includes headers, -I is HEAD, -w reports, -X sends the method', async (t) => {
  const i = await run(client, ['curl', '-si', `http://${server.ip}/`]);
  t.regex(i.out, /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nserver on node-1\n$/);
  const head = await run(client, ['curl', '-sI', `http://${server.ip}:8080/bytes/99`]);
  t.regex(head.out, /Content-Length: 99\r\nConnection: keep-alive\r\n\r\n$/);
  const w = await run(client, ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code} %{size_download} %{num_connects}', `http://${server.ip}/bytes/12345`]);
  t.is(w.out, '200 12345 1');
  const x = await run(client, ['curl', '-s', '-X', 'DELETE', '-w', ' %{http_code}', `http://${server.ip}/`]);
  t.is(x.out, '405 Method Not Allowed\n 405');
  const report = await run(client, ['curl', '-o', '/dev/null', `http://${server.ip}/bytes/2048`]);
  t.regex(report.err, /^curl: 2048 bytes received \(HTTP 200\) in [\d.]+ s, .*; body discarded \(-o \/dev\/null\)\n$/);
  t.is((await run(client, ['curl', 'https://10.244.1.3/'])).code, 1);
  t.is((await run(client, ['curl', 'http://10.244.1.3:99999/'])).code, 3);
});

test('nc -l in one pod, nc with stdin in another: bytes cross both ways; the listener exits when the client closes', async (t) => {
  const serverIn = new StdinQueue();
  const listening = run(server, ['nc', '-l', '4000'], serverIn);
  await new Promise((r) => setTimeout(r, 20));
  const clientIn = new StdinQueue();
  const talking = run(client, ['nc', server.ip, '4000'], clientIn);
  clientIn.push(Buffer.from('hello from the client\n'));
  await new Promise((r) => setTimeout(r, 50));
  serverIn.push(Buffer.from('hello from the server\n'));
  await new Promise((r) => setTimeout(r, 50));
  clientIn.end();
  serverIn.end();
  const [srv, cli] = await Promise.all([listening, talking]);
  t.is(srv.code, 0);
  t.is(srv.out, 'hello from the client\n');
  t.is(cli.code, 0);
  t.is(cli.out, 'hello from the server\n');
});

test('udp listen --echo -q echoes every datagram of udp bench and prints only the count when it ends', async (t) => {
  const n = 200;
  const listening = run(server, ['udp', 'listen', '4001', '--echo', '-q', '-n', String(n)]);
  await new Promise((r) => setTimeout(r, 20));
  const bench = await run(client, ['udp', 'bench', server.ip, '4001', '-n', String(n), '-W', '8']);
  t.is(bench.code, 0);
  const result = JSON.parse(bench.out) as { sent: number; received: number };
  t.is(result.sent, n);
  t.is(result.received, n);
  const srv = await listening;
  t.is(srv.code, 0);
  t.is(srv.out, `listening on ${server.ip}:4001/udp\n${n} datagrams received\n`);
});

test('transfer: a verified echo; the seeded stream is reproducible; a bad target fails cleanly', async (t) => {
  const r = await run(client, ['transfer', '--bytes', '2M', '--seed', '42', `${server.ip}:7`]);
  t.is(r.code, 0, r.out + r.err);
  t.regex(r.out, /^transfer: 2097152 bytes to 10\.244\.1\.3:7 and back \(seed 42\)\n/);
  t.regex(r.out, /sent {5}2097152 bytes {2}sha256 ([0-9a-f]{64})\nreceived 2097152 bytes {2}sha256 \1\n/);
  t.regex(r.out, /throughput [\d.]+ [kMG]?bit\/s each way/);
  t.true(r.out.endsWith('verified\n'));
  t.deepEqual(new StreamGenerator(42).fill(64), new StreamGenerator(42).fill(64));
  t.notDeepEqual(new StreamGenerator(42).fill(64), new StreamGenerator(43).fill(64));
  // The stream's bytes are pinned (the same seed sends the same bytes across versions), whether a
  // chunk is its own buffer or a slice of Node's pool at any offset.
  const g = new StreamGenerator(42);
  const h16 = (b: Buffer) => createHash('sha256').update(b).digest('hex').slice(0, 16);
  t.deepEqual([h16(g.fill(65536)), h16(g.fill(1001)), h16(g.fill(8)), h16(g.fill(65536))], ['1208102d45793f01', '7688e289153eeb2e', '1b4754d4facd98c4', '8ff6bdd24e12949e']);
  const refused = await run(client, ['transfer', '--bytes', '1k', `${server.ip}:6`]);
  t.is(refused.code, 1);
  t.regex(refused.err, /^transfer: connect ECONNREFUSED 10\.244\.1\.3:6 \(Connection refused\)/);
  // The sink discards instead of echoing: nothing comes back, so the check fails loudly.
  const sunk = await run(client, ['transfer', '--bytes', '10k', `${server.ip}:9`]);
  t.is(sunk.code, 1);
  t.regex(sunk.out, /CORRUPTED \(expected 10240 bytes back, got 0\)\n$/);
});

test('transfer --discard: one-way to the sink, which counts every byte; an echo sending back fails it', async (t) => {
  const before = sinkBytes();
  const r = await run(client, ['transfer', '--discard', '--bytes', '3M', '--seed', '7', `${server.ip}:19`]);
  t.is(r.code, 0, r.out + r.err);
  t.regex(r.out, /^transfer: 3145728 bytes to 10\.244\.1\.3:19, discarded there \(seed 7\)\n/);
  t.regex(r.out, /throughput [\d.]+ [kMG]?bit\/s one way\n/);
  t.true(r.out.endsWith('delivered\n'));
  t.is(sinkBytes() - before, 3 * 1024 * 1024);
  const echoed = await run(client, ['transfer', '--discard', '--bytes', '10k', `${server.ip}:7`]);
  t.is(echoed.code, 1);
  t.regex(echoed.out, /UNEXPECTED: a discard service sent 10240 bytes back\n$/);
});

function sinkBytes(): number {
  const sink = podApps(server).find((a) => a.container === 'oneway');
  return (sink?.status?.counters as { bytes: number } | undefined)?.bytes ?? NaN;
}

test('ss lists listeners and connections with TCP details', async (t) => {
  const ss = await run(server, ['ss', '-tln']);
  for (const p of [7, 9, 80, 5678, 8080, 8081]) t.regex(ss.out, new RegExp(`LISTEN\\s+0\\s+128\\s+0\\.0\\.0\\.0:${p}\\s`));
  await run(client, ['curl', '-s', `http://${server.ip}/`]);
  const info = await run(client, ['ss', '-tani']);
  t.regex(info.out, /TIME-WAIT|FIN-WAIT|ESTAB/);
  t.regex(info.out, /newreno wscale:3,3 rto:\d+ rtt:[\d.]+\/[\d.]+ mss:1410 rcvmss:1410 cwnd:\d+/);
});

test.after.always(() => {
  stopPodApps(server);
});
