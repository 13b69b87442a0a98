/**
 * The pure parts of netns labs, kernel nodes and the container entry (no root
 * needed): the iproute2 commands a plan turns into, the namespace naming and
 * safety checks, the option checks, `podlab agent`'s resolution of a
 * container's name/IP/underlay, and the apiserver reached over its Unix socket.
 */
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startApiServer } from '../control-plane/apiserver.ts';
import { ApiClient } from '../control-plane/client.ts';
import type { Node } from '../control-plane/types.ts';
import { startUnixRelay } from '../control-plane/unix-proxy.ts';
import { DaemonUsageError, resolveAgentArgs, type AgentEnv } from '../lab/daemons.ts';
import { NetnsError, assertLabNamespace, ifname, labNamespaces, netnsNames, validatePrefix, writeKernelPodNetns } from '../hostnet/netns.ts';
import { apiSocketPath, kernelDemoPods, missingNetnsTools, netnsWire, validateNetnsOptions } from '../lab/netns-lab.ts';
import type { UpOptions } from '../lab/lab.ts';
import { nodeViewCommand, podCommands } from '../kernel-node/commands.ts';
import { planCommand, vtepCommands } from '../backends/vxlan/kernel.ts';
import type { PlanAction } from '../backends/plan.ts';

test('plan actions become the iproute2 commands flanneld\'s netlink calls amount to', (t) => {
  const ns = 'podlab-knode-1';
  const cases: [PlanAction, string][] = [
    [{ op: 'add-neigh', dev: 'flannel.1', ip: '10.244.2.0', mac: 'ca:45:23:54:6f:97', node: 'node-2' }, 'ip -n podlab-knode-1 neigh replace 10.244.2.0 lladdr ca:45:23:54:6f:97 dev flannel.1 nud permanent'],
    [{ op: 'add-fdb', mac: 'ca:45:23:54:6f:97', dst: '10.250.0.12', node: 'node-2' }, 'bridge -n podlab-knode-1 fdb replace ca:45:23:54:6f:97 dev flannel.1 dst 10.250.0.12 self permanent'],
    [{ op: 'add-route', cidr: '10.244.2.0/24', via: '10.244.2.0', dev: 'flannel.1', onlink: true, proto: 'boot', node: 'node-2' }, 'ip -n podlab-knode-1 route replace 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink'],
    [{ op: 'del-route', cidr: '10.244.2.0/24', node: 'node-2' }, 'ip -n podlab-knode-1 route del 10.244.2.0/24'],
    [{ op: 'del-fdb', mac: 'ca:45:23:54:6f:97', node: 'node-2' }, 'bridge -n podlab-knode-1 fdb del ca:45:23:54:6f:97 dev flannel.1 self'],
    [{ op: 'del-neigh', dev: 'flannel.1', ip: '10.244.2.0', node: 'node-2' }, 'ip -n podlab-knode-1 neigh del 10.244.2.0 dev flannel.1'],
  ];
  for (const [a, want] of cases) t.is(planCommand(ns, a).join(' '), want, a.op);
});

test('the VTEP and a pod are built as flanneld and the CNI bridge plugin build them', (t) => {
  t.deepEqual(
    vtepCommands('podlab-knode-1', { vni: 1, localIp: '10.250.0.14', port: 8472, mtu: 1450 }).map((c) => c.join(' ')),
    ['ip -n podlab-knode-1 link add flannel.1 type vxlan id 1 local 10.250.0.14 dev eth0 dstport 8472 nolearning', 'ip -n podlab-knode-1 link set flannel.1 mtu 1450 up'],
  );
  const pod = podCommands('podlab-knode-1', 'podlab-knode-1-pod-k1a', { hostVeth: 'veth0a1b2c3d', ip: '10.244.4.2', prefixLen: 24, gateway: '10.244.4.1', mtu: 1450 }).map((c) => c.join(' '));
  t.is(pod[0], 'ip -n podlab-knode-1 link add veth0a1b2c3d mtu 1450 type veth peer name eth0 mtu 1450 netns podlab-knode-1-pod-k1a');
  t.true(pod.includes('ip -n podlab-knode-1 link set veth0a1b2c3d master cni0 up'));
  t.true(pod.includes('ip -n podlab-knode-1-pod-k1a addr add 10.244.4.2/24 dev eth0'));
  t.is(pod.at(-1), 'ip -n podlab-knode-1-pod-k1a route add default via 10.244.4.1 dev eth0');
  // Every command names a lab namespace: nothing here can touch the root namespace.
  for (const c of pod) t.regex(c, /^(ip|bridge) -n podlab-/);
});

test('podlab node views on a kernel node map to the real commands, anything else is refused', (t) => {
  t.deepEqual(nodeViewCommand('podlab-knode-1', ['ip', 'route']), ['ip', '-n', 'podlab-knode-1', 'route', 'show']);
  t.deepEqual(nodeViewCommand('podlab-knode-1', ['ip', 'n']), ['ip', '-n', 'podlab-knode-1', 'neigh', 'show']);
  t.deepEqual(nodeViewCommand('podlab-knode-1', ['bridge', 'fdb']), ['bridge', '-n', 'podlab-knode-1', 'fdb', 'show']);
  // Extra words are dropped, never passed on: a view cannot flush or change anything.
  t.deepEqual(nodeViewCommand('podlab-knode-1', ['ip', 'route', 'flush', 'all']), ['ip', '-n', 'podlab-knode-1', 'route', 'show']);
  t.is(nodeViewCommand('podlab-knode-1', ['ip', 'xfrm']), undefined);
  t.is(nodeViewCommand('podlab-knode-1', ['sh', '-c', 'id']), undefined);
});

test('namespace names: podlab-* only, derived from the prefix; interface names fit IFNAMSIZ', (t) => {
  for (const bad of ['', 'default', 'podlab', 'podlabx', 'node-1', 'podlab-../etc', 'podlab-a/b', '1']) t.throws(() => assertLabNamespace(bad), { instanceOf: NetnsError }, bad);
  t.notThrows(() => assertLabNamespace('podlab-knode-1-pod-k1a'));
  t.is(netnsNames.underlay('podlab'), 'podlab-underlay');
  t.is(netnsNames.node('podlab-t7', 'node-1'), 'podlab-t7-node-1');
  t.is(netnsNames.kernelPod('podlab-knode-1', 'default', 'pod-k1a'), 'podlab-knode-1-pod-k1a');
  t.is(netnsNames.kernelPod('podlab-knode-1', 'team-a', 'web'), 'podlab-knode-1-team-a.web');
  t.true(netnsNames.kernelPod('podlab-knode-1', 'default', 'x'.repeat(250)).length <= 200);
  t.is(ifname('v-', 'node-1'), 'v-node-1');
  const long = ifname('v-', 'a-very-long-node-name-indeed');
  t.true(long.length <= 15 && long.startsWith('v-'), long);
  t.is(validatePrefix('podlab'), undefined);
  t.is(validatePrefix('podlab-t7'), undefined);
  t.truthy(validatePrefix('lab'));
  t.truthy(validatePrefix('podlab_x'));
});

const base: UpOptions = { stateDir: '/tmp/x', nodes: 3, podsPerNode: 0, manifests: [], labNet: '127.0.0.0/24', apiPort: 0, clusterCidr: '10.244.0.0/16', vxlanPort: 8472, seed: 1, mtu: 1500, waitReady: true, mode: 'netns' };

test('netns options: private underlays only; kernel nodes with host-gw/bgp need the raw wire', (t) => {
  t.is(validateNetnsOptions(base), undefined);
  t.is(validateNetnsOptions({ ...base, underlayNet: '172.20.5.0/24', kernelNodes: 2 }), undefined);
  t.regex(validateNetnsOptions({ ...base, underlayNet: '8.8.8.0/24' })!, /--underlay-net: must be inside 10\.0\.0\.0\/8/);
  t.regex(validateNetnsOptions({ ...base, underlayNet: '10.250.0.0/8' })!, /--underlay-net/);
  t.regex(validateNetnsOptions({ ...base, underlayNet: '172.15.0.0/24' })!, /--underlay-net/);
  t.is(validateNetnsOptions({ ...base, backend: 'bgp' }), undefined);
  // The raw wire is the netns default of the unencapsulated backends: kernel nodes can join them.
  t.is(validateNetnsOptions({ ...base, backend: 'bgp', kernelNodes: 1 }), undefined);
  t.is(validateNetnsOptions({ ...base, backend: 'host-gw', kernelNodes: 1, wire: 'raw' }), undefined);
  t.regex(validateNetnsOptions({ ...base, backend: 'bgp', kernelNodes: 1, wire: 'udp' })!, /--kernel-nodes: with --backend bgp kernel nodes need --wire raw/);
  t.regex(validateNetnsOptions({ ...base, backend: 'host-gw', kernelNodes: 1, wire: 'udp' })!, /need --wire raw/);
  t.is(netnsWire({ backend: 'bgp' }), 'raw');
  t.is(netnsWire({ backend: 'host-gw', wire: 'udp' }), 'udp');
  t.is(netnsWire({ backend: 'vxlan', wire: 'raw' }), 'udp');
  t.is(validateNetnsOptions({ ...base, backend: 'host-gw' }), undefined);
  t.regex(validateNetnsOptions({ ...base, kernelNodes: -1 })!, /--kernel-nodes/);
  t.regex(validateNetnsOptions({ ...base, netnsPrefix: 'lab' })!, /--netns-prefix/);
});

test('netns labs name what is missing before anything starts: cap and nft for the raw wire, BIRD for bgp kernel nodes', (t) => {
  const all = () => true;
  t.is(missingNetnsTools({ backend: 'bgp', kernelNodes: 1 }, all, all), undefined);
  t.is(missingNetnsTools({ backend: 'vxlan', kernelNodes: 2 }, () => false, () => false), undefined);
  t.regex(missingNetnsTools({ backend: 'bgp' }, all, () => false)!, /needs the optional 'cap' addon .*npm rebuild cap; or use --wire udp/);
  t.regex(missingNetnsTools({ backend: 'host-gw' }, (x) => x !== 'nft', all)!, /needs nftables/);
  t.is(missingNetnsTools({ backend: 'bgp', wire: 'udp' }, () => false, () => false), undefined);
  t.regex(missingNetnsTools({ backend: 'bgp', kernelNodes: 1 }, (x) => x !== 'bird', all)!, /apt-get install bird2/);
  t.is(missingNetnsTools({ backend: 'host-gw', kernelNodes: 1 }, (x) => x !== 'bird', all), undefined);
});

test('kernel demo pods are pod-k<K><letter> on knode-K', (t) => {
  const pods = kernelDemoPods(2, 2);
  t.deepEqual(
    pods.map((p) => `${p.metadata.name}@${p.spec!.nodeName}`),
    ['pod-k1a@knode-1', 'pod-k1b@knode-1', 'pod-k2a@knode-2', 'pod-k2b@knode-2'],
  );
});

test('teardown order: kernel pods (recorded or left by a crash), then nodes, the underlay last', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-netns-unit-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  writeKernelPodNetns(dir, 'knode-1', ['podlab-x-knode-1-pod-k1a']);
  const rec = { netns: { prefix: 'podlab-x', namespaces: ['podlab-x-underlay', 'podlab-x-node-1', 'podlab-x-knode-1'] } };
  const existing = ['podlab-x-underlay', 'podlab-x-node-1', 'podlab-x-knode-1', 'podlab-x-knode-1-pod-k1a', 'podlab-x-knode-1-pod-k1b', 'podlab-x-node-1-unrelated', 'podlab-other-node-1'];
  const order = await labNamespaces(dir, rec, existing);
  t.deepEqual(order, ['podlab-x-knode-1-pod-k1a', 'podlab-x-knode-1-pod-k1b', 'podlab-x-node-1', 'podlab-x-knode-1', 'podlab-x-underlay']);
  t.false(order.includes('podlab-other-node-1'));
});

const fakeEnv = (over: Partial<AgentEnv> = {}): AgentEnv => ({
  env: {},
  hostname: '3f2a9c1d7e4b',
  interfaces: {
    lo: [{ address: '127.0.0.1', netmask: '255.0.0.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal: true, cidr: '127.0.0.1/8' }],
    eth0: [{ address: '172.28.0.5', netmask: '255.255.0.0', family: 'IPv4', mac: '02:42:ac:1c:00:05', internal: false, cidr: '172.28.0.5/16' }],
  },
  ...over,
});

test('podlab agent in a container: name from the hostname, IP and underlay from eth0, defaults for the rest', (t) => {
  const args = resolveAgentArgs(['--api', 'http://apiserver:6443', '--lab-json'], fakeEnv());
  const v = (f: string) => args[args.indexOf(f) + 1];
  t.is(v('--name'), '3f2a9c1d7e4b');
  t.is(v('--ip'), '172.28.0.5');
  t.is(v('--underlay'), '172.28.0.0/16');
  t.is(v('--api'), 'http://apiserver:6443');
  t.is(v('--state-dir'), '/var/lib/podlab');
  t.false(args.includes('--lab-json'), 'not a node-agent flag');
  // Explicit flags win (netns labs give them all); `auto` asks for detection; the environment comes next.
  const explicit = ['--name', 'node-1', '--ip', '10.250.0.11', '--underlay', '10.250.0.0/24', '--api', 'http://10.250.0.10:6443', '--state-dir', '/s'];
  t.deepEqual(resolveAgentArgs(explicit, fakeEnv()), explicit);
  const auto = resolveAgentArgs(['--name', 'n', '--ip', 'auto', '--underlay', '10.1.0.0/16', '--api', 'http://a:1', '--state-dir', '/s'], fakeEnv());
  t.is(auto[auto.indexOf('--ip') + 1], '172.28.0.5');
  t.is(auto[auto.indexOf('--underlay') + 1], '10.1.0.0/16');
  const env = resolveAgentArgs(['--ip=auto'], fakeEnv({ env: { PODLAB_NODE_NAME: 'worker-7', PODLAB_API: 'http://10.0.0.2:6443', PODLAB_HOME: '/data' } }));
  t.deepEqual(env, ['--ip=172.28.0.5', '--name', 'worker-7', '--underlay', '172.28.0.0/16', '--api', 'http://10.0.0.2:6443', '--state-dir', '/data']);
  t.throws(() => resolveAgentArgs([], fakeEnv({ interfaces: { lo: fakeEnv().interfaces.lo } })), { instanceOf: DaemonUsageError, message: /no non-loopback IPv4 interface/ });
  t.throws(() => resolveAgentArgs([], fakeEnv({ env: { PODLAB_IFACE: 'eth1' } })), { instanceOf: DaemonUsageError, message: /eth1/ });
});

test('the apiserver answers on its Unix socket exactly as on TCP, watches included', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-unix-'));
  const api = await startApiServer({ host: '127.0.0.1', port: 0, stateDir: dir });
  const relay = await startUnixRelay(apiSocketPath(dir), '127.0.0.1', api.port);
  t.teardown(async () => {
    await relay.close();
    await api.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  t.is((fs.statSync(relay.path).mode & 0o777).toString(8), '600');
  const client = new ApiClient(`unix:${relay.path}`, { credentials: api.credentials });
  t.is(client.socketPath, relay.path);
  const ac = new AbortController();
  const seen: string[] = [];
  const watching = (async () => {
    for await (const ev of client.watch<Node>('nodes', { signal: ac.signal })) {
      seen.push(`${ev.type} ${ev.object.metadata.name}`);
      if (seen.length === 1) ac.abort();
    }
  })();
  await client.create('nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: 'knode-1' }, spec: {} });
  await watching;
  t.deepEqual(seen, ['ADDED knode-1']);
  const viaTcp = await new ApiClient(api.url, { credentials: api.credentials }).get<Node>('nodes', 'knode-1');
  const viaUnix = await client.get<Node>('nodes', 'knode-1');
  t.deepEqual(viaUnix, viaTcp);
  t.is(viaUnix?.spec?.podCIDR, '10.244.1.0/24');
  client.close();
  t.throws(() => new ApiClient('unix:relative/api.sock', { credentials: api.credentials }), { message: /absolute socket path/ });
});
