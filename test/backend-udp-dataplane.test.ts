/**
 * flannel's udp backend in two data planes of one process, joined by real UDP
 * sockets on loopback (127.0.172.0/24, port 8285): flannel0 is a TUN device
 * with MTU 1472 and the /16 route, flanneld carries bare IPv4 packets in UDP
 * datagrams and counts its copies across the kernel/user boundary, and
 * datagrams that are not IPv4 are counted and dropped.
 */
import test from 'ava';
import dgram from 'node:dgram';
import type { NodeDataPlane } from '../node-agent/dataplane.ts';
import { formatIpAddr, formatIpLink, formatIpRoute } from '../netstack/iproute2.ts';
import { addPod, makeNode as makeTestNode, mesh as meshNodes, runPing } from './helpers/dataplane.ts';

const NET = '127.0.172.0/24';

const makeNode = (n: number) => makeTestNode(n, { net: NET, backend: 'udp' });
const mesh = (nodes: NodeDataPlane[]) => meshNodes(nodes, 'udp');
const pod = addPod;

test.serial('flannel0 reads like flannel\'s TUN device; pods ping through flanneld; its copies are counted', async (t) => {
  const n1 = makeNode(1);
  const n2 = makeNode(2);
  await n1.start();
  await n2.start();
  t.teardown(() => Promise.all([n1.close(), n2.close()]));
  mesh([n1, n2]);
  const a = pod(n1, 'a', '10.244.1.2');
  pod(n2, 'c', '10.244.2.2');

  const routes = formatIpRoute(n1.stack);
  t.regex(routes, /^10\.244\.0\.0\/16 dev flannel0 proto kernel scope link src 10\.244\.1\.0$/m);
  t.regex(routes, /^10\.244\.1\.0\/24 dev cni0 proto kernel scope link src 10\.244\.1\.1$/m);
  t.notRegex(routes, /10\.244\.2\.0/, 'the per-node table is flanneld\'s, not the kernel\'s');
  const tun = n1.stack.interfaces.get('flannel0')!.dev;
  t.regex(formatIpLink([tun]), /^\d+: flannel0: <POINTOPOINT,MULTICAST,NOARP,UP,LOWER_UP> mtu 1472 qdisc fq_codel state UNKNOWN mode DEFAULT group default qlen 500\n {4}link\/none\n$/);
  t.regex(formatIpAddr(n1.stack, new Set(['flannel0'])), /inet 10\.244\.1\.0\/16 scope global flannel0/);
  t.is(a.eth0.mtu, 1472);

  const cross = await runPing(a, ['-c', '3', '-i', '0.01', '10.244.2.2']);
  t.regex(cross.out, /64 bytes from 10\.244\.2\.2: icmp_seq=3 ttl=62 time=/, cross.out);
  t.regex(cross.out, /3 packets transmitted, 3 received, 0% packet loss/);
  const c1 = n1.link.stats!().flanneld as { tunReads: number; sent: number; received: number; tunWrites: number; bytesCopied: number };
  // Three requests out and three replies in: each crossed the boundary twice on this node.
  t.deepEqual([c1.tunReads, c1.sent, c1.received, c1.tunWrites], [3, 3, 3, 3]);
  t.is(c1.bytesCopied, 12 * 84);

  t.regex((await runPing(a, ['-c', '1', '-M', 'do', '-s', '1445', '10.244.2.2'])).out, /ping: local error: message too long, mtu=1472/);
  t.regex((await runPing(a, ['-c', '1', '-M', 'do', '-s', '1444', '10.244.2.2'])).out, /1 received/);
  tun.mtu = 1400;
  t.regex((await runPing(a, ['-c', '1', '-M', 'do', '-s', '1422', '10.244.2.2'])).out, /From 10\.244\.1\.1 icmp_seq=1 Frag needed and DF set \(mtu = 1400\)/);
  tun.mtu = 1472;
  t.regex((await runPing(a, ['-c', '1', '-s', '3000', '10.244.2.2'])).out, /3008 bytes from 10\.244\.2\.2/);

  // Not an IPv4 packet on 8285: flanneld counts and drops it; pings go on.
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.172.99', () => r()));
  await new Promise<void>((r) => sock.send(Buffer.from('not an ip packet at all'), 8285, '127.0.172.12', () => r()));
  sock.close();
  await new Promise((r) => setTimeout(r, 100));
  t.is((n2.link.stats!().flanneld as { malformed: number }).malformed, 1);
  t.regex((await runPing(a, ['-c', '1', '10.244.2.2'])).out, /1 received/);
});
