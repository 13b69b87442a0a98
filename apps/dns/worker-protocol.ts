/**
 * Messages between a CoreDNS pod's app on the data plane's thread
 * (./coredns.ts) and its worker thread (./worker.ts). A query's and an
 * answer's bytes travel in an ArrayBuffer of their own that is transferred,
 * not copied.
 */
import type { ClientCredentials } from '../../control-plane/credentials.ts';
import type { DnsTransport, Served } from './serve.ts';

export interface DnsWorkerInit {
  api: { url: string; credentials: ClientCredentials };
}

export type ToDnsWorker = { t: 'query'; id: number; data: Uint8Array; transport: DnsTransport };

export type FromDnsWorker =
  | { t: 'ready' }
  /** `dropped`: held while the first lists were not in, beyond the 256 CoreDNS holds. */
  | { t: 'answer'; id: number; out?: Uint8Array; outcome: Served['outcome'] | 'dropped'; truncated: boolean }
  /** What the worker holds, after changes (at most a few times a second). */
  | { t: 'objects'; services: number; endpointslices: number; namespaces: number; synced: boolean };

/** `b`'s bytes in an ArrayBuffer of their own, to transfer: a Buffer is often a view into a larger (pooled) one, which must be neither detached nor cloned whole. */
export function ownBytes(b: Uint8Array): Uint8Array {
  if (b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && b.buffer instanceof ArrayBuffer) return b;
  return new Uint8Array(b);
}
