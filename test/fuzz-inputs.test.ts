/**
 * Property-based fuzzing of what users and local processes hand podlab:
 * capture filters, manifests, scenarios and control-channel messages. Each
 * either works or fails with its own typed error naming where; nothing throws
 * anything else, and a control server keeps serving whatever it is sent.
 * Regression cases from probes (a YAML alias bomb, a string sent as stdin)
 * stay here as golden cases.
 */
import test from 'ava';
import fc from 'fast-check';
import fs from 'node:fs';
import { pack } from 'msgpackr';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ManifestError, parseManifests } from '../lab/manifest.ts';
import { FilterError, compileFilter } from '../node-agent/capture/filter.ts';
import { frame, type ServerMessage } from '../control-plane/node-control-protocol.ts';
import { ControlServer } from '../node-agent/control-server.ts';
import { ScenarioError, parseScenario } from '../scenarios/validate.ts';
import { bytes, fuzz, fuzzAsync } from './helpers/fuzz.ts';

/** Only the given error class may come out. */
function onlyThrows(cls: new (...a: never[]) => Error, fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof cls)) throw new Error(`threw ${(e as Error)?.name}: ${(e as Error)?.message}`, { cause: e });
  }
}

const FILTER_WORDS = ['host', 'net', 'port', 'src', 'dst', 'udp', 'tcp', 'icmp', 'arp', 'ip', 'vxlan', 'and', 'or', 'not', '(', ')', '&&', '||', '!', '10.244.1.2', '10.244.0.0/16', '8472', '80', '0', '999999', '1.2.3', '/', '-', '"'];

test('capture filters: any expression compiles or is refused with a FilterError; a compiled filter takes any frame', (t) => {
  const expr = fc.oneof(fc.array(fc.constantFrom(...FILTER_WORDS), { maxLength: 12 }).map((w) => w.join(' ')), fc.string({ maxLength: 60 }));
  fuzz(
    fc.property(expr, bytes, (e, frameBytes) => {
      let pred: ((f: Buffer) => boolean) | undefined;
      onlyThrows(FilterError, () => (pred = compileFilter(e)));
      pred?.(frameBytes);
    }),
  );
  t.pass();
});

const YAML_BITS = ['apiVersion: v1', 'kind: Pod', 'kind: Service', 'kind: Namespace', 'metadata:', '  name: web', '  name: 12345', 'spec:', '  containers:', '  - name: c', '    image: nginx', '    ports: [{containerPort: 80}]', '---', '- x', 'a: &a [1,2]', 'b: [*a, *a]', '{', '}', ': :', "'", '"', '\t', 'name: t', 'timeline:', '  - wait: 1s', '  - fault: {kind: kill, node: node-1}', 'lab: {nodes: 2}'];
const yamlish = fc.oneof(fc.array(fc.constantFrom(...YAML_BITS), { maxLength: 14 }).map((l) => l.join('\n')), fc.string({ maxLength: 200 }));

test('manifests and scenarios: any text is accepted or refused with file:line, never another error', (t) => {
  fuzz(fc.property(yamlish, (text) => onlyThrows(ManifestError, () => parseManifests(text, 'f.yaml'))));
  fuzz(fc.property(yamlish, (text) => onlyThrows(ScenarioError, () => parseScenario(text, 's.yaml'))));
  t.pass();
});

/** A billion-laughs document: 10 aliases per level, 12 levels. */
function aliasBomb(): string {
  let y = 'a0: &a0 ["x","x","x","x","x","x","x","x","x","x"]\n';
  for (let i = 1; i < 12; i++) y += `a${i}: &a${i} [${Array(10).fill(`*a${i - 1}`).join(',')}]\n`;
  return y;
}

test('regression: a YAML alias bomb is refused at its line, for manifests and scenarios alike', (t) => {
  t.throws(() => parseManifests(aliasBomb(), 'bomb.yaml'), { instanceOf: ManifestError, message: /^bomb\.yaml:2: YAML aliases expand too far/ });
  t.throws(() => parseScenario(aliasBomb(), 'bomb.yaml'), { instanceOf: ScenarioError, message: /^bomb\.yaml:2: YAML aliases expand too far/ });
});

test('regression: a name that YAML reads as a number says so', (t) => {
  t.throws(() => parseManifests('apiVersion: v1\nkind: Namespace\nmetadata:\n  name: 12345\n', 'n.yaml'), { message: 'n.yaml:4: metadata.name: name must be a string, got 12345 (quote it: "12345")' });
});

/** A real control server on a temporary Unix socket, with one handler that answers and one that throws at once. */
async function controlServer(t: { teardown(fn: () => unknown): void }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-fuzz-ctl-'));
  const server = new ControlServer(path.join(dir, 'c.sock'));
  server.handle('ping', () => Promise.resolve('pong'));
  server.handle('boom', ((params: { argv: string[] }) => {
    // Not async: a synchronous throw before any promise exists.
    return Promise.resolve(params.argv.join(' '));
  }) as never);
  await server.listen();
  t.teardown(async () => {
    await server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const sock = net.connect(server.socketPath);
  await new Promise((r) => sock.once('connect', r));
  t.teardown(() => sock.destroy());
  const ch = frame<ServerMessage, unknown>(sock);
  const replies: ServerMessage[] = [];
  ch.onMessage((m) => replies.push(m));
  const next = async (id: number) => {
    for (let i = 0; i < 500; i++) {
      const r = replies.find((m) => m.id === id);
      if (r) return r;
      await new Promise((res) => setTimeout(res, 2));
    }
    throw new Error(`no reply for call ${id}`);
  };
  // Raw msgpack bytes on the socket: what any local process can write, whatever a well-behaved client would refuse to encode.
  return { send: (m: unknown) => sock.write(pack(m)), next };
}

test('regression: stdin as a string, and a handler that throws synchronously, get error replies; the server keeps serving', async (t) => {
  const c = await controlServer(t);
  c.send({ t: 'stdin', id: 7, data: 'x' });
  t.like(await c.next(7), { t: 'err', error: { name: 'ControlProtocolError', message: 'bad control message: data: stdin data must be binary (msgpack bin), not a string' } });
  c.send({ t: 'req', id: 8, method: 'boom', params: { argv: 'not a list' } });
  t.like(await c.next(8), { t: 'err', error: { name: 'TypeError' } });
  c.send({ t: 'req', id: 9, method: 'ping', params: null });
  t.like(await c.next(9), { t: 'res', result: 'pong' });
});

test('control channel: any message a client can encode gets an answer or is ignored; the server still answers after each', async (t) => {
  const c = await controlServer(t);
  let id = 1000;
  const message = fc.oneof(
    fc.anything(),
    fc.record({ t: fc.constantFrom('req', 'cancel', 'stdin', 'stdin-end', 'res', 'zzz'), id: fc.oneof(fc.integer(), fc.string(), fc.constant(undefined)), method: fc.oneof(fc.string(), fc.integer()), data: fc.oneof(fc.string(), fc.uint8Array(), fc.anything()) }),
  );
  await fuzzAsync(
    fc.asyncProperty(message, async (m) => {
      c.send(m);
      const probe = ++id;
      c.send({ t: 'req', id: probe, method: 'ping', params: null });
      const r = await c.next(probe);
      if (r.t !== 'res') throw new Error(`after ${JSON.stringify(m)} the server answered ${JSON.stringify(r)}`);
    }),
  );
  t.pass();
});
