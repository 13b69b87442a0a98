/**
 * MetalLB's BGP mode from the host, through the lab router (`up --lb-router`;
 * local lab on 127.0.155.0/24, BGP backend, router at 127.0.155.9; host
 * clients bound to 127.0.156.x, outside the lab's net): the real `curl`
 * reaches a BGP-advertised LB IP; the router holds the /32 with every node as
 * an ECMP next hop for Cluster and only the endpoint's node for Local, and
 * spreads flows by its seeded hash; a Local pod sees the real client address;
 * a withdrawn route (the Local endpoint gone, the Service deleted) makes the
 * address stop answering. No node holds the address (no L2 election).
 * A router that cannot start (its address taken; lab on 127.0.157.0/24)
 * fails `up` by name and leaves nothing running. In IPVS mode (127.0.158.0/24)
 * the node's virtual server on the LB IP takes the handed-off connection.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { nodeCommand, routerCommand } from '../cli/commands.ts';
import { LabError, defaultBgpPort, down, labApi, up } from '../lab/lab.ts';
import type { Service } from '../control-plane/service-resources.ts';
import type { Pod } from '../control-plane/types.ts';
import { httpPod, lbService } from './helpers/lb.ts';
import { eventually, hasTool, requireOrSkip, startLab } from './helpers/lab.ts';
import { captureLo, tsharkFields } from './helpers/capture.ts';

const NET = '127.0.155';
const NODE_IPS = [`${NET}.11`, `${NET}.12`, `${NET}.13`];

/** The real curl from the host: body, or the exit code on failure. */
async function curl(url: string, iface?: string): Promise<{ ok: true; body: string } | { ok: false; code: number; err: string }> {
  try {
    const r = await promisify(execFile)('curl', ['-sS', '--max-time', '3', ...(iface ? ['--interface', iface] : []), url], { timeout: 10_000 });
    return { ok: true, body: r.stdout.trim() };
  } catch (e) {
    const err = e as { code?: number; stderr?: string };
    return { ok: false, code: Number(err.code), err: String(err.stderr ?? e) };
  }
}

/** True when nothing listens on ip:port (connection refused). */
function refused(ip: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: ip, port });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED'));
  });
}

/** One datagram from a host socket on `from` to ip:port; the reply's text (retried: the first may race the node's rules). */
async function udpRoundTrip(ip: string, port: number, from: string, data: Buffer): Promise<string> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, from, r));
  try {
    return await eventually(
      () =>
        new Promise<string | undefined>((resolve) => {
          const onMessage = (m: Buffer) => {
            clearTimeout(timer);
            resolve(m.toString());
          };
          const timer = setTimeout(() => {
            sock.off('message', onMessage);
            resolve(undefined);
          }, 500);
          sock.once('message', onMessage);
          sock.send(data, port, ip);
        }),
      10_000,
      10,
    );
  } finally {
    sock.close();
  }
}

interface Stats {
  byNextHop: Record<string, number>;
  noRoute: number;
  failed: number;
  bound: string[];
  routes: { prefix: string; nextHops: string[] }[];
}

test.serial('BGP mode from the host: the lab router learns the /32s with ECMP next hops and hands each connection to one node', async (t) => {
  const t0 = performance.now();
  const lab = await startLab(`${NET}.0/24`, { nodes: 3, podsPerNode: 0, backend: 'bgp', bgpHoldTime: 3, lbRouter: true });
  t.teardown(() => lab.close());
  t.log(`lab with router up in ${(performance.now() - t0).toFixed(0)} ms`);
  const router = lab.rec.procs.find((p) => p.role === 'router');
  t.truthy(router, 'the router is a recorded process of the lab');
  const stats = async () => JSON.parse(await routerCommand(lab.stateDir, true)) as Stats;
  const withView = async (e: unknown): Promise<never> => {
    const view = await routerCommand(lab.stateDir, false).catch((x: unknown) => String(x));
    const bgp = await nodeCommand(lab.stateDir, 'node-1', ['bgp', 'summary']).catch((x: unknown) => String(x));
    throw new Error(`${String(e)}\npodlab router:\n${view}\nnode-1 bgp summary:\n${bgp}`);
  };

  const api = labApi(lab.rec);
  for (const p of [httpPod('web-1', 'node-1', 'web'), httpPod('web-2', 'node-2', 'web'), httpPod('solo', 'node-3', 'solo')]) await api.create('pods', p, 'default');
  await api.create('services', lbService('web', 'web'), 'default');
  await api.create('services', lbService('solo', 'solo', { externalTrafficPolicy: 'Local' }), 'default');
  await eventually(async () => (await api.list<Pod>('pods')).items.every((p) => p.status?.phase === 'Running'), 30_000);
  const ipOf = async (n: string) => (await api.get<Service>('services', n, 'default'))?.status?.loadBalancer?.ingress?.[0]?.ip;
  t.is(await eventually(() => ipOf('web'), 10_000), `${NET}.200`);
  t.is(await eventually(() => ipOf('solo'), 10_000), `${NET}.201`);

  // The router's table: every node for Cluster, only node-3 (the endpoint's) for Local.
  const s1 = await eventually(async () => {
    const s = await stats();
    const web = s.routes.find((r) => r.prefix === `${NET}.200/32`);
    const solo = s.routes.find((r) => r.prefix === `${NET}.201/32`);
    return web?.nextHops.length === 3 && solo && s.bound.length === 2 ? s : undefined;
  }, 30_000, 200).catch(withView);
  t.deepEqual(s1.routes.find((r) => r.prefix === `${NET}.200/32`)!.nextHops, NODE_IPS);
  await new Promise((r) => setTimeout(r, 1000)); // would another node announce the Local one too?
  t.deepEqual((await stats()).routes.find((r) => r.prefix === `${NET}.201/32`)!.nextHops, [`${NET}.13`]);
  t.deepEqual((await stats()).bound, [`${NET}.200:80`, `${NET}.201:80`]);
  const view = await routerCommand(lab.stateDir, false);
  t.regex(view, new RegExp(`${NET}\\.200/32 +via ${NET}\\.11 via ${NET}\\.12 via ${NET}\\.13  \\(ECMP\\)`));
  t.log(view.split('\n').filter((l) => l.startsWith(`${NET}.`)).join('\n'));
  // No node holds them: no layer-2 Lease (the default pool is advertised over BGP only).
  t.is((await api.list('leases', { namespace: 'metallb-system' })).items.length, 0);

  // The real curl from the host, Cluster: answered by a web pod; flows spread over the three nodes.
  const first = await curl(`http://${NET}.200/`);
  t.true(first.ok, JSON.stringify(first));
  t.regex(first.ok ? first.body : '', /^web-[12] on node-[12]$/);
  const before = (await stats()).byNextHop;
  const answers = new Map<string, number>();
  for (let i = 0; i < 30; i++) {
    const r = await curl(`http://${NET}.200/`, `${NET.replace(/\d+$/, '156')}.${10 + (i % 5)}`);
    if (r.ok) answers.set(r.body, (answers.get(r.body) ?? 0) + 1);
  }
  const after = await stats();
  const spread = Object.fromEntries(NODE_IPS.map((ip) => [ip, (after.byNextHop[ip] ?? 0) - (before[ip] ?? 0)]));
  t.log(`30 connections to ${NET}.200 handed to next hops: ${JSON.stringify(spread)}; answered by ${JSON.stringify(Object.fromEntries(answers))}`);
  t.is([...answers.values()].reduce((a, b) => a + b, 0), 30, 'every connection answered');
  for (const ip of NODE_IPS) t.true(spread[ip] > 0, `flows reach ${ip}`);
  t.is(after.failed, 0);

  // Local: only node-3, and the pod sees the real client address.
  const local = await curl(`http://${NET}.201/ip`, '127.0.156.9');
  t.deepEqual(local, { ok: true, body: '127.0.156.9' });
  t.deepEqual(await curl(`http://${NET}.201/`, '127.0.156.9'), { ok: true, body: 'solo on node-3' });
  t.regex(await nodeCommand(lab.stateDir, 'node-3', ['conntrack', '-L']), new RegExp(`src=127\\.0\\.156\\.9 dst=${NET}\\.201 .*dport=80 .*dst=127\\.0\\.156\\.9`), 'un-DNAT back to the real client on node-3');
  t.regex(await nodeCommand(lab.stateDir, 'node-3', ['iptables-save', '-t', 'nat']), new RegExp(`-A KUBE-SERVICES -d ${NET}\\.201/32 -p tcp .*"default/solo loadbalancer IP" .* -j KUBE-EXT-`));
  t.regex(await nodeCommand(lab.stateDir, 'node-3', ['lb']), /router hand-offs: [1-9]\d* accepted, 0 refused/);

  // The hop on the wire: tshark on lo decodes the router's PROXY v2 header (heuristic dissector) towards node-3.
  if (requireOrSkip(t, hasTool('tshark'), 'tshark is not installed') && requireOrSkip(t, process.getuid?.() === 0, 'capturing on lo needs root (or dumpcap capabilities)')) {
    // tshark says "Capturing on" a moment before it captures: 4 packets could all come after one
    // connection's first data segment and before the next one's. 16 hold a whole connection's opening.
    const cap = await captureLo(`tcp port 8474 and host ${NET}.9`, 16, () => curl(`http://${NET}.201/`, '127.0.156.9'));
    try {
      const rows = await tsharkFields(cap.file, ['ip.src', 'ip.dst', 'tcp.dstport', 'proxy.src.ipv4', 'proxy.srcport', 'proxy.dst.ipv4', 'proxy.dstport']);
      const hop = rows.find((r) => r[3]);
      t.deepEqual(hop && [hop[0], hop[1], hop[2], hop[3], hop[5], hop[6]], [`${NET}.9`, `${NET}.13`, '8474', '127.0.156.9', `${NET}.201`, '80']);
    } finally {
      cap.cleanup();
    }
  }

  // UDP: the router keeps one socket per client towards one node; each datagram goes behind a PROXY v2 DGRAM header.
  await api.create('pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'echo-1', labels: { app: 'echo' } }, spec: { nodeName: 'node-1', containers: [{ name: 'c', image: 'podlab/echo', ports: [{ containerPort: 7, protocol: 'UDP' }] }] } }, 'default');
  await api.create('services', { apiVersion: 'v1', kind: 'Service', metadata: { name: 'echo' }, spec: { type: 'LoadBalancer', externalTrafficPolicy: 'Local', selector: { app: 'echo' }, ports: [{ port: 7, protocol: 'UDP', targetPort: 7 }] } }, 'default');
  const echoIp = await eventually(() => ipOf('echo'), 10_000);
  await eventually(async () => (await stats()).bound.includes(`${echoIp}:7/udp`) || undefined, 30_000, 100).catch(withView);
  t.deepEqual((await stats()).routes.find((r) => r.prefix === `${echoIp}/32`)?.nextHops, [`${NET}.11`]);
  const echoed = await udpRoundTrip(echoIp, 7, '127.0.156.30', Buffer.from('ping over udp')).catch(withView);
  t.is(echoed, 'ping over udp');
  await api.delete('services', 'echo', 'default');

  // loadBalancerSourceRanges: KUBE-FW lets 127.0.156.9 in and drops anyone else, after the router's hand-off.
  await api.create('services', lbService('fw', 'web', { loadBalancerSourceRanges: ['127.0.156.9/32'] }), 'default');
  t.is(await eventually(() => ipOf('fw'), 10_000), `${NET}.202`);
  await eventually(async () => (await stats()).bound.includes(`${NET}.202:80`) || undefined, 30_000, 100).catch(withView);
  const allowed = await curl(`http://${NET}.202/`, '127.0.156.9');
  t.true(allowed.ok && /^web-[12] on node-[12]$/.test(allowed.body), JSON.stringify(allowed));
  const denied = await curl(`http://${NET}.202/`, '127.0.156.10');
  t.false(denied.ok, 'a source outside loadBalancerSourceRanges gets nothing');
  t.regex(await nodeCommand(lab.stateDir, 'node-1', ['iptables-save', '-t', 'nat']), new RegExp(`-A KUBE-FW-\\w+ -s 127\\.0\\.156\\.9/32 .*"default/fw loadbalancer IP"`));
  await api.delete('services', 'fw', 'default');

  // The Local Service's endpoint goes: node-3 withdraws, the router unbinds, the address stops answering.
  let t1 = performance.now();
  await api.delete('pods', 'solo', 'default');
  await eventually(async () => !(await stats()).bound.includes(`${NET}.201:80`) || undefined, 30_000, 50).catch(withView);
  const unboundLocal = performance.now() - t1;
  t.true(await refused(`${NET}.201`, 80));
  t.false((await curl(`http://${NET}.201/`)).ok);
  t.log(`Local endpoint deleted: ${NET}.201 unbound after ${unboundLocal.toFixed(0)} ms`);

  // The Service is deleted: the address stops answering.
  t1 = performance.now();
  await api.delete('services', 'web', 'default');
  await eventually(async () => (await refused(`${NET}.200`, 80)) || undefined, 30_000, 50).catch(withView);
  t.log(`Service deleted: ${NET}.200 refused after ${(performance.now() - t1).toFixed(0)} ms`);
  await eventually(async () => !(await stats()).routes.some((r) => r.prefix === `${NET}.200/32`) || undefined, 30_000, 100).catch(withView);
  const c = await curl(`http://${NET}.200/`);
  t.false(c.ok);
  t.is(c.ok ? 0 : c.code, 7, 'curl: failed to connect');
});

test.serial('a router that cannot start fails the whole lab by name and leaves no process or port behind', async (t) => {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-test-'));
  t.teardown(async () => {
    await down(stateDir).catch(() => {});
    fs.rmSync(stateDir, { recursive: true, force: true });
  });
  // Someone else holds the router's BGP address and port.
  const squatter = net.createServer();
  await new Promise<void>((r) => squatter.listen(defaultBgpPort(), '127.0.157.9', r));
  t.teardown(() => squatter.close());
  const err = await t.throwsAsync(
    up({ stateDir, nodes: 2, podsPerNode: 0, manifests: [], labNet: '127.0.157.0/24', apiPort: 0, clusterCidr: '10.244.0.0/16', vxlanPort: 8472, seed: 1, mtu: 1500, waitReady: true, timeoutMs: 60_000, backend: 'bgp', lbRouter: true }),
    { instanceOf: LabError },
  );
  t.regex(err.message, new RegExp(`^--lb-router: 127\\.0\\.157\\.9:${defaultBgpPort()} \\(the router's BGP\\) is already in use`));
  // Every process the attempt started is gone (none names the state dir), and so are their sockets.
  const mine = fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
    try {
      return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(stateDir);
    } catch {
      return false;
    }
  });
  t.deepEqual(mine, []);
  for (const [ip, port] of [['127.0.157.11', 8474], ['127.0.157.11', defaultBgpPort()], ['127.0.157.12', 8474]] as const) {
    const free = await new Promise<boolean>((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(port, ip, () => s.close(() => resolve(true)));
    });
    t.true(free, `${ip}:${port} is free again`);
  }
  t.false(fs.existsSync(path.join(stateDir, 'lab.json')));
});

test.serial('IPVS mode: the router hands the connection to a node whose kube-ipvs0 virtual server on the LB IP takes it', async (t) => {
  const lab = await startLab('127.0.158.0/24', { nodes: 2, podsPerNode: 0, backend: 'bgp', bgpHoldTime: 3, lbRouter: true, proxyMode: 'ipvs' });
  t.teardown(() => lab.close());
  const api = labApi(lab.rec);
  await api.create('pods', httpPod('solo', 'node-2', 'solo'), 'default');
  await api.create('services', lbService('solo', 'solo', { externalTrafficPolicy: 'Local' }), 'default');
  await eventually(async () => (await api.list<Pod>('pods')).items.every((p) => p.status?.phase === 'Running'), 30_000);
  const stats = async () => JSON.parse(await routerCommand(lab.stateDir, true)) as Stats;
  await eventually(async () => (await stats()).bound.includes('127.0.158.200:80') || undefined, 30_000, 100);
  t.deepEqual((await stats()).routes.find((r) => r.prefix === '127.0.158.200/32')?.nextHops, ['127.0.158.12']);
  t.deepEqual(await curl('http://127.0.158.200/ip', '127.0.156.20'), { ok: true, body: '127.0.156.20' });
  t.regex(await nodeCommand(lab.stateDir, 'node-2', ['ipvsadm', '-Ln']), /TCP {2}127\.0\.158\.200:80 rr\n {2}-> 10\.244\.\d+\.\d+:80 +Masq/);
});
