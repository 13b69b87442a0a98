/**
 * `kubectl exec` through the apiserver: the WebSocket remote-command
 * protocol (`v5.channel.k8s.io`, kubectl's default since 1.30; `v4` too) on
 * `/api/v1/namespaces/{ns}/pods/{name}/exec`, relayed to the pod's node agent
 * the way kube-apiserver relays to the kubelet.
 *
 * Wire format (the protocol, so written here rather than taken from a
 * library; the WebSocket framing itself is the `ws` package): every binary
 * message starts with a channel byte: 0 stdin, 1 stdout, 2 stderr, 3 the
 * final Status (JSON), 4 terminal resize; v5 adds 255 = "close channel N"
 * (kubectl sends `255 0` at the end of its stdin). The exit code travels in
 * the Status: Success, or Failure with reason NonZeroExitCode and the code as
 * cause `ExitCode`, which kubectl turns into its own exit status.
 *
 * The agent is reached through its control socket in the lab's state
 * directory (node-agent/control-server.ts) where the apiserver shares that
 * directory with the agents (`podlab up`, netns labs); elsewhere (a compose
 * lab, whose agents are other containers) at the Node's InternalIP and
 * `status.daemonEndpoints.kubeletEndpoint.Port`, where an agent started with
 * `--control-port` serves the same channel over TCP
 * (node-agent/control-remote.ts), as kube-apiserver finds a kubelet. A node
 * reachable neither way gets a clear Failure. The emulated pods have one network stack shared by
 * their containers, so `-c CONTAINER` selects nothing; a TTY is not
 * emulated (resize messages are ignored).
 */
import type { IncomingMessage } from 'node:http';
import fs from 'node:fs';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { ControlClient } from './node-control-client.ts';
import { controlSocketPath } from './node-control-protocol.ts';
import type { Identity } from './auth.ts';
import { ApiError, makeStatus, notFound } from './errors.ts';
import type { Node, Pod, Status } from './types.ts';

/** Subprotocols served, best first. */
export const EXEC_PROTOCOLS = ['v5.channel.k8s.io', 'v4.channel.k8s.io'] as const;

const EXEC_PATH = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/exec$/;

/** What the exec handler needs from the apiserver. */
export interface ExecDeps {
  stateDir: string;
  authenticate(req: IncomingMessage): Identity | undefined;
  /** Throws the 403 ApiError when `who` may not create pods/SUBRESOURCE there. */
  authorize(who: Identity, namespace: string, name: string, subresource: 'exec' | 'portforward'): void;
  getPod(namespace: string, name: string): Pod | undefined;
  getNode(name: string): Node | undefined;
}

/** Writes an HTTP error with a Status body on a socket that asked for an upgrade, and closes it. */
export function refuse(socket: Duplex, status: Status): void {
  const body = JSON.stringify(status);
  const text = { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found' }[status.code] ?? 'Error';
  socket.end(`HTTP/1.1 ${status.code} ${text}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}

export function statusOf(err: unknown): Status {
  return err instanceof ApiError ? err.status : makeStatus(500, 'InternalError', (err as Error)?.message ?? String(err));
}

/** The channel-3 Status kubectl reads at the end of an exec. */
export function exitStatus(argv: string[], exitCode: number): unknown {
  if (exitCode === 0) return { metadata: {}, status: 'Success' };
  return {
    metadata: {},
    status: 'Failure',
    message: `command terminated with non-zero exit code: error executing command [${argv.join(' ')}], exit code ${exitCode}`,
    reason: 'NonZeroExitCode',
    details: { causes: [{ reason: 'ExitCode', message: String(exitCode) }] },
  };
}

/**
 * Returns the `upgrade` listener for the apiserver's HTTPS server. It
 * answers only exec paths; any other upgrade is refused with 404.
 */
export function execUpgradeHandler(deps: ExecDeps): (req: IncomingMessage, socket: Duplex, head: Buffer) => void {
  const wss = new WebSocketServer({
    noServer: true,
    handleProtocols: (offered) => EXEC_PROTOCOLS.find((p) => offered.has(p)) ?? false,
  });
  return (req, socket, head) => {
    socket.on('error', () => socket.destroy());
    const url = new URL(req.url ?? '/', 'https://apiserver.invalid');
    const m = EXEC_PATH.exec(url.pathname);
    if (!m) return refuse(socket, makeStatus(404, 'NotFound', 'the server could not find the requested resource'));
    const [namespace, name] = [decodeURIComponent(m[1]), decodeURIComponent(m[2])];
    const who = deps.authenticate(req);
    if (!who) return refuse(socket, makeStatus(401, 'Unauthorized', 'Unauthorized'));
    let pod: Pod | undefined;
    try {
      deps.authorize(who, namespace, name, 'exec');
      pod = deps.getPod(namespace, name);
      if (!pod) throw notFound('pods', name);
    } catch (err) {
      return refuse(socket, statusOf(err));
    }
    const argv = url.searchParams.getAll('command');
    if (argv.length === 0) return refuse(socket, makeStatus(400, 'BadRequest', 'you must specify at least 1 command'));
    const offered = String(req.headers['sec-websocket-protocol'] ?? '').split(',').map((s) => s.trim());
    if (!EXEC_PROTOCOLS.some((p) => offered.includes(p))) {
      return refuse(socket, makeStatus(400, 'BadRequest', `unsupported subprotocol: offered ${JSON.stringify(offered)}, served ${EXEC_PROTOCOLS.join(', ')}`));
    }
    const stdin = ['1', 'true'].includes(url.searchParams.get('stdin') ?? '');
    wss.handleUpgrade(req, socket, head, (ws) => void runExec(ws, deps, pod, argv, stdin));
  };
}

/** Where the apiserver reaches a node's agent: its local socket, else its published TCP endpoint. */
export function agentAddress(stateDir: string, node: string, nodeObj: Node | undefined, exists: (path: string) => boolean = fs.existsSync): string | undefined {
  const sock = controlSocketPath(stateDir, node);
  if (exists(sock)) return sock;
  const ip = nodeObj?.status?.addresses?.find((a) => a.type === 'InternalIP')?.address;
  const port = nodeObj?.status?.daemonEndpoints?.kubeletEndpoint?.Port;
  return ip && port ? `tcp://${ip}:${port}` : undefined;
}

async function runExec(ws: WebSocket, deps: ExecDeps, pod: Pod, argv: string[], stdin: boolean): Promise<void> {
  const v5 = ws.protocol === 'v5.channel.k8s.io';
  // kubectl sends stdin right after the handshake: hold it until the agent's command runs.
  const early: Buffer[] = [];
  let onInput: ((data: Buffer) => void) | undefined;
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (!isBinary || data.length === 0) return;
    if (onInput) onInput(data);
    else early.push(data);
  });
  const send = (channel: number, data: Buffer | string): void => {
    if (ws.readyState !== ws.OPEN) return;
    const payload = typeof data === 'string' ? Buffer.from(data) : data;
    ws.send(Buffer.concat([Buffer.from([channel]), payload]));
  };
  const finish = (status: unknown): void => {
    send(3, JSON.stringify(status));
    ws.close(1000);
  };
  const key = `${pod.metadata.namespace}/${pod.metadata.name}`;
  const node = pod.spec?.nodeName;
  if (!node || pod.status?.phase !== 'Running') {
    return finish(makeStatus(400, 'BadRequest', `pod ${key} is not running (phase ${pod.status?.phase ?? 'Pending'})`));
  }
  const sock = agentAddress(deps.stateDir, node, deps.getNode(node));
  if (!sock) {
    return finish(makeStatus(500, 'InternalError', `node ${node}'s agent is not reachable from the apiserver (no control socket at ${controlSocketPath(deps.stateDir, node)}, and its Node publishes no kubelet endpoint)`));
  }
  let client: ControlClient;
  try {
    client = await ControlClient.connect(sock);
  } catch (err) {
    return finish(makeStatus(500, 'InternalError', `cannot reach node ${node}'s agent: ${(err as Error).message}`));
  }
  let id = 0;
  let done = false;
  const input = (data: Buffer): void => {
    if (done) return;
    const channel = data[0];
    if (channel === 0 && stdin) client.sendStdin(id, data.subarray(1));
    else if (v5 && channel === 255 && data[1] === 0 && stdin) client.endStdin(id);
  };
  // The client going away is a Ctrl-C for the command.
  ws.on('close', () => {
    if (!done) client.cancel(id);
  });
  try {
    const running = client.call<{ exitCode: number }>(
      'exec',
      { pod: key, argv, stdin },
      (fd, s) => send(fd, s),
      (i) => (id = i),
    );
    for (const data of early.splice(0)) input(data);
    onInput = input;
    const result = await running;
    done = true;
    finish(exitStatus(argv, result.exitCode));
  } catch (err) {
    done = true;
    finish(makeStatus(500, 'InternalError', (err as Error).message));
  } finally {
    client.close();
  }
}
