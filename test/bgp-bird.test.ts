/**
 * Interop with real BIRD 2 (bird2 package; /usr/sbin/bird and birdc).
 *
 * BIRD runs as a foreground child (`bird -f`) with a bird.conf written to a
 * temp dir: router id 127.0.95.1, a static blackhole 10.96.0.0/16 (what
 * Calico announces for its blocks), an iBGP session to our speaker on
 * 127.0.95.2:1179, hold time 3 s. Network safety: there is NO `protocol
 * kernel`, so BIRD never touches the kernel's routing tables (the test also
 * checks that no `proto bird` route exists); BIRD listens on 127.0.95.1 only,
 * on an unprivileged port; the BGP export filter lets only the `st` route out.
 *
 * Checked, both directions: BIRD imports our pod CIDRs (best, BGP.next_hop =
 * our address, our communities; BIRD shows them "unreachable" because it will
 * not resolve an iBGP gateway on the loopback interface);
 * we learn BIRD's blackhole with next hop 127.0.95.1 (BIRD's next-hop-self
 * for a gateway-less route); BIRD's capabilities (GR, enhanced route refresh,
 * LLGR) are accepted; `birdc reload in` makes BIRD send ROUTE-REFRESH and we
 * answer; a withdrawal reaches BIRD; BIRD frozen (SIGSTOP) → our hold timer
 * (3 s) expires, NOTIFICATION 4/0, its route withdrawn; BIRD resumed →
 * session re-established; BIRD killed with SIGKILL → the kernel closes the
 * TCP connection, and the route is withdrawn at once (well within the hold
 * time; a hold-timer withdrawal is the SIGSTOP case).
 *
 * bird missing: skipped with a logged reason; with CI=true the test fails.
 */
import test, { type ExecutionContext } from 'ava';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BgpSpeaker, type RouteInfo, formatSummary } from '../bgp/index.ts';
import { memoryLogger, waitFor } from './fixtures/bgp/helpers.ts';
import { isExecutable } from '../common/system-tool.ts';
import { testWithProgram } from './helpers/tool.ts';

const BIRD = process.env.BIRD ?? '/usr/sbin/bird';
const BIRDC = process.env.BIRDC ?? '/usr/sbin/birdc';
const hasBird = isExecutable(BIRD) && isExecutable(BIRDC);
const birdTest = testWithProgram('bgp-bird', [BIRD, BIRDC], 'BIRD interop', 'bird2');

const BIRD_IP = '127.0.95.1';
const OUR_IP = '127.0.95.2';
const BIRD_PORT = 11790;
const OUR_PORT = 1179;

function birdConf(): string {
  return `# podlab bgp-bird test. No "protocol kernel": nothing reaches the kernel's routing tables.
router id ${BIRD_IP};
log stderr all;
protocol device {}
protocol static st {
  ipv4;
  route 10.96.0.0/16 blackhole;
}
protocol bgp podlab {
  local ${BIRD_IP} port ${BIRD_PORT} as 64512;
  neighbor ${OUR_IP} port ${OUR_PORT} as 64512;
  hold time 3;
  keepalive time 1;
  connect delay time 1;
  connect retry time 1;
  error wait time 1, 2;
  ipv4 { import all; export where proto = "st"; };
}
`;
}

function exec(file: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: 20_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${file} ${args.join(' ')}: ${err.message}\n${stderr}`)) : resolve(stdout)));
  });
}

/** One route block of `birdc show route all`. */
interface BirdRoute {
  prefix: string;
  /** 'unicast', 'blackhole', 'unreachable' ... */
  dest: string;
  /** 'via 127.0.95.2 on lo' when resolved. */
  via?: string;
  attrs: Record<string, string>;
}

/**
 * Parses `birdc show route all`:
 *   10.244.2.0/24        unicast [podlab 12:00:00.000 from 127.0.95.2] * (100) [i]
 *   	via 127.0.95.2 on lo
 *   	Type: BGP univ
 *   	BGP.next_hop: 127.0.95.2
 */
export function parseBirdRoutes(out: string): BirdRoute[] {
  const routes: BirdRoute[] = [];
  let cur: BirdRoute | undefined;
  for (const line of out.split('\n')) {
    const head = /^(\d+\.\d+\.\d+\.\d+\/\d+)\s+(\S+)/.exec(line);
    if (head) {
      cur = { prefix: head[1], dest: head[2], attrs: {} };
      routes.push(cur);
      continue;
    }
    if (!cur) continue;
    const via = /^\s+(via .*)$/.exec(line);
    if (via) cur.via = via[1].trim();
    const kv = /^\s+([\w.]+):\s*(.*)$/.exec(line);
    if (kv) cur.attrs[kv[1]] = kv[2].trim();
  }
  return routes;
}

async function birdRoutes(sock: string): Promise<BirdRoute[]> {
  return parseBirdRoutes(await exec(BIRDC, ['-s', sock, 'show', 'route', 'all']));
}

/** The channel part of `show protocols all`. */
function proto0(out: string): string {
  return out.split('Channel ipv4')[1] ?? '';
}

/** Polls an async condition. */
async function waitForAsync(cond: () => Promise<boolean>, timeoutMs: number, what: string): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    if (await cond().catch(() => false)) return performance.now() - t0;
    if (performance.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function startBird(t: ExecutionContext, conf: string, sock: string, pidfile: string): { proc: ChildProcess; log: () => string } {
  const proc = spawn(BIRD, ['-f', '-c', conf, '-s', sock, '-P', pidfile], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  proc.stdout.on('data', (d) => (log += String(d)));
  proc.stderr.on('data', (d) => (log += String(d)));
  t.teardown(() => {
    if (proc.exitCode === null && proc.signalCode === null) {
      try {
        process.kill(proc.pid!, 'SIGCONT');
      } catch {
        /* already gone */
      }
      proc.kill('SIGKILL');
    }
  });
  return { proc, log: () => log };
}

birdTest('BIRD 2 interop: routes both ways, capabilities, route refresh, hold timer on a frozen BIRD, withdrawal on SIGKILL', async (t) => {
  if (!hasBird) return t.fail(`CI=true but ${BIRD} is missing`);
  const dir = mkdtempSync(join(tmpdir(), 'podlab-bgp-bird-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const conf = join(dir, 'bird.conf');
  const sock = join(dir, 'bird.ctl');
  writeFileSync(conf, birdConf());
  t.log(await new Promise<string>((r) => execFile(BIRD, ['--version'], (_e, out, err) => r(`${out}${err}`.trim()))));
  await exec(BIRD, ['-p', '-c', conf]); // syntax check first

  const log = memoryLogger();
  const speaker = new BgpSpeaker({ asn: 64512, routerId: OUR_IP, listen: { host: OUR_IP, port: OUR_PORT }, holdTime: 3, connectRetryMs: 500, connectRetryMaxMs: 2000, log });
  t.teardown(() => speaker.stop());
  const learned = new Map<string, RouteInfo>();
  const events: string[] = [];
  speaker.on('route-add', (p, r) => {
    learned.set(p, r);
    events.push(`add ${p}`);
  });
  speaker.on('route-del', (p) => {
    learned.delete(p);
    events.push(`del ${p}`);
  });
  await speaker.start();
  speaker.addPeer({ address: BIRD_IP, port: BIRD_PORT, asn: 64512 });
  speaker.announce('10.244.2.0/24');
  speaker.announce('10.244.3.0/24', { communities: [64512 * 65536 + 42] });

  const bird = startBird(t, conf, sock, join(dir, 'bird.pid'));
  try {
    // --- Both directions ---
    await waitFor(() => learned.has('10.96.0.0/16'), 15_000, 'BIRD static route learned');
    t.like(learned.get('10.96.0.0/16'), { nextHop: BIRD_IP, peer: BIRD_IP, path: [], localPref: 100, origin: 'igp' });
    await waitForAsync(async () => (await birdRoutes(sock)).some((r) => r.prefix === '10.244.3.0/24'), 10_000, 'BIRD imports our routes');
    const routes = await birdRoutes(sock);
    const ours = routes.find((r) => r.prefix === '10.244.2.0/24')!;
    // BIRD imports it as best ('*'); it cannot resolve a gateway on the loopback interface (it ignores
    // routes via lo, and iBGP uses recursive next hops), so it shows the route as unreachable: the
    // next hop itself is the one we sent.
    t.true(['unicast', 'unreachable'].includes(ours.dest), ours.dest);
    t.regex(proto0(await exec(BIRDC, ['-s', sock, 'show', 'protocols', 'all', 'podlab'])), /Routes:\s+2 imported/);
    t.like(ours.attrs, { Type: 'BGP univ', 'BGP.origin': 'IGP', 'BGP.next_hop': OUR_IP, 'BGP.local_pref': '100', 'BGP.as_path': '' });
    t.is(routes.find((r) => r.prefix === '10.244.3.0/24')?.attrs['BGP.community'], '(64512,42)');

    // --- Capabilities and timers as each side sees them ---
    const proto = await exec(BIRDC, ['-s', sock, 'show', 'protocols', 'all', 'podlab']);
    t.regex(proto, /BGP state:\s+Established/);
    t.regex(proto, /Neighbor capabilities\s+Multiprotocol\s+AF announced: ipv4\s+Route refresh\s+4-octet AS numbers/);
    t.notRegex(proto.split('Neighbor capabilities')[1].split('Session:')[0], /Graceful restart/, 'podlab does not advertise GR');
    t.regex(proto, /Session:\s+internal multihop AS4/);
    t.regex(proto, /Hold timer:\s+[\d.]+\/3/);
    const peer = speaker.summary().peers[0];
    t.like(peer, { state: 'Established', routerId: BIRD_IP, holdTime: 3, keepaliveTime: 1, as4: true, malformed: 0 });
    t.deepEqual(peer.capabilities?.remote, [
      'Multiprotocol (AFI 1, SAFI 1)',
      'Route refresh',
      'Graceful restart (restart time 120 s)',
      '4-octet AS numbers (64512)',
      'Enhanced refresh',
      'Long-lived graceful restart',
    ]);
    t.log(formatSummary(speaker.summary()));

    // --- ROUTE-REFRESH: `birdc reload in` asks us to re-send ---
    const sentBefore = peer.messages.sent.update;
    await exec(BIRDC, ['-s', sock, 'reload', 'in', 'podlab']);
    await waitFor(() => speaker.summary().peers[0].messages.received['route-refresh'] === 1, 5000, 'ROUTE-REFRESH from BIRD');
    await waitFor(() => speaker.summary().peers[0].messages.sent.update > sentBefore, 5000, 'Adj-RIB-Out re-sent');

    // --- Withdrawal reaches BIRD ---
    speaker.withdraw('10.244.3.0/24');
    await waitForAsync(async () => !(await birdRoutes(sock)).some((r) => r.prefix === '10.244.3.0/24'), 5000, 'BIRD drops the withdrawn route');

    // --- Frozen BIRD: our hold timer expires ---
    const frozenAt = performance.now();
    process.kill(bird.proc.pid!, 'SIGSTOP');
    await waitFor(() => !learned.has('10.96.0.0/16'), 6000, 'hold timer withdrawal');
    const holdTook = performance.now() - frozenAt;
    t.log(`SIGSTOP: BIRD's route withdrawn after ${holdTook.toFixed(0)} ms (hold time 3 s)`);
    t.true(holdTook >= 1900 && holdTook <= 5000, `after the hold time, not long after (${holdTook.toFixed(0)} ms)`);
    t.like(speaker.summary().peers[0].lastError, { direction: 'sent', code: 4, subcode: 0 });
    process.kill(bird.proc.pid!, 'SIGCONT');
    await waitFor(() => learned.has('10.96.0.0/16'), 15_000, 're-established after SIGCONT');
    t.is(learned.get('10.96.0.0/16')?.nextHop, BIRD_IP);

    // --- kill -9: the kernel closes the connection, the route goes at once ---
    const killedAt = performance.now();
    bird.proc.kill('SIGKILL');
    await waitFor(() => !learned.has('10.96.0.0/16'), 5000, 'withdrawal after SIGKILL');
    const killTook = performance.now() - killedAt;
    t.log(`SIGKILL: BIRD's route withdrawn after ${killTook.toFixed(0)} ms`);
    t.true(killTook < 3000, 'no later than the hold time');
    t.not(speaker.summary().peers[0].state, 'Established');
    t.deepEqual(events.filter((e) => e.endsWith('10.96.0.0/16')), ['add 10.96.0.0/16', 'del 10.96.0.0/16', 'add 10.96.0.0/16', 'del 10.96.0.0/16']);

    // --- Safety: nothing reached the kernel ---
    const kernel = await exec('ip', ['-4', 'route', 'show', 'table', 'all', 'proto', 'bird']).catch(() => '');
    t.is(kernel.trim(), '', 'no proto bird route in any kernel table');
  } catch (err) {
    t.log(bird.log().split('\n').slice(-40).join('\n'));
    t.log(log.lines.slice(-40).join('\n'));
    throw err;
  }
});

test('parseBirdRoutes reads `birdc show route all` blocks', (t) => {
  const out = `BIRD 2.0.12 ready.
Table master4:
10.96.0.0/16         blackhole [st 12:08:19.741] * (200)
	Type: static univ
10.244.7.0/24        unicast [podlab 12:08:21.435 from 127.0.95.2] * (100) [i]
	via 127.0.95.2 on lo
	Type: BGP univ
	BGP.origin: IGP
	BGP.as_path: 
	BGP.next_hop: 127.0.95.2
	BGP.local_pref: 100
`;
  t.deepEqual(parseBirdRoutes(out), [
    { prefix: '10.96.0.0/16', dest: 'blackhole', attrs: { Type: 'static univ' } },
    {
      prefix: '10.244.7.0/24',
      dest: 'unicast',
      via: 'via 127.0.95.2 on lo',
      attrs: { Type: 'BGP univ', 'BGP.origin': 'IGP', 'BGP.as_path': '', 'BGP.next_hop': '127.0.95.2', 'BGP.local_pref': '100' },
    },
  ]);
});
