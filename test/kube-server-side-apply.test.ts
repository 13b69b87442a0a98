/**
 * `kubectl apply --server-side` with the real kubectl against the real
 * apiserver (in process, HTTPS on 127.0.38.10, no lab): create, managedFields
 * recorded per field manager in FieldsV1, a re-apply that drops a field
 * removes it, merging keeps what other appliers set (containers merged by
 * name), a conflict between two appliers is refused as kube-apiserver refuses
 * it, and `--force-conflicts` moves the field to the new manager.
 */
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startApiServer, type ApiServer } from '../control-plane/apiserver.ts';
import { writeKubeconfig } from '../lab/launch.ts';
import { kubectl } from './helpers/kubectl.ts';
import { hasTool, requireOrSkip } from './helpers/lab.ts';

const haveKubectl = hasTool('kubectl');
let stateDir = '';
let api: ApiServer;

test.before(async () => {
  stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-ssa-'));
  api = await startApiServer({ host: '127.0.38.10', port: 0, stateDir });
  writeKubeconfig(stateDir, api.url);
});
test.after.always(async () => {
  await api?.close();
  if (stateDir) fs.rmSync(stateDir, { recursive: true, force: true });
});

const cm = (data: Record<string, string>, labels: Record<string, string> = {}): string =>
  JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'settings', labels }, data });

const deploy = (image: string, extra: Record<string, unknown> = {}): string =>
  JSON.stringify({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web' },
    spec: { selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'nginx', image, ...extra }] } } },
  });
type Containers = { spec: { template: { spec: { containers: Record<string, unknown>[] } } } };
const containerOf = (obj: Record<string, unknown>): Record<string, unknown> => (obj as unknown as Containers).spec.template.spec.containers[0];

interface Managed {
  manager: string;
  operation: string;
  fieldsV1: Record<string, unknown>;
}

async function managed(kind: string, name: string): Promise<{ obj: Record<string, unknown>; fields: Managed[] }> {
  const r = await kubectl(stateDir, ['get', kind, name, '-o', 'json', '--show-managed-fields']);
  const obj = JSON.parse(r.stdout) as { metadata: { managedFields?: Managed[] } };
  return { obj: obj as unknown as Record<string, unknown>, fields: obj.metadata.managedFields ?? [] };
}

test.serial('apply --server-side creates, records the manager\'s fields, and a re-apply without a field removes it', async (t) => {
  if (!requireOrSkip(t, haveKubectl, 'kubectl not installed')) return;
  const first = await kubectl(stateDir, ['apply', '--server-side', '-f', '-'], { stdin: cm({ a: '1', b: '2' }, { tier: 'x' }) });
  t.is(first.code, 0, first.stderr);
  t.is(first.stdout.trim(), 'configmap/settings serverside-applied');
  const m1 = await managed('configmap', 'settings');
  t.is(m1.fields.length, 1);
  t.like(m1.fields[0], { manager: 'kubectl', operation: 'Apply' });
  t.deepEqual(m1.fields[0].fieldsV1, { 'f:data': { '.': {}, 'f:a': {}, 'f:b': {} }, 'f:metadata': { 'f:labels': { '.': {}, 'f:tier': {} } } });
  // kubectl get hides managedFields unless asked.
  t.false((await kubectl(stateDir, ['get', 'configmap', 'settings', '-o', 'yaml'])).stdout.includes('managedFields'));
  const again = await kubectl(stateDir, ['apply', '--server-side', '-f', '-'], { stdin: cm({ a: '10' }, { tier: 'x' }) });
  t.is(again.code, 0, again.stderr);
  const m2 = await managed('configmap', 'settings');
  t.deepEqual(m2.obj.data, { a: '10' });
  t.deepEqual(m2.fields[0].fieldsV1, { 'f:data': { '.': {}, 'f:a': {} }, 'f:metadata': { 'f:labels': { '.': {}, 'f:tier': {} } } });
});

test.serial('a second applier: its own fields merge in; the same field with another value is a conflict; --force-conflicts takes it over', async (t) => {
  if (!requireOrSkip(t, haveKubectl, 'kubectl not installed')) return;
  const first = await kubectl(stateDir, ['apply', '--server-side', '-f', '-'], { stdin: deploy('nginx:1.14.2', { ports: [{ containerPort: 80 }] }) });
  t.is(first.code, 0, first.stderr);
  // Another manager adds an env var to the same container: merged by name, the ports stay.
  const other = await kubectl(stateDir, ['apply', '--server-side', '--field-manager=sidecar-tool', '-f', '-'], { stdin: deploy('nginx:1.14.2', { env: [{ name: 'MODE', value: 'x' }] }) });
  t.is(other.code, 0, other.stderr);
  const merged = await managed('deployment', 'web');
  t.like(containerOf(merged.obj), { image: 'nginx:1.14.2', ports: [{ containerPort: 80 }], env: [{ name: 'MODE', value: 'x' }] });
  t.deepEqual(merged.fields.map((f) => f.manager).sort(), ['kubectl', 'sidecar-tool']);
  // The image both applied, now with another value: refused, naming the owner and the field.
  const clash = await kubectl(stateDir, ['apply', '--server-side', '--field-manager=sidecar-tool', '-f', '-'], { stdin: deploy('nginx:1.16.1') });
  t.not(clash.code, 0);
  t.regex(clash.stderr, /Apply failed with 1 conflict: conflict with "kubectl" using apps\/v1: \.spec\.template\.spec\.containers\[name="nginx"\]\.image/);
  t.is(containerOf((await managed('deployment', 'web')).obj).image, 'nginx:1.14.2');
  // Forced: the image changes hands; sidecar-tool's dropped env goes, kubectl's ports stay.
  const forced = await kubectl(stateDir, ['apply', '--server-side', '--force-conflicts', '--field-manager=sidecar-tool', '-f', '-'], { stdin: deploy('nginx:1.16.1') });
  t.is(forced.code, 0, forced.stderr);
  const after = await managed('deployment', 'web');
  const c = containerOf(after.obj);
  t.is(c.image, 'nginx:1.16.1');
  t.like(c, { ports: [{ containerPort: 80 }] });
  t.is(c.env, undefined);
  t.false(JSON.stringify(after.fields.find((f) => f.manager === 'kubectl')!.fieldsV1).includes('f:image'), 'kubectl no longer owns the image');
  t.true(JSON.stringify(after.fields.find((f) => f.manager === 'sidecar-tool')!.fieldsV1).includes('f:image'));
});
