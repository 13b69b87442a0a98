import test from 'ava';
import { gatewayOf, type Lease } from '../backends/plan.ts';
import { leaseFromNode, planPeers } from '../backends/registry.ts';
import type { Node } from '../control-plane/types.ts';

const lease = (node: string, n: number, mac = `aa:bb:cc:dd:ee:0${n}`): Lease => ({ node, podCIDR: `10.244.${n}.0/24`, publicIp: `127.0.0.${10 + n}`, vtepMac: mac, vni: 1, backend: 'vxlan' });

test('gatewayOf gives the .0 address of a pod CIDR', (t) => {
  t.is(gatewayOf('10.244.2.0/24'), '10.244.2.0');
});

test('a new peer gets neighbour, then FDB, then route (route last)', (t) => {
  const plan = planPeers([lease('node-1', 1), lease('node-2', 2)], new Map(), { node: 'node-1', vni: 1, backend: 'vxlan' });
  t.deepEqual(plan.map((a) => a.op), ['add-neigh', 'add-fdb', 'add-route']);
  t.deepEqual(plan[0], { op: 'add-neigh', dev: 'flannel.1', ip: '10.244.2.0', mac: 'aa:bb:cc:dd:ee:02', node: 'node-2' });
  t.deepEqual(plan[1], { op: 'add-fdb', mac: 'aa:bb:cc:dd:ee:02', dst: '127.0.0.12', node: 'node-2' });
  t.deepEqual(plan[2], { op: 'add-route', cidr: '10.244.2.0/24', via: '10.244.2.0', dev: 'flannel.1', onlink: true, proto: 'boot', node: 'node-2' });
});

test('an unchanged peer produces no actions; a gone peer loses route first', (t) => {
  const cur = new Map([['node-2', lease('node-2', 2)], ['node-3', lease('node-3', 3)]]);
  t.deepEqual(planPeers([lease('node-1', 1), lease('node-2', 2), lease('node-3', 3)], cur, { node: 'node-1', vni: 1 }), []);
  const plan = planPeers([lease('node-1', 1), lease('node-2', 2)], cur, { node: 'node-1', vni: 1, backend: 'vxlan' });
  t.deepEqual(plan.map((a) => a.op), ['del-route', 'del-fdb', 'del-neigh']);
  t.is(plan[0].node, 'node-3');
});

test('a peer whose VtepMAC changed is reprogrammed; other VNIs are ignored', (t) => {
  const cur = new Map([['node-2', lease('node-2', 2)]]);
  const plan = planPeers([lease('node-2', 2, 'aa:bb:cc:dd:ee:99'), { ...lease('node-3', 3), vni: 7 }], cur, { node: 'node-1', vni: 1, backend: 'vxlan' });
  t.deepEqual(plan.map((a) => a.op), ['del-route', 'del-fdb', 'del-neigh', 'add-neigh', 'add-fdb', 'add-route']);
  t.true(plan.every((a) => a.node === 'node-2'));
});

test('leaseFromNode reads Flannel annotations and explains what is missing', (t) => {
  const node = (ann: Record<string, string>, podCIDR?: string) =>
    ({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-2', uid: 'u', resourceVersion: '1', creationTimestamp: '', annotations: ann }, spec: { podCIDR } }) as Node;
  const ok = node({ 'flannel.alpha.coreos.com/backend-data': '{"VNI":1,"VtepMAC":"AA:BB:CC:DD:EE:02"}', 'flannel.alpha.coreos.com/public-ip': '127.0.0.12' }, '10.244.2.0/24');
  t.like(leaseFromNode(ok), { node: 'node-2', podCIDR: '10.244.2.0/24', publicIp: '127.0.0.12', vtepMac: 'aa:bb:cc:dd:ee:02', vni: 1, backend: 'vxlan' });
  t.regex(leaseFromNode(node({}, '10.244.2.0/24')) as string, /no flannel annotations/);
  t.regex(leaseFromNode(node({})) as string, /no spec.podCIDR/);
  t.regex(leaseFromNode(node({ 'flannel.alpha.coreos.com/backend-data': 'not json', 'flannel.alpha.coreos.com/public-ip': '127.0.0.12' }, '10.244.2.0/24')) as string, /bad/);
});

test('host-gw: the peer is the next hop on eth0, with its MAC programmed; bgp keeps only the neighbours', (t) => {
  const gw = (node: string, n: number): Lease => ({ node, podCIDR: `10.244.${n}.0/24`, publicIp: `127.0.0.${10 + n}`, backend: 'host-gw', eth0Mac: `02:00:00:00:00:0${n}` });
  const plan = planPeers([gw('node-1', 1), gw('node-2', 2), lease('node-3', 3)], new Map(), { node: 'node-1', vni: 1, backend: 'host-gw' });
  t.deepEqual(plan, [
    { op: 'add-neigh', dev: 'eth0', ip: '127.0.0.12', mac: '02:00:00:00:00:02', node: 'node-2' },
    { op: 'add-route', cidr: '10.244.2.0/24', via: '127.0.0.12', dev: 'eth0', onlink: false, proto: 'boot', node: 'node-2' },
  ], 'the vxlan lease of node-3 is not ours to program');
  const bgp = planPeers([{ ...gw('node-2', 2), backend: 'bgp' }], new Map(), { node: 'node-1', vni: 1, backend: 'bgp' });
  t.deepEqual(bgp.map((a) => a.op), ['add-neigh']);
});
