/**
 * The kubelet's container start for kernel pods, reduced to what a kernel pod
 * can run for real: containers whose image is `nginx` or `podlab/http` get a
 * real HTTP server (./pod-server.ts) in the pod's namespace, one per TCP
 * containerPort (default 80); other images run nothing, as busybox "sleeps".
 *
 * Each server's pid file is `<state>/nodes/<node>/pods/<ns>_<pod>_<container>_<port>.pid`:
 * a restarted agent adopts a running server, a deleted pod stops its servers,
 * and `podlab down` stops whatever is left (common/recorded-process.ts).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Container } from '../control-plane/types.ts';
import { normaliseImage } from '../apps/image.ts';
import { portsOf } from '../apps/types.ts';
import { recordedPid, stopRecorded } from '../common/recorded-process.ts';
import { nodeArgsFor } from '../common/compiled.js';

/** Images whose kernel-pod container is a real HTTP server. */
export const KERNEL_POD_HTTP_IMAGES = ['nginx', 'podlab/http'];

export interface KernelPodRef {
  namespace: string;
  name: string;
  netns: string;
}

function podDir(stateDir: string, node: string): string {
  return path.join(stateDir, 'nodes', node, 'pods');
}

function pidFile(stateDir: string, node: string, pod: KernelPodRef, container: string, port: number): string {
  return path.join(podDir(stateDir, node), `${pod.namespace}_${pod.name}_${container}_${port}.pid`);
}

/** Starts (or adopts) the servers of a pod's containers; resolves once each listens. A failure is returned, not thrown. */
export async function startKernelPodApps(o: { stateDir: string; node: string }, pod: KernelPodRef, containers: Container[]): Promise<string[]> {
  const errors: string[] = [];
  const stateDir = path.resolve(o.stateDir);
  for (const c of containers) {
    if (!KERNEL_POD_HTTP_IMAGES.includes(normaliseImage(c.image ?? ''))) continue;
    for (const port of portsOf(c, 'TCP', [80])) {
      const file = pidFile(stateDir, o.node, pod, c.name, port);
      if (recordedPid(file, stateDir) !== undefined) continue;
      fs.mkdirSync(path.dirname(file), { recursive: true });
      try {
        await startServer(file, pod, o.node, port, stateDir, c.image ?? '');
      } catch (e) {
        errors.push(`${c.name}: ${(e as Error).message}`);
      }
    }
  }
  return errors;
}

function startServer(file: string, pod: KernelPodRef, node: string, port: number, stateDir: string, image: string): Promise<void> {
  const args = ['netns', 'exec', pod.netns, process.execPath, ...nodeArgsFor('kernel-node/pod-server.ts'), '--pod', pod.name, '--node', node, '--port', String(port), '--image', image, '--state-dir', stateDir];
  // Detached: a kernel pod's server lives on when its agent restarts, as containers outlive a kubelet restart.
  const child = spawn('ip', args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  fs.writeFileSync(file, `${child.pid}\n`);
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => done(new Error(`no answer from the server within 15 s`)), 15_000);
    const done = (err?: Error) => {
      clearTimeout(timer);
      child.stdout.removeAllListeners('data');
      child.stdout.destroy();
      child.stderr.destroy();
      child.unref();
      if (err) {
        void stopRecorded(file, stateDir);
        reject(err);
      } else resolve();
    };
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.includes('"event":"listening"')) done();
      else if (out.includes('"event":"error"')) done(new Error((JSON.parse(out.trim().split('\n').pop()!) as { error?: string }).error));
    });
    child.on('exit', (code) => done(new Error(`exited with ${code}: ${out.trim()}`)));
  });
}

/** Stops every server of a pod. */
export async function stopKernelPodApps(o: { stateDir: string; node: string }, pod: Pick<KernelPodRef, 'namespace' | 'name'>): Promise<void> {
  const stateDir = path.resolve(o.stateDir);
  const dir = podDir(stateDir, o.node);
  let files: string[];
  try {
    files = fs.readdirSync(dir).filter((f) => f.startsWith(`${pod.namespace}_${pod.name}_`) && f.endsWith('.pid'));
  } catch {
    return;
  }
  for (const f of files) await stopRecorded(path.join(dir, f), stateDir);
}
