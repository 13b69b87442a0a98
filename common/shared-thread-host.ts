/**
 * The thread side of a SharedThread (./module-worker.ts): a worker entry
 * calls `hostTenants` with the tenants it may run, each a module whose
 * `serve` runs its code on a MessagePort (what it would otherwise do on
 * `parentPort`) and returns how to stop it (stop watching, close timers).
 */
import { parentPort } from 'node:worker_threads';
import type { TenantServe, ToSharedThread } from './module-worker.ts';

export function hostTenants(tenants: Record<string, () => Promise<{ serve: TenantServe }>>): void {
  const stops = new Map<number, () => void>();
  const detached = new Set<number>();
  parentPort!.on('message', (m: ToSharedThread) => {
    if (m.t === 'detach') {
      const stop = stops.get(m.id);
      stops.delete(m.id);
      if (stop) stop();
      else detached.add(m.id);
      return;
    }
    const load = tenants[m.entry];
    if (!load) throw new Error(`shared thread: no tenant ${m.entry}`);
    void load().then((mod) => {
      // Detached while its code was loading.
      if (detached.delete(m.id)) return m.port.close();
      stops.set(m.id, mod.serve(m.port, m.workerData));
    });
  });
}
