/**
 * The etcd store's blocking POST (control-plane/sync-http.ts): a reply is
 * taken only by the request it answers. A request that timed out may still be
 * answered later; that answer must never be read as the next request's.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { SyncHttp } from '../control-plane/sync-http.ts';

// A server in a process of its own (the test's thread blocks in SyncHttp.post): it
// answers each POST with its body, after the delay in milliseconds the body names.
const SERVER = `
const http = require('node:http');
const srv = http.createServer((req, res) => {
  let b = '';
  req.on('data', (d) => (b += d));
  req.on('end', () => setTimeout(() => res.end(b), JSON.parse(b).delay));
});
srv.listen(0, '127.0.0.1', () => console.log(srv.address().port));
`;

test('a late reply to a timed-out request is not taken for the next one', async (t) => {
  const child = spawn(process.execPath, ['-e', SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => child.kill());
  const [line] = (await once(child.stdout, 'data')) as [Buffer];
  const url = `http://127.0.0.1:${Number(String(line).trim())}/`;
  const http = new SyncHttp(1000);
  t.teardown(() => http.close());
  t.is(http.post(url, { n: 0, delay: 0 }).body, '{"n":0,"delay":0}', 'the worker is up');
  t.throws(() => http.post(url, { n: 1, delay: 1500 }), { message: /no answer in 1000 ms/ });
  // The first one's answer lands while this one waits: it is discarded, this one's is taken.
  const r = http.post(url, { n: 2, delay: 800 });
  t.is(r.body, '{"n":2,"delay":800}');
});
