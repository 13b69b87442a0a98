/**
 * kube-proxy's engine in a worker thread of the node agent (started by
 * ./engine-worker.ts): syncs of 10,000 Services take hundreds of milliseconds,
 * and in here they hold up only first-packet decisions, never the packets of
 * established connections on the agent's thread.
 *
 * Given the apiserver (`api`), it is kube-proxy's own process as in a real
 * cluster: it lists and watches Services and EndpointSlices itself, so the
 * data plane's thread neither decodes them nor holds them; its first sync
 * waits for both lists, so no decision is made from half of them.
 *
 * `serve` runs it on a port: its own thread's (./worker.ts), or one of a
 * thread shared with the agent's other workers (common/module-worker.ts
 * SharedThread); it returns how to stop it.
 */
import type { MessagePort } from 'node:worker_threads';
import { monotonicClock } from '../common/clock.ts';
import { ApiClient } from '../control-plane/client.ts';
import { Informer, objectKey } from '../control-plane/informer.ts';
import type { KubeObject } from '../control-plane/types.ts';
import { SeededRng } from '../common/rng.ts';
import { lowerThisThread, threadId } from '../common/thread-priority.ts';
import { createServiceProxyEngine } from './index.ts';
import { EngineServer, type EngineWorkerInit, type FromEngine, type ToEngine } from './worker-protocol.ts';

/** A sync's work between two looks at the messages (decisions wait at most about this long, plus one message's handling). */
const STEP_MS = 4;
/** PODLAB_ENGINE_SYNC=whole: each sync in one go, decisions waiting for it (what the steps save: bench/sync-stall.ts). */
const WHOLE = process.env.PODLAB_ENGINE_SYNC === 'whole';

export function serve(port: MessagePort, workerData: unknown): () => void {
  const init = workerData as EngineWorkerInit;
  // Below the data plane's thread on a busy CPU, as kube-proxy's syncs are below the kernel's packet path: on
  // Linux a nice value is per thread. Not SCHED_IDLE (PODLAB_ENGINE_SCHED=idle, to measure it): there a full sync of
  // 10,000 Services did not finish in 60 s while two of the agent's threads kept the 2 cores busy; at nice 10 it took 4.6 s.
  const priority = process.env.PODLAB_ENGINE_SCHED === 'idle' ? lowerThisThread('idle', 19) : lowerThisThread('nice', 10);
  let closed = false;
  const engine = createServiceProxyEngine(init.mode, {
    nodeName: init.nodeName,
    nodeIP: init.nodeIP,
    localAddresses: init.localAddresses,
    clusterCidr: init.clusterCidr,
    loopbackCidr: init.loopbackCidr,
    ipvsScheduler: init.ipvsScheduler,
    clock: monotonicClock,
    rng: new SeededRng(init.seed),
  });
  const server = new EngineServer(engine, (m) => port.postMessage(m));
  // A sync runs in steps of a few ms, with the messages that arrived (decisions above all) handled between them;
  // syncs asked for meanwhile collapse into one after it: the latest objects are what counts.
  let syncDue = false;
  let syncing = false;
  /** False until the worker's own informers have their first lists. */
  let listed = !init.api;
  function startSync(): void {
    if (closed) return;
    syncDue = false;
    syncing = true;
    const steps = server.syncSteps(WHOLE ? Infinity : STEP_MS);
    const step = () => {
      if (closed) return;
      if (!steps.next().done) return void setImmediate(step);
      syncing = false;
      if (syncDue) setImmediate(startSync);
    };
    step();
  }
  function syncSoon(): void {
    if (syncDue || !listed) return;
    syncDue = true;
    if (!syncing) setImmediate(startSync);
  }
  port.on('message', (m: ToEngine) => {
    if (m.t !== 'sync') return server.handle(m);
    syncSoon();
  });
  const informers: Informer<KubeObject>[] = [];
  if (init.api) {
    const client = new ApiClient(init.api.url, { credentials: init.api.credentials });
    const started = (['services', 'endpointslices'] as const).map((kind) => {
      const inf = new Informer(client, kind);
      informers.push(inf);
      inf.on('add', (o) => (server.put(kind, objectKey(o), o), syncSoon()));
      inf.on('update', (_old, o) => (server.put(kind, objectKey(o), o), syncSoon()));
      inf.on('delete', (o) => (server.delete(kind, objectKey(o)), syncSoon()));
      inf.on('status', (st) => port.postMessage({ t: 'informer', kind, state: st.state, ...(st.error ? { error: st.error.message } : {}) } satisfies FromEngine));
      return inf.start();
    });
    void Promise.all(started).then(() => {
      listed = true;
      syncSoon();
    });
  }
  port.postMessage({ t: 'ready', priority, tid: threadId() });
  return () => {
    closed = true;
    for (const inf of informers) void inf.stop();
    port.close();
  };
}
