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
import { PackrStream, UnpackrStream } from 'msgpackr';
import { z } from 'zod';
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

const callId = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

/** What a client may send, checked at the boundary: anything else gets an error reply, never a crash. */
const clientMessage = z.discriminatedUnion('t', [
  z.object({ t: z.literal('req'), id: callId, method: z.string().min(1).max(128), params: z.unknown() }),
  z.object({ t: z.literal('cancel'), id: callId }),
  z.object({ t: z.literal('stdin'), id: callId, data: z.instanceof(Uint8Array, { message: 'stdin data must be binary (msgpack bin), not a string' }) }),
  z.object({ t: z.literal('stdin-end'), id: callId }),
]);

/** The call id a bad message's error reply carries when the message names none. */
export const NO_CALL_ID = -1;

/** Checks one decoded control message; a bad one comes back with the reason and the id it names, if any. */
export function parseClientMessage(m: unknown): { ok: true; msg: ClientMessage } | { ok: false; id: number; error: string } {
  const r = clientMessage.safeParse(m);
  if (r.success) return { ok: true, msg: r.data as ClientMessage };
  const id = typeof m === 'object' && m !== null && typeof (m as { id?: unknown }).id === 'number' ? (m as { id: number }).id : NO_CALL_ID;
  const issue = r.error.issues[0];
  const where = issue?.path.length ? `${issue.path.join('.')}: ` : '';
  return { ok: false, id, error: `bad control message: ${where}${issue?.message ?? 'invalid'}` };
}

/** Wraps a socket into a message reader and writer. */
export function frame<In, Out>(sock: Socket): { onMessage(cb: (m: In) => void): void; send(m: Out): boolean; whenDrained(): Promise<void>; end(): void } {
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
