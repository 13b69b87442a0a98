/**
 * Cluster DNS end to end in a real lab (loopback, 127.0.181.0/24): the lab
 * installs kube-dns at 10.96.0.10 and two CoreDNS pods; pods resolve names
 * with real UDP queries through kube-proxy's DNAT; curl, ping, nslookup and
 * dig answer as their real counterparts; a real `dig` on the host, through
 * a NodePort on a node's loopback address, gets the same answers as a pod;
 * tshark decodes the DNS captured on cni0 with nothing malformed.
 */
import test from 'ava';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ApiClient } from '../control-plane/client.ts';
import { labApi } from '../lab/lab.ts';
import type { Pod } from '../control-plane/types.ts';
import type { Service } from '../control-plane/service-resources.ts';
import { eventually, startLab, type TestLab } from './helpers/lab.ts';
import { tsharkFields } from './helpers/capture.ts';
import { expertInfo, hasTshark } from './helpers/tshark.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const NET = '127.0.181.0/24';
const NODE1 = '127.0.181.11';
const DNS_NODEPORT = 30953;
/** 100 A records: 1,6xx bytes, over both 512 and dig's EDNS 1232. */
const MANY = Array.from({ length: 100 }, (_, i) => `10.250.${Math.floor(i / 50)}.${(i % 50) + 1}`);
let lab: TestLab;
let api: ApiClient;
const ips: Record<string, string> = {};

const web = (name: string, node: string): Pod =>
  ({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default', labels: { app: 'web' } }, spec: { nodeName: node, containers: [{ name: 'http', image: 'podlab/http', ports: [{ name: 'http', containerPort: 80 }] }] } }) as unknown as Pod;
const svc = (name: string, spec: Record<string, unknown>, ns = 'default'): Service => ({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: ns }, spec }) as unknown as Service;

test.before(async () => {
  lab = await startLab(NET, { nodes: 3, podsPerNode: 1 });
  api = labApi(lab.rec);
  await api.create('pods', web('web-1', 'node-2'), 'default');
  await api.create('pods', web('web-2', 'node-3'), 'default');
  await api.create('services', svc('web', { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 80 }] }), 'default');
  await api.create('services', svc('web-headless', { clusterIP: 'None', selector: { app: 'web' }, ports: [{ name: 'http', port: 80 }] }), 'default');
  // kube-dns exposed on every node's address, UDP and TCP on one port, for a real dig on the host.
  await api.create(
    'services',
    svc('kube-dns-nodeport', { type: 'NodePort', selector: { 'k8s-app': 'kube-dns' }, ports: [{ name: 'dns', port: 53, protocol: 'UDP', nodePort: DNS_NODEPORT }, { name: 'dns-tcp', port: 53, protocol: 'TCP', nodePort: DNS_NODEPORT }] }, 'kube-system'),
    'kube-system',
  );
  // A headless Service with more A records than fit 512 bytes (or dig's 1232): its endpoints listed by hand.
  await api.create('services', svc('many', { clusterIP: 'None', ports: [{ name: 'http', port: 80 }] }), 'default');
  await api.create(
    'endpointslices',
    {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: 'many-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 'many' } },
      addressType: 'IPv4',
      ports: [{ name: 'http', port: 80, protocol: 'TCP' }],
      endpoints: MANY.map((ip) => ({ addresses: [ip], conditions: { ready: true } })),
    },
    'default',
  );
  await eventually(async () => {
    const pods = (await api.list<Pod>('pods')).items;
    for (const p of pods) if (p.status?.podIP) ips[p.metadata.name] = p.status.podIP;
    const running = pods.every((p) => p.status?.phase === 'Running');
    const slices = (await api.list<{ endpoints?: unknown[] } & { metadata: { name: string } }>('endpointslices', { namespace: 'default' })).items;
    return running && !!ips['web-1'] && !!ips['web-2'] && slices.filter((s) => (s.endpoints ?? []).length === 2).length >= 2;
  }, 30_000);
  ips.web = (await api.get<Service>('services', 'web', 'default'))!.spec!.clusterIP!;
});

test.after.always(async () => {
  await lab?.close();
});

const ok = async (pod: string, argv: string[]) => {
  const r = await lab.exec(pod, argv);
  if (r.code !== 0) throw new Error(`${argv.join(' ')} in ${pod}: exit ${r.code}\n${r.out}`);
  return r.out;
};

test.serial('the lab installs kube-dns at 10.96.0.10 and the coredns Deployment, its two pods on two nodes', async (t) => {
  const s = await api.get<Service>('services', 'kube-dns', 'kube-system');
  t.is(s?.spec?.clusterIP, '10.96.0.10');
  const d = await api.get<{ spec?: { replicas?: number; template?: { spec?: { containers?: { image?: string }[] } } }; status?: { readyReplicas?: number } }>('deployments', 'coredns', 'kube-system');
  t.is(d?.spec?.replicas, 2);
  t.is(d?.spec?.template?.spec?.containers?.[0]?.image, 'registry.k8s.io/coredns/coredns:v1.11.1');
  const pods = (await api.list<Pod>('pods', { namespace: 'kube-system', labelSelector: 'k8s-app=kube-dns' })).items;
  t.is(pods.length, 2);
  for (const p of pods) {
    t.regex(p.metadata.name, /^coredns-[0-9a-z]{6,10}-[0-9a-z]{5}$/);
    t.is((p.metadata as { ownerReferences?: { kind: string }[] }).ownerReferences?.[0]?.kind, 'ReplicaSet');
  }
  t.true(pods.every((p) => p.status?.phase === 'Running'));
  // The template's preferred anti-affinity spreads the replicas: node-1 first, then the next node.
  t.deepEqual(pods.map((p) => p.spec?.nodeName).sort(), ['node-1', 'node-2']);
  t.is((await eventually(() => api.get<{ status?: { readyReplicas?: number } }>('deployments', 'coredns', 'kube-system').then((x) => (x?.status?.readyReplicas === 2 ? x : undefined)), 15_000))?.status?.readyReplicas, 2);
});

test.serial('resolv.conf is the kubelet\'s', async (t) => {
  t.is(await ok('pod-1a', ['cat', '/etc/resolv.conf']), 'search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n');
});

test.serial('curl by full name, by short names, and a name that does not exist', async (t) => {
  t.regex(await ok('pod-1a', ['curl', '-s', 'http://web.default.svc.cluster.local']), /^web-[12] on node-[23]\n$/);
  t.regex(await ok('pod-1a', ['curl', '-s', 'http://web']), /^web-[12] on node-[23]\n$/);
  t.regex(await ok('pod-1a', ['curl', '-s', 'http://web.default']), /^web-[12] on node-[23]\n$/);
  const r = await lab.exec('pod-1a', ['curl', '-sS', 'http://nope.default.svc.cluster.local']);
  t.is(r.code, 6);
  t.is(r.out, 'curl: (6) Could not resolve host: nope.default.svc.cluster.local\n');
  t.regex(await ok('pod-1a', ['ping', '-c', '1', 'web-headless']), /^PING web-headless\.default\.svc\.cluster\.local \(10\.244\.\d+\.\d+\) 56\(84\) bytes of data\.\n64 bytes from/);
});

test.serial('nslookup prints busybox\'s shape: the answer, PTR, and NXDOMAIN', async (t) => {
  t.is(await ok('pod-1a', ['nslookup', 'web']), `Server:\t\t10.96.0.10\nAddress:\t10.96.0.10:53\n\nName:\tweb.default.svc.cluster.local\nAddress: ${ips.web}\n\n`);
  t.is(await ok('pod-1a', ['nslookup', '10.96.0.10']), 'Server:\t\t10.96.0.10\nAddress:\t10.96.0.10:53\n\n10.0.96.10.in-addr.arpa\tname = kube-dns.kube-system.svc.cluster.local\n\n');
  const nx = await lab.exec('pod-1a', ['nslookup', 'nope.default.svc.cluster.local.']);
  t.is(nx.code, 1);
  t.regex(nx.out, /\*\* server can't find nope\.default\.svc\.cluster\.local\.?: NXDOMAIN\n/);
});

test.serial('dig: A, SRV for a named port, PTR for Service and pod IPs, headless, NXDOMAIN with SOA, SERVFAIL outside the zone', async (t) => {
  t.is(await ok('pod-1a', ['dig', '+short', 'web.default.svc.cluster.local']), `${ips.web}\n`);
  t.is(await ok('pod-1a', ['dig', '+short', 'SRV', '_http._tcp.web.default.svc.cluster.local']), '0 100 80 web.default.svc.cluster.local.\n');
  t.is(await ok('pod-1a', ['dig', '+short', '-x', ips.web]), 'web.default.svc.cluster.local.\n');
  const dashed = (ip: string) => ip.replace(/\./g, '-');
  const ptrPod = await ok('pod-1a', ['dig', '+short', '-x', ips['web-1']]);
  t.true([`${dashed(ips['web-1'])}.web.default.svc.cluster.local.\n`, `${dashed(ips['web-1'])}.web-headless.default.svc.cluster.local.\n`].includes(ptrPod), ptrPod);
  const headless = (await ok('pod-1a', ['dig', '+short', 'web-headless.default.svc.cluster.local'])).trim().split('\n').sort();
  t.deepEqual(headless, [ips['web-1'], ips['web-2']].sort());
  const srvHeadless = (await ok('pod-1a', ['dig', '+short', '-t', 'SRV', '_http._tcp.web-headless.default.svc.cluster.local'])).trim().split('\n').sort();
  t.deepEqual(srvHeadless, [ips['web-1'], ips['web-2']].map((ip) => `0 50 80 ${dashed(ip)}.web-headless.default.svc.cluster.local.`).sort());
  const full = await ok('pod-1a', ['dig', 'web.default.svc.cluster.local']);
  t.regex(full, /;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: \d+\n;; flags: qr aa rd; QUERY: 1, ANSWER: 1, AUTHORITY: 0, ADDITIONAL: 1\n/);
  t.true(full.includes(`;; QUESTION SECTION:\n;web.default.svc.cluster.local.\tIN\tA\n\n;; ANSWER SECTION:\nweb.default.svc.cluster.local. 5 IN\tA\t${ips.web}\n`), full);
  t.regex(full, /;; SERVER: 10\.96\.0\.10#53\(10\.96\.0\.10\) \(UDP\)/);
  const nx = await ok('pod-1a', ['dig', 'nope.default.svc.cluster.local']);
  t.regex(nx, /status: NXDOMAIN/);
  t.regex(nx, /;; AUTHORITY SECTION:\ncluster\.local\.\t\t30\tIN\tSOA\tns\.dns\.cluster\.local\. hostmaster\.cluster\.local\. \d+ 7200 1800 86400 30\n/);
  t.regex(await ok('pod-1a', ['dig', 'example.com']), /status: SERVFAIL/);
});

test.serial('a headless answer too big for UDP comes back truncated and is asked again over TCP', async (t) => {
  const sorted = [...MANY].sort();
  // The resolver (no EDNS: 512 bytes) gets TC, then the whole answer over TCP.
  const ns = await ok('pod-1a', ['nslookup', 'many']);
  t.deepEqual([...ns.matchAll(/^Address: (\S+)$/gm)].map((m) => m[1]).sort(), sorted);
  // curl's getaddrinfo goes the same way and gets an address of the set.
  const full = await ok('pod-1a', ['dig', 'many.default.svc.cluster.local']);
  t.true(full.startsWith(';; Truncated, retrying in TCP mode.\n'), full.slice(0, 200));
  t.regex(full, /;; flags: qr aa rd; QUERY: 1, ANSWER: 100, AUTHORITY: 0, ADDITIONAL: 1\n/);
  t.regex(full, /;; SERVER: 10\.96\.0\.10#53\(10\.96\.0\.10\) \(TCP\)/);
  t.regex(full, /;; MSG SIZE {2}rcvd: 1\d{3}\n/);
  // +ignore keeps the truncated UDP answer: no records, TC set.
  const ignored = await ok('pod-1a', ['dig', '+ignore', 'many.default.svc.cluster.local']);
  t.regex(ignored, /;; flags: qr aa tc rd; QUERY: 1, ANSWER: 0,/);
  t.regex(ignored, /\(UDP\)/);
  // +tcp asks over TCP from the start: the same answers as UDP for a small one.
  t.is(await ok('pod-1a', ['dig', '+tcp', '+short', 'web.default.svc.cluster.local']), `${ips.web}\n`);
  t.regex(await ok('pod-1a', ['dig', '+tcp', 'web.default.svc.cluster.local']), /\(TCP\)/);
  const short = (await ok('pod-1a', ['dig', '+short', 'many.default.svc.cluster.local'])).split('\n');
  t.is(short[0], ';; Truncated, retrying in TCP mode.');
  t.deepEqual(short.slice(1).filter(Boolean).sort(), sorted);
});

const DIG = '/usr/bin/dig';

test.serial('a real dig on the host, through a NodePort on a node address, gets the same answers as a pod', async (t) => {
  if (!fs.existsSync(DIG)) {
    if (process.env.CI === 'true') return t.fail(`${DIG} missing (apt-get install bind9-dnsutils)`);
    t.log(`${DIG} not found: skipped (apt-get install bind9-dnsutils)`);
    return t.pass();
  }
  const host = (args: string[]) =>
    new Promise<string>((resolve, reject) => execFile(DIG, [`@${NODE1}`, '-p', String(DNS_NODEPORT), '+tries=2', '+time=2', ...args], (e, out, err) => (e ? reject(new Error(`${e.message}\n${err}`)) : resolve(out))));
  const questions: string[][] = [
    ['+short', 'web.default.svc.cluster.local'],
    ['+short', 'SRV', '_http._tcp.web.default.svc.cluster.local'],
    ['+short', '-x', ips.web],
    ['+short', '-x', '10.96.0.10'],
    ['+short', 'kube-dns.kube-system.svc.cluster.local'],
  ];
  for (const q of questions) {
    const fromHost = await eventually(() => host(q).then((o) => (o.trim() ? o : undefined)), 15_000);
    t.is(fromHost, await ok('pod-1a', ['dig', ...q]), q.join(' '));
  }
  const headlessHost = (await host(['+short', 'web-headless.default.svc.cluster.local'])).trim().split('\n').sort();
  t.deepEqual(headlessHost, (await ok('pod-1a', ['dig', '+short', 'web-headless.default.svc.cluster.local'])).trim().split('\n').sort());
  // Over TCP (+tcp), and dig's own retry over TCP when the UDP answer is truncated.
  t.is(await host(['+tcp', '+short', 'web.default.svc.cluster.local']), await ok('pod-1a', ['dig', '+short', 'web.default.svc.cluster.local']));
  const big = await host(['many.default.svc.cluster.local']);
  t.regex(big, /;; Truncated, retrying in TCP mode\./);
  t.regex(big, /ANSWER: 100,/);
  t.regex(big, /\(TCP\)/);
  t.deepEqual((await host(['+tcp', '+short', 'many.default.svc.cluster.local'])).trim().split('\n').sort(), [...MANY].sort());
  const nx = await host(['nope.default.svc.cluster.local']);
  t.regex(nx, /status: NXDOMAIN/);
  t.regex(nx, /cluster\.local\.\s+30\s+IN\s+SOA\s+ns\.dns\.cluster\.local\. hostmaster\.cluster\.local\./);
  t.notRegex(nx, /malformed|FORMERR/i);
});

test.serial('tshark decodes the DNS captured on cni0 with no malformed packets', async (t) => {
  if (!hasTshark) {
    if (process.env.CI === 'true') return t.fail('tshark missing');
    t.log('tshark not found: skipped');
    return t.pass();
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-dns-cap-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'cni0.pcapng');
  // node-1 hosts pod-1a and a CoreDNS replica: its cni0 sees the queries, and the answers of whichever replica kube-proxy picked.
  const cap = spawn(process.execPath, [path.join(ROOT, 'bin/podlab.js'), 'capture', 'node-1', 'cni0', '-w', file, '-c', '40', '-f', 'port 53', '--duration', '30'], {
    env: { ...process.env, PODLAB_HOME: lab.stateDir },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let capErr = '';
  cap.stderr.on('data', (d) => (capErr += String(d)));
  const exited = new Promise<void>((r) => cap.on('exit', () => r()));
  t.teardown(() => void cap.kill('SIGKILL'));
  let done = false;
  void exited.then(() => (done = true));
  // Query until the capture has its 40 packets (it attaches a moment after it starts); one query over TCP each round.
  const until = Date.now() + 40_000;
  while (!done && Date.now() < until) {
    await ok('pod-1a', ['dig', '+short', 'SRV', '_http._tcp.web.default.svc.cluster.local']);
    await lab.exec('pod-1a', ['nslookup', 'nope']);
    await ok('pod-1a', ['dig', '+short', '-x', '10.96.0.10']);
    await ok('pod-1a', ['dig', '+tcp', '+short', 'web.default.svc.cluster.local']);
    await new Promise((r) => setTimeout(r, 200));
  }
  await exited;
  const rows = await tsharkFields(file, ['dns.flags.response', 'dns.qry.name', 'dns.flags.rcode', 'dns.count.answers', 'tcp.len']);
  t.true(rows.length >= 6, `${rows.length} DNS packets; capture said: ${capErr}`);
  t.true(rows.some((r) => r[0] === '1' && r[1] === '_http._tcp.web.default.svc.cluster.local' && r[2] === '0' && r[3] === '1'), JSON.stringify(rows));
  t.true(rows.some((r) => r[0] === '1' && r[2] === '3'), 'an NXDOMAIN answer');
  // DNS over TCP, decoded through its length prefix: a query and its answer.
  t.true(rows.some((r) => r[4] !== '' && r[0] === '0' && r[1] === 'web.default.svc.cluster.local'), JSON.stringify(rows));
  t.true(rows.some((r) => r[4] !== '' && r[0] === '1' && r[1] === 'web.default.svc.cluster.local' && r[3] === '1'), JSON.stringify(rows));
  const expert = await expertInfo(file, []);
  t.deepEqual(expert.filter((e) => e.malformed).map((e) => e.frame), []);
});
