/**
 * `podlab trace POD DEST`: installs the trace filter on every node, sends one
 * real packet from the pod, gathers every node's hops and prints them in the
 * order they happened, as the seeds walk a packet through a cluster.
 */
import { IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP } from '../packet/ipv4.ts';
import { isValidIpv4 } from '../packet/addr.ts';
import { SeededRng } from '../common/rng.ts';
import type { ProbeResult } from '../netstack/trace-probe.ts';
import type { TraceFilter, TraceHop } from '../netstack/trace.ts';
import type { Pod } from '../control-plane/types.ts';
import { callNode, locatePod } from './commands.ts';
import { LabError, labApi } from '../lab/lab.ts';

export interface TraceReport {
  from: { pod: string; ip: string; node: string };
  to: string;
  protocol: 'icmp' | 'udp' | 'tcp';
  port?: number;
  hops: (TraceHop & { n: number })[];
  result: ProbeResult;
  drops: { node: string; point: string; reason: string }[];
}

export async function trace(
  stateDir: string,
  ref: string,
  dest: string,
  o: { proto: string; port?: number; seed?: number; timeoutMs?: number; size?: number; ttl?: number },
): Promise<TraceReport> {
  if (o.size !== undefined && (!Number.isInteger(o.size) || o.size < 0 || o.size > 65000)) throw new LabError(`--size: must be 0-65000 bytes, got ${o.size}`);
  if (o.ttl !== undefined && (!Number.isInteger(o.ttl) || o.ttl < 1 || o.ttl > 255)) throw new LabError(`--ttl: must be 1-255, got ${o.ttl}`);
  if (!isValidIpv4(dest)) throw new LabError(`trace: '${dest}' is not an IPv4 address`);
  if (o.proto !== 'icmp' && o.proto !== 'udp' && o.proto !== 'tcp') throw new LabError(`--proto: must be icmp, udp or tcp, got '${o.proto}'`);
  if (o.proto !== 'icmp' && (o.port === undefined || !Number.isInteger(o.port) || o.port < 1 || o.port > 65535)) throw new LabError(`--port: a ${o.proto.toUpperCase()} trace needs --port 1-65535`);
  const { rec, key, node } = await locatePod(stateDir, ref);
  const pod = await labApi(rec).get<Pod>('pods', key.split('/')[1], key.split('/')[0]).catch(() => null);
  const podIp = pod?.status?.podIP ?? (await callNode<{ pods: { key: string; ip: string }[] }>(stateDir, node, 'info', {})).pods.find((p) => p.key === key)?.ip;
  if (!podIp) throw new LabError(`pod ${key} has no IP`);
  const rng = new SeededRng(o.seed ?? 1);
  const filter: TraceFilter = {
    id: `trace-${rng.int(0, 0xffffff).toString(16)}`,
    a: podIp,
    b: dest,
    protocol: o.proto === 'icmp' ? IPPROTO_ICMP : o.proto === 'tcp' ? IPPROTO_TCP : IPPROTO_UDP,
    key: o.proto === 'icmp' ? rng.int(1, 0xffff) : rng.int(40000, 60000),
    port: o.proto === 'icmp' ? undefined : o.port,
  };
  const nodes = rec.nodes.map((n) => n.name);
  await Promise.all(nodes.map((n) => callNode(stateDir, n, 'trace.start', { filter })));
  let result: ProbeResult;
  const hops: TraceHop[] = [];
  try {
    result = await callNode<ProbeResult>(stateDir, node, 'trace.probe', { filter, pod: key, timeoutMs: o.timeoutMs ?? 2000, size: o.size, ttl: o.ttl });
    // Late hops (a duplicate, a reply dropped on the way back) get a moment to land.
    await new Promise((r) => setTimeout(r, 100));
  } finally {
    for (const n of nodes) hops.push(...(await callNode<TraceHop[]>(stateDir, n, 'trace.collect', { id: filter.id }).catch(() => [])));
  }
  hops.sort((a, b) => a.tsUs - b.tsUs || a.seq - b.seq);
  return {
    from: { pod: key, ip: podIp, node },
    to: dest,
    protocol: o.proto,
    port: o.port,
    hops: hops.map((h, i) => ({ ...h, n: i + 1 })),
    result,
    drops: hops.filter((h) => h.drop).map((h) => ({ node: h.node, point: h.point, reason: h.drop! })),
  };
}

/**
 * Whether the traced exchange worked: 0 when the answer came back, 1 when the
 * packet was dropped, refused with an ICMP error, unanswered or not sent, as
 * scripts expect of traceroute-like tools.
 */
export function traceExitCode(r: TraceReport): number {
  return r.result.kind === 'reply' && r.drops.length === 0 ? 0 : 1;
}

/**
 * The report as text: one line per hop, each leg (request, reply, ICMP error)
 * in one block in the order the legs began, then the verdict. A leg's late hop
 * (a flooded ARP copy delivered after the reply was already on its way) stays
 * in its own leg's block rather than interrupting the next one.
 */
export function formatTrace(r: TraceReport): string {
  const lines: string[] = [];
  lines.push(`trace from ${r.from.pod} (${r.from.ip} on ${r.from.node}) to ${r.to}, ${r.protocol === 'icmp' ? 'ICMP echo' : `${r.protocol.toUpperCase()} port ${r.port}`}, 1 ${r.protocol === 'tcp' ? 'connection attempt' : 'packet'}`);
  let leg = '';
  const titles: Record<string, string> = { request: 'request', reply: 'reply', error: 'ICMP error about the request' };
  const legOrder = [...new Set(r.hops.map((h) => h.leg))];
  const byLeg = [...r.hops].sort((a, b) => legOrder.indexOf(a.leg) - legOrder.indexOf(b.leg) || a.n - b.n);
  for (const h of byLeg) {
    if (h.leg !== leg) {
      leg = h.leg;
      lines.push('', `  ${titles[leg] ?? leg}:`);
    }
    const where = `${h.node} ${h.ns === 'node' ? '' : h.ns.replace(/^pod /, 'pod:') + ' '}${h.point}${h.dir ? ' ' + h.dir : ''}`;
    lines.push(`  ${String(h.n).padStart(3)}  ${where.padEnd(34)} ${h.drop ? `DROP (${h.drop}): ` : ''}${h.summary}`);
  }
  lines.push('');
  const res = r.result;
  switch (res.kind) {
    case 'reply':
      lines.push(`result: ${res.text && r.protocol === 'tcp' ? `${res.text} ` : ''}reply from ${res.from} in ${res.rttMs.toFixed(2)} ms${res.ttl !== undefined ? `, ttl ${res.ttl}` : ''}`);
      break;
    case 'icmp-error':
      lines.push(`result: ICMP ${res.type} (code ${res.code}${res.nextHopMtu ? `, mtu ${res.nextHopMtu}` : ''}) from ${res.from} after ${res.rttMs.toFixed(2)} ms`);
      break;
    case 'no-reply':
      lines.push(`result: no reply within ${res.waitedMs} ms${r.drops.length ? '' : r.protocol === 'udp' ? ' (UDP answers only if an application replies)' : ''}`);
      break;
    case 'local-error':
      lines.push(`result: not sent: ${res.error}`);
  }
  for (const d of r.drops) lines.push(`dropped on ${d.node} at ${d.point}: ${d.reason}`);
  return lines.join('\n') + '\n';
}
