/**
 * A diagnostic preload for `bench/ping-hops.ts` (`node --import ./bench/hop-trace.mjs`, or in NODE_OPTIONS for
 * a lab's agents): it stamps every dgram send (the call, and its completion callback, which dgram runs right
 * after the native sendmsg), every received datagram ('message', as JS sees it) and what a program reports
 * through `globalThis[Symbol.for('podlab.hopTrace')]` (the ping tool's send and reply) with
 * process.hrtime.bigint(): CLOCK_MONOTONIC, one clock for every process of the machine. Nothing in the data
 * path knows about it, so without the preload nothing is paid.
 *
 * On SIGUSR2 the process writes what it recorded since the last dump to `$PODLAB_HOP_TRACE/PID.json` and
 * starts afresh. Only a process whose environment names that directory records anything.
 */
import { Buffer } from 'node:buffer';
import dgram from 'node:dgram';
import fs from 'node:fs';
import path from 'node:path';
import process from 'node:process';

const dir = process.env.PODLAB_HOP_TRACE;
if (dir) install(dir);

function install(dir) {
  const CAP = 1 << 16;
  // kind code, local port, length / seq, time (ns): parallel arrays, no object per event.
  const kinds = new Uint8Array(CAP);
  const ports = new Uint32Array(CAP);
  const lens = new Uint32Array(CAP);
  const times = new Float64Array(CAP);
  let n = 0;
  const KINDS = ['send', 'sent', 'recv', 'app-send', 'app-reply'];
  const portOf = new WeakMap();
  const localPort = (sock) => {
    let p = portOf.get(sock);
    if (p === undefined) {
      try {
        p = sock.address().port;
        portOf.set(sock, p);
      } catch {
        return 0;
      }
    }
    return p;
  };
  const rec = (kind, port, len) => {
    if (n >= CAP) return;
    times[n] = Number(process.hrtime.bigint());
    kinds[n] = kind;
    ports[n] = port;
    lens[n++] = len;
  };
  const send = dgram.Socket.prototype.send;
  dgram.Socket.prototype.send = function (buf, ...rest) {
    const port = localPort(this);
    const len = Buffer.isBuffer(buf) ? buf.length : 0;
    rec(0, port, len);
    const last = rest.length - 1;
    if (typeof rest[last] === 'function') {
      const cb = rest[last];
      rest[last] = function (...a) {
        rec(1, port, len);
        return cb.apply(this, a);
      };
    } else {
      rest.push(() => rec(1, port, len));
    }
    return send.call(this, buf, ...rest);
  };
  const emit = dgram.Socket.prototype.emit;
  dgram.Socket.prototype.emit = function (ev, ...a) {
    if (ev === 'message') rec(2, localPort(this), a[0]?.length ?? 0);
    return emit.call(this, ev, ...a);
  };
  globalThis[Symbol.for('podlab.hopTrace')] = (what, seq) => rec(what === 'send' ? 3 : 4, 0, seq);
  fs.mkdirSync(dir, { recursive: true });
  process.on('SIGUSR2', () => {
    const events = [];
    for (let i = 0; i < n; i++) events.push([KINDS[kinds[i]], ports[i], lens[i], times[i]]);
    n = 0;
    fs.writeFileSync(path.join(dir, `${process.pid}.json`), JSON.stringify({ pid: process.pid, events }));
  });
}
