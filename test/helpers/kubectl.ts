/**
 * The real kubectl against a lab, through the kubeconfig `podlab up` writes
 * (the lab CA and the admin token). Never throws on a non-zero exit:
 * tests assert on the code and the text; kubectlOk throws instead.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';

/** What one kubectl run printed. */
export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface KubectlOptions {
  /** Standard input (default: none). */
  stdin?: string;
  /** Another kubeconfig than `<stateDir>/kubeconfig`. */
  kubeconfig?: string;
  timeoutMs?: number;
}

/** `kubectl ARGS` with KUBECONFIG=<stateDir>/kubeconfig (or `kubeconfig`), and HOME there so no user cache is shared. */
export function kubectl(stateDir: string, args: string[], opts: KubectlOptions = {}): Promise<KubectlResult> {
  return new Promise((resolve) => {
    const child = execFile(
      'kubectl',
      args,
      { env: { ...process.env, KUBECONFIG: opts.kubeconfig ?? path.join(stateDir, 'kubeconfig'), HOME: stateDir }, timeout: opts.timeoutMs ?? 60_000, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof (err as NodeJS.ErrnoException & { code?: unknown }).code === 'number' ? (err as unknown as { code: number }).code : 1) : 0;
        resolve({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
    child.stdin?.end(opts.stdin ?? '');
  });
}

/** Like {@link kubectl} but throws with kubectl's stderr on a non-zero exit. */
export async function kubectlOk(stateDir: string, args: string[], opts: KubectlOptions = {}): Promise<string> {
  const r = await kubectl(stateDir, args, opts);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} exited ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}
