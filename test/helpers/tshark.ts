/**
 * tshark for the wire-format cross-checks: where it is, whether a test may
 * run (in CI a missing tshark FAILS the test, elsewhere the test is skipped
 * with the reason printed), and running it.
 */
import type test from 'ava';
import { execFile } from 'node:child_process';
import { isExecutable } from '../../common/system-tool.ts';
import { testWithProgram } from './tool.ts';

export const TSHARK = process.env.TSHARK ?? '/usr/bin/tshark';

export const hasTshark = isExecutable(TSHARK);

/** `test` when tshark is there or CI=true (then its absence fails), else `test.skip`, saying why once. */
export function tsharkTestFor(suite: string): typeof test {
  return testWithProgram(suite, TSHARK, 'Wireshark cross-check', 'tshark');
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

/** tshark's `-T json` tree flattened to field name -> values, in tree order (outer layers first). */
export function flattenTsharkJson(node: unknown, out: Map<string, string[]> = new Map()): Map<string, string[]> {
  if (Array.isArray(node)) {
    for (const n of node) flattenTsharkJson(n, out);
  } else if (node && typeof node === 'object') {
    for (const [k, v] of Object.entries(node as Record<string, unknown>)) {
      if (typeof v === 'string') out.set(k, [...(out.get(k) ?? []), v]);
      else if (Array.isArray(v) && v.every((x) => typeof x === 'string')) out.set(k, [...(out.get(k) ?? []), ...(v)]);
      else flattenTsharkJson(v, out);
    }
  }
  return out;
}

/** Expert-info severities from epan/proto.h. */
export const EXPERT = { chat: 0x00200000, note: 0x00400000, warn: 0x00600000, error: 0x00800000 } as const;

/** One frame's verdict from tshark: whether it was malformed and its expert infos. */
export interface FrameExpert {
  frame: number;
  malformed: boolean;
  infos: { severity: number; message: string }[];
}

/** Reads a capture's malformed flags and expert infos, one entry per frame (`common` are the decode options). */
export async function expertInfo(file: string, common: string[]): Promise<FrameExpert[]> {
  const out = await runTshark([
    '-r', file, ...common,
    '-T', 'fields', '-E', 'occurrence=a', '-E', 'aggregator=|', '-E', 'separator=\t',
    '-e', 'frame.number', '-e', '_ws.malformed', '-e', '_ws.expert.severity', '-e', '_ws.expert.message',
  ]);
  // Not trimEnd(): trailing empty fields are tabs.
  return out
    .split('\n')
    .filter((l) => l !== '')
    .map((line) => {
      const [num, malformed, severities, messages] = line.split('\t');
      const sev = severities ? severities.split('|').map(Number) : [];
      const msg = messages ? messages.split('|') : [];
      return { frame: Number(num), malformed: malformed !== '', infos: sev.map((severity, k) => ({ severity, message: msg[k] })) };
    });
}
