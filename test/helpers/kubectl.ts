/**
 * The real kubectl against a lab, through the kubeconfig `podlab up` writes.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';

/** Result of one kubectl run. */
export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs kubectl with the lab's kubeconfig; never rejects (the exit code is in the result). */
export function kubectl(stateDir: string, args: string[], timeoutMs = 60_000): Promise<KubectlResult> {
  return new Promise((resolve) => {
    execFile('kubectl', args, { env: { ...process.env, KUBECONFIG: path.join(stateDir, 'kubeconfig') }, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as NodeJS.ErrnoException & { code?: unknown }).code === 'number' ? ((err as unknown as { code: number }).code) : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/** Like {@link kubectl} but throws with kubectl's stderr on a non-zero exit. */
export async function kubectlOk(stateDir: string, args: string[], timeoutMs = 60_000): Promise<string> {
  const r = await kubectl(stateDir, args, timeoutMs);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} exited ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}
