/**
 * Calico IPIP in two data planes of one process, joined by the bare-IPv4 wire
 * on loopback (127.0.171.0/24): pods ping through tunl0, the pod MTU is 1480,
 * a forwarded DF packet past tunl0's MTU gets fragmentation-needed from the
 * node, and protocol-4 packets with a bad inner header are counted and dropped.
 */
import test from 'ava';
import type { NodeDataPlane } from '../node-agent/dataplane.ts';
import { addPod, makeNode as makeTestNode, runPing } from './helpers/dataplane.ts';
import { formatIpRoute } from '../netstack/iproute2.ts';
import { IPPROTO_IPIP } from '../packet/ipip.ts';

const NET = '127.0.171.0/24';

const makeNode = (n: number) => makeTestNode(n, { net: NET, backend: 'ipip', fixedEth0Mac: true });

/** What BGP would install: the peer's eth0 neighbour (the ARP-less wire) and its block through tunl0. */
function mesh(nodes: NodeDataPlane[]): void {
  for (const me of nodes) {
    for (const peer of nodes) {
      if (peer === me) continue;
      me.applyPlan({ op: 'add-neigh', dev: 'eth0', ip: peer.opts.ip, mac: peer.opts.eth0Mac!, node: peer.opts.name });
      me.applyPlan({ op: 'add-route', cidr: peer.opts.podCIDR, via: peer.opts.ip, dev: 'tunl0', onlink: true, proto: 'bird', node: peer.opts.name });
    }
  }
}

const pod = addPod;

test.serial('pods ping through tunl0; MTU 1480; DF past the tunnel gets fragmentation-needed; bad inner packets are dropped', async (t) => {
  const n1 = makeNode(1);
  const n2 = makeNode(2);
  await n1.start();
  await n2.start();
  t.teardown(() => Promise.all([n1.close(), n2.close()]));
  mesh([n1, n2]);
  const a = pod(n1, 'a', '10.244.1.2');
  pod(n2, 'c', '10.244.2.2');
  t.regex(formatIpRoute(n1.stack), /^10\.244\.2\.0\/24 via 127\.0\.171\.12 dev tunl0 proto bird onlink$/m);
  const tunl = n1.stack.interfaces.get('tunl0')!.dev;
  t.is(tunl.mtu, 1480);
  t.is(a.eth0.mtu, 1480);

  const cross = await runPing(a, ['-c', '3', '-i', '0.01', '10.244.2.2']);
  t.regex(cross.out, /64 bytes from 10\.244\.2\.2: icmp_seq=3 ttl=62 time=/, cross.out);
  t.regex(cross.out, /3 packets transmitted, 3 received, 0% packet loss/);
  t.true(tunl.counters.txPackets >= 3 && n2.stack.interfaces.get('tunl0')!.dev.counters.rxPackets >= 3, 'the packets crossed the tunnel');
  // The peer answers on its tunl0 address (TTL 63: one hop).
  t.regex((await runPing(a, ['-c', '1', '10.244.2.0'])).out, /from 10\.244\.2\.0: icmp_seq=1 ttl=63/);
  // Fragmented by the pod, each fragment encapsulated, reassembled by the peer pod.
  t.regex((await runPing(a, ['-c', '1', '-s', '3000', '10.244.2.2'])).out, /3008 bytes from 10\.244\.2\.2/);

  t.regex((await runPing(a, ['-c', '1', '-M', 'do', '-s', '1453', '10.244.2.2'])).out, /ping: local error: message too long, mtu=1480/);
  t.regex((await runPing(a, ['-c', '1', '-M', 'do', '-s', '1452', '10.244.2.2'])).out, /1 received/);
  tunl.mtu = 1400;
  const df = await runPing(a, ['-c', '1', '-M', 'do', '-s', '1422', '10.244.2.2']);
  t.regex(df.out, /From 10\.244\.1\.1 icmp_seq=1 Frag needed and DF set \(mtu = 1400\)/, df.out);
  t.is(tunl.counters.drops.get('frag-needed'), 1);
  tunl.mtu = 1480;

  // A protocol-4 packet whose inner header is damaged: counted on the receiver's tunl0, dropped.
  const rx2 = n2.stack.interfaces.get('tunl0')!.dev;
  const before = rx2.counters.rxPackets;
  n1.stack.send({ dst: '127.0.171.12', protocol: IPPROTO_IPIP, payload: Buffer.from('450000140000400040010000', 'hex'), pmtudisc: 'dont' });
  await new Promise((r) => setTimeout(r, 100));
  t.is(rx2.counters.drops.get('malformed-ipip:truncated'), 1, JSON.stringify(rx2.counters));
  t.is(rx2.counters.rxPackets, before);
  t.regex((await runPing(a, ['-c', '1', '10.244.2.2'])).out, /1 received/);
});
