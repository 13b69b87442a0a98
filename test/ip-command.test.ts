/**
 * `ip` over an emulated namespace (netstack/ip-command.ts), against iproute2
 * 6.1's own output for the same configuration, as `ip -n NS ...` printed it
 * for a namespace with flannel.1, cni0 and eth0 (trailing spaces left out).
 */
import test from 'ava';
import { ManualClock } from '../common/clock.ts';
import { runIp } from '../netstack/ip-command.ts';
import { IpStack } from '../netstack/ipv4/ip-stack.ts';
import { NetDevice } from '../netstack/link/netdev.ts';

function flannelNode() {
  const stack = new IpStack('node', { clock: new ManualClock(), forwarding: true });
  const lo = new NetDevice('lo', 'loopback', '00:00:00:00:00:00', 65536, { ifindex: 1 });
  const eth0 = new NetDevice('eth0', 'ether', '02:00:00:00:00:11', 1500, { ifindex: 2 });
  const vtep = new NetDevice('flannel.1', 'vxlan', '62:d3:3b:88:df:09', 1450, { ifindex: 3 });
  const cni0 = new NetDevice('cni0', 'bridge', '8e:3c:2f:17:70:2c', 1450, { ifindex: 4 });
  stack.addInterface(lo, { arp: false });
  stack.addAddress('lo', '127.0.0.1', 8);
  stack.addInterface(eth0, { arp: true });
  stack.addAddress('eth0', '10.250.9.11', 24);
  stack.addInterface(vtep, { arp: false });
  stack.addAddress('flannel.1', '10.244.1.0', 32);
  stack.addInterface(cni0, { arp: true });
  stack.addAddress('cni0', '10.244.1.1', 24);
  stack.routes.replace({ dst: '10.244.2.0', prefixLen: 24, gateway: '10.244.2.0', dev: 'flannel.1', onlink: true, proto: 'boot', scope: 'global' });
  const view = {
    stack,
    links: [lo, eth0, vtep, cni0],
    linkDetail: (d: NetDevice) => (d === vtep ? 'vxlan id 1 local 10.250.9.11 dev eth0 srcport 0 0 dstport 8472 nolearning ttl auto ageing 300 udpcsum noudp6zerocsumtx noudp6zerocsumrx' : undefined),
  };
  return (argv: string) => runIp(argv.split(' '), view);
}

test('ip route get: the route the lookup picks, with its source, as the kernel answers', (t) => {
  const ip = flannelNode();
  t.deepEqual(ip('route get 10.244.2.2'), { stdout: '10.244.2.2 via 10.244.2.0 dev flannel.1 src 10.244.1.0 uid 0\n    cache\n', stderr: '', code: 0 });
  t.is(ip('route get 10.244.1.7').stdout, '10.244.1.7 dev cni0 src 10.244.1.1 uid 0\n    cache\n');
  t.is(ip('route get 10.244.1.1').stdout, 'local 10.244.1.1 dev lo src 10.244.1.1 uid 0\n    cache <local>\n');
  t.is(ip('r g 10.244.2.2 from 10.244.1.0').stdout, '10.244.2.2 from 10.244.1.0 via 10.244.2.0 dev flannel.1 uid 0\n    cache\n');
  t.deepEqual(ip('route get 8.8.8.8'), { stdout: '', stderr: 'RTNETLINK answers: Network is unreachable\n', code: 2 });
  t.deepEqual(JSON.parse(ip('-j route get 10.244.2.2').stdout), [{ dst: '10.244.2.2', gateway: '10.244.2.0', dev: 'flannel.1', prefsrc: '10.244.1.0', flags: [], uid: 0, cache: [] }]);
});

test('ip route and ip -j route: iproute2 lines and JSON keys', (t) => {
  const ip = flannelNode();
  t.is(
    ip('route').stdout,
    '10.244.1.0/24 dev cni0 proto kernel scope link src 10.244.1.1\n10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink\n10.250.9.0/24 dev eth0 proto kernel scope link src 10.250.9.11\n',
  );
  t.is(ip('route show 10.244.2.0/24').stdout, '10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink\n');
  t.is(ip('-d route').stdout.split('\n')[1], 'unicast 10.244.2.0/24 via 10.244.2.0 dev flannel.1 proto boot scope global onlink');
  // The kernel's own JSON for this table (iproute2 6.1, `ip -j route`).
  t.deepEqual(JSON.parse(ip('-j route').stdout), [
    { dst: '10.244.1.0/24', dev: 'cni0', protocol: 'kernel', scope: 'link', prefsrc: '10.244.1.1', flags: [] },
    { dst: '10.244.2.0/24', gateway: '10.244.2.0', dev: 'flannel.1', flags: ['onlink'] },
    { dst: '10.250.9.0/24', dev: 'eth0', protocol: 'kernel', scope: 'link', prefsrc: '10.250.9.11', flags: [] },
  ]);
});

test('ip link: vxlan attributes only with -d; -s counters; -br one line each; -j objects', (t) => {
  const ip = flannelNode();
  const plain = ip('link show flannel.1').stdout;
  t.is(plain, '3: flannel.1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\n    link/ether 62:d3:3b:88:df:09 brd ff:ff:ff:ff:ff:ff\n');
  const d = ip('-d link show dev flannel.1').stdout.split('\n');
  t.is(d[1], '    link/ether 62:d3:3b:88:df:09 brd ff:ff:ff:ff:ff:ff promiscuity 0  allmulti 0 minmtu 68 maxmtu 65535');
  t.regex(d[2], /^ {4}vxlan id 1 local 10\.250\.9\.11 dev eth0 srcport 0 0 dstport 8472 nolearning ttl auto ageing 300 udpcsum noudp6zerocsumtx noudp6zerocsumrx addrgenmode eui64 /);
  t.regex(ip('-s link show eth0').stdout, /\n {4}RX: {2}bytes packets errors dropped {2}missed {3}mcast\n {13}0 {7}0/);
  t.is(ip('-br link show cni0').stdout, 'cni0             UP             8e:3c:2f:17:70:2c <BROADCAST,MULTICAST,UP,LOWER_UP>\n');
  t.like((JSON.parse(ip('-j link show flannel.1').stdout) as object[])[0], { ifindex: 3, ifname: 'flannel.1', flags: ['BROADCAST', 'MULTICAST', 'UP', 'LOWER_UP'], mtu: 1450, operstate: 'UNKNOWN', txqlen: 1000, link_type: 'ether', address: '62:d3:3b:88:df:09' });
  t.is(ip('link show type vxlan').stdout, plain);
  t.deepEqual(ip('link show eth7'), { stdout: '', stderr: 'Device "eth7" does not exist.\n', code: 1 });
});

test('ip addr: one device with -4 and dev; -br; -j addr_info', (t) => {
  const ip = flannelNode();
  t.is(ip('-4 addr show dev cni0').stdout, '4: cni0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UP group default qlen 1000\n    link/ether 8e:3c:2f:17:70:2c brd ff:ff:ff:ff:ff:ff\n    inet 10.244.1.1/24 brd 10.244.1.255 scope global cni0\n       valid_lft forever preferred_lft forever\n');
  t.is(ip('-br addr').stdout.split('\n')[2], 'flannel.1        UNKNOWN        10.244.1.0/32');
  t.like((JSON.parse(ip('-j addr show dev cni0').stdout) as object[])[0], { ifname: 'cni0', addr_info: [{ family: 'inet', local: '10.244.1.1', prefixlen: 24, scope: 'global', label: 'cni0' }] });
});

test('what podlab does not do is refused with the list of what works, never answered with another view', (t) => {
  const ip = flannelNode();
  for (const bad of ['route add 1.2.3.0/24 dev eth0', '-x link', 'tunnel show', '-6 route', 'link show eth0 extra']) {
    const r = ip(bad);
    t.not(r.code, 0, bad);
    t.is(r.stdout, '', bad);
    t.regex(r.stderr, /podlab's ip supports:\n {2}ip \[-d\] \[-s\] \[-br\] \[-j \[-p\]\] link/, bad);
  }
  t.regex(ip('route add 1.2.3.0/24 dev eth0').stderr, /programmed by the agent from the apiserver/);
});
