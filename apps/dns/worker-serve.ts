/**
 * A CoreDNS pod's process: code off the data plane's thread, started by
 * ./coredns.ts, as real CoreDNS is a process of its own. In an agent it runs
 * on the thread the agent shares with kube-proxy's engine (a thread of its
 * own would cost a whole Node environment, ~10 MB); without one
 * (./worker.ts) on its own thread. It lists and watches
 * Services, EndpointSlices and Namespaces with the pod's apiserver URL and
 * credentials, keeps them indexed (./dns-index.ts) and the SOA serial, and
 * turns each query's bytes into the response's bytes. The data plane's
 * thread keeps only the pod's sockets: it neither decodes watch events nor
 * holds any object, and no query scans all Services.
 */
import type { MessagePort } from 'node:worker_threads';
import { ApiClient } from '../../control-plane/client.ts';
import { Informer } from '../../control-plane/informer.ts';
import type { EndpointSlice, Service } from '../../control-plane/service-resources.ts';
import type { KubeObject } from '../../control-plane/types.ts';
import { DnsIndex } from './dns-index.ts';
import { answerQuery } from './kubernetes.ts';
import type { DnsMessage } from '../../packet/dns.ts';
import { respond, takeQuery, type DnsTransport, type Served } from './serve.ts';
import { ownBytes, type DnsWorkerInit, type FromDnsWorker, type ToDnsWorker } from './worker-protocol.ts';

/** Queries held until the first lists are in, as CoreDNS holds its readiness; more are dropped. */
const HELD_MAX = 256;
/** Object counts are reported at most this often. */
const REPORT_MS = 250;

export function serve(port: MessagePort, workerData: unknown): () => void {
  const init = workerData as DnsWorkerInit;
  const post = (m: FromDnsWorker, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);

  const index = new DnsIndex();
  const api = new ApiClient(init.api.url, { credentials: init.api.credentials });
  const services = new Informer<Service>(api, 'services');
  const slices = new Informer<EndpointSlice>(api, 'endpointslices');
  const namespaces = new Informer<KubeObject>(api, 'namespaces');
  const informers = [services, slices, namespaces];
  // The SOA serial moves with the data, as CoreDNS's does (seconds of the last change).
  let serial = Math.floor(Date.now() / 1000);
  let reportTimer: NodeJS.Timeout | undefined;
  const report = () => {
    reportTimer = undefined;
    post({ t: 'objects', ...index.size, synced: synced() });
  };
  const changed = () => {
    serial = Math.max(serial + 1, Math.floor(Date.now() / 1000));
    reportTimer ??= setTimeout(report, REPORT_MS);
  };
  services.on('add', (s) => (index.putService(s), changed())).on('update', (_o, s) => (index.putService(s), changed())).on('delete', (s) => (index.deleteService(s), changed()));
  slices.on('add', (s) => (index.putSlice(s), changed())).on('update', (_o, s) => (index.putSlice(s), changed())).on('delete', (s) => (index.deleteSlice(s), changed()));
  namespaces.on('add', (n) => (index.putNamespace(n), changed())).on('update', (_o, n) => (index.putNamespace(n), changed())).on('delete', (n) => (index.deleteNamespace(n), changed()));

  const synced = () => informers.every((i) => i.hasSynced);
  /** Queries waiting for the first lists, parsed. */
  const held: { id: number; q: DnsMessage; transport: DnsTransport }[] = [];
  void Promise.all(informers.map((i) => i.start())).then(() => {
    report();
    for (const h of held.splice(0)) reply(h.id, respond(h.q, answerQuery(index, h.q, serial), h.transport));
  });

  function reply(id: number, served: Served): void {
    const out = served.out && ownBytes(served.out);
    post({ t: 'answer', id, ...(out ? { out } : {}), outcome: served.outcome, truncated: served.truncated }, out ? [out.buffer as ArrayBuffer] : []);
  }

  port.on('message', (m: ToDnsWorker) => {
    const q = takeQuery(Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength));
    if ('outcome' in q) return reply(m.id, q);
    if (synced()) return reply(m.id, respond(q, answerQuery(index, q, serial), m.transport));
    if (held.length < HELD_MAX) return void held.push({ id: m.id, q, transport: m.transport });
    post({ t: 'answer', id: m.id, outcome: 'dropped', truncated: false });
  });
  post({ t: 'ready' });
  return () => {
    if (reportTimer) clearTimeout(reportTimer);
    for (const i of informers) void i.stop();
    port.close();
  };
}
