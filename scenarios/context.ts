/**
 * The state of one scenario run that steps read and change: the lab handles,
 * the pods as last seen, which processes are down or frozen, the underlay
 * impairments the scenario has set per directed node pair, running flows, and
 * the records that become the report.
 */
import type { ApiClient } from '../control-plane/client.ts';
import type { SeededRng } from '../common/rng.ts';
import type { ImpairmentSpec } from '../overlay/impairment.ts';
import type { TimeRef } from './model.ts';
import type { LabIo } from './lab-io.ts';
import type { PodTable } from './pods.ts';
import type { EchoListeners, FlowRecord } from './traffic.ts';

/** One step as it ran. */
export interface StepRecord {
  index: number;
  name?: string;
  type: 'traffic' | 'fault' | 'wait' | 'assert';
  summary: string;
  line: number;
  startMs: number;
  endMs?: number;
  ok: boolean;
  error?: string;
  detail?: string;
}

/** One checked condition (an assert, or the condition of a `wait until`). */
export interface AssertRecord {
  step: number;
  stepName?: string;
  name: string;
  kind: string;
  line: number;
  ok: boolean;
  expected: string;
  actual: string;
  /** A readable explanation of a failure (which pairs, which node...). */
  message?: string;
  atMs: number;
  tookMs?: number;
  detail?: unknown;
}

/** A fault's extent in time, drawn as a band in the HTML report. */
export interface Band {
  step: number;
  kind: string;
  label: string;
  nodes: string[];
  startMs: number;
  endMs?: number;
  /** What closed it (heal, thaw, restart ...). */
  closedBy?: string;
}

/** Impairment state of one directed pair `from>to`, as the scenario set it. */
export interface LinkState {
  spec?: ImpairmentSpec;
  blackhole: boolean;
}

export interface RunContext {
  stateDir: string;
  io: LabIo;
  api: ApiClient;
  pods: PodTable;
  nodes: string[];
  podCidrs: Map<string, string>;
  links: Map<string, LinkState>;
  down: Set<string>;
  frozen: Set<string>;
  deletedNodes: Set<string>;
  flows: Map<string, FlowRecord>;
  listeners: EchoListeners;
  steps: StepRecord[];
  asserts: AssertRecord[];
  bands: Band[];
  signal: AbortSignal;
  /** Scenario time in ms since the timeline started. */
  now(): number;
  /** The seeded stream of the current step. */
  rng: SeededRng;
  /** Resolves a time reference to scenario ms (undefined if the step has not happened). */
  timeOf(ref: TimeRef): number | undefined;
  /** Progress detail line. */
  note(msg: string): void;
}

/** Sleeps, waking early when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted || ms <= 0) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * Waits for `p`, at most `ms`, waking early when `signal` aborts; its timer is
 * cleared either way (a pending timer would keep the CLI alive after the run).
 */
export async function within(p: Promise<unknown>, ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return;
  const ac = new AbortController();
  const onAbort = () => ac.abort();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await Promise.race([p.then(() => undefined, () => undefined), sleep(ms, ac.signal)]);
  } finally {
    signal?.removeEventListener('abort', onAbort);
    ac.abort();
  }
}
