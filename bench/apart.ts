/**
 * A bench module's figures measured in a process of its own: what a figure of a
 * few microseconds or milliseconds measures depends on the heap and the V8 flags
 * of the process it runs in, so each such module runs as the process it stands
 * for would (a fresh heap; for an agent's data plane, the agents' V8 flags).
 * The module's own entry writes its measures as JSON to the file `--json-out`
 * names (stdout stays its log).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Measure } from './results.ts';
import { benchChild, benchTempDir, benchTempDirGone, stopOnInterrupt } from './interrupt.ts';

export async function measuresApart(moduleUrl: string, args: readonly string[] = [], nodeFlags: readonly string[] = []): Promise<Measure[]> {
  const dir = benchTempDir(fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-bench-apart-')));
  const out = path.join(dir, 'measures.json');
  try {
    // The same loaders as this process (tsx, bench/compiled.mjs), plus the flags of the process it stands for.
    const child = benchChild(spawn(process.execPath, [...nodeFlags, ...process.execArgv, fileURLToPath(moduleUrl), '--json-out', out, ...args], { stdio: ['ignore', 'inherit', 'inherit'] }));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    if (code !== 0) throw new Error(`${path.basename(fileURLToPath(moduleUrl))} exited with ${code}`);
    return JSON.parse(fs.readFileSync(out, 'utf8')) as Measure[];
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    benchTempDirGone(dir);
  }
}

/** When `moduleUrl` is the process's entry: runs `measures` and writes them where `--json-out` says (or prints them). */
export async function runAsMain(moduleUrl: string, measures: () => Measure[] | Promise<Measure[]>): Promise<void> {
  if (!process.argv[1] || moduleUrl !== pathToFileURL(process.argv[1]).href) return;
  stopOnInterrupt();
  const i = process.argv.indexOf('--json-out');
  const got = await measures();
  if (i > 0) fs.writeFileSync(process.argv[i + 1], JSON.stringify(got));
  else for (const m of got) process.stdout.write(`${m.name}: ${m.value} ${m.unit} | baseline (${m.baselineName}): ${m.baseline} ${m.unit} | ratio ${m.ratio}\n`);
}
