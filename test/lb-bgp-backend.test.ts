/**
 * BGP mode through the Calico-style backend's speakers, in process (real TCP
 * on 127.0.29.0/24, no lab, no BIRD): node-1 announces a LoadBalancer /32
 * with the BGPAdvertisement's localPref and communities; an external BGPPeer
 * (a podlab speaker, iBGP so LOCAL_PREF travels) learns it from node-1 only;
 * node-2 accepts it over the mesh as node-1's own, never installs it and
 * never passes it on; the withdrawal reaches both.
 */
import test from 'ava';
import { CalicoBgp } from '../backends/bgp/bgp-backend.ts';
import type { PlanAction } from '../backends/backend.ts';
import type { BgpInputs } from '../backends/bgp/peers.ts';
import { BgpSpeaker } from '../bgp/index.ts';
import { monotonicClock } from '../common/clock.ts';
import { CALICO_IPV4_ADDRESS } from '../control-plane/annotations.ts';
import type { BgpPeer } from '../control-plane/calico.ts';
import type { Node } from '../control-plane/types.ts';
import { eventually } from './helpers/lab.ts';

const PEER = '127.0.29.5';
const N1 = '127.0.29.11';
const N2 = '127.0.29.12';
const node = (name: string, ip: string, cidr: string): Node => ({ apiVersion: 'v1', kind: 'Node', metadata: { name, uid: name, resourceVersion: '1', creationTimestamp: '', annotations: { [CALICO_IPV4_ADDRESS]: `${ip}/24` } }, spec: { podCIDR: cidr } });
const bgpPeer: BgpPeer = { apiVersion: 'projectcalico.org/v3', kind: 'BGPPeer', metadata: { name: 'tor', uid: 'tor', resourceVersion: '1', creationTimestamp: '' }, spec: { peerIP: `${PEER}:11796`, asNumber: 64512 } };

test('an LB route goes to the BGPPeer from its node only, with its attributes; other nodes accept it, never install it; withdrawn everywhere', async (t) => {
  const external = new BgpSpeaker({ asn: 64512, routerId: PEER, listen: { host: PEER, port: 11796 }, holdTime: 9 });
  for (const ip of [N1, N2]) external.addPeer({ address: ip, port: 11797, asn: 64512, passive: true });
  await external.start();
  t.teardown(() => external.stop());
  const applied: Record<string, PlanAction[]> = { n1: [], n2: [] };
  const mk = (name: string, ip: string, cidr: string, key: 'n1' | 'n2') =>
    new CalicoBgp({ node: name, ip, podCIDR: cidr, port: 11797, holdTime: 9, topology: 'full-mesh', pools: ['10.244.0.0/16'], clock: monotonicClock, seed: 1, apply: (a) => applied[key].push(a) });
  const n1 = mk('node-1', N1, '10.244.1.0/24', 'n1');
  const n2 = mk('node-2', N2, '10.244.2.0/24', 'n2');
  t.teardown(() => Promise.all([n1.stop(), n2.stop()]).then(() => undefined));
  const input: BgpInputs = { nodes: [node('node-1', N1, '10.244.1.0/24'), node('node-2', N2, '10.244.2.0/24')], config: undefined, peers: [bgpPeer], lb: new Map([['node-1', ['198.51.100.10/32']]]) };
  await n1.reconcile(input);
  await n2.reconcile(input);
  n1.advertise([{ prefix: '198.51.100.10/32', localPref: 300, communities: [65000 * 65536 + 100], largeCommunities: [[64512, 7, 9]], services: ['default/web'] }]);

  const lbPaths = () => external.routes().find((r) => r.prefix === '198.51.100.10/32')?.paths ?? [];
  await eventually(() => (lbPaths().length && external.routes().some((r) => r.prefix === '10.244.2.0/24')) || undefined, 15_000, 100);
  await new Promise((r) => setTimeout(r, 500)); // would node-2 pass it on?
  t.is(lbPaths().length, 1, 'one path: node-2 does not re-announce node-1\'s');
  t.like(lbPaths()[0], { peer: N1, nextHop: N1, localPref: 300, communities: [65000 * 65536 + 100], largeCommunities: [[64512, 7, 9]] });

  const shown = await eventually(() => (/198\.51\.100\.10\/32/.test(n2.routes()) ? n2.routes() : undefined), 10_000, 100);
  t.regex(shown, /198\.51\.100\.10\/32 +\* via 127\.0\.29\.11 from 127\.0\.29\.11 as-path \[\] local-pref 300 communities \(65000, 100\) large-communities \(64512, 7, 9\) .*LoadBalancer \(another node's: not installed\)/);
  t.regex(n1.routes(), /198\.51\.100\.10\/32 +\* local .*LoadBalancer default\/web/);
  t.false(applied.n2.some((a) => a.op === 'add-route' && a.cidr === '198.51.100.10/32'), 'never installed on node-2');
  t.true(applied.n2.some((a) => a.op === 'add-route' && a.cidr === '10.244.1.0/24'), "node-1's block is");

  // Without the owner map, node-2's filter refuses it (outside the IP pools).
  await n2.reconcile({ ...input, lb: new Map() });
  t.regex(await eventually(() => (/Filtered[\s\S]*198\.51\.100\.10\/32/.test(n2.routes()) ? n2.routes() : undefined), 5000, 100), /198\.51\.100\.10\/32 .*\(filtered: outside the IP pools/);
  await n2.reconcile(input);

  n1.advertise([]);
  await eventually(() => (!lbPaths().length && !/198\.51\.100\.10/.test(n2.routes())) || undefined, 10_000, 100);
  t.pass('withdrawn from the BGPPeer and node-2');
});
