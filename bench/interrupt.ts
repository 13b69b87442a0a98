/**
 * An interrupted bench (Ctrl-C, or SIGTERM to its pid alone) leaves nothing
 * running: the labs it brought up stop (their processes are detached, out of
 * reach of the terminal's signal) and so do the helper processes it spawned
 * (echo servers, an apiserver, a module measured apart), which a SIGTERM to the
 * bench alone would leave orphaned, and its temporary directories go.
 */
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { stopLabsOnInterrupt } from '../lab/launch.ts';

const children = new Set<ChildProcess>();
const tempDirs = new Set<string>();

/** A helper process to stop if the bench is interrupted; it leaves the set when it exits. */
export function benchChild<T extends ChildProcess>(child: T): T {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** A temporary directory of the bench's own, removed if the bench is interrupted (its `finally` would not run). */
export function benchTempDir(dir: string): string {
  tempDirs.add(dir);
  return dir;
}

/** The bench removed it itself. */
export function benchTempDirGone(dir: string): void {
  tempDirs.delete(dir);
}

let installed = false;

/** Called by every bench entry, before it starts anything. */
export function stopOnInterrupt(): void {
  if (installed) return;
  installed = true;
  stopLabsOnInterrupt(
    (m) => process.stderr.write(`bench: ${m}\n`),
    () => {
      for (const c of children) c.kill('SIGTERM');
      for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
    },
  );
}
