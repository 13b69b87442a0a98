/**
 * A vanished peer, in a real lab (127.0.91.0/24): node-2's agent is killed
 * (SIGKILL) in the middle of a transfer from a pod on node-1 to an echo pod
 * on node-2. The sender's connection must fail within a bounded time
 * (~15 s after its first retransmission) with a clear ETIMEDOUT, not hang;
 * a new connection to the dead node's pod must fail after the SYN retries
 * (~15 s) with curl's exit code 7.
 */
import test from 'ava';
import type { Pod } from '../control-plane/types.ts';
import { execInPod } from '../cli/commands.ts';
import { killProcess, labApi } from '../lab/lab.ts';
import type { LoadedObject } from '../lab/manifest.ts';
import { startLab, type TestLab } from './helpers/lab.ts';

const NET = '127.0.91.0/24';
let lab: TestLab;

function pod(name: string, node: string, image: string): LoadedObject {
  return {
    obj: { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default' }, spec: { nodeName: node, containers: [{ name: 'main', image }] } } as unknown as LoadedObject['obj'],
    file: 'tcp-dead-peer.test.ts',
    line: 1,
  };
}

test.before(async () => {
  lab = await startLab(NET, { nodes: 2, podsPerNode: 0, manifests: [pod('client', 'node-1', 'busybox'), pod('echo', 'node-2', 'podlab/echo')] });
});

test.after.always(async () => {
  await lab?.close();
});

async function exec(podName: string, argv: string[]): Promise<{ code: number; out: string; err: string; ms: number }> {
  let out = '';
  let err = '';
  const t0 = Date.now();
  const code = await execInPod(lab.stateDir, podName, argv, { stdout: (s) => (out += s), stderr: (s) => (err += s) });
  return { code, out, err, ms: Date.now() - t0 };
}

test.serial("the peer node's agent killed mid-transfer: the connection fails in bounded time with ETIMEDOUT", async (t) => {
  const api = labApi(lab.rec);
  const echoIp = (await api.get<Pod>('pods', 'echo', 'default'))!.status!.podIP!;
  // Sanity: the path works first.
  const ok = await exec('client', ['transfer', '--bytes', '1M', `${echoIp}:7`]);
  t.is(ok.code, 0, ok.out + ok.err);

  const running = exec('client', ['transfer', '--bytes', '2G', `${echoIp}:7`]);
  await new Promise((r) => setTimeout(r, 1500));
  const killedAt = Date.now();
  await killProcess(lab.stateDir, 'node-2', { kill: true });
  const r = await running;
  const failedAfter = Date.now() - killedAt;
  t.is(r.code, 1);
  t.regex(r.err, /^transfer: write ETIMEDOUT 10\.244\.2\.\d+:7 \(Connection timed out\) after \d+ ms, \d+ bytes sent, \d+ received\n$/);
  t.true(failedAfter >= 14_000 && failedAfter <= 25_000, `failed ${failedAfter} ms after the kill`);
  t.log(`established connection failed ${(failedAfter / 1000).toFixed(1)} s after node-2's agent was killed: ${r.err.trim()}`);

  // A new connection to the dead node's pod: SYN at 0, 1, 3, 7 s, given up at 15 s.
  const connect = await exec('client', ['curl', '-sS', `http://${echoIp}:7/`]);
  t.is(connect.code, 7);
  t.regex(connect.err, /curl: \(7\) Failed to connect to 10\.244\.2\.\d+ port 7 after 1\d{4} ms: Connection timed out/);
  t.true(connect.ms >= 14_500 && connect.ms <= 20_000, `${connect.ms} ms`);
  t.log(`connect to the dead node's pod failed after ${(connect.ms / 1000).toFixed(1)} s: ${connect.err.trim()}`);
});
