/**
 * The request path of the ingress controller: route a request (routing.ts),
 * pick an endpoint round-robin, proxy it over the pod's TCP (upstream.ts)
 * with the headers ingress-nginx's nginx.tmpl sets, and write one access-log
 * line in ingress-nginx's default `log-format-upstream`:
 *
 *   $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
 *   "$http_referer" "$http_user_agent" $request_length $request_time
 *   [$proxy_upstream_name] [$proxy_alternative_upstream_name] $upstream_addr
 *   $upstream_response_length $upstream_response_time $upstream_status $req_id
 *
 * Answers of its own, as ingress-nginx gives them: 404 from the default
 * backend when nothing matches (logged as `upstream-default-backend`, the
 * internal 127.0.0.1:8181 ingress-nginx runs it on); 503 when the backend
 * Service is missing or has no ready endpoint; 502 when every try failed
 * (connect errors move on to the next endpoint, at most 3 tries as
 * proxy-next-upstream-tries); 504 when the endpoint does not answer in time.
 *
 * X-Forwarded-For is the client address alone, not appended to what the
 * client sent (ingress-nginx's default use-forwarded-headers: false); what the
 * client sent travels as X-Original-Forwarded-For.
 */
import type { Clock } from '../../common/clock.ts';
import type { SeededRng } from '../../common/rng.ts';
import type { EndpointSlice, Service } from '../../control-plane/service-resources.ts';
import { nginxErrorPage } from '../http.ts';
import { STATUS_TEXT, timeLocal, type HttpRequest, type HttpResponse } from '../http-server.ts';
import { matchRoute, resolveUpstream, type Endpoint, type RoutingTable } from './routing.ts';
import { isUpstreamFailure, type UpstreamPool } from './upstream.ts';

/** What the proxy routes by, current at each request. */
export interface ProxyState {
  table: RoutingTable;
  services: readonly Service[];
  slices: readonly EndpointSlice[];
}

export interface IngressProxyOptions {
  pool: UpstreamPool;
  /** For request and upstream times. */
  clock: Clock;
  /** Request ids (`$req_id`, X-Request-ID). */
  rng: SeededRng;
  state: () => ProxyState;
  /** The pod's address: the Host sent upstream when the client sent none. */
  serverAddress: string;
  accessLog?: (line: string) => void;
  /** Wall time for `$time_local` (default: now). */
  now?: () => Date;
}

export interface ProxyStats {
  requests: number;
  proxied: number;
  notFound: number;
  unavailable: number;
  badGateway: number;
}

/** The headers ingress-nginx sets itself; a client's copies never reach the upstream. */
const SET_BY_PROXY = new Set(['host', 'x-request-id', 'x-real-ip', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-port', 'x-forwarded-proto', 'x-forwarded-scheme', 'x-scheme', 'x-original-forwarded-for', 'proxy']);
/** Hop-by-hop fields (RFC 9110 §7.6.1), and the framing the proxy redoes. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade', 'transfer-encoding', 'content-length']);
/** Upstream response fields nginx replaces with its own. */
const NOT_PASSED_BACK = new Set([...HOP_BY_HOP, 'server', 'date']);

/** `content-type` -> `Content-Type`, so the server's defaults are overridden rather than doubled. */
const canonical = (name: string) => name.toLowerCase().replace(/(^|-)([a-z])/g, (_, d: string, c: string) => d + c.toUpperCase());

export function createIngressProxy(o: IngressProxyOptions): { handle: (req: HttpRequest) => Promise<HttpResponse>; stats: ProxyStats } {
  const stats: ProxyStats = { requests: 0, proxied: 0, notFound: 0, unavailable: 0, badGateway: 0 };
  const next = new Map<string, number>();
  const reqId = () => Array.from({ length: 4 }, () => (o.rng.int(0, 0xffffffff) >>> 0).toString(16).padStart(8, '0')).join('');

  const handle = async (req: HttpRequest): Promise<HttpResponse> => {
    stats.requests++;
    const start = o.clock.now();
    const id = reqId();
    const st = o.state();
    const m = matchRoute(st.table, req.headers.get('host'), req.path);
    const log = (res: HttpResponse, upstream: string, tries: { addr: string; len: string; time: string; status: string }[]) => {
      const bytes = req.method === 'HEAD' ? 0 : bodyLength(res);
      const field = (k: 'addr' | 'len' | 'time' | 'status') => (tries.length ? tries.map((t) => t[k]).join(', ') : '-');
      const h = (n: string) => req.headers.get(n) ?? '-';
      o.accessLog?.(
        `${req.remoteAddress} - - [${timeLocal(o.now?.() ?? new Date())}] "${req.method} ${req.target} HTTP/${req.version}" ${res.status} ${bytes} "${h('referer')}" "${h('user-agent')}" ` +
          `${req.length} ${secs(o.clock.now() - start)} [${upstream}] [] ${field('addr')} ${field('len')} ${field('time')} ${field('status')} ${id}`,
      );
      return res;
    };
    if (m.kind === 'none') {
      stats.notFound++;
      const res = errorPage(404);
      return log(res, 'upstream-default-backend', [{ addr: '127.0.0.1:8181', len: String(bodyLength(res)), time: secs(0), status: '404' }]);
    }
    const backend = m.kind === 'rule' ? m.route.backend : m.backend;
    const up = resolveUpstream(backend, st.services, st.slices);
    if ('error' in up || up.endpoints.length === 0) {
      stats.unavailable++;
      return log(errorPage(503), up.name, []);
    }
    const host = req.headers.get('host') ?? o.serverAddress;
    const head = upstreamHead(req, host, id);
    const tries: { addr: string; len: string; time: string; status: string }[] = [];
    const first = next.get(up.name) ?? 0;
    next.set(up.name, first + 1);
    for (let i = 0; i < Math.min(3, up.endpoints.length); i++) {
      const ep: Endpoint = up.endpoints[(first + i) % up.endpoints.length];
      const t0 = o.clock.now();
      const r = await o.pool.request(ep, head, req.body, req.method);
      const addr = `${ep.ip}:${ep.port}`;
      if (isUpstreamFailure(r)) {
        const status = r.failure === 'timeout' ? 504 : 502;
        tries.push({ addr, len: '0', time: secs(o.clock.now() - t0), status: String(status) });
        // Only a connection that never carried the request is safe to try elsewhere, whatever the method.
        if (r.failure === 'connect') continue;
        stats.badGateway++;
        return log(errorPage(status), up.name, tries);
      }
      tries.push({ addr, len: String(r.body.length), time: secs(o.clock.now() - t0), status: String(r.status) });
      const headers: Record<string, string> = {};
      for (const [k, v] of r.headers) {
        if (NOT_PASSED_BACK.has(k.toLowerCase())) continue;
        const c = canonical(k);
        headers[c] = headers[c] === undefined ? v : `${headers[c]}, ${v}`;
      }
      stats.proxied++;
      return log({ status: r.status, reason: r.reason || undefined, headers, body: r.body }, up.name, tries);
    }
    stats.badGateway++;
    return log(errorPage(502), up.name, tries);
  };
  return { handle, stats };
}

/** The request as ingress-nginx sends it upstream (HTTP/1.1, keep-alive: no Connection field). */
function upstreamHead(req: HttpRequest, host: string, id: string): string {
  const scheme = 'http';
  const lines = [
    `${req.method} ${req.target} HTTP/1.1`,
    `Host: ${host}`,
    `X-Request-ID: ${id}`,
    `X-Real-IP: ${req.remoteAddress}`,
    `X-Forwarded-For: ${req.remoteAddress}`,
    `X-Forwarded-Host: ${host}`,
    `X-Forwarded-Port: ${req.localPort}`,
    `X-Forwarded-Proto: ${scheme}`,
    `X-Forwarded-Scheme: ${scheme}`,
    `X-Scheme: ${scheme}`,
  ];
  const xff = req.headers.get('x-forwarded-for');
  if (xff !== undefined) lines.push(`X-Original-Forwarded-For: ${xff}`);
  for (const [k, v] of req.headers) if (!SET_BY_PROXY.has(k) && !HOP_BY_HOP.has(k)) lines.push(`${canonical(k)}: ${v}`);
  if (req.body.length || req.headers.has('content-length')) lines.push(`Content-Length: ${req.body.length}`);
  return lines.join('\r\n') + '\r\n\r\n';
}

/** nginx's own page for an error status, as ingress-nginx serves it (server_tokens off). */
function errorPage(status: number): HttpResponse {
  return { status, headers: { 'Content-Type': 'text/html' }, body: nginxErrorPage(status, STATUS_TEXT[status] ?? '', '', 'nginx') };
}

function bodyLength(res: HttpResponse): number {
  const b = res.body ?? '';
  return typeof b === 'string' ? Buffer.byteLength(b) : b.length;
}

/** nginx's times: seconds with millisecond resolution. */
const secs = (ms: number) => (Math.max(0, ms) / 1000).toFixed(3);
