/**
 * kube-proxy's engine in a worker thread of the node agent (started by
 * ./engine-worker.ts): syncs of 10,000 Services take hundreds of milliseconds,
 * and in here they hold up only first-packet decisions, never the packets of
 * established connections on the agent's thread.
 */
import os from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { monotonicClock } from '../common/clock.ts';
import { SeededRng } from '../common/rng.ts';
import { createServiceProxyEngine } from './index.ts';
import { EngineServer, type EngineWorkerInit, type ToEngine } from './worker-protocol.ts';

const init = workerData as EngineWorkerInit;
// Below the data plane's thread on a busy CPU, as kube-proxy's syncs are below the kernel's packet path: on
// Linux a nice value is per thread, and 0 names the calling one (this worker's, not the agent's).
try {
  os.setPriority(0, 10);
} catch {
  /* not permitted here: the same priority, still off the data plane's thread */
}
const port = parentPort!;
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
// Syncs queued behind each other collapse into one: the latest objects are what counts.
let syncDue = false;
port.on('message', (m: ToEngine) => {
  if (m.t !== 'sync') return server.handle(m);
  if (syncDue) return;
  syncDue = true;
  setImmediate(() => {
    syncDue = false;
    server.sync();
  });
});
port.postMessage({ t: 'ready' });
