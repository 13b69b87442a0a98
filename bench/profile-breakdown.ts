/**
 * A CPU profile's busy time (idle left out) by where it goes, for a data-path
 * process: Node's dgram (the native send, which is the syscall, and its JS),
 * libuv/native entry (where the receive's recvmsg is counted), GC, timers and
 * microtasks, Buffer operations, and podlab's own code by folder. Given how
 * many datagrams were echoed while it ran, also per datagram.
 * `node --import tsx bench/profile-breakdown.ts FILE.cpuprofile [ECHOES]`.
 */
import fs from 'node:fs';
import type { Profile } from './cpu-profile.ts';

function category(name: string, url: string): string | undefined {
  if (name === '(idle)') return undefined;
  if (name === '(garbage collector)') return 'GC';
  if (name === '(program)') return '(program): libuv, recvmsg, native entry';
  // A profile started with the process (--cpu-prof) may show the native send as doSend's own time.
  if ((name === 'send' && !url) || (name === 'doSend' && url === 'node:dgram')) return "Node's dgram send (native: the syscall)";
  if (/node:(dgram|dns|internal\/dgram|internal\/net|internal\/async_hooks|internal\/validators)/.test(url) || name === 'QueryReqWrap' || name === 'SendWrap') return "Node's dgram JS (send, receive)";
  if (/node:internal\/process\/task_queues|node:internal\/timers|node:timers|promises/.test(url) || name === 'runMicrotasks') return 'ticks, microtasks, timers';
  if (/node:buffer|internal\/buffer/.test(url) || ['compareOffset', 'set length', 'copy', 'FastBuffer', 'byteLengthUtf8', 'fill'].includes(name)) return 'Buffer operations';
  if (/node:events/.test(url)) return 'EventEmitter';
  if (name === 'now' && !url) return 'performance.now / clock';
  const m = /dist\/([^/]+\/(?:[^/]+\/)?)/.exec(url) ?? /wt-[^/]+\/([^/]+\/(?:[^/]+\/)?)/.exec(url);
  if (m && !url.includes('node_modules')) return `podlab: ${m[1]}`;
  return 'other (control plane, streams, msgpack, ...)';
}

export function breakdown(p: Profile, echoes?: number): string {
  const byId = new Map(p.nodes.map((x) => [x.id, x] as const));
  const cat = new Map<string, number>();
  let busy = 0;
  p.samples.forEach((id, i) => {
    const f = byId.get(id)?.callFrame;
    const c = f && category(f.functionName, f.url);
    if (!c) return;
    const ms = (p.timeDeltas[i] ?? 0) / 1000;
    cat.set(c, (cat.get(c) ?? 0) + ms);
    busy += ms;
  });
  const per = (ms: number) => (echoes ? `${((ms * 1000) / echoes).toFixed(2).padStart(6)} µs  ` : '');
  const lines = [`busy ${busy.toFixed(0)} ms${echoes ? `, ${echoes} datagrams echoed: ${((busy * 1000) / echoes).toFixed(1)} µs each` : ''}`];
  for (const [c, ms] of [...cat].sort((a, b) => b[1] - a[1])) if (ms >= busy * 0.003) lines.push(`${((100 * ms) / busy).toFixed(1).padStart(5)}%  ${per(ms)}${c}`);
  return lines.join('\n') + '\n';
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [file, echoes] = process.argv.slice(2);
  process.stdout.write(breakdown(JSON.parse(fs.readFileSync(file, 'utf8')) as Profile, echoes ? Number(echoes) : undefined));
}
