/**
 * The contract of a built-in application: what a container image runs in
 * podlab. An app gets the pod's namespace (its TCP and IP stacks, shared by
 * every container of the pod), its container spec, and who it is; it binds
 * its ports at once (so a port clash fails `start` with EADDRINUSE) and
 * serves until `stop()`.
 */
import type { SharedThread } from '../common/module-worker.ts';
import type { ClientCredentials } from '../control-plane/credentials.ts';
import type { Container } from '../control-plane/types.ts';
import type { PodNet } from '../netstack/pod-net.ts';

export interface AppContext {
  podName: string;
  nodeName: string;
  /** The apiserver and credentials, for apps that watch the cluster as their real images do (CoreDNS with its ServiceAccount token; here the node's). */
  api?: { url: string; credentials: ClientCredentials };
  /** The node's worker thread for code off the data plane (the agent's, shared with kube-proxy's engine); without it such an app starts a thread of its own. */
  thread?: SharedThread;
  /** Where an app reports things worth a log line (default: nowhere). */
  log?: (msg: string, fields?: Record<string, unknown>) => void;
  /** The container's standard output, line by line: what `kubectl logs` / `podlab logs` show. */
  stdout?: (line: string) => void;
}

/** What `podlab exec POD -- ps` shows about a running app. */
export interface AppStatus {
  app: string;
  /** `tcp 0.0.0.0:80`, `udp 0.0.0.0:7`. */
  listening: string[];
  counters: Record<string, number>;
}

export interface AppInstance {
  stop(): void;
  status(): AppStatus;
}

export interface BuiltinApp {
  /** The image name it answers to, normalised (`nginx`, `podlab/echo`). */
  name: string;
  /** One line for `ps` and the docs. */
  description: string;
  start(pod: PodNet, container: Container, ctx: AppContext): AppInstance;
}

/** The container's ports of one protocol, or `dflt` when it declares none at all. */
export function portsOf(container: Container, protocol: 'TCP' | 'UDP', dflt: number[]): number[] {
  const ports = container.ports ?? [];
  if (!ports.length) return dflt;
  return ports.filter((p) => (p.protocol ?? 'TCP') === protocol).map((p) => p.containerPort);
}
