/**
 * The TCP baseline's far end: a raw Node TCP discard server in its own
 * process, which closes its side when the client's stream ends. Prints
 * `{"event":"listening","port":N}` once bound.
 */
import net from 'node:net';

const host = process.argv[2] ?? '127.0.0.1';
const server = net.createServer({ allowHalfOpen: true }, (s) => {
  s.on('data', () => {});
  s.on('end', () => s.end());
  s.on('error', () => {});
});
server.listen(0, host, () => process.stdout.write(JSON.stringify({ event: 'listening', port: (server.address() as net.AddressInfo).port }) + '\n'));
process.on('SIGTERM', () => process.exit(0));
