/**
 * The API client of bench/agent-services.ts, in a worker thread of its own so
 * that issuing 20,000 requests never delays the bench's probes: creates the
 * Services and EndpointSlices with 8 requests in flight, posts its progress,
 * and `done` at the end.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { ApiClient } from '../control-plane/client.ts';
import type { ClientCredentials } from '../control-plane/credentials.ts';
import { serviceObject, sliceObject } from './agent-services-objects.ts';

const { url, credentials, n, eps } = workerData as { url: string; credentials: ClientCredentials; n: number; eps: number };
// HTTP/1.1, as kubectl's requests are answered: the load the agents are measured under stays the same whatever
// protocol the agents' clients use.
const api = new ApiClient(url, { credentials, http2: false });
let next = 0;
let done = 0;
await Promise.all(
  Array.from({ length: 8 }, async () => {
    while (next < n) {
      const i = next++;
      await api.create('services', serviceObject(i), 'default');
      await api.create('endpointslices', sliceObject(i, eps), 'default');
      if (++done % 1000 === 0) parentPort!.postMessage({ t: 'progress', done });
    }
  }),
);
api.close();
parentPort!.postMessage({ t: 'done' });
