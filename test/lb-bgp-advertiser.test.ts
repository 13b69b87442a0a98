/**
 * MetalLB's BGP mode as a pure plan (edge/bgp-advertiser.ts): which routes a
 * node announces (Cluster: every admitted node; Local: the nodes with a ready
 * endpoint), aggregationLength, communities (standard and large) and
 * localPref merged per prefix; the large community's bytes; and the node
 * peers' filters (backends/bgp/filters.ts) accepting an LB route from its
 * owner only, never passing another node's on to an external peer.
 */
import test from 'ava';
import { aggregate, bgpLbRoutes, parseCommunity } from '../edge/bgp-advertiser.ts';
import { exportVerdict, importVerdict, lbPrefixes, nodeOwners, type FilterContext } from '../backends/bgp/filters.ts';
import { largeCommunityAttribute, parseLargeCommunities } from '../bgp/index.ts';
import { BGP_ADVERTISEMENTS, type Advertisement, type IpAddressPool } from '../control-plane/metallb.ts';
import type { KubeObject, Node } from '../control-plane/types.ts';
import { CALICO_IPV4_ADDRESS } from '../control-plane/annotations.ts';
import { loadBalancerServices } from '../edge/lb-services.ts';

const meta = (name: string, ns = 'default') => ({ name, namespace: ns, uid: name, resourceVersion: '1', creationTimestamp: '' });
const pool = (name: string, addresses: string[]): IpAddressPool => ({ apiVersion: 'metallb.io/v1beta1', kind: 'IPAddressPool', metadata: meta(name, 'metallb-system'), spec: { addresses } });
const adv = (name: string, spec: Advertisement['spec']): Advertisement => ({ apiVersion: 'metallb.io/v1beta1', kind: 'BGPAdvertisement', metadata: meta(name, 'metallb-system'), spec });
const svc = (name: string, ip: string, local = false): KubeObject =>
  ({ apiVersion: 'v1', kind: 'Service', metadata: meta(name), spec: { type: 'LoadBalancer', clusterIP: '10.96.0.50', externalTrafficPolicy: local ? 'Local' : 'Cluster', ports: [{ port: 80, protocol: 'TCP', nodePort: 30080 }] }, status: { loadBalancer: { ingress: [{ ip }] } } });
const slice = (service: string, nodes: { node: string; ready?: boolean }[]): KubeObject =>
  ({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { ...meta(`${service}-x`), labels: { 'kubernetes.io/service-name': service } }, endpoints: nodes.map((n, i) => ({ addresses: [`10.244.${i}.5`], nodeName: n.node, conditions: { ready: n.ready ?? true } })) }) as unknown as KubeObject;

/** The routes from whole lists of Services and EndpointSlices, through the LoadBalancer Services' summary an agent keeps. */
const routesOf = (node: string, labels: Record<string, string>, services: KubeObject[], slices: KubeObject[], pools: IpAddressPool[], advs: Advertisement[]) =>
  bgpLbRoutes(node, labels, loadBalancerServices(services, slices), pools, advs);

test('communities: standard and large parse, out-of-range and malformed do not; aggregation masks', (t) => {
  t.deepEqual(parseCommunity('65000:100'), { standard: (65000 << 16 | 100) >>> 0 });
  t.deepEqual(parseCommunity('large:64512:7:4294967295'), { large: [64512, 7, 4294967295] });
  for (const bad of ['65536:1', '1:65536', 'large:1:2', 'large:4294967296:0:0', 'no-export', '']) t.is(parseCommunity(bad), undefined, bad);
  t.is(aggregate('198.51.100.13', 32), '198.51.100.13/32');
  t.is(aggregate('198.51.100.13', 28), '198.51.100.0/28');
  t.is(aggregate('198.51.100.13', 0), '0.0.0.0/0');
  // The apiserver's validation takes both kinds, as MetalLB does.
  const v = BGP_ADVERTISEMENTS.validate!(adv('a', { communities: ['65000:100', 'large:1:2:3', 'large:1:2', '70000:1'] }), undefined);
  t.deepEqual(v.map((e) => e.field), ['spec.communities[2]', 'spec.communities[3]']);
});

test('the large community attribute: golden bytes (the ones tshark decodes in bgp-tshark), and back', (t) => {
  const a = largeCommunityAttribute([[64512, 1, 2], [64512, 1, 2], [65000, 0, 4294967295]]);
  t.is(a.type, 32);
  t.is(a.flags, 0xc0, 'optional transitive');
  t.is(a.value.toString('hex'), '0000fc000000000100000002' + '0000fde800000000ffffffff', 'deduplicated, order kept');
  t.deepEqual(parseLargeCommunities(a.value), [[64512, 1, 2], [65000, 0, 4294967295]]);
  t.is(parseLargeCommunities(Buffer.alloc(13)), undefined);
  t.is(parseLargeCommunities(Buffer.alloc(0)), undefined);
  t.throws(() => largeCommunityAttribute([[1, 2, 2 ** 32]]), { instanceOf: RangeError });
});

test('Cluster: every admitted node announces; Local: only nodes with a ready endpoint; attributes merged per prefix', (t) => {
  const pools = [pool('up', ['198.51.100.0/28']), pool('other', ['192.0.2.0/28'])];
  const advs = [
    adv('a', { ipAddressPools: ['up'], localPref: 300, communities: ['65000:100', 'large:64512:7:9'] }),
    adv('b', { ipAddressPools: ['up'], localPref: 200, communities: ['65000:200', '65000:100'] }),
    adv('agg', { ipAddressPools: ['up'], aggregationLength: 28, nodeSelectors: [{ matchLabels: { rack: 'r1' } }] }),
  ];
  const services = [svc('web', '198.51.100.1'), svc('solo', '198.51.100.2', true), svc('elsewhere', '192.0.2.1')];
  const slices = [slice('solo', [{ node: 'node-2' }, { node: 'node-3', ready: false }])];
  const n1 = routesOf('node-1', { rack: 'r1' }, services, slices, pools, advs);
  t.deepEqual(n1, [
    { prefix: '198.51.100.0/28', communities: [], largeCommunities: [], services: ['default/web'] },
    { prefix: '198.51.100.1/32', localPref: 300, communities: [65000 * 65536 + 100, 65000 * 65536 + 200], largeCommunities: [[64512, 7, 9]], services: ['default/web'] },
  ]);
  const n2 = routesOf('node-2', {}, services, slices, pools, advs);
  t.deepEqual(n2.map((r) => r.prefix), ['198.51.100.1/32', '198.51.100.2/32'], 'node-2: no aggregate (selector), the Local /32 (ready endpoint)');
  t.deepEqual(routesOf('node-3', {}, services, slices, pools, advs).map((r) => r.prefix), ['198.51.100.1/32'], 'node-3: its endpoint is not ready');
  // The endpoint goes: node-2 stops announcing the Local address.
  t.deepEqual(routesOf('node-2', {}, services, [slice('solo', [])], pools, advs).map((r) => r.prefix), ['198.51.100.1/32']);
  // The Service is being deleted, or its address moves: the old route goes.
  const deleting = { ...services[0], metadata: { ...services[0].metadata, deletionTimestamp: 'now' } };
  t.deepEqual(routesOf('node-3', {}, [deleting], [], pools, advs), []);
  t.deepEqual(routesOf('node-3', {}, [svc('web', '198.51.100.9')], [], pools, advs).map((r) => r.prefix), ['198.51.100.9/32']);
  // No BGPAdvertisement: nothing.
  t.deepEqual(routesOf('node-1', {}, services, slices, pools, []), []);
});

test('node peers accept a LoadBalancer route from its owner only; external peers get only a node\'s own', (t) => {
  const node = (name: string, ip: string, cidr: string): Node => ({ apiVersion: 'v1', kind: 'Node', metadata: { ...meta(name), namespace: undefined, annotations: { [CALICO_IPV4_ADDRESS]: `${ip}/24` } }, spec: { podCIDR: cidr } });
  const nodes = [node('node-1', '127.0.25.11', '10.244.1.0/24'), node('node-2', '127.0.25.12', '10.244.2.0/24')];
  const lb = new Map([['node-2', ['198.51.100.2/32', '198.51.100.0/28']]]);
  const ctx: FilterContext = { pools: ['10.244.0.0/16'], nodes: nodeOwners({ nodes, config: undefined, peers: [], lb }) };
  t.deepEqual([...lbPrefixes(ctx)].sort(), ['198.51.100.0/28', '198.51.100.2/32']);
  t.deepEqual(importVerdict(ctx, { kind: 'node' }, '198.51.100.2/32', '127.0.25.12'), { accept: true, rule: "node-2's LoadBalancer route 198.51.100.2/32" });
  t.deepEqual(importVerdict(ctx, { kind: 'node' }, '198.51.100.2/32', '127.0.25.11'), { accept: false, rule: 'outside the IP pools (10.244.0.0/16)' }, 'not node-1\'s');
  t.false(importVerdict(ctx, { kind: 'node' }, '198.51.100.3/32', '127.0.25.12').accept, 'an address node-2 does not announce');
  t.true(importVerdict(ctx, { kind: 'node' }, '10.244.2.0/24', '127.0.25.12').accept, 'blocks as before');
  const ext = { kind: 'external' as const, name: 'bird', filters: [] };
  t.is(exportVerdict(ext, '198.51.100.2/32', { local: true }), undefined, 'its own: exported');
  t.deepEqual(exportVerdict(ext, '198.51.100.2/32', { local: false }), { accept: false, rule: 'LoadBalancer route of another node: each eligible node announces its own' });
  t.is(exportVerdict({ kind: 'node' }, '198.51.100.2/32', { local: false }), undefined);
});
