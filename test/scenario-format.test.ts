/**
 * The scenario format without a lab: every library file validates (with the
 * validator and against scenarios/schema.json), the schema names exactly the
 * kinds the runner implements plus the reserved ones, bad files fail with
 * FILE:LINE: FIELD: message and start nothing (no state dir, no process),
 * reserved features say "not supported yet in this build", and the pieces of
 * the runner that need no lab (time references, flow bookkeeping, report
 * writers) behave.
 */
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { BACKENDS } from '../scenarios/capabilities.ts';
import { libraryFiles } from '../scenarios/cli.ts';
import { compactSeqs } from '../scenarios/conditions.ts';
import { toComparisonHtml, toHtml } from '../scenarios/html.ts';
import { toJunit } from '../scenarios/junit.ts';
import { formatComparison, overallVerdict, type ComparisonReport, type ScenarioReport } from '../scenarios/report.ts';
import { FlowRecord, percentile } from '../scenarios/traffic.ts';
import { parseTimeRef } from '../scenarios/units.ts';
import { CONDITION_KINDS, FAULT_KINDS, FLOW_KINDS, ScenarioError, loadScenarioFile, parseScenario } from '../scenarios/validate.ts';
import { ROOT, type Schema, checkSchema, podlab, processesMentioning, xmlProblem } from './helpers/scenario.ts';

type KindBranch = { properties: { kind: { const: string } } };
/** The parts of scenarios/schema.json the kind checks read; the rest is walked by checkSchema. */
interface ScenarioSchema extends Schema {
  definitions: {
    fault: { oneOf: KindBranch[] };
    condition: { oneOf: KindBranch[] };
    flow: { properties: { kind: { enum: string[] } } };
  };
}

const schema = JSON.parse(fs.readFileSync(path.join(ROOT, 'scenarios/schema.json'), 'utf8')) as ScenarioSchema;

test('every library scenario validates, against the validator and the JSON Schema', (t) => {
  const files = libraryFiles();
  t.true(files.length >= 9, files.join(', '));
  for (const f of files) {
    const text = fs.readFileSync(f, 'utf8');
    t.is(text.split('\n')[0], '# yaml-language-server: $schema=../schema.json', f);
    const sc = loadScenarioFile(f);
    t.is(`${sc.name}.yaml`, path.basename(f), 'file named after the scenario');
    t.truthy(sc.description, `${f}: a description for scenario list`);
    t.deepEqual(checkSchema(schema, parseYaml(text)), [], f);
  }
});

test('the schema names exactly the implemented kinds', (t) => {
  const d = schema.definitions;
  const consts = (oneOf: KindBranch[]) => oneOf.map((b) => b.properties.kind.const).sort();
  t.deepEqual(consts(d.fault.oneOf), [...FAULT_KINDS].sort());
  t.deepEqual(consts(d.condition.oneOf), [...CONDITION_KINDS].sort());
  t.deepEqual([...d.flow.properties.kind.enum].sort(), [...FLOW_KINDS].sort());
  t.deepEqual(checkSchema(schema, { name: 'x', timeline: [{ wait: '1s', fault: { kind: 'heal' } }] }).length > 0, true, 'two step kinds are refused by the schema too');
});

const HEAD = 'name: t\nlab: {nodes: 2, podsPerNode: 1}\ntimeline:\n';

/** [what, scenario text, expected message (line and field included)] */
const BAD: [string, string, RegExp][] = [
  ['YAML syntax', `${HEAD}  - wait: [1s\n`, /^bad\.yaml:\d+: invalid YAML/],
  ['unknown top-level field', `name: t\ntimelines: []\n`, /^bad\.yaml:2: timelines: unknown field 'timelines' in a scenario/],
  ['missing timeline', `name: t\n`, /^bad\.yaml:1: timeline: required field is missing/],
  ['bad scenario name', `name: Bad Name\ntimeline: [{wait: 1s}]\n`, /^bad\.yaml:1: name: invalid scenario name "Bad Name"/],
  ['bgpTopology without backend bgp', `name: t\nlab:\n  backend: vxlan\n  bgpTopology: full-mesh\ntimeline: [{wait: 1s}]\n`, /^bad\.yaml:4: lab\.bgpTopology: bgpTopology goes with backend: bgp/],
  ['unknown backend', `name: t\nlab: {backend: weave}\ntimeline: [{wait: 1s}]\n`, /^bad\.yaml:2: lab\.backend: must be one of vxlan/],
  ['unknown backend in a comparison', `name: t\nlab:\n  backend: [vxlan, weave]\ntimeline: [{wait: 1s}]\n`, /^bad\.yaml:3: lab\.backend\[1\]: must be one of vxlan/],
  ['a comparison of one backend', `name: t\nlab:\n  backend: [vxlan]\ntimeline: [{wait: 1s}]\n`, /^bad\.yaml:3: lab\.backend: backend needs at least 2 items/],
  ['a backend twice in a comparison', `name: t\nlab:\n  backend: [bgp, vxlan, bgp]\ntimeline: [{wait: 1s}]\n`, /^bad\.yaml:3: lab\.backend: bgp is listed twice/],
  ['bgpTopology in a comparison with vxlan', `name: t\nlab:\n  backend: [bgp, vxlan]\n  bgpTopology: full-mesh\ntimeline: [{wait: 1s}]\n`, /^bad\.yaml:4: lab\.bgpTopology: .*backends include vxlan/],
  ['bgp-reset in a comparison that has vxlan', `name: t\nlab:\n  backend: [bgp, vxlan]\ntimeline:\n  - fault: {kind: bgp-reset, node: node-1}\n`, /^bad\.yaml:5: timeline\[0\]\.fault\.kind: bgp-reset needs lab\.backend: bgp.*this lab runs vxlan/],
  ['unknown proxy mode', `name: t\nlab:\n  proxyMode: nftables\ntimeline: [{wait: 1s}]\n`, /^bad\.yaml:3: lab\.proxyMode: /],
  ['two kinds in a step', `${HEAD}  - wait: 1s\n    assert: {kind: reachability}\n`, /^bad\.yaml:4: timeline\[0\]: a step has exactly one of traffic, fault, wait, assert; this one has wait and assert/],
  ['bad duration', `${HEAD}  - wait: {for: 2 seconds}\n`, /^bad\.yaml:4: timeline\[0\]\.wait\.for: expected a duration like 500ms, 2s or 1m, got "2 seconds"/],
  ['unknown node', `${HEAD}  - fault: {kind: kill, node: node-7}\n`, /^bad\.yaml:4: timeline\[0\]\.fault\.node: unknown node 'node-7' \(this lab has node-1, node-2, apiserver\)/],
  ['unknown pod', `${HEAD}  - traffic: {name: f, from: pod-9z, to: pod-2a}\n`, /^bad\.yaml:4: timeline\[0\]\.traffic\.from: unknown pod 'pod-9z' \(pods of this scenario: pod-1a, pod-2a\)/],
  ['flow used before it starts', `${HEAD}  - assert: {kind: delivery, flow: f, min: 90%}\n  - traffic: {name: f, from: pod-1a, to: pod-2a}\n`, /^bad\.yaml:4: timeline\[0\]\.assert\.flow: unknown flow 'f' \(flows started before this step: none\)/],
  ['window on a later step', `${HEAD}  - traffic: {name: f, from: pod-1a, to: pod-2a}\n  - assert: {kind: delivery, flow: f, min: 90%, window: {from: cut}}\n  - {name: cut, fault: {kind: heal}}\n`, /^bad\.yaml:5: timeline\[1\]\.assert\.window\.from: no step named 'cut' before this one/],
  ['loss above 100%', `${HEAD}  - fault: {kind: link, from: node-1, loss: 150%}\n`, /^bad\.yaml:4: timeline\[0\]\.fault\.loss: expected a percentage like 5%/],
  ['link without impairment', `${HEAD}  - fault: {kind: link, from: node-1}\n`, /^bad\.yaml:4: timeline\[0\]\.fault: a link fault needs at least one of loss, delay/],
  ['mark-not-ready without pods', `${HEAD}  - fault: {kind: mark-not-ready}\n`, /^bad\.yaml:4: timeline\[0\]\.fault\.pods: /],
  ['bgp-reset off the bgp backend', `${HEAD}  - fault: {kind: bgp-reset, node: node-1}\n`, /^bad\.yaml:4: timeline\[0\]\.fault\.kind: bgp-reset needs lab\.backend: bgp/],
  ['mark-not-ready takes pods', `${HEAD}  - fault: {kind: mark-not-ready, node: node-1}\n`, /fault/],
  ['lb-spread without a Service', `${HEAD}  - assert:\n      - {kind: lb-spread, from: pod-1a}\n`, /^bad\.yaml:5: timeline\[0\]\.assert\[0\]\.service: /],
  ['transfer without a destination', `${HEAD}  - assert:\n      - {kind: transfer, from: pod-1a}\n`, /^bad\.yaml:5: timeline\[0\]\.assert\[0\]\.to: /],
  ['bgp-converged off the bgp backend', `${HEAD}  - assert: {kind: bgp-converged}\n`, /assert\.kind: bgp-converged needs lab\.backend: bgp/],
  ['unknown flow kind', `${HEAD}  - traffic: {name: f, kind: sctp, from: pod-1a, to: pod-2a}\n`, /^bad\.yaml:4: timeline\[0\]\.traffic\.kind: must be one of ping, udp, tcp, http; got "sctp"/],
  ['Service target of a ping flow', `${HEAD}  - traffic: {name: f, from: pod-1a, to: {service: web}}\n`, /^bad\.yaml:4: timeline\[0\]\.traffic\.to\.service: a Service is the destination of tcp and http flows only/],
  ['Service target of a transfer', `${HEAD}  - assert:\n      - {kind: transfer, from: pod-1a, to: {service: web}}\n`, /timeline\[0\]\.assert\[0\]\.to\.service: a Service is the destination of tcp and http flows only/],
  ['size on a tcp flow', `${HEAD}  - traffic: {name: f, kind: tcp, from: pod-1a, to: pod-2a, size: 100}\n`, /traffic\.size: size is a ping and udp option; tcp flows open a connection per probe/],
  ['port on a ping flow', `${HEAD}  - traffic: {name: f, from: pod-1a, to: pod-2a, port: 80}\n`, /traffic\.port: port is a udp, tcp and http option; ping flows have no port/],
  ['df on udp', `${HEAD}  - traffic: {name: f, kind: udp, from: pod-1a, to: pod-2a, df: true}\n`, /traffic\.df: df is a ping option/],
  ['counter expression', `${HEAD}  - assert: {kind: counter, expr: "node-1 eth0 drops about 3"}\n`, /^bad\.yaml:4: timeline\[0\]\.assert\.expr: expected 'NODE DEV COUNTER \[REASON\] OP VALUE'/],
  ['duplicate step name', `${HEAD}  - {name: a, wait: 1s}\n  - {name: a, wait: 1s}\n`, /^bad\.yaml:5: timeline\[1\]\.name: step name 'a' is used twice/],
  ['inline manifest, line mapped into the scenario', `name: t\nlab: {nodes: 1, podsPerNode: 0}\nworkload:\n  - apiVersion: v1\n    kind: Pod\n    metadata: {name: web}\n    spec:\n      containers:\n        - name: web\n          image: nginx\n          ports:\n            - containerPort: 99999\ntimeline: [{wait: 1s}]\n`, /^bad\.yaml:12: workload\[0\]\.spec\.containers\[0\]\.ports\[0\]\.containerPort: must be a port number 1-65535, got 99999/],
  ['missing workload file', `name: t\nworkload:\n  - file: nope.yaml\ntimeline: [{wait: 1s}]\n`, /^bad\.yaml:3: workload\[0\]\.file: no such file: nope\.yaml/],
  ['matrix row count', `${HEAD}  - assert:\n      kind: reachability\n      from: [pod-1a, pod-2a]\n      to: [pod-1a, pod-2a]\n      matrix: [". X"]\n`, /^bad\.yaml:8: timeline\[0\]\.assert\.matrix: the matrix has 1 row, from: lists 2 sources/],
  ['matrix row width, at its own line', `${HEAD}  - assert:\n      kind: reachability\n      from: [pod-1a, pod-2a]\n      to: [pod-1a, pod-2a]\n      ports: [80]\n      matrix:\n        - ". X"\n        - ". X X"\n`, /^bad\.yaml:11: timeline\[0\]\.assert\.matrix\[1\]: row 2 '\. X X' has 3 cells, to: lists 2 destinations/],
  ['matrix cell, in a block table', `${HEAD}  - assert:\n      kind: reachability\n      from: [pod-1a, pod-2a]\n      to: [pod-1a]\n      matrix: |\n        .\n        o\n`, /^bad\.yaml:10: timeline\[0\]\.assert\.matrix: row 2 'o': 'o' is not a cell; write \. \(allowed\) or X \(denied\)/],
  ['matrix probe', `${HEAD}  - assert:\n      kind: reachability\n      from: pod-1a\n      to: pod-2a\n      ports: [udp/53]\n      matrix: ["X"]\n`, /^bad\.yaml:8: timeline\[0\]\.assert\.ports\[0\]: a probe is a TCP port \(80, tcp\/80\) or icmp; got "udp\/53"/],
  ['matrix mapping and ports', `${HEAD}  - assert:\n      kind: reachability\n      from: pod-1a\n      to: pod-2a\n      ports: [80]\n      matrix: {tcp/80: ["X"]}\n`, /^bad\.yaml:8: timeline\[0\]\.assert\.ports: give ports: with one table, or matrix: as a mapping PORT -> table, not both/],
  ['matrix selector picking one', `${HEAD}  - assert:\n      kind: reachability\n      from: [{pod: {node: node-1}, pick: first}]\n      to: pod-2a\n      matrix: ["X"]\n`, /^bad\.yaml:6: timeline\[0\]\.assert\.from\[0\]\.pick: a matrix row or column takes every pod its selector matches/],
  ['ports without matrix', `${HEAD}  - assert: {kind: reachability, from: pod-1a, to: pod-2a, ports: [80]}\n`, /^bad\.yaml:4: timeline\[0\]\.assert\.ports: ports go with matrix:/],
  ['flannel.1 on host-gw', `name: t\nlab: {nodes: 2, backend: host-gw}\ntimeline:\n  - fault: {kind: mtu, node: node-1, mtu: 1400}\n`, /^bad\.yaml:4: timeline\[0\]\.fault: the host-gw backend has no flannel\.1/],
];

test('backends follow what podlab up offers: every one of them validates', (t) => {
  t.true(BACKENDS.length >= 3);
  for (const b of BACKENDS) {
    const text = `name: t\nlab: {nodes: 2, backend: ${b}}\ntimeline: [{wait: 1s}]\n`;
    t.is(parseScenario(text, 'b.yaml').lab.backend, b);
  }
});

test('a list of backends: one timeline checked against each, the first as lab.backend; the schema offers the same backends', (t) => {
  const sc = parseScenario(`name: t\nlab:\n  backend: [host-gw, bgp]\ntimeline: [{wait: 1s}]\n`, 'c.yaml');
  t.deepEqual(sc.backends, ['host-gw', 'bgp']);
  t.is(sc.lab.backend, 'host-gw');
  t.deepEqual(parseScenario(`name: t\ntimeline: [{wait: 1s}]\n`, 'd.yaml').backends, ['vxlan'], 'one backend by default');
  t.deepEqual(parseScenario(`name: t\nlab: {backend: ipip}\ntimeline: [{wait: 1s}]\n`, 'e.yaml').backends, ['ipip']);
  const branches = (schema.properties as { lab: { properties: { backend: { oneOf: [{ enum: string[] }, { items: { enum: string[] } }] } } } }).lab.properties.backend.oneOf;
  t.deepEqual(branches[0].enum, [...BACKENDS]);
  t.deepEqual(branches[1].items.enum, [...BACKENDS]);
});

test('tcp and http flows: a new connection per probe, to a pod or to a Service (port 80 by default)', (t) => {
  const sc = parseScenario(
    `${HEAD}  - traffic:\n      flows:\n        - {name: a, kind: tcp, from: pod-1a, to: pod-2a, port: 8080}\n        - {name: b, kind: http, from: pod-1a, to: {service: web}}\n        - {name: c, kind: http, from: pod-1a, to: {service: api, namespace: shop}, port: 8443}\n`,
    'ok.yaml',
  );
  const step = sc.timeline[0].body;
  if (step.type !== 'traffic') return t.fail(`expected a traffic step, got ${step.type}`);
  t.like(step.flows[0], { kind: 'tcp', port: 8080, to: { type: 'name', key: 'default/pod-2a' } });
  t.like(step.flows[1], { kind: 'http', port: 80, to: { type: 'service', name: 'web', namespace: 'default' } });
  t.like(step.flows[2], { kind: 'http', port: 8443, to: { type: 'service', name: 'api', namespace: 'shop' } });
});

test('a reachability matrix: rows and columns of pods or selectors, one table for every port or one per port', (t) => {
  const sc = parseScenario(
    `${HEAD}  - assert:\n      kind: reachability\n      from: [pod-1a, {pod: {node: node-2}}]\n      to: [pod-1a, pod-2a]\n      ports: [80, tcp/81]\n      matrix: |\n        . X\n        x .\n  - assert:\n      kind: reachability\n      from: pod-1a\n      to: pod-2a\n      matrix: {icmp: [.], tcp/8080: [X]}\n`,
    'ok.yaml',
  );
  const [a, b] = sc.timeline.map((s) => (s.body.type === 'assert' ? s.body.conditions[0] : undefined));
  if (a?.kind !== 'reachability' || b?.kind !== 'reachability') return t.fail('two reachability asserts');
  t.deepEqual(a.matrix?.probes.map((p) => [p.text, p.protocol, p.port]), [['tcp/80', 'TCP', 80], ['tcp/81', 'TCP', 81]]);
  t.deepEqual(a.matrix?.probes[0].expect, [[true, false], [false, true]]);
  t.like(a.matrix?.rows[1], { type: 'selector', pick: 'all', selector: { node: 'node-2' } });
  t.is(a.name, 'reachability matrix 2x2 on tcp/80, tcp/81');
  t.deepEqual(b.matrix?.probes.map((p) => [p.text, p.expect]), [['icmp', [[true]]], ['tcp/8080', [[false]]]]);
  t.deepEqual(checkSchema(schema, parseYaml(`name: t\ntimeline:\n  - assert: {kind: reachability, from: [a, b], to: a, ports: [80, icmp], matrix: ['.', 'X']}\n`)), []);
  t.true(checkSchema(schema, parseYaml(`name: t\ntimeline:\n  - assert: {kind: reachability, from: a, to: a, matrix: {tcp/80: 3}}\n`)).length > 0);
});

for (const [what, text, want] of BAD) {
  test(`invalid: ${what}`, (t) => {
    const e = t.throws(() => parseScenario(text, 'bad.yaml'), { instanceOf: ScenarioError });
    t.regex(e.message, want);
  });
}

test('workload manifests from file: references are checked in their own file', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-scn-fmt-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'pods.yaml'), 'apiVersion: v1\nkind: Pod\nmetadata: {name: db, labels: {app: db}}\nspec:\n  nodeName: node-2\n  containers: [{name: db, image: postgres}]\n');
  fs.writeFileSync(path.join(dir, 'ok.yaml'), 'name: ok\nlab: {nodes: 2, podsPerNode: 1}\nworkload:\n  - file: pods.yaml\ntimeline:\n  - traffic: {name: f, from: pod-1a, to: db}\n');
  const sc = loadScenarioFile(path.join(dir, 'ok.yaml'));
  t.is(sc.workload[0].obj.metadata.name, 'db');
  fs.writeFileSync(path.join(dir, 'pods.yaml'), 'apiVersion: v1\nkind: Pod\nmetadata: {name: DB}\nspec:\n  containers: [{name: db, image: postgres}]\n');
  const e = t.throws(() => loadScenarioFile(path.join(dir, 'ok.yaml')));
  t.regex(e.message, new RegExp(`^${path.join(dir, 'pods.yaml').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3: metadata\\.name: invalid value "DB"`));
});

test('CLI: validate and run of an invalid file exit 2 with file:line and start nothing', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-scn-cli-'));
  const tmp = path.join(dir, 'tmp');
  fs.mkdirSync(tmp);
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'broken.yaml');
  fs.writeFileSync(file, `${HEAD}  - fault: {kind: kill, node: node-9}\n`);
  // TMPDIR of our own: a run that started anything would leave its state dir or lock there.
  const env = { TMPDIR: tmp, PODLAB_HOME: path.join(dir, '.podlab') };
  const v = await podlab(['scenario', 'validate', file], { env });
  t.is(v.code, 2, v.stderr);
  t.regex(v.stderr, new RegExp(`podlab: ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:4: timeline\\[0\\]\\.fault\\.node: unknown node 'node-9'`));
  const r = await podlab(['scenario', 'run', file, '--report', path.join(dir, 'r.json')], { env });
  t.is(r.code, 2, r.stderr);
  t.regex(r.stderr, /:4: timeline\[0\]\.fault\.node: unknown node 'node-9'/);
  t.deepEqual(fs.readdirSync(tmp).filter((f) => !f.startsWith('tsx-')), [], 'no state directory, no network lock');
  t.false(fs.existsSync(path.join(dir, '.podlab')), 'no lab.json anywhere');
  t.false(fs.existsSync(path.join(dir, 'r.json')), 'no report for a run that never started');
  t.deepEqual(processesMentioning(tmp), []);
  const ok = await podlab(['scenario', 'validate', 'lossy-underlay'], { env });
  t.is(ok.code, 0, ok.stderr);
  t.regex(ok.stdout, /lossy-underlay\.yaml: valid: lossy-underlay, 2 nodes/);
});

test('CLI: scenario list shows the library with one-line descriptions', async (t) => {
  const r = await podlab(['scenario', 'list']);
  t.is(r.code, 0, r.stderr);
  for (const f of libraryFiles()) {
    const sc = loadScenarioFile(f);
    t.regex(r.stdout, new RegExp(`^${sc.name} +${sc.description.slice(0, 30).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`, 'm'));
  }
  t.notRegex(r.stdout, /INVALID/);
});

test('time references, percentiles, lost-sequence ranges', (t) => {
  t.deepEqual(parseTimeRef('3s'), { edge: 'start', offsetMs: 3000, text: '3s' });
  t.deepEqual(parseTimeRef('kill-node-2'), { step: 'kill-node-2', edge: 'end', offsetMs: 0, text: 'kill-node-2' });
  t.deepEqual(parseTimeRef('cut.start+500ms'), { step: 'cut', edge: 'start', offsetMs: 500, text: 'cut.start+500ms' });
  t.deepEqual(parseTimeRef('thaw-200ms'), { step: 'thaw', edge: 'end', offsetMs: -200, text: 'thaw-200ms' });
  t.is(parseTimeRef('Not A Step'), null);
  t.is(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 50), 5);
  t.is(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 99), 10);
  t.is(percentile([7], 90), 7);
  t.is(compactSeqs([3, 4, 5, 9, 11, 12]), '3-5, 9, 11-12');
  t.is(compactSeqs([]), 'none');
});

test('a flow estimates send times of lost probes between answered ones, and holds back the last second', (t) => {
  const f = new FlowRecord({ name: 'f', kind: 'ping', from: { type: 'name', key: 'default/a', text: 'a' }, to: { type: 'name', key: 'default/b', text: 'b' }, rateHz: 10, count: 10, startJitterMs: 0, line: 1 });
  f.state = 'running';
  f.firstDueMs = 0;
  for (const seq of [1, 2, 5, 6]) Object.assign(f.probe(seq), { sentAt: (seq - 1) * 100, rttMs: 1 });
  const s = f.samples(1500, 1000);
  t.deepEqual(s.map((x) => x.seq), [1, 2, 3, 4, 5, 6], 'probes 7.. are within the grace second');
  t.deepEqual(s.filter((x) => x.rtt === null).map((x) => [x.seq, Math.round(x.t)]), [[3, 200], [4, 300]]);
  f.state = 'done';
  f.transmitted = 10;
  const r = f.result(2000);
  t.is(r.sent, 10);
  t.deepEqual(r.lostSeqs, [3, 4, 7, 8, 9, 10]);
  t.is(r.delivery, 0.4);
  t.is(r.latencyMs?.p50, 1);
});

function fakeReport(): ScenarioReport {
  return {
    format: 'podlab-scenario-report/1',
    scenario: { name: 'fake', description: 'a <fake> & "quoted" run', file: 'x/fake.yaml' },
    seed: 9,
    labNet: '127.0.200.0/24',
    lab: { nodes: 2, podsPerNode: 1, backend: 'vxlan', mtu: 1500 },
    startedAt: '2026-01-01T00:00:00.000Z',
    labUpMs: 3000,
    durationMs: 4000,
    verdict: 'fail',
    summary: { asserts: 2, passed: 1, failed: 1 },
    steps: [{ index: 0, type: 'fault', summary: 'fault: partition node-2 from node-1', line: 5, startMs: 1000, endMs: 1100, ok: true, detail: 'partition node-2 | node-1' }],
    asserts: [
      { step: 0, name: 'ok one', kind: 'delivery', line: 7, ok: true, expected: 'delivery >= 90%', actual: '100%', atMs: 500 },
      { step: 0, name: 'bad <one> & "two"', kind: 'delivery', line: 8, ok: false, expected: 'delivery >= 90%', actual: '0% (0/30)', message: 'lost seqs 21-50 \u0001', atMs: 2600 },
    ],
    flows: [{ name: 'across', kind: 'ping', from: { pod: 'default/pod-1a', node: 'node-1', ip: '10.244.1.2' }, to: { pod: 'default/pod-2a', ip: '10.244.2.2' }, rateHz: 20, count: 80, startedAtMs: 0, endedAtMs: 4000, state: 'done', sent: 4, received: 2, delivery: 0.5, lostSeqs: [3, 4], duplicates: 0, errors: {}, latencyMs: { n: 2, min: 1, p50: 1, p90: 2, p99: 2, max: 2, avg: 1.5 }, samples: [[1, 0, 1], [2, 50, 2], [3, 1200, null], [4, 1250, null]] }],
    faults: [{ step: 0, kind: 'partition', label: 'partition node-2 | node-1', nodes: ['node-1', 'node-2'], startMs: 1000, endMs: 3000, closedBy: 'heal' }],
  };
}

test('JUnit: well-formed, one testcase per assertion, failures carry expected and actual', (t) => {
  const xml = toJunit(fakeReport());
  t.is(xmlProblem(xml), null, xml);
  t.regex(xml, /<testsuite name="fake" tests="2" failures="1" errors="0"/);
  t.is((xml.match(/<testcase /g) ?? []).length, 2);
  t.regex(xml, /<failure message="expected delivery &gt;= 90%, got 0% \(0\/30\)" type="delivery">/);
  t.regex(xml, /<property name="seed" value="9"\/>/);
  t.notRegex(xml, /\cA/, 'control characters are dropped');
  t.is(xmlProblem('<a><b></a></b>') !== null, true, 'the checker itself catches bad nesting');
});

function fakeComparison(): ComparisonReport {
  const runs = ['vxlan', 'bgp'].map((backend) => ({ ...fakeReport(), lab: { ...fakeReport().lab, backend } }));
  return { format: 'podlab-scenario-comparison/1', scenario: runs[0].scenario, seed: 9, backends: ['vxlan', 'bgp', 'ipip'], verdict: overallVerdict(runs, 3), runs };
}

test('a comparison: verdict is the worst run, interrupted when a backend never ran; JUnit has a suite per backend; HTML and text have the table', (t) => {
  const pass = { ...fakeReport(), verdict: 'pass' as const };
  t.is(overallVerdict([pass, { ...pass, verdict: 'fail' }], 2), 'fail');
  t.is(overallVerdict([pass, { ...pass, verdict: 'error' }, { ...pass, verdict: 'fail' }], 3), 'error');
  t.is(overallVerdict([pass], 2), 'interrupted');
  t.is(overallVerdict([pass, pass], 2), 'pass');
  const c = fakeComparison();
  const xml = toJunit(c.runs);
  t.is(xmlProblem(xml), null, xml);
  t.regex(xml, /<testsuites name="podlab scenarios" tests="4" failures="2" errors="0"/);
  t.regex(xml, /<testsuite name="fake \[vxlan\]"/);
  t.regex(xml, /<testsuite name="fake \[bgp\]"/);
  t.regex(xml, /classname="podlab\.scenario\.fake\.bgp"/);
  const text = formatComparison(c);
  t.regex(text, /^INTERRUPTED: fake \(seed 9\) on 3 backends: vxlan, bgp, ipip/);
  t.regex(text, /\n\s+vxlan\s+bgp\s+ipip\n/);
  t.regex(text, /\nflow across\s+50% p50 1\.00 p99 2\.00 ms\s+50% p50 1\.00 p99 2\.00 ms\s+not run\n/);
  const html = toComparisonHtml(c);
  t.regex(html, /^<!DOCTYPE html>/);
  t.notRegex(html, /<script|<link |src="http|href="http/);
  t.regex(html, /<th>vxlan<\/th><th>bgp<\/th><th>ipip<\/th>/);
  t.is((html.match(/<svg class="timeline"/g) ?? []).length, 2, 'each run keeps its own timeline');
});

test('HTML: self-contained, escaped, with the timeline and the plots as inline SVG', (t) => {
  const html = toHtml(fakeReport());
  t.regex(html, /^<!DOCTYPE html>/);
  t.notRegex(html, /<script|<link |src="http|href="http/);
  t.regex(html, /a &lt;fake&gt; &amp; &quot;quoted&quot; run/);
  t.regex(html, /<svg class="timeline"/);
  t.regex(html, /<svg class="plot delivery"/);
  t.regex(html, /<svg class="plot latency"/);
  t.regex(html, /partition node-2 \| node-1/);
  t.regex(html, /lost seqs: <code>3-4<\/code>/);
});
