/**
 * Ingress end to end in a local lab (2 agent processes on 127.0.21.0/24):
 * examples/ingress-nginx.yaml deploys the controller (a Deployment in
 * ingress-nginx behind a LoadBalancer Service, externalTrafficPolicy Local),
 * examples/ingress.yaml two http-echo backends and an Ingress; the test adds
 * a podlab/http backend that shows the headers it received and a Service
 * with no endpoints. The host's real curl, with a Host header, to the LB IP
 * reaches the right pod by host and path; no match is the controller's 404,
 * no endpoints its 503; the backend sees X-Forwarded-For / X-Real-IP (the
 * outside client's address, kept by the Local policy), X-Forwarded-Host and
 * X-Forwarded-Proto; the controller's log (podlab logs) has the access-log
 * lines; it reuses upstream connections; the Ingress's status and
 * `kubectl get ingress` show the LB IP as ADDRESS. Captures show each hop:
 * host -> LB IP on lo, client -> controller pod and controller pod ->
 * backend pod on the controller node's cni0, VXLAN to the backend's node on
 * its eth0.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { podLogs } from '../cli/commands.ts';
import type { Ingress } from '../control-plane/ingress-resources.ts';
import type { Service } from '../control-plane/service-resources.ts';
import type { Pod } from '../control-plane/types.ts';
import { applyObjects, labApi, ROOT } from '../lab/lab.ts';
import { loadManifestFile } from '../lab/manifest.ts';
import { eventually, hasTool, requireOrSkip, startLab } from './helpers/lab.ts';
import { captureLo, captureNode, tsharkFields } from './helpers/capture.ts';
import { kubectl } from './helpers/kubectl.ts';

const LB_IP = '127.0.21.200';

/** The host's real curl: status, body and what it printed with -w. */
function hostCurl(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile('curl', ['-s', '--max-time', '5', ...args], (err, stdout) => resolve({ code: err ? Number((err as { code?: unknown }).code) || 1 : 0, out: String(stdout) }));
  });
}
const body = async (host: string, p: string) => (await hostCurl(['-H', `Host: ${host}`, `http://${LB_IP}${p}`])).out;
const status = async (host: string, p: string) => (await hostCurl(['-o', '/dev/null', '-w', '%{http_code}', '-H', `Host: ${host}`, `http://${LB_IP}${p}`])).out;

test.serial('the host reaches pods through the LB IP and the ingress controller by host and path', async (t) => {
  if (!requireOrSkip(t, hasTool('curl'), 'curl is not installed')) return;
  const lab = await startLab('127.0.21.0/24', { nodes: 2, podsPerNode: 0 });
  t.teardown(() => lab.close());
  const api = labApi(lab.rec);
  const examples = ['ingress-nginx.yaml', 'ingress.yaml'].flatMap((f) => loadManifestFile(path.join(ROOT, 'examples', f)));
  for (const line of await applyObjects(api, examples)) t.log(line);
  for (const [name, app] of [['web', 'web'], ['empty', 'nothing-has-this']]) {
    await api.create('services', { apiVersion: 'v1', kind: 'Service', metadata: { name }, spec: { selector: { app }, ports: [{ port: 80, targetPort: 80 }] } }, 'default');
  }
  const rule = (host: string, service: string) => ({ host, http: { paths: [{ path: '/', pathType: 'Prefix', backend: { service: { name: service, port: { number: 80 } } } }] } });
  // No ingressClassName: the default class (examples/ingress-nginx.yaml marks nginx) is given at creation.
  await api.create('ingresses', { apiVersion: 'networking.k8s.io/v1', kind: 'Ingress', metadata: { name: 'more' }, spec: { rules: [rule('h.example', 'web'), rule('empty.example', 'empty')] } }, 'default');
  t.is((await api.get<Ingress>('ingresses', 'more', 'default'))?.spec?.ingressClassName, 'nginx');

  const allRunning = (n: number) =>
    eventually(async () => {
      const pods = (await api.list<Pod>('pods')).items;
      return pods.length >= n && pods.every((p) => p.status?.phase === 'Running');
    }, 60_000);
  await allRunning(4);
  // The headers backend on the other node than the controller: its hop crosses the overlay.
  const ctl = (await api.list<Pod>('pods', { namespace: 'ingress-nginx' })).items[0];
  const ctlNode = ctl.spec!.nodeName!;
  const otherNode = ctlNode === 'node-1' ? 'node-2' : 'node-1';
  await api.create('pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web', labels: { app: 'web' } }, spec: { nodeName: otherNode, containers: [{ name: 'web', image: 'podlab/http', ports: [{ name: 'http', containerPort: 80 }] }] } }, 'default');
  await allRunning(5);
  const webIp = (await api.get<Pod>('pods', 'web', 'default'))!.status!.podIP!;
  const ctlIp = ctl.status!.podIP!;
  const lbIp = async () => (await api.get<Service>('services', 'ingress-nginx-controller', 'ingress-nginx'))?.status?.loadBalancer?.ingress?.[0]?.ip;
  t.is(await eventually(lbIp, 15_000), LB_IP);

  // Host and path, through the elected node, kube-proxy, the controller pod and on to the backend pod.
  t.is(await eventually(() => body('apple.example', '/').then((b) => (b === 'apple\n' ? b : '')), 30_000), 'apple\n');
  t.is(await body('apple.example', '/banana'), 'banana\n', 'Exact /banana beats Prefix /');
  t.is(await body('apple.example', '/bananas'), 'apple\n', 'an Exact path is not a prefix');
  t.is(await body('banana.example', '/any/path'), 'banana\n');
  t.is(await status('nowhere.example', '/'), '404');
  t.regex(await body('nowhere.example', '/'), /<center>nginx<\/center>/);
  t.is(await status('empty.example', '/'), '503');

  // What the backend saw: the outside client (Local keeps it) and the forwarding headers.
  const seen = new Map(
    (await body('h.example', '/headers'))
      .trim()
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 2)]),
  );
  t.regex(seen.get('x-forwarded-for') ?? '', /^203\.0\.113\.\d+$/, JSON.stringify([...seen]));
  t.is(seen.get('x-real-ip'), seen.get('x-forwarded-for'));
  t.is(seen.get('x-forwarded-host'), 'h.example');
  t.is(seen.get('x-forwarded-proto'), 'http');
  t.is(seen.get('host'), 'h.example');
  t.regex(seen.get('x-request-id') ?? '', /^[0-9a-f]{32}$/);

  // Each hop in a capture: the host to the LB IP on the real lo; on the controller's node, cni0 carries the
  // client (its stand-in) to the controller pod after kube-proxy's DNAT, then the controller pod to the backend
  // pod; eth0 carries that in VXLAN to the backend's node.
  const hop = async (file: string, fields: string[], decode: string[] = []) => (await tsharkFields(file, fields, decode)).map((f) => f.join(' '));
  if (hasTool('tshark')) {
    const poke = () => body('h.example', '/');
    const lo = await captureLo(`host ${LB_IP} and tcp port 80`, 4, poke);
    t.teardown(lo.cleanup);
    t.true((await hop(lo.file, ['ip.dst', 'tcp.dstport'])).some((l) => l === `${LB_IP} 80`), 'host -> LB IP on lo');
    const cni0 = await captureNode(lab.stateDir, ctlNode, 'cni0', 20, poke);
    t.teardown(cni0.cleanup);
    const onCni0 = await hop(cni0.file, ['ip.src', 'ip.dst', 'tcp.dstport']);
    t.true(onCni0.some((l) => new RegExp(`^203\\.0\\.113\\.\\d+ ${ctlIp.replaceAll('.', '\\.')} 80$`).test(l)), `client -> controller pod on cni0: ${onCni0.join('; ')}`);
    t.true(onCni0.includes(`${ctlIp} ${webIp} 80`), `controller pod -> backend pod on cni0: ${onCni0.join('; ')}`);
    const eth0 = await captureNode(lab.stateDir, ctlNode, 'eth0', 4, poke);
    t.teardown(eth0.cleanup);
    const onEth0 = await hop(eth0.file, ['ip.src', 'ip.dst', 'tcp.dstport'], ['udp.port==8472,vxlan']);
    t.true(onEth0.some((l) => l.endsWith(`,${ctlIp} ${lab.rec.nodes.find((n) => n.name === otherNode)!.ip},${webIp} 80`)), `VXLAN to the backend's node on eth0: ${onEth0.join('; ')}`);
  } else if (process.env.CI === 'true') t.fail('required in CI: tshark');
  else t.log('tshark is not installed: the hop captures are skipped');

  // The controller's log: ingress-nginx's access-log lines.
  let logs = '';
  await podLogs(lab.stateDir, `ingress-nginx/${ctl.metadata.name}`, {}, { stdout: (s) => (logs += s) });
  t.regex(logs, /NGINX Ingress controller\n {2}Release: {7}v1\.11\.3/);
  t.regex(logs, /^203\.0\.113\.\d+ - - \[[^\]]+\] "GET \/banana HTTP\/1\.1" 200 7 "-" "curl\/[\d.]+" \d+ \d+\.\d{3} \[default-banana-http\] \[\] 10\.244\.\d+\.\d+:5678 7 \d+\.\d{3} 200 [0-9a-f]{32}$/m);
  t.regex(logs, /"GET \/ HTTP\/1\.1" 404 \d+ .* \[upstream-default-backend\] \[\] 127\.0\.0\.1:8181 /);
  t.regex(logs, /"GET \/ HTTP\/1\.1" 503 \d+ .* \[default-empty-80\] \[\] - - - - [0-9a-f]{32}$/m);

  // Upstream keep-alive: more requests than connections to the endpoints.
  for (let i = 0; i < 4; i++) await body('apple.example', '/');
  const ps = await lab.exec(`ingress-nginx/${ctl.metadata.name}`, ['ps']);
  const counters = Object.fromEntries([...ps.out.matchAll(/(\w+)=(\d+)/g)].map((m) => [m[1], Number(m[2])]));
  t.log(ps.out.trim());
  t.true(counters.upstreamReused > 0 && counters.upstreamConnections < counters.proxied, ps.out);

  // The controller publishes its Service's address on the Ingresses.
  const address = async (name: string) => (await api.get<Ingress>('ingresses', name, 'default'))?.status?.loadBalancer?.ingress?.[0]?.ip;
  t.is(await eventually(() => address('fruit'), 15_000), LB_IP);
  t.is(await eventually(() => address('more'), 15_000), LB_IP);
  if (hasTool('kubectl')) {
    const k = await kubectl(lab.stateDir, ['get', 'ingress', 'fruit']);
    t.is(k.code, 0, k.stderr);
    t.regex(k.stdout, /^NAME\s+CLASS\s+HOSTS\s+ADDRESS\s+PORTS\s+AGE\nfruit\s+nginx\s+apple\.example,banana\.example\s+127\.0\.21\.200\s+80\s+\S+\n$/);
  } else if (process.env.CI === 'true') t.fail('required in CI: kubectl');
  else t.log('kubectl is not installed: the ADDRESS column is checked through the API only');
});
