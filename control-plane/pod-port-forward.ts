/**
 * `kubectl port-forward` through the apiserver: the `portforward`
 * subresource of a Pod, `/api/v1/namespaces/{ns}/pods/{name}/portforward`,
 * served as the kubelet serves it and relayed to the pod's node agent (found
 * as for exec: pod-exec.ts's agentAddress).
 *
 * Two ways in, one protocol (`portforward.k8s.io` over SPDY/3.1,
 * control-plane/spdy-session.ts):
 * - `POST` with `Upgrade: SPDY/3.1` and `X-Stream-Protocol-Version:
 *   portforward.k8s.io` (kubectl up to 1.30, and later ones when the
 *   WebSocket attempt is refused);
 * - a WebSocket with subprotocol `SPDY/3.1+portforward.k8s.io`, whose binary
 *   messages carry the same SPDY byte stream (kubectl 1.31+, or 1.30 with
 *   KUBECTL_PORT_FORWARD_WEBSOCKETS=true), as kube-apiserver's tunnel does.
 *
 * Each forwarded connection is two streams the client opens with the same
 * `requestID` header and a `port` header: `streamType: error` (which kubectl
 * only reads) and `streamType: data`. Once both are there, the agent's
 * `pod.portforward` call dials the port on the pod's localhost; the data
 * stream carries the bytes and its FIN the half-close; when the connection
 * ends both streams are closed, and a failure is written to the error stream
 * first, worded as the kubelet words it. A pair not complete within 30 s
 * (the kubelet's stream creation timeout) is given up.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { SpdyRstStatus } from '../packet/spdy.ts';
import type { Identity } from './auth.ts';
import { makeStatus, notFound } from './errors.ts';
import { ControlClient } from './node-control-client.ts';
import { agentAddress, refuse, statusOf } from './pod-exec.ts';
import { SpdyServerSession, type SpdyStream, type SpdyTransport } from './spdy-session.ts';
import type { Node, Pod } from './types.ts';

export const PORT_FORWARD_PROTOCOL = 'portforward.k8s.io';
/** The WebSocket subprotocol of SPDY tunnelled in WebSocket binary messages. */
export const PORT_FORWARD_TUNNEL_PROTOCOL = `SPDY/3.1+${PORT_FORWARD_PROTOCOL}`;

export const PORT_FORWARD_PATH = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/portforward$/;

/** The kubelet's DefaultStreamCreationTimeout: a pair's second stream must come within this. */
export const STREAM_CREATION_TIMEOUT_MS = 30_000;

/** What a WebSocket tunnel may hold unsent before the relay stops reading the agent. */
const WS_HIGH_WATER = 1 << 20;

export interface PortForwardDeps {
  stateDir: string;
  authenticate(req: IncomingMessage): Identity | undefined;
  authorize(who: Identity, namespace: string, name: string, subresource: 'portforward'): void;
  getPod(namespace: string, name: string): Pod | undefined;
  getNode(name: string): Node | undefined;
  /** Overrides STREAM_CREATION_TIMEOUT_MS (tests). */
  streamCreationTimeoutMs?: number;
}

/** True for a request this handler serves. */
export function isPortForwardPath(url: string | undefined): boolean {
  return PORT_FORWARD_PATH.test(new URL(url ?? '/', 'https://apiserver.invalid').pathname);
}

function headerList(v: string | string[] | undefined): string[] {
  return (Array.isArray(v) ? v.join(',') : (v ?? '')).split(',').map((s) => s.trim()).filter(Boolean);
}

/** The `upgrade` listener for port-forward paths. */
export function portForwardUpgradeHandler(deps: PortForwardDeps): (req: IncomingMessage, socket: Duplex, head: Buffer) => void {
  const wss = new WebSocketServer({
    noServer: true,
    handleProtocols: (offered) => (offered.has(PORT_FORWARD_TUNNEL_PROTOCOL) ? PORT_FORWARD_TUNNEL_PROTOCOL : false),
  });
  return (req, socket, head) => {
    socket.on('error', () => socket.destroy());
    const m = PORT_FORWARD_PATH.exec(new URL(req.url ?? '/', 'https://apiserver.invalid').pathname);
    if (!m) return refuse(socket, makeStatus(404, 'NotFound', 'the server could not find the requested resource'));
    const [namespace, name] = [decodeURIComponent(m[1]), decodeURIComponent(m[2])];
    const who = deps.authenticate(req);
    if (!who) return refuse(socket, makeStatus(401, 'Unauthorized', 'Unauthorized'));
    let pod: Pod;
    try {
      deps.authorize(who, namespace, name, 'portforward');
      const p = deps.getPod(namespace, name);
      if (!p) throw notFound('pods', name);
      pod = p;
    } catch (err) {
      return refuse(socket, statusOf(err));
    }
    if (!pod.spec?.nodeName) return refuse(socket, makeStatus(400, 'BadRequest', `pod ${name} does not have a host assigned`));
    const upgrade = String(req.headers.upgrade ?? '').toLowerCase();
    if (upgrade === 'websocket') {
      const offered = headerList(req.headers['sec-websocket-protocol']);
      if (!offered.includes(PORT_FORWARD_TUNNEL_PROTOCOL)) {
        // kubectl falls back to SPDY on a failed upgrade; anything else learns what is served.
        return refuse(socket, makeStatus(400, 'BadRequest', `unable to upgrade: unsupported subprotocol: offered ${JSON.stringify(offered)}, served ${PORT_FORWARD_TUNNEL_PROTOCOL}`));
      }
      wss.handleUpgrade(req, socket, head, (ws) => serveSession(wsTransport(ws), deps, pod));
      return;
    }
    if (upgrade !== 'spdy/3.1') return refuse(socket, makeStatus(400, 'BadRequest', `unable to upgrade: unsupported Upgrade ${JSON.stringify(req.headers.upgrade ?? '')}: want SPDY/3.1 or websocket`));
    const versions = headerList(req.headers['x-stream-protocol-version']);
    if (!versions.includes(PORT_FORWARD_PROTOCOL)) {
      return refuse(socket, makeStatus(403, 'Forbidden', `unable to upgrade: unable to negotiate protocol: client supports ${JSON.stringify(versions)}, server accepts ["${PORT_FORWARD_PROTOCOL}"]`));
    }
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: ${PORT_FORWARD_PROTOCOL}\r\n\r\n`);
    const session = serveSession(socketTransport(socket), deps, pod);
    socket.on('data', (d: Buffer) => session.feed(d));
    socket.on('close', () => session.close());
    if (head.length) session.feed(head);
  };
}

function socketTransport(socket: Duplex): SpdyTransport & { socket: Duplex } {
  return {
    socket,
    write: (b) => socket.write(b),
    onDrain: (cb) => socket.on('drain', cb),
    pause: () => socket.pause(),
    resume: () => socket.resume(),
    close: () => socket.destroy(),
  };
}

/** SPDY in WebSocket binary messages: one message per write, any split on read. */
function wsTransport(ws: WebSocket): SpdyTransport & { ws: WebSocket } {
  let unsent = 0;
  let full = false;
  let onDrain = (): void => {};
  return {
    ws,
    write: (b) => {
      if (ws.readyState !== ws.OPEN) return true;
      unsent += b.length;
      ws.send(b, { binary: true }, () => {
        unsent -= b.length;
        if (full && unsent < WS_HIGH_WATER / 2) {
          full = false;
          onDrain();
        }
      });
      if (unsent >= WS_HIGH_WATER) full = true;
      return !full;
    },
    onDrain: (cb) => (onDrain = cb),
    pause: () => ws.pause(),
    resume: () => ws.resume(),
    close: () => ws.close(1000),
  };
}

function serveSession(transport: SpdyTransport & { ws?: WebSocket }, deps: PortForwardDeps, pod: Pod): SpdyServerSession {
  const session = new SpdyServerSession(transport);
  if (transport.ws) {
    const ws = transport.ws;
    ws.on('message', (d: Buffer, isBinary: boolean) => (isBinary ? session.feed(d) : session.close()));
    ws.on('close', () => session.close());
    ws.on('error', () => session.close());
  }
  new PortForwardRelay(session, pod, deps);
  return session;
}

interface StreamPair {
  requestId: string;
  port: number;
  error?: SpdyStream;
  data?: SpdyStream;
  timer: NodeJS.Timeout;
}

/** Pairs a session's streams into forwarded connections and relays each to the pod's agent. */
export class PortForwardRelay {
  private readonly pairs = new Map<string, StreamPair>();
  /** Forwarded connections so far, and the ones running. */
  started = 0;
  running = 0;

  constructor(
    private readonly session: SpdyServerSession,
    private readonly pod: Pod,
    private readonly deps: Pick<PortForwardDeps, 'stateDir' | 'getNode' | 'streamCreationTimeoutMs'>,
  ) {
    session.on('stream', (s) => this.onStream(s));
    session.on('close', () => {
      for (const p of this.pairs.values()) clearTimeout(p.timer);
      this.pairs.clear();
    });
  }

  private onStream(s: SpdyStream): void {
    const type = s.headers.get('streamtype');
    const portText = s.headers.get('port') ?? '';
    const port = /^\d{1,5}$/.test(portText) ? Number(portText) : 0;
    // The kubelet resets a stream whose headers it cannot use (spdystream's Reset: CANCEL).
    if ((type !== 'error' && type !== 'data') || port < 1 || port > 65535) return s.abort(SpdyRstStatus.CANCEL);
    // Clients before requestID (kubernetes#21929): the kubelet pairs by stream id, error N with data N+2.
    const requestId = s.headers.get('requestid') || String(type === 'error' ? s.id : s.id - 2);
    s.reply();
    let pair = this.pairs.get(requestId);
    if (!pair) {
      const timeout = this.deps.streamCreationTimeoutMs ?? STREAM_CREATION_TIMEOUT_MS;
      const p: StreamPair = { requestId, port, timer: setTimeout(() => this.giveUp(p), timeout) };
      p.timer.unref();
      this.pairs.set(requestId, p);
      pair = p;
    }
    if (pair[type]) {
      this.fail(pair, `error processing stream for request ${requestId}: ${type} stream already assigned`);
      s.abort(SpdyRstStatus.CANCEL);
      return;
    }
    pair[type] = s;
    if (pair.error && pair.data) {
      clearTimeout(pair.timer);
      this.pairs.delete(requestId);
      void this.forward(pair.port, pair.error, pair.data);
    }
  }

  private fail(pair: StreamPair, message: string): void {
    pair.error?.write(Buffer.from(message));
  }

  private giveUp(pair: StreamPair): void {
    this.pairs.delete(pair.requestId);
    this.fail(pair, `timed out waiting for streams for request ${pair.requestId}`);
    pair.error?.end();
    pair.data?.abort(SpdyRstStatus.CANCEL);
  }

  private async forward(port: number, error: SpdyStream, data: SpdyStream): Promise<void> {
    this.started++;
    this.running++;
    const pod = this.pod;
    const key = `${pod.metadata.namespace}/${pod.metadata.name}`;
    let client: ControlClient | undefined;
    let id = 0;
    let finished = false;
    const early: Buffer[] = [];
    let clientEnded = false;
    let waiting = false;
    // What kubectl sends before the agent's call runs waits here.
    const toAgent = (b: Buffer): void => {
      if (!client || !id) return void early.push(b);
      if (!client.sendStdin(id, b)) {
        this.session.pauseInput();
        void client.whenDrained().then(() => this.session.resumeInput());
      }
    };
    data.on('data', toAgent);
    data.on('end', () => {
      clientEnded = true;
      if (client && id) client.endStdin(id);
    });
    data.on('reset', () => {
      if (client && id && !finished) client.cancel(id);
    });
    try {
      const node = pod.spec?.nodeName ?? '';
      const addr = agentAddress(this.deps.stateDir, node, this.deps.getNode(node));
      if (!addr) throw new Error(`node ${node}'s agent is not reachable from the apiserver`);
      client = await ControlClient.connect(addr);
      const c = client;
      const call = c.call(
        'pod.portforward',
        { pod: key, port },
        undefined,
        (i) => (id = i),
        (evt) => {
          // Items already decoded still arrive after pause(): one wait for the drain is enough.
          if (!data.write(Buffer.from(evt as Uint8Array)) && !waiting) {
            waiting = true;
            c.pause();
            this.session.once('drain', () => {
              waiting = false;
              c.resume();
            });
          }
        },
      );
      for (const b of early.splice(0)) toAgent(b);
      if (clientEnded) c.endStdin(id);
      if (data.reset) c.cancel(id);
      await call;
    } catch (err) {
      // Worded as the kubelet's: kubectl prints it as "an error occurred forwarding L -> R: ...".
      error.write(Buffer.from(`error forwarding port ${port} to pod ${pod.metadata.uid ?? key}, uid : ${(err as Error).message}`));
    } finally {
      finished = true;
      this.running--;
      data.end();
      error.end();
      client?.close();
    }
  }
}
