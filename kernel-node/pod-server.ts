/**
 * The server of a kernel pod whose image is `nginx` or `podlab/http`: a real
 * HTTP server on the Linux kernel's TCP, run by the kernel node agent inside
 * the pod's network namespace (`ip netns exec <pod ns> node ... pod-server.ts`),
 * answering as the emulated pods' built-in app does (node-agent/apps/http.ts):
 *   GET /          -> "POD on NODE"
 *   GET /healthz   -> ok
 *   GET /bytes/N   -> N bytes of the same repeating pattern
 *
 *   node --import tsx kernel-node/pod-server.ts --pod web --node knode-1 --port 80 --state-dir DIR
 *
 * --state-dir only marks the process as the lab's (common/recorded-process.ts).
 * Prints `{"event":"listening","port":N}` once bound, or `{"event":"error"}` and exits 1.
 */
import http from 'node:http';
import { parseArgs } from 'node:util';
import { MAX_BYTES, bytesChunk } from '../node-agent/apps/http.ts';

const { values: v } = parseArgs({ options: { pod: { type: 'string' }, node: { type: 'string' }, port: { type: 'string', default: '80' }, 'state-dir': { type: 'string' } } });
const port = Number(v.port);

const server = http.createServer((req, res) => {
  res.setHeader('Server', 'nginx/1.25.3 (podlab kernel pod)');
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { Allow: 'GET, HEAD' }).end('405 Method Not Allowed\n');
    return;
  }
  const path = (req.url ?? '/').split('?')[0];
  if (path === '/') return void res.writeHead(200, { 'Content-Type': 'text/plain' }).end(`${v.pod} on ${v.node}\n`);
  if (path === '/healthz') return void res.writeHead(200).end('ok\n');
  const m = /^\/bytes\/(\d{1,10})$/.exec(path);
  if (m && Number(m[1]) <= MAX_BYTES) {
    let left = Number(m[1]);
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': left });
    let off = 0;
    const pump = () => {
      while (left > 0) {
        const chunk = bytesChunk(off, Math.min(left, 16384));
        off += chunk.length;
        left -= chunk.length;
        if (!res.write(chunk)) return void res.once('drain', pump);
      }
      res.end();
    };
    return pump();
  }
  res.writeHead(404).end('404 Not Found\n');
});
server.on('error', (e) => {
  process.stdout.write(`${JSON.stringify({ event: 'error', error: e.message })}\n`);
  process.exit(1);
});
server.listen(port, '0.0.0.0', () => process.stdout.write(`${JSON.stringify({ event: 'listening', port })}\n`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
