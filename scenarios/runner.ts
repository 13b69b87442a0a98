/**
 * Runs a checked scenario: a fresh lab in its own temporary state directory
 * on its own loopback network (never the user's lab), the workload, then the
 * timeline step by step, and a report. Whatever happens (a failed step, an
 * exception, Ctrl-C through `signal`) the lab is torn down in `finally`:
 * frozen agents are continued first (a stopped process cannot act on
 * SIGTERM), flows and echo servers are stopped, then every process the lab
 * recorded is stopped by pid.
 *
 * Determinism: the lab runs with the scenario's seed (MACs, impairment
 * decisions per peer), and every choice the runner makes (which pod a
 * selector picks, which pods a scale-down deletes, start jitter) comes from a
 * SeededRng forked per step, so the same seed makes the same decisions.
 */
import { setMaxListeners } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { ApiClient } from '../control-plane/client.ts';
import { adminCredentials } from '../control-plane/credentials.ts';
import type { Node } from '../control-plane/types.ts';
import { SeededRng } from '../common/rng.ts';
import { LabError, down, up, type UpOptions } from '../lab/lab.ts';
import { readLab } from '../lab/state.ts';
import type { Condition, FlowSpec, Scenario, Step, TimeRef } from './model.ts';
import { sleep, within, type AssertRecord, type RunContext, type StepRecord } from './context.ts';
import { evaluate, waitForWindow, type Outcome } from './conditions.ts';
import { applyFault, describeFault } from './faults.ts';
import { LabIo } from './lab-io.ts';
import { claimLabNet } from './lab-net.ts';
import { PodTable, StepError } from './pods.ts';
import { DEFAULT_WIRE_PORT } from '../backends/routed-wire.ts';
import { Progress, bar } from './progress.ts';
import { overallVerdict, type ComparisonReport, type ScenarioReport, type Verdict } from './report.ts';
import { DRIVERS, EchoListeners, FlowRecord } from './traffic.ts';
import { fmtMs } from './units.ts';

export interface RunOptions {
  /** Overrides the scenario's seed. */
  seed?: number;
  /** The lab's loopback network; default: the first free of 127.0.200.0/24 ... */
  labNet?: string;
  /** Aborting stops the run (Ctrl-C); the lab is still torn down. */
  signal?: AbortSignal;
  /** Where progress goes (stderr in the CLI); none when absent. */
  progress?: Progress;
  /** Keep the state directory (logs of every process) instead of removing it. */
  keepState?: boolean;
  /** Called once the lab record exists (tests use it to watch the pids). */
  onLab?: (stateDir: string) => void;
}

const PENDING_FLOW_GRACE_MS = 10_000;

/** Runs a scenario to its verdict; never leaves a process behind. */
export async function runScenario(sc: Scenario, o: RunOptions = {}): Promise<ScenarioReport> {
  const seed = o.seed ?? sc.seed;
  const progress = o.progress;
  const say = (s: string) => progress?.line(s);
  const signal = o.signal ?? new AbortController().signal;
  // Every running command and poll listens for the abort: many listeners are expected.
  setMaxListeners(10_000, signal);
  const report: ScenarioReport = {
    format: 'podlab-scenario-report/1',
    scenario: { name: sc.name, description: sc.description, file: sc.file },
    seed,
    labNet: o.labNet ?? '',
    lab: sc.lab,
    startedAt: new Date().toISOString(),
    labUpMs: 0,
    durationMs: 0,
    verdict: 'pass',
    summary: { asserts: 0, passed: 0, failed: 0 },
    steps: [],
    asserts: [],
    flows: [],
    faults: [],
  };
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-scenario-'));
  const rootRng = new SeededRng(seed);
  let ctx: RunContext | undefined;
  let t0 = performance.now();
  const claimed = await claimLabNet(sc.lab.nodes, [8472, DEFAULT_WIRE_PORT], o.labNet, stateDir, say).catch((e: Error) => {
    fs.rmSync(stateDir, { recursive: true, force: true });
    throw e;
  });
  report.labNet = claimed.net;
  say(`scenario ${sc.name} (seed ${seed}): lab of ${sc.lab.nodes} node${sc.lab.nodes === 1 ? '' : 's'} on ${claimed.net}, state ${stateDir}`);
  const api = { client: undefined as ApiClient | undefined };
  try {
    const labStart = performance.now();
    const rec = await up({
      stateDir,
      nodes: sc.lab.nodes,
      podsPerNode: sc.lab.podsPerNode,
      manifests: sc.workload,
      labNet: claimed.net,
      apiPort: 0,
      clusterCidr: '10.244.0.0/16',
      vxlanPort: 8472,
      backend: sc.lab.backend,
      bgpTopology: sc.lab.bgpTopology as UpOptions['bgpTopology'],
      proxyMode: sc.lab.proxyMode as UpOptions['proxyMode'],
      seed,
      mtu: sc.lab.mtu,
      waitReady: true,
      timeoutMs: 60_000,
      // Supervised as `podlab up` is, and owned by this run: if it dies, its lab goes with it.
      supervise: true,
      ownerPid: process.pid,
    });
    o.onLab?.(stateDir);
    report.labUpMs = Math.round(performance.now() - labStart);
    say(`lab up in ${fmtMs(report.labUpMs)}: ${rec.procs.map((p) => `${p.name} pid ${p.pid}`).join(', ')}`);
    if (signal.aborted) throw new Interrupted();

    api.client = new ApiClient(rec.apiUrl!, { timeoutMs: 5000, credentials: adminCredentials(rec.stateDir) });
    const io = new LabIo(stateDir);
    const pods = new PodTable(api.client);
    await pods.refresh();
    const podCidrs = new Map<string, string>();
    for (const n of (await api.client.list<Node>('nodes')).items) if (n.spec?.podCIDR) podCidrs.set(n.metadata.name, n.spec.podCIDR);
    t0 = performance.now();
    const c: RunContext = {
      stateDir,
      io,
      api: api.client,
      pods,
      nodes: rec.nodes.map((n) => n.name),
      podCidrs,
      links: new Map(),
      down: new Set(),
      frozen: new Set(),
      deletedNodes: new Set(),
      flows: new Map(),
      listeners: new EchoListeners(io, (k) => pods.get(k)?.node, (ip) => [...pods.pods.values()].find((p) => p.ip === ip)?.key),
      steps: report.steps,
      asserts: report.asserts,
      bands: report.faults,
      signal,
      now: () => performance.now() - t0,
      rng: rootRng,
      timeOf: (ref) => timeOf(report.steps, ref),
      note: (m) => say(`         ${m}`),
    };
    ctx = c;
    const total = sc.timeline.length;
    progress?.live(() => `${bar(c.steps.filter((s) => s.endMs !== undefined).length, total)} ${fmtClock(c.now())} step ${Math.min(c.steps.length, total)}/${total} ${flowCounters(c)}`);

    for (const step of sc.timeline) {
      if (signal.aborted) throw new Interrupted();
      c.rng = rootRng.fork(`step:${step.index}`);
      const sr: StepRecord = { index: step.index, name: step.name, type: step.body.type, summary: describeStep(step), line: step.line, startMs: c.now(), ok: true };
      c.steps.push(sr);
      say(`[${fmtClock(sr.startMs)}] ${step.index + 1}/${total} ${step.name ? `${step.name}: ` : ''}${sr.summary}${c.flows.size ? `   (${flowCounters(c)})` : ''}`);
      try {
        await runStep(step, sr, c, say);
      } catch (e) {
        sr.ok = false;
        sr.error = (e as Error).message;
        sr.endMs = c.now();
        if (e instanceof Interrupted || signal.aborted) throw new Interrupted();
        throw new StepFailed(`step ${step.index + 1}${step.name ? ` (${step.name})` : ''} at ${sc.file}:${step.line}: ${(e as Error).message}`);
      }
      sr.endMs = c.now();
    }
    if (signal.aborted) throw new Interrupted();
    // Flows still running finish before the verdict (their results are part of the report).
    const running = [...c.flows.values()].filter((f) => !f.finished);
    if (running.length) {
      say(`[${fmtClock(c.now())}] waiting for ${running.map((f) => f.spec.name).join(', ')} to finish`);
      await waitFlows(running, c, remainingMs(running, c) + PENDING_FLOW_GRACE_MS);
    }
    report.durationMs = Math.round(c.now());
  } catch (e) {
    if (e instanceof Interrupted || signal.aborted) {
      report.verdict = 'interrupted';
      report.error = 'stopped by a signal (Ctrl-C); the lab was torn down';
    } else {
      report.verdict = 'error';
      report.error = e instanceof StepFailed || e instanceof LabError || e instanceof StepError ? e.message : ((e as Error).stack ?? String(e));
    }
    if (ctx) report.durationMs = Math.round(ctx.now());
  } finally {
    progress?.stop();
    if (ctx) {
      for (const f of ctx.flows.values()) report.flows.push(f.result(ctx.now()));
      for (const b of report.faults) b.endMs ??= Math.round(ctx.now());
    }
    await teardown(stateDir, ctx, o.keepState);
    claimed.release();
    api.client?.close?.();
  }
  report.summary = { asserts: report.asserts.length, passed: report.asserts.filter((a) => a.ok).length, failed: report.asserts.filter((a) => !a.ok).length };
  if (report.verdict === 'pass' && report.summary.failed) report.verdict = 'fail';
  return report;
}

class Interrupted extends Error {
  override name = 'Interrupted';
}

class StepFailed extends Error {
  override name = 'StepFailed';
}

/** Continues frozen agents, stops flows and echo servers, stops the lab by pid, removes its state. */
async function teardown(stateDir: string, ctx: RunContext | undefined, keep?: boolean): Promise<void> {
  const rec = readLab(stateDir);
  if (ctx && rec) {
    for (const name of ctx.frozen) {
      const p = rec.procs.find((x) => x.name === name);
      try {
        if (p) process.kill(p.pid, 'SIGCONT');
      } catch {
        /* gone */
      }
    }
  }
  if (ctx) {
    for (const f of ctx.flows.values()) f.ac.abort();
    await within(Promise.all([...ctx.flows.values()].map((f) => f.done)), 3000);
    await within(ctx.listeners.close(), 3000);
  }
  await down(stateDir).catch(() => {});
  if (!keep) fs.rmSync(stateDir, { recursive: true, force: true });
}

function timeOf(steps: StepRecord[], ref: TimeRef): number | undefined {
  if (!ref.step) return ref.offsetMs;
  const s = steps.find((x) => x.name === ref.step);
  if (!s) return undefined;
  const base = ref.edge === 'start' ? s.startMs : s.endMs;
  return base === undefined ? undefined : base + ref.offsetMs;
}

function fmtClock(ms: number): string {
  return `${(ms / 1000).toFixed(1).padStart(5)}s`;
}

function flowCounters(c: RunContext): string {
  const now = c.now();
  const live = [...c.flows.values()].filter((f) => !f.finished);
  if (!live.length) return c.flows.size ? 'flows done' : '';
  return 'flows ' + live.map((f) => `${f.spec.name} ${f.counter(now)}`).join(' ');
}

function describeStep(s: Step): string {
  const b = s.body;
  switch (b.type) {
    case 'traffic':
      return `traffic: ${b.flows.map(describeFlow).join('; ')}${b.wait ? ' (waiting for the end)' : ''}`;
    case 'fault':
      return `fault: ${describeFault(b.fault)}`;
    case 'wait':
      return b.forMs !== undefined ? `wait ${fmtMs(b.forMs)}` : b.flows ? `wait for flows ${b.flows.join(', ')}` : `wait until ${b.until!.name} (timeout ${fmtMs(b.timeoutMs)})`;
    case 'assert':
      return `assert ${b.conditions.length === 1 ? b.conditions[0].name : `${b.conditions.length} conditions`}`;
  }
}

function describeFlow(f: FlowSpec): string {
  return `${f.name} = ${f.kind} ${f.from.text} -> ${f.to.text} ${f.rateHz}/s x ${f.count}${f.size !== undefined ? ` size ${f.size}` : ''}${f.df === true ? ' DF' : f.df === false ? ' no-DF' : ''}`;
}

async function runStep(step: Step, sr: StepRecord, c: RunContext, say: (s: string) => void): Promise<void> {
  const b = step.body;
  switch (b.type) {
    case 'traffic': {
      const started = b.flows.map((f) => startFlow(f, c));
      sr.detail = started.map((f) => `${f.spec.name}: ${f.from.key} (${f.from.ip}, ${f.from.node}) -> ${f.to.pod ?? ''} ${f.to.ip}`).join('; ');
      if (b.wait) await waitFlows(started, c, remainingMs(started, c) + PENDING_FLOW_GRACE_MS);
      return;
    }
    case 'fault': {
      const what = await applyFault(b.fault, c, step.index);
      sr.detail = what;
      say(`         -> ${what}`);
      return;
    }
    case 'wait': {
      if (b.forMs !== undefined) return sleep(b.forMs, c.signal);
      if (b.flows) {
        const fl = b.flows.map((n) => c.flows.get(n)!);
        return waitFlows(fl, c, b.timeoutMs || remainingMs(fl, c) + PENDING_FLOW_GRACE_MS);
      }
      await check(b.until!, step, c, say, { pollUntilMs: b.timeoutMs, intervalMs: b.intervalMs, isWait: true });
      return;
    }
    case 'assert':
      for (const cond of b.conditions) await check(cond, step, c, say, { pollUntilMs: cond.withinMs, intervalMs: 250, isWait: false });
  }
}

/** Evaluates a condition (polling until it holds when there is a deadline) and records it. */
async function check(cond: Condition, step: Step, c: RunContext, say: (s: string) => void, o: { pollUntilMs?: number; intervalMs: number; isWait: boolean }): Promise<void> {
  const start = c.now();
  await waitForWindow(cond, c);
  let out: Outcome;
  for (;;) {
    out = await evaluate(cond, c);
    if (out.ok || o.pollUntilMs === undefined || c.now() - start >= o.pollUntilMs || c.signal.aborted) break;
    await sleep(Math.min(o.intervalMs, o.pollUntilMs - (c.now() - start)), c.signal);
  }
  if (c.signal.aborted) throw new Interrupted();
  const took = c.now() - start;
  const rec: AssertRecord = {
    step: step.index,
    stepName: step.name,
    name: o.isWait ? `wait until ${cond.name}` : cond.name,
    kind: o.isWait ? `wait:${cond.kind}` : cond.kind,
    line: cond.line,
    ok: out.ok,
    expected: out.expected + (o.pollUntilMs !== undefined ? ` within ${fmtMs(o.pollUntilMs)}` : ''),
    actual: out.actual,
    message: out.message,
    atMs: Math.round(c.now()),
    tookMs: o.pollUntilMs !== undefined ? Math.round(took) : undefined,
    detail: out.detail,
  };
  c.asserts.push(rec);
  const after = o.pollUntilMs !== undefined && out.ok ? ` after ${fmtMs(took)}` : '';
  say(`         ${out.ok ? 'PASS' : 'FAIL'} ${rec.name}: ${out.actual}${after}`);
  if (!out.ok && out.message) say(`              ${out.message}`);
}

/** A Service's ClusterIP, read when its flow starts (the Service may be created by an earlier step). */
async function serviceIp(c: RunContext, namespace: string, name: string): Promise<string> {
  const svc = await c.api.get<{ spec?: { clusterIP?: string } }>('services', name, namespace).catch(() => null);
  const ip = svc?.spec?.clusterIP;
  if (!ip || ip === 'None') throw new StepError(`Service ${namespace}/${name} not found (or headless: no ClusterIP)`);
  return ip;
}

function startFlow(spec: FlowSpec, c: RunContext): FlowRecord {
  const rec = new FlowRecord(spec);
  const rng = c.rng.fork(`flow:${spec.name}`);
  const from = c.pods.resolve(spec.from, rng)[0];
  if (!from.ip) throw new StepError(`flow ${spec.name}: source pod ${from.key} is not Running`);
  if (c.down.has(from.node)) throw new StepError(`flow ${spec.name}: source pod ${from.key} is on ${from.node}, which is down`);
  rec.from = from;
  const to = spec.to;
  if (to.type === 'ip') rec.to = { ip: to.ip };
  else if (to.type === 'service') rec.to = { service: `${to.namespace}/${to.name}`, ip: '' };
  else {
    const to = c.pods.resolve(spec.to, rng)[0];
    if (!to.ip) throw new StepError(`flow ${spec.name}: destination pod ${to.key} has no IP`);
    rec.to = { pod: to.key, node: to.node, ip: to.ip };
  }
  const jitter = spec.startJitterMs ? rng.int(0, Math.round(spec.startJitterMs)) : 0;
  rec.startedAtMs = c.now();
  rec.firstDueMs = rec.startedAtMs + jitter;
  rec.state = 'running';
  c.flows.set(spec.name, rec);
  const driver = DRIVERS[spec.kind];
  const env = { io: c.io, now: () => c.now(), listeners: c.listeners, rng };
  rec.done = (async () => {
    try {
      await sleep(jitter, rec.ac.signal);
      if (to.type === 'service') rec.to.ip = await serviceIp(c, to.namespace, to.name);
      rec.firstDueMs = c.now();
      await driver(rec, env);
      rec.state = rec.ac.signal.aborted ? 'interrupted' : 'done';
      if (rec.ac.signal.aborted) rec.note ??= 'stopped by the runner';
    } catch (e) {
      rec.state = 'interrupted';
      const msg = (e as Error).message;
      rec.note = /closed the control channel|ECONNREFUSED|ENOENT/.test(msg) ? `the source node's agent went away (${from.node}: ${msg})` : msg;
    } finally {
      rec.endedAtMs = c.now();
    }
  })();
  return rec;
}

function remainingMs(flows: FlowRecord[], c: RunContext): number {
  const now = c.now();
  return Math.max(0, ...flows.map((f) => f.firstDueMs + f.spec.count * f.intervalMs - now)) + 3000;
}

async function waitFlows(flows: FlowRecord[], c: RunContext, timeoutMs: number): Promise<void> {
  await within(Promise.all(flows.map((f) => f.done)), timeoutMs, c.signal);
  if (c.signal.aborted) throw new Interrupted();
  const late = flows.filter((f) => !f.finished);
  for (const f of late) {
    f.ac.abort();
    f.note = `did not finish within ${fmtMs(timeoutMs)}; stopped`;
  }
  if (late.length) await within(Promise.all(late.map((f) => f.done)), 3000);
}

/**
 * Runs the scenario on each of its backends in turn, stopping before the next
 * once `o.signal` aborts. The runs are sequential so that they do not compete
 * for the machine's cores: latencies taken under different loads would
 * compare the loads, not the backends.
 */
export async function runComparison(sc: Scenario, o: RunOptions = {}): Promise<ComparisonReport> {
  const runs: ScenarioReport[] = [];
  for (const [i, backend] of sc.backends.entries()) {
    if (o.signal?.aborted) break;
    o.progress?.line(`backend ${backend} (${i + 1} of ${sc.backends.length})`);
    runs.push(await runScenario({ ...sc, lab: { ...sc.lab, backend } }, o));
  }
  return {
    format: 'podlab-scenario-comparison/1',
    scenario: { name: sc.name, description: sc.description, file: sc.file },
    seed: o.seed ?? sc.seed,
    backends: sc.backends,
    verdict: overallVerdict(runs, sc.backends.length),
    runs,
  };
}

export type { Verdict };
