/**
 * The agent's local control channel: msgpack messages (self-delimiting, so a
 * byte stream of them needs no extra framing) over a Unix socket with 0600
 * permissions in the lab's state directory. The CLI is the only client.
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
import type { Socket } from 'node:net';

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

/** Wraps a socket into a message reader and writer. */
export function frame<In, Out>(sock: Socket): { onMessage(cb: (m: In) => void): void; send(m: Out): boolean; end(): void } {
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
    end: () => enc.end(),
  };
}
