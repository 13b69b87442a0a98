/**
 * flannel's udp backend in a netns lab (root): each node agent runs in its own
 * network namespace (podlab-tfu-*, underlay 10.250.150.0/24, which exists only
 * inside them), its flanneld thread beside it, and the 8285 datagrams cross a
 * real bridge between the namespaces through eth0's socket path. Pods ping
 * both ways, the counters show the crossings, a trace follows the packet
 * through flanneld on both nodes, and the namespaces are gone afterwards.
 */
import test from 'ava';
import type { Pod } from '../control-plane/types.ts';
import { nodeCommand } from '../cli/commands.ts';
import { trace } from '../cli/trace.ts';
import { labApi } from '../lab/lab.ts';
import { hasIproute2, isRoot, listNetnsSync } from '../hostnet/netns.ts';
import { requireOrSkip, startLab, type TestLab } from './helpers/lab.ts';

const PREFIX = 'podlab-tfu';
const canRun = isRoot() && hasIproute2();
let lab: TestLab | undefined;

test.before(async () => {
  if (canRun) lab = await startLab('127.0.0.0/24', { mode: 'netns', nodes: 2, podsPerNode: 1, backend: 'udp', netnsPrefix: PREFIX, underlayNet: '10.250.150.0/24' });
});
test.after.always(async () => {
  await lab?.close();
});

test.serial('pods ping both ways through flanneld\'s threads across namespaces; a trace follows them; the namespaces go with the lab', async (t) => {
  if (!requireOrSkip(t, canRun, !isRoot() ? 'netns labs need root' : 'iproute2 (ip) is not installed')) return;
  const pods = (await labApi(lab!.rec).list<Pod>('pods', { namespace: 'default' })).items;
  const ip = (name: string) => pods.find((p) => p.metadata.name === name)!.status!.podIP!;
  t.regex((await lab!.exec('pod-1a', ['ping', '-c', '3', '-i', '0.05', ip('pod-2a')])).out, /3 received, 0% packet loss/);
  t.regex((await lab!.exec('pod-2a', ['ping', '-c', '3', '-i', '0.05', ip('pod-1a')])).out, /3 received, 0% packet loss/);
  for (const node of ['node-1', 'node-2']) {
    const stats = await nodeCommand(lab!.stateDir, node, ['stats']);
    const m = /flanneld copies: (\d+) packets read from flannel0 .*?, (\d+) sent .*?, (\d+) received .*?, (\d+) written to flannel0/.exec(stats);
    t.truthy(m, stats);
    // Three requests and three replies each way, the DNS addon's traffic aside: at least six per counter.
    t.true(m!.slice(1).every((n) => Number(n) >= 6), stats);
    t.regex(stats, /flanneld thread: id [1-9]\d*, event loop busy \d+ ms, restarted 0 times/);
  }
  const r = await trace(lab!.stateDir, 'pod-1a', ip('pod-2a'), { proto: 'icmp' });
  t.is(r.result.kind, 'reply');
  const through = r.hops.filter((h) => h.point === 'flanneld').map((h) => `${h.leg} ${h.node}`);
  t.deepEqual([...new Set(through)], ['request node-1', 'request node-2', 'reply node-2', 'reply node-1']);
  t.true(r.hops.some((h) => h.node === 'node-1' && /sendto 10\.250\.150\.\d+:8285/.test(h.summary)), r.hops.map((h) => h.summary).join('\n'));

  await lab!.close();
  lab = undefined;
  t.deepEqual(listNetnsSync().filter((n) => n.startsWith(`${PREFIX}-`)), []);
});
