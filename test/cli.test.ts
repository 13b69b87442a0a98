/**
 * The `podlab` command itself, run as a user runs it (bin/podlab.js in a
 * child process): help on every verb, manifest errors that name file, line
 * and field and start nothing, a detached lab driven by get/exec/node/impair,
 * a refused second `up`, the `npm start` walkthrough stopped with Ctrl-C.
 */
import test from 'ava';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { List, Node, Pod } from '../control-plane/types.ts';
import { down } from '../lab/lab.ts';
import { readLab, isOurProcess } from '../lab/state.ts';
import { eventually } from './helpers/lab.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = path.join(ROOT, 'bin/podlab.js');

function podlab(home: string, args: string[], timeoutMs = 90_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd: home, env: { ...process.env, PODLAB_HOME: path.join(home, '.podlab') }, timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** `podlab ARGS` left running in `home`, its stdout and stderr gathered; killed at the test's end if still running. */
function podlabRunning(t: { teardown(fn: () => unknown): void }, home: string, args: string[]) {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: home, env: { ...process.env, PODLAB_HOME: path.join(home, '.podlab') } });
  const run = { child, out: '', exited: new Promise<number | null>((r) => child.on('exit', (c) => r(c))) };
  child.stdout.on('data', (d) => (run.out += d));
  child.stderr.on('data', (d) => (run.out += d));
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  return run;
}

function tmpHome(t: { teardown(fn: () => unknown): void }): string {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'podlab-cli-'));
  t.teardown(async () => {
    await down(path.join(home, '.podlab'));
    fs.rmSync(home, { recursive: true, force: true });
  });
  return home;
}

test('every verb has --help', async (t) => {
  const home = tmpHome(t);
  const top = await podlab(home, ['--help']);
  t.is(top.code, 0);
  for (const verb of ['up', 'down', 'apply', 'delete', 'get', 'exec', 'node', 'impair', 'capture', 'trace', 'wireshark', 'scenario']) {
    t.regex(top.stdout, new RegExp(`\\b${verb}\\b`));
    const r = await podlab(home, [verb, '--help']);
    t.is(r.code, 0, `${verb} --help: ${r.stderr}`);
    t.regex(r.stdout, /Usage: podlab/);
  }
  t.regex((await podlab(home, ['exec', '--help'])).stdout, /ping \[-c N\]/);
  // The lab's own processes answer --help too, listing the flags they parse.
  for (const [daemon, flag] of [['agent', '--vxlan-port'], ['apiserver', '--service-cluster-ip-range'], ['kernel-node', '--netns']]) {
    const r = await podlab(home, [daemon, '--help']);
    t.is(r.code, 0, `${daemon} --help: ${r.stderr}`);
    t.regex(r.stdout, new RegExp(`^Usage: podlab ${daemon} \\[flags\\]`));
    t.true(r.stdout.includes(`  ${flag} <value>`), r.stdout);
  }
});

test('a bad manifest names file, line and field, and starts nothing', async (t) => {
  const home = tmpHome(t);
  const file = path.join(home, 'bad.yaml');
  fs.writeFileSync(
    file,
    ['apiVersion: v1', 'kind: Pod', 'metadata:', '  name: ok', 'spec:', '  containers:', '  - name: web', '    image: nginx', '---', 'apiVersion: v1', 'kind: Pod', 'metadata:', '  name: bad', 'spec:', '  containers:', '  - name: web', '    image: nginx', '    ports:', '    - containerPort: 99999', ''].join('\n'),
  );
  const r = await podlab(home, ['up', '--detach', '--lab-net', '127.0.72.0/24', '--api-port', '0', '-f', file]);
  t.is(r.code, 1);
  t.regex(r.stderr, new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:19: spec\\.containers\\[0\\]\\.ports\\[0\\]\\.containerPort: must be a port number 1-65535, got 99999`));
  t.false(fs.existsSync(path.join(home, '.podlab', 'lab.json')), 'nothing was started');
  fs.writeFileSync(file, 'apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: x\n');
  const kind = await podlab(home, ['up', '--detach', '--lab-net', '127.0.72.0/24', '-f', file]);
  t.regex(kind.stderr, /bad\.yaml:2: kind: unsupported kind "CronJob"/);
  fs.writeFileSync(file, 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n  labels: [a\n');
  t.regex((await podlab(home, ['up', '--detach', '-f', file])).stderr, /bad\.yaml:\d+: invalid YAML/);
  t.regex((await podlab(home, ['up', '--detach', '--lab-net', '10.0.0.0/24'])).stderr, /--lab-net: must be a CIDR inside 127\.0\.0\.0\/8/);
  t.regex((await podlab(home, ['up', '--detach', '--nodes', '0'])).stderr, /--nodes: must be an integer from 1 to 200/);
  // Raw frames need a real eth0: refused on loopback before anything starts.
  t.regex((await podlab(home, ['up', '--detach', '--backend', 'bgp', '--wire', 'raw'])).stderr, /--wire raw: raw frames need a real eth0: use --mode netns/);
  t.regex((await podlab(home, ['up', '--detach', '--wire', 'frames'])).stderr, /--wire.*frames.*(invalid|Allowed choices)/i);
  t.false(fs.existsSync(path.join(home, '.podlab', 'lab.json')), 'nothing was started');
});

test.serial('a detached lab: get, exec, node, impair, a refused second up, down', async (t) => {
  const home = tmpHome(t);
  const manifest = path.join(home, 'pods.yaml');
  fs.writeFileSync(manifest, 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {app: web}\nspec:\n  containers:\n  - name: web\n    image: nginx\n');
  const upRes = await podlab(home, ['up', '--detach', '--nodes', '2', '--pods-per-node', '1', '-f', manifest, '--lab-net', '127.0.73.0/24', '--api-port', '0']);
  t.is(upRes.code, 0, upRes.stderr);
  t.regex(upRes.stdout, /lab up: 2 nodes on 127\.0\.73\.0\/24/);

  const again = await podlab(home, ['up', '--detach', '--lab-net', '127.0.73.0/24', '--api-port', '0']);
  t.is(again.code, 1);
  t.regex(again.stderr, /a lab is already running/);

  const wide = await podlab(home, ['get', 'pods', '-o', 'wide']);
  t.regex(wide.stdout, /^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE\s+IP\s+NODE\s+NOMINATED NODE\s+READINESS GATES$/m);
  t.regex(wide.stdout, /^pod-1a\s+1\/1\s+Running\s+0\s+\S+\s+10\.244\.1\.\d+\s+node-1/m);
  t.regex(wide.stdout, /^web\s+1\/1\s+Running/m, 'the manifest pod was scheduled and runs');
  const json = JSON.parse((await podlab(home, ['get', 'pods', '-o', 'json'])).stdout) as List<Pod>;
  t.is(json.kind, 'List');
  t.is(json.items.length, 3);
  for (const p of json.items) {
    t.truthy(p.spec!.nodeName);
    t.regex(p.status!.podIP!, /^10\.244\./);
    t.regex(p.status!.hostIP!, /^127\.0\.73\.1[12]$/);
  }
  const nodes = JSON.parse((await podlab(home, ['get', 'nodes', '-o', 'json'])).stdout) as List<Node>;
  t.deepEqual(nodes.items.map((n) => n.spec!.podCIDR), ['10.244.1.0/24', '10.244.2.0/24']);
  t.deepEqual(nodes.items.map((n) => n.status!.addresses!.find((a) => a.type === 'InternalIP')!.address), ['127.0.73.11', '127.0.73.12']);
  t.regex((await podlab(home, ['get', 'nodes', '-o', 'yaml'])).stdout, /^kind: List$/m);
  // A named get prints the object itself, as kubectl does.
  const one = (await podlab(home, ['get', 'pod', 'pod-1a', '-o', 'yaml'])).stdout;
  t.regex(one, /^kind: Pod$/m);
  t.regex(one, /^ {2}name: pod-1a$/m);
  t.notRegex(one, /^kind: List$/m);
  t.regex((await podlab(home, ['get', 'node', 'node-2', '-o', 'json'])).stdout, /^ {4}"kind": "Node",$/m);
  // kubectl's jsonpath output, as the README reads a ClusterIP or a pod IP.
  t.regex((await podlab(home, ['get', 'pod', 'web', '-o', 'jsonpath={.spec.nodeName}'])).stdout, /^node-[12]$/);
  t.is((await podlab(home, ['get', 'pods', '-o', 'jsonpath={.items[*].metadata.name}'])).stdout, 'pod-1a pod-2a web');
  t.regex((await podlab(home, ['get', 'pods', '-o', 'jsonpath={range .items[*]}{end}'])).stderr, /loops are not supported/);

  const target = json.items.find((p) => p.metadata.name === 'pod-2a')!.status!.podIP!;
  const ping = await podlab(home, ['exec', 'pod-1a', '--', 'ping', '-c', '2', '-i', '0.1', target]);
  t.is(ping.code, 0, ping.stderr);
  t.regex(ping.stdout, /2 packets transmitted, 2 received, 0% packet loss, time \d+ms/);
  const unknown = await podlab(home, ['exec', 'pod-1a', '--', 'wget', 'x']);
  t.is(unknown.code, 127);
  t.regex(unknown.stderr, /executable file not found/);
  t.regex((await podlab(home, ['exec', 'nope', '--', 'hostname'])).stderr, /pods "nope" not found/);

  t.regex((await podlab(home, ['node', 'node-1', 'ip', 'route'])).stdout, /^10\.244\.2\.0\/24 via 10\.244\.2\.0 dev flannel\.1 onlink$/m);
  t.regex((await podlab(home, ['node', 'node-1', 'stats'])).stdout, /^eth0\s+\d+/m);
  const bad = await podlab(home, ['impair', 'node-1', '--peer', 'node-2', '--loss', '150%']);
  t.is(bad.code, 1);
  t.regex(bad.stderr, /--loss: '150%' is not a percentage/);
  t.is((await podlab(home, ['impair', 'node-1', '--peer', 'node-2', '--loss', '100%'])).code, 0);
  t.is((await podlab(home, ['exec', 'pod-1a', '--', 'ping', '-c', '1', '-W', '1', target])).code, 1);
  t.is((await podlab(home, ['impair', 'node-1', '--clear'])).code, 0);
  t.is((await podlab(home, ['exec', 'pod-1a', '--', 'ping', '-c', '1', target])).code, 0);

  t.regex((await podlab(home, ['delete', 'pod', 'web'])).stdout, /pod "web" deleted/);
  const rec = readLab(path.join(home, '.podlab'))!;
  const d = await podlab(home, ['down']);
  t.is(d.code, 0);
  t.regex(d.stdout, /lab stopped \(3 processes\)/);
  for (const p of rec.procs) t.false(isOurProcess(p.pid, rec.stateDir));
  t.false(fs.existsSync(path.join(home, '.podlab', 'lab.json')));
  t.regex((await podlab(home, ['get', 'pods'])).stderr, /no running lab/);
});

test.serial('npm start: the walkthrough runs, the lab stays up, Ctrl-C stops everything', async (t) => {
  const home = tmpHome(t);
  const run = podlabRunning(t, home, ['up', '--demo', '--lab-net', '127.0.74.0/24', '--api-port', '0']);
  await eventually(() => run.out.includes('The lab stays up until Ctrl-C'), 150_000, 100);
  const out = run.out;
  t.regex(out, /64 bytes from 10\.244\.1\.3: icmp_seq=1 ttl=64/);
  // The three ways in, each answered from the host by a web pod.
  t.regex(out, /\$ curl http:\/\/127\.0\.74\.11:30080\/\nweb-\d on node-\d\n/);
  t.regex(out, /\$ curl http:\/\/127\.0\.74\.20\d\/\nweb-\d on node-\d\n/);
  t.regex(out, /\$ curl -H 'Host: web\.example' http:\/\/127\.0\.74\.20\d\/\nweb-\d on node-\d\n/);
  t.regex(out, /64 bytes from 10\.244\.2\.2: icmp_seq=1 ttl=62/);
  t.regex(out, /10\.244\.2\.0\/24 via 10\.244\.2\.0 dev flannel\.1 onlink/);
  t.regex(out, /dev flannel\.1 dst 127\.0\.74\.12 self permanent/);
  await new Promise((r) => setTimeout(r, 500));
  t.is(run.child.exitCode, null, 'still running after the walkthrough');
  const rec = readLab(path.join(home, '.podlab'))!;
  run.child.kill('SIGINT');
  t.is(await run.exited, 0);
  for (const p of rec.procs) t.false(isOurProcess(p.pid, rec.stateDir));
  t.false(fs.existsSync(path.join(home, '.podlab', 'lab.json')));
});

test.serial('Ctrl-C while `up` brings the lab up: nothing more starts, what had started stops, exit 130', async (t) => {
  const home = tmpHome(t);
  const stateDir = path.join(home, '.podlab');
  const run = podlabRunning(t, home, ['up', '--lab-net', '127.0.74.0/24', '--api-port', '0']);
  // Interrupted once the apiserver runs, while the agents start.
  await eventually(() => run.out.includes('apiserver listening'), 60_000, 20);
  const started = readLab(stateDir)!.procs.map((p) => p.pid);
  run.child.kill('SIGINT');
  const code = await run.exited;
  t.is(code, 130, run.out);
  t.regex(run.out, /SIGINT: stopping the lab in /);
  t.true(started.length > 0);
  for (const pid of started) t.false(isOurProcess(pid, stateDir), `pid ${pid} still runs`);
  // Nor anything started after that reading: no process of this state directory is left.
  const ours = fs
    .readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(stateDir);
      } catch {
        return false;
      }
    });
  t.deepEqual(ours, []);
});
