/**
 * Test helpers: a real lab (apiserver + node-agent processes) on a loopback
 * network of the test's own, torn down even when the test fails; and the
 * "tool required in CI, else skip" rule.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { down, up, type UpOptions } from '../../lab/lab.ts';
import { execInPod } from '../../cli/commands.ts';
import type { LabRecord } from '../../lab/state.ts';

export interface TestLab {
  stateDir: string;
  rec: LabRecord & { apiUrl: string };
  exec(pod: string, argv: string[]): Promise<{ code: number; out: string }>;
  /** Stops the lab and removes its state directory. */
  close(): Promise<void>;
}

/** Starts a lab; the caller stops it with close() (in t.teardown or test.after.always). */
export async function startLab(labNet: string, opts: Partial<UpOptions> = {}): Promise<TestLab> {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-test-'));
  const close = async () => {
    await down(stateDir);
    fs.rmSync(stateDir, { recursive: true, force: true });
  };
  const rec = await up({
    stateDir,
    nodes: 3,
    podsPerNode: 2,
    manifests: [],
    labNet,
    apiPort: 0,
    clusterCidr: '10.244.0.0/16',
    vxlanPort: 8472,
    seed: 1,
    mtu: 1500,
    waitReady: true,
    timeoutMs: 60_000,
    ...opts,
  });
  return {
    stateDir,
    rec: rec as LabRecord & { apiUrl: string },
    close,
    async exec(pod, argv) {
      let out = '';
      const code = await execInPod(stateDir, pod, argv, { stdout: (s) => (out += s), stderr: (s) => (out += s) });
      return { code, out };
    },
  };
}

export { hasTool } from '../../hostnet/netns.ts';

/**
 * In CI a missing tool (or missing root) is a failure; elsewhere the test is
 * skipped with the reason printed. Returns true when the test may proceed.
 */
export function requireOrSkip(t: ExecutionContext, ok: boolean, why: string): boolean {
  if (ok) return true;
  if (process.env.CI === 'true') {
    t.fail(`required in CI: ${why}`);
    return false;
  }
  t.log(`skipped: ${why}`);
  t.pass();
  return false;
}

/** Polls `fn` until it returns a truthy value or the deadline passes. */
export async function eventually<T>(fn: () => Promise<T | undefined | null | false> | T | undefined | null | false, timeoutMs = 10_000, stepMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`condition not met in ${timeoutMs} ms${last ? `: ${last instanceof Error ? last.toString() : JSON.stringify(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
