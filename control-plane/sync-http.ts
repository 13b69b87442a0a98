/**
 * Blocking HTTP POST for the store's synchronous commit path: a worker thread
 * does the fetch while the calling thread waits on a shared word
 * (Atomics.wait), then takes the reply off the message port. The store's
 * "persist, then deliver" call stays one uninterruptible step even when the
 * storage is a remote etcd.
 */
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { workerResourceLimits } from '../common/young-generation.ts';

/**
 * The worker's whole program, evaluated from a string: it needs no loader
 * (tsx or dist/) and no file beside this module. It fetches, posts the reply,
 * then wakes the waiting thread.
 */
const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const { port, flag } = workerData;
port.on('message', async (req) => {
  try {
    const res = await fetch(req.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: req.body });
    port.postMessage({ id: req.id, status: res.status, body: await res.text() });
  } catch (err) {
    const cause = err && err.cause && err.cause.message;
    port.postMessage({ id: req.id, error: String(err && err.message) + (cause ? ' (' + cause + ')' : '') });
  }
  Atomics.add(flag, 0, 1);
  Atomics.notify(flag, 0);
});
`;

/** What the worker answers. */
export interface SyncHttpReply {
  /** The request's number: a reply is taken only by the request it answers. */
  id: number;
  status?: number;
  body?: string;
  error?: string;
}

/** One worker, one request at a time. */
export class SyncHttp {
  private readonly worker: Worker;
  private readonly port: MessagePort;
  private readonly flag = new Int32Array(new SharedArrayBuffer(4));
  private sent = 0;

  constructor(private readonly timeoutMs = 10_000) {
    const { port1, port2 } = new MessageChannel();
    this.worker = new Worker(WORKER_SOURCE, { eval: true, execArgv: [], resourceLimits: workerResourceLimits(), workerData: { port: port2, flag: this.flag }, transferList: [port2] });
    this.worker.unref();
    this.port = port1;
  }

  /**
   * POSTs `body` as JSON to `url`; throws on a network error or time-out.
   * The worker counts its replies in the shared word and each reply names its
   * request: a wake-up before the reply can be received looks again until the
   * deadline, and a late reply to an earlier request that timed out is
   * discarded, never taken for this one's (a full run once saw a "no answer"
   * and then a reply that belonged to another request).
   */
  post(url: string, body: unknown): { status: number; body: string } {
    const id = ++this.sent;
    let seen = Atomics.load(this.flag, 0);
    this.port.postMessage({ id, url, body: JSON.stringify(body) });
    const deadline = performance.now() + this.timeoutMs;
    for (;;) {
      for (let m = receiveMessageOnPort(this.port); m; m = receiveMessageOnPort(this.port)) {
        const msg = m.message as SyncHttpReply;
        if (msg.id !== id) continue; // an earlier request's, after it timed out
        if (msg.error !== undefined) throw new Error(`${url}: ${msg.error}`);
        return { status: msg.status ?? 0, body: msg.body ?? '' };
      }
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`${url}: no answer in ${this.timeoutMs} ms`);
      // A reply counted but not yet receivable: look again shortly rather than wait for the next count.
      const now = Atomics.load(this.flag, 0);
      if (now !== seen) {
        seen = now;
        continue;
      }
      Atomics.wait(this.flag, 0, seen, Math.min(left, 5));
    }
  }

  close(): void {
    this.port.close();
    void this.worker.terminate();
  }
}
