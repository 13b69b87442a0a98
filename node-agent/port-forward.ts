/**
 * The kubelet's side of `kubectl port-forward`: one forwarded connection is
 * one TCP connection opened inside the pod's own stack to localhost:PORT,
 * as containerd does it (it enters the pod's network namespace and dials
 * 127.0.0.1), so an app bound to the pod's loopback is reachable and the
 * connection meets no Service rule or NetworkPolicy on the way.
 *
 * Over the control channel (control-plane/pod-port-forward.ts is the other
 * end): the client's bytes arrive as the call's standard input, its
 * half-close as stdin's end (a FIN to the app); the app's bytes go back as
 * `evt` items (Buffers), paced by the channel's back-pressure. The call ends
 * when the connection does: the app closed it, the client cancelled, or it
 * failed (the error names the dial as the kubelet's message does).
 */
import { once } from 'node:events';
import type { PodNet } from '../netstack/pod-net.ts';
import type { TcpError } from '../netstack/tcp/errors.ts';
import { ControlError, type CallContext } from './control-server.ts';

/** What `pod.portforward` returns: bytes each way. */
export interface ForwardResult {
  sent: number;
  received: number;
}

export async function forwardPodPort(pod: PodNet, port: number, ctx: CallContext): Promise<ForwardResult> {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new ControlError(`invalid port ${String(port)}: must be 1-65535`);
  const sock = pod.tcp.connect({ host: '127.0.0.1', port });
  try {
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', resolve);
      sock.once('error', reject);
      ctx.signal.addEventListener('abort', () => reject(new Error('cancelled')), { once: true });
    });
  } catch (e) {
    sock.destroy();
    const code = (e as TcpError).code;
    const why = code === 'ECONNREFUSED' ? 'connect: connection refused' : (e as Error).message;
    throw new ControlError(`failed to connect to localhost:${port} inside namespace "${pod.key}", IPv4: dial tcp4 127.0.0.1:${port}: ${why}`);
  }
  const result: ForwardResult = { sent: 0, received: 0 };
  // Done when the socket is closed AND its data was all read: a socket paused for back-pressure can see
  // 'close' (the 4-tuple entering TIME-WAIT) before its held data and 'end', which resume() still delivers.
  let ended = false;
  let failed = false;
  let isClosed = false;
  const closed = new Promise<void>((resolve) => {
    const check = (): void => {
      if (isClosed && (ended || failed || ctx.signal.aborted)) resolve();
    };
    sock.on('end', () => ((ended = true), check()));
    sock.on('error', () => ((failed = true), check()));
    sock.once('close', () => ((isClosed = true), check()));
    ctx.signal.addEventListener('abort', check, { once: true });
  });
  sock.on('data', (d) => {
    result.received += d.length;
    // A client behind on reading: stop reading the app (its window closes) until the channel drains.
    if (!ctx.emit(d)) {
      sock.pause();
      void ctx.drained().then(() => sock.resume());
    }
  });
  ctx.signal.addEventListener('abort', () => sock.destroy(), { once: true });
  const pump = async (): Promise<void> => {
    for await (const chunk of ctx.stdin ?? []) {
      if (sock.destroyed || sock.writableEnded) return;
      result.sent += chunk.length;
      if (!sock.write(chunk)) await Promise.race([once(sock, 'drain'), closed]);
    }
    // The client's half-close: the app reads end of file and answers what it has.
    if (!sock.destroyed && !ctx.signal.aborted) sock.end();
  };
  void pump().catch(() => sock.destroy());
  await closed;
  return result;
}
