/**
 * The runner's calls into its lab: agent control calls and commands in pods,
 * every one with a deadline. A scenario freezes agents (SIGSTOP) on purpose,
 * and a stopped process still accepts connections on its Unix socket but never
 * answers, so nothing here may wait without a timeout.
 */
import { ControlClient } from '../control-plane/node-control-client.ts';
import { LabError } from '../lab/lab.ts';
import { isOurProcess, readLab, type LabRecord } from '../lab/state.ts';

/** A control call that did not answer in time (a frozen or dying agent). */
export class LabTimeoutError extends Error {
  override name = 'LabTimeoutError';
}

export interface ExecIo {
  stdout?: (s: string) => void;
  stderr?: (s: string) => void;
  signal?: AbortSignal;
  /** Give up (and close the channel) after this long; default: never. */
  timeoutMs?: number;
}

export class LabIo {
  constructor(readonly stateDir: string) {}

  rec(): LabRecord {
    const r = readLab(this.stateDir);
    if (!r) throw new LabError(`the scenario's lab record is gone (${this.stateDir})`);
    return r;
  }

  controlPath(node: string): string {
    const n = this.rec().nodes.find((x) => x.name === node);
    if (!n) throw new LabError(`no node ${node} in the scenario's lab`);
    return n.control;
  }

  /** The pid of a lab process (`apiserver`, `node-2`) if it is alive. */
  pid(name: string): number | undefined {
    const p = this.rec().procs.find((x) => x.name === name);
    return p && isOurProcess(p.pid, this.stateDir) ? p.pid : undefined;
  }

  /** Sends a signal to one lab process, by its recorded pid. */
  signal(name: string, sig: NodeJS.Signals): void {
    const pid = this.pid(name);
    if (!pid) throw new LabError(`${name} is not running`);
    process.kill(pid, sig);
  }

  /** One control call to a node agent, with a deadline. */
  async call<T>(node: string, method: string, params: unknown, timeoutMs = 5000): Promise<T> {
    const c = await ControlClient.connect(this.controlPath(node), timeoutMs);
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        c.call<T>(method, params),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new LabTimeoutError(`${node} did not answer ${method} within ${timeoutMs} ms (frozen?)`)), timeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
      c.close();
    }
  }

  /**
   * Runs a command in a pod on a known node, streaming output; resolves with
   * the exit code. Aborting asks the command to stop (as Ctrl-C does) and, if
   * the agent does not answer within a second, drops the channel.
   */
  async exec(node: string, podKey: string, argv: string[], io: ExecIo = {}): Promise<number> {
    const c = await ControlClient.connect(this.controlPath(node), 3000);
    let id = 0;
    let timer: NodeJS.Timeout | undefined;
    let giveUp: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    try {
      const call = c.call<{ exitCode: number }>(
        'exec',
        { pod: podKey, argv },
        (fd, s) => (fd === 1 ? io.stdout?.(s) : io.stderr?.(s)),
        (i) => (id = i),
      );
      const stop = new Promise<never>((_, reject) => {
        onAbort = () => {
          c.cancel(id);
          giveUp = setTimeout(() => reject(new LabTimeoutError(`${node} did not stop '${argv[0]}' in ${podKey}`)), 1000);
        };
        if (io.signal?.aborted) onAbort();
        else io.signal?.addEventListener('abort', onAbort, { once: true });
        if (io.timeoutMs !== undefined) timer = setTimeout(() => reject(new LabTimeoutError(`'${argv.join(' ')}' in ${podKey} did not finish within ${io.timeoutMs} ms`)), io.timeoutMs);
      });
      const r = await Promise.race([call, stop]);
      return r.exitCode;
    } finally {
      if (onAbort) io.signal?.removeEventListener('abort', onAbort);
      clearTimeout(timer);
      clearTimeout(giveUp);
      c.close();
    }
  }
}
