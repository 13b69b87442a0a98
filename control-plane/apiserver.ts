/**
 * The HTTP face of the control plane: Kubernetes REST paths over node:http,
 * JSON only, with chunked newline-delimited watch streams.
 *
 * Shapes follow kube-apiserver closely enough for `kubectl --server
 * http://127.0.0.1:PORT get pods -o wide` to work: errors are `Status`
 * objects with the matching HTTP code, lists carry `metadata.resourceVersion`,
 * and a request whose Accept asks for `as=Table;g=meta.k8s.io` gets a
 * server-side printed Table (see tables.ts) — any other Accept gets the
 * plain object or List.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Clock } from '../common/clock.ts';
import { ApiError, badRequest, internalError, makeStatus, methodNotAllowed, pathNotFound } from './errors.ts';
import { MERGE_PATCH_TYPE, STRATEGIC_MERGE_PATCH_TYPE } from './merge-patch.ts';
import { JSON_PATCH_TYPE } from './json-patch.ts';
import { serveScale } from './scale-subresource.ts';
import { bookmarkObject, discoveryFor, parseResourcePath, type ResourceRoute } from './routes.ts';
import { parseSelector } from './selectors.ts';
import { openStore, type Store, type WorkloadControllerOptions } from './store.ts';
import { ensureKubernetesService } from './service-allocator.ts';
import { buildTable, DEFAULT_TABLE, parseIncludeObject, wantsTable } from './tables.ts';
import type { KubeObject } from './types.ts';

/** Options of {@link startApiServer}. */
export interface ApiServerOptions {
  /** Address to listen on; podlab only ever uses loopback addresses. */
  host: string;
  /** TCP port; 0 picks an ephemeral one. */
  port: number;
  /** State lives in `<stateDir>/apiserver/state.json`. */
  stateDir: string;
  /** `--cluster-cidr` (default 10.244.0.0/16). */
  clusterCidr?: string;
  /** `--node-cidr-mask-size` (default 24). */
  nodeCidrMaskSize?: number;
  /** `--service-cluster-ip-range` (default 10.96.0.0/12). */
  serviceClusterIpRange?: string;
  /** `--service-node-port-range` (default 30000-32767). */
  serviceNodePortRange?: string;
  /** Create `default/kubernetes` (first ClusterIP, port 443 to this server) once listening. Default false. */
  kubernetesService?: boolean;
  clock?: Clock;
  /** Watch history length in memory (default 10,000 events). */
  historyLimit?: number;
  /** Newest events also persisted in state.json (default 1,000). */
  persistedHistoryLimit?: number;
  /** How often BOOKMARK events go to watchers that allow them (default 30 s). */
  bookmarkIntervalMs?: number;
  /** Durations of the in-process controllers (node lifecycle, pod drain). */
  controllers?: WorkloadControllerOptions;
  /** Receives one record per finished request (main.ts prints them when PODLAB_DEBUG is set). */
  log?: (entry: RequestLogEntry) => void;
}

/** One request log record. */
export interface RequestLogEntry {
  method: string;
  path: string;
  code: number;
  ms: number;
  watch?: boolean;
}

/** A running apiserver. */
export interface ApiServer {
  /** `http://host:port`. */
  url: string;
  port: number;
  store: Store;
  /** Ends all watches, stops listening and closes connections. */
  close(): Promise<void>;
}

/** Request bodies above this are refused with 413, as kube-apiserver does at 3 MiB. */
const MAX_BODY_BYTES = 3 * 1024 * 1024;
/** A watcher that lets this much output pile up is dropped (it reconnects from its last resourceVersion). */
const MAX_WATCH_BACKLOG_BYTES = 16 * 1024 * 1024;
const DEFAULT_BOOKMARK_INTERVAL_MS = 30_000;

function sendJson(res: ServerResponse, code: number, body: string): void {
  res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

function sendError(res: ServerResponse, err: unknown): number {
  const status = err instanceof ApiError ? err.status : internalError((err as Error)?.message ?? String(err)).status;
  if (!res.headersSent) sendJson(res, status.code, JSON.stringify(status));
  else res.destroy();
  return status.code;
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new ApiError(makeStatus(413, 'RequestEntityTooLarge', `request body exceeds ${MAX_BODY_BYTES} bytes`)));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

async function readJson(req: IncomingMessage, allowEmpty = false): Promise<unknown> {
  const text = await readBody(req);
  if (text.trim() === '') {
    if (allowEmpty) return undefined;
    throw badRequest('the request body is empty; a JSON object is required');
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw badRequest(`the request body is not valid JSON: ${(err as Error).message}`);
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Reads DeleteOptions.preconditions from an optional DELETE body. */
function preconditionsOf(body: unknown): { resourceVersion?: string; uid?: string } | undefined {
  if (!isRecord(body) || !isRecord(body.preconditions)) return undefined;
  const p = body.preconditions;
  return {
    resourceVersion: typeof p.resourceVersion === 'string' ? p.resourceVersion : undefined,
    uid: typeof p.uid === 'string' ? p.uid : undefined,
  };
}

/**
 * Starts the apiserver: opens (or creates) the persisted store with its
 * controllers, then listens. Rejects with the listen error (e.g.
 * EADDRINUSE), a ConfigError for bad IPAM flags, or a StateFileError.
 */
export async function startApiServer(opts: ApiServerOptions): Promise<ApiServer> {
  const store = openStore({
    stateDir: opts.stateDir,
    clusterCidr: opts.clusterCidr,
    nodeCidrMaskSize: opts.nodeCidrMaskSize,
    serviceClusterIpRange: opts.serviceClusterIpRange,
    serviceNodePortRange: opts.serviceNodePortRange,
    clock: opts.clock,
    historyLimit: opts.historyLimit,
    persistedHistoryLimit: opts.persistedHistoryLimit,
    controllers: opts.controllers,
  });
  const bookmarkMs = opts.bookmarkIntervalMs ?? DEFAULT_BOOKMARK_INTERVAL_MS;
  const activeWatches = new Set<() => void>();
  const sockets = new Set<Socket>();
  let serverAddress = `${opts.host}:${opts.port}`;

  const handleWatch = (req: IncomingMessage, res: ServerResponse, route: ResourceRoute, q: URLSearchParams): void => {
    const labelSelector = q.get('labelSelector') ?? undefined;
    const fieldSelector = q.get('fieldSelector') ?? undefined;
    // Selector errors are plain 400s; only history problems become in-stream ERROR events.
    parseSelector(route.rt, labelSelector, fieldSelector);
    const timeoutRaw = q.get('timeoutSeconds');
    const timeoutSeconds = timeoutRaw === null || timeoutRaw === '' ? undefined : Number(timeoutRaw);
    if (timeoutSeconds !== undefined && (!Number.isFinite(timeoutSeconds) || timeoutSeconds < 0)) {
      throw badRequest(`invalid timeoutSeconds: ${JSON.stringify(timeoutRaw)}`);
    }
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private', 'Transfer-Encoding': 'chunked' });
    res.flushHeaders();
    let done = false;
    let handle: { stop(): void } | undefined;
    const timers: ReturnType<typeof setTimeout>[] = [];
    const finish = (): void => {
      if (done) return;
      done = true;
      handle?.stop();
      for (const t of timers) clearTimeout(t);
      activeWatches.delete(finish);
      if (!res.writableEnded) res.end();
    };
    const write = (line: string): void => {
      if (done) return;
      res.write(line);
      // A client that stopped reading must not make the server buffer without bound.
      if (res.writableLength > MAX_WATCH_BACKLOG_BYTES) finish();
    };
    activeWatches.add(finish);
    res.on('close', finish);
    // kubectl get -w asks for Tables: one row per event, column definitions only in the first.
    const asTable = wantsTable(req.headers.accept);
    const includeObject = parseIncludeObject(q.get('includeObject'));
    let firstTable = true;
    const encode = (type: string, obj: KubeObject, json: string): string => {
      if (!asTable) return `{"type":"${type}","object":${json}}\n`;
      const table = buildTable(route.rt.table ?? DEFAULT_TABLE, [obj], { now: store.clock.now(), includeObject, withColumns: firstTable });
      firstTable = false;
      return `${JSON.stringify({ type, object: table })}\n`;
    };
    try {
      handle = store.watch(
        route.rt,
        { namespace: route.namespace, labelSelector, fieldSelector, resourceVersion: q.get('resourceVersion') ?? undefined },
        (ev) => write(encode(ev.type, ev.object, ev.json)),
      );
    } catch (err) {
      const status = err instanceof ApiError ? err.status : internalError(String(err)).status;
      write(`${JSON.stringify({ type: 'ERROR', object: status })}\n`);
      finish();
      return;
    }
    if (done) handle.stop();
    if (timeoutSeconds !== undefined) timers.push(setTimeout(finish, timeoutSeconds * 1000));
    if (q.get('allowWatchBookmarks') === 'true' || q.get('allowWatchBookmarks') === '1') {
      const tick = (): void => {
        write(`${JSON.stringify({ type: 'BOOKMARK', object: bookmarkObject(route.rt, store.resourceVersion()) })}\n`);
        if (!done) timers.push(setTimeout(tick, bookmarkMs));
      };
      timers.push(setTimeout(tick, bookmarkMs));
    }
  };

  const handleResource = async (req: IncomingMessage, res: ServerResponse, route: ResourceRoute, q: URLSearchParams): Promise<number> => {
    const { rt, namespace, name, subresource } = route;
    const method = req.method ?? 'GET';
    if (subresource === 'scale' && rt.scalable && name !== undefined && (method === 'GET' || method === 'PUT' || method === 'PATCH')) {
      const ct = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
      const body = method === 'GET' ? undefined : await readJson(req);
      sendJson(res, 200, JSON.stringify(serveScale(store, rt, name, namespace, method, body, ct === JSON_PATCH_TYPE ? 'json' : 'merge')));
      return 200;
    }
    if (subresource !== undefined && subresource !== 'status') throw pathNotFound();
    if (subresource === 'status' && !rt.hasStatus) throw pathNotFound();
    if (name === undefined) {
      // Collection.
      if (method === 'GET') {
        const watch = q.get('watch');
        if (watch === 'true' || watch === '1') {
          handleWatch(req, res, route, q);
          return 200;
        }
        const listOpts = { namespace, labelSelector: q.get('labelSelector') ?? undefined, fieldSelector: q.get('fieldSelector') ?? undefined };
        if (wantsTable(req.headers.accept)) {
          const list = store.list(rt, listOpts);
          const table = buildTable(rt.table ?? DEFAULT_TABLE, list.items, {
            resourceVersion: list.metadata.resourceVersion,
            now: store.clock.now(),
            includeObject: parseIncludeObject(q.get('includeObject')),
            withColumns: true,
          });
          sendJson(res, 200, JSON.stringify(table));
        } else {
          sendJson(res, 200, store.listJson(rt, listOpts));
        }
        return 200;
      }
      if (method === 'POST') {
        if (rt.namespaced && namespace === undefined) throw methodNotAllowed(method);
        const created = store.create(rt, await readJson(req), { namespace });
        sendJson(res, 201, JSON.stringify(created));
        return 201;
      }
      throw methodNotAllowed(method);
    }
    const status = subresource === 'status' ? ('status' as const) : undefined;
    switch (method) {
      case 'GET': {
        const obj = store.get(rt, name, namespace);
        if (wantsTable(req.headers.accept) && !status) {
          const table = buildTable(rt.table ?? DEFAULT_TABLE, [obj], {
            resourceVersion: obj.metadata.resourceVersion,
            now: store.clock.now(),
            includeObject: parseIncludeObject(q.get('includeObject')),
            withColumns: true,
          });
          sendJson(res, 200, JSON.stringify(table));
        } else {
          sendJson(res, 200, JSON.stringify(obj));
        }
        return 200;
      }
      case 'PUT': {
        const updated = store.update(rt, await readJson(req), { namespace, name, subresource: status });
        sendJson(res, 200, JSON.stringify(updated));
        return 200;
      }
      case 'PATCH': {
        const ct = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
        if (ct !== MERGE_PATCH_TYPE && ct !== STRATEGIC_MERGE_PATCH_TYPE && ct !== JSON_PATCH_TYPE) {
          throw new ApiError(
            makeStatus(
              415,
              'UnsupportedMediaType',
              `the body of the request was in an unknown format - accepted media types include: ${JSON_PATCH_TYPE}, ${MERGE_PATCH_TYPE}, ${STRATEGIC_MERGE_PATCH_TYPE}`,
            ),
          );
        }
        const patched = store.patch(rt, name, await readJson(req), { namespace, subresource: status, strategic: ct === STRATEGIC_MERGE_PATCH_TYPE, json: ct === JSON_PATCH_TYPE });
        sendJson(res, 200, JSON.stringify(patched));
        return 200;
      }
      case 'DELETE': {
        if (status) throw methodNotAllowed(method);
        const body = await readJson(req, true);
        const deleted = store.delete(rt, name, { namespace, preconditions: preconditionsOf(body) });
        sendJson(res, 200, JSON.stringify(deleted));
        return 200;
      }
      default:
        throw methodNotAllowed(method);
    }
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const started = Date.now();
    const url = new URL(req.url ?? '/', 'http://apiserver.invalid');
    let code = 200;
    let watch = false;
    try {
      const path = url.pathname;
      if (path === '/healthz' || path === '/readyz' || path === '/livez') {
        res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': 2 });
        res.end('ok');
      } else {
        const disc = discoveryFor(store.registry, path, serverAddress);
        if (disc) {
          if (req.method !== 'GET') throw methodNotAllowed(req.method ?? '');
          sendJson(res, 200, JSON.stringify(disc.discovery));
        } else {
          const route = parseResourcePath(store.registry, path);
          if (!route) throw pathNotFound();
          watch = req.method === 'GET' && route.name === undefined && ['true', '1'].includes(url.searchParams.get('watch') ?? '');
          code = await handleResource(req, res, route, url.searchParams);
        }
      }
    } catch (err) {
      code = sendError(res, err);
    }
    opts.log?.({ method: req.method ?? '', path: `${url.pathname}${url.search}`, code, ms: Date.now() - started, ...(watch ? { watch } : {}) });
  };

  const server: Server = createServer({ keepAliveTimeout: 5_000 }, (req, res) => {
    void handle(req, res);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => {
      server.off('listening', onListening);
      reject(err);
    };
    const onListening = (): void => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(opts.port, opts.host);
  });
  const port = (server.address() as AddressInfo).port;
  const hostForUrl = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  serverAddress = `${hostForUrl}:${port}`;
  if (opts.kubernetesService) {
    try {
      ensureKubernetesService(store, opts.serviceClusterIpRange, opts.host, port);
    } catch (err) {
      // A clash with a user's Service must not keep the apiserver from serving.
      process.emitWarning(`cannot create default/kubernetes: ${(err as Error).message}`);
    }
  }

  let closing: Promise<void> | undefined;
  return {
    url: `http://${hostForUrl}:${port}`,
    port,
    store,
    close(): Promise<void> {
      closing ??= new Promise<void>((resolve) => {
        for (const finish of [...activeWatches]) finish();
        server.close(() => resolve());
        server.closeIdleConnections();
        // In-flight requests are synchronous against the store, so anything still open shortly after is idle or a dead watch.
        setTimeout(() => {
          for (const s of sockets) s.destroy();
        }, 200).unref();
        store.close();
      });
      return closing;
    },
  };
}
