/**
 * MetalLB's layer-2 mode in a netns lab, as root: 2 emulated nodes in
 * namespaces `podlab-tl2-*` on the bridge podlab0 (underlay 10.250.170.0/24,
 * inside those namespaces only). The lab's default pool hands out
 * 10.250.170.200; the elected node adds it to its namespace's eth0 (so its
 * kernel answers ARP on the bridge) and sends a gratuitous ARP, and the real
 * curl in the underlay namespace reaches a pod through the node's real socket
 * on it. tshark on the bridge shows the gratuitous ARP from the owner's eth0
 * MAC. SIGKILL of the owner's agent (by the pid in lab.json): its kernel drops
 * the address when the lifetime it no longer renews runs out, the other node
 * is elected within L2_FAILOVER_MS, sends its own gratuitous ARP, the client's
 * neighbour entry moves to the new MAC and curl works again. Every namespace
 * is gone afterwards. Twice: vxlan, and host-gw whose raw-frame wire must
 * leave the LB address's frames to the kernel. Not root or a tool missing: skipped with the reason,
 * failed in CI.
 */
import test from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { labApi, killProcess } from '../lab/lab.ts';
import type { Lease } from '../control-plane/core-resources.ts';
import type { Service } from '../control-plane/service-resources.ts';
import type { Pod } from '../control-plane/types.ts';
import { L2_ADDRESS_LIFETIME_S, L2_FAILOVER_MS } from '../edge/l2-speaker.ts';
import { holdLbAddress } from '../hostnet/lb-address.ts';
import { hasIproute2, isRoot, listNetnsSync } from '../hostnet/netns.ts';
import { capAvailable } from '../overlay/underlay-raw.ts';
import { httpPod, lbService } from './helpers/lb.ts';
import { eventually, hasTool, requireOrSkip, startLab } from './helpers/lab.ts';

const PREFIX = 'podlab-tl2';
const NET = '10.250.170';
const LB_IP = `${NET}.200`;
const UNDERLAY = `${PREFIX}-underlay`;

const tools = ['tshark', 'curl', 'arping'];
const missing = !isRoot() ? 'netns labs need root' : !hasIproute2() ? 'iproute2 (ip) is not installed' : tools.filter((x) => !hasTool(x)).map((x) => `${x} is not installed`).join(', ');

const ipj = <T>(ns: string, ...args: string[]): T => JSON.parse(execFileSync('ip', ['-n', ns, '-j', ...args], { encoding: 'utf8' }) || '[]') as T;
const macOf = (node: string) => ipj<{ address: string }[]>(`${PREFIX}-${node}`, 'link', 'show', 'eth0')[0].address;
const holds = (node: string) => ipj<{ addr_info: { local: string }[] }[]>(`${PREFIX}-${node}`, '-4', 'addr', 'show', 'dev', 'eth0').some((l) => l.addr_info.some((a) => a.local === LB_IP));
const neighbourMac = () => ipj<{ lladdr?: string; state?: string[] }[]>(UNDERLAY, 'neigh', 'show', LB_IP)[0]?.lladdr;

/** The real curl inside the underlay namespace: the body, or '' when it does not answer within a second. */
function curl(): string {
  try {
    return execFileSync('ip', ['netns', 'exec', UNDERLAY, 'curl', '-s', '-m', '1', `http://${LB_IP}/`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '';
  }
}

const l2Failover = test.macro(async (t, backend: 'vxlan' | 'host-gw') => {
  if (!requireOrSkip(t, !missing, missing)) return;
  // host-gw puts pod packets on eth0 as raw frames: the kernel must still get the LB address's.
  if (backend === 'host-gw' && !requireOrSkip(t, capAvailable() && hasTool('nft'), 'raw frames need the cap addon (libpcap) and nftables')) return;
  const before = listNetnsSync().filter((n) => n.startsWith(`${PREFIX}-`));
  t.deepEqual(before, [], 'no namespaces of this test left from an earlier run');
  const lab = await startLab('127.0.0.0/24', { mode: 'netns', backend, nodes: 2, podsPerNode: 0, netnsPrefix: PREFIX, underlayNet: `${NET}.0/24` });
  let closed = false;
  const closeLab = async () => {
    if (!closed) await lab.close();
    closed = true;
  };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-tl2-cap-'));
  const file = path.join(dir, 'arp.pcapng');
  // Every ARP frame on the bridge, from before the Service exists.
  const cap = spawn('ip', ['netns', 'exec', UNDERLAY, 'tshark', '-i', 'podlab0', '-f', 'arp', '-a', 'duration:180', '-w', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  t.teardown(async () => {
    if (cap.exitCode === null) cap.kill('SIGKILL');
    await closeLab();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  let capErr = '';
  cap.stderr.on('data', (d) => (capErr += d));
  const capExited = new Promise<void>((r) => cap.on('exit', () => r()));
  await eventually(() => /Capturing on/.test(capErr), 30_000);

  const api = labApi(lab.rec);
  for (const p of [httpPod('web-1', 'node-1', 'web'), httpPod('web-2', 'node-2', 'web')]) await api.create('pods', p, 'default');
  await api.create('services', lbService('web', 'web'), 'default');
  await eventually(async () => (await api.list<Pod>('pods')).items.filter((p) => p.metadata.name.startsWith('web-')).every((p) => p.status?.phase === 'Running'), 30_000);
  t.is(await eventually(async () => (await api.get<Service>('services', 'web', 'default'))?.status?.loadBalancer?.ingress?.[0]?.ip, 10_000), LB_IP, 'the default pool is <underlay>.200/29');

  const holder = async () => (await api.get<Lease>('leases', `l2-${LB_IP.replaceAll('.', '-')}`, 'metallb-system'))?.spec?.holderIdentity;
  const first = await eventually(async () => {
    const h = await holder();
    return h && holds(h) ? h : undefined;
  }, 15_000);
  const other = first === 'node-1' ? 'node-2' : 'node-1';
  const [firstMac, otherMac] = [macOf(first), macOf(other)];
  t.false(holds(other), 'only the elected node\'s namespace holds the address');

  // The real curl from the underlay namespace reaches a pod through the elected node.
  const body = await eventually(() => curl(), 15_000, 200);
  t.regex(body, /^web-\d on node-\d$/);
  t.is(neighbourMac(), firstMac, 'the client resolved the LB IP to the elected node\'s eth0');

  // SIGKILL the owner's agent (by its pid in lab.json) and measure until curl answers again.
  const pid = lab.rec.procs.find((p) => p.name === first)!.pid;
  t.true(pid > 0);
  await killProcess(lab.stateDir, first, { kill: true });
  const killedAt = performance.now();
  const killedEpoch = Date.now() / 1000;
  let again = '';
  while (performance.now() - killedAt < L2_FAILOVER_MS + 10_000) {
    again = curl();
    if (again) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const interruption = performance.now() - killedAt;
  t.log(`${backend}: curl to ${LB_IP} answered again ${interruption.toFixed(0)} ms after SIGKILL of ${first} (pid ${pid}; bound L2_FAILOVER_MS ${L2_FAILOVER_MS} ms): ${again}`);
  t.regex(again, /^web-\d on node-\d$/);
  t.is(await holder(), other);
  t.true(holds(other));
  t.false(holds(first), 'the dead node\'s kernel dropped the address it no longer renewed');
  t.is(neighbourMac(), otherMac, 'the client\'s neighbour entry moved to the new owner\'s MAC');
  t.true(interruption < L2_FAILOVER_MS + 3000, `${interruption.toFixed(0)} ms`);
  // The owner renews the kernel lifetime every round: past one lifetime it still holds the address.
  await new Promise((r) => setTimeout(r, (L2_ADDRESS_LIFETIME_S + 1) * 1000));
  t.true(holds(other), 'the owner kept renewing it');
  // One curl may miss its 1 s on a loaded machine (raw frames through libpcap): it gets three tries.
  t.regex(await eventually(() => curl(), 3_000, 100), /^web-\d on node-\d$/);

  // The gratuitous ARPs on the bridge: one from each owner's eth0 MAC, sender = target = the LB IP. The new
  // owner sends its own once its sockets are bound, so a client may get there first: wait for its log line.
  const otherLog = lab.rec.procs.find((p) => p.name === other)!.log;
  await eventually(() => /gratuitous ARP \{.*"result":"sent"/.test(fs.readFileSync(otherLog, 'utf8')), 10_000, 100);
  cap.kill('SIGINT');
  await capExited;
  const fields = ['frame.time_epoch', 'eth.src', 'arp.opcode', 'arp.src.hw_mac', 'arp.src.proto_ipv4', 'arp.dst.proto_ipv4', 'arp.isgratuitous'];
  const rows = execFileSync('tshark', ['-r', file, '-T', 'fields', '-E', 'separator=|', ...fields.flatMap((f) => ['-e', f])], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
    .trim()
    .split('\n')
    .map((l) => l.split('|'));
  const garps = rows.filter((r) => r[4] === LB_IP && r[5] === LB_IP && r[6] === '1');
  const atKill = (r: string[]) => `${((Number(r[0]) - killedEpoch) * 1000).toFixed(0)} ms`;
  t.log(`gratuitous ARPs for ${LB_IP}, from the SIGKILL: ${garps.map((r) => `${atKill(r)} from ${r[1]}`).join(', ')} (${first} ${firstMac}, ${other} ${otherMac}; ${rows.length} ARP frames)`);
  const fromFirst = garps.findIndex((r) => r[1] === firstMac && r[3] === firstMac);
  const fromOther = garps.findIndex((r) => r[1] === otherMac && r[3] === otherMac);
  t.true(fromFirst >= 0, 'a gratuitous ARP from the first owner\'s eth0');
  t.true(fromOther > fromFirst, 'and then one from the new owner\'s eth0');
  // The takeover itself, on the wire: the new owner's gratuitous ARP within the bound (plus ip and arping start-up).
  const takeoverMs = (Number(garps[fromOther]?.[0]) - killedEpoch) * 1000;
  t.true(takeoverMs > 0 && takeoverMs < L2_FAILOVER_MS + 1000, `${takeoverMs.toFixed(0)} ms`);

  await closeLab();
  t.deepEqual(listNetnsSync().filter((n) => n.startsWith(`${PREFIX}-`)), [], 'every namespace of the lab is gone');
});

test.serial('L2 in a netns lab (vxlan): the elected node\'s eth0 answers ARP for the LB IP, gratuitous ARP on the bridge, failover after SIGKILL', l2Failover, 'vxlan');
test.serial('L2 in a netns lab (host-gw, raw frames on eth0): the same, the kernel keeping the LB address\'s frames', l2Failover, 'host-gw');

test('an LB address goes on eth0 only inside a podlab namespace: refused here, before anything is touched', async (t) => {
  await t.throwsAsync(holdLbAddress(LB_IP, { dev: 'eth0', lifetimeS: L2_ADDRESS_LIFETIME_S }), { message: /not in a podlab network namespace/ });
});
