/**
 * Strategic merge patch with the merge keys of Kubernetes' own schemas, JSON
 * patch, Pod update rules, strict field validation and the OpenAPI documents:
 * unit level, on the real schema data (no lab, no sockets).
 */
import test from 'ava';
import { checkFields, unknownFields } from '../control-plane/field-validation.ts';
import { applyJsonPatch } from '../control-plane/merge-patch.ts';
import { definitionNameOf, openApiV2, openApiV3Document, openApiV3Index, schemaOf } from '../control-plane/openapi.ts';
import { validatePodUpdate } from '../control-plane/pod-update-validation.ts';
import { PODS, registry, SERVICES } from '../control-plane/resources.ts';
import { applyStrategicMergePatch } from '../control-plane/strategic-merge-patch.ts';
import type { KubeObject } from '../control-plane/types.ts';
import { ApiError } from '../control-plane/errors.ts';

const podSchema = schemaOf(PODS);

const pod = (): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'web', finalizers: ['a'] } as unknown as KubeObject['metadata'],
  spec: {
    nodeName: 'node-1',
    containers: [
      { name: 'web', image: 'nginx:1.14.2', ports: [{ containerPort: 80, protocol: 'TCP' }, { containerPort: 443, protocol: 'TCP' }], env: [{ name: 'A', value: '1' }, { name: 'B', value: '2' }] },
      { name: 'side', image: 'busybox' },
    ],
    volumes: [{ name: 'data', emptyDir: {} }],
  },
});

test('the schemas are Kubernetes\' own: Pod, Service and their patch keys come from the package', (t) => {
  t.is(definitionNameOf(PODS), 'io.k8s.api.core.v1.Pod');
  t.is(definitionNameOf(SERVICES), 'io.k8s.api.core.v1.Service');
  t.truthy(podSchema?.description?.includes('collection of containers'));
  const containers = schemaOf({ group: '', version: 'v1', kind: 'Pod' })!;
  t.is(containers.properties?.spec.$ref, '#/definitions/io.k8s.api.core.v1.PodSpec');
});

test('strategic merge: one container\'s image changes, its ports, env and the other container stay', (t) => {
  const kubectlApply = {
    spec: {
      '$setElementOrder/containers': [{ name: 'web' }, { name: 'side' }],
      containers: [{ name: 'web', image: 'nginx:1.16.1' }],
    },
  };
  const out = applyStrategicMergePatch(pod(), kubectlApply, podSchema) as KubeObject;
  const cs = (out.spec as { containers: { name: string; image: string; ports?: unknown[]; env?: unknown[] }[] }).containers;
  t.deepEqual(cs.map((c) => `${c.name}=${c.image}`), ['web=nginx:1.16.1', 'side=busybox']);
  t.deepEqual(cs[0].ports, [{ containerPort: 80, protocol: 'TCP' }, { containerPort: 443, protocol: 'TCP' }]);
  t.is(cs[0].env?.length, 2);
});

test('strategic merge: ports by containerPort, env by name with $patch: delete, $setElementOrder reorders', (t) => {
  const out = applyStrategicMergePatch(
    pod(),
    {
      spec: {
        '$setElementOrder/containers': [{ name: 'side' }, { name: 'web' }],
        containers: [{ name: 'web', ports: [{ containerPort: 443, name: 'https' }, { containerPort: 8080 }], env: [{ name: 'A', $patch: 'delete' }, { name: 'C', value: '3' }] }],
      },
    },
    podSchema,
  ) as KubeObject;
  const cs = (out.spec as { containers: { name: string; ports?: { containerPort: number; name?: string }[]; env?: { name: string }[] }[] }).containers;
  t.deepEqual(cs.map((c) => c.name), ['side', 'web']);
  const web = cs[1];
  t.deepEqual(web.ports?.map((p) => `${p.containerPort}${p.name ? `/${p.name}` : ''}`), ['80', '443/https', '8080']);
  t.deepEqual(web.env?.map((e) => e.name), ['B', 'C']);
});

test('strategic merge: primitive merge lists union, $deleteFromPrimitiveList, $patch: replace, null deletes, $retainKeys', (t) => {
  const out = applyStrategicMergePatch(
    pod(),
    { metadata: { finalizers: ['b'], '$deleteFromPrimitiveList/finalizers': ['a'] }, spec: { volumes: [{ name: 'data', $retainKeys: ['name', 'hostPath'], hostPath: { path: '/x' } }], nodeName: null } },
    podSchema,
  ) as KubeObject;
  t.deepEqual((out.metadata as unknown as { finalizers: string[] }).finalizers, ['b']);
  t.deepEqual((out.spec as { volumes: unknown[] }).volumes, [{ name: 'data', hostPath: { path: '/x' } }]);
  t.is((out.spec as { nodeName?: string }).nodeName, undefined);
  const replaced = applyStrategicMergePatch(pod(), { spec: { containers: [{ $patch: 'replace' }, { name: 'only', image: 'x' }] } }, podSchema) as KubeObject;
  t.deepEqual((replaced.spec as { containers: unknown[] }).containers, [{ name: 'only', image: 'x' }]);
  // Lists the schema does not merge (args) are replaced, as in Kubernetes.
  const args = applyStrategicMergePatch({ spec: { containers: [{ name: 'a', args: ['1', '2'] }] } }, { spec: { containers: [{ name: 'a', args: ['3'] }] } }, podSchema) as KubeObject;
  t.deepEqual((args.spec as { containers: { args: string[] }[] }).containers[0].args, ['3']);
  const err = t.throws(() => applyStrategicMergePatch(pod(), { spec: { containers: [{ image: 'no-name' }] } }, podSchema), { instanceOf: ApiError });
  t.is(err?.code, 400);
  t.regex(err?.message ?? '', /does not contain declared merge key: name/);
});

test('JSON patch (RFC 6902) through fast-json-patch: 400 for a malformed op, 422 for a failed test', (t) => {
  const out = applyJsonPatch(pod(), [{ op: 'replace', path: '/spec/containers/0/image', value: 'nginx:2' }, { op: 'add', path: '/metadata/labels', value: { a: 'b' } }]) as KubeObject;
  t.is((out.spec as { containers: { image: string }[] }).containers[0].image, 'nginx:2');
  t.deepEqual(out.metadata.labels, { a: 'b' });
  t.is(t.throws(() => applyJsonPatch(pod(), [{ op: 'frobnicate', path: '/x' }]), { instanceOf: ApiError })?.code, 400);
  t.is(t.throws(() => applyJsonPatch(pod(), [{ op: 'test', path: '/spec/nodeName', value: 'node-9' }]), { instanceOf: ApiError })?.code, 422);
  t.is(t.throws(() => applyJsonPatch(pod(), { op: 'add' }), { instanceOf: ApiError })?.code, 400);
});

test('Pod updates: images, tolerations (additions), activeDeadlineSeconds (lowered) pass; nodeName and ports are Forbidden', (t) => {
  const old = pod();
  (old.spec as Record<string, unknown>).tolerations = [{ key: 'k', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 }];
  const next = structuredClone(old);
  const spec = next.spec as { containers: { image: string }[]; tolerations: unknown[]; activeDeadlineSeconds: number };
  spec.containers[0].image = 'nginx:9';
  spec.tolerations = [{ key: 'k', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 100 }, { key: 'new', operator: 'Exists' }];
  spec.activeDeadlineSeconds = 60;
  t.deepEqual(validatePodUpdate(next, old), []);
  const lower = structuredClone(next);
  (lower.spec as Record<string, unknown>).activeDeadlineSeconds = 30;
  t.deepEqual(validatePodUpdate(lower, next), []);
  const unbound = structuredClone(old);
  delete (unbound.spec as Record<string, unknown>).nodeName;
  const [e] = validatePodUpdate(unbound, old);
  t.is(e.field, 'spec');
  t.is(e.type, 'FieldValueForbidden');
  t.true(e.detail!.startsWith('pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),'));
  t.regex(e.detail!, /- nodeName: "node-1"\n {2}\+ nodeName: <unset>/);
  const ports = structuredClone(old);
  (ports.spec as { containers: { ports: unknown[] }[] }).containers[0].ports.push({ containerPort: 81 });
  t.is(validatePodUpdate(ports, old).length, 1);
  const dropped = structuredClone(old);
  (dropped.spec as Record<string, unknown>).tolerations = [];
  t.is(validatePodUpdate(dropped, old).length, 1, 'removing a toleration is not allowed');
});

test('strict field validation names each unknown field, as kube-apiserver does', (t) => {
  const body = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'x', labels: { any: 'thing' } }, spec: { containers: [{ name: 'c', imagee: 'typo' }], bogus: 1 }, status: { whatever: 1 } };
  t.deepEqual(unknownFields(body, podSchema), ['spec.containers[0].imagee', 'spec.bogus']);
  t.deepEqual(checkFields(PODS, body, podSchema, 'Warn'), ['unknown field "spec.containers[0].imagee"', 'unknown field "spec.bogus"']);
  t.deepEqual(checkFields(PODS, body, podSchema, 'Ignore'), []);
  const e = t.throws(() => checkFields(PODS, body, podSchema, 'Strict'), { instanceOf: ApiError });
  t.is(e?.message, 'Pod in version "v1" cannot be handled as a Pod: strict decoding error: unknown field "spec.containers[0].imagee", unknown field "spec.bogus"');
});

test('OpenAPI: v2 and per-group v3 documents carry the schemas of the served kinds and their fieldValidation parameter', (t) => {
  const v2 = openApiV2(registry, 'v1.30.0-podlab') as { swagger: string; definitions: Record<string, unknown>; paths: Record<string, { patch?: { 'x-kubernetes-group-version-kind': unknown } }> };
  t.is(v2.swagger, '2.0');
  for (const d of ['io.k8s.api.core.v1.Pod', 'io.k8s.api.core.v1.Service', 'io.k8s.api.core.v1.Node', 'io.k8s.api.core.v1.Namespace', 'io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta']) t.truthy(v2.definitions[d], d);
  t.deepEqual(v2.paths['/api/v1/namespaces/{namespace}/pods/{name}'].patch?.['x-kubernetes-group-version-kind'], { group: '', version: 'v1', kind: 'Pod' });
  const index = openApiV3Index(registry, 'v1.30.0-podlab') as { paths: Record<string, { serverRelativeURL: string }> };
  t.regex(index.paths['api/v1'].serverRelativeURL, /^\/openapi\/v3\/api\/v1\?hash=[0-9A-F]{128}$/);
  t.truthy(index.paths['apis/discovery.k8s.io/v1']);
  const v3 = JSON.parse(openApiV3Document(registry, 'v1.30.0-podlab', 'api/v1')!) as { components: { schemas: Record<string, { properties?: Record<string, { allOf?: { $ref: string }[] }> }> } };
  const spec = v3.components.schemas['io.k8s.api.core.v1.Pod'].properties!.spec;
  t.deepEqual(spec.allOf, [{ $ref: '#/components/schemas/io.k8s.api.core.v1.PodSpec' }], 'a $ref with a description is wrapped in allOf, as the apiserver publishes it');
});
