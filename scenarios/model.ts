/**
 * The checked, normalised form of a scenario file: what `validate.ts` produces
 * from YAML and what the runner executes. Times are milliseconds, ratios are
 * fractions, every node and pod reference has been checked against the lab the
 * scenario describes. `line` fields point back into the file for reports.
 */
import type { ImpairmentSpec } from '../overlay/impairment.ts';
import type { LoadedObject } from '../lab/manifest.ts';
import type { KubeObject } from '../control-plane/types.ts';

/** A point in scenario time: timeline start, or the start/end of a named step, plus an offset. */
export interface TimeRef {
  /** Step name; undefined = the start of the timeline. */
  step?: string;
  edge: 'start' | 'end';
  offsetMs: number;
  /** As written, for messages. */
  text: string;
}

/** A slice of scenario time; `lastMs` = the most recent stretch of this length. */
export interface Window {
  from?: TimeRef;
  to?: TimeRef;
  /** `to` written as `+DUR`: relative to `from`. */
  toRelativeMs?: number;
  lastMs?: number;
  text: string;
}

/** Which pods a reference means. */
export interface PodSelector {
  name?: string;
  namespace?: string;
  node?: string;
  prefix?: string;
  labels?: Record<string, string>;
}

/** A pod reference: one pod by name, or a selector with a pick rule. */
export type PodRef =
  | { type: 'name'; key: string; text: string }
  | { type: 'selector'; selector: PodSelector; pick: 'first' | 'random' | 'all'; text: string }
  | { type: 'ip'; ip: string; text: string }
  /** A Service, reached at its ClusterIP (flow destinations only). */
  | { type: 'service'; name: string; namespace: string; text: string };

/** One traffic flow: a stream of probes with sequence numbers 1..count, one per tick. */
export interface FlowSpec {
  name: string;
  /** Registered flow kind: ping, udp, tcp, http. */
  kind: string;
  from: PodRef;
  to: PodRef;
  rateHz: number;
  count: number;
  /** Payload bytes (ping -s, udp -s); undefined = the tool's default. */
  size?: number;
  /** true: DF set, never fragment (ping -M do); false: fragment (ping -M dont); unset: the tool's default. */
  df?: boolean;
  port?: number;
  /** A random delay before the first probe, drawn from the scenario seed. */
  startJitterMs: number;
  line: number;
}

export type FaultSpec =
  | { kind: 'link'; from: string[]; to: string[]; oneWay: boolean; spec: ImpairmentSpec }
  | { kind: 'partition'; a: string[]; b: string[] }
  /** `lbLeader`: the target is whichever node holds the Service's LoadBalancer address when the fault runs. */
  | { kind: 'kill'; target: string; lbLeader?: { service: string; namespace: string } }
  | { kind: 'freeze'; target: string }
  | { kind: 'thaw'; target: string }
  | { kind: 'restart'; target: string; kill: boolean }
  | { kind: 'delete-pods'; pods: PodRef; count?: number; recreate: boolean }
  | { kind: 'delete-node'; node: string }
  | { kind: 'bgp-reset'; node: string; peer?: string }
  | { kind: 'mark-not-ready'; pods: PodRef; ready: boolean }
  | { kind: 'scale'; prefix: string; replicas: number; namespace: string; labels: Record<string, string>; nodes?: string[] }
  | { kind: 'mtu'; node: string; dev: string; mtu: number }
  /** Create a NetworkPolicy (`apply`, the manifest) or delete one (`remove`). */
  | { kind: 'policy'; apply?: KubeObject; remove?: { namespace: string; name: string } }
  | { kind: 'heal'; nodes?: string[] };

/**
 * A reachability truth table (the netpol e2e suite's and cyclonus' style):
 * rows are sources, columns destinations, each a pod or a selector of pods;
 * one expected table per probe (a TCP port, or ICMP echo).
 */
export interface ReachabilityMatrix {
  rows: PodRef[];
  cols: PodRef[];
  probes: { protocol: 'TCP' | 'ICMP'; port?: number; text: string; expect: boolean[][]; line: number }[];
}

export type Comparison = '>=' | '>' | '<=' | '<' | '==' | '!=';

export type Condition = { name: string; withinMs?: number; line: number } & (
  /** With `matrix`, from/to are its first row and column (for messages) and the table decides. */
  | { kind: 'reachability'; from: PodRef; to: PodRef; expect: 'reachable' | 'unreachable'; count: number; matrix?: ReachabilityMatrix }
  | { kind: 'delivery'; flow: string; min?: number; max?: number; window?: Window }
  | { kind: 'latency'; flow: string; percentile: number; maxMs?: number; minMs?: number; window?: Window }
  | { kind: 'no-route'; node: string; on?: string[] }
  | { kind: 'bgp-converged'; on?: string[] }
  | { kind: 'transfer'; from: PodRef; to: PodRef; port: number; bytes: number }
  | { kind: 'lb-spread'; from: PodRef; service: string; namespace: string; port: number; requests: number; minSuccess: number; maxChi2?: number; path: string; backends?: number }
  | { kind: 'counter'; node: string; dev: string; counter: string; reason?: string; op: Comparison; value: number }
  | { kind: 'flow-errors'; flow: string; error: string; min?: number; max?: number }
  | { kind: 'resolve'; from: PodRef; host: string; expect: 'resolves' | 'nxdomain'; address?: string }
  | { kind: 'lb-answers'; service: string; namespace: string; port: number; path: string }
);

export type StepBody =
  | { type: 'traffic'; flows: FlowSpec[]; wait: boolean }
  | { type: 'fault'; fault: FaultSpec }
  | { type: 'wait'; forMs?: number; until?: Condition; flows?: string[]; timeoutMs: number; intervalMs: number }
  | { type: 'assert'; conditions: Condition[] };

export interface Step {
  index: number;
  name?: string;
  line: number;
  body: StepBody;
}

export interface LabSpec {
  nodes: number;
  podsPerNode: number;
  backend: string;
  proxyMode?: string;
  bgpTopology?: string;
  mtu: number;
}

export interface Scenario {
  file: string;
  name: string;
  description: string;
  seed: number;
  lab: LabSpec;
  /**
   * The backends to run it on: `lab.backend` alone, or, when `lab.backend` is a list, each in turn with the same
   * seed, workload and timeline, for reports side by side. `lab.backend` is the first.
   */
  backends: string[];
  workload: LoadedObject[];
  timeline: Step[];
}
