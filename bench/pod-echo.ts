/**
 * Cross-node pod UDP echo throughput in a running lab: pod-2a echoes on port
 * 7777, pod-1a sends `n` datagrams of 64 bytes with `window` in flight
 * (podlab's `udp bench`), through whatever path the lab's backend takes. The
 * echo server is quiet (-q), as the raw baseline's is: printing a line per
 * datagram streamed back to the bench cost the echoing node more CPU than the
 * whole data path.
 */
import { execInPod } from '../cli/commands.ts';

export async function podEchoPps(stateDir: string, n: number, window: number, quietEcho = true): Promise<number> {
  const quiet = { stdout: () => {}, stderr: (s: string) => process.stderr.write(s) };
  const listen = new AbortController();
  const server = execInPod(stateDir, 'pod-2a', ['udp', 'listen', '7777', '--echo', ...(quietEcho ? ['-q'] : [])], { ...quiet, signal: listen.signal });
  await new Promise((r) => setTimeout(r, 300));
  let out = '';
  try {
    await execInPod(stateDir, 'pod-1a', ['udp', 'bench', '10.244.2.2', '7777', '-n', String(n), '-W', String(window)], { stdout: (s) => (out += s), stderr: quiet.stderr });
  } finally {
    listen.abort();
    await server;
  }
  return (JSON.parse(out) as { pps: number }).pps;
}

/** `ping -q -c COUNT -i GAP` from pod-1a to pod-2a (10.244.2.2): the mean RTT (ms) ping reports. */
export async function podPingRtt(stateDir: string, count: number, gapMs: number): Promise<number> {
  let out = '';
  await execInPod(stateDir, 'pod-1a', ['ping', '-q', '-c', String(count), '-i', String(gapMs / 1000), '10.244.2.2'], { stdout: (s) => (out += s), stderr: (s) => process.stderr.write(s) });
  const m = /rtt min\/avg\/max\/mdev = [\d.]+\/([\d.]+)\//.exec(out);
  return m ? Number(m[1]) : NaN;
}
