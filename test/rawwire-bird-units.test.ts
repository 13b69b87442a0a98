/**
 * The pure parts of the raw-frame wire and the kernel node's BIRD, checked
 * against the real tools where they exist:
 * - the one "what the kernel keeps" split, rendered as a pcap filter and as
 *   an nftables rule set: golden text, and `nft -f` accepts the rule set in a
 *   throwaway namespace (root);
 * - raw frames are refused outside a podlab namespace or a container;
 * - bird.conf for a kernel node: golden text, Calico's passive rule, and
 *   `bird -p` (BIRD's own parser) accepts it;
 * - system tools are found by absolute path, never through npm's .bin.
 * Without root, nft or bird: those checks are skipped with the reason (failed in CI).
 */
import test from 'ava';
import type { BgpFilter } from '../control-plane/calico.ts';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { KERNEL_EPHEMERAL, RawWire, claimFilter, claimRuleset, pcapImmediateModeLikely, rawWireAllowedHere, type KernelOwned } from '../overlay/underlay-raw.ts';
import { birdConfig, birdPaths, birdProtocolName, checkBirdConfig } from '../backends/bgp/bird.ts';
import { systemTool } from '../common/system-tool.ts';
import { isRoot } from '../hostnet/netns.ts';
import { requireOrSkip } from './helpers/lab.ts';

const owned: KernelOwned = { nodeIp: '10.250.0.11', mac: '02:9c:98:39:42:7b', bgpPort: 179, nodePorts: [30000, 32767], clusterCidr: '10.244.0.0/16', ephemeral: KERNEL_EPHEMERAL, underlay: '10.250.0.0/24' };

test('the claim filter: IPv4 to our MAC, less BGP, NodePorts from outside the cluster, the kernel\'s ephemeral ports and the LB addresses it holds', (t) => {
  t.is(
    claimFilter(owned),
    'ether dst 02:9c:98:39:42:7b and ip and not ((tcp port 179) or (dst host 10.250.0.11 and (tcp or udp) and ((dst portrange 30000-32767 and not src net 10.244.0.0/16) or dst portrange 61000-65535)) or (dst net 10.250.0.0/24 and not dst host 10.250.0.11))',
  );
  // No `inbound`: libpcap 1.10 lost the first frame with it.
  t.notRegex(claimFilter(owned), /inbound/);
  // The emulated stack's ephemeral range (32768-60999) is outside what the kernel keeps.
  t.true(KERNEL_EPHEMERAL[0] > 60999);
});

test('the nftables rule set drops in the kernel exactly what the filter claims', (t) => {
  t.is(
    claimRuleset(owned),
    [
      'table ip podlab_rawwire {',
      '  chain claim {',
      '    type filter hook prerouting priority raw; policy accept;',
      '    iifname != "eth0" accept',
      '    ether daddr != 02:9c:98:39:42:7b accept',
      '    tcp sport 179 accept',
      '    tcp dport 179 accept',
      '    ip daddr 10.250.0.11 ip saddr != 10.244.0.0/16 meta l4proto { tcp, udp } th dport 30000-32767 accept',
      '    ip daddr 10.250.0.11 meta l4proto { tcp, udp } th dport 61000-65535 accept',
      '    ip daddr 10.250.0.0/24 ip daddr != 10.250.0.11 accept',
      '    counter drop comment "the emulated node took it through libpcap"',
      '  }',
      '}',
      '',
    ].join('\n'),
  );
});

test('nft accepts the rule set (in a throwaway podlab namespace)', (t) => {
  const nft = systemTool('nft');
  if (!requireOrSkip(t, isRoot() && !!nft, isRoot() ? 'nftables (nft) is not installed' : 'needs root (a network namespace)')) return;
  const ns = `podlab-nftu-${process.pid}`;
  execFileSync('ip', ['netns', 'add', ns]);
  try {
    execFileSync('ip', ['netns', 'exec', ns, nft!, '-f', '-'], { input: claimRuleset(owned) });
    const listed = execFileSync('ip', ['netns', 'exec', ns, nft!, 'list', 'table', 'ip', 'podlab_rawwire'], { encoding: 'utf8' });
    t.regex(listed, /hook prerouting priority raw/);
    t.regex(listed, /ip saddr != 10\.244\.0\.0\/16 meta l4proto \{ tcp, udp \} th dport 30000-32767 accept/);
  } finally {
    execFileSync('ip', ['netns', 'del', ns]);
  }
});

test('raw frames are refused outside a podlab namespace or a container', async (t) => {
  // The test runs in the root namespace (or a developer's own): never a podlab-* one.
  const why = rawWireAllowedHere();
  if (fs.existsSync('/.dockerenv')) {
    t.is(why, undefined);
    return;
  }
  t.regex(why!, /not in a podlab network namespace|not a podlab one/);
  const raw = new RawWire({ dev: 'lo', mac: '00:00:00:00:00:00', nodeIp: '127.0.0.1', bgpPort: 179, nodePorts: [30000, 32767], clusterCidr: '10.244.0.0/16' });
  await t.throwsAsync(raw.start(), { name: 'RawWireError', message: /refusing raw frames on lo/ });
});

const birdInput = {
  node: 'knode-1',
  routerId: '10.250.0.14',
  asn: 64512,
  podCIDR: '10.244.4.0/24',
  port: 179,
  holdTime: 9,
  peers: [
    { name: 'node-2', ip: '10.250.0.12', asn: 64512, port: 179 },
    { name: 'node-1', ip: '10.250.0.11', asn: 64512, port: 179 },
    {
      name: 'tor "switch"', ip: '10.250.0.200', asn: 65000, port: 1179,
      external: { name: 'tor', filters: [{ apiVersion: 'projectcalico.org/v3', kind: 'BGPFilter', metadata: { name: 'tor-in' }, spec: { importV4: [{ action: 'Accept', matchOperator: 'Equal', cidr: '0.0.0.0/0' }, { action: 'Reject', matchOperator: 'NotIn', cidr: '198.51.100.0/24' }], exportV4: [{ action: 'Reject', matchOperator: 'In', cidr: '10.244.4.128/25' }] } } as BgpFilter] },
    },
  ],
  pools: ['10.244.0.0/16'],
  owners: [
    { name: 'node-1', ip: '10.250.0.11', blocks: ['10.244.1.0/24'] },
    { name: 'node-2', ip: '10.250.0.12', blocks: ['10.244.2.0/24'] },
    { name: 'knode-4', ip: '10.250.0.14', blocks: ['10.244.4.0/24'] },
  ],
};

test('bird.conf for a kernel node: Calico\'s shape, sorted peers, passive towards greater IPs', (t) => {
  const conf = birdConfig(birdInput);
  t.regex(conf, /^router id 10\.250\.0\.14;$/m);
  t.regex(conf, /protocol static podcidr \{\n {2}ipv4;\n {2}route 10\.244\.4\.0\/24 blackhole;\n\}/);
  t.regex(conf, /export where proto != "podcidr";/);
  t.regex(conf, /local 10\.250\.0\.14 port 179 as 64512;\n {2}direct;\n {2}hold time 9;\n {2}connect delay time 1;\n {2}connect retry time 5;/);
  // Sorted by IP as a string; "10.250.0.200" > "10.250.0.14" as strings: BIRD waits for that peer to dial.
  const order = [...conf.matchAll(/^protocol bgp (\S+)/gm)].map((m) => m[1]);
  t.deepEqual(order, ['Mesh_10_250_0_11', 'Mesh_10_250_0_12', 'Mesh_10_250_0_200']);
  const block = (ip: string) => conf.slice(conf.indexOf(`protocol bgp ${birdProtocolName(ip)} `)).split('\n}')[0];
  t.notRegex(block('10.250.0.11'), /passive/);
  t.regex(block('10.250.0.200'), /passive on;/);
  t.regex(block('10.250.0.200'), /neighbor 10\.250\.0\.200 port 1179 as 65000;/);
  t.regex(block('10.250.0.200'), /description "tor switch";/);
});

test('bird.conf filters: a node peer only its block in the pools, a BGPPeer its BGPFilter rules in order, no default unless accepted', (t) => {
  const conf = birdConfig(birdInput);
  const filt = (kind: string, ip: string) => conf.slice(conf.indexOf(`filter podlab_${kind}_${birdProtocolName(ip)} {`)).split('\n}')[0];
  const n2 = filt('import', '10.250.0.12');
  t.regex(n2, /if net = 0\.0\.0\.0\/0 then reject "default route: never from a node";/);
  t.regex(n2, /if !\(net ~ \[ 10\.244\.0\.0\/16\+ \]\) then reject "outside the IP pools";/);
  t.regex(n2, /if !defined\(bgp_originator_id\) then \{\n {4}if net ~ \[ 10\.244\.2\.0\/24\+ \] then accept "node-2's block";\n {4}reject "not node-2's block";/);
  t.regex(n2, /if bgp_originator_id = 10\.250\.0\.11 && net ~ \[ 10\.244\.1\.0\/24\+ \] then accept "node-1's block";/);
  const tor = filt('import', '10.250.0.200');
  const lines = tor.split('\n').map((l) => l.trim());
  t.deepEqual(lines.slice(1), [
    `if net ~ [ 10.244.0.0/16+ ] then reject "inside an IP pool: only nodes announce the cluster's addresses";`,
    'if net = 0.0.0.0/0 then accept "BGPFilter tor-in importV4[0] Accept Equal 0.0.0.0/0";',
    'if !(net ~ [ 198.51.100.0/24+ ]) then reject "BGPFilter tor-in importV4[1] Reject NotIn 198.51.100.0/24";',
    'if net = 0.0.0.0/0 then reject "default route: only a BGPFilter rule may accept it";',
    'accept;',
  ]);
  t.regex(filt('export', '10.250.0.200'), /if net ~ \[ 10\.244\.4\.128\/25\+ \] then reject "BGPFilter tor-in exportV4\[0\] Reject In 10\.244\.4\.128\/25";/);
  t.regex(conf, /ipv4 \{ import keep filtered on; import filter podlab_import_Mesh_10_250_0_200; export filter podlab_export_Mesh_10_250_0_200; \};/);
  const bare = birdConfig({ ...birdInput, peers: [{ ...birdInput.peers[2], external: { name: 'tor', filters: [] } }] });
  t.regex(bare, /reject "no BGPFilter on BGPPeer tor: nothing is imported";/);
});

test('BIRD\'s own parser accepts the configuration (bird -p)', async (t) => {
  if (!requireOrSkip(t, !!systemTool('bird'), 'bird (bird2) is not installed')) return;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-bird-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'bird.conf');
  fs.writeFileSync(file, birdConfig(birdInput));
  await t.notThrowsAsync(checkBirdConfig(file));
  fs.writeFileSync(file, birdConfig({ ...birdInput, peers: [] }));
  await t.notThrowsAsync(checkBirdConfig(file));
  fs.writeFileSync(file, 'router id nonsense;\n');
  await t.throwsAsync(checkBirdConfig(file), { name: 'BirdError', message: /bird -p -c .*bird\.conf/ });
});

test('BIRD\'s control socket stays within the Unix socket path limit', (t) => {
  t.is(birdPaths('/var/lib/podlab', 'knode-1').ctl, '/var/lib/podlab/nodes/knode-1/bird.ctl');
  const deep = birdPaths(`/tmp/${'x'.repeat(120)}`, 'knode-1').ctl;
  t.true(Buffer.byteLength(deep) < 108);
  t.regex(deep, /^\/tmp\/podlab-[0-9a-f]{12}-bird\.ctl$/);
});

test('libpcap.so is there for cap to turn on immediate mode (libpcap-dev; required in CI)', (t) => {
  if (!requireOrSkip(t, pcapImmediateModeLikely(), 'libpcap.so (libpcap-dev) is not installed: raw frames would come in blocks, up to a second late')) return;
  // The dynamic linker, which is what dlopen("libpcap.so") asks, agrees.
  t.regex(execFileSync(systemTool('ldconfig') ?? 'ldconfig', ['-p'], { encoding: 'utf8' }), /^\s*libpcap\.so \(/m);
});

test('system tools by absolute path, never npm\'s .bin (which ships an unrelated `nft`)', (t) => {
  const nft = systemTool('nft');
  if (nft) t.regex(nft, /^\/(usr\/)?(local\/)?s?bin\/nft$/);
  t.is(systemTool('podlab-no-such-tool'), undefined);
  t.regex(systemTool('sh')!, /^\/(usr\/)?bin\/sh$/);
});
