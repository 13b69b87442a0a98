/**
 * The NetworkPolicy engine against the truth tables (test/helpers/netpol-cases.ts):
 * every cell of the 9×9 matrix on TCP 80 and 81 for every case, plus the
 * points a matrix of pods cannot show (non-pod peers, named ports resolved on
 * the destination, Service traffic judged after DNAT, policyTypes defaulting).
 */
import test from 'ava';
import { PolicySet, formatDirVerdict, policyPods, policyTypesOf } from '../policy/engine.ts';
import { diffMatrix, formatMatrix, parseMatrix, reachability } from '../policy/reachability.ts';
import { NAMESPACES, NETPOL_CASES, POD_NAMES, netpolPod, np, nsLabels } from './helpers/netpol-cases.ts';
import type { PolicyPod } from '../policy/types.ts';

/** The nine pods spread over three nodes' pod CIDRs, as a lab would place them. */
function pods(): PolicyPod[] {
  return policyPods(
    POD_NAMES.map((n, i) => {
      const [ns, letter] = n.split('/');
      const p = netpolPod(ns, letter);
      p.status = { phase: 'Running', podIP: `10.244.${i % 3}.${10 + i}` };
      return p;
    }),
  );
}
const namespaces = NAMESPACES.map((n) => ({ name: n, labels: nsLabels(n) }));
const ipOf = (ps: PolicyPod[]) => (name: string) => ps.find((p) => `${p.namespace}/${p.name}` === name)!.ip;

test('truth tables: at least 15 policies', (t) => {
  t.true(NETPOL_CASES.length >= 15);
});

for (const c of NETPOL_CASES) {
  test(`truth table: ${c.name}`, (t) => {
    const ps = pods();
    const set = new PolicySet(c.policies(ipOf(ps)), ps, namespaces);
    for (const port of [80, 81] as const) {
      const got = reachability(set, ps, 'TCP', port);
      const want = parseMatrix(c.expect[port]);
      const diff = diffMatrix(POD_NAMES, want, got);
      t.deepEqual(diff, [], `port ${port}:\n${formatMatrix(POD_NAMES, got)}`);
    }
  });
}

test('with no policy nothing is isolated', (t) => {
  const ps = pods();
  const set = new PolicySet([], ps, namespaces);
  t.true(set.empty);
  const v = set.evaluate({ src: ps[0].ip, dst: ps[4].ip, protocol: 'TCP', dport: 80 });
  t.deepEqual(v, { allowed: true, egress: { kind: 'not-isolated' }, ingress: { kind: 'not-isolated' } });
});

test('the verdict names the policy and rule that allowed, or the policies that isolated', (t) => {
  const ps = pods();
  const ip = ipOf(ps);
  const set = new PolicySet(
    [
      np('x', 'allow-y', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'y' } } }] }] }),
      np('x', 'allow-z-81', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'z' } } }], ports: [{ port: 81 }] }] }),
    ],
    ps,
    namespaces,
  );
  const ok = set.evaluate({ src: ip('z/b'), dst: ip('x/a'), protocol: 'TCP', dport: 81 });
  t.deepEqual(ok.ingress, { kind: 'allowed', by: { policy: 'x/allow-z-81', direction: 'ingress', rule: 0 } });
  t.is(formatDirVerdict('ingress', ok.ingress), 'ingress: allowed by x/allow-z-81 ingress rule 0');
  const no = set.evaluate({ src: ip('z/b'), dst: ip('x/a'), protocol: 'TCP', dport: 80 });
  t.false(no.allowed);
  t.deepEqual(no.ingress, { kind: 'denied', isolatedBy: ['x/allow-y', 'x/allow-z-81'] });
  t.deepEqual(no.egress, { kind: 'not-isolated' });
});

test('a named port never matches a destination that is not a pod; on a pod it is that pod\'s port', (t) => {
  const ps = pods();
  // z/c names its port 80 differently: serve-80-tcp on z/c is no port at all.
  const zc = ps.find((p) => p.namespace === 'z' && p.name === 'c')!;
  zc.ports = [{ name: 'http', port: 80, protocol: 'TCP' }];
  const set = new PolicySet([np('x', 'egress-named', { podSelector: { matchLabels: { pod: 'a' } }, policyTypes: ['Egress'], egress: [{ ports: [{ port: 'serve-80-tcp' }] }] })], ps, namespaces);
  const xa = ipOf(ps)('x/a');
  t.true(set.evaluate({ src: xa, dst: ipOf(ps)('y/a'), protocol: 'TCP', dport: 80 }).allowed);
  t.false(set.evaluate({ src: xa, dst: zc.ip, protocol: 'TCP', dport: 80 }).allowed);
  t.false(set.evaluate({ src: xa, dst: '192.0.2.7', protocol: 'TCP', dport: 80 }).allowed);
  // The protocol is part of the port: UDP 80 is not serve-80-tcp.
  t.false(set.evaluate({ src: xa, dst: ipOf(ps)('y/a'), protocol: 'UDP', dport: 80 }).allowed);
});

test('egress to addresses outside the cluster: ipBlock with except, and no DNS unless allowed', (t) => {
  const ps = pods();
  const xa = ipOf(ps)('x/a');
  const set = new PolicySet([np('x', 'egress-web', { podSelector: {}, egress: [{ to: [{ ipBlock: { cidr: '192.0.2.0/24', except: ['192.0.2.128/25'] } }], ports: [{ port: 443 }] }] })], ps, namespaces);
  t.true(set.evaluate({ src: xa, dst: '192.0.2.1', protocol: 'TCP', dport: 443 }).allowed);
  t.false(set.evaluate({ src: xa, dst: '192.0.2.200', protocol: 'TCP', dport: 443 }).allowed);
  t.false(set.evaluate({ src: xa, dst: '192.0.2.1', protocol: 'TCP', dport: 80 }).allowed);
  // The cluster DNS (kube-dns's backends after DNAT) is just another destination: denied here.
  t.false(set.evaluate({ src: xa, dst: ipOf(ps)('z/c'), protocol: 'UDP', dport: 53 }).allowed);
  // ICMP matches a rule only when it names no ports.
  t.false(set.evaluate({ src: xa, dst: '192.0.2.1', protocol: 'ICMP', dport: 0 }).allowed);
});

test('Service traffic is judged after DNAT: by the backend pod, not the ClusterIP', (t) => {
  const ps = pods();
  const ip = ipOf(ps);
  const set = new PolicySet([np('x', 'allow-b-to-a', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'b' } } }] }] })], ps, namespaces);
  // A ClusterIP 10.96.0.20:80 whose only endpoint is x/a:80: the enforcement points see x/a.
  const dnat = (dst: string) => (dst === '10.96.0.20' ? ip('x/a') : dst);
  const row = POD_NAMES.filter((n) => n !== 'x/a').map((n) => (set.evaluate({ src: ip(n), dst: dnat('10.96.0.20'), protocol: 'TCP', dport: 80 }).allowed ? '.' : 'X'));
  t.is(row.join(''), '.XXXXXXX');
  // The ClusterIP itself is no pod: no policy judges it.
  t.deepEqual(set.evaluate({ src: ip('z/a'), dst: '10.96.0.20', protocol: 'TCP', dport: 80 }).ingress, null);
});

test('policyTypes default to Ingress, plus Egress when egress rules exist', (t) => {
  t.deepEqual(policyTypesOf(np('x', 'p', { podSelector: {} })), ['ingress']);
  t.deepEqual(policyTypesOf(np('x', 'p', { podSelector: {}, egress: [{}] })), ['ingress', 'egress']);
  t.deepEqual(policyTypesOf(np('x', 'p', { podSelector: {}, policyTypes: ['Egress'], ingress: [{}] })), ['egress']);
  // Egress rules without Egress in an explicit policyTypes are ignored.
  const ps = pods();
  const set = new PolicySet([np('x', 'p', { podSelector: {}, policyTypes: ['Ingress'], ingress: [{}], egress: [{ ports: [{ port: 9 }] }] })], ps, namespaces);
  t.true(set.evaluate({ src: ipOf(ps)('x/a'), dst: ipOf(ps)('y/a'), protocol: 'TCP', dport: 80 }).allowed);
});

test('host-network and address-less pods are not policy pods', (t) => {
  const a = netpolPod('x', 'a');
  a.status = { podIP: '10.244.0.5' };
  const h = netpolPod('x', 'h');
  h.spec!.hostNetwork = true;
  h.status = { podIP: '127.0.0.2' };
  const n = netpolPod('x', 'n');
  t.deepEqual(
    policyPods([a, h, n]).map((p) => p.name),
    ['a'],
  );
});
