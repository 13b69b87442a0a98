/**
 * The server of a kernel pod whose image is `nginx` or `podlab/http`: a real
 * HTTP server on the Linux kernel's TCP, run by the kernel node agent inside
 * the pod's network namespace (`ip netns exec <pod ns> node ... pod-server.ts`),
 * answering through the emulated pods' own handlers (apps/http.ts): nginx's
 * welcome page for nginx images; for podlab/http "POD on NODE" on /, ok on
 * /healthz and N bytes of the same repeating pattern on /bytes/N.
 *
 *   node --import tsx kernel-node/pod-server.ts --pod web --node knode-1 --port 80 --image nginx:1.25 --state-dir DIR
 *
 * --state-dir only marks the process as the lab's (common/recorded-process.ts).
 * Prints `{"event":"listening","port":N}` once bound, or `{"event":"error"}` and exits 1.
 */
import http from 'node:http';
import { parseArgs } from 'node:util';
import { httpServerFor } from '../apps/http.ts';

const { values: v } = parseArgs({ options: { pod: { type: 'string' }, node: { type: 'string' }, port: { type: 'string', default: '80' }, image: { type: 'string', default: 'podlab/http' }, 'state-dir': { type: 'string' } } });
const port = Number(v.port);
const { handler: handle, serverName } = httpServerFor(v.image, { podName: v.pod!, nodeName: v.node! });

const server = http.createServer((req, res) => {
  const target = req.url ?? '/';
  const out = handle({
    method: req.method ?? 'GET',
    target,
    path: target.split('?')[0],
    version: req.httpVersion === '1.0' ? '1.0' : '1.1',
    headers: new Map(Object.entries(req.headers).map(([k, val]) => [k, String(val)])),
    remoteAddress: req.socket.remoteAddress ?? '',
    remotePort: req.socket.remotePort ?? 0,
    // These apps read no body and log nothing per request here.
    body: Buffer.alloc(0),
    length: 0,
    localPort: req.socket.localPort ?? port,
  });
  res.setHeader('Server', serverName);
  const body = out.body;
  if (body === undefined || typeof body === 'string' || Buffer.isBuffer(body)) {
    res.writeHead(out.status, { 'Content-Type': 'text/plain', ...out.headers }).end(req.method === 'HEAD' ? undefined : body);
    return;
  }
  // A streamed body (/bytes/N): chunk by chunk, minding backpressure.
  res.writeHead(out.status, { ...out.headers, 'Content-Length': body.length });
  if (req.method === 'HEAD') return void res.end();
  let off = 0;
  const pump = () => {
    while (off < body.length) {
      const chunk = body.chunk(off, Math.min(body.length - off, 16384));
      off += chunk.length;
      if (!res.write(chunk)) return void res.once('drain', pump);
    }
    res.end();
  };
  pump();
});
server.on('error', (e) => {
  process.stdout.write(`${JSON.stringify({ event: 'error', error: e.message })}\n`);
  process.exit(1);
});
server.listen(port, '0.0.0.0', () => process.stdout.write(`${JSON.stringify({ event: 'listening', port })}\n`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
