/**
 * Runs the real kubectl against a lab through the kubeconfig podlab writes.
 * Never throws on a non-zero exit: tests assert on the code and the text.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';

/** What one kubectl run printed. */
export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** `kubectl ARGS` with KUBECONFIG=<stateDir>/kubeconfig (or `kubeconfig`), optional stdin. */
export function kubectl(stateDir: string, args: string[], opts: { stdin?: string; kubeconfig?: string } = {}): Promise<KubectlResult> {
  return new Promise((resolve) => {
    const child = execFile(
      'kubectl',
      args,
      { env: { ...process.env, KUBECONFIG: opts.kubeconfig ?? path.join(stateDir, 'kubeconfig'), HOME: stateDir }, timeout: 60_000, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof (err as NodeJS.ErrnoException & { code?: unknown }).code === 'number' ? ((err as unknown as { code: number }).code) : 1) : 0;
        resolve({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
    child.stdin?.end(opts.stdin ?? '');
  });
}
