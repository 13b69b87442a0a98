/**
 * `nginx`: nginx's own default server, as the image ships it: the "Welcome to
 * nginx!" page on `/` and `/index.html`, nginx's 404 and 405 pages elsewhere,
 * and a `Server: nginx/VERSION` header of the image's tag (`nginx:1.14.2` ->
 * nginx/1.14.2; `nginx`, `nginx:latest`, `nginx:alpine` -> nginx/1.27.3).
 *
 * `podlab/http`: podlab's informative server on each TCP containerPort
 * (default 80). `GET /` answers who served it (`pod-2a on node-2`), `GET
 * /bytes/N` sends N bytes (a repeating pattern, streamed), `GET /healthz`
 * says `ok`, `/ip` the client address it sees, `/headers` the request
 * headers it received; other paths are 404, other methods 405. Use it behind a Service
 * to see which endpoint answered.
 *
 * `hashicorp/http-echo`: answers its `-text` argument on every path (and
 * `{"status":"ok"}` on /health), listening on `-listen` (default :5678), with
 * arguments parsed as Go's flag package does (`-text=x`, `-text x`, `--text=x`).
 */
import type { Container } from '../control-plane/types.ts';
import type { PodNet } from '../netstack/pod-net.ts';
import { normaliseImage } from './image.ts';
import { serveHttp, type HttpRequest, type HttpResponse } from './http-server.ts';
import { portsOf, type AppContext, type AppInstance, type BuiltinApp } from './types.ts';
import { isoUtc } from '../common/utc-time.ts';

/** Largest body /bytes/N serves: 1 GiB. */
export const MAX_BYTES = 1 << 30;

const LINE = 'podlab-http-bytes:0123456789abcdefghijklmnopqrstuvwxyz\n';
const PATTERN = Buffer.from(LINE.repeat(1300)); // > 64 KiB

/** `len` bytes of the repeating /bytes pattern starting at stream offset `off` (the same stream however it is cut). */
export function bytesChunk(off: number, len: number): Buffer {
  const period = LINE.length;
  const start = off % period;
  return PATTERN.subarray(start, start + len);
}

/** podlab/http's routes; kernel pods' real server answers through the same handler (kernel-node/pod-server.ts). */
export function httpHandler(ctx: Pick<AppContext, 'podName' | 'nodeName'>): (req: HttpRequest) => HttpResponse {
  return (req): HttpResponse => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return { status: 405, headers: { Allow: 'GET, HEAD' }, body: '405 Method Not Allowed\n' };
    if (req.path === '/') return { status: 200, body: `${ctx.podName} on ${ctx.nodeName}\n` };
    if (req.path === '/healthz') return { status: 200, body: 'ok\n' };
    // The client address this pod sees (after any SNAT on the way), as httpbin's /ip answers it.
    if (req.path === '/ip') return { status: 200, body: `${req.remoteAddress}\n` };
    // The request's headers as this pod received them (httpbin's /headers, as text): what a proxy in between added.
    if (req.path === '/headers') return { status: 200, body: [...req.headers].map(([k, v]) => `${k}: ${v}\n`).join('') };
    const m = /^\/bytes\/(\d{1,10})$/.exec(req.path);
    if (m && Number(m[1]) <= MAX_BYTES) {
      const n = Number(m[1]);
      return { status: 200, headers: { 'Content-Type': 'application/octet-stream' }, body: { length: n, chunk: bytesChunk } };
    }
    return { status: 404, body: '404 Not Found\n' };
  };
}

/** nginx's error-log (and Go's log package) timestamp: `2026/12/04 12:00:00`. */
function errorLogTime(d: Date): string {
  return isoUtc(d.getTime(), 0).slice(0, 19).replace('T', ' ').replace(/-/g, '/');
}

/** The nginx version an image tag names; untagged and non-version tags get the stable release current at this build. */
export const NGINX_DEFAULT_VERSION = '1.27.3';

export function nginxVersion(image: string): string {
  const name = image.split('@')[0];
  const slash = name.lastIndexOf('/');
  const colon = name.lastIndexOf(':');
  const tag = colon > slash ? name.slice(colon + 1) : '';
  return /^\d+\.\d+(\.\d+)?/.exec(tag)?.[0] ?? NGINX_DEFAULT_VERSION;
}

/** nginx's index.html for a version: 615 bytes since the dark-mode rule (1.21.1), 612 before it. */
function welcomePage(version: string): string {
  const [maj, min, patch] = version.split('.').map(Number);
  const style =
    maj > 1 || min > 21 || (min === 21 && (patch ?? 0) >= 1)
      ? 'html { color-scheme: light dark; }\nbody { width: 35em; margin: 0 auto;\nfont-family: Tahoma, Verdana, Arial, sans-serif; }\n'
      : '    body {\n        width: 35em;\n        margin: 0 auto;\n        font-family: Tahoma, Verdana, Arial, sans-serif;\n    }\n';
  return `<!DOCTYPE html>
<html>
<head>
<title>Welcome to nginx!</title>
<style>
${style}</style>
</head>
<body>
<h1>Welcome to nginx!</h1>
<p>If you see this page, the nginx web server is successfully installed and
working. Further configuration is required.</p>

<p>For online documentation and support please refer to
<a href="http://nginx.org/">nginx.org</a>.<br/>
Commercial support is available at
<a href="http://nginx.com/">nginx.com</a>.</p>

<p><em>Thank you for using nginx.</em></p>
</body>
</html>
`;
}

/** nginx's built-in error page; `server` is its signature line (`nginx/1.27.3`, or `nginx` with server_tokens off). */
export function nginxErrorPage(status: number, text: string, version: string, server = `nginx/${version}`): string {
  return `<html>\r\n<head><title>${status} ${text}</title></head>\r\n<body>\r\n<center><h1>${status} ${text}</h1></center>\r\n<hr><center>${server}</center>\r\n</body>\r\n</html>\r\n`;
}

/** nginx's default server: the welcome page, and nginx's own error pages. */
export function nginxHandler(version: string): (req: HttpRequest) => HttpResponse {
  const html = { 'Content-Type': 'text/html' };
  const welcome = welcomePage(version);
  return (req): HttpResponse => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return { status: 405, headers: html, body: nginxErrorPage(405, 'Not Allowed', version) };
    if (req.path === '/' || req.path === '/index.html') return { status: 200, headers: { ...html, 'Accept-Ranges': 'bytes' }, body: welcome };
    return { status: 404, headers: html, body: nginxErrorPage(404, 'Not Found', version) };
  };
}

/** The handler and Server header a container's HTTP app answers with (emulated pods and kernel pods alike). */
export function httpServerFor(image: string, ctx: Pick<AppContext, 'podName' | 'nodeName'>): { handler: (req: HttpRequest) => HttpResponse; serverName: string } {
  if (normaliseImage(image) === 'nginx') {
    const version = nginxVersion(image);
    return { handler: nginxHandler(version), serverName: `nginx/${version}` };
  }
  return { handler: httpHandler(ctx), serverName: 'podlab-http/0.1' };
}

function startHttp(appName: string) {
  return (pod: PodNet, container: Container, ctx: AppContext): AppInstance => {
    const servers: ReturnType<typeof serveHttp>[] = [];
    const { handler, serverName } = httpServerFor(container.image ?? appName, ctx);
    try {
      for (const port of portsOf(container, 'TCP', [80])) servers.push(serveHttp(pod.tcp, port, handler, { serverName, clock: pod.opts.clock, accessLog: ctx.stdout }));
    } catch (e) {
      for (const s of servers) s.close();
      throw e;
    }
    // What the image prints as it starts (nginx's entrypoint and master process), then one access line per request.
    if (serverName.startsWith('nginx/')) {
      const at = errorLogTime(new Date());
      for (const l of ['/docker-entrypoint.sh: Configuration complete; ready for start up', `${at} [notice] 1#1: ${serverName}`, `${at} [notice] 1#1: start worker processes`]) ctx.stdout?.(l);
    } else ctx.stdout?.(`${serverName} serving ${ctx.podName} on ${servers.map((s) => `:${s.server.port}`).join(' ')}`);
    return {
      stop: () => servers.forEach((s) => s.close()),
      status: () => ({
        app: appName,
        listening: servers.map((s) => `tcp 0.0.0.0:${s.server.port}`),
        counters: {
          connections: servers.reduce((a, s) => a + s.stats.connections, 0),
          requests: servers.reduce((a, s) => a + s.stats.requests, 0),
          bytesOut: servers.reduce((a, s) => a + s.stats.bytesOut, 0),
        },
      }),
    };
  };
}

export const nginxApp: BuiltinApp = {
  name: 'nginx',
  description: "nginx's default server on each containerPort (default 80): the welcome page, Server: nginx/<tag>",
  start: startHttp('nginx'),
};

export const podlabHttpApp: BuiltinApp = {
  name: 'podlab/http',
  description: 'HTTP on each containerPort (default 80): / -> "POD on NODE" (which endpoint answered), /bytes/N, /healthz',
  start: startHttp('podlab/http'),
};

/** Go flag-package parsing of `-name=value`, `--name=value`, `-name value`. */
export function parseGoFlags(args: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    const m = /^--?([A-Za-z0-9_.-]+)(?:=(.*))?$/s.exec(args[i]);
    if (!m) continue;
    if (m[2] !== undefined) out.set(m[1], m[2]);
    else if (i + 1 < args.length && !args[i + 1].startsWith('-')) out.set(m[1], args[++i]);
    else out.set(m[1], 'true');
  }
  return out;
}

export const httpEchoApp: BuiltinApp = {
  name: 'hashicorp/http-echo',
  description: 'answers its -text argument on -listen (default :5678)',
  start(pod, container, ctx) {
    const flags = parseGoFlags([...(container.command ?? []).slice(1), ...(container.args ?? [])]);
    const text = flags.get('text') ?? 'hello-world';
    const listen = flags.get('listen') ?? ':5678';
    const port = Number(listen.slice(listen.lastIndexOf(':') + 1));
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`http-echo: invalid -listen '${listen}'`);
    const s = serveHttp(
      pod.tcp,
      port,
      (req): HttpResponse =>
        req.path === '/health'
          ? { status: 200, headers: { 'Content-Type': 'application/json' }, body: '{"status":"ok"}\n' }
          : { status: 200, headers: { 'X-App-Name': 'http-echo', 'X-App-Version': '1.0.0' }, body: `${text}\n` },
      { serverName: 'http-echo (podlab)', clock: pod.opts.clock, accessLog: ctx.stdout },
    );
    ctx.stdout?.(`${errorLogTime(new Date())} [INFO] server is listening on ${listen}`);
    return {
      stop: () => s.close(),
      status: () => ({ app: 'hashicorp/http-echo', listening: [`tcp 0.0.0.0:${port}`], counters: { ...s.stats } }),
    };
  },
};
