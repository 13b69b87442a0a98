/**
 * The Calico-style backend in netns mode (root): three emulated nodes in their
 * own namespaces peer over real BGP on port 179 on the lab bridge, install
 * `proto bird` routes, and every pod pair pings across the bare-IPv4 wire.
 * Nothing is left behind.
 */
import { labApi } from '../lab/lab.ts';
import test from 'ava';
import type { Pod } from '../control-plane/types.ts';
import { nodeCommand } from '../cli/commands.ts';
import { hasIproute2, isRoot, listNetnsSync } from '../hostnet/netns.ts';
import { requireOrSkip, startLab } from './helpers/lab.ts';

const PREFIX = 'podlab-t7b';
const NET = '10.250.73';

test('netns + bgp: routes proto bird on port 179, all pods ping, nothing left', async (t) => {
  if (!requireOrSkip(t, isRoot() && hasIproute2(), isRoot() ? 'iproute2 (ip) is not installed' : 'netns labs need root')) return;
  const lab = await startLab('127.0.0.0/24', { mode: 'netns', nodes: 3, podsPerNode: 1, backend: 'bgp', netnsPrefix: PREFIX, underlayNet: `${NET}.0/24` });
  try {
    const route = await nodeCommand(lab.stateDir, 'node-1', ['ip', 'route']);
    t.regex(route, new RegExp(`^10\\.244\\.2\\.0/24 via ${NET.replace(/\./g, '\\.')}\\.12 dev eth0 proto bird$`, 'm'));
    t.regex(await nodeCommand(lab.stateDir, 'node-1', ['bgp', 'summary']), /64512 +iBGP +up/);
    const pods = (await labApi(lab.rec).list<Pod>('pods', { namespace: 'default' })).items;
    const pairs = pods.flatMap((a) => pods.filter((b) => b !== a).map((b) => [a, b] as const));
    const results = await Promise.all(pairs.map(([a, b]) => lab.exec(a.metadata.name, ['ping', '-c', '2', '-i', '0.05', b.status!.podIP!])));
    results.forEach((r, i) => t.regex(r.out, /2 received, 0% packet loss/, `${pairs[i][0].metadata.name} -> ${pairs[i][1].metadata.name}`));
  } finally {
    await lab.close();
  }
  t.deepEqual(listNetnsSync().filter((n) => n.startsWith(PREFIX)), []);
});
