/**
 * The baseline's far end: a raw Node UDP echo server in its own process.
 * Prints `{"event":"listening","port":N}` once bound.
 */
import dgram from 'node:dgram';

const host = process.argv[2] ?? '127.0.0.1';
const sock = dgram.createSocket('udp4');
sock.on('message', (msg, rinfo) => sock.send(msg, rinfo.port, rinfo.address));
sock.bind(0, host, () => process.stdout.write(JSON.stringify({ event: 'listening', port: sock.address().port }) + '\n'));
process.on('SIGTERM', () => process.exit(0));
