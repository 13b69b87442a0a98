/**
 * The TCP baselines' far end, a raw Node TCP server in its own process:
 * `discard` (default) swallows the stream and closes its side when the
 * client's ends; `reply` answers the first chunk with itself and closes.
 * Prints `{"event":"listening","port":N}` once bound.
 */
import net from 'node:net';

const host = process.argv[2] ?? '127.0.0.1';
const reply = process.argv[3] === 'reply';
const server = net.createServer({ allowHalfOpen: true }, (s) => {
  s.on('data', (d) => reply && s.end(d));
  s.on('end', () => s.end());
  s.on('error', () => {});
});
server.listen(0, host, () => process.stdout.write(JSON.stringify({ event: 'listening', port: (server.address() as net.AddressInfo).port }) + '\n'));
process.on('SIGTERM', () => process.exit(0));
