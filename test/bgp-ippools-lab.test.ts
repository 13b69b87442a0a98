/**
 * Route filters judged by the cluster's IP pools, on a real 2-node BGP lab
 * (127.0.41.0/24):
 * - an external router (a podlab BgpSpeaker on 127.0.41.9, a BGPPeer whose
 *   BGPFilter accepts what no rule matches) announces 10.245.1.0/24: installed
 *   while 10.245.0.0/16 is nobody's, withdrawn and shown as filtered once a
 *   second IPPool takes it, installed again when the pool is deleted;
 * - a node (a Node object for 127.0.41.13 whose BGP a test speaker plays)
 *   announces its block, a block of the second pool it does not own and an
 *   address outside every pool: the block is installed, the others filtered
 *   with their rule.
 */
import test from 'ava';
import { BgpSpeaker } from '../bgp/index.ts';
import { nodeCommand } from '../cli/commands.ts';
import { CALICO_IPV4_ADDRESS } from '../control-plane/annotations.ts';
import type { Node } from '../control-plane/types.ts';
import { defaultBgpPort, labApi } from '../lab/lab.ts';
import { eventually, startLab } from './helpers/lab.ts';

const EDGE = '127.0.41.9';
const EDGE_PORT = 11801;
const FAKE = '127.0.41.13';
const NODES = ['127.0.41.11', '127.0.41.12'];
const esc = (s: string) => s.replace(/[./]/g, (c) => `\\${c}`);

test.serial('IPPools shape what nodes import: from a router nothing inside any pool, from a node only its own blocks', async (t) => {
  const lab = await startLab('127.0.41.0/24', { nodes: 2, podsPerNode: 0, backend: 'bgp', bgpHoldTime: 3 });
  t.teardown(() => lab.close());
  const api = labApi(lab.rec);
  t.teardown(() => api.close());
  const port = defaultBgpPort();
  const routes = (node: string) => nodeCommand(lab.stateDir, node, ['ip', 'route']);
  const bgpRoutes = (node: string) => nodeCommand(lab.stateDir, node, ['bgp', 'routes']);
  const filteredPart = (text: string) => text.slice(text.indexOf('Filtered'));

  // The external router.
  const edge = new BgpSpeaker({ asn: 64512, routerId: EDGE, listen: { host: EDGE, port: EDGE_PORT }, holdTime: 9 });
  for (const ip of NODES) edge.addPeer({ address: ip, port, asn: 64512, passive: true });
  for (const p of ['10.245.1.0/24', '198.51.100.0/24']) edge.announce(p, { nextHop: EDGE });
  await edge.start();
  t.teardown(() => edge.stop());
  await api.create('bgpfilters', { apiVersion: 'projectcalico.org/v3', kind: 'BGPFilter', metadata: { name: 'edge-in' }, spec: { importV4: [] } });
  await api.create('bgppeers', { apiVersion: 'projectcalico.org/v3', kind: 'BGPPeer', metadata: { name: 'edge' }, spec: { peerIP: `${EDGE}:${EDGE_PORT}`, asNumber: 64512, filters: ['edge-in'] } });
  for (const node of ['node-1', 'node-2']) {
    await eventually(async () => /10\.245\.1\.0\/24 via 127\.0\.41\.9 dev eth0 proto bird/.test(await routes(node)), 30_000, 100);
  }

  // A second IPPool: the router's 10.245.1.0/24 is now the cluster's, refused and withdrawn without a session reset.
  await api.create('ippools', { apiVersion: 'projectcalico.org/v3', kind: 'IPPool', metadata: { name: 'second' }, spec: { cidr: '10.245.0.0/16' } });
  for (const node of ['node-1', 'node-2']) {
    const table = await eventually(async () => {
      const r = await routes(node);
      return /10\.245\.1\.0\/24/.test(r) ? undefined : r;
    }, 10_000, 100);
    t.regex(table, /198\.51\.100\.0\/24 via 127\.0\.41\.9 dev eth0 proto bird/, `${node}: the router's other prefix stays`);
    t.regex(filteredPart(await bgpRoutes(node)), /10\.245\.1\.0\/24 +via 127\.0\.41\.9 from 127\.0\.41\.9 .*\(filtered: inside IP pool 10\.245\.0\.0\/16: only nodes announce the cluster's addresses\)/);
  }
  t.regex(await nodeCommand(lab.stateDir, 'node-1', ['bgp', 'summary']), /127\.0\.41\.9 +64512 +iBGP +up .*Established/);

  // A node of the cluster, played by a speaker: its block passes; the second pool's block it does not own and an outside address do not.
  const fake = await api.create<Node>('nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-x', annotations: { [CALICO_IPV4_ADDRESS]: `${FAKE}/24` } }, spec: {}, status: { conditions: [] } });
  const block = fake.spec!.podCIDR!;
  const speaker = new BgpSpeaker({ asn: 64512, routerId: FAKE, listen: { host: FAKE, port }, holdTime: 9, connectRetryMs: 200, connectRetryMaxMs: 1000 });
  for (const ip of NODES) speaker.addPeer({ address: ip, port, asn: 64512, passive: false });
  for (const p of [block, '10.245.3.0/24', '127.0.41.220/32']) speaker.announce(p, { nextHop: FAKE });
  await speaker.start();
  t.teardown(() => speaker.stop());
  for (const node of ['node-1', 'node-2']) {
    const table = await eventually(async () => {
      const r = await routes(node);
      return new RegExp(`${esc(block)} via 127\\.0\\.41\\.13 dev eth0 proto bird`).test(r) ? r : undefined;
    }, 30_000, 100);
    t.notRegex(table, /10\.245\.3\.0\/24/, `${node}: not node-x's block`);
    t.notRegex(table, /127\.0\.41\.220/, `${node}: outside every pool`);
    const shown = await eventually(async () => {
      const r = filteredPart(await bgpRoutes(node));
      return /10\.245\.3\.0\/24/.test(r) && /127\.0\.41\.220\/32/.test(r) ? r : undefined;
    }, 10_000, 100);
    t.regex(shown, new RegExp(`10\\.245\\.3\\.0/24 +via 127\\.0\\.41\\.13 from 127\\.0\\.41\\.13 .*\\(filtered: not node-x's block \\(${esc(block)}\\)\\)`));
    t.regex(shown, /127\.0\.41\.220\/32 +via 127\.0\.41\.13 .*\(filtered: outside the IP pools \(10\.244\.0\.0\/16, 10\.245\.0\.0\/16\)\)/);
  }

  // The pool deleted: the router's prefix is outside every pool again and comes back.
  await api.delete('ippools', 'second');
  await eventually(async () => /10\.245\.1\.0\/24 via 127\.0\.41\.9 dev eth0 proto bird/.test(await routes('node-1')), 10_000, 100);
  t.log(`node-x's block ${block} installed; 10.245.1.0/24 from the router filtered while the second IPPool existed`);
});
