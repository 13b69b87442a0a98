/**
 * tshark for the wire-format cross-checks: where it is, whether a test may
 * run (in CI a missing tshark FAILS the test, elsewhere the test is skipped
 * with the reason printed), and running it.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';

export const TSHARK = process.env.TSHARK ?? '/usr/bin/tshark';

export const hasTshark = (() => {
  try {
    accessSync(TSHARK, constants.X_OK);
    return true;
  } catch {
    return false;
  }
})();

/** `test` when tshark is there or CI=true (then its absence fails), else `test.skip`, saying why once. */
export function tsharkTestFor(suite: string): typeof test {
  const inCi = process.env.CI === 'true';
  if (!hasTshark) {
    console.log(
      inCi
        ? `${suite}: ${TSHARK} not found and CI=true: the tshark tests will FAIL (install the tshark package)`
        : `${suite}: ${TSHARK} not found: skipping the Wireshark cross-check (apt-get install tshark)`,
    );
  }
  return hasTshark || inCi ? test : (test.skip as unknown as typeof test);
}

/** Runs tshark, resolving with its stdout. */
export function runTshark(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(TSHARK, args, { timeout: 60_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`tshark ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}
