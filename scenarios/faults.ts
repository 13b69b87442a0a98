/**
 * Faults: one function per kind, each changing the lab and saying what it
 * did. Link faults and partitions are impairments on the node agents' underlay
 * send path (overlay/impairment.ts), per directed node pair, seeded by the lab
 * seed; the runner remembers what it set so a restarted agent gets its links
 * back (they belong to the network, not the process) and `heal` clears exactly
 * them. Process faults act by the pid recorded in lab.json, never by name.
 *
 * Adding a fault (bgp-reset, mark-not-ready when they land) = one entry in
 * FAULTS and its name in validate.ts's FAULT_KINDS.
 */
import type { Pod } from '../control-plane/types.ts';
import type { ImpairmentSpec } from '../overlay/impairment.ts';
import { killProcess, restartProcess } from '../lab/lab.ts';
import type { FaultSpec } from './model.ts';
import { sleep, type Band, type RunContext } from './context.ts';
import { StepError, shuffle } from './pods.ts';
import { fmtMs, fmtPct } from './units.ts';
import { lbLeader } from './lb.ts';

type FaultFn<K extends FaultSpec['kind']> = (f: Extract<FaultSpec, { kind: K }>, ctx: RunContext, step: number) => Promise<string>;

/** `loss 5%, delay 10ms ± 5ms` */
export function describeImpairment(s: ImpairmentSpec): string {
  const parts: string[] = [];
  if (s.loss !== undefined) parts.push(`loss ${fmtPct(s.loss)}`);
  if (s.delayMs !== undefined || s.jitterMs !== undefined) parts.push(`delay ${fmtMs(s.delayMs ?? 0)}${s.jitterMs ? ` ± ${fmtMs(s.jitterMs)}` : ''}`);
  if (s.duplicate !== undefined) parts.push(`duplicate ${fmtPct(s.duplicate)}`);
  if (s.reorder !== undefined) parts.push(`reorder ${fmtPct(s.reorder)}`);
  if (s.corrupt !== undefined) parts.push(`corrupt ${fmtPct(s.corrupt)}`);
  if (s.blackhole) parts.push('blackhole');
  return parts.join(', ');
}

const pairKey = (a: string, b: string) => `${a}>${b}`;

/** Pushes the scenario's state of one directed pair to the sending agent (skipped while it is down or frozen). */
async function applyLink(ctx: RunContext, from: string, to: string): Promise<void> {
  if (ctx.down.has(from) || ctx.frozen.has(from)) return; // re-applied on restart / thaw
  const st = ctx.links.get(pairKey(from, to));
  const spec: ImpairmentSpec = { ...(st?.spec ?? {}), ...(st?.blackhole ? { blackhole: true } : {}) };
  if (Object.keys(spec).length) await ctx.io.call(from, 'impair.set', { peer: to, spec });
  else await ctx.io.call(from, 'impair.clear', { peer: to });
}

/** Re-applies every impairment a node sends with (after a restart or a thaw). */
export async function reapplyLinks(ctx: RunContext, node: string): Promise<void> {
  for (const key of ctx.links.keys()) {
    const [from, to] = key.split('>');
    if (from === node && !ctx.deletedNodes.has(to)) await applyLink(ctx, from, to);
  }
}

function openBand(ctx: RunContext, step: number, kind: string, label: string, nodes: string[], instant = false): Band {
  const b: Band = { step, kind, label, nodes, startMs: ctx.now() };
  if (instant) b.endMs = b.startMs;
  ctx.bands.push(b);
  return b;
}

function closeBands(ctx: RunContext, by: string, match: (b: Band) => boolean): void {
  for (const b of ctx.bands) {
    if (b.endMs === undefined && match(b)) {
      b.endMs = ctx.now();
      b.closedBy = by;
    }
  }
}

/** Polls the apiserver until these pods are Running with an IP. */
async function waitRunning(ctx: RunContext, keys: string[], timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    await ctx.pods.refresh();
    const pending = keys.filter((k) => !ctx.pods.get(k)?.ip);
    if (!pending.length) return;
    if (ctx.pods.stale) throw new StepError(`cannot follow new pods: the apiserver is not answering (${ctx.pods.stale})`);
    if (Date.now() > deadline) throw new StepError(`pods not Running after ${fmtMs(timeoutMs)}: ${pending.join(', ')}`);
    await sleep(100, ctx.signal);
    if (ctx.signal.aborted) return;
  }
}

const procLabel = (t: string) => (t === 'apiserver' ? 'the apiserver' : `${t}'s agent`);

export const FAULTS: { [K in FaultSpec['kind']]: FaultFn<K> } = {
  async link(f, ctx, step) {
    const pairs: [string, string][] = [];
    for (const a of f.from) for (const b of f.to) pairs.push([a, b], ...(f.oneWay ? [] : [[b, a] as [string, string]]));
    for (const [a, b] of pairs) {
      const st = ctx.links.get(pairKey(a, b)) ?? { blackhole: false };
      st.spec = f.spec;
      ctx.links.set(pairKey(a, b), st);
      await applyLink(ctx, a, b);
    }
    const arrow = f.oneWay ? '->' : '<->';
    const label = `${f.from.join(',')} ${arrow} ${f.to.join(',')}: ${describeImpairment(f.spec)}`;
    openBand(ctx, step, 'link', label, [...f.from, ...f.to]);
    return label;
  },

  async partition(f, ctx, step) {
    for (const a of f.a) {
      for (const b of f.b) {
        for (const [x, y] of [[a, b], [b, a]]) {
          const st = ctx.links.get(pairKey(x, y)) ?? { blackhole: false };
          st.blackhole = true;
          ctx.links.set(pairKey(x, y), st);
          await applyLink(ctx, x, y);
        }
      }
    }
    const label = `partition ${f.a.join(',')} | ${f.b.join(',')}`;
    openBand(ctx, step, 'partition', label, [...f.a, ...f.b]);
    return label;
  },

  async heal(f, ctx) {
    const scope = f.nodes ?? ctx.nodes;
    const touched: string[] = [];
    for (const [key, st] of ctx.links) {
      const [a, b] = key.split('>');
      if (!scope.includes(a) && !scope.includes(b)) continue;
      st.spec = undefined;
      st.blackhole = false;
      ctx.links.delete(key);
      if (!ctx.deletedNodes.has(b)) await applyLink(ctx, a, b);
      touched.push(key);
    }
    closeBands(ctx, 'heal', (b) => (b.kind === 'link' || b.kind === 'partition') && b.nodes.some((n) => scope.includes(n)));
    return touched.length ? `cleared impairments on ${touched.length} directed links (${f.nodes ? f.nodes.join(', ') : 'every node'})` : 'nothing to heal';
  },

  async kill(f, ctx, step) {
    if (f.lbLeader) f = { ...f, target: await lbLeader(ctx, f.lbLeader.service, f.lbLeader.namespace) };
    await killProcess(ctx.stateDir, f.target, { kill: true });
    ctx.frozen.delete(f.target);
    ctx.down.add(f.target);
    closeBands(ctx, 'kill', (b) => b.kind === 'freeze' && b.nodes.includes(f.target));
    openBand(ctx, step, 'kill', `${f.target} killed`, [f.target]);
    return `SIGKILL ${procLabel(f.target)}`;
  },

  freeze(f, ctx, step) {
    ctx.io.signal(f.target, 'SIGSTOP');
    ctx.frozen.add(f.target);
    openBand(ctx, step, 'freeze', `${f.target} frozen`, [f.target]);
    return Promise.resolve(`SIGSTOP ${procLabel(f.target)}`);
  },

  async thaw(f, ctx) {
    if (!ctx.frozen.has(f.target)) throw new StepError(`${f.target} is not frozen`);
    ctx.io.signal(f.target, 'SIGCONT');
    ctx.frozen.delete(f.target);
    closeBands(ctx, 'thaw', (b) => b.kind === 'freeze' && b.nodes.includes(f.target));
    if (f.target !== 'apiserver') await reapplyLinks(ctx, f.target);
    return `SIGCONT ${procLabel(f.target)}`;
  },

  async restart(f, ctx, step) {
    const band = openBand(ctx, step, 'restart', `${f.target} restart`, [f.target]);
    // A stopped process ignores SIGTERM until continued: kill it outright.
    const kill = f.kill || ctx.frozen.has(f.target);
    const { pid } = await restartProcess(ctx.stateDir, f.target, { kill, timeoutMs: 30_000 });
    band.endMs = ctx.now();
    ctx.down.delete(f.target);
    ctx.frozen.delete(f.target);
    closeBands(ctx, 'restart', (b) => (b.kind === 'kill' || b.kind === 'freeze') && b.nodes.includes(f.target));
    if (f.target !== 'apiserver') {
      closeBands(ctx, 'restart', (b) => b.kind === 'mtu' && b.nodes.includes(f.target));
      await reapplyLinks(ctx, f.target);
    }
    await ctx.pods.refresh();
    return `${kill ? 'SIGKILL and ' : ''}restarted ${procLabel(f.target)} (pid ${pid})`;
  },

  async 'delete-pods'(f, ctx, step) {
    await ctx.pods.refresh();
    const victims = ctx.pods.resolve(f.pods, ctx.rng, f.count);
    for (const p of victims) {
      const gone = await ctx.api.delete('pods', p.name, p.namespace);
      if (!gone) throw new StepError(`pod ${p.key} was already gone`);
    }
    if (f.recreate) {
      for (const p of victims) {
        const o = p.obj;
        const fresh: Pod = {
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name: o.metadata.name, namespace: o.metadata.namespace, labels: o.metadata.labels, annotations: o.metadata.annotations } as Pod['metadata'],
          spec: o.spec!,
        };
        await ctx.api.create('pods', fresh, p.namespace);
      }
      await waitRunning(ctx, victims.map((p) => p.key));
    } else await ctx.pods.refresh();
    const names = victims.map((p) => p.name).join(', ');
    openBand(ctx, step, 'delete-pods', `deleted ${names}`, [...new Set(victims.map((p) => p.node))], true);
    if (!f.recreate) return `deleted ${names}`;
    return `replaced ${victims.map((p) => `${p.name} (${p.ip} -> ${ctx.pods.get(p.key)?.ip})`).join(', ')}`;
  },

  async 'delete-node'(f, ctx, step) {
    const gone = await ctx.api.delete('nodes', f.node);
    if (!gone) throw new StepError(`node ${f.node} was already gone`);
    ctx.deletedNodes.add(f.node);
    openBand(ctx, step, 'delete-node', `Node ${f.node} deleted`, [f.node], true);
    return `deleted Node ${f.node} from the apiserver${ctx.down.has(f.node) ? '' : ' (its agent still runs)'}`;
  },

  /** Sets the pods' Ready condition (a failing readiness probe): endpoints follow it, the pod keeps running. */
  async 'mark-not-ready'(f, ctx, step) {
    await ctx.pods.refresh();
    const pods = ctx.pods.resolve(f.pods, ctx.rng);
    const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    for (const p of pods) {
      const cur = await ctx.api.get<Pod>('pods', p.name, p.namespace);
      const conditions = (cur?.status?.conditions ?? []).filter((c) => c.type !== 'Ready' && c.type !== 'ContainersReady');
      const st = f.ready ? 'True' : 'False';
      conditions.push({ type: 'Ready', status: st, lastTransitionTime: now }, { type: 'ContainersReady', status: st, lastTransitionTime: now });
      await ctx.api.patchStatus('pods', p.name, { status: { conditions } }, p.namespace);
    }
    const names = pods.map((p) => p.name).join(', ');
    openBand(ctx, step, 'mark-not-ready', `${names} ${f.ready ? 'Ready again' : 'not Ready'}`, [...new Set(pods.map((p) => p.node))], true);
    return `${names}: Ready=${f.ready ? 'True' : 'False'}`;
  },

  async 'bgp-reset'(f, ctx, step) {
    const r = await ctx.io.call<{ reset: string[] }>(f.node, 'bgp.reset', { peer: f.peer });
    openBand(ctx, step, 'bgp-reset', `BGP reset on ${f.node}${f.peer ? ` towards ${f.peer}` : ''}`, [f.node, ...(f.peer ? [f.peer] : [])], true);
    return `reset ${r.reset.length} BGP session(s) on ${f.node}: ${r.reset.join(', ')}`;
  },

  async scale(f, ctx, step) {
    await ctx.pods.refresh();
    const current = ctx.pods.matching({ prefix: f.prefix, namespace: f.namespace }).filter((p) => /^\d+$/.test(p.name.slice(f.prefix.length)));
    const created: string[] = [];
    let deleted: string[] = [];
    if (current.length < f.replicas) {
      const taken = new Set(current.map((p) => p.name));
      for (let i = 1, made = 0; made < f.replicas - current.length; i++) {
        const name = `${f.prefix}${i}`;
        if (taken.has(name)) continue;
        const nodeName = f.nodes ? f.nodes[(current.length + made) % f.nodes.length] : undefined;
        const pod: Pod = {
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name, namespace: f.namespace, labels: { ...f.labels } } as Pod['metadata'],
          spec: { ...(nodeName ? { nodeName } : {}), containers: [{ name: 'main', image: 'busybox' }] },
        };
        await ctx.api.create('pods', pod, f.namespace);
        created.push(`${f.namespace}/${name}`);
        made++;
      }
      await waitRunning(ctx, created);
    } else if (current.length > f.replicas) {
      const victims = shuffle(current, ctx.rng).slice(0, current.length - f.replicas);
      for (const p of victims) await ctx.api.delete('pods', p.name, p.namespace);
      deleted = victims.map((p) => p.key);
      await ctx.pods.refresh();
    }
    const label = `scale ${f.prefix}* to ${f.replicas}`;
    openBand(ctx, step, 'scale', label, f.nodes ?? [], true);
    const short = (k: string) => k.replace(/^default\//, '');
    return `${label}: ${created.length ? `created ${created.map(short).join(', ')}` : deleted.length ? `deleted ${deleted.map(short).join(', ')}` : 'already there'}`;
  },

  async policy(f, ctx) {
    // Felix applies policy within a second or so of the apiserver's write; the next step sees it in force.
    if (f.apply) {
      const ns = f.apply.metadata.namespace ?? 'default';
      await ctx.api.create('networkpolicies', f.apply, ns);
    } else if (f.remove) {
      const gone = await ctx.api.delete('networkpolicies', f.remove.name, f.remove.namespace);
      if (!gone) throw new StepError(`policy: no NetworkPolicy ${f.remove.namespace}/${f.remove.name} to remove`);
    }
    const want = (await ctx.api.list('networkpolicies')).items.length;
    const deadline = Date.now() + 10_000;
    for (;;) {
      const counts = await Promise.all(ctx.nodes.map((n) => ctx.io.call<{ policy?: { policies: number } }>(n, 'stats', {}).then((s) => s.policy?.policies, () => undefined)));
      if (counts.every((c) => c === undefined || c === want)) break;
      if (Date.now() > deadline) throw new StepError(`policy: nodes did not apply ${want} policies within 10 s (they report ${counts.join(', ')})`);
      await sleep(50);
    }
    return f.apply ? `applied NetworkPolicy ${f.apply.metadata.namespace ?? 'default'}/${f.apply.metadata.name}` : `removed NetworkPolicy ${f.remove!.namespace}/${f.remove!.name}`;
  },

  async mtu(f, ctx, step) {
    await ctx.io.call(f.node, 'stack.mtu', { dev: f.dev, mtu: f.mtu });
    closeBands(ctx, 'mtu', (b) => b.kind === 'mtu' && b.label.startsWith(`${f.node} ${f.dev} `));
    openBand(ctx, step, 'mtu', `${f.node} ${f.dev} mtu ${f.mtu}`, [f.node]);
    return `${f.node}: ip link set dev ${f.dev} mtu ${f.mtu}`;
  },
};

/** Runs one fault. */
export function applyFault(f: FaultSpec, ctx: RunContext, step: number): Promise<string> {
  const fn = FAULTS[f.kind];
  return fn(f as never, ctx, step);
}

/** A one-line description of a fault before it runs. */
export function describeFault(f: FaultSpec): string {
  switch (f.kind) {
    case 'link':
      return `link ${f.from.join(',')} ${f.oneWay ? '->' : '<->'} ${f.to.join(',')} ${describeImpairment(f.spec)}`;
    case 'partition':
      return `partition ${f.a.join(',')} from ${f.b.join(',')}`;
    case 'kill':
      return f.lbLeader ? `kill the node holding ${f.lbLeader.namespace}/${f.lbLeader.service}'s LoadBalancer IP` : `kill ${f.target}`;
    case 'freeze':
    case 'thaw':
      return `${f.kind} ${f.target}`;
    case 'restart':
      return `restart ${f.target}${f.kill ? ' (SIGKILL first)' : ''}`;
    case 'delete-pods':
      return `delete ${f.count ? `${f.count} of ` : ''}${f.pods.text}${f.recreate ? ' and recreate' : ''}`;
    case 'delete-node':
      return `delete Node ${f.node}`;
    case 'bgp-reset':
      return `bgp-reset ${f.node}${f.peer ? ` -> ${f.peer}` : ''}`;
    case 'mark-not-ready':
      return `mark ${f.pods.text} ${f.ready ? 'Ready' : 'not Ready'}`;
    case 'scale':
      return `scale ${f.prefix}* to ${f.replicas}`;
    case 'mtu':
      return `mtu ${f.node} ${f.dev} ${f.mtu}`;
    case 'heal':
      return `heal ${f.nodes ? f.nodes.join(',') : 'all links'}`;
    case 'policy':
      return f.apply ? `apply NetworkPolicy ${f.apply.metadata.namespace ?? 'default'}/${f.apply.metadata.name}` : `remove NetworkPolicy ${f.remove!.namespace}/${f.remove!.name}`;
  }
}
