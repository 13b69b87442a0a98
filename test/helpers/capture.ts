/**
 * Capturing real traffic on lo with tshark while a test makes traffic, and
 * decoding the result: shared by the end-to-end tests.
 */
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { capture } from '../../cli/capture.ts';
import { eventually } from './lab.ts';

/**
 * Captures `count` packets on lo matching `filter` (a capture filter), calling
 * `poke` repeatedly until tshark has them (it announces "Capturing on" a moment
 * before it really captures). Returns the pcapng path; `cleanup` removes it.
 */
export async function captureLo(filter: string, count: number, poke: () => Promise<unknown>): Promise<{ file: string; cleanup: () => void }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-lo-'));
  const file = path.join(dir, 'lo.pcapng');
  const cap = spawn('tshark', ['-i', 'lo', '-f', filter, '-c', String(count), '-a', 'duration:30', '-w', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  const cleanup = () => {
    if (cap.exitCode === null) cap.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    let err = '';
    cap.stderr.on('data', (d) => (err += d));
    await eventually(() => /Capturing on/.test(err), 20_000);
    const exited = new Promise<void>((r) => (cap.exitCode !== null ? r() : cap.on('exit', () => r())));
    let done = false;
    void exited.then(() => (done = true));
    for (let i = 0; i < 40 && !done; i++) {
      await poke();
      await Promise.race([exited, new Promise((r) => setTimeout(r, 200))]);
    }
    await exited;
    return { file, cleanup };
  } catch (e) {
    cleanup();
    throw e;
  }
}

/** `tshark -r FILE [decode-as] -T fields -e ...`, one array of fields per packet. */
export function tsharkFields(file: string, fields: string[], decodeAs: string[] = []): Promise<string[][]> {
  return new Promise((resolve, reject) =>
    execFile('tshark', ['-r', file, ...decodeAs.flatMap((d) => ['-d', d]), '-T', 'fields', '-E', 'separator=|', ...fields.flatMap((f) => ['-e', f])], { maxBuffer: 64 << 20 }, (e, out, err) =>
      e ? reject(new Error(`${e.message}\n${err}`)) : resolve(out.trim() ? out.trim().split('\n').map((l) => l.split('|')) : []),
    ),
  );
}

/**
 * `podlab capture NODE IFACE -w FILE -c COUNT` (in-process), calling `poke`
 * once the capture is running until it has `count` packets; the pcapng path
 * and its cleanup, as captureLo.
 */
export async function captureNode(stateDir: string, node: string, iface: string, count: number, poke: () => Promise<unknown>): Promise<{ file: string; cleanup: () => void }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-cap-'));
  const file = path.join(dir, `${iface}.pcapng`);
  const ac = new AbortController();
  const cleanup = () => {
    ac.abort();
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    let started = false;
    let done = false;
    const run = capture(stateDir, { node, ifaces: [iface], write: file, count, signal: ac.signal, log: () => {} }).finally(() => (done = true));
    // The interface list reaches the file first: once it is there, the taps are attached.
    await eventually(() => (started = fs.existsSync(file) && fs.statSync(file).size > 0) || done, 20_000);
    for (let i = 0; i < 40 && started && !done; i++) {
      await poke();
      await Promise.race([run, new Promise((r) => setTimeout(r, 200))]);
    }
    ac.abort();
    await run;
    return { file, cleanup };
  } catch (e) {
    cleanup();
    throw e;
  }
}
