/**
 * A real BIRD 2 joins a running Calico-style lab the Calico way: a BGPPeer
 * object (with a BGPFilter admitting its prefix) applied to the apiserver
 * makes every node agent peer with it. Both
 * directions are checked: BIRD learns every node's podCIDR with that node as
 * next hop (`birdc show route`), and every node installs the route BIRD
 * announces (`proto bird`). BIRD frozen → the nodes withdraw its route when
 * their hold timer expires.
 *
 * Safety: BIRD has no `protocol kernel` (nothing reaches the kernel's routing
 * tables) and listens on a loopback address on an unprivileged port.
 */
import test from 'ava';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { nodeCommand } from '../cli/commands.ts';
import { defaultBgpPort, labApi } from '../lab/lab.ts';
import { eventually, hasTool, requireOrSkip, startLab } from './helpers/lab.ts';

const BIRD_IP = '127.0.79.5';
const BIRD_PORT = 11790;

function birdConf(nodes: string[], nodePort: number): string {
  return `# podlab backend-bird test. No "protocol kernel": nothing reaches the kernel's routing tables.
router id ${BIRD_IP};
log stderr all;
protocol device {}
protocol static st {
  ipv4;
  route 10.96.0.0/16 blackhole;
}
${nodes
  .map(
    (ip, i) => `protocol bgp node${i + 1} {
  local ${BIRD_IP} port ${BIRD_PORT} as 64512;
  neighbor ${ip} port ${nodePort} as 64512;
  hold time 3;
  connect retry time 1;
  error wait time 1, 2;
  ipv4 { import all; export where proto = "st"; };
}`,
  )
  .join('\n')}
`;
}

function birdc(sock: string, args: string[]): Promise<string> {
  return promisify(execFile)('birdc', ['-s', sock, ...args], { timeout: 10_000 }).then((r) => r.stdout);
}

test('BIRD peers with the node agents through a BGPPeer; routes flow both ways; a frozen BIRD is withdrawn', async (t) => {
  if (!requireOrSkip(t, hasTool('bird') || fs.existsSync('/usr/sbin/bird'), 'bird2 is not installed')) return;
  const lab = await startLab('127.0.79.0/24', { nodes: 2, podsPerNode: 0, backend: 'bgp', bgpHoldTime: 3 });
  t.teardown(() => lab.close());
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-bird-'));
  const sock = path.join(dir, 'bird.ctl');
  fs.writeFileSync(path.join(dir, 'bird.conf'), birdConf(['127.0.79.11', '127.0.79.12'], defaultBgpPort()));
  const bird: ChildProcess = spawn('/usr/sbin/bird', ['-f', '-c', path.join(dir, 'bird.conf'), '-s', sock, '-P', path.join(dir, 'bird.pid')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let birdLog = '';
  bird.stderr!.on('data', (d) => (birdLog += d));
  t.teardown(() => {
    try {
      bird.kill('SIGCONT');
    } catch {
      /* gone */
    }
    bird.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  });

  // A BGPPeer imports only what its BGPFilters accept (backends/bgp/filters.ts).
  await labApi(lab.rec).create('bgpfilters', {
    apiVersion: 'projectcalico.org/v3',
    kind: 'BGPFilter',
    metadata: { name: 'bird-in' },
    spec: { importV4: [{ action: 'Accept', matchOperator: 'In', cidr: '10.96.0.0/16' }, { action: 'Reject' }] },
  });
  await labApi(lab.rec).create('bgppeers', {
    apiVersion: 'projectcalico.org/v3',
    kind: 'BGPPeer',
    metadata: { name: 'bird' },
    spec: { peerIP: `${BIRD_IP}:${BIRD_PORT}`, asNumber: 64512, filters: ['bird-in'] },
  });

  // BIRD learns both podCIDRs, each with its node as next hop.
  const shown = await eventually(async () => {
    const out = await birdc(sock, ['show', 'route', 'all']).catch(() => '');
    return /10\.244\.1\.0\/24/.test(out) && /10\.244\.2\.0\/24/.test(out) ? out : undefined;
  }, 30_000, 200).catch((e) => {
    throw new Error(`${e}\nbird log:\n${birdLog}`);
  });
  t.regex(shown, /10\.244\.1\.0\/24[\s\S]*?BGP\.next_hop: 127\.0\.79\.11/);
  t.regex(shown, /10\.244\.2\.0\/24[\s\S]*?BGP\.next_hop: 127\.0\.79\.12/);

  // Every node installs BIRD's route.
  for (const node of ['node-1', 'node-2']) {
    await eventually(async () => /10\.96\.0\.0\/16 via 127\.0\.79\.5 dev eth0 proto bird/.test(await nodeCommand(lab.stateDir, node, ['ip', 'route'])), 20_000, 200);
  }
  t.regex(await nodeCommand(lab.stateDir, 'node-1', ['bgp', 'summary']), /127\.0\.79\.5 +64512 +iBGP +up/);

  // Frozen BIRD: the hold timer (3 s) expires on the nodes and its route goes.
  bird.kill('SIGSTOP');
  const t0 = Date.now();
  await eventually(async () => !/10\.96\.0\.0\/16/.test(await nodeCommand(lab.stateDir, 'node-1', ['ip', 'route'])), 20_000, 100);
  const took = Date.now() - t0;
  t.true(took >= 1500, `withdrawn by the hold timer (${took} ms)`);
  t.log(`BIRD's route withdrawn ${took} ms after SIGSTOP`);
});
