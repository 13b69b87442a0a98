/**
 * The apiserver's second door: a Unix socket in the lab's state directory
 * that carries the same HTTP as its TCP listener, byte for byte.
 *
 * Why: in a netns lab the apiserver listens on the lab bridge's address inside
 * the `podlab-underlay` network namespace, which the CLI in the root namespace
 * cannot route to (and must not: no lab address is ever added to the root
 * namespace). A Unix socket is a file, not bound to a network namespace, so
 * the CLI reaches it from anywhere (`ApiClient('unix:/path/api.sock')`).
 *
 * It is a plain stream relay to the TCP listener rather than a second HTTP
 * server, so watches, keep-alive and errors behave exactly as over TCP.
 */
import fs from 'node:fs';
import net from 'node:net';

/** A running relay; close() stops accepting, drops connections and removes the socket file. */
export interface UnixRelay {
  path: string;
  close(): Promise<void>;
}

/** Listens on `socketPath` (mode 0600) and relays every connection to `host:port`. */
export async function startUnixRelay(socketPath: string, host: string, port: number): Promise<UnixRelay> {
  fs.rmSync(socketPath, { force: true });
  const conns = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect({ host, port });
    conns.add(client).add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      conns.delete(client);
      conns.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  const oldMask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => resolve());
    });
  } finally {
    process.umask(oldMask);
  }
  return {
    path: socketPath,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of conns) c.destroy();
        server.close(() => {
          fs.rmSync(socketPath, { force: true });
          resolve();
        });
      }),
  };
}
