/**
 * The apiserver of bench/sync-stall.ts, in a process of its own as in a lab:
 * `node --import tsx bench/sync-stall-apiserver.ts STATE_DIR COUNT EPS`
 * serves COUNT Services (no selector, so no controller rewrites their
 * slices) and their EndpointSlices of EPS endpoints on 127.0.0.1 and prints
 * one JSON line with its address and credentials; it stops when its stdin
 * closes. The objects go straight into the store, in one transaction
 * (through the API it takes about a minute, and what the bench measures is
 * the worker's list and sync, not the creation); that store (~20 s to fill)
 * is kept in the temporary directory and copied for the next run.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startApiServer } from '../control-plane/apiserver.ts';
import { openStore } from '../control-plane/store.ts';
import { makeCluster } from './services.ts';

const [dir, countArg, epsArg] = process.argv.slice(2);
const count = Number(countArg ?? 10_000);
const eps = Number(epsArg ?? 10);

/** Bump when the objects change: a kept store of older objects is not reused. */
const VERSION = 1;
const kept = path.join(os.tmpdir(), `podlab-sync-stall-store-v${VERSION}-${count}x${eps}`);
const t0 = performance.now();
if (!fs.existsSync(path.join(kept, 'apiserver', 'store.db'))) {
  const filling = `${kept}.${process.pid}`;
  fs.rmSync(filling, { recursive: true, force: true });
  const store = openStore({ stateDir: filling, groupCommit: true });
  const { services, slices } = makeCluster(count, eps);
  for (const s of services) {
    const spec = { ...(s.spec as Record<string, unknown>) };
    delete spec.selector;
    store.create('services', { ...s, metadata: { name: s.metadata.name, namespace: 'default' }, spec });
  }
  for (const s of slices) store.create('endpointslices', { ...s, metadata: { name: s.metadata.name, namespace: 'default', labels: s.metadata.labels } });
  await store.committed();
  store.close();
  fs.renameSync(filling, kept);
}
fs.mkdirSync(path.join(dir, 'apiserver'), { recursive: true });
fs.copyFileSync(path.join(kept, 'apiserver', 'store.db'), path.join(dir, 'apiserver', 'store.db'));
const filledMs = performance.now() - t0;
const server = await startApiServer({ host: '127.0.0.1', port: 0, stateDir: dir });
process.stdout.write(`${JSON.stringify({ url: server.url, credentials: server.credentials, filledMs })}\n`);
process.stdin.resume();
process.stdin.on('end', () => void server.close().then(() => process.exit(0)));
