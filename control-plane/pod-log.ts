/**
 * `kubectl logs [-f]` through the apiserver: `GET
 * /api/v1/namespaces/{ns}/pods/{name}/log`, relayed to the `pod.logs` call of
 * the pod's node agent (node-agent/pod-logs.ts keeps each container's
 * stdout), as kube-apiserver proxies the kubelet's containerLogs. The agent is
 * found as for exec (pod-exec.ts: its control socket, else the Node's kubelet
 * endpoint). The body is text/plain; with `follow=true` it streams until the
 * client goes away, which cancels the call on the agent.
 */
import type { ServerResponse } from 'node:http';
import { ApiError, badRequest, internalError, makeStatus } from './errors.ts';
import { ControlClient, RemoteError } from './node-control-client.ts';
import { agentAddress } from './pod-exec.ts';
import type { Node, Pod } from './types.ts';

/** kubectl's log options, as the agent's `pod.logs` takes them. */
export interface LogQuery {
  container?: string;
  follow?: boolean;
  tailLines?: number;
  sinceSeconds?: number;
  timestamps?: boolean;
  limitBytes?: number;
}

/** Reads PodLogOptions from the query string; a malformed number is a 400, as kube-apiserver answers. */
export function parseLogQuery(q: URLSearchParams): LogQuery {
  const int = (name: string, min: number): number | undefined => {
    const v = q.get(name);
    if (v === null) return undefined;
    if (!/^-?\d+$/.test(v) || Number(v) < min) throw badRequest(`invalid ${name}: ${JSON.stringify(v)}`);
    return Number(v);
  };
  const bool = (name: string): boolean | undefined => (q.has(name) ? ['true', '1'].includes(q.get(name) ?? '') : undefined);
  const out: LogQuery = { container: q.get('container') || undefined, follow: bool('follow'), tailLines: int('tailLines', -1), sinceSeconds: int('sinceSeconds', 1), timestamps: bool('timestamps'), limitBytes: int('limitBytes', 1) };
  return Object.fromEntries(Object.entries(out).filter(([, v]) => v !== undefined));
}

/** Streams a pod's container log to `res`; resolves with the HTTP status sent. */
export async function servePodLog(res: ServerResponse, pod: Pod, query: LogQuery, deps: { stateDir: string; getNode(name: string): Node | undefined }): Promise<number> {
  const key = `${pod.metadata.namespace}/${pod.metadata.name}`;
  const node = pod.spec?.nodeName;
  const container = query.container ?? pod.spec?.containers?.[0]?.name ?? '';
  if (!node || pod.status?.phase !== 'Running') {
    throw badRequest(`container "${container}" in pod "${pod.metadata.name}" is waiting to start: ContainerCreating`);
  }
  const addr = agentAddress(deps.stateDir, node, deps.getNode(node));
  if (!addr) throw internalError(`node ${node}'s agent is not reachable from the apiserver`);
  let client: ControlClient;
  try {
    client = await ControlClient.connect(addr);
  } catch (err) {
    throw internalError(`cannot reach node ${node}'s agent: ${(err as Error).message}`);
  }
  let id = 0;
  let done = false;
  const start = (): void => {
    if (!res.headersSent) res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'no-cache, private' });
  };
  // The client going away ends a follow.
  res.on('close', () => {
    if (!done) client.cancel(id);
  });
  try {
    await client.call(
      'pod.logs',
      { pod: key, ...query },
      (_fd, s) => {
        start();
        res.write(s);
      },
      (i) => (id = i),
    );
    done = true;
    start();
    res.end();
    return 200;
  } catch (err) {
    done = true;
    if (res.headersSent) {
      res.end();
      return 200;
    }
    // The agent's refusal (no such container, bad option) is the client's error, as the kubelet's is.
    if (err instanceof RemoteError) throw new ApiError(makeStatus(400, 'BadRequest', err.message));
    throw internalError((err as Error).message);
  } finally {
    client.close();
  }
}
