/**
 * Conditions: what `assert` checks and `wait until` waits for. Each kind is
 * one function returning an Outcome: ok, what was expected, what was found,
 * and on failure a message a person can act on ("pod-1a -> pod-3a: 0/2 replies").
 *
 * Adding a condition (transfer, lb-spread, bgp-converged when they land) = one
 * entry in CONDITIONS and its name in validate.ts's CONDITION_KINDS.
 */
import type { Condition, Window } from './model.ts';
import { within, type RunContext } from './context.ts';
import { LabTimeoutError } from './lab-io.ts';
import { StepError, type PodInfo } from './pods.ts';
import { percentile, type FlowRecord } from './traffic.ts';
import { compare, fmtMs, fmtPct } from './units.ts';
import { hostGet, lbAddress } from './lb.ts';

export interface Outcome {
  ok: boolean;
  expected: string;
  actual: string;
  message?: string;
  detail?: unknown;
}

type CondFn<K extends Condition['kind']> = (c: Extract<Condition, { kind: K }>, ctx: RunContext) => Promise<Outcome>;

/** Answers still on their way are not counted as lost for this long. */
export const GRACE_MS = 1000;

function flowOf(ctx: RunContext, name: string): FlowRecord {
  const f = ctx.flows.get(name);
  if (!f) throw new StepError(`flow ${name} was never started`);
  return f;
}

/** A window in scenario ms; open ends are the flow's start and now. */
export function resolveWindow(w: Window | undefined, ctx: RunContext, flow: FlowRecord): { from: number; to: number } {
  const end = flow.finished ? (flow.endedAtMs ?? ctx.now()) : ctx.now() - GRACE_MS;
  if (!w) return { from: -Infinity, to: Infinity };
  if (w.lastMs !== undefined) return { from: end - w.lastMs, to: end };
  const at = (r: NonNullable<Window['from']>) => {
    const t = ctx.timeOf(r);
    if (t === undefined) throw new StepError(`window ${w.text}: step '${r.step}' has not run`);
    return t;
  };
  const from = w.from ? at(w.from) : -Infinity;
  const to = w.toRelativeMs !== undefined ? from + w.toRelativeMs : w.to ? at(w.to) : Infinity;
  return { from, to };
}

/**
 * When a window ends in the future of a running flow, the check waits for it
 * (plus the grace for answers), so an assert can be written right after the
 * fault it measures.
 */
export async function waitForWindow(c: Condition, ctx: RunContext): Promise<void> {
  if (c.kind !== 'delivery' && c.kind !== 'latency') return;
  const flow = flowOf(ctx, c.flow);
  if (!c.window || c.window.lastMs !== undefined) return;
  const { to } = resolveWindow(c.window, ctx, flow);
  if (!Number.isFinite(to)) return;
  while (!flow.finished && ctx.now() < to + GRACE_MS && !ctx.signal.aborted) {
    await within(flow.done, Math.min(250, to + GRACE_MS - ctx.now()), ctx.signal);
  }
}

function inWindow(c: { window?: Window }, ctx: RunContext, flow: FlowRecord) {
  const { from, to } = resolveWindow(c.window, ctx, flow);
  const all = flow.samples(ctx.now(), GRACE_MS);
  const s = all.filter((x) => x.t >= from && x.t < to);
  const where = c.window ? ` in ${c.window.text} (${fmtMs(Math.max(0, from))}..${Number.isFinite(to) ? fmtMs(to) : 'end'})` : '';
  return { s, where };
}

async function pingPair(ctx: RunContext, a: PodInfo, ip: string, count: number): Promise<{ replies: number; note?: string }> {
  if (ctx.down.has(a.node)) return { replies: 0, note: `${a.node} is down` };
  if (ctx.frozen.has(a.node)) return { replies: 0, note: `${a.node} is frozen` };
  let out = '';
  try {
    await ctx.io.exec(a.node, a.key, ['ping', '-c', String(count), '-i', '0.05', '-W', '1', ip], { stdout: (s) => (out += s), stderr: (s) => (out += s), timeoutMs: count * 50 + 4000, signal: ctx.signal });
  } catch (e) {
    return { replies: 0, note: e instanceof LabTimeoutError ? 'no answer from the agent' : (e as Error).message };
  }
  const m = /(\d+) packets transmitted, (\d+) received(?:, \+(\d+) errors)?/.exec(out);
  const err = /From \S+ icmp_seq=\d+ (.*)/.exec(out)?.[1] ?? /ping: (.*)/.exec(out)?.[1];
  return { replies: m ? Number(m[2]) : 0, note: err };
}

/** Runs at most `n` at a time. */
async function pool<T, R>(items: T[], n: number, fn: (x: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]);
      }
    }),
  );
  return out;
}

const short = (k: string) => k.replace(/^default\//, '');

/** One TCP connect from `a` to `ip:port` (nc -z): connected, or why not (refused, timed out). */
async function connectPair(ctx: RunContext, a: PodInfo, ip: string, port: number): Promise<{ ok: boolean; note?: string }> {
  if (ctx.down.has(a.node)) return { ok: false, note: `${a.node} is down` };
  if (ctx.frozen.has(a.node)) return { ok: false, note: `${a.node} is frozen` };
  let out = '';
  try {
    const code = await ctx.io.exec(a.node, a.key, ['nc', '-z', '-w', '2', ip, String(port)], { stdout: (x) => (out += x), stderr: (x) => (out += x), timeoutMs: 6000, signal: ctx.signal });
    if (code === 0) return { ok: true };
  } catch (e) {
    return { ok: false, note: e instanceof LabTimeoutError ? 'no answer from the agent' : (e as Error).message };
  }
  // A denied SYN is dropped (timed out); refused means the packet passed and nothing listens.
  return { ok: false, note: /refused/i.test(out) ? 'refused: nothing listens there' : /timed out/i.test(out) ? 'timed out' : out.trim().split('\n').pop() };
}

/**
 * A reachability truth table: every (source, destination) pod pair of every
 * cell, on every probe, checked for real (nc -z for TCP, ping for ICMP); a
 * pod reaches itself without its packets leaving its namespace, so its own
 * pair counts as allowed (the e2e suite's AllowLoopback). A cell holds when
 * all its pairs agree with it.
 */
async function reachabilityMatrix(c: Extract<Condition, { kind: 'reachability' }>, m: NonNullable<Extract<Condition, { kind: 'reachability' }>['matrix']>, ctx: RunContext): Promise<Outcome> {
  await ctx.pods.refresh();
  const rows = m.rows.map((r) => ctx.pods.resolve(r, ctx.rng));
  const cols = m.cols.map((r) => ctx.pods.resolve(r, ctx.rng));
  type Probe = { p: number; i: number; j: number; a: PodInfo; b: PodInfo };
  const probes: Probe[] = [];
  m.probes.forEach((_, p) => rows.forEach((rs, i) => cols.forEach((cs, j) => rs.forEach((a) => cs.forEach((b) => a.key !== b.key && probes.push({ p, i, j, a, b }))))));
  const results = await pool(probes, 12, async (x) => {
    const probe = m.probes[x.p];
    if (!x.b.ip) return { ...x, ok: false, note: `${short(x.b.key)} has no IP` };
    if (probe.protocol === 'TCP') return { ...x, ...(await connectPair(ctx, x.a, x.b.ip, probe.port!)) };
    const r = await pingPair(ctx, x.a, x.b.ip, c.count);
    return { ...x, ok: r.replies > 0, note: r.note };
  });
  const label = (refs: typeof m.rows, i: number, pods: PodInfo[]) => (refs[i].type === 'name' ? refs[i].text : pods.map((p) => short(p.key)).join(',') || refs[i].text);
  const rowNames = m.rows.map((_, i) => label(m.rows, i, rows[i]));
  const colNames = m.cols.map((_, j) => label(m.cols, j, cols[j]));
  const wrong: string[] = [];
  const tables: Record<string, { expected: string[]; observed: string[] }> = {};
  m.probes.forEach((probe, p) => {
    const observed = rows.map((_, i) =>
      cols
        .map((_, j) => {
          const cell = results.filter((r) => r.p === p && r.i === i && r.j === j);
          const allowed = cell.filter((r) => r.ok).length;
          const want = probe.expect[i][j];
          for (const r of cell) if (r.ok !== want) wrong.push(`${probe.text} ${short(r.a.key)} -> ${short(r.b.key)}: expected ${want ? '.' : 'X'}, got ${r.ok ? '.' : 'X'}${r.note ? ` (${r.note})` : ''}`);
          // No pair but the pod itself: loopback, allowed.
          return !cell.length || allowed === cell.length ? '.' : allowed === 0 ? 'X' : '?';
        })
        .join(''),
    );
    tables[probe.text] = { expected: probe.expect.map((r) => r.map((ok) => (ok ? '.' : 'X')).join('')), observed };
  });
  const cells = m.rows.length * m.cols.length * m.probes.length;
  const text = (t: Record<string, { expected: string[]; observed: string[] }>, k: 'expected' | 'observed') =>
    Object.entries(t)
      .map(([probe, x]) => `${probe}: ${x[k].join(' ')}`)
      .join('; ');
  return {
    ok: !wrong.length,
    expected: `${cells} cells (${probes.length} pod pairs) as the table says: ${text(tables, 'expected')}`,
    actual: wrong.length ? `${wrong.length} of ${probes.length} pairs differ: ${text(tables, 'observed')}` : `every pair as expected: ${text(tables, 'observed')}`,
    message: wrong.length ? `rows ${rowNames.join(' | ')}; columns ${colNames.join(' | ')}: ` + wrong.slice(0, 12).join('; ') + (wrong.length > 12 ? `; and ${wrong.length - 12} more` : '') : undefined,
    detail: { rows: rowNames, columns: colNames, tables },
  };
}

export const CONDITIONS: { [K in Condition['kind']]: CondFn<K> } = {
  async reachability(c, ctx) {
    if (c.matrix) return reachabilityMatrix(c, c.matrix, ctx);
    await ctx.pods.refresh();
    const sources = ctx.pods.resolve(c.from, ctx.rng);
    const targets = c.to.type === 'ip' ? [{ key: c.to.ip, ip: c.to.ip } as PodInfo] : ctx.pods.resolve(c.to, ctx.rng);
    const pairs = sources.flatMap((a) => targets.filter((b) => b.key !== a.key).map((b) => [a, b] as const));
    if (!pairs.length) throw new StepError(`reachability: no pairs between ${c.from.text} and ${c.to.text}`);
    const results = await pool(pairs, 12, async ([a, b]) => {
      if (!b.ip) return { a, b, replies: 0, note: `${short(b.key)} has no IP` };
      return { a, b, ...(await pingPair(ctx, a, b.ip, c.count)) };
    });
    const want = c.expect === 'reachable';
    const bad = results.filter((r) => r.replies > 0 !== want);
    const matrix = results.map((r) => ({ from: short(r.a.key), to: short(r.b.key), replies: r.replies, sent: c.count, note: r.note }));
    return {
      ok: !bad.length,
      expected: `${pairs.length} pair${pairs.length === 1 ? '' : 's'} ${c.expect}`,
      actual: bad.length ? `${bad.length} of ${pairs.length} pairs ${want ? 'unreachable' : 'reachable'}` : `${pairs.length} of ${pairs.length} pairs ${c.expect}`,
      message: bad.length
        ? bad
            .slice(0, 12)
            .map((r) => `${short(r.a.key)} -> ${short(r.b.key)} (${r.b.ip || 'no IP'}): ${r.replies}/${c.count} replies${r.note ? ` (${r.note})` : ''}`)
            .join('; ') + (bad.length > 12 ? `; and ${bad.length - 12} more` : '')
        : undefined,
      detail: matrix,
    };
  },

  delivery(c, ctx) {
    const flow = flowOf(ctx, c.flow);
    const { s, where } = inWindow(c, ctx, flow);
    const bounds = [c.min !== undefined && `>= ${fmtPct(c.min)}`, c.max !== undefined && `<= ${fmtPct(c.max)}`].filter(Boolean).join(' and ');
    if (!s.length) return Promise.resolve({ ok: false, expected: `delivery ${bounds}${where}`, actual: 'no probes were sent in that window', message: `flow ${c.flow} sent nothing${where}${flow.note ? ` (${flow.note})` : ''}` });
    const got = s.filter((x) => x.rtt !== null).length;
    const r = got / s.length;
    const ok = (c.min === undefined || r >= c.min) && (c.max === undefined || r <= c.max);
    const lost = s.filter((x) => x.rtt === null).map((x) => x.seq);
    return Promise.resolve({
      ok,
      expected: `delivery ${bounds}${where}`,
      actual: `${fmtPct(r)} (${got}/${s.length})`,
      message: ok ? undefined : `flow ${c.flow} (${flow.from?.key ? short(flow.from.key) : '?'} -> ${flow.to?.pod ? short(flow.to.pod) : flow.to?.ip}): ${got} of ${s.length} probes answered${where}; lost seqs ${compactSeqs(lost)}${flow.note ? ` (${flow.note})` : ''}`,
      detail: { probes: s.length, answered: got, lostSeqs: lost },
    });
  },

  latency(c, ctx) {
    const flow = flowOf(ctx, c.flow);
    const { s, where } = inWindow(c, ctx, flow);
    const rtts = s.filter((x) => x.rtt !== null).map((x) => x.rtt!).sort((a, b) => a - b);
    const bounds = [c.minMs !== undefined && `>= ${fmtMs(c.minMs)}`, c.maxMs !== undefined && `<= ${fmtMs(c.maxMs)}`].filter(Boolean).join(' and ');
    const expected = `p${c.percentile} rtt ${bounds}${where}`;
    if (!rtts.length) return Promise.resolve({ ok: false, expected, actual: 'no replies', message: `flow ${c.flow} got no replies${where}` });
    const v = percentile(rtts, c.percentile);
    const ok = (c.maxMs === undefined || v <= c.maxMs) && (c.minMs === undefined || v >= c.minMs);
    return Promise.resolve({ ok, expected, actual: `${fmtMs(v)} over ${rtts.length} replies (max ${fmtMs(rtts[rtts.length - 1])})`, message: ok ? undefined : `flow ${c.flow}: p${c.percentile} round trip ${fmtMs(v)}, wanted ${bounds}` });
  },

  async 'no-route'(c, ctx) {
    const cidr = ctx.podCidrs.get(c.node);
    if (!cidr) throw new StepError(`no podCIDR known for ${c.node}`);
    const on = (c.on ?? ctx.nodes.filter((n) => n !== c.node)).filter((n) => !ctx.down.has(n) && !ctx.deletedNodes.has(n));
    const still: string[] = [];
    const silent: string[] = [];
    for (const n of on) {
      try {
        const r = await ctx.io.call<{ stdout: string }>(n, 'node.cmd', { argv: ['ip', 'route'] }, 2000);
        if (r.stdout.split('\n').some((l) => l.startsWith(cidr + ' '))) still.push(n);
      } catch {
        silent.push(n);
      }
    }
    const ok = !still.length && !silent.length;
    return {
      ok,
      expected: `no route to ${c.node}'s ${cidr} on ${on.join(', ') || 'any node'}`,
      actual: ok ? 'gone everywhere' : [still.length && `still routed on ${still.join(', ')}`, silent.length && `no answer from ${silent.join(', ')}`].filter(Boolean).join('; '),
      message: ok ? undefined : `${cidr} (${c.node}'s pods) is still in the routing table of ${still.join(', ') || '-'}${silent.length ? `; ${silent.join(', ')} did not answer` : ''}`,
    };
  },

  async transfer(c, ctx) {
    await ctx.pods.refresh();
    const [a] = ctx.pods.resolve(c.from, ctx.rng);
    const [b] = c.to.type === 'ip' ? [{ key: c.to.ip, ip: c.to.ip } as PodInfo] : ctx.pods.resolve(c.to, ctx.rng);
    if (!a || !b?.ip) throw new StepError(`transfer: cannot resolve ${c.from.text} -> ${c.to.text}`);
    let out = '';
    const code = await ctx.io
      .exec(a.node, a.key, ['transfer', '--bytes', String(c.bytes), `${b.ip}:${c.port}`], { stdout: (s) => (out += s), stderr: (s) => (out += s), timeoutMs: 120_000, signal: ctx.signal })
      .catch((e: Error) => ((out += e.message), 1));
    const verified = code === 0 && /\bverified\b/.test(out);
    return {
      ok: verified,
      expected: `${c.bytes} bytes echoed back with the same SHA-256`,
      actual: out.trim().split('\n').pop() ?? `exit ${code}`,
      message: verified ? undefined : `transfer ${short(a.key)} -> ${b.ip}:${c.port} failed: ${out.trim()}`,
    };
  },

  /**
   * New connections (hey -disable-keepalive) from a pod to a Service's
   * ClusterIP: how many were answered, and whether the answers (each names its
   * backend pod) spread evenly over the ready endpoints (chi-square at p > 0.01).
   */
  /** One lookup from a pod through the cluster DNS (nslookup over real UDP via kube-dns' ClusterIP). */
  async resolve(c, ctx) {
    await ctx.pods.refresh();
    const [a] = ctx.pods.resolve(c.from, ctx.rng);
    if (!a) throw new StepError(`resolve: cannot resolve ${c.from.text}`);
    const expected = c.expect === 'nxdomain' ? `${c.host}: NXDOMAIN` : `${c.host} -> ${c.address ?? 'an address'}`;
    if (ctx.down.has(a.node) || ctx.frozen.has(a.node)) return { ok: false, expected, actual: `${a.node} is ${ctx.down.has(a.node) ? 'down' : 'frozen'}` };
    let out = '';
    await ctx.io
      .exec(a.node, a.key, ['nslookup', c.host], { stdout: (s) => (out += s), stderr: (s) => (out += s), timeoutMs: 45_000, signal: ctx.signal })
      .catch((e: Error) => (out += e.message));
    const addr = /^Address: (\S+)$/m.exec(out)?.[1];
    const failure = /\*\* server can't find \S+: (\w+)|(timed out)/.exec(out);
    const actual = addr ? `${c.host} -> ${addr}` : failure ? `${c.host}: ${failure[1] ?? 'no answer (timed out)'}` : out.trim().slice(0, 200);
    const ok = c.expect === 'nxdomain' ? failure?.[1] === 'NXDOMAIN' : !!addr && (c.address === undefined || addr === c.address);
    return { ok, expected, actual, message: ok ? undefined : `nslookup ${c.host} in ${short(a.key)}: ${actual}` };
  },

  async 'lb-spread'(c, ctx) {
    await ctx.pods.refresh();
    const [a] = ctx.pods.resolve(c.from, ctx.rng);
    if (!a) throw new StepError(`lb-spread: cannot resolve ${c.from.text}`);
    const svc = await ctx.api.get<{ spec?: { clusterIP?: string } }>('services', c.service, c.namespace).catch(() => null);
    const vip = svc?.spec?.clusterIP;
    if (!vip) throw new StepError(`Service ${c.namespace}/${c.service} not found (or has no ClusterIP)`);
    let out = '';
    await ctx.io
      .exec(a.node, a.key, ['hey', '-n', String(c.requests), '-c', '10', '-disable-keepalive', '-t', '5', '-o', 'json', `http://${vip}:${c.port}${c.path}`], {
        stdout: (s) => (out += s),
        stderr: (s) => (out += s),
        timeoutMs: 120_000,
        signal: ctx.signal,
      })
      .catch((e: Error) => (out += e.message));
    let r: { requests: number; errors: number; bodies: Record<string, number> };
    try {
      r = JSON.parse(out.trim().split('\n').pop() ?? '') as typeof r;
    } catch {
      return { ok: false, expected: 'hey results', actual: out.trim().slice(0, 200), message: `hey failed: ${out.trim().slice(0, 300)}` };
    }
    const answered = r.requests - r.errors;
    const ratio = answered / (r.requests || 1);
    const counts = Object.values(r.bodies);
    const expected = answered / (counts.length || 1);
    const chi2 = counts.reduce((s, o) => s + (o - expected) ** 2 / (expected || 1), 0);
    // Critical chi-square values at p = 0.01 for 1..9 degrees of freedom.
    const CRIT = [6.63, 9.21, 11.34, 13.28, 15.09, 16.81, 18.48, 20.09, 21.67];
    const limit = c.maxChi2 === -1 ? CRIT[Math.min(CRIT.length, Math.max(1, counts.length - 1)) - 1] : c.maxChi2;
    const spreadOk = limit === undefined || counts.length < 2 || chi2 <= limit;
    const backendsOk = c.backends === undefined || counts.length === c.backends;
    const ok = ratio >= c.minSuccess && spreadOk && backendsOk;
    const spread = Object.entries(r.bodies).map(([b, n]) => `${b}: ${n}`).join(', ');
    return {
      ok,
      expected: `>= ${fmtPct(c.minSuccess)} answered${c.backends ? ` by ${c.backends} backends` : ''}${limit === undefined ? '' : `, chi-square <= ${limit}`}`,
      actual: `${fmtPct(ratio)} answered (${answered}/${r.requests}); ${spread || 'no answers'}; chi-square ${chi2.toFixed(2)}`,
      message: ok ? undefined : `Service ${c.service} from ${short(a.key)}: ${fmtPct(ratio)} of ${r.requests} connections answered by ${counts.length} backends (${spread || 'none'}), chi-square ${chi2.toFixed(2)}`,
      detail: { bodies: r.bodies, errors: r.errors, chi2 },
    };
  },

  async 'lb-answers'(c, ctx) {
    const ip = await lbAddress(ctx, c.service, c.namespace);
    const url = `http://${ip}:${c.port}${c.path}`;
    const r = await hostGet(url, 1000);
    const ok = 'status' in r && r.status >= 200 && r.status < 300;
    const actual = 'status' in r ? `HTTP ${r.status}: ${r.body.slice(0, 80)}` : r.error;
    return { ok, expected: `GET ${url} from the host answered 2xx`, actual, message: ok ? undefined : `GET ${url} from the host: ${actual}` };
  },

  async 'bgp-converged'(c, ctx) {
    const live = ctx.nodes.filter((n) => !ctx.down.has(n) && !ctx.deletedNodes.has(n) && !ctx.frozen.has(n));
    const on = (c.on ?? live).filter((n) => live.includes(n));
    const missing: string[] = [];
    for (const n of on) {
      const r = await ctx.io.call<{ stdout: string }>(n, 'node.cmd', { argv: ['ip', 'route'] }, 2000).catch(() => ({ stdout: '' }));
      for (const m of live) {
        const cidr = ctx.podCidrs.get(m);
        if (m === n || !cidr) continue;
        if (!r.stdout.split('\n').some((l) => l.startsWith(cidr + ' ') && l.includes('proto bird'))) missing.push(`${n} lacks ${m}'s ${cidr}`);
      }
    }
    return {
      ok: !missing.length,
      expected: `every route between ${on.join(', ')} learned over BGP`,
      actual: missing.length ? missing.join('; ') : 'converged',
      message: missing.length ? `BGP not converged: ${missing.join('; ')}` : undefined,
    };
  },

  async counter(c, ctx) {
    const s = await ctx.io.call<{ interfaces: Record<string, Cnt>; ip: Cnt; pods: Record<string, { eth0: Cnt }> }>(c.node, 'stats', {});
    const dev = c.dev === 'ip' ? s.ip : c.dev.startsWith('pod/') ? s.pods[c.dev.slice(4).includes('/') ? c.dev.slice(4) : `default/${c.dev.slice(4)}`]?.eth0 : s.interfaces[c.dev];
    if (!dev) throw new StepError(`${c.node} has no device '${c.dev}' (it has: ${Object.keys(s.interfaces).join(', ')}, ip, pod/NAME)`);
    let v: number;
    if (c.counter === 'drops') {
      v = Object.entries(dev.drops ?? {})
        .filter(([k]) => !c.reason || k === c.reason || k.startsWith(c.reason + ':'))
        .reduce((n, [, x]) => n + x, 0);
    } else v = dev[({ 'rx-packets': 'rxPackets', 'rx-bytes': 'rxBytes', 'tx-packets': 'txPackets', 'tx-bytes': 'txBytes' } as const)[c.counter as 'rx-packets']] ?? 0;
    const ok = compare(v, c.op, c.value);
    const what = `${c.node} ${c.dev} ${c.counter}${c.reason ? ' ' + c.reason : ''}`;
    return { ok, expected: `${what} ${c.op} ${c.value}`, actual: `${v}`, message: ok ? undefined : `${what} is ${v}, wanted ${c.op} ${c.value}${c.counter === 'drops' ? ` (drops on ${c.dev}: ${JSON.stringify(dev.drops ?? {})})` : ''}` };
  },

  'flow-errors'(c, ctx) {
    const flow = flowOf(ctx, c.flow);
    const n = c.error === 'any' ? Object.values(flow.errors).reduce((a, b) => a + b, 0) : (flow.errors[c.error] ?? 0);
    const ok = (c.min === undefined || n >= c.min) && (c.max === undefined || n <= c.max);
    const bounds = [c.min !== undefined && `>= ${c.min}`, c.max !== undefined && `<= ${c.max}`].filter(Boolean).join(' and ');
    return Promise.resolve({ ok, expected: `${c.error} errors ${bounds}`, actual: `${n}`, message: ok ? undefined : `flow ${c.flow} counted ${n} ${c.error} errors (all: ${JSON.stringify(flow.errors)})` });
  },
};

interface Cnt {
  rxPackets: number;
  rxBytes: number;
  txPackets: number;
  txBytes: number;
  drops: Record<string, number>;
}

/** Evaluates a condition once. */
export function evaluate(c: Condition, ctx: RunContext): Promise<Outcome> {
  const fn = CONDITIONS[c.kind];
  return fn(c as never, ctx);
}

/** [3,4,5,9] → "3-5, 9" (at most 40 ranges). */
export function compactSeqs(seqs: number[]): string {
  if (!seqs.length) return 'none';
  const parts: string[] = [];
  for (let i = 0; i < seqs.length; ) {
    let j = i;
    while (j + 1 < seqs.length && seqs[j + 1] === seqs[j] + 1) j++;
    parts.push(i === j ? `${seqs[i]}` : `${seqs[i]}-${seqs[j]}`);
    i = j + 1;
  }
  return parts.length > 40 ? parts.slice(0, 40).join(', ') + `, ... (${seqs.length} in all)` : parts.join(', ');
}
