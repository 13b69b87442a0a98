/**
 * System programs by absolute path. `npm test` and `npx` put node_modules/.bin
 * first on PATH, and npm packages ship binaries with system names (ava's
 * dependency @vercel/nft installs an `nft` that is not nftables): a lab that
 * runs `nft` from PATH would run the wrong program as root.
 */
import fs from 'node:fs';
import path from 'node:path';

const SYSTEM_DIRS = ['/usr/sbin', '/usr/bin', '/sbin', '/bin', '/usr/local/sbin', '/usr/local/bin'];

/** Whether `file` is there and this process may run it. */
export function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The absolute path of a system program, or undefined when none is installed. */
export function systemTool(name: string): string | undefined {
  return SYSTEM_DIRS.map((dir) => path.join(dir, name)).find(isExecutable);
}
