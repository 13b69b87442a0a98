/**
 * `node --import tsx bench/cpu-profile.ts PID SECONDS OUT.cpuprofile [PORT | STDERR-LOG]`:
 * a CPU profile of a running podlab process (the apiserver during a big `up`,
 * say) without restarting it: SIGUSR1 opens Node's inspector on 127.0.0.1
 * (PORT, default 9229), the profiler runs for SECONDS, the profile is written
 * in Chrome's .cpuprofile format (open it in DevTools or speedscope), and the
 * functions with the most self time are printed. The inspector is closed
 * again afterwards, so a later process can be profiled on the same port. For a
 * process started with `--inspect-port=0` (its own free port), give the file
 * its stderr goes to instead of PORT: the URL it announces there is used.
 */
import fs from 'node:fs';
import WebSocket from 'ws';

export interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

export interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

async function inspectorUrl(port: number, deadline: number, log?: string, logFrom = 0): Promise<string> {
  for (;;) {
    if (log) {
      // A process started with --inspect-port=0 opens its inspector on a free port and says which on stderr.
      const m = /Debugger listening on (ws:\/\/\S+)/.exec(fs.readFileSync(log, 'utf8').slice(logFrom));
      if (m) return m[1];
      if (Date.now() > deadline) throw new Error(`no inspector announced in ${log}`);
      await new Promise((r) => setTimeout(r, 50));
      continue;
    }
    try {
      const list = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as { webSocketDebuggerUrl: string }[];
      if (list[0]) return list[0].webSocketDebuggerUrl;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) throw new Error(`no inspector on 127.0.0.1:${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Self time per function (ms), highest first. */
export function topSelf(p: Profile, n: number): { name: string; ms: number; share: number }[] {
  const byId = new Map(p.nodes.map((x) => [x.id, x] as const));
  const self = new Map<string, number>();
  let total = 0;
  p.samples.forEach((id, i) => {
    const node = byId.get(id);
    if (!node) return;
    const f = node.callFrame;
    const file = f.url.replace(/^.*\/(dist|node_modules)\//, '$1/');
    const name = `${f.functionName || '(anonymous)'} ${file}:${f.lineNumber + 1}`;
    const dt = (p.timeDeltas[i] ?? 0) / 1000;
    self.set(name, (self.get(name) ?? 0) + dt);
    total += dt;
  });
  return [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([name, ms]) => ({ name, ms, share: ms / total }));
}

async function main(): Promise<void> {
  const [pidText, secondsText, out, portText] = process.argv.slice(2);
  const pid = Number(pidText);
  const seconds = Number(secondsText);
  if (!Number.isInteger(pid) || !(seconds > 0) || !out) throw new Error('usage: cpu-profile.ts PID SECONDS OUT.cpuprofile [PORT]');
  // PORT, or the log file (stderr) of a process started with --inspect-port=0.
  const log = portText !== undefined && !/^\d+$/.test(portText) ? portText : undefined;
  const port = log ? 0 : Number(portText ?? 9229);
  const logFrom = log ? fs.statSync(log).size : 0;
  process.kill(pid, 'SIGUSR1');
  const ws = new WebSocket(await inspectorUrl(port, Date.now() + 10_000, log, logFrom));
  await new Promise<void>((resolve, reject) => ws.once('open', resolve).once('error', reject));
  let next = 1;
  const pending = new Map<number, (r: unknown) => void>();
  ws.on('message', (data) => {
    const msg = JSON.parse((data as Buffer).toString()) as { id?: number; result?: unknown };
    if (msg.id !== undefined) pending.get(msg.id)?.(msg.result);
  });
  const call = <T>(method: string, params: Record<string, unknown> = {}): Promise<T> =>
    new Promise((resolve) => {
      const id = next++;
      pending.set(id, resolve as (r: unknown) => void);
      ws.send(JSON.stringify({ id, method, params }));
    });
  await call('Profiler.enable');
  await call('Profiler.setSamplingInterval', { interval: 1000 });
  await call('Profiler.start');
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const { profile } = await call<{ profile: Profile }>('Profiler.stop');
  fs.writeFileSync(out, JSON.stringify(profile));
  await call('Runtime.evaluate', { expression: "import('node:inspector').then((i) => i.close())", awaitPromise: true }).catch(() => {});
  ws.close();
  const wall = (profile.endTime - profile.startTime) / 1000;
  const idle = topSelf(profile, 1000).find((x) => x.name.startsWith('(idle)'));
  process.stdout.write(`${out}: ${(wall / 1000).toFixed(1)} s profiled, idle ${(((idle?.share ?? 0) * 100)).toFixed(0)}%\n`);
  for (const x of topSelf(profile, 25)) process.stdout.write(`${(x.share * 100).toFixed(1).padStart(5)}%  ${x.ms.toFixed(0).padStart(6)} ms  ${x.name}\n`);
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
