/**
 * Tests that need a program on the machine (tshark, openssl): in CI a missing
 * program FAILS them, elsewhere they are skipped with the reason printed once.
 */
import test from 'ava';
import { accessSync, constants } from 'node:fs';

export function hasProgram(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** `test` when `file` is there or CI=true (then its absence fails), else `test.skip`, saying why once. */
export function testWithProgram(suite: string, file: string, what: string, apt: string): typeof test {
  const there = hasProgram(file);
  const inCi = process.env.CI === 'true';
  if (!there) {
    console.log(
      inCi
        ? `${suite}: ${file} not found and CI=true: the ${what} tests will FAIL (install the ${apt} package)`
        : `${suite}: ${file} not found: skipping the ${what} (apt-get install ${apt})`,
    );
  }
  return there || inCi ? test : (test.skip as unknown as typeof test);
}
