/**
 * Commands run "inside" a pod by `podlab exec POD -- CMD ARGS`: small programs
 * over the pod's own network stack that print like the real tools.
 */
import type { Clock } from '../common/clock.ts';
import type { SeededRng } from '../common/rng.ts';
import type { PodNet } from '../netstack/pod-net.ts';
import type { ResolvConf } from './resolver.ts';

export interface ExecContext {
  pod: PodNet;
  argv: string[];
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  /** Aborted on Ctrl-C (the CLI forwards SIGINT) or when the CLI goes away. */
  signal: AbortSignal;
  clock: Clock;
  rng: SeededRng;
  /** Standard input forwarded by the CLI (`podlab exec -i`, or a pipe); absent or empty means EOF at once. */
  stdin?: AsyncIterable<Buffer>;
  /** The pod's /etc/resolv.conf (default: the kubelet's, for kube-dns at 10.96.0.10). */
  resolvConf?: ResolvConf;
}

/** A command: resolves to its exit code. */
export type PodCommand = (ctx: ExecContext) => Promise<number>;

/** A usage error: printed to stderr with exit code 2, like most CLI tools. */
export class UsageError extends Error {
  override name = 'UsageError';
}
