/**
 * Blocking HTTP POST for the store's synchronous commit path: a worker thread
 * does the fetch while the calling thread waits on a shared word
 * (Atomics.wait), then takes the reply off the message port. The store's
 * "persist, then deliver" call stays one uninterruptible step even when the
 * storage is a remote etcd.
 */
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';

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
    port.postMessage({ status: res.status, body: await res.text() });
  } catch (err) {
    const cause = err && err.cause && err.cause.message;
    port.postMessage({ error: String(err && err.message) + (cause ? ' (' + cause + ')' : '') });
  }
  Atomics.store(flag, 0, 1);
  Atomics.notify(flag, 0);
});
`;

/** What the worker answers. */
export interface SyncHttpReply {
  status?: number;
  body?: string;
  error?: string;
}

/** One worker, one request at a time. */
export class SyncHttp {
  private readonly worker: Worker;
  private readonly port: MessagePort;
  private readonly flag = new Int32Array(new SharedArrayBuffer(4));

  constructor(private readonly timeoutMs = 10_000) {
    const { port1, port2 } = new MessageChannel();
    this.worker = new Worker(WORKER_SOURCE, { eval: true, execArgv: [], workerData: { port: port2, flag: this.flag }, transferList: [port2] });
    this.worker.unref();
    this.port = port1;
  }

  /** POSTs `body` as JSON to `url`; throws on a network error or time-out. */
  post(url: string, body: unknown): { status: number; body: string } {
    Atomics.store(this.flag, 0, 0);
    this.port.postMessage({ url, body: JSON.stringify(body) });
    const waited = Atomics.wait(this.flag, 0, 0, this.timeoutMs);
    const msg = receiveMessageOnPort(this.port)?.message as SyncHttpReply | undefined;
    if (!msg) throw new Error(waited === 'timed-out' ? `${url}: no answer in ${this.timeoutMs} ms` : `${url}: no answer`);
    if (msg.error !== undefined) throw new Error(`${url}: ${msg.error}`);
    return { status: msg.status ?? 0, body: msg.body ?? '' };
  }

  close(): void {
    this.port.close();
    void this.worker.terminate();
  }
}
