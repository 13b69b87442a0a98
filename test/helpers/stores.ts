/**
 * The apiserver's API tests run against both stores (`--store sqlite`, the
 * default, and `--store etcd://`), as CI runs them: `storeTest` registers a
 * test once per store, titled `[etcd]` for the second, and `storeOf(t)` tells
 * the test's helpers which one it is.
 *
 * etcd's revision is global, so every apiserver needs an etcd of its own; a
 * file keeps a pool of them on fixed client ports (23800-23809 are the API
 * tests'; peer port = client + 1), leased by one test at a time and emptied
 * between leases, so the suite pays for each etcd's start once. Their data
 * lives in /dev/shm: these tests are of the API, the kill -9 ones
 * (control-plane-restart.test.ts) use a disk. In CI
 * a missing etcd fails the etcd variants; elsewhere they are skipped.
 */
import test, { type ExecutionContext } from 'ava';
import { EtcdPersister } from '../../control-plane/etcd-persister.ts';
import { registry, resourceKeyOf } from '../../control-plane/resources.ts';
import { launchEtcd, type TestEtcd } from './etcd.ts';
import { hasTool, requireOrSkip } from './lab.ts';

export type StoreKind = 'sqlite' | 'etcd';
export const STORE_KINDS: readonly StoreKind[] = ['sqlite', 'etcd'];

const stores = new WeakMap<object, StoreKind>();

/** The store the running test is for (sqlite for tests not registered by {@link storeTest}). */
export function storeOf(t: object): StoreKind {
  return stores.get(t) ?? 'sqlite';
}

/** Registers `fn` once per store: `title`, and `title [etcd]`. */
export function storeTest(title: string, fn: (t: ExecutionContext) => Promise<void> | void): void {
  for (const kind of STORE_KINDS) {
    // The etcd store commits synchronously (control-plane/sync-http.ts blocks the thread until etcd
    // answers): run those variants one at a time, before the concurrent ones, so they never stall a
    // timing-sensitive test beside them (ava runs serial tests first).
    (kind === 'etcd' ? test.serial : test)(kind === 'sqlite' ? title : `${title} [etcd]`, async (t) => {
      if (kind === 'etcd' && !requireOrSkip(t, hasTool('etcd'), 'etcd not found (apt-get install etcd-server): the [etcd] variant needs it')) return;
      stores.set(t, kind);
      await fn(t);
    });
  }
}

/** etcds on fixed ports, each leased by one test at a time. */
export class EtcdPool {
  private readonly idle: TestEtcd[] = [];
  private readonly waiting: ((e: TestEtcd) => void)[] = [];
  private readonly stops: (() => void)[] = [];
  private next = 0;

  /** `ports`: the client port of each etcd this pool may start (peer port = client + 1). */
  constructor(private readonly ports: readonly number[]) {
    test.after.always(() => {
      for (const stop of this.stops) stop();
    });
  }

  /** An empty etcd for this test; call the returned release once the apiserver on it is closed. */
  async lease(): Promise<{ etcd: TestEtcd; release: () => Promise<void> }> {
    let etcd = this.idle.pop();
    if (!etcd && this.next < this.ports.length) {
      const { etcd: e, stop } = await launchEtcd(this.ports[this.next++], { inMemory: true });
      this.stops.push(stop);
      etcd = e;
    }
    etcd ??= await new Promise<TestEtcd>((resolve) => this.waiting.push(resolve));
    const leased = etcd;
    return {
      etcd: leased,
      release: async () => {
        await wipe(leased);
        const w = this.waiting.shift();
        if (w) w(leased);
        else this.idle.push(leased);
      },
    };
  }

  /** A persister on a leased etcd, for openStore or startApiServer. */
  static persister(etcd: TestEtcd): EtcdPersister {
    return new EtcdPersister(etcd.base, registry.all().map(resourceKeyOf));
  }
}

/** Deletes every key: the next store on this etcd starts empty (at a later revision, as after a compaction). */
async function wipe(etcd: TestEtcd): Promise<void> {
  const all = Buffer.from([0]).toString('base64');
  const res = await fetch(`${etcd.base}/v3/kv/deleterange`, { method: 'POST', body: JSON.stringify({ key: all, range_end: all }) });
  if (!res.ok) throw new Error(`etcd ${etcd.base}: deleterange: HTTP ${res.status}`);
}

/**
 * What startApiServer takes for the test's store: nothing for SQLite (the state
 * dir), a persister on an etcd leased from `pool` for [etcd]; `reopen` gives the
 * same for a restarted apiserver on the same store (a closed apiserver closes
 * its persister). Call `release` after the last apiserver is closed.
 */
export async function storeOptions(t: object, pool: EtcdPool): Promise<{ options: { persister?: EtcdPersister }; reopen: () => { persister?: EtcdPersister }; release: () => Promise<void> }> {
  if (storeOf(t) !== 'etcd') return { options: {}, reopen: () => ({}), release: () => Promise.resolve() };
  const lease = await pool.lease();
  return { options: { persister: EtcdPool.persister(lease.etcd) }, reopen: () => ({ persister: EtcdPool.persister(lease.etcd) }), release: lease.release };
}
