/**
 * A node container's stable name, `node-<N>`, where N is the number Compose
 * gave the container (`<project>_node_<N>`, what `docker-compose exec --index N
 * node` and `docker-compose ps` show) or, on Swarm, the task's slot.
 *
 * Why the container number and not a name the apiserver hands out: it stays
 * with the container (a killed container started again, or one re-created by
 * `up`, comes back as the same node and finds its Node, podCIDR and VtepMAC),
 * and `exec --index 2 node` is node-2. Nothing needs the Docker socket:
 *
 * - Swarm expands `{{.Task.Slot}}` in the service's environment
 *   ($PODLAB_NODE_SLOT); Compose leaves it as it is, unexpanded.
 * - Compose: Docker's embedded DNS knows every container by its name but
 *   answers a reverse lookup of the asking container's own address with
 *   nothing (it does for the others). So: the service aliases (`node`,
 *   `apiserver`) give the other containers' addresses, their reverse lookups
 *   give the project and the numbers taken, and a forward lookup of each
 *   remaining candidate `<project>_node_<N>` finds the one that is this
 *   container's address. Names that do not exist time out on an internal
 *   network (the embedded DNS has nowhere to forward them), so every
 *   candidate is asked at once with a short timeout.
 */
import dns from 'node:dns';

/** The DNS queries used (a stub in tests). */
export interface OrdinalDns {
  resolve4(name: string): Promise<string[]>;
  reverse(ip: string): Promise<string[]>;
}

export interface OrdinalOptions {
  /** This container's address on the lab network. */
  ip: string;
  /** The node service's name in the compose file. */
  service?: string;
  /** Another service of the same project, asked for the project's name when this node is alone. */
  peerService?: string;
  /** $PODLAB_NODE_SLOT: a Swarm task slot (`{{.Task.Slot}}` expanded), else ignored. */
  slot?: string;
  dns?: OrdinalDns;
}

/** Why no ordinal could be found. */
export class OrdinalError extends Error {
  override name = 'OrdinalError';
}

/** A container name as Compose v1 (`p_node_2`) or v2 (`p-node-2`) writes it, from a reverse lookup (`p_node_2.p_net.`). */
export function parseComposeName(ptr: string, services: string[]): { project: string; sep: string; service: string; n: number } | undefined {
  const first = ptr.replace(/\.$/, '').split('.')[0];
  for (const service of services) {
    const m = new RegExp(`^(.+?)([_-])${service.replace(/[^a-zA-Z0-9_-]/g, '')}\\2(\\d+)$`).exec(first);
    if (m) return { project: m[1], sep: m[2], service, n: Number(m[3]) };
  }
  return undefined;
}

function defaultDns(): OrdinalDns {
  // One try, short timeout: unknown names are never answered on an internal network.
  const r = new dns.promises.Resolver({ timeout: 1500, tries: 2 });
  return { resolve4: (n) => r.resolve4(n), reverse: (ip) => r.reverse(ip) };
}

/** `node-<N>`: this container's number in its Compose project (or its Swarm slot). */
export async function composeOrdinalName(o: OrdinalOptions): Promise<string> {
  const service = o.service ?? 'node';
  if (o.slot && /^[1-9]\d*$/.test(o.slot)) return `${service}-${o.slot}`;
  const d = o.dns ?? defaultDns();
  const quiet = async <T>(p: Promise<T[]>): Promise<T[]> => p.catch(() => [] as T[]);
  const peers = await quiet(d.resolve4(service));
  const others = peers.filter((ip) => ip !== o.ip);
  const asked = others.length ? others : (await quiet(d.resolve4(o.peerService ?? 'apiserver'))).filter((ip) => ip !== o.ip);
  const names = (await Promise.all(asked.map((ip) => quiet(d.reverse(ip))))).flat();
  const parsed = names.map((n) => parseComposeName(n, [service, o.peerService ?? 'apiserver'])).filter((x) => x !== undefined);
  if (!parsed.length) throw new OrdinalError(`cannot tell this container's number: no reverse DNS name of the form <project>_${service}_<N> for ${asked.join(', ') || `"${service}" or "${o.peerService ?? 'apiserver'}"`} (run under Compose, or set PODLAB_NODE_NAME)`);
  const { project, sep } = parsed[0];
  const taken = new Set(parsed.filter((p) => p.service === service).map((p) => p.n));
  const upTo = Math.max(peers.length, ...taken, 0) + 1;
  const candidates = Array.from({ length: upTo }, (_, i) => i + 1).filter((n) => !taken.has(n));
  const hits = await Promise.all(candidates.map(async (n) => ((await quiet(d.resolve4(`${project}${sep}${service}${sep}${n}`))).includes(o.ip) ? n : 0)));
  const mine = hits.find((n) => n > 0);
  if (!mine) throw new OrdinalError(`none of ${candidates.map((n) => `${project}${sep}${service}${sep}${n}`).join(', ')} resolves to this container's ${o.ip}`);
  return `${service}-${mine}`;
}
