/**
 * The agent's local control channel: msgpack messages (self-delimiting, so a
 * byte stream of them needs no extra framing) over a Unix socket with 0600
 * permissions in the lab's state directory (or TCP, node-agent/control-remote.ts).
 * Its clients are the CLI and the apiserver relaying `kubectl exec` (pod-exec.ts).
 *
 *   client → agent: {t:'req', id, method, params}   one call
 *                   {t:'cancel', id}                 Ctrl-C for a running exec
 *                   {t:'stdin', id, data}            bytes for a running exec's standard input
 *                   {t:'stdin-end', id}              its end of file
 *   agent → client: {t:'out', id, fd: 1|2, data}     exec output, streamed
 *                   {t:'evt', id, data}              structured stream items (capture packets)
 *                   {t:'res', id, result}            the call's result (exec: {exitCode})
 *                   {t:'err', id, error: {name, message}}
 */
import type * as Msgpackr from 'msgpackr';
import { createRequire } from 'node:module';
import { createHash } from 'node:crypto';
import type { Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';

/**
 * Where a node's control socket lives: in the state directory, unless that
 * path would exceed the 107 bytes a Unix socket path may have; then in the
 * temp dir, under a name derived from the state directory.
 */
export function controlSocketPath(stateDir: string, node: string): string {
  const p = path.join(stateDir, 'nodes', node, 'control.sock');
  if (Buffer.byteLength(p) < 100) return p;
  const h = createHash('sha256').update(stateDir).digest('hex').slice(0, 12);
  return path.join(os.tmpdir(), `podlab-${h}-${node}.sock`);
}

export type ClientMessage =
  | { t: 'req'; id: number; method: string; params: unknown }
  | { t: 'cancel'; id: number }
  | { t: 'stdin'; id: number; data: Uint8Array }
  | { t: 'stdin-end'; id: number };

export type ServerMessage =
  | { t: 'out'; id: number; fd: 1 | 2; data: string }
  | { t: 'evt'; id: number; data: unknown }
  | { t: 'res'; id: number; result: unknown }
  | { t: 'err'; id: number; error: { name: string; message: string } };

const HIGH_WATER = 8 * 1024 * 1024;

/** The call id a bad message's error reply carries when the message names none. */
export const NO_CALL_ID = -1;

/** Why `v` is no call id (a safe non-negative integer), or undefined when it is one. */
function callIdProblem(v: unknown): string | undefined {
  if (v === undefined) return 'Required';
  if (typeof v !== 'number') return `Expected number, received ${v === null ? 'null' : typeof v}`;
  if (!Number.isInteger(v)) return 'Expected integer, received float';
  if (v < 0 || v > Number.MAX_SAFE_INTEGER) return `Number must be from 0 to ${Number.MAX_SAFE_INTEGER}`;
  return undefined;
}

const KINDS = ['req', 'cancel', 'stdin', 'stdin-end'];

/**
 * Checks one decoded control message; a bad one comes back with the reason and
 * the id it names, if any. What a client may send is checked at the boundary:
 * anything else gets an error reply, never a crash. Written out rather than
 * with a schema library, which would cost every node agent its load (some
 * 3 MB RSS) for four message shapes.
 */
export function parseClientMessage(m: unknown): { ok: true; msg: ClientMessage } | { ok: false; id: number; error: string } {
  const o = typeof m === 'object' && m !== null && !Array.isArray(m) ? (m as Record<string, unknown>) : undefined;
  const id = typeof o?.id === 'number' ? o.id : NO_CALL_ID;
  const bad = (where: string, problem: string) => ({ ok: false as const, id, error: `bad control message: ${where ? `${where}: ` : ''}${problem}` });
  if (!o) return bad('', `Expected object, received ${m === null ? 'null' : Array.isArray(m) ? 'array' : typeof m}`);
  if (typeof o.t !== 'string' || !KINDS.includes(o.t)) return bad('t', `Invalid discriminator value. Expected ${KINDS.map((k) => `'${k}'`).join(' | ')}`);
  const idProblem = callIdProblem(o.id);
  if (idProblem) return bad('id', idProblem);
  const callId = o.id as number;
  switch (o.t) {
    case 'req':
      if (typeof o.method !== 'string') return bad('method', o.method === undefined ? 'Required' : `Expected string, received ${o.method === null ? 'null' : typeof o.method}`);
      if (o.method.length < 1 || o.method.length > 128) return bad('method', 'String must contain from 1 to 128 character(s)');
      return { ok: true, msg: { t: 'req', id: callId, method: o.method, params: o.params } };
    case 'stdin':
      if (!(o.data instanceof Uint8Array)) return bad('data', 'stdin data must be binary (msgpack bin), not a string');
      return { ok: true, msg: { t: 'stdin', id: callId, data: o.data } };
    default:
      return { ok: true, msg: { t: o.t as 'cancel' | 'stdin-end', id: callId } };
  }
}

let msgpackr: typeof Msgpackr | undefined;
/**
 * msgpackr, loaded at the first connection, without its native string
 * extractor: that addon costs every node agent some 4 MB RSS for decoding
 * long strings faster, and control messages are small. Through require, as
 * an ESM import of CommonJS would compile Node's CommonJS lexer (8 MB more).
 */
function loadMsgpackr(): typeof Msgpackr {
  if (msgpackr) return msgpackr;
  const KEY = 'MSGPACKR_NATIVE_ACCELERATION_DISABLED';
  const before = process.env[KEY];
  process.env[KEY] = 'true';
  try {
    return (msgpackr = createRequire(import.meta.url)('msgpackr') as typeof Msgpackr);
  } finally {
    if (before === undefined) delete process.env[KEY];
    else process.env[KEY] = before;
  }
}

/** Wraps a socket into a message reader and writer. */
export function frame<In, Out>(sock: Socket): { onMessage(cb: (m: In) => void): void; send(m: Out): boolean; whenDrained(): Promise<void>; end(): void } {
  const { PackrStream, UnpackrStream } = loadMsgpackr();
  const enc = new PackrStream({ useRecords: false });
  const dec = new UnpackrStream({ useRecords: false });
  enc.pipe(sock);
  sock.pipe(dec);
  // A malformed stream is the peer's problem: drop the connection, keep serving.
  dec.on('error', () => sock.destroy());
  enc.on('error', () => sock.destroy());
  return {
    onMessage: (cb) => dec.on('data', (m: In) => cb(m)),
    // False once the peer reads slower than we write (back-pressure).
    send: (m) => (!sock.destroyed && sock.writable ? enc.write(m) && sock.writableLength < HIGH_WATER : false),
    // After a false send: resolves once the encoder and the socket have room again (or the socket is gone).
    whenDrained: async () => {
      while (!sock.destroyed && (enc.writableNeedDrain || sock.writableLength >= HIGH_WATER)) {
        await new Promise<void>((resolve) => {
          const done = (): void => {
            enc.off('drain', done);
            sock.off('drain', done);
            sock.off('close', done);
            resolve();
          };
          enc.once('drain', done);
          sock.once('drain', done);
          sock.once('close', done);
        });
      }
    },
    end: () => enc.end(),
  };
}
