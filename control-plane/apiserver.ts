/**
 * The HTTPS face of the control plane: Kubernetes REST paths over node:https,
 * JSON only, with chunked newline-delimited watch streams. Every request but
 * the health probes needs a bearer token (auth.ts); the certificate and the
 * tokens come from the lab's PKI directory (pki.ts), created when missing.
 *
 * Shapes follow kube-apiserver closely enough for the real kubectl and
 * @kubernetes/client-node to work unmodified: errors are `Status`
 * objects with the matching HTTP code, lists carry `metadata.resourceVersion`,
 * and a request whose Accept asks for `as=Table;g=meta.k8s.io` gets a
 * server-side printed Table (see tables.ts) — any other Accept gets the
 * plain object or List.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer as createH2Server, type Http2ServerRequest, type Http2ServerResponse, type ServerHttp2Session } from 'node:http2';
import { createServer, type Server } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { Clock } from '../common/clock.ts';
import { authenticate, authorize, forbiddenFor, isPublicPath, selfSubjectAccessReview, selfSubjectReview, selfSubjectRulesReview, unauthorized, verbOf, type Identity, type ObjectLookup } from './auth.ts';
import type { ClientCredentials } from './credentials.ts';
import { ApiError, badRequest, internalError, makeStatus, methodNotAllowed, notFound, pathNotFound } from './errors.ts';
import { checkFields, parseFieldValidation } from './field-validation.ts';
import { openApiV2, openApiV3Document, openApiV3Index, schemaOf } from './openapi.ts';
import { execUpgradeHandler } from './pod-exec.ts';
import { isPortForwardPath, portForwardUpgradeHandler } from './pod-port-forward.ts';
import { parseLogQuery, servePodLog } from './pod-log.ts';
import { apiserverCertHosts, defaultPkiDir, ensurePki } from './pki.ts';
import { NODES, PODS } from './resources.ts';
import { APPLY_PATCH_TYPE, patchTypeOf, unsupportedPatchType } from './merge-patch.ts';
import { checkApplied, serverSideApply } from './server-side-apply.ts';
import { serveScale } from './scale-subresource.ts';
import { bookmarkObject, discoveryFor, parseResourcePath, VERSION_INFO, type ResourceRoute } from './routes.ts';
import { parseSelector } from './selectors.ts';
import type { StorePersister } from './persistence.ts';
import { openStore, type Store, type WorkloadControllerOptions } from './store.ts';
import { ensureKubernetesService } from './service-allocator.ts';
import { buildTable, DEFAULT_TABLE, parseIncludeObject, wantsTable } from './tables.ts';
import type { KubeObject, Node, Pod } from './types.ts';
import { formatTimestamp } from './timestamp.ts';

/** Options of {@link startApiServer}. */
export interface ApiServerOptions {
  /** Address to listen on; podlab only ever uses loopback addresses. */
  host: string;
  /** TCP port; 0 picks an ephemeral one. */
  port: number;
  /** State lives in `<stateDir>/apiserver/store.db` unless `persister` says otherwise. */
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
  /** Bytes of object JSON the watch history may hold, in memory and on disk (default 32 MiB). */
  historyBytes?: number;
  /** A persister other than `<stateDir>/apiserver/store.db` (`--store etcd://`). */
  persister?: StorePersister;
  /**
   * Persist the writes of one event-loop turn in one transaction, answering
   * each once that transaction is on disk (default true; only persisters
   * whose commit is atomic take part, so not etcd's).
   */
  groupCommit?: boolean;
  /** How long a transaction waits for more writes to join it (ms; default 0: the end of the event-loop turn). */
  groupCommitWindowMs?: number;
  /** How often BOOKMARK events go to watchers that allow them (default 30 s). */
  bookmarkIntervalMs?: number;
  /** Durations of the in-process controllers (node lifecycle, pod drain). */
  controllers?: WorkloadControllerOptions;
  /** Receives one record per finished request (main.ts prints them when PODLAB_DEBUG is set). */
  log?: (entry: RequestLogEntry) => void;
  /** CA, serving certificate and tokens; default `<stateDir>/pki`, created when missing. */
  pkiDir?: string;
  /** More names/addresses the serving certificate must cover (it always covers `host`, localhost and 127.0.0.1). */
  tlsSans?: string[];
}

/** One request log record. */
export interface RequestLogEntry {
  method: string;
  path: string;
  code: number;
  ms: number;
  /** The authenticated user, when there was one. */
  user?: string;
  watch?: boolean;
}

/** A running apiserver. */
export interface ApiServer {
  /** `https://host:port`. */
  url: string;
  port: number;
  store: Store;
  /** The admin identity's token and the CA, for in-process clients and tests. */
  credentials: ClientCredentials;
  /** Ends all watches, stops listening and closes connections. */
  close(): Promise<void>;
}

/** Request bodies above this are refused with 413, as kube-apiserver does at 3 MiB. */
const MAX_BODY_BYTES = 3 * 1024 * 1024;
/**
 * An oversized body is still read (and dropped) up to this much, so the
 * client gets its 413 instead of a reset connection; past it the connection is closed.
 */
const MAX_DRAIN_BYTES = 64 * 1024 * 1024;
/**
 * JSON nested deeper than this is a 400. No Kubernetes object comes near it,
 * and it keeps the recursive merge, validation and printing code far from
 * the stack limit, so a hostile body never becomes a 500.
 */
export const MAX_JSON_DEPTH = 1000;
/**
 * What an HTTP/2 connection may hold queued to send (MB). Past it, Node refuses the connection's new streams
 * (ENHANCE_YOUR_CALM); at the default 10 MB one list of 10,000 EndpointSlices on its way to an agent would
 * refuse that agent's next requests and watches until it had gone. HTTP/1.1 has no such bound either.
 */
const H2_SESSION_MEMORY_MB = 256;

/** A watcher that lets this much output pile up is dropped (it reconnects from its last resourceVersion). */
const MAX_WATCH_BACKLOG_BYTES = 16 * 1024 * 1024;
const DEFAULT_BOOKMARK_INTERVAL_MS = 30_000;

function sendJson(res: ServerResponse, code: number, body: string, warnings: string[] = []): void {
  const headers: Record<string, string | number | string[]> = { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) };
  // RFC 7234 warning headers, as kube-apiserver sends them (kubectl prints "Warning: ...").
  if (warnings.length > 0) headers.Warning = warnings.map((w) => `299 - ${JSON.stringify(w)}`);
  res.writeHead(code, headers);
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
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        // Keep reading and dropping, so the 413 reaches a client still sending.
        tooLarge = true;
        chunks.length = 0;
        if (size > MAX_DRAIN_BYTES) req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (tooLarge) reject(new ApiError(makeStatus(413, 'RequestEntityTooLarge', `Request entity too large: limit is ${MAX_BODY_BYTES}`)));
      else resolve(Buffer.concat(chunks).toString('utf8'));
    });
    req.on('error', reject);
    // Past the drain limit the request is destroyed and never ends: settle anyway.
    req.on('close', () => {
      if (tooLarge) reject(new ApiError(makeStatus(413, 'RequestEntityTooLarge', `Request entity too large: limit is ${MAX_BODY_BYTES}`)));
    });
  });
}

/** Nesting depth of a JSON text (brackets outside strings), without parsing it. */
export function jsonDepth(text: string): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) max = depth;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return max;
}

async function readJson(req: IncomingMessage, allowEmpty = false): Promise<unknown> {
  const text = await readBody(req);
  if (text.trim() === '') {
    if (allowEmpty) return undefined;
    throw badRequest('the request body is empty; a JSON object is required');
  }
  if (jsonDepth(text) > MAX_JSON_DEPTH) throw badRequest(`the request body is nested deeper than ${MAX_JSON_DEPTH} levels: exceeded max depth`);
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
  const creds = ensurePki(opts.pkiDir ?? defaultPkiDir(opts.stateDir), apiserverCertHosts(opts.host, opts.tlsSans));
  const store = openStore({
    stateDir: opts.stateDir,
    clusterCidr: opts.clusterCidr,
    nodeCidrMaskSize: opts.nodeCidrMaskSize,
    serviceClusterIpRange: opts.serviceClusterIpRange,
    serviceNodePortRange: opts.serviceNodePortRange,
    clock: opts.clock,
    historyLimit: opts.historyLimit,
    historyBytes: opts.historyBytes,
    persister: opts.persister,
    controllers: opts.controllers,
    groupCommit: opts.groupCommit ?? true,
    groupCommitWindowMs: opts.groupCommitWindowMs,
  });
  /** A write is answered once its transaction is on disk; a failed transaction makes it a 500 (group commit). */
  const durable = async <T>(value: T): Promise<T> => {
    await store.committed();
    return value;
  };
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
    // HTTP/2 frames the stream itself, and forbids the HTTP/1.1 header.
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private', ...(req.httpVersionMajor === 2 ? {} : { 'Transfer-Encoding': 'chunked' }) });
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

  const lookup: ObjectLookup = {
    podNodeName: (namespace, name) => {
      const pod = store.objectsOf(PODS).find((p) => p.metadata.namespace === namespace && p.metadata.name === name);
      const nodeName = (pod?.spec as { nodeName?: unknown } | undefined)?.nodeName;
      return typeof nodeName === 'string' ? nodeName : undefined;
    },
  };

  /** Reads a POST/PUT body and checks it for unknown fields as `fieldValidation` asks; returns it and the warnings. */
  const readChecked = async (req: IncomingMessage, route: ResourceRoute, q: URLSearchParams): Promise<{ body: unknown; warnings: string[] }> => {
    const mode = parseFieldValidation(q.get('fieldValidation'));
    const body = await readJson(req);
    return { body, warnings: checkFields(route.rt, body, schemaOf(route.rt), mode) };
  };

  const handleResource = async (req: IncomingMessage, res: ServerResponse, route: ResourceRoute, q: URLSearchParams, who: Identity): Promise<number> => {
    const { rt, namespace, name, subresource } = route;
    const method = req.method ?? 'GET';
    const scale = subresource === 'scale' && rt.scalable && name !== undefined && (method === 'GET' || method === 'PUT' || method === 'PATCH');
    const podLog = subresource === 'log' && rt === PODS && name !== undefined && method === 'GET';
    if (subresource !== undefined && subresource !== 'status' && !scale && !podLog) throw pathNotFound();
    if (subresource === 'status' && !rt.hasStatus) throw pathNotFound();
    const watching = ['true', '1'].includes(q.get('watch') ?? '');
    // `dryRun=All` (kubectl diff, --dry-run=server): everything but storing.
    const dryRunValues = q.getAll('dryRun');
    if (dryRunValues.some((v) => v !== 'All')) throw badRequest(`Invalid dryRun value: ${JSON.stringify(dryRunValues)}: supported values: "All"`);
    const dryRun = dryRunValues.length > 0;
    const attrs = { verb: verbOf(method, name !== undefined, watching), group: rt.group, resource: rt.plural, subresource, namespace, name };
    if (!authorize(who, attrs, lookup).allowed) throw forbiddenFor(who, attrs);
    // Reads (and a watch's replay) see committed state only, never a write whose transaction may still fail.
    if (method === 'GET') await store.settled();
    if (podLog) {
      const pod = store.objectsOf(PODS).find((p) => p.metadata.namespace === namespace && p.metadata.name === name) as Pod | undefined;
      if (!pod) throw notFound('pods', name);
      return servePodLog(res, pod, parseLogQuery(q), { stateDir: opts.stateDir, getNode: (n) => store.objectsOf(NODES).find((x) => x.metadata.name === n) as Node | undefined });
    }
    if (scale) {
      const type = method === 'PATCH' ? patchTypeOf(req.headers['content-type']) : undefined;
      if (method === 'PATCH' && type === undefined) throw unsupportedPatchType();
      const body = method === 'GET' ? undefined : await readJson(req);
      sendJson(res, 200, JSON.stringify(await durable(serveScale(store, rt, name, namespace, method, body, type === 'json' ? 'json' : 'merge'))));
      return 200;
    }
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
        const { body, warnings } = await readChecked(req, route, q);
        const created = await durable(store.create(rt, body, { namespace, dryRun }));
        sendJson(res, 201, JSON.stringify(created), warnings);
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
        const { body, warnings } = await readChecked(req, route, q);
        const updated = await durable(store.update(rt, body, { namespace, name, subresource: status, dryRun }));
        sendJson(res, 200, JSON.stringify(updated), warnings);
        return 200;
      }
      case 'PATCH': {
        if (String(req.headers['content-type'] ?? '').split(';')[0].trim() === APPLY_PATCH_TYPE && !status) {
          // Server-side apply: create or merge, managedFields per applier (server-side-apply.ts).
          const manager = q.get('fieldManager') ?? '';
          if (!manager) throw new ApiError(makeStatus(422, 'Invalid', 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch'));
          const { body, warnings } = await readChecked(req, route, q);
          const applied = checkApplied(body, name);
          const live = store.objectsOf(rt).find((o) => o.metadata.name === name && (!rt.namespaced || o.metadata.namespace === namespace)) as Record<string, unknown> | undefined;
          const next = serverSideApply(live && structuredClone(live), applied, { manager, force: ['true', '1'].includes(q.get('force') ?? ''), schema: schemaOf(rt), apiVersion: typeof applied.apiVersion === 'string' ? applied.apiVersion : '', now: formatTimestamp(store.clock.now()) });
          if (!live) {
            const created = await durable(store.create(rt, next, { namespace, dryRun }));
            sendJson(res, 201, JSON.stringify(created), warnings);
            return 201;
          }
          const updated = await durable(store.update(rt, next, { namespace, name, dryRun }));
          sendJson(res, 200, JSON.stringify(updated), warnings);
          return 200;
        }
        const type = patchTypeOf(req.headers['content-type']);
        if (type === undefined) throw unsupportedPatchType();
        const mode = parseFieldValidation(q.get('fieldValidation'));
        const body = await readJson(req);
        const warnings = type === 'json' ? [] : checkFields(rt, body, schemaOf(rt), mode);
        const patched = await durable(store.patch(rt, name, body, { namespace, subresource: status, type, dryRun }));
        sendJson(res, 200, JSON.stringify(patched), warnings);
        return 200;
      }
      case 'DELETE': {
        if (status) throw methodNotAllowed(method);
        const body = await readJson(req, true);
        const deleted = await durable(store.delete(rt, name, { namespace, preconditions: preconditionsOf(body), dryRun }));
        sendJson(res, 200, JSON.stringify(deleted));
        return 200;
      }
      default:
        throw methodNotAllowed(method);
    }
  };

  /** The non-resource and virtual endpoints: OpenAPI, discovery, access reviews. Returns false when the path is none of them. */
  const handleSpecial = async (req: IncomingMessage, res: ServerResponse, path: string, who: Identity): Promise<boolean> => {
    const method = req.method ?? 'GET';
    if (path === '/openapi/v2' || path === '/openapi/v3' || path.startsWith('/openapi/v3/')) {
      if (method !== 'GET') throw methodNotAllowed(method);
      if (path === '/openapi/v2') {
        // kubectl's old client-side validation asks for the protobuf form; only JSON is served.
        if (/protobuf/.test(req.headers.accept ?? '') && !/json|\*\/\*/.test(req.headers.accept ?? '')) {
          throw new ApiError(makeStatus(406, 'NotAcceptable', 'only application/json is served for /openapi/v2'));
        }
        sendJson(res, 200, JSON.stringify(openApiV2(store.registry, VERSION_INFO.gitVersion)));
      } else if (path === '/openapi/v3') {
        sendJson(res, 200, JSON.stringify(openApiV3Index(store.registry, VERSION_INFO.gitVersion)));
      } else {
        const doc = openApiV3Document(store.registry, VERSION_INFO.gitVersion, path.slice('/openapi/v3/'.length));
        if (doc === undefined) throw pathNotFound();
        sendJson(res, 200, doc);
      }
      return true;
    }
    if (path === '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews') {
      if (method !== 'POST') throw methodNotAllowed(method);
      sendJson(res, 201, JSON.stringify(selfSubjectAccessReview(who, await readJson(req), lookup)));
      return true;
    }
    if (path === '/apis/authorization.k8s.io/v1/selfsubjectrulesreviews') {
      if (method !== 'POST') throw methodNotAllowed(method);
      sendJson(res, 201, JSON.stringify(selfSubjectRulesReview(who, await readJson(req))));
      return true;
    }
    if (path === '/apis/authentication.k8s.io/v1/selfsubjectreviews') {
      if (method !== 'POST') throw methodNotAllowed(method);
      await readJson(req, true);
      sendJson(res, 201, JSON.stringify(selfSubjectReview(who)));
      return true;
    }
    const disc = discoveryFor(store.registry, path, serverAddress);
    if (!disc) return false;
    if (method !== 'GET') throw methodNotAllowed(method);
    sendJson(res, 200, JSON.stringify(disc.discovery));
    return true;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const started = Date.now();
    const url = new URL(req.url ?? '/', 'http://apiserver.invalid');
    let code = 200;
    let watch = false;
    let user: string | undefined;
    try {
      const path = url.pathname;
      if (isPublicPath(path)) {
        res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': 2 });
        res.end('ok');
      } else {
        const who = authenticate(req.headers, creds);
        if (!who) {
          // The body is not read: close after answering, so a large upload is not left half-sent on a kept-alive connection.
          if (req.httpVersionMajor < 2) res.setHeader('Connection', 'close');
          req.resume();
          throw unauthorized();
        }
        user = who.username;
        if (!(await handleSpecial(req, res, path, who))) {
          const route = parseResourcePath(store.registry, path);
          if (!route) throw pathNotFound();
          watch = req.method === 'GET' && route.name === undefined && ['true', '1'].includes(url.searchParams.get('watch') ?? '');
          code = await handleResource(req, res, route, url.searchParams, who);
        }
      }
    } catch (err) {
      code = sendError(res, err);
    }
    opts.log?.({ method: req.method ?? '', path: `${url.pathname}${url.search}`, code, ms: Date.now() - started, ...(user ? { user } : {}), ...(watch ? { watch } : {}) });
  };

  // HTTP/1.1 for every client that offers it (kubectl, curl, client libraries: the ALPN choice is the server's, in
  // this order), HTTP/2 for a client that offers only h2: the node agents, whose watches and requests then share one
  // connection (control-plane/client.ts), as client-go's share one over HTTP/2. Each HTTP/1.1 watch holds a
  // connection of its own, and an agent has about ten.
  const server: Server = createServer({ keepAliveTimeout: 5_000, cert: creds.cert, key: creds.key, ALPNProtocols: ['http/1.1', 'h2'] }, (req, res) => {
    void handle(req, res);
  });
  // The HTTP/2 compatibility API's request and response stand where HTTP/1.1's do, for what the handlers use of them.
  const h2 = createH2Server({ maxSessionMemory: H2_SESSION_MEMORY_MB }, (req: Http2ServerRequest, res: Http2ServerResponse) => {
    void handle(req as unknown as IncomingMessage, res as unknown as ServerResponse);
  });
  // Closed with the server: unlike HTTP/1.1's idle connections, an open session is never idle to closeIdleConnections().
  const h2Sessions = new Set<ServerHttp2Session>();
  let stopping = false;
  h2.on('session', (session: ServerHttp2Session) => {
    if (stopping) session.close();
    h2Sessions.add(session);
    session.on('close', () => h2Sessions.delete(session));
  });
  // An https server serves a connection through its 'secureConnection' listener: h2 ones go to the HTTP/2 server.
  const [serveHttp1] = server.listeners('secureConnection') as ((s: TLSSocket) => void)[];
  // Said at start, not at the first connection, if a Node version serves HTTPS some other way.
  if (!serveHttp1) throw new Error("apiserver: node:https has no 'secureConnection' listener to hand HTTP/1.1 connections to");
  server.removeAllListeners('secureConnection');
  server.on('secureConnection', (s: TLSSocket) => {
    if (s.alpnProtocol === 'h2') h2.emit('connection', s);
    else serveHttp1.call(server, s);
  });
  // kubectl exec (a WebSocket on pods/{name}/exec) and port-forward (SPDY, or SPDY in a WebSocket, on
  // pods/{name}/portforward): upgrades relayed to the pod's node agent.
  const podUpgradeDeps = {
    stateDir: opts.stateDir,
    authenticate: (req: IncomingMessage) => authenticate(req.headers, creds),
    authorize: (who: Identity, namespace: string, name: string, subresource: 'exec' | 'portforward') => {
      const attrs = { verb: 'create', group: '', resource: 'pods', subresource, namespace, name };
      if (!authorize(who, attrs, lookup).allowed) throw forbiddenFor(who, attrs);
    },
    getPod: (namespace: string, name: string) => store.objectsOf(PODS).find((p) => p.metadata.namespace === namespace && p.metadata.name === name) as Pod | undefined,
    getNode: (name: string) => store.objectsOf(NODES).find((n) => n.metadata.name === name) as Node | undefined,
  };
  const execUpgrade = execUpgradeHandler(podUpgradeDeps);
  const portForwardUpgrade = portForwardUpgradeHandler(podUpgradeDeps);
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (isPortForwardPath(req.url)) portForwardUpgrade(req, socket, head);
    else execUpgrade(req, socket, head);
  });
  server.on('connection', (s: Socket) => {
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
    url: `https://${hostForUrl}:${port}`,
    port,
    store,
    credentials: { token: creds.adminToken, ca: creds.ca },
    close(): Promise<void> {
      stopping = true;
      closing ??= new Promise<void>((resolve) => {
        for (const finish of [...activeWatches]) finish();
        // In-flight requests are synchronous against the store, so anything still open shortly after is idle or a
        // dead watch. The timer is referenced: an HTTP/2 connection's socket, no longer read once the GOAWAY is out,
        // keeps no process alive, and one with nothing else to wait on (a test's) exited before the close was done.
        const leftovers = setTimeout(() => {
          for (const s of sockets) s.destroy();
        }, 200);
        // Node's close() also ends the idle HTTP/1.1 connections (closeIdleConnections()).
        server.close(() => {
          clearTimeout(leftovers);
          resolve();
        });
        // A GOAWAY, then the connection closes once its streams have ended (the watches just did).
        for (const session of h2Sessions) session.close();
        store.close();
      });
      return closing;
    },
  };
}
