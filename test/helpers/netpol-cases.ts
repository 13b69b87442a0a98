/**
 * The NetworkPolicy truth tables: the Kubernetes netpol e2e layout (namespaces
 * x, y, z, pods a, b, c in each, every pod serving TCP 80 and 81 with the
 * named ports serve-80-tcp / serve-81-tcp) and one case per policy, with the
 * expected reachability matrix written out by hand for each port (rows are
 * sources, columns destinations, in POD_NAMES order; `.` allowed, `X` denied;
 * the diagonal is loopback and always allowed).
 */
import type { Pod } from '../../control-plane/types.ts';
import type { NetworkPolicy, NetworkPolicySpec } from '../../policy/types.ts';

export const NAMESPACES = ['x', 'y', 'z'] as const;
export const POD_LETTERS = ['a', 'b', 'c'] as const;
export const POD_NAMES = NAMESPACES.flatMap((ns) => POD_LETTERS.map((p) => `${ns}/${p}`));

/** The pod manifest of `ns/letter`, as the e2e suite builds it (labels pod=<letter>). */
export function netpolPod(ns: string, letter: string, nodeName?: string): Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: letter, namespace: ns, labels: { pod: letter }, uid: '', resourceVersion: '', creationTimestamp: '' },
    spec: {
      ...(nodeName ? { nodeName } : {}),
      containers: [
        {
          name: 'cont-80-81',
          image: 'podlab/http',
          ports: [
            { name: 'serve-80-tcp', containerPort: 80, protocol: 'TCP' },
            { name: 'serve-81-tcp', containerPort: 81, protocol: 'TCP' },
          ],
        },
      ],
    },
  };
}

/** Namespace labels as the e2e suite sets them (`ns: x`), besides the apiserver's kubernetes.io/metadata.name. */
export const nsLabels = (ns: string): Record<string, string> => ({ ns, 'kubernetes.io/metadata.name': ns });

export interface NetpolCase {
  name: string;
  /** The policies, given the pods' addresses (ipBlock cases need them). */
  policies(ip: (pod: string) => string): NetworkPolicy[];
  /** Expected matrices on TCP 80 and 81 (rows as `.X` strings). */
  expect: { 80: string[]; 81: string[] };
}

export function np(ns: string, name: string, spec: NetworkPolicySpec): NetworkPolicy {
  return { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name, namespace: ns, uid: '', resourceVersion: '', creationTimestamp: '' }, spec };
}

const ALL = Array<string>(9).fill('.........');
const both = (m: string[]) => ({ 80: m, 81: m });
/** Every row but the diagonal X in the columns of `cols`, rows listed in `rows` (indices). */
function deny(rows: number[], cols: number[]): string[] {
  return ALL.map((r, i) => [...r].map((c, j) => (i !== j && rows.includes(i) && cols.includes(j) ? 'X' : c)).join(''));
}
const NS_X = [0, 1, 2];
const NS_Y = [3, 4, 5];
const NS_Z = [6, 7, 8];
const EVERY = [0, 1, 2, 3, 4, 5, 6, 7, 8];
const except = (all: number[], ...out: number[]) => all.filter((i) => !out.includes(i));
/** Both matrices: rows first, then overrides. */
const merge = (a: string[], b: string[]) => a.map((r, i) => [...r].map((c, j) => (c === 'X' || b[i][j] === 'X' ? 'X' : '.')).join(''));

export const NETPOL_CASES: NetpolCase[] = [
  {
    name: 'deny-all ingress in x',
    policies: () => [np('x', 'deny-all', { podSelector: {}, policyTypes: ['Ingress'] })],
    expect: both(['.XX......', 'X.X......', 'XX.......', 'XXX......', 'XXX......', 'XXX......', 'XXX......', 'XXX......', 'XXX......']),
  },
  {
    name: 'deny-all egress in x',
    policies: () => [np('x', 'deny-all-egress', { podSelector: {}, policyTypes: ['Egress'] })],
    expect: both(['.XXXXXXXX', 'X.XXXXXXX', 'XX.XXXXXX', '.........', '.........', '.........', '.........', '.........', '.........']),
  },
  {
    name: 'allow-all ingress in x',
    policies: () => [np('x', 'allow-all', { podSelector: {}, ingress: [{}] })],
    expect: both(ALL),
  },
  {
    name: 'allow from namespace y into x',
    policies: () => [np('x', 'allow-from-y', { podSelector: {}, ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'y' } } }] }] })],
    expect: both(['.XX......', 'X.X......', 'XX.......', '.........', '.........', '.........', 'XXX......', 'XXX......', 'XXX......']),
  },
  {
    name: 'allow from pod b of the same namespace into x/a',
    policies: () => [np('x', 'allow-b-to-a', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'b' } } }] }] })],
    expect: both(deny(except(EVERY, 1), [0])),
  },
  {
    name: 'namespaceSelector AND podSelector: y/c into x/a',
    policies: () => [np('x', 'allow-yc-to-a', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'y' } }, podSelector: { matchLabels: { pod: 'c' } } }] }] })],
    expect: both(deny(except(EVERY, 5), [0])),
  },
  {
    name: 'namespaceSelector OR podSelector: namespace y or x/b into x/a',
    policies: () => [np('x', 'allow-y-or-b', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'y' } } }, { podSelector: { matchLabels: { pod: 'b' } } }] }] })],
    expect: both(deny([2, ...NS_Z], [0])),
  },
  {
    name: 'allow port 80 only into x',
    policies: () => [np('x', 'allow-80', { podSelector: {}, ingress: [{ ports: [{ port: 80 }] }] })],
    expect: { 80: ALL, 81: deny(EVERY, NS_X) },
  },
  {
    name: 'named port serve-81-tcp from every namespace into x',
    policies: () => [np('x', 'allow-named-81', { podSelector: {}, ingress: [{ from: [{ namespaceSelector: {} }], ports: [{ port: 'serve-81-tcp' }] }] })],
    expect: { 80: deny(EVERY, NS_X), 81: ALL },
  },
  {
    name: 'egress port range 75-80 (endPort) from y',
    policies: () => [np('y', 'egress-75-80', { podSelector: {}, policyTypes: ['Egress'], egress: [{ ports: [{ protocol: 'TCP', port: 75, endPort: 80 }] }] })],
    expect: { 80: ALL, 81: deny(NS_Y, EVERY) },
  },
  {
    name: 'egress to ipBlock except y/b from x/a',
    policies: (ip) => [np('x', 'egress-ipblock', { podSelector: { matchLabels: { pod: 'a' } }, policyTypes: ['Egress'], egress: [{ to: [{ ipBlock: { cidr: '10.244.0.0/16', except: [`${ip('y/b')}/32`] } }] }] })],
    expect: both(deny([0], [4])),
  },
  {
    name: 'union of two policies: y on every port, z on 81 into x/a',
    policies: () => [
      np('x', 'allow-y', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'y' } } }] }] }),
      np('x', 'allow-z-81', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'z' } } }], ports: [{ port: 81 }] }] }),
    ],
    expect: { 80: deny([1, 2, ...NS_Z], [0]), 81: deny([1, 2], [0]) },
  },
  {
    // No policyTypes: egress rules make it Ingress+Egress, and no ingress rule means x accepts nothing.
    name: 'egress only to namespace y from x (no DNS exception, policyTypes defaulted)',
    policies: () => [np('x', 'egress-to-y', { podSelector: {}, egress: [{ to: [{ namespaceSelector: { matchLabels: { ns: 'y' } } }] }] })],
    expect: both(merge(deny(NS_X, [...NS_X, ...NS_Z]), deny(EVERY, NS_X))),
  },
  {
    name: 'matchExpressions: z/a and z/b may not reach namespace x',
    policies: () => [
      np('z', 'not-to-x', {
        podSelector: { matchExpressions: [{ key: 'pod', operator: 'In', values: ['a', 'b'] }] },
        policyTypes: ['Egress'],
        egress: [{ to: [{ namespaceSelector: { matchExpressions: [{ key: 'ns', operator: 'NotIn', values: ['x'] }] } }] }],
      }),
    ],
    expect: both(deny([6, 7], NS_X)),
  },
  {
    name: 'deny-all both directions in y',
    policies: () => [np('y', 'deny-all', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] })],
    expect: both(merge(deny(NS_Y, EVERY), deny(EVERY, NS_Y))),
  },
  {
    name: 'a policy selecting no pod changes nothing',
    policies: () => [np('x', 'selects-nothing', { podSelector: { matchLabels: { pod: 'nope' } }, policyTypes: ['Ingress', 'Egress'] })],
    expect: both(ALL),
  },
  {
    name: 'ingress from ipBlock except x/b and y/b into z',
    policies: (ip) => [np('z', 'ipblock-in', { podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.0/8', except: [`${ip('x/b')}/32`, `${ip('y/b')}/32`] } }] }] })],
    expect: both(deny([1, 4], NS_Z)),
  },
  {
    name: 'egress UDP 53 only from x: TCP denied everywhere',
    policies: () => [np('x', 'dns-only', { podSelector: {}, policyTypes: ['Egress'], egress: [{ ports: [{ protocol: 'UDP', port: 53 }] }] })],
    expect: both(deny(NS_X, EVERY)),
  },
  {
    name: 'egress named port serve-80-tcp from x/a (resolved on the destination)',
    policies: () => [np('x', 'egress-named-80', { podSelector: { matchLabels: { pod: 'a' } }, policyTypes: ['Egress'], egress: [{ ports: [{ port: 'serve-80-tcp' }] }] })],
    expect: { 80: ALL, 81: deny([0], EVERY) },
  },
  {
    name: 'pods c of every namespace into x',
    policies: () => [np('x', 'allow-any-c', { podSelector: {}, ingress: [{ from: [{ namespaceSelector: {}, podSelector: { matchLabels: { pod: 'c' } } }] }] })],
    expect: both(deny(except(EVERY, 2, 5, 8), NS_X)),
  },
  {
    name: 'egress deny on x/a plus ingress allow on y: egress still wins',
    policies: () => [
      np('x', 'a-no-egress', { podSelector: { matchLabels: { pod: 'a' } }, policyTypes: ['Egress'] }),
      np('y', 'allow-all-in', { podSelector: {}, ingress: [{}] }),
    ],
    expect: both(deny([0], EVERY)),
  },
];
