/**
 * Capture and trace against a real 3-node lab (127.0.75.0/24): a pcapng from
 * every kind of interface opens in tshark with the expected layers, interface
 * names and no expert warnings; a live `-w -` stream is read by tshark while
 * traffic flows; trace names every hop for same-node and cross-node
 * destinations and the right drop reason for unroutable, TTL, MTU and loss.
 */
import { labApi } from '../lab/lab.ts';
import test, { type ExecutionContext } from 'ava';
import { execFile, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { capture } from '../cli/capture.ts';
import { callNode } from '../cli/commands.ts';
import { trace, formatTrace, type TraceReport } from '../cli/trace.ts';
import type { Pod } from '../control-plane/types.ts';
import { eventually, hasTool, requireOrSkip, startLab, type TestLab } from './helpers/lab.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
let lab: TestLab;
let ips: Record<string, string> = {};
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-capture-'));

test.before(async () => {
  lab = await startLab('127.0.75.0/24');
  const pods = (await labApi(lab.rec).list<Pod>('pods', { namespace: 'default' })).items;
  ips = Object.fromEntries(pods.map((p) => [p.metadata.name, p.status!.podIP!]));
});

test.after.always(async () => {
  await lab?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

function tshark(args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile('tshark', args, { maxBuffer: 64 << 20 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout))),
  );
}

/** Captures `count` packets on `ifaces` of node-1 while pod-1a pings `dest`. */
async function captureDuring(ifaces: string[], count: number, dest: string, filter?: string): Promise<string> {
  const file = path.join(tmp, `${ifaces.join('+').replace(/\//g, '_')}-${Date.now()}.pcapng`);
  const ac = new AbortController();
  const done = capture(lab.stateDir, { node: 'node-1', ifaces, write: file, count, filter, signal: ac.signal, log: () => {} });
  // Keep traffic flowing until the capture has its packets.
  let finished = false;
  void done.finally(() => (finished = true));
  for (let i = 0; i < 50 && !finished; i++) {
    await lab.exec('pod-1a', ['ping', '-c', '1', dest]);
    await new Promise((r) => setTimeout(r, 50));
  }
  const r = await done;
  if (r.captured < count) throw new Error(`captured ${r.captured} of ${count}`);
  return file;
}

const FIELDS = ['frame.interface_name', 'frame.interface_description', 'frame.protocols', '_ws.expert.severity', '_ws.malformed', 'ip.src', 'ip.dst', 'vxlan.vni'];

async function decode(file: string): Promise<string[][]> {
  const out = await tshark(['-r', file, '-d', 'udp.port==8472,vxlan', '-o', 'ip.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE', '-T', 'fields', '-E', 'separator=|', ...FIELDS.flatMap((f) => ['-e', f])]);
  return out.trim().split('\n').map((l) => l.split('|'));
}

const needTshark = (t: ExecutionContext) => requireOrSkip(t, hasTool('tshark'), 'tshark is not installed');

test.serial('pcapng from each interface kind decodes in tshark with the right layers, names and no expert warnings', async (t) => {
  if (!needTshark(t)) return;
  const cases: { ifaces: string[]; count: number; protocols: RegExp; names: string[] }[] = [
    { ifaces: ['eth0'], count: 4, protocols: /^eth:ethertype:ip:udp:vxlan:eth:ethertype:ip:icmp(:data)?$/, names: ['eth0'] },
    { ifaces: ['flannel.1'], count: 4, protocols: /^eth:ethertype:ip:icmp(:data)?$/, names: ['flannel.1'] },
    { ifaces: ['cni0'], count: 4, protocols: /^eth:ethertype:(ip:icmp(:data)?|arp)$/, names: ['cni0'] },
    { ifaces: ['pod/pod-1a'], count: 4, protocols: /^eth:ethertype:(ip:icmp(:data)?|arp)$/, names: ['pod-1a/eth0'] },
  ];
  const info = await callNode<{ pods: { key: string; veth: string }[] }>(lab.stateDir, 'node-1', 'info', {});
  const veth = info.pods.find((p) => p.key === 'default/pod-1a')!.veth;
  cases.push({ ifaces: [veth], count: 4, protocols: /^eth:ethertype:(ip:icmp(:data)?|arp)$/, names: [veth] });
  for (const c of cases) {
    const rows = await decode(await captureDuring(c.ifaces, c.count, ips['pod-2a'], 'icmp or arp or udp port 8472'));
    t.is(rows.length, c.count, c.ifaces.join());
    for (const [name, desc, protocols, severity, malformed, src, dst, vni] of rows) {
      t.true(c.names.includes(name), `${name} in ${c.names.join(',')}`);
      t.regex(desc, /on node-1$/);
      t.regex(protocols, c.protocols, `${name}: ${protocols}`);
      // Severity: 0x00400000 note (e.g. "Echo (ping) request" sequence notes) is fine; warning/error are not.
      const sev = severity ? severity.split(',').map(Number) : [];
      t.true(sev.every((s) => s < 0x00600000), `${name}: expert severity ${severity}`);
      t.is(malformed, '', name);
      if (name === 'eth0') {
        t.regex(src, /^127\.0\.75\.1[12],10\.244\.[12]\.\d+$/);
        t.regex(dst, /^127\.0\.75\.1[12],10\.244\.[12]\.\d+$/);
        t.is(vni, '1');
      }
    }
  }
});

test.serial('the shipped Wireshark profile decodes UDP 8472 as VXLAN without -d', async (t) => {
  if (!needTshark(t)) return;
  const file = await captureDuring(['eth0'], 2, ips['pod-2b'], 'udp port 8472');
  const cfg = path.join(tmp, 'wireshark-config');
  // Installed the way the README says: podlab wireshark --install-profile.
  const installed = execFileSync(process.execPath, [path.join(ROOT, 'bin/podlab.js'), 'wireshark', '--install-profile'], { env: { ...process.env, WIRESHARK_CONFIG_DIR: cfg }, encoding: 'utf8' });
  t.regex(installed, new RegExp(`installed in ${path.join(cfg, 'profiles/podlab').replace(/[.]/g, '\\.')}`));
  const run = (args: string[]) =>
    promisify(execFile)('tshark', ['-r', file, ...args, '-T', 'fields', '-e', 'frame.protocols'], { env: { ...process.env, WIRESHARK_CONFIG_DIR: cfg } }).then((r) => r.stdout);
  t.regex(await run(['-C', 'podlab']), /^eth:ethertype:ip:udp:vxlan:eth:ethertype:ip:icmp/m);
});

test.serial('several interfaces at once interleave in time order; --all covers the node', async (t) => {
  if (!needTshark(t)) return;
  const rows = await decode(await captureDuring(['eth0', 'flannel.1'], 4, ips['pod-3a'], 'icmp or udp'));
  const names = rows.map((r) => r[0]);
  // An echo request is seen on flannel.1 before eth0 (encapsulation), its reply on eth0 before flannel.1.
  t.deepEqual(names, ['flannel.1', 'eth0', 'eth0', 'flannel.1']);
  const list = await callNode<{ ref: string }[]>(lab.stateDir, 'node-1', 'capture.list', {});
  t.deepEqual(list.map((x) => x.ref).slice(0, 3), ['eth0', 'flannel.1', 'cni0']);
  t.true(list.some((x) => x.ref === 'pod/pod-1a'));
});

test.serial('a live `podlab capture -w -` stream is read by tshark while traffic flows', async (t) => {
  if (!needTshark(t)) return;
  const cap = spawn(process.execPath, [path.join(ROOT, 'bin/podlab.js'), 'capture', 'node-1', 'flannel.1', '-w', '-', '-c', '20', '-f', 'icmp'], {
    env: { ...process.env, PODLAB_HOME: lab.stateDir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const ts = spawn('tshark', ['-l', '-i', '-', '-T', 'fields', '-e', 'frame.interface_name', '-e', 'icmp.type'], { stdio: ['pipe', 'pipe', 'pipe'] });
  cap.stdout.pipe(ts.stdin);
  let lines = '';
  let tsErr = '';
  ts.stdout.on('data', (d) => (lines += d));
  ts.stderr.on('data', (d) => (tsErr += d));
  t.teardown(() => {
    cap.kill('SIGKILL');
    ts.kill('SIGKILL');
  });
  const finished = Promise.all([new Promise((r) => cap.on('exit', r)), new Promise((r) => ts.on('exit', r))]);
  // tshark says "Capturing on" once it has read the stream's header: from then on it is live.
  await eventually(() => /Capturing on/.test(tsErr), 30_000);
  // tshark may say so before podlab's capture is attached: ping until its first packets show up,
  // while the capture (which wants 20) is certainly still running. That is the live part.
  const count = () => lines.trim().split('\n').filter(Boolean).length;
  for (let i = 0; i < 8 && count() < 2; i++) {
    await lab.exec('pod-1a', ['ping', '-c', '1', ips['pod-2b']]);
    await eventually(() => count() >= 2, 1500).catch(() => undefined);
  }
  t.true(count() >= 2, 'tshark printed packets');
  t.is(cap.exitCode, null, 'the capture is still running: tshark read the packets live');
  for (let i = 0; i < 40 && cap.exitCode === null; i++) {
    await lab.exec('pod-1a', ['ping', '-c', '1', ips['pod-2b']]);
    await new Promise((r) => setTimeout(r, 100));
  }
  await finished;
  const rows = lines.trim().split('\n');
  t.is(rows.length, 20);
  t.true(rows.every((r) => /^flannel\.1\t(8|0)$/.test(r)), lines);
});

test.serial('trace names every hop, same node and across nodes', async (t) => {
  const cross = await trace(lab.stateDir, 'pod-1a', ips['pod-2a'], { proto: 'icmp' });
  t.is(cross.result.kind, 'reply');
  const seq = cross.hops.filter((h) => h.leg === 'request').map((h) => `${h.node}:${h.ns === 'node' ? '' : 'pod:'}${h.point}${h.dir ? ':' + h.dir : ''}`);
  const expected = [
    'node-1:pod:eth0:tx', // pod eth0
    'node-1:veth', // host side veth (prefix match below)
    'node-1:cni0', // bridge decision
    'node-1:routing',
    'node-1:neighbour',
    'node-1:flannel.1:tx',
    'node-1:vxlan-encap',
    'node-1:eth0:tx',
    'node-2:eth0:rx',
    'node-2:vxlan-decap',
    'node-2:flannel.1:rx',
    'node-2:routing',
    'node-2:cni0',
    'node-2:veth',
    'node-2:pod:eth0:rx',
    'node-2:pod:local',
  ];
  let at = 0;
  for (const want of expected) {
    const found = seq.findIndex((s, i) => i >= at && s.startsWith(want));
    t.true(found >= 0, `hop ${want} after position ${at} in:\n${seq.join('\n')}`);
    if (found >= 0) at = found + 1;
  }
  t.true(cross.hops.some((h) => h.leg === 'reply' && h.node === 'node-1' && h.ns === 'pod pod-1a' && h.point === 'local'), 'the reply reaches pod-1a');
  const encap = cross.hops.find((h) => h.point === 'vxlan-encap' && h.leg === 'request')!;
  t.regex(encap.summary, /dst 127\.0\.75\.12; VXLAN flags 0x08 VNI 1; outer 127\.0\.75\.11:\d+ > 127\.0\.75\.12:8472 UDP/);
  const route = cross.hops.find((h) => h.point === 'routing' && h.node === 'node-1' && h.leg === 'request')!;
  t.regex(route.summary, /matches "10\.244\.2\.0\/24 via 10\.244\.2\.0 dev flannel\.1 onlink"; ttl 64 -> 63/);
  t.regex(formatTrace(cross), /result: reply from 10\.244\.2\.\d+ in [\d.]+ ms, ttl 62/);

  const same = await trace(lab.stateDir, 'pod-1a', ips['pod-1b'], { proto: 'icmp' });
  t.is(same.result.kind, 'reply');
  t.false(same.hops.some((h) => h.point === 'routing' || h.point === 'vxlan-encap'), 'same node: bridged, not routed');
  t.true(same.hops.some((h) => h.point === 'cni0' && /fdb .* -> port veth/.test(h.summary)));
  t.true(same.hops.every((h) => h.node === 'node-1'));
});

test.serial('trace reports drops with their reason and hop', async (t) => {
  const noRoute = await trace(lab.stateDir, 'pod-1a', '10.244.77.7', { proto: 'icmp' });
  t.deepEqual(noRoute.drops, [{ node: 'node-1', point: 'routing', reason: 'no-route' }]);
  t.is(noRoute.result.kind, 'icmp-error');

  const ttl = await trace(lab.stateDir, 'pod-1a', ips['pod-2a'], { proto: 'icmp', ttl: 1 });
  t.deepEqual(ttl.drops, [{ node: 'node-1', point: 'routing', reason: 'ttl-exceeded' }]);
  t.true(ttl.hops.some((h) => h.leg === 'error'));

  await callNode(lab.stateDir, 'node-1', 'stack.mtu', { dev: 'flannel.1', mtu: 1400 });
  const mtu = await trace(lab.stateDir, 'pod-1a', ips['pod-2a'], { proto: 'icmp', size: 1422 });
  await callNode(lab.stateDir, 'node-1', 'stack.mtu', { dev: 'flannel.1', mtu: 1450 });
  t.deepEqual(mtu.drops, [{ node: 'node-1', point: 'flannel.1', reason: 'mtu-df' }]);
  t.like(mtu.result, { kind: 'icmp-error', nextHopMtu: 1400 });

  await callNode(lab.stateDir, 'node-1', 'impair.set', { peer: 'node-2', spec: { loss: 1 } });
  const lost = await trace(lab.stateDir, 'pod-1a', ips['pod-2a'], { proto: 'icmp', timeoutMs: 500 });
  await callNode(lab.stateDir, 'node-1', 'impair.clear', { peer: 'node-2' });
  t.deepEqual(lost.drops, [{ node: 'node-1', point: 'eth0', reason: 'impairment-lost' }]);
  t.is(lost.result.kind, 'no-reply');

  const udp = await trace(lab.stateDir, 'pod-1a', ips['pod-3a'], { proto: 'udp', port: 9999 });
  t.deepEqual(udp.drops, [{ node: 'node-3', point: 'udp', reason: 'port-unreachable' }]);
  t.like(udp.result, { kind: 'icmp-error', code: 3 });
});

test.serial('a TCP trace follows the SYN and reports SYN-ACK or RST', async (t) => {
  // busybox pods have no listener: the SYN to port 80 gets a RST from the destination pod.
  const r = await trace(lab.stateDir, 'pod-1a', ips['pod-2a'], { proto: 'tcp', port: 80 });
  t.like(r.result, { kind: 'reply', text: 'RST: connection refused (port closed)' });
  t.true(r.hops.some((h) => h.leg === 'request' && /TCP \d+ > 80 \[S\]/.test(h.summary)));
  t.true(r.hops.some((h) => h.leg === 'reply' && /TCP 80 > \d+ \[R\.\]/.test(h.summary)), r.hops.map((h) => h.summary).join('\n'));
  t.true(r.hops.some((h) => h.point === 'vxlan-encap'));
});

test.serial('the CLI prints trace JSON and an error for a bad destination', async (t) => {
  const run = (args: string[]) =>
    new Promise<{ code: number; out: string; err: string }>((resolve) =>
      execFile(process.execPath, [path.join(ROOT, 'bin/podlab.js'), ...args], { env: { ...process.env, PODLAB_HOME: lab.stateDir } }, (e, out, err) =>
        resolve({ code: e ? 1 : 0, out, err }),
      ),
    );
  const j = await run(['trace', 'pod-1a', ips['pod-3b'], '-o', 'json']);
  t.is(j.code, 0, j.err);
  const r = JSON.parse(j.out) as TraceReport;
  t.is(r.result.kind, 'reply');
  t.true(r.hops.length > 10);
  t.regex((await run(['trace', 'pod-1a', 'nowhere'])).err, /'nowhere' is not an IPv4 address/);
  // Exit status as traceroute users script it: the answer came back, or it did not.
  const dropped = await run(['trace', 'pod-1a', '10.244.99.9']);
  t.is(dropped.code, 1, 'a packet dropped for want of a route exits 1');
  t.regex(dropped.out, /dropped on node-1 at routing: no-route/);
  // Each leg prints as one block: no request hop (a late flooded ARP copy) after the reply's header.
  const text = (await run(['trace', 'pod-1b', ips['pod-2b']])).out;
  const blocks = text.split('\n').filter((l) => /^ {2}(request|reply|ICMP error about the request):$/.test(l));
  t.deepEqual(blocks, ['  request:', '  reply:'], text);
  t.regex((await run(['capture', 'node-1', 'eth7', '-c', '1'])).err, /node-1 has no interface 'eth7'/);
  // Every capture says how to decode what it wrote.
  const hintFile = path.join(tmp, 'hint.pcapng');
  t.regex((await run(['capture', 'node-1', 'cni0', '--duration', '0.3', '-w', hintFile])).err, new RegExp(`decode with: tshark -r ${hintFile.replace(/[.]/g, '\\.')} -d udp\\.port==8472,vxlan`));
  t.regex((await run(['capture', 'node-1', 'eth0', '-f', 'vlan 7', '-c', '1'])).err, /unknown or unsupported term 'vlan'/);
});
