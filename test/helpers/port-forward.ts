/**
 * The real `kubectl port-forward` as a test drives it: started in the
 * background with a random local port on a chosen address, its "Forwarding
 * from" line read for the port, stopped by pid at teardown.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import path from 'node:path';

export interface PortForward {
  /** The local port kubectl bound (kubectl chose it: `:REMOTE`). */
  port: number;
  proc: ChildProcess;
  /** Everything kubectl wrote to stderr so far. */
  stderr(): string;
  stdout(): string;
  /** Resolves with kubectl's exit code once it has exited. */
  exited: Promise<number | null>;
  stop(): void;
}

/** Starts `kubectl port-forward --address ADDRESS TARGET :REMOTE` and waits until it forwards. */
export async function kubectlPortForward(stateDir: string, target: string, remote: number, opts: { address: string; env?: Record<string, string>; timeoutMs?: number }): Promise<PortForward> {
  const proc = spawn('kubectl', ['port-forward', '--address', opts.address, target, `:${remote}`], {
    env: { ...process.env, KUBECONFIG: path.join(stateDir, 'kubeconfig'), HOME: stateDir, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`kubectl port-forward ${target} did not start: ${err}${out}`)), opts.timeoutMs ?? 20_000);
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /Forwarding from [\d.]+:(\d+) ->/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`kubectl port-forward ${target} exited ${code}: ${err}${out}`));
    });
  });
  return {
    port,
    proc,
    stderr: () => err,
    stdout: () => out,
    exited,
    stop: () => {
      if (proc.exitCode === null) proc.kill('SIGTERM');
    },
  };
}

/** The real curl: its exit code, the body (binary-safe) and stderr. */
export function curl(args: string[], timeoutMs = 30_000): Promise<{ code: number; body: Buffer; stderr: string }> {
  return new Promise((resolve) => {
    execFile('curl', ['-sS', '--max-time', String(Math.ceil(timeoutMs / 1000)), ...args], { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024, timeout: timeoutMs + 5000 }, (e, stdout, stderr) => {
      const code = e ? (typeof (e as { code?: unknown }).code === 'number' ? (e as unknown as { code: number }).code : 1) : 0;
      resolve({ code, body: stdout, stderr: stderr.toString() });
    });
  });
}
