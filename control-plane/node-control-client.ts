/**
 * The client side of a node agent's control channel: the CLI's, and the
 * apiserver's when it relays `kubectl exec` to the pod's node (pod-exec.ts),
 * as kube-apiserver talks to a kubelet.
 */
import net from 'node:net';
import { frame, type ClientMessage, type ServerMessage } from './node-control-protocol.ts';

/** A failed control call, carrying the agent's error name. */
export class RemoteError extends Error {
  constructor(
    override readonly name: string,
    message: string,
  ) {
    super(message);
  }
}

export class ControlClient {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void; out?: (fd: 1 | 2, s: string) => void; evt?: (d: unknown) => void }>();
  private ch!: ReturnType<typeof frame<ServerMessage, ClientMessage>>;
  private sock!: net.Socket;

  private constructor() {}

  /** Connects to an agent's Unix socket, or to `tcp://HOST:PORT` (an agent's remote control listener). */
  static async connect(socketPath: string, timeoutMs = 5000): Promise<ControlClient> {
    const c = new ControlClient();
    const tcp = /^tcp:\/\/([^:/]+):(\d+)$/.exec(socketPath);
    c.sock = tcp ? net.createConnection({ host: tcp[1], port: Number(tcp[2]) }) : net.createConnection(socketPath);
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timed out connecting to ${socketPath}`)), timeoutMs);
      c.sock.once('connect', () => (clearTimeout(t), resolve()));
      c.sock.once('error', (e) => (clearTimeout(t), reject(e)));
    });
    c.ch = frame<ServerMessage, ClientMessage>(c.sock);
    c.ch.onMessage((m) => c.dispatch(m));
    c.sock.on('close', () => {
      for (const p of c.pending.values()) p.reject(new Error('agent closed the control channel'));
      c.pending.clear();
    });
    c.sock.on('error', () => {});
    return c;
  }

  private dispatch(m: ServerMessage): void {
    const p = this.pending.get(m.id);
    if (!p) return;
    if (m.t === 'out') p.out?.(m.fd, m.data);
    else if (m.t === 'evt') p.evt?.(m.data);
    else {
      this.pending.delete(m.id);
      if (m.t === 'res') p.resolve(m.result);
      else p.reject(new RemoteError(m.error.name, m.error.message));
    }
  }

  /**
   * One call; `out` receives streamed output, `evt` structured stream items.
   * Returns the call id via `onId` for cancelling.
   */
  call<T = unknown>(method: string, params: unknown, out?: (fd: 1 | 2, s: string) => void, onId?: (id: number) => void, evt?: (d: unknown) => void): Promise<T> {
    const id = this.nextId++;
    onId?.(id);
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, out, evt });
      this.ch.send({ t: 'req', id, method, params });
    });
  }

  cancel(id: number): void {
    this.ch.send({ t: 'cancel', id });
  }

  /** Forwards bytes to a running call's standard input; false once the agent reads slower than we send. */
  sendStdin(id: number, data: Uint8Array): boolean {
    return this.ch.send({ t: 'stdin', id, data });
  }

  /** Resolves when a false sendStdin's data has drained. */
  whenDrained(): Promise<void> {
    return this.ch.whenDrained();
  }

  /** Stops reading the agent's messages (back-pressure on its streamed output), until resume(). */
  pause(): void {
    this.sock.pause();
  }

  resume(): void {
    this.sock.resume();
  }

  /** Ends a running call's standard input (EOF). */
  endStdin(id: number): void {
    this.ch.send({ t: 'stdin-end', id });
  }

  close(): void {
    this.sock.end();
    this.sock.destroy();
  }
}
