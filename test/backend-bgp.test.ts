/**
 * The Calico-style backend in real labs: every node runs a BGP speaker over
 * real TCP; routes are learned as `proto bird` and pods talk without
 * encapsulation. A 3-node full mesh (127.0.77.0/24) and a 6-node
 * route-reflector topology with 2 reflectors (127.0.78.0/24); a killed node's
 * routes are withdrawn when the hold timer expires.
 */
import test from 'ava';
import type { Pod } from '../control-plane/types.ts';
import { nodeCommand } from '../cli/commands.ts';
import { killProcess, labApi } from '../lab/lab.ts';
import { readLab } from '../lab/state.ts';
import { captureLo, tsharkFields } from './helpers/capture.ts';
import { eventually, hasTool, requireOrSkip, startLab } from './helpers/lab.ts';

const routesOf = (stateDir: string, node: string) => nodeCommand(stateDir, node, ['ip', 'route']);

test.serial('full mesh: BGP routes proto bird, all pods ping, no encapsulation, a dead node withdrawn after the hold time', async (t) => {
  const lab = await startLab('127.0.77.0/24', { backend: 'bgp', bgpHoldTime: 3 });
  t.teardown(() => lab.close());
  const routes = await eventually(async () => {
    const r = await routesOf(lab.stateDir, 'node-1');
    return /10\.244\.2\.0\/24 via 127\.0\.77\.12 dev eth0 proto bird/.test(r) && /10\.244\.3\.0\/24 via 127\.0\.77\.13 dev eth0 proto bird/.test(r) ? r : undefined;
  }, 20_000);
  t.notRegex(routes, /flannel\.1/);
  // `up` returned once every node had every route (BGP converged), so all pairs can talk at once.
  for (const n of ['node-2', 'node-3']) t.regex(await routesOf(lab.stateDir, n), /proto bird[\s\S]*proto bird/);
  const summary = await nodeCommand(lab.stateDir, 'node-1', ['bgp', 'summary']);
  t.regex(summary, /local AS number 64512/);
  t.is((summary.match(/Established/g) ?? []).length, 2);

  const pods = (await labApi(lab.rec).list<Pod>('pods', { namespace: 'default' })).items;
  const pairs = pods.flatMap((a) => pods.filter((b) => b !== a).map((b) => [a, b] as const));
  const results = await Promise.all(pairs.map(([a, b]) => lab.exec(a.metadata.name, ['ping', '-c', '2', '-i', '0.05', b.status!.podIP!])));
  results.forEach((r, i) => t.regex(r.out, /2 received, 0% packet loss/, `${pairs[i][0].metadata.name} -> ${pairs[i][1].metadata.name}`));

  if (hasTool('tshark') && process.getuid?.() === 0) {
    const dst = pods.find((p) => p.metadata.name === 'pod-2a')!.status!.podIP!;
    const cap = await captureLo('udp port 8473 and host 127.0.77.11', 2, () => lab.exec('pod-1a', ['ping', '-c', '1', dst]));
    t.teardown(cap.cleanup);
    const rows = await tsharkFields(cap.file, ['frame.protocols', 'ip.src'], ['udp.port==8473,ip']);
    t.true(rows.every(([p, src]) => /:ip:udp:ip:icmp/.test(p) && !/vxlan/.test(p) && /,10\.244\./.test(src)), JSON.stringify(rows));
  } else requireOrSkip(t, false, 'tshark and root are needed to capture lo');

  // A frozen node (SIGSTOP: its TCP sessions stay open, nothing is said) is withdrawn when the hold timer
  // expires. A killed process is withdrawn at once instead: its kernel closes the session.
  const pid = readLab(lab.stateDir)!.procs.find((p) => p.name === 'node-3')!.pid;
  const t0 = Date.now();
  process.kill(pid, 'SIGSTOP');
  t.teardown(() => {
    try {
      process.kill(pid, 'SIGCONT');
    } catch {
      /* gone */
    }
  });
  await eventually(async () => !/10\.244\.3\.0\/24/.test(await routesOf(lab.stateDir, 'node-1')), 20_000, 100);
  const took = Date.now() - t0;
  t.true(took >= 1500, `withdrawn when the hold timer expired, not at once (${took} ms)`);
  t.log(`frozen node-3's route withdrawn ${took} ms after SIGSTOP (hold time 3 s)`);
  // node-2's hold timer runs on its own clock: it expires within the same few seconds.
  await eventually(async () => !/10\.244\.3\.0\/24/.test(await routesOf(lab.stateDir, 'node-2')), 10_000, 100);
  process.kill(pid, 'SIGCONT');
  await killProcess(lab.stateDir, 'node-2', { kill: true });
  await eventually(async () => !/10\.244\.2\.0\/24/.test(await routesOf(lab.stateDir, 'node-1')), 10_000, 100);
  t.pass('a killed node is withdrawn too');
});

test.serial('route reflectors: 6 nodes, 2 reflectors, everyone learns every podCIDR', async (t) => {
  const lab = await startLab('127.0.78.0/24', { nodes: 6, podsPerNode: 1, backend: 'bgp', bgpTopology: 'route-reflector', bgpReflectors: 2 });
  t.teardown(() => lab.close());
  for (let n = 1; n <= 6; n++) {
    await eventually(async () => {
      const r = await routesOf(lab.stateDir, `node-${n}`);
      return [1, 2, 3, 4, 5, 6].filter((m) => m !== n).every((m) => new RegExp(`10\\.244\\.${m}\\.0/24 via 127\\.0\\.78\\.${10 + m} dev eth0 proto bird`).test(r));
    }, 30_000);
  }
  const rr = await nodeCommand(lab.stateDir, 'node-1', ['bgp', 'summary']);
  t.regex(rr, /route reflector \(cluster 244\.0\.0\.1\)/);
  t.is((rr.match(/rr-client/g) ?? []).length, 4, rr);
  const client = await nodeCommand(lab.stateDir, 'node-5', ['bgp', 'summary']);
  t.is((client.match(/Established/g) ?? []).length, 2, 'a client peers with the two reflectors only');
  const routes = await nodeCommand(lab.stateDir, 'node-5', ['bgp', 'routes']);
  t.regex(routes, /originator 127\.0\.78\.16 cluster-list 244\.0\.0\.1|cluster-list 244\.0\.0\.1/);
  const pods = (await labApi(lab.rec).list<Pod>('pods', { namespace: 'default' })).items;
  const r = await lab.exec('pod-5a', ['ping', '-c', '2', '-i', '0.05', pods.find((p) => p.metadata.name === 'pod-6a')!.status!.podIP!]);
  t.regex(r.out, /0% packet loss/);
});
