/**
 * What a node agent drives, whatever the node is made of (containerlab's node
 * kinds): podlab's emulated data plane (./emulated-runtime.ts) or a real
 * network namespace programmed with iproute2 (kernel-node/runtime.ts). The
 * agent's own work (registration, informers, host-local IPAM, status,
 * heartbeats, the lease plan and BGP reconciliation) is written once, in
 * ./node-core.ts, against this interface.
 */
import type { Node, Pod } from '../control-plane/types.ts';
import type { PlanAction } from '../backends/backend.ts';
import type { BgpRouting } from '../backends/bgp/bgp-backend.ts';
import type { ContainerLogs } from './pod-logs.ts';

/** What a node publishes about its devices when it registers. */
export interface RuntimeIdentity {
  /** eth0's MAC, when known (podlab's annotation; peers on the ARP-less wire need it). */
  eth0Mac?: string;
  /** The tunnel device's MAC (VXLAN's VtepMAC). */
  vtepMac: string;
  /** eth0's prefix length on the underlay. */
  underlayPrefixLen: number;
}

/** A pod's network as the runtime holds it. */
export interface RuntimePod {
  uid: string;
  ip: string;
}

export interface NodeRuntime {
  /**
   * Before registration: prepares eth0 (and the backend's devices where they come first) and says what to
   * publish; `fetchNode` reads the node's existing Node (a restarted agent keeps its tunnel MAC). The core
   * registers with the Node `fetchNode` read, so the runtime calls it exactly once.
   */
  identity(fetchNode: () => Promise<Node | undefined>): Promise<RuntimeIdentity>;
  /** After registration: builds the node's namespace (cni0, the backend's devices) for its podCIDR. */
  build(podCIDR: string): Promise<void>;
  /** Applies a plan in order; returns the peers whose steps failed (retried on the next resync). */
  applyPlan(actions: PlanAction[]): Promise<Set<string>>;
  /** The node's BGP speaker (backends that speak BGP; loaded on demand, as other backends' nodes never need it). */
  bgpRouting(podCIDR: string): Promise<BgpRouting>;
  /** The pod's network, if the runtime has one under `key` (`namespace/name`). */
  pod(key: string): RuntimePod | undefined;
  /** Every pod's network. */
  pods(): RuntimePod[];
  /** Gives a pod its network (namespace, veth into cni0, address, default route) and starts its apps. */
  addPod(p: Pod, key: string, ip: string): Promise<void>;
  /** Stops a pod's apps and removes its network. */
  removePod(key: string): Promise<void>;
  /** Containers' standard output (the runtimes that run apps keep it). */
  logs?: ContainerLogs;
  /** A container's state when it differs from running (an app that failed to start). */
  containerState?(key: string, container: string): Record<string, unknown> | undefined;
  /** Releases what the runtime holds (sockets, raw wire); the namespaces stay. */
  stop(): Promise<void>;
}
