/**
 * Raw HTTPS requests to a podlab apiserver for tests that check the wire:
 * they trust the lab CA and send a bearer token like any client (or none,
 * to check that anonymous requests are refused).
 */
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import type { ClientCredentials } from '../../control-plane/credentials.ts';

/** A decoded response. */
export interface HttpsResponse {
  code: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  /** The body parsed as JSON, or undefined when it is not JSON. */
  json: unknown;
}

/**
 * One request. `creds.token` undefined sends no Authorization header; a
 * string body is sent as is, anything else as JSON (with Content-Length).
 */
export function httpsCall(
  url: string,
  creds: { ca: string; token?: string },
  opts: { method?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<HttpsResponse> {
  const payload = opts.body === undefined ? undefined : typeof opts.body === 'string' || Buffer.isBuffer(opts.body) ? opts.body : JSON.stringify(opts.body);
  const headers: Record<string, string> = {
    ...(creds.token ? { authorization: `Bearer ${creds.token}` } : {}),
    ...(payload !== undefined ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) } : {}),
    ...opts.headers,
  };
  return new Promise((resolve, reject) => {
    const req = request(url, { method: opts.method ?? 'GET', ca: creds.ca, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ code: res.statusCode ?? 0, headers: res.headers, text, json });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(payload);
  });
}

/** GET of a JSON document with admin credentials. */
export async function httpsJson<T>(url: string, creds: ClientCredentials, headers: Record<string, string> = {}): Promise<T> {
  const r = await httpsCall(url, creds, { headers });
  if (r.code !== 200) throw new Error(`GET ${url}: HTTP ${r.code}: ${r.text.slice(0, 300)}`);
  return r.json as T;
}

/** Established TCP connections in this process's network namespace to `port` (client ends: remote port = `port`). */
export function connectionsTo(port: number): number {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  return readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .slice(1)
    .filter((line) => {
      const f = line.trim().split(/\s+/);
      return f.length > 3 && f[2].endsWith(`:${hex}`) && f[3] === '01';
    }).length;
}
