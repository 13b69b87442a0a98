/**
 * Container logs: what an app prints is kept per container, bounded, and
 * read back as kubectl logs reads it (tail, since, timestamps, follow), from
 * a real lab through the node agent and the CLI.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { combinedLogLine } from '../apps/http-server.ts';
import { podLogs } from '../cli/commands.ts';
import type { Pod } from '../control-plane/types.ts';
import { labApi, waitPodsRunning } from '../lab/lab.ts';
import { ContainerLogs, MAX_LINES, logTimestamp } from '../node-agent/pod-logs.ts';
import { eventually, startLab } from './helpers/lab.ts';
import { BIN } from './helpers/scenario.ts';

test('a container log keeps the newest lines within its bounds; tail, since and timestamps select as kubectl does', (t) => {
  let now = Date.UTC(2026, 11, 4, 12, 0, 0);
  const logs = new ContainerLogs(() => now);
  const w = logs.writer('default/web', 'nginx');
  for (let i = 0; i < MAX_LINES + 5; i++) {
    w(`line ${i}`);
    now += 10;
  }
  const all = logs.read('default/web', 'nginx');
  t.is(all.length, MAX_LINES);
  t.is(all[0].text, 'line 5', 'the oldest went first');
  t.is(logs.text('default/web', 'nginx', { tailLines: 2 }), `line ${MAX_LINES + 3}\nline ${MAX_LINES + 4}\n`);
  t.is(logs.read('default/web', 'nginx', { sinceSeconds: 1 }).length, 100, 'the last second: 100 lines 10 ms apart');
  t.regex(logs.text('default/web', 'nginx', { tailLines: 1, timestamps: true }), /^2026-12-04T12:01:40\.\d{9}Z line 10004\n$/);
  t.is(logTimestamp(Date.UTC(2026, 0, 2, 3, 4, 5, 678)), '2026-01-02T03:04:05.678000000Z');
  t.is(logs.text('default/web', 'nginx', { tailLines: 1, limitBytes: 4 }), 'line');
  t.is(logs.text('default/web', 'other'), '', 'a container that printed nothing');
  const seen: string[] = [];
  const stop = logs.follow('default/web', 'nginx', (l) => seen.push(l.text));
  w('after');
  stop();
  w('not seen');
  t.deepEqual(seen, ['after']);
  logs.drop('default/web');
  t.deepEqual(logs.read('default/web', 'nginx'), []);
});

test("nginx's combined log format", (t) => {
  const line = combinedLogLine(
    { method: 'GET', target: '/index.html?x=1', path: '/index.html', version: '1.1', headers: new Map([['user-agent', 'curl/8.5.0']]), remoteAddress: '10.244.1.2', remotePort: 40000, body: Buffer.alloc(0), length: 0, localPort: 80 },
    200,
    615,
    new Date(Date.UTC(2026, 11, 4, 9, 5, 7)),
  );
  t.is(line, '10.244.1.2 - - [04/Dec/2026:09:05:07 +0000] "GET /index.html?x=1 HTTP/1.1" 200 615 "-" "curl/8.5.0"');
});

test.serial('podlab logs: nginx prints its start and one access line per request; -c picks a container; -f follows', async (t) => {
  const lab = await startLab('127.0.148.0/24', { nodes: 2, podsPerNode: 1 });
  t.teardown(() => lab.close());
  const api = labApi(lab.rec);
  await api.create('pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web', namespace: 'default' }, spec: { nodeName: 'node-2', containers: [{ name: 'nginx', image: 'nginx:1.25' }, { name: 'side', image: 'podlab/http', ports: [{ containerPort: 8080 }] }] } }, 'default');
  await waitPodsRunning(api, 20_000);
  const web = (await api.get<Pod>('pods', 'web'))!;
  const ip = web.status!.podIP!;
  const client = (await api.get<Pod>('pods', 'pod-1a'))!.status!.podIP!;
  t.regex((await lab.exec('pod-1a', ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', `http://${ip}/`])).out, /200/);
  let text = '';
  await podLogs(lab.stateDir, 'web', { container: 'nginx' }, { stdout: (s) => (text += s) });
  const lines = text.trimEnd().split('\n');
  t.is(lines[0], '/docker-entrypoint.sh: Configuration complete; ready for start up');
  t.regex(lines[1], /^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d \[notice\] 1#1: nginx\/1\.25$/);
  t.regex(lines.at(-1)!, new RegExp(`^${client.replace(/\./g, '\\.')} - - \\[\\d\\d/\\w{3}/\\d{4}:\\d\\d:\\d\\d:\\d\\d \\+0000\\] "GET / HTTP/1\\.1" 200 615 "-" "curl/8\\.5\\.0 \\(podlab\\)"$`));

  // Two containers: one must be named, as the kubelet answers.
  await t.throwsAsync(podLogs(lab.stateDir, 'web', {}, { stdout: () => {} }), { message: /a container name must be specified for pod web, choose one of: \[nginx side\]/ });
  await t.throwsAsync(podLogs(lab.stateDir, 'web', { container: 'nope' }, { stdout: () => {} }), { message: /container nope is not valid for pod web/ });

  // Follow: a new request shows up as it happens; Ctrl-C (abort) ends the stream.
  const ac = new AbortController();
  let followed = '';
  const following = podLogs(lab.stateDir, 'web', { container: 'side', follow: true, tailLines: 0 }, { stdout: (s) => (followed += s), signal: ac.signal });
  await new Promise((r) => setTimeout(r, 300));
  await lab.exec('pod-1a', ['curl', '-s', `http://${ip}:8080/healthz`]);
  await eventually(() => followed.includes('"GET /healthz HTTP/1.1" 200 3'), 5000);
  t.notRegex(followed, /serving web/, 'tail 0: nothing from before');
  ac.abort();
  await following;

  // The CLI, as a user types it.
  const { stdout } = await promisify(execFile)(process.execPath, [BIN, 'logs', 'web', '-c', 'nginx', '--tail', '1', '--timestamps'], { env: { ...process.env, PODLAB_HOME: lab.stateDir } });
  t.regex(stdout, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z \S+ - - \[.*\] "GET \/ HTTP\/1\.1" 200 615/);
});
