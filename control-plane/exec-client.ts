/**
 * The client side of `pods/exec` over the WebSocket remote-command protocol
 * (`v5.channel.k8s.io`, as kubectl 1.30 speaks it; pod-exec.ts is the
 * server): what `podlab exec --via-apiserver` uses where the pod's agent
 * cannot be reached directly (another container of a compose lab), with the
 * admin token and the lab CA.
 *
 * Channels: 0 stdin (and v5's `255 0` to close it), 1 stdout, 2 stderr, 3
 * the final Status, whose NonZeroExitCode cause carries the exit code.
 */
import { WebSocket } from 'ws';
import type { ClientCredentials } from './credentials.ts';

export interface ApiExecOptions {
  apiUrl: string;
  credentials: ClientCredentials;
  namespace: string;
  name: string;
  argv: string[];
  stdout(s: string): void;
  stderr(s: string): void;
  /** Chunks forwarded as standard input, then its close. */
  stdin?: AsyncIterable<Uint8Array | string>;
  /** Aborting closes the connection, which the apiserver turns into a cancel (Ctrl-C) of the command. */
  signal?: AbortSignal;
}

interface ExecStatus {
  status?: string;
  message?: string;
  reason?: string;
  details?: { causes?: { reason?: string; message?: string }[] };
}

/** The exit code a final Status means: 0, the NonZeroExitCode cause, else 1 with the message printed. */
export function exitCodeOf(s: ExecStatus, stderr: (t: string) => void): number {
  if (s.status === 'Success') return 0;
  const code = s.reason === 'NonZeroExitCode' ? Number(s.details?.causes?.find((c) => c.reason === 'ExitCode')?.message) : NaN;
  if (Number.isInteger(code)) return code;
  stderr(`error: ${s.message ?? 'exec failed'}\n`);
  return 1;
}

/** Runs a command in a pod through the apiserver; resolves with its exit code. */
export function execThroughApiserver(o: ApiExecOptions): Promise<number> {
  const q = new URLSearchParams();
  for (const a of o.argv) q.append('command', a);
  q.set('stdout', 'true');
  q.set('stderr', 'true');
  if (o.stdin) q.set('stdin', 'true');
  const url = `${o.apiUrl.replace(/^http/, 'ws')}/api/v1/namespaces/${encodeURIComponent(o.namespace)}/pods/${encodeURIComponent(o.name)}/exec?${q.toString()}`;
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, ['v5.channel.k8s.io', 'v4.channel.k8s.io'], { ca: o.credentials.ca, headers: { Authorization: `Bearer ${o.credentials.token}` } });
    let status: ExecStatus | undefined;
    let stopped = false;
    const onAbort = (): void => ws.close(1000);
    o.signal?.addEventListener('abort', onAbort, { once: true });
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => {
        let msg = body;
        try {
          msg = (JSON.parse(body) as { message?: string }).message ?? body;
        } catch {
          // not a Status: the raw body says it
        }
        reject(new Error(`exec through the apiserver: ${res.statusCode}: ${msg}`));
      });
    });
    ws.on('error', (e) => reject(e));
    ws.on('open', () => {
      if (!o.stdin) return;
      const v5 = ws.protocol === 'v5.channel.k8s.io';
      void (async () => {
        for await (const chunk of o.stdin!) {
          if (stopped || ws.readyState !== ws.OPEN) return;
          ws.send(Buffer.concat([Buffer.from([0]), typeof chunk === 'string' ? Buffer.from(chunk) : chunk]));
        }
        if (v5 && ws.readyState === ws.OPEN) ws.send(Buffer.from([255, 0]));
      })().catch(() => {});
    });
    ws.on('message', (data: Buffer) => {
      const ch = data[0];
      const body = data.subarray(1);
      if (ch === 1) o.stdout(body.toString());
      else if (ch === 2) o.stderr(body.toString());
      else if (ch === 3) {
        try {
          status = JSON.parse(body.toString()) as ExecStatus;
        } catch {
          status = { status: 'Failure', message: `unreadable status: ${body.toString()}` };
        }
      }
    });
    ws.on('close', () => {
      stopped = true;
      o.signal?.removeEventListener('abort', onAbort);
      if (status) resolve(exitCodeOf(status, (s) => o.stderr(s)));
      else if (o.signal?.aborted) resolve(130);
      else reject(new Error('exec through the apiserver: the connection closed without a status'));
    });
  });
}
