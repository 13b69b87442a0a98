/**
 * Where the CLI reaches a node agent's control channel. Nodes listed in
 * lab.json (local and netns labs, and a container's own node) are reached on
 * their Unix socket. In a container lab, lab.json lists only the container's
 * own node; any other node is looked up in the apiserver and reached over TCP
 * at its InternalIP and `status.daemonEndpoints.kubeletEndpoint.Port`, which
 * the agent publishes when it serves its channel there
 * (node-agent/control-remote.ts). Replaceable as one piece once exec goes
 * through the apiserver.
 */
import type { Node } from '../control-plane/types.ts';
import { ControlClient } from '../control-plane/node-control-client.ts';
import { LabError, labApi } from './lab.ts';
import type { LabRecord } from './state.ts';

/** A Unix socket path, or `tcp://IP:PORT` for a node of a container lab that is not this container's. */
export async function controlAddress(rec: LabRecord, node: string): Promise<string> {
  const local = rec.nodes.find((n) => n.name === node);
  if (local) return local.control;
  const names = rec.nodes.map((x) => x.name).join(', ');
  if (rec.options.mode !== 'container' || !rec.apiUrl) throw new LabError(`no node "${node}" in this lab (nodes: ${names})`);
  let n: Node | null;
  try {
    n = await labApi(rec).get<Node>('nodes', node);
  } catch (e) {
    throw new LabError(`node ${node} is not in this container (${names}) and the apiserver at ${rec.apiUrl} could not be asked where it is: ${(e as Error).message}`);
  }
  if (!n) throw new LabError(`Error from server (NotFound): nodes "${node}" not found`);
  const ip = n.status?.addresses?.find((a) => a.type === 'InternalIP')?.address;
  const port = n.status?.daemonEndpoints?.kubeletEndpoint?.Port;
  if (!ip || !port) throw new LabError(`node ${node} serves its control channel only inside its own container (its agent runs without --control-port)`);
  return `tcp://${ip}:${port}`;
}

/** Connects to a node's control channel, wherever it is served. */
export async function connectNode(rec: LabRecord, node: string, timeoutMs?: number): Promise<ControlClient> {
  const addr = await controlAddress(rec, node);
  try {
    return await ControlClient.connect(addr, timeoutMs);
  } catch (e) {
    if (!addr.startsWith('tcp://')) throw e;
    throw new LabError(`cannot reach node ${node}'s agent at ${addr.slice(6)}: ${(e as Error).message}`);
  }
}
