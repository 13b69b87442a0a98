/**
 * Route injection through a BGPPeer, rerun against a real 3-node BGP lab
 * (127.0.205.0/24): a local process speaking BGP (a podlab BgpSpeaker on
 * 127.0.205.9, iBGP so LOCAL_PREF travels) is made a peer by a BGPPeer object
 * and announces the default route, 10.244.2.0/25 and node-3's own
 * 10.244.3.0/24 with local-pref 200. None is installed on any node, every pod
 * pair keeps 0% loss, and `bgp routes` lists the three as filtered with the
 * rule that filtered each. A BGPFilter then admits one outside prefix, which
 * is installed without a session reset. A second session claiming an
 * Established peer's address is refused, and a flood of connections from an
 * unconfigured address writes one log line.
 */
import test from 'ava';
import fs from 'node:fs';
import net from 'node:net';
import { BgpSpeaker } from '../bgp/index.ts';
import type { Pod } from '../control-plane/types.ts';
import { nodeCommand } from '../cli/commands.ts';
import { defaultBgpPort, labApi } from '../lab/lab.ts';
import { readLab } from '../lab/state.ts';
import { eventually, startLab } from './helpers/lab.ts';

const ATTACKER = '127.0.205.9';
const NODES = ['127.0.205.11', '127.0.205.12', '127.0.205.13'];
const routesOf = (stateDir: string, node: string) => nodeCommand(stateDir, node, ['ip', 'route']);

test.serial('a BGPPeer announcing default, 10.244.2.0/25 and node-3\'s block with local-pref 200: nothing installed, 0% loss, shown as filtered', async (t) => {
  const lab = await startLab('127.0.205.0/24', { backend: 'bgp', bgpHoldTime: 3 });
  t.teardown(() => lab.close());
  const port = defaultBgpPort();
  const attacker = new BgpSpeaker({ asn: 64512, routerId: ATTACKER, listen: { host: ATTACKER, port: 11791 }, holdTime: 9 });
  for (const ip of NODES) attacker.addPeer({ address: ip, port, asn: 64512, passive: true });
  for (const p of ['0.0.0.0/0', '10.244.2.0/25', '10.244.3.0/24']) attacker.announce(p, { nextHop: ATTACKER, localPref: 200 });
  await attacker.start();
  t.teardown(() => attacker.stop());
  const api = labApi(lab.rec);
  await api.create('bgppeers', { apiVersion: 'projectcalico.org/v3', kind: 'BGPPeer', metadata: { name: 'intruder' }, spec: { peerIP: `${ATTACKER}:11791`, asNumber: 64512, filters: ['intruder-in'] } });
  await eventually(() => attacker.summary().peers.every((p) => p.state === 'Established') || undefined, 30_000, 100);

  // Every node received the three prefixes and filtered each, naming the rule.
  for (const node of ['node-1', 'node-2', 'node-3']) {
    const shown = await eventually(async () => {
      const r = await nodeCommand(lab.stateDir, node, ['bgp', 'routes']);
      return (r.match(new RegExp(`from ${ATTACKER.replace(/\./g, '\\.')}`, 'g')) ?? []).length === 3 ? r : undefined;
    }, 10_000, 100);
    const filtered = shown.slice(shown.indexOf('Filtered'));
    // The BGPPeer names a BGPFilter that does not exist yet: no filter, nothing imported.
    t.regex(filtered, /0\.0\.0\.0\/0 +via 127\.0\.205\.9 from 127\.0\.205\.9 as-path \[\] local-pref 200 \(filtered: no BGPFilter on BGPPeer intruder: nothing is imported\)/);
    t.regex(filtered, /10\.244\.2\.0\/25 .*\(filtered: inside IP pool 10\.244\.0\.0\/16/);
    t.regex(filtered, /10\.244\.3\.0\/24 .*\(filtered: inside IP pool 10\.244\.0\.0\/16/);
    const table = await routesOf(lab.stateDir, node);
    t.notRegex(table, new RegExp(`via ${ATTACKER.replace(/\./g, '\\.')}`), `${node}: nothing via the intruder`);
    t.notRegex(table, /^default/m, `${node}: no default route`);
    t.notRegex(table, /10\.244\.2\.0\/25/);
  }
  t.regex(await nodeCommand(lab.stateDir, 'node-1', ['bgp', 'summary']), /127\.0\.205\.9 +64512 +iBGP +up .*Established +3\/0\//);

  // Pods keep talking: every pair, 0% loss.
  const pods = (await api.list<Pod>('pods', { namespace: 'default' })).items;
  const pairs = pods.flatMap((a) => pods.filter((b) => b !== a).map((b) => [a, b] as const));
  const results = await Promise.all(pairs.map(([a, b]) => lab.exec(a.metadata.name, ['ping', '-c', '3', '-i', '0.05', b.status!.podIP!])));
  results.forEach((r, i) => t.regex(r.out, /3 received, 0% packet loss/, `${pairs[i][0].metadata.name} -> ${pairs[i][1].metadata.name}`));
  t.log(`${pairs.length} pod pairs, 0% loss with the intruder's three routes filtered`);

  // A BGPFilter admitting one outside prefix: re-judged in place, installed without a new session.
  attacker.announce('198.51.100.0/24', { nextHop: ATTACKER });
  await api.create('bgpfilters', { apiVersion: 'projectcalico.org/v3', kind: 'BGPFilter', metadata: { name: 'intruder-in' }, spec: { importV4: [{ action: 'Accept', matchOperator: 'In', cidr: '198.51.100.0/24' }, { action: 'Reject', matchOperator: 'In', cidr: '0.0.0.0/0' }] } });
  await eventually(async () => /198\.51\.100\.0\/24 via 127\.0\.205\.9 dev eth0 proto bird/.test(await routesOf(lab.stateDir, 'node-1')), 10_000, 100);
  const after = await nodeCommand(lab.stateDir, 'node-1', ['bgp', 'routes']);
  t.regex(after, /0\.0\.0\.0\/0 .*\(filtered: BGPFilter intruder-in importV4\[1\] Reject In 0\.0\.0\.0\/0\)/);
  t.notRegex(await routesOf(lab.stateDir, 'node-1'), /^default/m);

  // A second session claiming node-2's address (bound to it on loopback) while node-2's is Established: refused.
  const impostor = new BgpSpeaker({ asn: 64512, routerId: '127.0.205.99', holdTime: 9, connectRetryMs: 200, connectRetryMaxMs: 400 });
  impostor.addPeer({ address: NODES[0], port, asn: 64512, passive: false, localAddress: NODES[1] });
  impostor.announce('10.244.2.0/24', { nextHop: ATTACKER, localPref: 500 });
  await impostor.start();
  t.teardown(() => impostor.stop());
  await new Promise((r) => setTimeout(r, 3000));
  t.not(impostor.summary().peers[0].state, 'Established', 'the impostor never gets a session');
  t.regex(await routesOf(lab.stateDir, 'node-1'), /10\.244\.2\.0\/24 via 127\.0\.205\.12 dev eth0 proto bird/, "node-2's route is untouched");
  t.regex(await nodeCommand(lab.stateDir, 'node-1', ['bgp', 'summary']), /127\.0\.205\.12 +64512 +iBGP +up/);
  await impostor.stop();

  // 300 connections from an unconfigured address: one WARN line, not 300.
  for (let i = 0; i < 300; i++) {
    await new Promise<void>((resolve) => {
      const s = net.connect({ host: NODES[0], port, localAddress: '127.0.205.8' });
      s.on('close', () => resolve()).on('error', () => resolve());
    });
  }
  const log = readLab(lab.stateDir)!.procs.find((p) => p.name === 'node-1')!.log;
  const lines = await eventually(() => {
    const n = fs.readFileSync(log, 'utf8').split('\n').filter((l) => l.includes('unconfigured address') && l.includes('127.0.205.8'));
    return n.length ? n : undefined;
  }, 5000, 100);
  t.is(lines.length, 1, lines.join('\n'));
  t.log(`300 rejected connections: ${lines.length} log line`);
});
