/**
 * The far end of the raw one-way baseline (rawUdpBulk in bench/raw-udp.ts): a
 * Node UDP receiver in its own process that keeps no data and answers every
 * `ackEvery`-th datagram with an 8-byte acknowledgement, the count received so
 * far, as a TCP receiver ACKs a batch of segments. Prints
 * `{"event":"listening","port":N}` once bound.
 */
import dgram from 'node:dgram';

const host = process.argv[2] ?? '127.0.0.1';
const ackEvery = Number(process.argv[3] ?? 16);
const sock = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20 });
const ack = Buffer.alloc(8);
// One sender at a time (each run binds a new socket): its count starts again when another port sends. No string
// or map per datagram, which would make the raw baseline pay what the echo server it stands beside does not.
let from = -1;
let n = 0;
sock.on('message', (_msg, rinfo) => {
  if (rinfo.port !== from) {
    from = rinfo.port;
    n = 0;
  }
  n++;
  if (n % ackEvery === 0) {
    ack.writeDoubleBE(n, 0);
    sock.send(ack, rinfo.port, rinfo.address);
  }
});
sock.bind(0, host, () => process.stdout.write(JSON.stringify({ event: 'listening', port: sock.address().port }) + '\n'));
process.on('SIGTERM', () => process.exit(0));
