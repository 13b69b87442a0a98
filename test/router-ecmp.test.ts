/**
 * The lab router's pure parts: the ECMP table from a Loc-RIB (paths that
 * tie with the best down to router-id are next hops; a worse local-pref or a
 * longer AS path is not), longest match, the seeded flow hash (deterministic,
 * spreading), the hand-off header reader fed byte by byte, and flag errors
 * that name the flag, from the function and from the real daemon process.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { RouteSummary } from '../bgp/index.ts';
import { ecmpTable, flowHash, longestMatch, pickNextHop } from '../router/ecmp.ts';
import { parseRouterFlags } from '../router/flags.ts';
import { HandoffHeaderReader, parseHandoffDatagram } from '../edge/lb-handoff.ts';
import { serializeProxyV2 } from '../packet/index.ts';
import { LabError, validateUpOptions, type UpOptions } from '../lab/lab.ts';
import { ROOT } from '../common/compiled.js';

const path = (o: Partial<RouteSummary['paths'][number]>): RouteSummary['paths'][number] => ({
  best: false,
  source: 'peer',
  asPath: [64512],
  asPathText: '64512',
  communities: [],
  largeCommunities: [],
  clusterList: [],
  ...o,
});

test('ECMP: paths that lose only at router-id or peer address are next hops; worse ones are not', (t) => {
  const routes: RouteSummary[] = [
    {
      prefix: '127.0.155.200/32',
      paths: [
        path({ best: true, reason: 'router-id', nextHop: '127.0.155.12', peer: '127.0.155.12' }),
        path({ reason: 'router-id', nextHop: '127.0.155.13', peer: '127.0.155.13' }),
        path({ reason: 'peer-address', nextHop: '127.0.155.11', peer: '127.0.155.11' }),
        path({ reason: 'as-path-length', nextHop: '127.0.155.14', peer: '127.0.155.14' }),
        path({ reason: 'local-pref', nextHop: '127.0.155.15', peer: '127.0.155.15' }),
      ],
    },
    { prefix: '127.0.155.201/32', paths: [path({ best: true, reason: 'only-path', nextHop: '127.0.155.13', peer: '127.0.155.13' })] },
    { prefix: '127.0.155.192/28', paths: [path({ best: true, reason: 'only-path', nextHop: '127.0.155.11', peer: '127.0.155.11' })] },
    { prefix: '10.0.0.0/8', paths: [path({ best: true, source: 'local', reason: 'local-origin' })] },
  ];
  const table = ecmpTable(routes);
  t.deepEqual(table, [
    { prefix: '127.0.155.200/32', nextHops: ['127.0.155.11', '127.0.155.12', '127.0.155.13'] },
    { prefix: '127.0.155.201/32', nextHops: ['127.0.155.13'] },
    { prefix: '127.0.155.192/28', nextHops: ['127.0.155.11'] },
  ]);
  t.is(longestMatch(table, '127.0.155.200')?.prefix, '127.0.155.200/32');
  t.is(longestMatch(table, '127.0.155.202')?.prefix, '127.0.155.192/28', 'an aggregate covers the rest of its block');
  t.is(longestMatch(table, '127.0.155.16'), undefined);
  t.is(longestMatch(table, '10.1.2.3'), undefined, 'local routes are not forwarded to');
});

test('flow hash: one flow, one next hop; flows spread; the seed changes the spread', (t) => {
  const hops = ['127.0.155.11', '127.0.155.12', '127.0.155.13'];
  const flow = (srcPort: number) => ({ src: '127.0.156.10', srcPort, dst: '127.0.155.200', dstPort: 80, protocol: 6 });
  t.is(pickNextHop(hops, flow(40000), 1), pickNextHop(hops, flow(40000), 1));
  t.is(flowHash(flow(40000), 1), flowHash(flow(40000), 1));
  t.not(flowHash(flow(40000), 1), flowHash(flow(40000), 2));
  const count = (seed: number) => {
    const n = new Map<string, number>();
    for (let p = 40000; p < 43000; p++) n.set(pickNextHop(hops, flow(p), seed)!, (n.get(pickNextHop(hops, flow(p), seed)!) ?? 0) + 1);
    return n;
  };
  const c1 = count(1);
  for (const h of hops) t.true(c1.get(h)! > 850 && c1.get(h)! < 1150, `${h}: ${c1.get(h)} of 3000 consecutive source ports`);
  t.log(`3000 flows, seed 1: ${JSON.stringify(Object.fromEntries(c1))}`);
  let moved = 0;
  for (let p = 40000; p < 40300; p++) if (pickNextHop(hops, flow(p), 1) !== pickNextHop(hops, flow(p), 2)) moved++;
  t.true(moved > 100, `another seed sends ${moved}/300 flows elsewhere`);
  t.is(pickNextHop([], flow(1), 1), undefined);
});

test('the hand-off header reader: byte by byte, the rest of the stream kept; refusals say why', (t) => {
  const header = serializeProxyV2({ command: 'proxy', family: 'inet', transport: 'stream', src: { ip: '127.0.156.9', port: 5555 }, dst: { ip: '127.0.155.201', port: 80 }, tlvs: [] });
  const stream = Buffer.concat([header, Buffer.from('GET /')]);
  const r = new HandoffHeaderReader();
  let out: ReturnType<HandoffHeaderReader['push']> = { more: true };
  for (let i = 0; i < stream.length && 'more' in out; i++) out = r.push(stream.subarray(i, i + 1));
  t.false('more' in out);
  if ('header' in out) {
    t.deepEqual(out.header.src, { ip: '127.0.156.9', port: 5555 });
    t.is(out.rest.length, 0, 'the reader stops at the header; later chunks go to the stream');
  } else t.fail(JSON.stringify(out));
  const both = new HandoffHeaderReader().push(stream);
  t.is('header' in both ? both.rest.toString() : '', 'GET /');
  const local = new HandoffHeaderReader().push(serializeProxyV2({ command: 'local', family: 'unspec', transport: 'unspec', tlvs: [] }));
  t.regex('error' in local ? local.error : '', /a hand-off is PROXY, AF_INET, STREAM/);
  const http = new HandoffHeaderReader().push(Buffer.from('GET / HTTP/1.1\r\n'));
  t.regex('error' in http ? http.error : '', /not a PROXY protocol v2 signature/);
  const dgramHeader = serializeProxyV2({ command: 'proxy', family: 'inet', transport: 'dgram', src: { ip: '127.0.156.9', port: 5555 }, dst: { ip: '127.0.155.202', port: 7 }, tlvs: [] });
  const d = parseHandoffDatagram(Buffer.concat([dgramHeader, Buffer.from('ping')]));
  t.is('payload' in d ? d.payload.toString() : '', 'ping');
  t.regex((() => { const e = parseHandoffDatagram(stream); return 'error' in e ? e.error : ''; })(), /a UDP hand-off is PROXY, AF_INET, DGRAM/);
  t.regex((() => { const e = parseHandoffDatagram(dgramHeader.subarray(0, 20)); return 'error' in e ? e.error : ''; })(), /announces 12 address bytes, 4 present/);
});

const base = { ip: '127.0.155.9', 'bind-net': '127.0.155.0/24', api: 'https://127.0.155.10:6443', 'state-dir': '/tmp/x' } as Record<string, string>;
const argv = (over: Record<string, string | undefined>) => Object.entries({ ...base, ...over }).flatMap(([k, v]) => (v === undefined ? [] : [`--${k}`, v]));

test('router flags: a bad value names its flag', (t) => {
  const ok = parseRouterFlags(argv({}), { handoffPort: 8474 });
  t.is(ok.asn, 64513);
  t.is(ok.nodeBgpPort, 1179);
  const cases: [Record<string, string | undefined>, RegExp][] = [
    [{ asn: '0' }, /^--asn: must be an AS number from 1 to 4294967295, got '0'/],
    [{ asn: 'x' }, /^--asn: /],
    [{ asn: '4294967296' }, /^--asn: /],
    [{ 'bind-net': '10.0.0.0/8' }, /^--bind-net: must be inside 127\.0\.0\.0\/8/],
    [{ 'bind-net': 'nope' }, /^--bind-net: not an IPv4 CIDR/],
    [{ ip: '127.0.9.9' }, /^--ip: 127\.0\.9\.9 is outside --bind-net 127\.0\.155\.0\/24/],
    [{ ip: 'a.b' }, /^--ip: not an IPv4 address/],
    [{ 'hold-time': '2' }, /^--hold-time: must be 0 or 3-65535/],
    [{ 'bgp-port': '70000' }, /^--bgp-port: must be an integer from 1 to 65535/],
    [{ 'handoff-port': '0' }, /^--handoff-port: /],
    [{ api: undefined }, /^--api is required/],
  ];
  for (const [over, re] of cases) t.throws(() => parseRouterFlags(argv(over), { handoffPort: 8474 }), { message: re }, JSON.stringify(over));
});

test('the lab router daemon refuses a bad flag by name, as a real process, and binds nothing', async (t) => {
  const r = await promisify(execFile)(process.execPath, [`${ROOT}/bin/podlab.js`, 'lb-router', ...argv({ asn: '70000000000' })], { timeout: 30_000 }).then(
    () => ({ code: 0, stdout: '', stderr: '' }),
    (e: { code: number; stdout: string; stderr: string }) => e,
  );
  t.is(r.code, 2);
  t.regex(r.stderr, /lb-router: --asn: must be an AS number from 1 to 4294967295, got '70000000000'/);
  t.deepEqual(JSON.parse(r.stdout.trim().split('\n').pop()!), { event: 'error', message: "--asn: must be an AS number from 1 to 4294967295, got '70000000000'" });
});

test('podlab up: --lb-router errors name the flag', (t) => {
  const o: UpOptions = { stateDir: '/tmp/x', nodes: 3, podsPerNode: 0, manifests: [], labNet: '127.0.157.0/24', apiPort: 0, clusterCidr: '10.244.0.0/16', vxlanPort: 8472, seed: 1, mtu: 1500, waitReady: false };
  t.throws(() => validateUpOptions({ ...o, lbRouter: true }), { instanceOf: LabError, message: /^--lb-router: the router learns LoadBalancer routes over BGP: needs --backend bgp or ipip/ });
  t.throws(() => validateUpOptions({ ...o, backend: 'bgp', lbRouter: true, lbRouterAsn: 0 }), { instanceOf: LabError, message: /^--lb-router-asn: must be an AS number/ });
  t.throws(() => validateUpOptions({ ...o, backend: 'bgp', lbRouterAsn: 65000 }), { instanceOf: LabError, message: /^--lb-router-asn: only with --lb-router/ });
  t.throws(() => validateUpOptions({ ...o, backend: 'bgp', lbRouter: true, mode: 'netns' }), { instanceOf: LabError, message: /^--lb-router: local labs only/ });
  t.notThrows(() => validateUpOptions({ ...o, backend: 'bgp', lbRouter: true, lbRouterAsn: 65000 }));
});
