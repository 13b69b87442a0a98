/**
 * Scenario files: YAML in, a checked `Scenario` out, or a ScenarioError
 * `FILE:LINE: FIELD: message` naming the first problem, before anything starts.
 *
 * The structure mirrors `scenarios/schema.json` (what editors validate against);
 * on top of it this checks what a schema cannot: that nodes exist in the lab,
 * pods exist in the workload, flows and steps are defined before they are
 * referenced, and that options fit the lab (bgpTopology with the bgp backend,
 * Services as tcp/http flow targets). Line numbers come from `yaml`'s
 * LineCounter, as in lab/manifest.ts; inline workload manifests go through the
 * same checker as `podlab apply -f`, with lines mapped back into this file.
 */
import fs from 'node:fs';
import path from 'node:path';
import { LineCounter, isMap, parseDocument, type Document, type Node as YamlNode } from 'yaml';
import { demoPods } from '../lab/lab.ts';
import { ManifestError, loadManifestFile, parseManifests, toJsBounded, type LoadedObject } from '../lab/manifest.ts';
import { isValidIpv4 } from '../packet/addr.ts';
import type { ImpairmentSpec } from '../overlay/impairment.ts';
import { DEFAULT_BACKEND } from '../backends/registry.ts';
import { NETWORK_POLICIES } from '../control-plane/network-policy.ts';
import { formatFieldError } from '../control-plane/errors.ts';
import type { KubeObject } from '../control-plane/types.ts';
import { BACKENDS, BGP_BACKENDS, BGP_TOPOLOGIES, PROXY_MODES, backendHasDevice, backendsWithDevice, speaksBgp } from './capabilities.ts';
import type { Comparison, Condition, FaultSpec, FlowSpec, LabSpec, PodRef, PodSelector, ReachabilityMatrix, Scenario, Step, StepBody, Window } from './model.ts';
import { COMPARISONS, fmtMs, fmtPct, isName, parseDurationText, parseRate, parseRatio, parseTimeRef } from './units.ts';

/** A scenario problem, located in its file. Nothing has been started when this is thrown. */
export class ScenarioError extends Error {
  override name = 'ScenarioError';
  constructor(
    readonly file: string,
    readonly line: number,
    readonly field: string,
    readonly detail: string,
  ) {
    super(`${file}:${line}: ${field ? field + ': ' : ''}${detail}`);
  }
}

type Path = (string | number)[];

/** The fault kinds the runner implements (faults.ts registers one function per kind). */
export const FAULT_KINDS = ['link', 'partition', 'kill', 'freeze', 'thaw', 'restart', 'delete-pods', 'delete-node', 'scale', 'mtu', 'heal', 'bgp-reset', 'mark-not-ready', 'policy'] as const;
/** The condition kinds usable in `assert` and `wait.until`. */
export const CONDITION_KINDS = ['reachability', 'delivery', 'latency', 'no-route', 'counter', 'flow-errors', 'bgp-converged', 'transfer', 'lb-spread', 'resolve', 'lb-answers'] as const;
/** The flow kinds traffic steps can start (traffic.ts registers one driver per kind). */
export const FLOW_KINDS = ['ping', 'udp', 'tcp', 'http'] as const;
/** Flows that open connections (`probe tcp|http`): they may target a Service, and default to port 80. */
const CONNECTION_FLOWS: readonly string[] = ['tcp', 'http'];
/** Errors a flow counts, by kind (`flow-errors` conditions name them). */
export const FLOW_ERRORS = ['frag-needed', 'host-unreachable', 'net-unreachable', 'port-unreachable', 'ttl-exceeded', 'local', 'other', 'any'] as const;
export const COUNTERS = ['rx-packets', 'rx-bytes', 'tx-packets', 'tx-bytes', 'drops'] as const;
const PROCESS_TARGETS = 'apiserver';

function fieldName(p: Path): string {
  return p.map((x, i) => (typeof x === 'number' ? `[${x}]` : i ? `.${x}` : x)).join('');
}

/** Line lookups and failures for one parsed document. */
class Cx {
  constructor(
    readonly doc: Document.Parsed,
    readonly lc: LineCounter,
    readonly file: string,
    readonly text: string,
  ) {}

  node(p: Path): YamlNode | undefined {
    return (p.length ? this.doc.getIn(p, true) : this.doc.contents) as YamlNode | undefined;
  }

  lineOf(p: Path): number {
    for (let q = p; ; q = q.slice(0, -1)) {
      const n = this.node(q);
      if (n && n.range) return this.lc.linePos(n.range[0]).line;
      if (!q.length) return 1;
    }
  }

  fail(p: Path, msg: string): never {
    throw new ScenarioError(this.file, this.lineOf(p), fieldName(p), msg);
  }
}

/** A value at a path, with typed accessors that fail with the path's line. */
class F {
  constructor(
    readonly cx: Cx,
    readonly path: Path,
    readonly v: unknown,
  ) {}

  get line(): number {
    return this.cx.lineOf(this.path);
  }

  get present(): boolean {
    return this.v !== undefined && this.v !== null;
  }

  fail(msg: string): never {
    return this.cx.fail(this.path, msg);
  }

  isMap(): boolean {
    return typeof this.v === 'object' && this.v !== null && !Array.isArray(this.v);
  }

  /** Checks this is a mapping with only `allowed` keys. */
  map(allowed: readonly string[], what: string): this {
    if (!this.isMap()) this.fail(`${what} must be a mapping`);
    for (const k of Object.keys(this.v as object)) {
      if (!allowed.includes(k)) this.cx.fail([...this.path, k], `unknown field '${k}' in ${what} (expected: ${allowed.join(', ')})`);
    }
    return this;
  }

  at(k: string | number): F {
    const v = this.v && typeof this.v === 'object' ? (this.v as Record<string | number, unknown>)[k] : undefined;
    return new F(this.cx, [...this.path, k], v);
  }

  has(k: string): boolean {
    return this.at(k).present;
  }

  opt<T>(k: string, fn: (f: F) => T): T | undefined {
    const f = this.at(k);
    return f.present ? fn(f) : undefined;
  }

  req<T>(k: string, fn: (f: F) => T): T {
    const f = this.at(k);
    if (!f.present) this.cx.fail(f.path, 'required field is missing');
    return fn(f);
  }

  str(): string {
    if (typeof this.v !== 'string' || !this.v) this.fail(`must be a non-empty string, got ${JSON.stringify(this.v)}`);
    return this.v;
  }

  name(what = 'name'): string {
    if (!isName(this.v)) this.fail(`invalid ${what} ${JSON.stringify(this.v)}: use lowercase letters, digits, '-' and '_' (at most 63)`);
    return this.v;
  }

  int(min: number, max: number): number {
    const v = this.v;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) this.fail(`must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
    return v;
  }

  bool(): boolean {
    if (typeof this.v !== 'boolean') this.fail(`must be true or false, got ${JSON.stringify(this.v)}`);
    return this.v;
  }

  oneOf<T extends string>(values: readonly T[]): T {
    const v = this.v;
    if (typeof v !== 'string' || !values.includes(v as T)) this.fail(`must be one of ${values.join(', ')}; got ${JSON.stringify(v)}`);
    return v as T;
  }

  duration(min = 0, max = 3_600_000): number {
    const ms = parseDurationText(this.v);
    if (ms === null) this.fail(`expected a duration like 500ms, 2s or 1m, got ${JSON.stringify(this.v)}`);
    if (ms < min || ms > max) this.fail(`must be from ${fmtMs(min)} to ${fmtMs(max)}, got ${String(this.v)}`);
    return ms;
  }

  ratio(): number {
    const r = parseRatio(this.v);
    if (r === null) this.fail(`expected a percentage like 5% or a fraction from 0 to 1, got ${JSON.stringify(this.v)}`);
    return r;
  }

  list(what: string, minItems = 0): F[] {
    if (!Array.isArray(this.v)) this.fail(`${what} must be a list`);
    const a = this.v as unknown[];
    if (a.length < minItems) this.fail(`${what} needs at least ${minItems} item${minItems === 1 ? '' : 's'}`);
    return a.map((_, i) => this.at(i));
  }

  /** A scalar or a list of them. */
  oneOrMany(what: string): F[] {
    return Array.isArray(this.v) ? this.list(what, 1) : [this];
  }
}

interface KnownPod {
  key: string;
  node?: string;
  labels: Record<string, string>;
}

/** What the validator knows while walking the timeline. */
class Scope {
  readonly nodes: string[];
  readonly pods = new Map<string, KnownPod>();
  readonly prefixes = new Set<string>();
  readonly steps = new Set<string>();
  readonly flows = new Map<string, FlowSpec>();

  constructor(
    readonly lab: LabSpec,
    workload: LoadedObject[],
  ) {
    this.nodes = Array.from({ length: lab.nodes }, (_, i) => `node-${i + 1}`);
    for (const p of demoPods(lab.nodes, lab.podsPerNode)) this.addPod(p.metadata.namespace ?? 'default', p.metadata.name, p.spec?.nodeName, p.metadata.labels ?? {});
    for (const o of workload) {
      if (o.obj.kind !== 'Pod') continue;
      const spec = o.obj.spec as { nodeName?: string } | undefined;
      this.addPod(o.obj.metadata.namespace ?? 'default', o.obj.metadata.name, spec?.nodeName, (o.obj.metadata.labels) ?? {});
    }
  }

  addPod(ns: string, name: string, node: string | undefined, labels: Record<string, string>): void {
    this.pods.set(`${ns}/${name}`, { key: `${ns}/${name}`, node, labels });
  }

  node(f: F, extra: string[] = []): string {
    const v = f.str();
    if (!this.nodes.includes(v) && !extra.includes(v)) f.fail(`unknown node '${v}' (this lab has ${[...this.nodes, ...extra].join(', ')})`);
    return v;
  }

  podKnown(key: string): boolean {
    if (this.pods.has(key)) return true;
    const [ns, name] = key.split('/');
    return [...this.prefixes].some((p) => p.startsWith(`${ns}/`) && name.startsWith(p.slice(ns.length + 1)));
  }
}

/** Reads and checks a scenario file. */
export function loadScenarioFile(file: string): Scenario {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new ScenarioError(file, 0, '', `cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return parseScenario(text, file);
}

/** Parses and checks scenario text; `file` names it in messages and anchors `file:` references. */
export function parseScenario(text: string, file: string): Scenario {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length) {
    const e = doc.errors[0];
    throw new ScenarioError(file, lc.linePos(e.pos[0]).line, '', `invalid YAML: ${e.message.split('\n')[0]}`);
  }
  const cx = new Cx(doc, lc, file, text);
  if (!isMap(doc.contents)) cx.fail([], 'a scenario must be a mapping with name, lab, workload and timeline');
  const root = new F(cx, [], toJsBounded(doc, lc, (line, detail) => new ScenarioError(file, line, '', detail)));
  root.map(['name', 'description', 'seed', 'lab', 'workload', 'timeline'], 'a scenario');
  const name = root.req('name', (f) => f.name('scenario name'));
  const description = root.opt('description', (f) => f.str()) ?? '';
  const seed = root.opt('seed', (f) => f.int(-(2 ** 31), 2 ** 31 - 1)) ?? 1;
  const { lab, backends } = parseLab(root.at('lab'));
  const workload = root.opt('workload', (f) => f.list('workload').flatMap((item) => parseWorkloadItem(item, file))) ?? [];
  // A comparison runs the one timeline on every backend: check it against each, so that a step one of them cannot
  // take (bgp-reset on vxlan, a fault on flannel.1 under bgp) is refused before anything starts.
  const parseTimeline = (backend: string) => {
    const scope = new Scope({ ...lab, backend }, workload);
    return root.req('timeline', (f) => f.list('timeline', 1)).map((s, i) => parseStep(s, i, scope));
  };
  const timeline = parseTimeline(lab.backend);
  for (const b of backends.slice(1)) parseTimeline(b);
  return { file, name, description, seed, lab, backends, workload, timeline };
}

function parseLab(f: F): { lab: LabSpec; backends: string[] } {
  const lab: LabSpec = { nodes: 3, podsPerNode: 1, backend: DEFAULT_BACKEND, mtu: 1500 };
  if (!f.present) return { lab, backends: [lab.backend] };
  f.map(['nodes', 'podsPerNode', 'backend', 'proxyMode', 'bgpTopology', 'mtu'], 'lab');
  lab.nodes = f.opt('nodes', (x) => x.int(1, 20)) ?? lab.nodes;
  lab.podsPerNode = f.opt('podsPerNode', (x) => x.int(0, 26)) ?? lab.podsPerNode;
  const backends =
    f.opt('backend', (x) => {
      if (!Array.isArray(x.v)) return [x.oneOf(BACKENDS)];
      const list = x.list('backend', 2).map((b) => b.oneOf(BACKENDS));
      const twice = list.find((b, i) => list.indexOf(b) !== i);
      if (twice) x.fail(`${twice} is listed twice: a comparison runs each backend once`);
      return list;
    }) ?? [lab.backend];
  lab.backend = backends[0];
  lab.proxyMode = f.opt('proxyMode', (x) => x.oneOf(PROXY_MODES));
  lab.bgpTopology = f.opt('bgpTopology', (x) => {
    const v = x.oneOf(BGP_TOPOLOGIES);
    const other = backends.find((b) => !speaksBgp(b));
    if (other) x.fail(`bgpTopology goes with backend: ${BGP_BACKENDS.join(' or ')} (this lab's backend${backends.length > 1 ? 's include' : ' is'} ${other})`);
    return v;
  });
  lab.mtu = f.opt('mtu', (x) => x.int(576, 9000)) ?? lab.mtu;
  return { lab, backends };
}

/** A workload item: `file: pods.yaml` (relative to the scenario) or an inline manifest. */
function parseWorkloadItem(f: F, file: string): LoadedObject[] {
  if (!f.isMap()) f.fail('a workload item must be a Kubernetes manifest or `file: PATH`');
  const keys = Object.keys(f.v as object);
  if (keys.includes('file')) {
    if (keys.length > 1) f.fail(`'file' stands alone: a workload item is either file: PATH or an inline manifest (also found: ${keys.filter((k) => k !== 'file').join(', ')})`);
    const rel = f.at('file').str();
    const abs = path.resolve(path.dirname(file), rel);
    if (!fs.existsSync(abs)) f.at('file').fail(`no such file: ${rel} (resolved against the scenario's directory: ${abs})`);
    return loadManifestFile(abs);
  }
  // The manifest checker works on text: hand it this item's own text, indented
  // as in the file, and map its line numbers back.
  const node = f.cx.node(f.path)!;
  const [start, , end] = node.range!;
  const pos = f.cx.lc.linePos(start);
  const snippet = ' '.repeat(pos.col - 1) + f.cx.text.slice(start, end);
  try {
    return parseManifests(snippet, file).map((o) => ({ ...o, line: o.line + pos.line - 1 }));
  } catch (e) {
    if (!(e instanceof ManifestError)) throw e;
    throw new ScenarioError(file, e.line + pos.line - 1, fieldName(f.path) + (e.field ? '.' + e.field : ''), e.detail);
  }
}

const STEP_KEYS = ['traffic', 'fault', 'wait', 'assert'] as const;

function parseStep(f: F, index: number, scope: Scope): Step {
  f.map(['name', ...STEP_KEYS], `timeline step ${index + 1}`);
  const kinds = STEP_KEYS.filter((k) => f.has(k));
  if (kinds.length !== 1) f.fail(kinds.length ? `a step has exactly one of ${STEP_KEYS.join(', ')}; this one has ${kinds.join(' and ')}` : `a step needs one of ${STEP_KEYS.join(', ')}`);
  const name = f.opt('name', (x) => x.name('step name'));
  if (name && scope.steps.has(name)) f.at('name').fail(`step name '${name}' is used twice`);
  const kind = kinds[0];
  const b = f.at(kind);
  let body: StepBody;
  switch (kind) {
    case 'traffic':
      body = parseTraffic(b, scope);
      break;
    case 'fault':
      body = { type: 'fault', fault: parseFault(b, scope) };
      break;
    case 'wait':
      body = parseWait(b, scope);
      break;
    case 'assert':
      body = { type: 'assert', conditions: b.oneOrMany('assert').map((c) => parseCondition(c, scope)) };
      break;
  }
  // Declared after the body: a step's windows may not refer to the step itself.
  if (name) scope.steps.add(name);
  return { index, name, line: f.line, body };
}

// ------------------------------------------------------------------ traffic

const FLOW_FIELDS = ['name', 'kind', 'from', 'to', 'rate', 'duration', 'count', 'size', 'df', 'port', 'startJitter'];

function parseTraffic(f: F, scope: Scope): StepBody {
  if (!f.isMap()) f.fail('traffic must be a mapping: one flow, or flows: [...]');
  let flows: F[];
  if (f.has('flows')) {
    f.map(['flows', 'wait'], 'traffic');
    flows = f.at('flows').list('traffic.flows', 1);
  } else {
    f.map([...FLOW_FIELDS, 'wait'], 'traffic');
    flows = [f];
  }
  const wait = f.opt('wait', (x) => x.bool()) ?? false;
  const specs = flows.map((x) => parseFlow(x, scope, x === f ? [...FLOW_FIELDS, 'wait'] : FLOW_FIELDS));
  return { type: 'traffic', flows: specs, wait };
}

function parseFlow(f: F, scope: Scope, allowed: string[]): FlowSpec {
  f.map(allowed, 'a flow');
  const name = f.req('name', (x) => x.name('flow name'));
  if (scope.flows.has(name)) f.at('name').fail(`flow name '${name}' is used twice`);
  const kind = f.opt('kind', (x) => x.oneOf(FLOW_KINDS)) ?? 'ping';
  const from = f.req('from', (x) => parsePodRef(x, scope, 'one'));
  if (from.type === 'ip') f.at('from').fail('a flow starts in a pod: give a pod name or a pod: selector');
  const to = f.req('to', (x) => parsePodRef(x, scope, 'one', CONNECTION_FLOWS.includes(kind)));
  const rateHz = f.opt('rate', (x) => {
    const r = parseRate(x.v);
    if (r === null || r > 200) x.fail(`expected a rate like 20 or 20/s (at most 200/s), got ${JSON.stringify(x.v)}`);
    return r!;
  }) ?? 10;
  if (f.has('duration') && f.has('count')) f.fail('give duration or count, not both');
  const count = f.has('count') ? f.at('count').int(1, 100_000) : Math.max(1, Math.round(((f.opt('duration', (x) => x.duration(1, 600_000)) ?? 5000) / 1000) * rateHz));
  const size = f.opt('size', (x) => {
    if (CONNECTION_FLOWS.includes(kind)) x.fail(`size is a ping and udp option; ${kind} flows open a connection per probe`);
    return kind === 'udp' ? x.int(32, 65000) : x.int(0, 65507);
  });
  const df = f.opt('df', (x) => {
    if (kind !== 'ping') x.fail(`df is a ping option (ping -M do); ${kind} flows cannot set it`);
    return x.bool();
  });
  const port = f.opt('port', (x) => {
    if (kind === 'ping') x.fail('port is a udp, tcp and http option; ping flows have no port');
    return x.int(1, 65535);
  });
  const startJitterMs = f.opt('startJitter', (x) => x.duration(0, 60_000)) ?? 0;
  const spec: FlowSpec = { name, kind, from, to, rateHz, count, size, df, port: kind === 'udp' ? (port ?? 9000) : CONNECTION_FLOWS.includes(kind) ? (port ?? 80) : undefined, startJitterMs, line: f.line };
  scope.flows.set(name, spec);
  return spec;
}

/**
 * A pod reference: `pod-1a`, `ns/name`, `{pod: {node, labels, prefix, namespace, name}, pick}`,
 * `{ip: 10.244.9.9}` (a destination only), `{service: NAME, namespace: NS}` (where `service` is
 * true: the destination of a tcp or http flow). `want` = 'one' means it must pick one pod.
 */
function parsePodRef(f: F, scope: Scope, want: 'one' | 'many', service = false): PodRef {
  if (typeof f.v === 'string') {
    const key = f.v.includes('/') ? f.v : `default/${f.v}`;
    if (!scope.podKnown(key)) {
      const known = [...scope.pods.keys()].map((k) => k.replace(/^default\//, ''));
      f.fail(`unknown pod '${f.v}' (pods of this scenario: ${known.join(', ') || 'none'})`);
    }
    return { type: 'name', key, text: f.v };
  }
  if (!f.isMap()) f.fail('expected a pod name, a pod: selector or ip: ADDRESS');
  if (f.has('service')) {
    if (!service) f.at('service').fail('a Service is the destination of tcp and http flows only (kind: tcp or http, to: {service: NAME})');
    f.map(['service', 'namespace'], 'a Service target');
    const name = f.at('service').name('Service name');
    const namespace = f.opt('namespace', (x) => x.name('namespace')) ?? 'default';
    return { type: 'service', name, namespace, text: `Service ${namespace}/${name}` };
  }
  if (f.has('ip')) {
    f.map(['ip'], 'an ip target');
    const ip = f.at('ip').str();
    if (!isValidIpv4(ip)) f.at('ip').fail(`not an IPv4 address: '${ip}'`);
    return { type: 'ip', ip, text: ip };
  }
  f.map(['pod', 'pick'], 'a pod reference');
  const s = f.req('pod', (x) => x.map(['name', 'namespace', 'node', 'prefix', 'labels'], 'a pod selector'));
  const selector: PodSelector = {};
  selector.name = s.opt('name', (x) => x.str());
  selector.namespace = s.opt('namespace', (x) => x.str());
  selector.node = s.opt('node', (x) => scope.node(x));
  selector.prefix = s.opt('prefix', (x) => x.str());
  selector.labels = s.opt('labels', (x) => {
    x.map(Object.keys(x.v as object), 'labels');
    for (const [k, v] of Object.entries(x.v as object)) if (typeof v !== 'string') x.at(k).fail('label values must be strings');
    return x.v as Record<string, string>;
  });
  const pick = f.opt('pick', (x) => x.oneOf(['first', 'random', 'all'] as const)) ?? (want === 'one' ? 'first' : 'all');
  if (want === 'one' && pick === 'all') f.at('pick').fail('a flow goes from one pod to one pod: pick first or random');
  const text = [selector.name, selector.prefix && `${selector.prefix}*`, selector.node && `on ${selector.node}`, selector.labels && Object.entries(selector.labels).map(([k, v]) => `${k}=${v}`).join(',')].filter(Boolean).join(' ');
  return { type: 'selector', selector, pick, text: `${pick} pod ${text || '(any)'}` };
}

// ------------------------------------------------------------------ faults

const IMPAIR_FIELDS = ['loss', 'delay', 'jitter', 'duplicate', 'reorder', 'corrupt'];

function nodeList(f: F, scope: Scope): string[] {
  return f.oneOrMany('a node list').map((x) => scope.node(x));
}

/** A NetworkPolicy manifest, checked as the apiserver will check it. */
function parseNetworkPolicy(f: F): KubeObject {
  if (!f.isMap()) f.fail('apply: a NetworkPolicy manifest (apiVersion networking.k8s.io/v1, kind NetworkPolicy)');
  const obj = structuredClone(f.v) as KubeObject;
  if (obj.apiVersion !== 'networking.k8s.io/v1' || obj.kind !== 'NetworkPolicy') f.fail('apply: apiVersion must be networking.k8s.io/v1 and kind NetworkPolicy');
  if (typeof obj.metadata?.name !== 'string' || !obj.metadata.name) f.at('metadata').fail('apply: metadata.name is required');
  const errs = NETWORK_POLICIES.validate?.(obj, undefined) ?? [];
  if (errs.length) f.fail(`apply: ${errs.map(formatFieldError).join('; ')}`);
  return obj;
}

function parseFault(f: F, scope: Scope): FaultSpec {
  if (!f.isMap()) f.fail('fault must be a mapping with a kind');
  const kind = f.req('kind', (x) => x.oneOf(FAULT_KINDS));
  const only = (...fields: string[]) => f.map(['kind', ...fields], `a ${kind} fault`);
  const proc = (x: F) => scope.node(x, [PROCESS_TARGETS]);
  switch (kind) {
    case 'link': {
      only('from', 'to', 'direction', ...IMPAIR_FIELDS);
      const from = f.req('from', (x) => nodeList(x, scope));
      const to = f.opt('to', (x) => nodeList(x, scope)) ?? scope.nodes.filter((n) => !from.includes(n));
      if (to.some((n) => from.includes(n))) f.at('to').fail('a node cannot impair its link to itself');
      if (!to.length) f.fail('no peer nodes: give to:');
      const spec: ImpairmentSpec = {};
      f.opt('loss', (x) => (spec.loss = x.ratio()));
      f.opt('delay', (x) => (spec.delayMs = x.duration(0, 60_000)));
      f.opt('jitter', (x) => (spec.jitterMs = x.duration(0, 60_000)));
      f.opt('duplicate', (x) => (spec.duplicate = x.ratio()));
      f.opt('reorder', (x) => (spec.reorder = x.ratio()));
      f.opt('corrupt', (x) => (spec.corrupt = x.ratio()));
      if (!Object.keys(spec).length) f.fail(`a link fault needs at least one of ${IMPAIR_FIELDS.join(', ')}`);
      const oneWay = (f.opt('direction', (x) => x.oneOf(['both', 'one-way'] as const)) ?? 'both') === 'one-way';
      return { kind, from, to, oneWay, spec };
    }
    case 'partition': {
      only('nodes', 'from');
      const a = f.req('nodes', (x) => nodeList(x, scope));
      const b = f.opt('from', (x) => nodeList(x, scope)) ?? scope.nodes.filter((n) => !a.includes(n));
      if (b.some((n) => a.includes(n))) f.at('from').fail('a node cannot be on both sides of a partition');
      if (!b.length) f.fail('nothing on the other side: every node is in nodes');
      return { kind, a, b };
    }
    case 'kill': {
      only('node', 'lb-leader');
      if (f.has('lb-leader')) {
        if (f.has('node')) f.fail('give node: or lb-leader:, not both');
        const ref = f.req('lb-leader', (x) => x.str());
        const [namespace, service] = ref.includes('/') ? ref.split('/', 2) : ['default', ref];
        return { kind, target: '', lbLeader: { service, namespace } };
      }
      return { kind, target: f.req('node', proc) };
    }
    case 'freeze':
    case 'thaw':
      only('node');
      return { kind, target: f.req('node', proc) };
    case 'restart':
      only('node', 'kill');
      return { kind, target: f.req('node', proc), kill: f.opt('kill', (x) => x.bool()) ?? false };
    case 'delete-pods': {
      only('pods', 'count', 'recreate');
      const pods = f.req('pods', (x) => parsePodRef(x, scope, 'many'));
      if (pods.type === 'ip') f.at('pods').fail('delete-pods takes pods, not addresses');
      return { kind, pods, count: f.opt('count', (x) => x.int(1, 1000)), recreate: f.opt('recreate', (x) => x.bool()) ?? false };
    }
    case 'delete-node':
      only('node');
      return { kind, node: f.req('node', (x) => scope.node(x)) };
    case 'mark-not-ready': {
      only('pods', 'ready');
      const pods = f.req('pods', (x) => parsePodRef(x, scope, 'many'));
      if (pods.type === 'ip') f.at('pods').fail('mark-not-ready takes pods, not addresses');
      return { kind, pods, ready: f.opt('ready', (x) => x.bool()) ?? false };
    }
    case 'bgp-reset': {
      only('node', 'peer');
      if (!speaksBgp(scope.lab.backend)) f.at('kind').fail(`bgp-reset needs lab.backend: ${BGP_BACKENDS.join(' or ')} (this lab runs ${scope.lab.backend})`);
      return { kind, node: f.req('node', (x) => scope.node(x)), peer: f.opt('peer', (x) => scope.node(x)) };
    }
    case 'scale': {
      only('prefix', 'replicas', 'namespace', 'labels', 'nodes');
      const prefix = f.req('prefix', (x) => {
        const s = x.str();
        if (!/^[a-z0-9]([-a-z0-9]*)?$/.test(s)) x.fail(`invalid prefix '${s}': lowercase letters, digits and '-' (pods are named PREFIX1, PREFIX2, ...)`);
        return s;
      });
      const namespace = f.opt('namespace', (x) => x.str()) ?? 'default';
      const labels = f.opt('labels', (x) => {
        x.map(Object.keys(x.v as object), 'labels');
        for (const [k, v] of Object.entries(x.v as object)) if (typeof v !== 'string') x.at(k).fail('label values must be strings');
        return x.v as Record<string, string>;
      }) ?? {};
      const replicas = f.req('replicas', (x) => x.int(0, 200));
      const nodes = f.opt('nodes', (x) => nodeList(x, scope));
      scope.prefixes.add(`${namespace}/${prefix}`);
      return { kind, prefix, replicas, namespace, labels, nodes };
    }
    case 'mtu': {
      only('node', 'dev', 'mtu');
      const dev = f.opt('dev', (x) => x.oneOf(['flannel.1', 'cni0', 'eth0'] as const)) ?? 'flannel.1';
      if (dev === 'flannel.1' && !backendHasDevice(scope.lab.backend, dev)) (f.has('dev') ? f.at('dev') : f).fail(`the ${scope.lab.backend} backend has no ${dev} (${backendsWithDevice(dev).join(', ')} only): use dev: eth0 or cni0`);
      return { kind, node: f.req('node', (x) => scope.node(x)), dev, mtu: f.req('mtu', (x) => x.int(68, 65535)) };
    }
    case 'heal':
      only('nodes');
      return { kind, nodes: f.opt('nodes', (x) => nodeList(x, scope)) };
    case 'policy': {
      only('apply', 'remove');
      if (f.has('apply') === f.has('remove')) f.fail('a policy fault takes exactly one of apply (a NetworkPolicy) or remove (NAMESPACE/NAME)');
      const remove = f.opt('remove', (x) => {
        const m = /^(?:([a-z0-9][-a-z0-9]*)\/)?([a-z0-9][-a-z0-9.]*)$/.exec(x.str());
        if (!m) return x.fail('remove: NAME or NAMESPACE/NAME of a NetworkPolicy');
        return { namespace: m[1] ?? 'default', name: m[2] };
      });
      const apply = f.opt('apply', (x) => parseNetworkPolicy(x));
      return { kind, apply, remove };
    }
  }
}

// ------------------------------------------------------------------ wait

function parseWait(f: F, scope: Scope): StepBody {
  if (typeof f.v === 'string') return { type: 'wait', forMs: f.duration(0, 600_000), timeoutMs: 0, intervalMs: 0 };
  f.map(['for', 'until', 'flows', 'timeout', 'interval'], 'wait');
  const modes = ['for', 'until', 'flows'].filter((k) => f.has(k));
  if (modes.length !== 1) f.fail(`wait takes exactly one of for: DURATION, until: CONDITION, flows: [NAMES] | all${modes.length ? ` (got ${modes.join(', ')})` : ''}`);
  if (f.has('for')) {
    if (f.has('timeout') || f.has('interval')) f.fail('timeout and interval go with until: or flows:, not for:');
    return { type: 'wait', forMs: f.at('for').duration(0, 600_000), timeoutMs: 0, intervalMs: 0 };
  }
  const timeoutMs = f.opt('timeout', (x) => x.duration(1, 600_000)) ?? (f.has('until') ? 10_000 : 0);
  const intervalMs = f.opt('interval', (x) => x.duration(10, 60_000)) ?? 250;
  if (f.has('flows')) {
    const x = f.at('flows');
    const names = x.v === 'all' ? [...scope.flows.keys()] : x.oneOrMany('flows').map((n) => flowName(n, scope));
    if (!names.length) x.fail('no flows have been started before this step');
    return { type: 'wait', flows: names, timeoutMs, intervalMs };
  }
  const until = parseCondition(f.at('until'), scope);
  if (until.withinMs !== undefined) f.at('until').at('within').fail("within: belongs to assert; a wait's deadline is its timeout:");
  return { type: 'wait', until, timeoutMs, intervalMs };
}

// ------------------------------------------------------------------ conditions

function flowName(f: F, scope: Scope): string {
  const n = f.str();
  if (!scope.flows.has(n)) f.fail(`unknown flow '${n}' (flows started before this step: ${[...scope.flows.keys()].join(', ') || 'none'})`);
  return n;
}

function parseWindow(f: F, scope: Scope): Window {
  f.map(['from', 'to', 'last'], 'window');
  if (f.has('last')) {
    if (f.has('from') || f.has('to')) f.fail('window takes last: DURATION, or from:/to:, not both');
    const lastMs = f.at('last').duration(1, 3_600_000);
    return { lastMs, text: `last ${fmtMs(lastMs)}` };
  }
  if (!f.has('from') && !f.has('to')) f.fail('window needs from:, to: or last:');
  const ref = (x: F) => {
    const r = parseTimeRef(x.v);
    if (!r) x.fail(`expected a time like 3s, STEP, STEP.start or STEP+500ms, got ${JSON.stringify(x.v)}`);
    if (r.step && !scope.steps.has(r.step)) x.fail(`no step named '${r.step}' before this one (named steps so far: ${[...scope.steps].join(', ') || 'none'})`);
    return r;
  };
  const w: Window = { text: '' };
  w.from = f.opt('from', ref);
  f.opt('to', (x) => {
    if (typeof x.v === 'string' && x.v.trim().startsWith('+')) {
      if (!w.from) x.fail('to: +DURATION is relative to from:, which is missing');
      w.toRelativeMs = new F(x.cx, x.path, x.v.trim().slice(1)).duration(1, 3_600_000);
    } else w.to = ref(x);
  });
  w.text = `[${w.from?.text ?? 'start'}, ${w.toRelativeMs !== undefined ? `+${fmtMs(w.toRelativeMs)}` : (w.to?.text ?? 'end')}]`;
  return w;
}

function parseCondition(f: F, scope: Scope): Condition {
  if (!f.isMap()) f.fail('a condition must be a mapping with a kind');
  const kind = f.req('kind', (x) => x.oneOf(CONDITION_KINDS));
  const only = (...fields: string[]) => f.map(['kind', 'name', 'within', ...fields], `a ${kind} condition`);
  const base = { line: f.line, withinMs: undefined as number | undefined };
  const given = () => f.opt('name', (x) => x.str());
  const within = () => f.opt('within', (x) => x.duration(1, 600_000));
  const ratioBounds = () => {
    const min = f.opt('min', (x) => x.ratio());
    const max = f.opt('max', (x) => x.ratio());
    if (min === undefined && max === undefined) f.fail('give min:, max: or both');
    if (min !== undefined && max !== undefined && min > max) f.at('min').fail(`min ${fmtPct(min)} is above max ${fmtPct(max)}`);
    return { min, max };
  };
  switch (kind) {
    case 'reachability': {
      if (f.has('matrix')) {
        only('from', 'to', 'matrix', 'ports', 'count');
        const matrix = parseMatrix(f, scope);
        const count = f.opt('count', (x) => x.int(1, 20)) ?? 2;
        const probes = matrix.probes.map((p) => p.text).join(', ');
        return { ...base, kind, from: matrix.rows[0], to: matrix.cols[0], expect: 'reachable', count, matrix, withinMs: within(), name: given() ?? `reachability matrix ${matrix.rows.length}x${matrix.cols.length} on ${probes}` };
      }
      if (f.has('ports')) f.at('ports').fail('ports go with matrix: (a truth table per port); a pair check pings');
      only('from', 'to', 'expect', 'count');
      const anyPod: PodRef = { type: 'selector', selector: {}, pick: 'all', text: 'every pod' };
      const from = f.opt('from', (x) => parsePodRef(x, scope, 'many')) ?? anyPod;
      if (from.type === 'ip') f.at('from').fail('reachability is checked from pods');
      const to = f.opt('to', (x) => parsePodRef(x, scope, 'many')) ?? anyPod;
      const expect = f.opt('expect', (x) => x.oneOf(['reachable', 'unreachable'] as const)) ?? 'reachable';
      const count = f.opt('count', (x) => x.int(1, 20)) ?? 2;
      return { ...base, kind, from, to, expect, count, withinMs: within(), name: given() ?? `${from.text} -> ${to.text} ${expect}` };
    }
    case 'delivery': {
      only('flow', 'min', 'max', 'window');
      const flow = f.req('flow', (x) => flowName(x, scope));
      const { min, max } = ratioBounds();
      const window = f.opt('window', (x) => parseWindow(x, scope));
      const bounds = [min !== undefined && `>= ${fmtPct(min)}`, max !== undefined && `<= ${fmtPct(max)}`].filter(Boolean).join(' and ');
      return { ...base, kind, flow, min, max, window, withinMs: within(), name: given() ?? `delivery of ${flow} ${bounds}${window ? ` in ${window.text}` : ''}` };
    }
    case 'latency': {
      only('flow', 'percentile', 'max', 'min', 'window');
      const flow = f.req('flow', (x) => flowName(x, scope));
      const percentile = f.opt('percentile', (x) => {
        if (typeof x.v !== 'number' || !(x.v > 0 && x.v <= 100)) x.fail(`must be a number from 0 (excluded) to 100, got ${JSON.stringify(x.v)}`);
        return x.v as number;
      }) ?? 50;
      const maxMs = f.opt('max', (x) => x.duration(0, 600_000));
      const minMs = f.opt('min', (x) => x.duration(0, 600_000));
      if (maxMs === undefined && minMs === undefined) f.fail('give max: (and/or min:) as a duration, e.g. max: 50ms');
      const window = f.opt('window', (x) => parseWindow(x, scope));
      const bounds = [minMs !== undefined && `>= ${fmtMs(minMs)}`, maxMs !== undefined && `<= ${fmtMs(maxMs)}`].filter(Boolean).join(' and ');
      return { ...base, kind, flow, percentile, maxMs, minMs, window, withinMs: within(), name: given() ?? `p${percentile} latency of ${flow} ${bounds}${window ? ` in ${window.text}` : ''}` };
    }
    case 'no-route': {
      only('node', 'on');
      const node = f.req('node', (x) => scope.node(x));
      const on = f.opt('on', (x) => nodeList(x, scope));
      if (on?.includes(node)) f.at('on').fail(`${node} always has a route to its own pods`);
      return { ...base, kind, node, on, withinMs: within() ?? 5000, name: given() ?? `no route to ${node} on ${on ? on.join(', ') : 'every other node'}` };
    }
    case 'transfer': {
      only('from', 'to', 'port', 'bytes');
      const from = f.req('from', (x) => parsePodRef(x, scope, 'one'));
      const to = f.req('to', (x) => parsePodRef(x, scope, 'one'));
      const port = f.opt('port', (x) => x.int(1, 65535)) ?? 7;
      const bytes = f.opt('bytes', (x) => x.int(1, 100_000_000)) ?? 1_000_000;
      return { ...base, kind, from, to, port, bytes, withinMs: within(), name: given() ?? `${bytes} bytes ${from.text} -> ${to.text}:${port} echoed back intact` };
    }
    case 'resolve': {
      only('from', 'host', 'expect', 'address');
      const from = f.req('from', (x) => parsePodRef(x, scope, 'one'));
      const host = f.req('host', (x) => x.str());
      const expect = f.opt('expect', (x) => x.oneOf(['resolves', 'nxdomain'] as const)) ?? 'resolves';
      const address = f.opt('address', (x) => x.str());
      if (address !== undefined && expect === 'nxdomain') f.at('address').fail('an address is only checked with expect: resolves');
      return { ...base, kind, from, host, expect, address, withinMs: within(), name: given() ?? `${host} from ${from.text} ${expect === 'resolves' ? `resolves${address ? ` to ${address}` : ''}` : 'does not exist'}` };
    }
    case 'lb-spread': {
      only('from', 'service', 'namespace', 'port', 'requests', 'success', 'chi2', 'path', 'backends');
      const from = f.req('from', (x) => parsePodRef(x, scope, 'one'));
      const service = f.req('service', (x) => x.str());
      const namespace = f.opt('namespace', (x) => x.str()) ?? 'default';
      const port = f.opt('port', (x) => x.int(1, 65535)) ?? 80;
      const requests = f.opt('requests', (x) => x.int(1, 100_000)) ?? 300;
      const minSuccess = f.opt('success', (x) => x.ratio()) ?? 1;
      const maxChi2 = f.opt('chi2', (x) => {
        if (x.v === false) return undefined;
        return x.int(0, 1_000_000);
      });
      const path = f.opt('path', (x) => x.str()) ?? '/';
      const backends = f.opt('backends', (x) => x.int(1, 1000));
      const spread = f.has('chi2') ? maxChi2 : -1;
      return {
        ...base,
        kind,
        from,
        service,
        namespace,
        port,
        requests,
        minSuccess,
        maxChi2: spread === -1 ? -1 : spread,
        path,
        backends,
        withinMs: within(),
        name: given() ?? `${requests} new connections from ${from.text} to Service ${service}: >= ${Math.round(minSuccess * 100)}% answered${backends ? ` by ${backends} backends` : ''}${spread === undefined ? '' : ', spread evenly over its endpoints'}`,
      };
    }
    case 'lb-answers': {
      only('service', 'namespace', 'port', 'path');
      const service = f.req('service', (x) => x.str());
      const namespace = f.opt('namespace', (x) => x.str()) ?? 'default';
      const port = f.opt('port', (x) => x.int(1, 65535)) ?? 80;
      const path = f.opt('path', (x) => x.str()) ?? '/';
      return { ...base, kind, service, namespace, port, path, withinMs: within(), name: given() ?? `Service ${service}'s LoadBalancer IP answers the host on port ${port}` };
    }
    case 'bgp-converged': {
      only('on');
      if (!speaksBgp(scope.lab.backend)) f.at('kind').fail(`bgp-converged needs lab.backend: ${BGP_BACKENDS.join(' or ')} (this lab runs ${scope.lab.backend})`);
      const on = f.opt('on', (x) => nodeList(x, scope));
      return { ...base, kind, on, withinMs: within(), name: given() ?? `BGP converged: every ${on ? `node of ${on.join(', ')}` : 'node'} has a proto bird route to every other live node` };
    }
    case 'counter': {
      only('expr', 'node', 'dev', 'counter', 'reason', 'op', 'value');
      if (f.has('expr')) {
        if (['node', 'dev', 'counter', 'reason', 'op', 'value'].some((k) => f.has(k))) f.fail('give expr: or the node/dev/counter/op/value fields, not both');
        return { ...base, ...parseCounterExpr(f.at('expr'), scope), withinMs: within(), name: given() ?? String(f.at('expr').v) };
      }
      const node = f.req('node', (x) => scope.node(x));
      const dev = f.req('dev', (x) => x.str());
      const counter = f.req('counter', (x) => x.oneOf(COUNTERS));
      const reason = f.opt('reason', (x) => {
        if (counter !== 'drops') x.fail('reason goes with counter: drops');
        return x.str();
      });
      const op = f.opt('op', (x) => x.oneOf(COMPARISONS)) ?? '>=';
      const value = f.req('value', (x) => x.int(0, Number.MAX_SAFE_INTEGER));
      return { ...base, kind, node, dev, counter, reason, op, value, withinMs: within(), name: given() ?? `${node} ${dev} ${counter}${reason ? ' ' + reason : ''} ${op} ${value}` };
    }
    case 'flow-errors': {
      only('flow', 'error', 'min', 'max');
      const flow = f.req('flow', (x) => flowName(x, scope));
      const error = f.opt('error', (x) => x.oneOf(FLOW_ERRORS)) ?? 'any';
      const min = f.opt('min', (x) => x.int(0, 1e9));
      const max = f.opt('max', (x) => x.int(0, 1e9));
      if (min === undefined && max === undefined) f.fail('give min:, max: or both (counts of errors)');
      return { ...base, kind, flow, error, min, max, withinMs: within(), name: given() ?? `${error} errors of ${flow}${min !== undefined ? ` >= ${min}` : ''}${max !== undefined ? ` <= ${max}` : ''}` };
    }
  }
}

/** `80`, `tcp/80` or `icmp`: what a matrix probes with. */
function parseProbe(f: F, v: unknown): { protocol: 'TCP' | 'ICMP'; port?: number; text: string } {
  const m = /^(?:(tcp)\/)?(\d+)$|^(icmp)$/i.exec(String(v).trim());
  const port = m?.[2] !== undefined ? Number(m[2]) : undefined;
  if (!m || (port !== undefined && (port < 1 || port > 65535))) f.fail(`a probe is a TCP port (80, tcp/80) or icmp; got ${JSON.stringify(v)}`);
  return port !== undefined ? { protocol: 'TCP', port, text: `tcp/${port}` } : { protocol: 'ICMP', text: 'icmp' };
}

/** A truth table: one row per source, one `.` (allowed) or `X` (denied) per destination; spaces are ignored. */
function parseTable(f: F, rows: number, cols: number): boolean[][] {
  // A block string (one row per line) or a list of row strings; lines are found from the list items or the block's own lines.
  const items: { text: string; at: F; line: number }[] = [];
  if (typeof f.v === 'string') {
    f.v.split('\n').forEach((l, i) => {
      if (l.trim()) items.push({ text: l, at: f, line: f.line + 1 + i });
    });
  } else {
    for (const x of f.list('a matrix', 1)) {
      if (typeof x.v !== 'string') x.fail(`a matrix row is a string of . and X, got ${JSON.stringify(x.v)}`);
      items.push({ text: x.v as string, at: x, line: x.line });
    }
  }
  const failAt = (it: { at: F; line: number }, msg: string): never => {
    throw new ScenarioError(it.at.cx.file, it.line, fieldName(it.at.path), msg);
  };
  if (items.length !== rows) f.fail(`the matrix has ${items.length} row${items.length === 1 ? '' : 's'}, from: lists ${rows} source${rows === 1 ? '' : 's'}`);
  return items.map((it, i) => {
    const cells = it.text.replace(/\s+/g, '');
    const bad = /[^.Xx]/.exec(cells);
    if (bad) failAt(it, `row ${i + 1} '${it.text.trim()}': '${bad[0]}' is not a cell; write . (allowed) or X (denied)`);
    if (cells.length !== cols) failAt(it, `row ${i + 1} '${it.text.trim()}' has ${cells.length} cell${cells.length === 1 ? '' : 's'}, to: lists ${cols} destination${cols === 1 ? '' : 's'}`);
    return [...cells].map((c) => c === '.');
  });
}

/**
 * `from: [REFS]`, `to: [REFS]`, and `matrix:` one table for every port of
 * `ports:` (default icmp), or a mapping PORT -> table.
 */
function parseMatrix(f: F, scope: Scope): ReachabilityMatrix {
  const refs = (k: 'from' | 'to') =>
    f.req(k, (x) =>
      x.oneOrMany(`${k}`).map((r) => {
        const ref = parsePodRef(r, scope, 'many');
        if (ref.type !== 'name' && ref.type !== 'selector') r.fail('a matrix row or column is a pod or a pod: selector');
        if (ref.type === 'selector' && ref.pick !== 'all') r.at('pick').fail('a matrix row or column takes every pod its selector matches (pick: all)');
        return ref;
      }),
    );
  const rows = refs('from');
  const cols = refs('to');
  const m = f.at('matrix');
  if (m.isMap()) {
    if (f.has('ports')) f.at('ports').fail('give ports: with one table, or matrix: as a mapping PORT -> table, not both');
    const entries = Object.keys(m.v as object);
    if (!entries.length) m.fail('a matrix mapping needs at least one PORT: table');
    const probes = entries.map((k) => ({ ...parseProbe(m.at(k), k), expect: parseTable(m.at(k), rows.length, cols.length), line: m.at(k).line }));
    const dup = probes.find((p, i) => probes.findIndex((q) => q.text === p.text) !== i);
    if (dup) m.fail(`${dup.text} has two tables`);
    return { rows, cols, probes };
  }
  const ports = f.opt('ports', (x) => x.oneOrMany('ports').map((p) => parseProbe(p, p.v))) ?? [{ protocol: 'ICMP' as const, text: 'icmp' }];
  const expect = parseTable(m, rows.length, cols.length);
  return { rows, cols, probes: ports.map((p) => ({ ...p, expect, line: m.line })) };
}

/** `node-2 eth0 drops malformed-vxlan >= 1`, `node-1 flannel.1 tx-packets == 0`. */
function parseCounterExpr(f: F, scope: Scope): Extract<Condition, { kind: 'counter' }> {
  const s = f.str().trim();
  const m = /^(\S+)\s+(\S+)\s+(rx-packets|rx-bytes|tx-packets|tx-bytes|drops)(?:\s+([^\s<>=!]+))?\s*(>=|<=|==|!=|>|<)\s*(\d+)$/.exec(s);
  if (!m) f.fail(`expected 'NODE DEV COUNTER [REASON] OP VALUE' (COUNTER: ${COUNTERS.join(', ')}; OP: ${COMPARISONS.join(' ')}), e.g. 'node-2 eth0 drops malformed-vxlan >= 1'; got '${s}'`);
  if (!scope.nodes.includes(m[1])) f.fail(`unknown node '${m[1]}' (this lab has ${scope.nodes.join(', ')})`);
  if (m[4] && m[3] !== 'drops') f.fail(`a reason ('${m[4]}') goes with drops only`);
  return { kind: 'counter', node: m[1], dev: m[2], counter: m[3], reason: m[4], op: m[5] as Comparison, value: Number(m[6]), name: s, line: f.line };
}
