/**
 * The backends this build offers, by name, as Flannel's backend manager
 * registers its types. Everything that lists, validates or describes backends
 * (the CLI's `--backend`, the agents' flags, lab launchers, scenarios, kernel
 * nodes, help texts) reads them from here; adding a backend is one folder and
 * one line below.
 */
import type { Node } from '../control-plane/types.ts';
import { FLANNEL_BACKEND_TYPE, FLANNEL_PUBLIC_IP } from '../control-plane/annotations.ts';
import type { BackendName, Lease, NetworkBackend, PlanAction, PlanSelf } from './backend.ts';
import { vxlan } from './vxlan/index.ts';
import { hostGw } from './host-gw/index.ts';
import { bgp } from './bgp/index.ts';
import { ipip } from './ipip/index.ts';
import { udp } from './udp/index.ts';

const registered = new Map<BackendName, NetworkBackend>();

function register(b: NetworkBackend): void {
  if (registered.has(b.name)) throw new Error(`backend ${b.name} registered twice`);
  registered.set(b.name, b);
}

register(vxlan);
register(hostGw);
register(bgp);
register(ipip);
register(udp);

/** The backend a lab and an agent use when none is named. */
export const DEFAULT_BACKEND: BackendName = vxlan.name;

/** The names of every registered backend, in registration order. */
export const BACKEND_NAMES: readonly BackendName[] = [...registered.keys()];

/** A registered backend by name, or undefined. */
export function findBackend(name: string): NetworkBackend | undefined {
  return registered.get(name);
}

/** A registered backend by name (default: the default backend); throws a clear error for an unknown name. */
export function backendNamed(name: string | undefined): NetworkBackend {
  const b = registered.get(name ?? DEFAULT_BACKEND);
  if (!b) throw new Error(`unknown backend '${name}': podlab has ${BACKEND_NAMES.join(', ')}`);
  return b;
}

/** `vxlan: Flannel VXLAN overlay; host-gw: ...`: the backends with their help lines. */
export function backendHelp(): string {
  return [...registered.values()].map((b) => `${b.name}: ${b.help}`).join('; ');
}

/** The backends that speak BGP (a speaker per node, `bgp summary`). */
export function bgpBackendNames(): BackendName[] {
  return [...registered.values()].filter((b) => b.bgp).map((b) => b.name);
}

/** Reads a Node's lease, whichever backend published it; a reason string when it has none or a bad one. */
export function leaseFromNode(node: Node): Lease | string {
  const name = node.metadata.name;
  if (!node.spec?.podCIDR) return `node ${name}: no spec.podCIDR yet`;
  for (const b of registered.values()) {
    const l = b.readLease(node);
    if (l !== undefined) return l;
  }
  const ann = node.metadata.annotations ?? {};
  const type = ann[FLANNEL_BACKEND_TYPE];
  if (type && ann[FLANNEL_PUBLIC_IP]) return `node ${name}: unknown backend type ${type}`;
  return `node ${name}: no flannel annotations yet`;
}

/** The plan of the node `self` running `self.backend` (default: the default backend). */
export function planPeers(desired: Lease[], current: Map<string, Lease>, self: PlanSelf & { backend?: BackendName }): PlanAction[] {
  return backendNamed(self.backend).plan(desired, current, self);
}
