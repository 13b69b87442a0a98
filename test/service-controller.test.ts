/**
 * The Service control plane over a real apiserver (in-process, 127.0.0.1:0,
 * temp state dir): ClusterIP/NodePort allocation with kube-apiserver's error
 * wording, the EndpointSlice controller (labels, readiness, deletion, named
 * target ports) with watch latency measured, persistence across restarts,
 * and the kubectl-style printing.
 */
import { httpsJson } from './helpers/https.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startApiServer, type ApiServer, type ApiServerOptions } from '../control-plane/apiserver.ts';
import { ApiClient, ApiError } from '../control-plane/client.ts';
import type { EndpointSlice, Service } from '../control-plane/service-resources.ts';
import { ServiceAllocator, parseServiceAllocConfig } from '../control-plane/service-allocator.ts';
import type { KubeObject, WatchEvent } from '../control-plane/types.ts';
import { formatEndpointSlices, formatServices } from '../cli/format-services.ts';
import { createServiceProxyEngine, type DnatDecision } from '../service-proxy/index.ts';
import { engineOpts, pkt } from './helpers/service-fixtures.ts';
import { EtcdPool, storeOptions, storeTest } from './helpers/stores.ts';

type Ctx = { teardown: (fn: () => unknown) => void };

/** The etcd of the [etcd] variants (./helpers/stores.ts): client port 23802, peer 23803. */
const etcds = new EtcdPool([23802]);

async function server(t: Ctx, extra: Partial<ApiServerOptions> = {}): Promise<{ api: ApiServer; c: ApiClient; dir: string }> {
  const dir = extra.stateDir ?? mkdtempSync(join(tmpdir(), 'podlab-svc-'));
  const store = await storeOptions(t, etcds);
  const api = await startApiServer({ host: '127.0.0.1', port: 0, stateDir: dir, ...store.options, ...extra });
  const c = new ApiClient(api.url, { credentials: api.credentials });
  t.teardown(async () => {
    c.close();
    await api.close();
    await store.release();
    if (!extra.stateDir) rmSync(dir, { recursive: true, force: true });
  });
  return { api, c, dir };
}

interface PodOpts {
  ip?: string;
  node?: string;
  ready?: boolean;
  labels?: Record<string, string>;
  ports?: { name?: string; containerPort: number; protocol?: 'TCP' | 'UDP' }[];
  ns?: string;
}

async function pod(c: ApiClient, name: string, o: PodOpts = {}): Promise<void> {
  const ns = o.ns ?? 'default';
  await c.create('pods', { metadata: { name, namespace: ns, labels: o.labels ?? { app: 'web' } }, spec: { nodeName: o.node ?? 'node-1', containers: [{ name: 'c', image: 'nginx', ports: o.ports }] } }, ns);
  if (o.ip) {
    await c.patchStatus('pods', name, { status: { phase: 'Running', podIP: o.ip, podIPs: [{ ip: o.ip }], conditions: [{ type: 'Ready', status: o.ready === false ? 'False' : 'True' }] } }, ns);
  }
}

const slicesOf = async (c: ApiClient, svc: string, ns = 'default') => (await c.list<EndpointSlice>('endpointslices', { namespace: ns, labelSelector: `kubernetes.io/service-name=${svc}` })).items;
const addrs = (slices: EndpointSlice[]) => slices.flatMap((s) => s.endpoints.flatMap((e) => e.addresses)).sort();

/** Opens a watch, then runs `act`; returns the first event satisfying `pred` and the time from `act` to it. */
async function waitFor(c: ApiClient, rv: string, pred: (ev: WatchEvent<EndpointSlice>) => boolean, act: () => Promise<unknown>): Promise<{ ev: WatchEvent<EndpointSlice>; ms: number }> {
  const ac = new AbortController();
  let opened!: () => void;
  const open = new Promise<void>((r) => (opened = r));
  const it = c.watch<EndpointSlice>('endpointslices', { namespace: 'default', resourceVersion: rv, signal: ac.signal, onOpen: () => opened() })[Symbol.asyncIterator]();
  let next = it.next();
  const deadline = Date.now() + 5000;
  const timeout = () => new Promise<'timeout'>((res) => setTimeout(() => res('timeout'), Math.max(1, deadline - Date.now())));
  try {
    if ((await Promise.race([open, timeout()])) === 'timeout') throw new Error('watch did not open');
    const started = performance.now();
    await act();
    while (Date.now() < deadline) {
      const r = await Promise.race([next, timeout()]);
      if (r === 'timeout' || r.done) break;
      if (pred(r.value)) return { ev: r.value, ms: performance.now() - started };
      next = it.next();
    }
    throw new Error('no matching watch event within 5 s');
  } finally {
    ac.abort();
  }
}

storeTest('Pods with matching labels become an EndpointSlice kept by endpointslice-controller.k8s.io', async (t) => {
  const { c } = await server(t);
  await pod(c, 'web-1', { ip: '10.244.1.2', node: 'node-1' });
  await pod(c, 'web-2', { ip: '10.244.2.2', node: 'node-2' });
  await pod(c, 'other', { ip: '10.244.1.9', labels: { app: 'db' } });
  await pod(c, 'no-ip-yet');
  const svc = await c.create<Service>('services', { metadata: { name: 'web', labels: { tier: 'fe' } }, spec: { selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080 }] } });
  const slices = await slicesOf(c, 'web');
  t.is(slices.length, 1);
  const s = slices[0];
  t.regex(s.metadata.name, /^web-[a-z0-9]{5}$/);
  t.is(s.addressType, 'IPv4');
  t.deepEqual(s.metadata.labels, { tier: 'fe', 'kubernetes.io/service-name': 'web', 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' });
  t.like((s.metadata as unknown as { ownerReferences: unknown[] }).ownerReferences[0], { apiVersion: 'v1', kind: 'Service', name: 'web', uid: svc.metadata.uid, controller: true });
  t.deepEqual(s.ports, [{ name: '', port: 8080, protocol: 'TCP' }]);
  t.deepEqual(addrs(slices), ['10.244.1.2', '10.244.2.2']);
  t.like(s.endpoints[0], { conditions: { ready: true, serving: true, terminating: false }, nodeName: 'node-1', targetRef: { kind: 'Pod', name: 'web-1', namespace: 'default' } });
  // The slice feeds kube-proxy: a node's engine DNATs the ClusterIP to the pods.
  const e = createServiceProxyEngine('iptables', engineOpts());
  e.update([svc], slices);
  const d = e.decide(pkt('10.244.1.5', svc.spec!.clusterIP!, 80)) as DnatDecision;
  t.true(['10.244.1.2', '10.244.2.2'].includes(d.to.ip));
  t.is(d.to.port, 8080);
  // A pod that gets its IP later joins.
  await c.patchStatus('pods', 'no-ip-yet', { status: { phase: 'Running', podIP: '10.244.1.3', conditions: [{ type: 'Ready', status: 'True' }] } });
  t.deepEqual(addrs(await slicesOf(c, 'web')), ['10.244.1.2', '10.244.1.3', '10.244.2.2']);
  // Relabelling a pod out of the selector removes it.
  await c.patch('pods', 'web-2', { metadata: { labels: { app: 'gone' } } });
  t.deepEqual(addrs(await slicesOf(c, 'web')), ['10.244.1.2', '10.244.1.3']);
  // Deleting the Service deletes its slices.
  await c.delete('services', 'web');
  t.deepEqual(await slicesOf(c, 'web'), []);
});

storeTest('readiness and deletion reach watchers well under a second', async (t) => {
  const { c } = await server(t);
  await pod(c, 'web-1', { ip: '10.244.1.2' });
  await pod(c, 'web-2', { ip: '10.244.2.2', node: 'node-2' });
  await c.create('services', { metadata: { name: 'web' }, spec: { selector: { app: 'web' }, ports: [{ port: 80 }] } });
  let rv = (await c.list('endpointslices')).metadata.resourceVersion;
  const notReady = await waitFor(
    c,
    rv,
    (ev) => ev.type === 'MODIFIED' && ev.object.endpoints.some((e) => e.addresses[0] === '10.244.2.2' && e.conditions?.ready === false),
    () => c.patchStatus('pods', 'web-2', { status: { conditions: [{ type: 'Ready', status: 'False' }] } }),
  );
  t.log(`not Ready -> ready=false in the slice after ${notReady.ms.toFixed(1)} ms`);
  t.true(notReady.ms < 1000);
  t.like(notReady.ev.object.endpoints.find((e) => e.addresses[0] === '10.244.2.2'), { conditions: { ready: false, serving: false, terminating: false } });
  rv = (await c.list('endpointslices')).metadata.resourceVersion;
  const deleted = await waitFor(
    c,
    rv,
    (ev) => ev.type === 'MODIFIED' && !ev.object.endpoints.some((e) => e.addresses[0] === '10.244.1.2'),
    () => c.delete('pods', 'web-1'),
  );
  t.log(`pod deleted -> endpoint gone after ${deleted.ms.toFixed(1)} ms`);
  t.true(deleted.ms < 1000);
  // A terminating pod (deletionTimestamp) is listed as terminating, serving while still Ready.
  await c.patchStatus('pods', 'web-2', { status: { conditions: [{ type: 'Ready', status: 'True' }] } });
  await c.patch('pods', 'web-2', { metadata: { deletionTimestamp: '2026-11-25T12:00:00Z' } });
  const [s] = await slicesOf(c, 'web');
  t.like(s.endpoints[0], { conditions: { ready: false, serving: true, terminating: true } });
  // No pod left: a placeholder slice with no ports and no endpoints, as Kubernetes keeps.
  await c.delete('pods', 'web-2');
  const left = await slicesOf(c, 'web');
  t.is(left.length, 1);
  t.deepEqual([left[0].endpoints, left[0].ports], [[], []]);
});

storeTest('named targetPorts resolve per pod; different numbers make different slices', async (t) => {
  const { c } = await server(t);
  await pod(c, 'a', { ip: '10.244.1.2', ports: [{ name: 'http', containerPort: 8080 }] });
  await pod(c, 'b', { ip: '10.244.1.3', ports: [{ name: 'http', containerPort: 8080 }] });
  await pod(c, 'c', { ip: '10.244.2.2', node: 'node-2', ports: [{ name: 'http', containerPort: 9090 }] });
  await pod(c, 'd', { ip: '10.244.2.3', node: 'node-2', ports: [{ name: 'http', containerPort: 7070, protocol: 'UDP' }] });
  await c.create('services', { metadata: { name: 'web' }, spec: { selector: { app: 'web' }, ports: [{ name: 'web', port: 80, targetPort: 'http' }] } });
  const slices = await slicesOf(c, 'web');
  const byPort = new Map(slices.map((s) => [JSON.stringify(s.ports), addrs([s])]));
  t.deepEqual(byPort.get(JSON.stringify([{ name: 'web', port: 8080, protocol: 'TCP' }])), ['10.244.1.2', '10.244.1.3']);
  t.deepEqual(byPort.get(JSON.stringify([{ name: 'web', port: 9090, protocol: 'TCP' }])), ['10.244.2.2']);
  t.deepEqual(byPort.get('[]'), ['10.244.2.3'], 'a UDP "http" does not match a TCP service port');
  const svc = await c.get<Service>('services', 'web');
  const e = createServiceProxyEngine('ipvs', engineOpts());
  e.update([svc!], slices);
  t.regex(e.ipvsadmList(), / {2}-> 10\.244\.2\.2:9090 /);
});

storeTest('ClusterIP allocation: automatic, user-chosen, conflicts and range errors worded as kube-apiserver', async (t) => {
  const { c } = await server(t);
  const a = await c.create<Service>('services', { metadata: { name: 'a' }, spec: { ports: [{ port: 80 }] } });
  const ip = a.spec!.clusterIP!;
  t.true(new ServiceAllocator(parseServiceAllocConfig()).inRange(ip));
  t.deepEqual(a.spec!.clusterIPs, [ip]);
  t.like(a.spec, { type: 'ClusterIP', sessionAffinity: 'None', internalTrafficPolicy: 'Cluster', ipFamilies: ['IPv4'], ipFamilyPolicy: 'SingleStack' });
  t.deepEqual(a.spec!.ports, [{ port: 80, protocol: 'TCP', targetPort: 80 }]);
  const dns = await c.create<Service>('services', { metadata: { name: 'kube-dns', namespace: 'kube-system' }, spec: { clusterIP: '10.96.0.10', ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] } }, 'kube-system');
  t.is(dns.spec!.clusterIP, '10.96.0.10');
  const err = await t.throwsAsync(c.create('services', { metadata: { name: 'b' }, spec: { clusterIP: '10.96.0.10', ports: [{ port: 80 }] } }));
  t.is((err as ApiError).code, 422);
  t.is(err.message, 'Service "b" is invalid: spec.clusterIPs: Invalid value: ["10.96.0.10"]: failed to allocate IP 10.96.0.10: provided IP is already allocated');
  const out = await t.throwsAsync(c.create('services', { metadata: { name: 'b' }, spec: { clusterIP: '10.0.0.1', ports: [{ port: 80 }] } }));
  t.is(out.message, 'Service "b" is invalid: spec.clusterIPs: Invalid value: ["10.0.0.1"]: failed to allocate IP 10.0.0.1: provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/12');
  const imm = await t.throwsAsync(c.patch('services', 'a', { spec: { clusterIP: '10.96.0.77' } }));
  t.regex(imm.message, /spec\.clusterIPs\[0\]: Invalid value: "10\.96\.0\.77": may not change once set/);
  // Freed on delete: the address can be taken again.
  await c.delete('services', 'kube-dns', 'kube-system');
  const again = await c.create<Service>('services', { metadata: { name: 'b' }, spec: { clusterIP: '10.96.0.10', ports: [{ port: 80 }] } });
  t.is(again.spec!.clusterIP, '10.96.0.10');
  // Headless: no address.
  const h = await c.create<Service>('services', { metadata: { name: 'h' }, spec: { clusterIP: 'None', selector: { app: 'x' }, ports: [{ port: 80 }] } });
  t.is(h.spec!.clusterIP, 'None');
});

storeTest('NodePort allocation: from 30000-32767, conflicts and range errors, kept across updates', async (t) => {
  const { c } = await server(t);
  const a = await c.create<Service>('services', { metadata: { name: 'a' }, spec: { type: 'NodePort', selector: { app: 'a' }, ports: [{ name: 'http', port: 80 }, { name: 'https', port: 443 }] } });
  const [p1, p2] = a.spec!.ports!.map((p) => p.nodePort!);
  t.true(p1 >= 30000 && p1 <= 32767 && p2 >= 30000 && p2 <= 32767 && p1 !== p2);
  t.is(a.spec!.externalTrafficPolicy, 'Cluster');
  const clash = await t.throwsAsync(c.create('services', { metadata: { name: 'b' }, spec: { type: 'NodePort', ports: [{ port: 80, nodePort: p1 }] } }));
  t.is(clash.message, `Service "b" is invalid: spec.ports[0].nodePort: Invalid value: ${p1}: provided port is already allocated`);
  const range = await t.throwsAsync(c.create('services', { metadata: { name: 'b' }, spec: { type: 'NodePort', ports: [{ port: 80, nodePort: 8080 }] } }));
  t.is(range.message, 'Service "b" is invalid: spec.ports[0].nodePort: Invalid value: 8080: provided port is not in the valid range. The range of valid ports is 30000-32767');
  const forbidden = await t.throwsAsync(c.create('services', { metadata: { name: 'b' }, spec: { ports: [{ port: 80, nodePort: 30001 }] } }));
  t.is(forbidden.message, "Service \"b\" is invalid: spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'");
  const chosen = await c.create<Service>('services', { metadata: { name: 'c' }, spec: { type: 'NodePort', ports: [{ port: 80, nodePort: 30080 }] } });
  t.is(chosen.spec!.ports![0].nodePort, 30080);
  // A merge patch that replaces the ports without nodePorts keeps them (patchAllocatedValues), and the clusterIP.
  const patched = await c.patch<Service>('services', 'a', { spec: { ports: [{ name: 'http', port: 80, targetPort: 8080 }, { name: 'https', port: 443 }] } });
  t.deepEqual(patched.spec!.ports!.map((p) => p.nodePort), [p1, p2]);
  t.is(patched.spec!.clusterIP, a.spec!.clusterIP);
  // Deleting frees them.
  await c.delete('services', 'a');
  const reuse = await c.create<Service>('services', { metadata: { name: 'd' }, spec: { type: 'NodePort', ports: [{ port: 80, nodePort: p1 }] } });
  t.is(reuse.spec!.ports![0].nodePort, p1);
});

storeTest('validation speaks kube-apiserver', async (t) => {
  const { c } = await server(t);
  const bad = async (spec: unknown) => (await t.throwsAsync(c.create('services', { metadata: { name: 'x' }, spec }))).message;
  t.is(await bad({}), 'Service "x" is invalid: spec.ports: Required value');
  // targetPort defaults to port, so a bad port is reported twice, as kube-apiserver does.
  t.is(
    await bad({ ports: [{ port: 0 }] }),
    'Service "x" is invalid: [spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive, spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive]',
  );
  t.is(await bad({ ports: [{ port: 80 }, { port: 81 }] }), 'Service "x" is invalid: [spec.ports[0].name: Required value, spec.ports[1].name: Required value]');
  t.is(await bad({ ports: [{ name: 'a', port: 80 }, { name: 'a', port: 81 }] }), 'Service "x" is invalid: spec.ports[1].name: Duplicate value: "a"');
  t.is(await bad({ type: 'ExternalName', ports: [{ port: 80 }] }), 'Service "x" is invalid: spec.type: Unsupported value: "ExternalName": supported values: "ClusterIP", "NodePort", "LoadBalancer"');
  t.is(await bad({ ports: [{ port: 80, protocol: 'ICMP' }] }), 'Service "x" is invalid: spec.ports[0].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"');
  t.is(await bad({ ports: [{ port: 80, targetPort: 'http-web-server-x' }] }), 'Service "x" is invalid: spec.ports[0].targetPort: Invalid value: "http-web-server-x": must be no more than 15 characters');
  t.is(await bad({ sessionAffinity: 'Sticky', ports: [{ port: 80 }] }), 'Service "x" is invalid: spec.sessionAffinity: Unsupported value: "Sticky": supported values: "ClientIP", "None"');
  t.is(
    await bad({ sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 0 } }, ports: [{ port: 80 }] }),
    'Service "x" is invalid: spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be greater than 0 and less than 86400',
  );
  t.is(await bad({ externalTrafficPolicy: 'Local', ports: [{ port: 80 }] }), 'Service "x" is invalid: spec.externalTrafficPolicy: Invalid value: "Local": may only be set for externally-accessible services');
  t.is(await bad({ clusterIP: '10.96.0.300', ports: [{ port: 80 }] }), 'Service "x" is invalid: spec.clusterIPs[0]: Invalid value: "10.96.0.300": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)');
  const aff = await c.create<Service>('services', { metadata: { name: 'aff' }, spec: { sessionAffinity: 'ClientIP', ports: [{ port: 80 }] } });
  t.deepEqual(aff.spec!.sessionAffinityConfig, { clientIP: { timeoutSeconds: 10800 } });
  const sliceErr = await t.throwsAsync(c.create('endpointslices', { metadata: { name: 's' }, addressType: 'IPv4', endpoints: [{ addresses: ['not-an-ip'] }], ports: [{ port: 80 }] }));
  t.is(sliceErr.message, 'EndpointSlice "s" is invalid: endpoints[0].addresses[0]: Invalid value: "not-an-ip": must be a valid IPv4 address');
});

storeTest('allocations and slices persist across an apiserver restart; --service-cluster-ip-range is honoured', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'podlab-svc-restart-'));
  const store = await storeOptions(t, etcds);
  t.teardown(async () => {
    await store.release();
    rmSync(dir, { recursive: true, force: true });
  });
  const opts = { host: '127.0.0.1', port: 0, stateDir: dir, serviceClusterIpRange: '10.100.0.0/16', kubernetesService: true };
  const first = await startApiServer({ ...opts, ...store.options });
  const c1 = new ApiClient(first.url, { credentials: first.credentials });
  const k = await c1.get<Service>('services', 'kubernetes');
  t.like(k?.spec, { clusterIP: '10.100.0.1', ports: [{ name: 'https', port: 443, protocol: 'TCP', targetPort: first.port }] });
  t.deepEqual(addrs(await slicesOf(c1, 'kubernetes')), ['127.0.0.1']);
  await pod(c1, 'web-1', { ip: '10.244.1.2' });
  const svc = await c1.create<Service>('services', { metadata: { name: 'web' }, spec: { type: 'NodePort', selector: { app: 'web' }, ports: [{ port: 80 }] } });
  t.regex(svc.spec!.clusterIP!, /^10\.100\./);
  const before = await slicesOf(c1, 'web');
  c1.close();
  await first.close();
  const second = await startApiServer({ ...opts, ...store.reopen() });
  const c2 = new ApiClient(second.url, { credentials: second.credentials });
  t.teardown(async () => {
    c2.close();
    await second.close();
  });
  const after = await c2.get<Service>('services', 'web');
  t.is(after!.spec!.clusterIP, svc.spec!.clusterIP);
  t.is(after!.spec!.ports![0].nodePort, svc.spec!.ports![0].nodePort);
  const slices = await slicesOf(c2, 'web');
  t.deepEqual(slices.map((s) => s.metadata.name), before.map((s) => s.metadata.name), 'the same slice, not a duplicate');
  const clash = await t.throwsAsync(c2.create('services', { metadata: { name: 'x' }, spec: { clusterIP: svc.spec!.clusterIP, ports: [{ port: 80 }] } }));
  t.regex(clash.message, /provided IP is already allocated/);
  t.deepEqual(addrs(await slicesOf(c2, 'kubernetes')), ['127.0.0.1']);
  t.is((await c2.get<KubeObject>('endpointslices', 'kubernetes'))!.metadata.name, 'kubernetes');
});

storeTest('kubectl columns: server-side Table and the podlab CLI tables', async (t) => {
  const { api, c } = await server(t);
  await pod(c, 'web-1', { ip: '10.244.1.2' });
  await pod(c, 'web-2', { ip: '10.244.2.2', node: 'node-2' });
  await c.create('services', { metadata: { name: 'web' }, spec: { type: 'NodePort', selector: { app: 'web', tier: 'fe' }, ports: [{ port: 80, nodePort: 30080 }, { name: 'x', port: 443, protocol: 'UDP' }].map((p, i) => ({ ...p, name: i ? 'x' : 'h' })) } });
  await c.patch('pods', 'web-1', { metadata: { labels: { app: 'web', tier: 'fe' } } });
  const table = await httpsJson<{ columnDefinitions: { name: string }[]; rows: { cells: string[] }[] }>(`${api.url}/api/v1/namespaces/default/services`, api.credentials, { accept: 'application/json;as=Table;v=v1;g=meta.k8s.io' });
  t.deepEqual(table.columnDefinitions.map((d) => d.name), ['Name', 'Type', 'Cluster-IP', 'External-IP', 'Port(s)', 'Age', 'Selector']);
  const svc = (await c.get<Service>('services', 'web'))!;
  const np2 = svc.spec!.ports![1].nodePort;
  t.deepEqual(table.rows[0].cells.slice(0, 5), ['web', 'NodePort', svc.spec!.clusterIP, '<none>', `80:30080/TCP,443:${np2}/UDP`]);
  t.is(table.rows[0].cells[6], 'app=web,tier=fe');
  const out = formatServices([svc], false, false).split('\n');
  t.regex(out[0], /^NAME {3}TYPE {7}CLUSTER-IP {5,}EXTERNAL-IP {3}PORT\(S\) {5,}AGE$/);
  t.regex(out[1], new RegExp(`^web {4}NodePort {3}${svc.spec!.clusterIP!.replace(/\./g, '\\.')} +<none> {8}80:30080/TCP,443:${np2}/UDP {3}\\d+s$`));
  const slices = await slicesOf(c, 'web');
  const so = formatEndpointSlices(slices, false).split('\n');
  t.is(so[0].replace(/ +/g, ' '), 'NAME ADDRESSTYPE PORTS ENDPOINTS AGE');
  t.regex(so[1], /^web-[a-z0-9]{5} {3}IPv4 {10}80,443 {3}10\.244\.1\.2 {3}\d+s$/);
  const stable = await httpsJson<{ columnDefinitions: { name: string }[]; rows: { cells: string[] }[] }>(`${api.url}/apis/discovery.k8s.io/v1/namespaces/default/endpointslices`, api.credentials, { accept: 'application/json;as=Table;v=v1;g=meta.k8s.io' });
  t.deepEqual(stable.columnDefinitions.map((d) => d.name), ['Name', 'AddressType', 'Ports', 'Endpoints', 'Age']);
  t.deepEqual(stable.rows[0].cells.slice(1, 4), ['IPv4', '80,443', '10.244.1.2']);
  t.is(formatServices([], false, false), 'No resources found in default namespace.\n');
});
