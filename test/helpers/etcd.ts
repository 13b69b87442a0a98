/**
 * A real etcd for tests of `--store etcd://`: Debian's etcd-server on
 * 127.0.0.1 with a temporary data dir, stopped by pid and removed at teardown.
 * In CI a missing etcd is a failure; elsewhere the test is skipped.
 */
import type { ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hasTool, requireOrSkip } from './lab.ts';
import { systemTool } from '../../common/system-tool.ts';

/** A running etcd. */
export interface TestEtcd {
  /** `etcd://127.0.0.1:PORT`, as the apiserver's --store takes it. */
  store: string;
  /** `http://127.0.0.1:PORT`, the v3 JSON gateway. */
  base: string;
  /** Reads every key under a prefix (for layout checks). */
  keys(prefix: string): Promise<{ key: string; value: string; modRevision: number }[]>;
}

/**
 * Starts etcd with its client port on `clientPort` and peer port on
 * `clientPort + 1`, or returns undefined when the test is skipped.
 */
export async function startEtcd(t: ExecutionContext, clientPort: number): Promise<TestEtcd | undefined> {
  if (!requireOrSkip(t, hasTool('etcd'), 'etcd not found (apt-get install etcd-server)')) return undefined;
  const { etcd, stop } = await launchEtcd(clientPort);
  t.teardown(stop);
  return etcd;
}

/**
 * Starts etcd on `clientPort` (peer port `clientPort + 1`) with a temporary data dir; `stop` kills it by pid
 * and removes the dir. `inMemory` puts the dir on /dev/shm where there is one: an fsync costs nothing there,
 * for tests of the API rather than of durability.
 */
/**
 * Refuses a port something already listens on: an etcd left running there (a
 * killed test run's) would answer the readiness probe before ours failed to
 * bind, and the test would share its keys with whatever wrote them.
 */
async function assertFree(port: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', (e: NodeJS.ErrnoException) =>
      reject(new Error(e.code === 'EADDRINUSE' ? `port ${port} is already in use (an etcd left by an earlier run? \`ss -ltnp sport = :${port}\`)` : `port ${port}: ${e.message}`)),
    );
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve()));
  });
}

export async function launchEtcd(clientPort: number, o: { inMemory?: boolean } = {}): Promise<{ etcd: TestEtcd; stop: () => void }> {
  await assertFree(clientPort);
  await assertFree(clientPort + 1);
  const dir = mkdtempSync(join(o.inMemory && existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'podlab-etcd-'));
  const client = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${clientPort + 1}`;
  let log = '';
  // The same etcd hasTool found (the system's directories), not whatever PATH names first.
  const child = spawn(
    systemTool('etcd') ?? 'etcd',
    [
      '--name', 'podlab-test', '--data-dir', dir,
      '--listen-client-urls', client, '--advertise-client-urls', client,
      '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer, '--initial-cluster', `podlab-test=${peer}`,
      // kube-apiserver accepts 3 MiB bodies; etcd's default request limit is 1.5 MiB.
      '--max-request-bytes', String(8 * 1024 * 1024),
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  child.stderr?.setEncoding('utf8').on('data', (c: string) => (log = (log + c).slice(-4000)));
  let spawnError: Error | undefined;
  child.on('error', (e) => (spawnError = e));
  const stop = () => {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      const res = await fetch(`${client}/v3/kv/range`, { method: 'POST', body: JSON.stringify({ key: Buffer.from('/').toString('base64') }) });
      // Ready only if it is ours: a child that exited answers nothing.
      if (res.ok && child.exitCode === null) break;
    } catch {
      // not listening yet
    }
    if (spawnError || child.exitCode !== null || Date.now() > deadline) {
      stop();
      throw new Error(`etcd did not start on ${client}: ${spawnError?.message ?? log}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const etcd: TestEtcd = {
    store: `etcd://127.0.0.1:${clientPort}`,
    base: client,
    async keys(prefix) {
      const end = Buffer.from(prefix);
      end[end.length - 1]++;
      const res = await fetch(`${client}/v3/kv/range`, { method: 'POST', body: JSON.stringify({ key: Buffer.from(prefix).toString('base64'), range_end: end.toString('base64') }) });
      const body = (await res.json()) as { kvs?: { key: string; value: string; mod_revision: string }[] };
      return (body.kvs ?? []).map((kv) => ({
        key: Buffer.from(kv.key, 'base64').toString(),
        value: Buffer.from(kv.value, 'base64').toString(),
        modRevision: Number(kv.mod_revision),
      }));
    },
  };
  return { etcd, stop };
}
