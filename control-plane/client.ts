/**
 * A small typed client for the podlab apiserver (and, path-wise, for any
 * kube-apiserver): CRUD, merge patches, and streaming watches.
 *
 * Resource names go through the registry, so callers may say `pods`, `pod`,
 * `Pod`, `po` or a group-qualified name once such kinds are registered.
 * It speaks HTTPS only, trusting the lab's CA and sending a bearer token
 * (credentials.ts says where both come from): HTTP/2 over TCP, every request
 * and watch on one connection (client-h2.ts); HTTP/1.1 over a Unix socket, or
 * to a server that does not speak h2.
 * Failures are typed: `ApiError` when the server answered with a Status,
 * `ApiConnectionError` when it could not be reached or a stream broke.
 */
import type { IncomingMessage } from 'node:http';
import { Agent, request as httpsRequest } from 'node:https';
import type { Readable } from 'node:stream';
import { createSecureContext } from 'node:tls';
import { H2Connection, H2RequestError, NO_H2 } from './client-h2.ts';
import type { ClientCredentials } from './credentials.ts';
import { ApiError, isStatus, makeStatus } from './errors.ts';
import { MERGE_PATCH_TYPE } from './merge-patch.ts';
import { registry, resourcePath, type ResourceType } from './resources.ts';
import type { KubeObject, List, WatchEvent, WatchEventType } from './types.ts';

export { ApiError } from './errors.ts';

/** The server could not be reached, the connection broke, or it sent something that is not the API. */
export class ApiConnectionError extends Error {
  override readonly name = 'ApiConnectionError';
  /** Method and URL of the failed request. */
  readonly request: string;
  constructor(request: string, message: string, cause?: unknown) {
    super(`${request}: ${message}`, { cause });
    this.request = request;
  }
}

/** A resource name the registry does not know. */
export class UnknownResourceError extends Error {
  override readonly name = 'UnknownResourceError';
  constructor(resource: string) {
    super(`unknown resource type "${resource}"`);
  }
}

/** Options of list(). */
export interface ListRequestOptions {
  /** Limit to one namespace; omit to list across all namespaces. */
  namespace?: string;
  labelSelector?: string;
  fieldSelector?: string;
}

/** Options of watch(). */
export interface WatchRequestOptions extends ListRequestOptions {
  /** Resume after this version; omit or "0" to start with ADDED events for existing objects. */
  resourceVersion?: string;
  /** Ask for periodic BOOKMARK events. */
  allowWatchBookmarks?: boolean;
  /** Server closes the stream cleanly after this many seconds. */
  timeoutSeconds?: number;
  /** Aborting ends the iteration quietly. */
  signal?: AbortSignal;
  /** Called once the server accepted the watch (response headers arrived). */
  onOpen?: () => void;
}

/** Construction options of ApiClient. */
export interface ApiClientOptions {
  /** The CA to trust and the bearer token to send. */
  credentials: ClientCredentials;
  /** Per-request timeout for non-watch requests (default 30 s). */
  timeoutMs?: number;
  /**
   * Talk HTTPS over this Unix socket instead of TCP (netns labs: the apiserver
   * lives in a network namespace, the CLI reaches it through a socket file).
   * A base URL `unix:/path/api.sock` sets it too.
   */
  socketPath?: string;
  /**
   * HTTP/2 over TCP, all requests and watches on one connection (the default). false: HTTP/1.1, a connection per
   * watch, as kubectl is answered.
   */
  http2?: boolean;
}

/** A response's status, its body, and how to let go of it early. */
interface Opened {
  status: number;
  body: Readable;
  close(): void;
}

const WATCH_TYPES: readonly WatchEventType[] = ['ADDED', 'MODIFIED', 'DELETED', 'BOOKMARK', 'ERROR'];

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Decodes one watch line; throws on anything that is not a watch event. */
export function decodeWatchEvent<T>(line: string): WatchEvent<T> {
  const parsed: unknown = JSON.parse(line);
  if (!isRecord(parsed) || !WATCH_TYPES.includes(parsed.type as WatchEventType) || !isRecord(parsed.object)) {
    throw new Error(`not a watch event: ${line.slice(0, 200)}`);
  }
  return { type: parsed.type as WatchEventType, object: parsed.object as T };
}

/** Client for one apiserver. Reuses its connection(s); call close() when done. */
export class ApiClient {
  /** Base URL without trailing slash, e.g. `https://127.0.0.1:6443`. */
  readonly baseUrl: string;
  private readonly url: URL;
  private readonly agent: Agent;
  /** HTTP/2 to a TCP address; HTTP/1.1 through `agent` over a Unix socket (relayed byte for byte) or to a server without h2. */
  private h2?: H2Connection;
  private readonly token: string;
  private readonly timeoutMs: number;
  /** Set for `unix:` base URLs (or opts.socketPath): HTTP over a Unix socket. */
  readonly socketPath?: string;

  constructor(baseUrl: string, opts: ApiClientOptions) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    if (this.baseUrl.startsWith('unix:')) {
      // `unix:/abs/path/api.sock`: the path is the socket, relayed byte for byte to the
      // apiserver's TLS port; the certificate is checked against the name `localhost`.
      this.socketPath = this.baseUrl.slice('unix:'.length);
      if (!this.socketPath.startsWith('/')) throw new Error(`ApiClient: a unix: URL needs an absolute socket path, got ${baseUrl}`);
      this.url = new URL('https://localhost');
    } else {
      this.url = new URL(this.baseUrl);
      if (this.url.protocol !== 'https:') throw new Error(`ApiClient supports https:// and unix:/path URLs only, got ${baseUrl}`);
      this.socketPath = opts.socketPath;
    }
    this.token = opts.credentials.token;
    // One TLS context for all of this client's connections: given only `ca`, every new connection (an agent opens
    // one per watch) would parse the CA again into a context of its own.
    const secureContext = createSecureContext({ ca: opts.credentials.ca });
    this.agent = new Agent({ keepAlive: true, keepAliveMsecs: 1000, secureContext });
    if (!this.socketPath && (opts.http2 ?? true)) this.h2 = new H2Connection(this.url.origin, secureContext);
    this.timeoutMs = opts.timeoutMs ?? 30_000;
  }

  /** Resolves a resource name via the registry; throws UnknownResourceError. */
  resource(name: string | ResourceType): ResourceType {
    if (typeof name !== 'string') return name;
    const rt = registry.resolve(name);
    if (!rt) throw new UnknownResourceError(name);
    return rt;
  }

  /** Lists objects (across all namespaces unless `namespace` is given). */
  async list<T = KubeObject>(resource: string, opts: ListRequestOptions = {}): Promise<List<T>> {
    const rt = this.resource(resource);
    const q = query({ labelSelector: opts.labelSelector, fieldSelector: opts.fieldSelector });
    const body = await this.call('GET', resourcePath(rt, { namespace: opts.namespace }) + q);
    if (!isRecord(body) || !Array.isArray(body.items) || !isRecord(body.metadata)) throw this.protocolError('GET', 'list response is not a List');
    return body as unknown as List<T>;
  }

  /** Gets one object, or null when it does not exist. Namespaced kinds default to `default`. */
  async get<T = KubeObject>(resource: string, name: string, namespace?: string): Promise<T | null> {
    const rt = this.resource(resource);
    try {
      return (await this.call('GET', this.itemPath(rt, name, namespace))) as T;
    } catch (err) {
      if (err instanceof ApiError && err.code === 404) return null;
      throw err;
    }
  }

  /** Creates an object; the namespace is the argument, else the object's, else `default`. */
  async create<T = KubeObject>(resource: string, obj: object, namespace?: string): Promise<T> {
    const rt = this.resource(resource);
    const ns = rt.namespaced ? (namespace ?? metaOf(obj).namespace ?? 'default') : undefined;
    return (await this.call('POST', resourcePath(rt, { namespace: ns }), obj)) as T;
  }

  /** Replaces an object (PUT). Set metadata.resourceVersion for optimistic concurrency (409 on conflict). */
  async update<T = KubeObject>(resource: string, obj: object): Promise<T> {
    const rt = this.resource(resource);
    const meta = metaOf(obj);
    return (await this.call('PUT', this.itemPath(rt, meta.name, meta.namespace), obj)) as T;
  }

  /** Replaces an object's status (PUT .../status); other fields of `obj` are ignored by the server. */
  async updateStatus<T = KubeObject>(resource: string, obj: object): Promise<T> {
    const rt = this.resource(resource);
    const meta = metaOf(obj);
    return (await this.call('PUT', this.itemPath(rt, meta.name, meta.namespace, 'status'), obj)) as T;
  }

  /** JSON merge patch (RFC 7386) of an object. */
  async patch<T = KubeObject>(resource: string, name: string, patch: object, namespace?: string): Promise<T> {
    const rt = this.resource(resource);
    return (await this.call('PATCH', this.itemPath(rt, name, namespace), patch, MERGE_PATCH_TYPE)) as T;
  }

  /** JSON merge patch of an object's status subresource (`{status: {...}}`). */
  async patchStatus<T = KubeObject>(resource: string, name: string, patch: object, namespace?: string): Promise<T> {
    const rt = this.resource(resource);
    return (await this.call('PATCH', this.itemPath(rt, name, namespace, 'status'), patch, MERGE_PATCH_TYPE)) as T;
  }

  /** Deletes an object; returns its final state, or null when it did not exist. */
  async delete<T = KubeObject>(resource: string, name: string, namespace?: string): Promise<T | null> {
    const rt = this.resource(resource);
    try {
      return (await this.call('DELETE', this.itemPath(rt, name, namespace))) as T;
    } catch (err) {
      if (err instanceof ApiError && err.code === 404) return null;
      throw err;
    }
  }

  /**
   * Streams watch events. Ends when the server closes the stream (e.g.
   * timeoutSeconds) or the signal aborts; throws ApiError if the server
   * refuses the watch and ApiConnectionError if the connection breaks.
   * A 410 for a too-old resourceVersion arrives as an ERROR event.
   * Like any async generator it is lazy: the request is only sent when
   * iteration starts, so pass `resourceVersion` to avoid missing changes
   * made in between.
   */
  async *watch<T = KubeObject>(resource: string, opts: WatchRequestOptions = {}): AsyncGenerator<WatchEvent<T>, void, undefined> {
    const rt = this.resource(resource);
    const path =
      resourcePath(rt, { namespace: opts.namespace }) +
      query({
        watch: 'true',
        resourceVersion: opts.resourceVersion,
        labelSelector: opts.labelSelector,
        fieldSelector: opts.fieldSelector,
        allowWatchBookmarks: opts.allowWatchBookmarks ? 'true' : undefined,
        timeoutSeconds: opts.timeoutSeconds !== undefined ? String(opts.timeoutSeconds) : undefined,
      });
    const label = `GET ${this.baseUrl}${path}`;
    if (opts.signal?.aborted) return;
    const opened = await this.open('GET', path, undefined, undefined, opts.signal, false);
    if (!opened) return; // aborted before the response arrived
    const { status, body: res } = opened;
    try {
      if (status !== 200) {
        const text = await readAll(res).catch(() => '');
        throw toApiError(status, text);
      }
      opts.onOpen?.();
      res.setEncoding('utf8');
      let buf = '';
      try {
        for await (const chunk of res as AsyncIterable<string>) {
          buf += chunk;
          let nl: number;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl).trim();
            buf = buf.slice(nl + 1);
            if (line === '') continue;
            let ev: WatchEvent<T>;
            try {
              ev = decodeWatchEvent<T>(line);
            } catch (err) {
              throw new ApiConnectionError(label, `malformed watch stream: ${(err as Error).message}`, err);
            }
            yield ev;
          }
        }
      } catch (err) {
        if (opts.signal?.aborted) return;
        if (err instanceof ApiConnectionError) throw err;
        throw new ApiConnectionError(label, `watch stream broken: ${(err as Error).message}`, err);
      }
      if (buf.trim() !== '') yield decodeWatchEvent<T>(buf.trim());
    } finally {
      opened.close();
    }
  }

  /** Closes idle keep-alive connections (the HTTP/2 one once its streams end). The client stays usable. */
  close(): void {
    this.agent.destroy();
    this.h2?.close();
  }

  private itemPath(rt: ResourceType, name: string, namespace?: string, subresource?: string): string {
    return resourcePath(rt, { namespace: rt.namespaced ? (namespace ?? 'default') : undefined, name, subresource });
  }

  private protocolError(method: string, message: string): ApiConnectionError {
    return new ApiConnectionError(`${method} ${this.baseUrl}`, message);
  }

  /** One request/response with a JSON body; retries once when a reused keep-alive socket turns out dead. */
  private async call(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<unknown> {
    const label = `${method} ${this.baseUrl}${path}`;
    const payload = body === undefined ? undefined : JSON.stringify(body);
    for (let attempt = 0; ; attempt++) {
      let opened: Opened | null;
      try {
        opened = await this.open(method, path, payload, contentType, undefined, true);
      } catch (err) {
        const e = err as NodeJS.ErrnoException & { retryable?: boolean };
        if (attempt === 0 && e.retryable) continue;
        throw err instanceof ApiError || err instanceof ApiConnectionError ? err : new ApiConnectionError(label, e.message, err);
      }
      if (!opened) throw new ApiConnectionError(label, 'aborted');
      let text: string;
      try {
        text = await readAll(opened.body);
      } catch (err) {
        throw new ApiConnectionError(label, `response broken: ${(err as Error).message}`, err);
      }
      const code = opened.status;
      if (code < 200 || code >= 300) throw toApiError(code, text);
      try {
        return JSON.parse(text) as unknown;
      } catch (err) {
        throw new ApiConnectionError(label, `response is not JSON: ${text.slice(0, 200)}`, err);
      }
    }
  }

  /**
   * Sends a request and resolves with the response headers received, or
   * null when `signal` aborted first. `timed` applies the request timeout
   * (not for watches, which are long-lived by design).
   */
  private open(
    method: string,
    path: string,
    payload: string | undefined,
    contentType: string | undefined,
    signal: AbortSignal | undefined,
    timed: boolean,
  ): Promise<Opened | null> {
    const label = `${method} ${this.baseUrl}${path}`;
    if (this.h2) {
      return this.openH2(label, method, path, payload, contentType, signal, timed).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== NO_H2) throw err;
        this.h2 = undefined;
        return this.open(method, path, payload, contentType, signal, timed);
      });
    }
    return new Promise((resolve, reject) => {
      const headers: Record<string, string | number> = { Accept: 'application/json', Authorization: `Bearer ${this.token}` };
      if (payload !== undefined) {
        headers['Content-Type'] = contentType ?? 'application/json';
        headers['Content-Length'] = Buffer.byteLength(payload);
      }
      const req = httpsRequest({
        ...(this.socketPath ? { socketPath: this.socketPath, host: 'localhost', servername: 'localhost' } : { host: this.url.hostname.replace(/^\[|\]$/g, ''), port: this.url.port || 443 }),
        method,
        path,
        headers,
        agent: this.agent,
        signal,
      });
      let settled = false;
      req.on('response', (res: IncomingMessage) => {
        settled = true;
        resolve({ status: res.statusCode ?? 0, body: res, close: () => req.destroy() });
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (settled) return;
        settled = true;
        if (signal?.aborted) {
          resolve(null);
          return;
        }
        // A kept-alive socket the server had closed: the request never reached it, and goes again once.
        reject(requestFailed(label, err, req.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE')));
      });
      if (timed) {
        req.setTimeout(this.timeoutMs, () => req.destroy(new Error(`no response within ${this.timeoutMs} ms`)));
      }
      req.end(payload);
    });
  }

  private async openH2(label: string, method: string, path: string, payload: string | undefined, contentType: string | undefined, signal: AbortSignal | undefined, timed: boolean): Promise<Opened | null> {
    const headers: Record<string, string | number> = { ':method': method, ':path': path, accept: 'application/json', authorization: `Bearer ${this.token}` };
    if (payload !== undefined) {
      headers['content-type'] = contentType ?? 'application/json';
      headers['content-length'] = Buffer.byteLength(payload);
    }
    try {
      const res = await this.h2!.request(headers, payload, signal, timed ? this.timeoutMs : undefined);
      return res && { status: res.status, body: res.body, close: () => res.body.destroy() };
    } catch (err) {
      throw requestFailed(label, err as NodeJS.ErrnoException, err instanceof H2RequestError && err.retryable);
    }
  }
}

/** A request that failed before its response, with the cause's code; `retryable` when it goes again once. */
function requestFailed(label: string, err: NodeJS.ErrnoException, retryable: boolean): ApiConnectionError {
  const wrapped = new ApiConnectionError(label, err.code === 'ECONNREFUSED' ? 'connection refused (is the apiserver running?)' : err.message, err);
  return Object.assign(wrapped, { code: err.code, retryable });
}

function metaOf(obj: object): { name: string; namespace?: string } {
  const meta = (obj as { metadata?: unknown }).metadata;
  if (!isRecord(meta) || typeof meta.name !== 'string' || meta.name === '') throw new Error('object has no metadata.name');
  return { name: meta.name, namespace: typeof meta.namespace === 'string' ? meta.namespace : undefined };
}

function query(params: Record<string, string | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

function readAll(res: Readable): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let ended = false;
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => {
      ended = true;
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
    res.on('error', reject);
    res.on('aborted', () => reject(new Error('response aborted')));
    // An HTTP/2 stream reset mid-body (a timeout, the server gone) closes without 'aborted'.
    res.on('close', () => {
      if (!ended) reject(new Error('response closed before its end'));
    });
  });
}

/** Turns an error response into an ApiError, synthesizing a Status when the body is not one. */
function toApiError(code: number, text: string): ApiError {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  if (isStatus(parsed)) return new ApiError(parsed);
  const reason = code === 404 ? 'NotFound' : code === 409 ? 'Conflict' : code === 422 ? 'Invalid' : code === 410 ? 'Gone' : code === 405 ? 'MethodNotAllowed' : code >= 500 ? 'InternalError' : 'BadRequest';
  return new ApiError(makeStatus(code, reason, text.trim() || `HTTP ${code}`));
}
