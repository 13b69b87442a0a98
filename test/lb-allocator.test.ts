/**
 * The MetalLB-style address allocator over a real apiserver (in-process,
 * 127.0.0.1:0): metallb.io/v1beta1 kinds served and validated, LoadBalancer
 * Services getting NodePorts and an address from the pools (priority order,
 * spec.loadBalancerIP, the loadBalancerIPs and address-pool annotations,
 * autoAssign), `<pending>` and AllocationFailed when nothing fits, freed
 * addresses reused, and the EXTERNAL-IP column as kubectl prints it.
 */
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startApiServer } from '../control-plane/apiserver.ts';
import { ApiClient } from '../control-plane/client.ts';
import type { Service } from '../control-plane/service-resources.ts';
import { defaultLabPool, parsePoolAddresses, poolAddresses } from '../control-plane/metallb.ts';
import { formatServices } from '../cli/format-services.ts';
import { INGRESS_TABLE } from '../control-plane/ingress-resources.ts';
import type { KubeObject } from '../control-plane/types.ts';
import { EtcdPool, storeOptions, storeTest } from './helpers/stores.ts';

type Ctx = { teardown: (fn: () => unknown) => void };

/** The etcd of the [etcd] variants (./helpers/stores.ts): client port 23806, peer 23807. */
const etcds = new EtcdPool([23806]);

async function server(t: Ctx): Promise<ApiClient> {
  const dir = mkdtempSync(join(tmpdir(), 'podlab-lb-'));
  const store = await storeOptions(t, etcds);
  const api = await startApiServer({ host: '127.0.0.1', port: 0, stateDir: dir, ...store.options });
  const c = new ApiClient(api.url, { credentials: api.credentials });
  t.teardown(async () => {
    c.close();
    await api.close();
    await store.release();
    rmSync(dir, { recursive: true, force: true });
  });
  await c.create('namespaces', { metadata: { name: 'metallb-system' } });
  return c;
}

const pool = (name: string, addresses: string[], extra: Record<string, unknown> = {}) => ({
  apiVersion: 'metallb.io/v1beta1',
  kind: 'IPAddressPool',
  metadata: { name, namespace: 'metallb-system' },
  spec: { addresses, ...extra },
});

const lb = (name: string, extra: Record<string, unknown> = {}, annotations?: Record<string, string>) => ({
  metadata: { name, ...(annotations ? { annotations } : {}) },
  spec: { type: 'LoadBalancer', selector: { app: name }, ports: [{ port: 80 }], ...extra },
});

/** Polls a Service until `pred` holds (the allocator runs after the create returns). */
async function until(c: ApiClient, name: string, pred: (s: Service) => boolean): Promise<Service> {
  for (let i = 0; i < 100; i++) {
    const s = await c.get<Service>('services', name, 'default');
    if (s && pred(s)) return s;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`service ${name} never reached the expected state`);
}
const ipOf = (s: Service) => s.status?.loadBalancer?.ingress?.[0]?.ip;

test('pool addresses: CIDRs, ranges, avoidBuggyIPs, the default lab slice', (t) => {
  t.deepEqual(parsePoolAddresses('127.0.215.200/29'), { first: 0x7f00d7c8, last: 0x7f00d7cf });
  t.is(parsePoolAddresses('10.0.0.9-10.0.0.1'), null);
  t.is(parsePoolAddresses('banana'), null);
  t.deepEqual([...poolAddresses({ addresses: ['10.0.0.254-10.0.1.1'], avoidBuggyIPs: true })], ['10.0.0.254', '10.0.1.1']);
  t.is(defaultLabPool('127.0.215.0/24'), '127.0.215.200/29');
  t.is(defaultLabPool('127.0.215.0/28'), undefined);
});

storeTest('a LoadBalancer Service gets NodePorts and the first free address; EXTERNAL-IP pending, then shown', async (t) => {
  const c = await server(t);
  const first = await c.create<Service>('services', lb('web'));
  t.true(typeof first.spec?.ports?.[0].nodePort === 'number' && first.spec.ports[0].nodePort >= 30000);
  t.is(first.spec?.externalTrafficPolicy, 'Cluster');
  t.is(first.spec?.allocateLoadBalancerNodePorts, true);
  t.regex(formatServices([first], false, false), /web\s+LoadBalancer\s+10\.\S+\s+<pending>\s+80:3\d{4}\/TCP/);
  await c.create('ipaddresspools', pool('lab', ['127.0.215.200/29']), 'metallb-system');
  const got = await until(c, 'web', (s) => !!ipOf(s));
  t.is(ipOf(got), '127.0.215.200');
  t.is(got.status?.loadBalancer?.ingress?.[0].ipMode, 'VIP');
  t.regex(formatServices([got], false, false), /web\s+LoadBalancer\s+10\.\S+\s+127\.0\.215\.200\s+80:3\d{4}\/TCP/);
  const events = (await c.list<{ reason: string; message: string; involvedObject: { name: string } }>('events', { namespace: 'default' })).items;
  t.truthy(events.find((e) => e.involvedObject.name === 'web' && e.reason === 'IPAllocated' && e.message === 'Assigned IP ["127.0.215.200"]'));
  const second = await until(c, (await c.create<Service>('services', lb('api'))).metadata.name, (s) => !!ipOf(s));
  t.is(ipOf(second), '127.0.215.201');
  // allocateLoadBalancerNodePorts: false leaves the ports without NodePorts.
  const bare = await c.create<Service>('services', lb('bare', { allocateLoadBalancerNodePorts: false }));
  t.is(bare.spec?.ports?.[0].nodePort, undefined);
});

storeTest('requested addresses, pool annotation, priority, autoAssign, exhaustion and reuse', async (t) => {
  const c = await server(t);
  await c.create('ipaddresspools', pool('b-low', ['127.0.216.10/31']), 'metallb-system');
  await c.create('ipaddresspools', pool('a-manual', ['127.0.216.20-127.0.216.21'], { autoAssign: false }), 'metallb-system');
  await c.create('ipaddresspools', pool('z-first', ['127.0.216.30/32'], { serviceAllocation: { priority: 1 } }), 'metallb-system');
  t.is(ipOf(await until(c, (await c.create<Service>('services', lb('one'))).metadata.name, (s) => !!ipOf(s))), '127.0.216.30', 'priority pool first');
  t.is(ipOf(await until(c, (await c.create<Service>('services', lb('two'))).metadata.name, (s) => !!ipOf(s))), '127.0.216.10', 'then by name, skipping autoAssign: false');
  t.is(ipOf(await until(c, (await c.create<Service>('services', lb('req', { loadBalancerIP: '127.0.216.21' }))).metadata.name, (s) => !!ipOf(s))), '127.0.216.21', 'spec.loadBalancerIP');
  t.is(ipOf(await until(c, (await c.create<Service>('services', lb('ann', {}, { 'metallb.universe.tf/loadBalancerIPs': '127.0.216.20' }))).metadata.name, (s) => !!ipOf(s))), '127.0.216.20', 'annotation');
  t.is(ipOf(await until(c, (await c.create<Service>('services', lb('pooled', {}, { 'metallb.io/address-pool': 'b-low' }))).metadata.name, (s) => !!ipOf(s))), '127.0.216.11', 'address-pool annotation');
  await c.create<Service>('services', lb('taken', { loadBalancerIP: '127.0.216.21' }));
  await c.create<Service>('services', lb('outside', { loadBalancerIP: '127.0.217.1' }));
  await c.create<Service>('services', lb('full'));
  await new Promise((r) => setTimeout(r, 100));
  const events = (await c.list<{ reason: string; message: string; involvedObject: { name: string } }>('events', { namespace: 'default' })).items.filter((e) => e.reason === 'AllocationFailed');
  const msg = (n: string) => events.find((e) => e.involvedObject.name === n)?.message;
  t.regex(msg('taken') ?? '', /address also in use by another service/);
  t.is(msg('outside'), 'Failed to allocate IP for "default/outside": ["127.0.217.1"] is not allowed in config');
  t.is(msg('full'), 'Failed to allocate IP for "default/full": no available IPs');
  t.is(ipOf((await c.get<Service>('services', 'full', 'default'))!), undefined);
  // Deleting a holder frees its address for the pending Service.
  await c.delete('services', 'two', 'default');
  t.is(ipOf(await until(c, 'full', (s) => !!ipOf(s))), '127.0.216.10');
  // Changing the type away from LoadBalancer clears the status.
  const one = (await c.get<Service>('services', 'one', 'default'))!;
  await c.update('services', { ...one, spec: { ...one.spec, type: 'ClusterIP', ports: [{ port: 80 }], externalTrafficPolicy: undefined, allocateLoadBalancerNodePorts: undefined } });
  t.is(ipOf(await until(c, 'one', (s) => !ipOf(s))), undefined);
});

storeTest('metallb.io kinds are validated', async (t) => {
  const c = await server(t);
  const e1 = await t.throwsAsync(c.create('ipaddresspools', pool('bad', ['10.0.0.0/33']), 'metallb-system'));
  t.regex(e1.message, /spec\.addresses\[0\]: Invalid value: "10\.0\.0\.0\/33"/);
  const e2 = await t.throwsAsync(c.create('bgpadvertisements', { apiVersion: 'metallb.io/v1beta1', kind: 'BGPAdvertisement', metadata: { name: 'b' }, spec: { communities: ['65000:70000'] } }, 'metallb-system'));
  t.regex(e2.message, /spec\.communities\[0\]/);
  const e3 = await t.throwsAsync(c.create('services', { metadata: { name: 'x' }, spec: { type: 'ClusterIP', loadBalancerIP: '1.2.3.4', ports: [{ port: 80 }] } }));
  t.regex(e3.message, /spec\.loadBalancerIP: Forbidden/);
  await c.create('l2advertisements', { apiVersion: 'metallb.io/v1beta1', kind: 'L2Advertisement', metadata: { name: 'l2' }, spec: { ipAddressPools: ['lab'] } }, 'metallb-system');
  t.is((await c.list('l2advertisements', { namespace: 'metallb-system' })).items.length, 1);
});

storeTest('networking.k8s.io/v1 Ingress and IngressClass: validation, the default class, kubectl columns', async (t) => {
  const c = await server(t);
  await c.create('ingressclasses', { apiVersion: 'networking.k8s.io/v1', kind: 'IngressClass', metadata: { name: 'nginx', annotations: { 'ingressclass.kubernetes.io/is-default-class': 'true' } }, spec: { controller: 'k8s.io/ingress-nginx' } });
  const ing = (rules: unknown, extra: Record<string, unknown> = {}) => ({ apiVersion: 'networking.k8s.io/v1', kind: 'Ingress', metadata: { name: 'x' }, spec: { rules, ...extra } });
  const bad = async (rules: unknown, extra: Record<string, unknown> = {}) => (await t.throwsAsync(c.create('ingresses', ing(rules, extra), 'default'))).message;
  t.regex(await bad([]), /spec\.rules: Required value: either `defaultBackend` or `rules` must be specified/);
  t.regex(await bad([{ host: 'a.example', http: { paths: [{ path: '/', backend: { service: { name: 'web', port: { number: 80 } } } }] } }]), /pathType: Required value/);
  t.regex(await bad([{ http: { paths: [{ path: 'api', pathType: 'Prefix', backend: { service: { name: 'web', port: { number: 80 } } } }] } }]), /path: Invalid value: "api": must be an absolute path/);
  t.regex(await bad([{ http: { paths: [{ path: '/', pathType: 'Prefix', backend: { service: { name: 'web', port: { number: 80, name: 'http' } } } }] } }]), /cannot set both port name & port number/);
  const made = await c.create<{ spec: { ingressClassName?: string } }>('ingresses', ing([{ host: 'a.example', http: { paths: [{ path: '/', pathType: 'Prefix', backend: { service: { name: 'web', port: { name: 'http' } } } }] } }, { http: { paths: [{ path: '/x', pathType: 'Exact', backend: { service: { name: 'web', port: { number: 80 } } } }] } }]), 'default');
  t.is(made.spec.ingressClassName, 'nginx', 'DefaultIngressClass admission');
  const stored = (await c.get<KubeObject>('ingresses', 'x', 'default'))!;
  t.deepEqual(INGRESS_TABLE.cells(stored, Date.parse(stored.metadata.creationTimestamp) + 5000).slice(0, 5), ['x', 'nginx', 'a.example,*', '', '80']);
});
