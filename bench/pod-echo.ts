/**
 * Cross-node pod UDP echo throughput in a running lab: pod-2a echoes on port
 * 7777, pod-1a sends `n` datagrams of 64 bytes with `window` in flight
 * (podlab's `udp bench`), through whatever path the lab's backend takes. The
 * echo server is quiet (-q), as the raw baseline's is: printing a line per
 * datagram streamed back to the bench cost the echoing node more CPU than the
 * whole data path.
 */
import { execInPod, getResources } from '../cli/commands.ts';
import type { KubeObject } from '../control-plane/types.ts';
import type { LoadedObject } from '../lab/manifest.ts';

export async function podEchoPps(stateDir: string, n: number, window: number, quietEcho = true): Promise<number> {
  const quiet = { stdout: () => {}, stderr: (s: string) => process.stderr.write(s) };
  const listen = new AbortController();
  // The bench starts once the echo server says it is bound (it was a fixed 300 ms): a datagram sent before would be
  // refused, one fewer in flight for the rest of the run, which would then wait out its 60 s timeout for the reply.
  let bound = false;
  let heard = '';
  let listening: () => void = () => {};
  const server = execInPod(stateDir, 'pod-2a', ['udp', 'listen', '7777', '--echo', ...(quietEcho ? ['-q'] : [])], {
    stdout: (s) => {
      if (bound) return;
      heard += s;
      if (heard.includes('listening on')) {
        bound = true;
        listening();
      }
    },
    stderr: quiet.stderr,
    signal: listen.signal,
  });
  await Promise.race([
    new Promise<void>((r) => (listening = r)),
    server.then((code) => {
      if (!bound) throw new Error(`udp listen in pod-2a exited (${code}) before it was listening: ${heard}`);
    }),
  ]);
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

/** A `podlab/sink` pod on node-2, for {@link podTcpGoodput}: a manifest for `up`. */
export const SINK_POD: LoadedObject = {
  // As a manifest file gives it: the apiserver fills in uid, resourceVersion and creationTimestamp.
  obj: { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'sink', namespace: 'default' }, spec: { nodeName: 'node-2', containers: [{ name: 'sink', image: 'podlab/sink' }] } } as unknown as KubeObject,
  file: 'bench/pod-echo.ts',
  line: 1,
};

/**
 * One-way TCP goodput (bytes/s) from pod-1a to the sink pod on node-2 (`transfer --discard`): each
 * node's TCP in its own agent process, as in a lab, where bench/tcp.ts runs both nodes in one thread.
 */
export async function podTcpGoodput(stateDir: string, bytes: number): Promise<number> {
  const pod = JSON.parse(await getResources(stateDir, 'pods', { name: 'sink', output: 'json' })) as { status?: { podIP?: string } };
  const ip = pod.status?.podIP;
  if (!ip) throw new Error('bench: the sink pod has no address');
  let out = '';
  const code = await execInPod(stateDir, 'pod-1a', ['transfer', '--discard', '--bytes', String(bytes), '--seed', '1', `${ip}:9`], { stdout: (s) => (out += s), stderr: (s) => process.stderr.write(s) });
  const m = /^duration [\d.]+ s \(connect ([\d.]+) ms\)/m.exec(out);
  const total = /^duration ([\d.]+) s/m.exec(out);
  if (code !== 0 || !m || !total || !out.endsWith('delivered\n')) throw new Error(`bench: transfer --discard failed (${code}): ${out}`);
  return bytes / (Number(total[1]) - Number(m[1]) / 1000);
}
