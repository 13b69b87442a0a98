/**
 * The backend contract, checked for every registered backend: what a node
 * publishes is read back as a lease of that backend, its plan programs and
 * forgets a peer symmetrically, and its kernel support turns the plan into
 * iproute2 commands. Also the BGP peer computation both speakers share.
 */
import test from 'ava';
import type { Node } from '../control-plane/types.ts';
import { BACKEND_NAMES, DEFAULT_BACKEND, backendHelp, backendNamed, bgpBackendNames, findBackend, leaseFromNode } from '../backends/registry.ts';
import { desiredPeers } from '../backends/bgp/peers.ts';
import type { BgpPeer } from '../control-plane/calico.ts';

const node = (name: string, annotations: Record<string, string | null>, labels: Record<string, string> = {}, podCIDR = '10.244.2.0/24'): Node =>
  ({
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, uid: name, resourceVersion: '1', creationTimestamp: '', labels, annotations: Object.fromEntries(Object.entries(annotations).filter(([, v]) => v !== null)) },
    spec: { podCIDR },
  }) as Node;

test('the registry lists every backend once, with help, and explains an unknown name', (t) => {
  t.deepEqual([...BACKEND_NAMES], ['vxlan', 'host-gw', 'bgp', 'ipip', 'udp']);
  t.is(DEFAULT_BACKEND, 'vxlan');
  for (const n of BACKEND_NAMES) t.true(backendHelp().includes(`${n}: `));
  t.deepEqual(bgpBackendNames(), ['bgp', 'ipip']);
  t.is(findBackend('weave'), undefined);
  t.throws(() => backendNamed('weave'), { message: /unknown backend 'weave': podlab has vxlan, host-gw, bgp, ipip, udp/ });
  t.is(backendNamed('vxlan').mtuOverhead, 50);
  t.is(backendNamed('host-gw').mtuOverhead, 0);
  t.is(backendNamed('ipip').mtuOverhead, 20);
  t.is(backendNamed('udp').mtuOverhead, 28);
});

test('ipip: learned routes go through tunl0 onlink unless the pool says otherwise', (t) => {
  const b = backendNamed('ipip');
  const route = (r: Parameters<NonNullable<typeof b.learnedRoute>>[0]) => b.learnedRoute!(r);
  const self = { ip: '10.250.0.11', underlayPrefixLen: 24 };
  const pool = (ipipMode: 'Always' | 'CrossSubnet' | 'Never') => [{ apiVersion: 'projectcalico.org/v3', kind: 'IPPool', metadata: { name: 'p', uid: 'p', resourceVersion: '1', creationTimestamp: '' }, spec: { cidr: '10.244.0.0/16', ipipMode } }];
  t.deepEqual(route({ prefix: '10.244.2.0/24', nextHop: '10.250.0.12', self, pools: [] }), { dev: 'tunl0', onlink: true }, 'no pool: Always');
  t.deepEqual(route({ prefix: '10.244.2.0/24', nextHop: '10.250.0.12', self, pools: pool('CrossSubnet') }), { dev: 'eth0', onlink: false });
  t.deepEqual(route({ prefix: '10.244.2.0/24', nextHop: '10.250.1.12', self, pools: pool('CrossSubnet') }), { dev: 'tunl0', onlink: true });
  t.deepEqual(route({ prefix: '10.244.2.0/24', nextHop: '10.250.1.12', self, pools: pool('Never') }), { dev: 'eth0', onlink: false });
  t.false('learnedRoute' in backendNamed('bgp'), 'plain BGP installs dev eth0');
});

for (const name of BACKEND_NAMES) {
  test(`${name}: what a node publishes is read back as its lease; the plan programs and forgets the peer`, (t) => {
    const b = backendNamed(name);
    const published = { 'flannel.alpha.coreos.com/public-ip': '10.250.0.12', 'podlab.io/eth0-mac': '02:00:00:00:00:02', ...b.annotations({ ip: '10.250.0.12', underlayPrefixLen: 24, vni: 1, vtepMac: 'aa:bb:cc:dd:ee:02' }) };
    const lease = leaseFromNode(node('node-2', published));
    if (typeof lease === 'string') return t.fail(lease);
    t.is(lease.backend, name);
    t.is(lease.publicIp, '10.250.0.12');
    const self = { node: 'node-1', vni: 1 };
    t.true(b.accepts(lease, self));
    for (const other of BACKEND_NAMES.filter((o) => o !== name)) t.false(backendNamed(other).accepts(lease, self), `${other} does not program a ${name} lease`);
    const adds = b.plan([lease], new Map(), self);
    t.true(adds.every((a) => a.op.startsWith('add-') && a.node === 'node-2'));
    t.deepEqual(b.plan([lease], new Map([['node-2', lease]]), self), [], 'an unchanged peer needs nothing');
    const dels = b.plan([], new Map([['node-2', lease]]), self);
    t.is(dels.length, adds.length, 'forgetting undoes every add');
    if (!b.bgp) t.is(dels[0].op, 'del-route', 'the route goes first');
    t.is(adds.some((a) => a.op === 'add-route'), !b.bgp, 'a BGP backend learns its routes from the speaker, not the plan');
    if (b.kernel) {
      const cmds = adds.map((a) => b.kernel!.command('podlab-knode-1', a)).filter((c) => c !== undefined);
      t.true(cmds.every((c) => c[1] === '-n' && c[2] === 'podlab-knode-1'), 'every command stays in the node namespace');
      t.false(cmds.some((c) => c.includes('neigh') && c.includes('eth0')), 'the kernel ARPs for its eth0 next hops');
    }
  });
}

test('a node of no known backend says why', (t) => {
  t.regex(leaseFromNode(node('n', { 'flannel.alpha.coreos.com/public-ip': '10.0.0.1', 'flannel.alpha.coreos.com/backend-type': 'ipsec' })) as string, /unknown backend type ipsec/);
  t.regex(leaseFromNode(node('n', {})) as string, /no flannel annotations yet/);
  t.regex(leaseFromNode(node('n', { 'projectcalico.org/IPv4Address': 'nope/24' })) as string, /bad projectcalico.org\/IPv4Address/);
});

test('BGP peers: full mesh, route reflectors and BGPPeers, as both speakers compute them', (t) => {
  const ca = (ip: string) => ({ 'projectcalico.org/IPv4Address': `${ip}/24` });
  const nodes = [node('node-1', ca('10.0.0.11'), { 'route-reflector': 'true' }), node('node-2', ca('10.0.0.12')), node('node-3', ca('10.0.0.13')), node('node-4', {})];
  const peers: BgpPeer[] = [
    { apiVersion: 'crd.projectcalico.org/v1', kind: 'BGPPeer', metadata: { name: 'tor', uid: 'p', resourceVersion: '1', creationTimestamp: '' }, spec: { peerIP: '10.0.0.99:1179', asNumber: 65001 } },
    { apiVersion: 'crd.projectcalico.org/v1', kind: 'BGPPeer', metadata: { name: 'only-3', uid: 'q', resourceVersion: '1', creationTimestamp: '' }, spec: { peerIP: '10.0.0.98', asNumber: 65002, node: 'node-3' } },
  ];
  const mesh = desiredPeers({ self: 'node-2', port: 179, topology: 'full-mesh', reflector: false }, { nodes, config: undefined, peers });
  t.deepEqual([...mesh.keys()].sort(), ['10.0.0.11', '10.0.0.13', '10.0.0.99']);
  t.like(mesh.get('10.0.0.99'), { port: 1179, asn: 65001, name: 'BGPPeer tor' });
  t.is(mesh.get('10.0.0.11')!.asn, 64512);
  const client = desiredPeers({ self: 'node-2', port: 179, topology: 'route-reflector', reflector: false }, { nodes, config: undefined, peers: [] });
  t.deepEqual([...client.keys()], ['10.0.0.11'], 'a client peers with the reflectors only');
  const rr = desiredPeers({ self: 'node-1', port: 179, topology: 'route-reflector', reflector: true }, { nodes, config: undefined, peers: [] });
  t.deepEqual([...rr.values()].map((p) => [p.address, p.rrClient]), [['10.0.0.12', true], ['10.0.0.13', true]]);
  const off = desiredPeers({ self: 'node-3', port: 179, topology: 'full-mesh', reflector: false }, { nodes, config: { spec: { nodeToNodeMeshEnabled: false } } as never, peers });
  t.deepEqual([...off.keys()].sort(), ['10.0.0.98', '10.0.0.99'], 'mesh off: the BGPPeers only, node-scoped ones on their node');
});
