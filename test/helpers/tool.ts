/**
 * Tests that need a program on the machine (tshark, openssl, dig, bird): in CI
 * a missing program FAILS them, elsewhere they are skipped with the reason
 * printed once.
 */
import test from 'ava';
import { isExecutable } from '../../common/system-tool.ts';

/** `test` when every one of `files` is there or CI=true (then an absence fails), else `test.skip`, saying why once. */
export function testWithProgram(suite: string, files: string | string[], what: string, apt: string): typeof test {
  const missing = [files].flat().filter((f) => !isExecutable(f));
  const inCi = process.env.CI === 'true';
  if (missing.length) {
    console.log(
      inCi
        ? `${suite}: ${missing.join(', ')} not found and CI=true: the ${what} tests will FAIL (install the ${apt} package)`
        : `${suite}: ${missing.join(', ')} not found: skipping the ${what} (apt-get install ${apt})`,
    );
  }
  return !missing.length || inCi ? test : (test.skip as unknown as typeof test);
}
