/**
 * The real client address behind externalTrafficPolicy (local lab on
 * 127.0.26.0/24, 2 nodes; host clients bound to 127.0.27.x, outside the
 * lab's underlay): with Local the pod's HTTP app sees the host client's own
 * 127.0.27.x source, through the elected LB IP and through the NodePort, and
 * its reply gets back (the pod routes it to the node, whose conntrack hands it
 * to the real socket); with Cluster the pod sees the node (masqueraded), as
 * kube-proxy does. 127.0.0.1, every pod's own loopback address, keeps its
 * TEST-NET-3 stand-in.
 */
import test from 'ava';
import { labApi } from '../lab/lab.ts';
import { nodeCommand } from '../cli/commands.ts';
import type { Lease } from '../control-plane/core-resources.ts';
import type { Service } from '../control-plane/service-resources.ts';
import type { Pod } from '../control-plane/types.ts';
import { httpPod, lbService, realGet as realGetFrom } from './helpers/lb.ts';
import { eventually, startLab } from './helpers/lab.ts';

const pod = httpPod;
const lb = lbService;
const realGet = (url: string, localAddress?: string, timeout = 3000) => realGetFrom(url, localAddress, timeout);

test.serial('Local carries the host client\'s real 127.x address into the pod; Cluster masquerades it to the node', async (t) => {
  const lab = await startLab('127.0.26.0/24', { nodes: 2, podsPerNode: 0 });
  t.teardown(() => lab.close());
  const api = labApi(lab.rec);
  for (const p of [pod('web-1', 'node-1', 'web'), pod('solo', 'node-2', 'solo')]) await api.create('pods', p, 'default');
  await api.create('services', lb('web', 'web'), 'default');
  await api.create('services', lb('solo', 'solo', { externalTrafficPolicy: 'Local' }), 'default');
  await eventually(async () => (await api.list<Pod>('pods')).items.every((p) => p.status?.phase === 'Running'), 30_000);
  const svc = async (n: string) => api.get<Service>('services', n, 'default');
  t.is(await eventually(async () => (await svc('web'))?.status?.loadBalancer?.ingress?.[0]?.ip, 10_000), '127.0.26.200');
  t.is(await eventually(async () => (await svc('solo'))?.status?.loadBalancer?.ingress?.[0]?.ip, 10_000), '127.0.26.201');
  await eventually(() => realGet('http://127.0.26.201/').catch(() => ''), 15_000);
  await eventually(() => realGet('http://127.0.26.200/').catch(() => ''), 15_000);

  // Local, through the LB IP: each client is itself, and gets its answer back.
  t.is(await realGet('http://127.0.26.201/ip', '127.0.27.9'), '127.0.27.9');
  t.is(await realGet('http://127.0.26.201/ip', '127.0.27.10'), '127.0.27.10');
  t.is(await realGet('http://127.0.26.201/', '127.0.27.9'), 'solo on node-2', 'a whole response, not just the first segment');
  // 127.0.0.1 is the pod's own loopback address: it stays a stand-in.
  t.is(await realGet('http://127.0.26.201/ip', '127.0.0.1'), '203.0.113.1');
  // Local, through node-2's NodePort: the same.
  const nodePort = (await svc('solo'))!.spec!.ports![0].nodePort!;
  t.is(await realGet(`http://127.0.26.12:${nodePort}/ip`, '127.0.27.11'), '127.0.27.11');
  const ct = await nodeCommand(lab.stateDir, 'node-2', ['conntrack', '-L']);
  t.regex(ct, /src=127\.0\.27\.9 dst=127\.0\.26\.201 .*dport=80 .*src=10\.244\.\d+\.\d+ dst=127\.0\.27\.9/, 'un-DNAT back to the real client');
  t.regex(await nodeCommand(lab.stateDir, 'node-2', ['lb']), /127\.0\.27\.9 \(carried in\)/);

  // Cluster: SNAT to the node (the masquerade address towards the pod), never the client.
  const owner = (await api.get<Lease>('leases', 'l2-127-0-26-200', 'metallb-system'))?.spec?.holderIdentity;
  const seen = await realGet('http://127.0.26.200/ip', '127.0.27.9');
  t.not(seen, '127.0.27.9');
  t.regex(seen, /^10\.244\.\d+\.[01]$/, 'cni0 (.1) or flannel.1 (.0) of the owner: the node');
  const addrs = await nodeCommand(lab.stateDir, owner!, ['ip', '-4', 'addr']);
  t.true(addrs.includes(`inet ${seen}/`), `${seen} is ${owner}'s own address`);
  t.log(`Local: the pod saw 127.0.27.9; Cluster (owner ${owner}): the pod saw ${seen}`);
});
