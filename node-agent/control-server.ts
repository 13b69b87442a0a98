/**
 * The agent side of the control channel: a Unix socket server dispatching
 * calls to named handlers. A handler may stream output (exec) and is told
 * through an AbortSignal when the client cancels or disconnects.
 */
import fs from 'node:fs';
import net from 'node:net';
import { frame, parseClientMessage, type ServerMessage } from '../control-plane/node-control-protocol.ts';
import { StdinQueue } from './stdin-queue.ts';

export interface CallContext {
  stdout(s: string): void;
  stderr(s: string): void;
  /** Streams a structured item; false when the client is not keeping up. */
  emit(data: unknown): boolean;
  /** After a false emit: resolves when the client has caught up. */
  drained(): Promise<void>;
  signal: AbortSignal;
  /** What the client forwards as standard input ({t:'stdin'} messages); ends on {t:'stdin-end'}. */
  stdin?: AsyncIterable<Buffer>;
}

/** A call's handler: its value, or a promise of it (a throw, sync or async, becomes the error reply). */
export type Handler = (params: unknown, ctx: CallContext) => unknown;

export { controlSocketPath } from '../control-plane/node-control-protocol.ts';

/** A control-call failure the client should print as is. */
export class ControlError extends Error {
  override name = 'ControlError';
}

export class ControlServer {
  private server?: net.Server;
  private readonly handlers = new Map<string, Handler>();
  private readonly sockets = new Set<net.Socket>();

  constructor(readonly socketPath: string) {}

  handle(method: string, fn: Handler): void {
    this.handlers.set(method, fn);
  }

  async listen(): Promise<void> {
    fs.rmSync(this.socketPath, { force: true });
    const server = net.createServer((sock) => this.attach(sock));
    this.server = server;
    const oldMask = process.umask(0o177); // the socket is created 0600
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.socketPath, () => resolve());
      });
    } finally {
      process.umask(oldMask);
    }
    fs.chmodSync(this.socketPath, 0o600);
  }

  /** Serves one connected client (the Unix socket's, or another transport's: control-remote.ts). */
  attach(sock: net.Socket): void {
    this.sockets.add(sock);
    const ch = frame<unknown, ServerMessage>(sock);
    const running = new Map<number, AbortController>();
    const stdins = new Map<number, StdinQueue>();
    sock.on('close', () => {
      this.sockets.delete(sock);
      for (const ac of running.values()) ac.abort();
    });
    sock.on('error', () => {});
    ch.onMessage((raw) => {
      const parsed = parseClientMessage(raw);
      if (!parsed.ok) {
        ch.send({ t: 'err', id: parsed.id, error: { name: 'ControlProtocolError', message: parsed.error } });
        return;
      }
      const m = parsed.msg;
      if (m.t === 'cancel') {
        running.get(m.id)?.abort();
        return;
      }
      if (m.t === 'stdin' || m.t === 'stdin-end') {
        const q = stdins.get(m.id);
        if (m.t === 'stdin') q?.push(Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength));
        else q?.end();
        return;
      }
      const fn = this.handlers.get(m.method);
      if (!fn) {
        ch.send({ t: 'err', id: m.id, error: { name: 'ControlError', message: `unknown method ${m.method}` } });
        return;
      }
      const ac = new AbortController();
      running.set(m.id, ac);
      const stdin = new StdinQueue();
      stdins.set(m.id, stdin);
      ac.signal.addEventListener('abort', () => stdin.end(), { once: true });
      const ctx: CallContext = {
        stdout: (data) => void ch.send({ t: 'out', id: m.id, fd: 1, data }),
        stderr: (data) => void ch.send({ t: 'out', id: m.id, fd: 2, data }),
        emit: (data) => ch.send({ t: 'evt', id: m.id, data }),
        drained: () => ch.whenDrained(),
        signal: ac.signal,
        stdin,
      };
      // A handler that throws before it returns a promise is answered like one that rejects.
      Promise.resolve()
        .then(() => fn(m.params, ctx))
        .then(
        (result) => ch.send({ t: 'res', id: m.id, result: result ?? null }),
        (err: unknown) => {
          const e = err instanceof Error ? err : new Error(String(err));
          ch.send({ t: 'err', id: m.id, error: { name: e.name, message: e.message } });
        },
      ).finally(() => {
        running.delete(m.id);
        stdins.delete(m.id);
      });
    });
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
    fs.rmSync(this.socketPath, { force: true });
  }
}
