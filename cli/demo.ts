/**
 * The `npm start` walkthrough: the seeds' explanation of a packet's way from
 * pod to pod, run for real against the lab just started.
 */
import http from 'node:http';
import path from 'node:path';
import type { ApiClient } from '../control-plane/client.ts';
import type { Service } from '../control-plane/service-resources.ts';
import type { Pod } from '../control-plane/types.ts';
import { execInPod, getResources, nodeCommand } from './commands.ts';
import { applyObjects, labApi, requireLab, ROOT, waitApplied } from '../lab/lab.ts';
import { loadManifestFile, type LoadedObject } from '../lab/manifest.ts';

export async function runDemo(stateDir: string, signal: AbortSignal): Promise<void> {
  const rec = requireLab(stateDir);
  const api = labApi(rec);
  const pods = (await api.list<Pod>('pods', { namespace: 'default' })).items;
  const on = (node: string) => pods.filter((p) => p.spec?.nodeName === node).sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  const [a, b] = on('node-1');
  const [c] = on('node-2');
  const w = (s: string) => process.stdout.write(s);
  const show = async (title: string, cmd: string, run: () => Promise<unknown>) => {
    if (signal.aborted) return;
    w(`\n${title}\n$ ${cmd}\n`);
    await run();
  };
  const io = { stdout: w, stderr: (s: string) => process.stderr.write(s), signal };

  await show('The lab: every pod has an IP from its node\'s podCIDR (10.244.N.0/24).', 'podlab get pods -o wide', async () => w(await getResources(stateDir, 'pods', { output: 'wide' })));
  if (a && b) {
    await show(
      `1) Same node: ${a.metadata.name} -> ${b.metadata.name}. eth0 -> veth -> cni0 bridge (MAC learning) -> veth -> eth0; no routing, so TTL stays 64.`,
      `podlab exec ${a.metadata.name} -- ping -c 2 ${b.status?.podIP}`,
      () => execInPod(stateDir, a.metadata.name, ['ping', '-c', '2', '-i', '0.2', b.status!.podIP!], io),
    );
  }
  if (a && c) {
    await show(
      `2) Across nodes: ${a.metadata.name} -> ${c.metadata.name}. cni0 -> node-1 routes to flannel.1 -> VXLAN (VNI 1) in a real UDP datagram to node-2:8472 -> decap -> cni0 -> pod. Two routed hops: TTL 62.`,
      `podlab exec ${a.metadata.name} -- ping -c 2 ${c.status?.podIP}`,
      () => execInPod(stateDir, a.metadata.name, ['ping', '-c', '2', '-i', '0.2', c.status!.podIP!], io),
    );
  }
  await show('3) What flanneld programmed on node-1 for each peer: one route...', 'podlab node node-1 ip route', async () => w(await nodeCommand(stateDir, 'node-1', ['ip', 'route'])));
  await show('   ...one permanent neighbour entry (peer .0 -> peer VtepMAC)...', 'podlab node node-1 ip neigh show dev flannel.1', async () =>
    w(await nodeCommand(stateDir, 'node-1', ['ip', 'neigh', 'show', 'dev', 'flannel.1'])),
  );
  await show('   ...and one FDB entry (peer VtepMAC -> peer node IP, where the UDP datagram goes).', 'podlab node node-1 bridge fdb show dev flannel.1', async () =>
    w(await nodeCommand(stateDir, 'node-1', ['bridge', 'fdb', 'show', 'dev', 'flannel.1'])),
  );
  if (a) {
    await show(
      '4) Names: a UDP query to kube-dns (10.96.0.10, DNATed by kube-proxy to a CoreDNS pod), the search list of the kubelet\'s resolv.conf completing the name.',
      `podlab exec ${a.metadata.name} -- nslookup kubernetes.default`,
      () => execInPod(stateDir, a.metadata.name, ['nslookup', 'kubernetes.default'], io),
    );
  }
  // The host reaches LB IPs with a real socket only where they are loopback addresses (local labs).
  const ways = !rec.netns && rec.nodes.length ? await threeWaysIn(api, rec.nodes[0].ip, show, w, signal).catch((e: Error) => (w(`(the three ways in could not be shown: ${e.message})\n`), false)) : false;
  if (signal.aborted) return;
  w(`
Watch the VXLAN datagrams (another terminal, needs capture rights on lo):
  tshark -i lo -f 'udp port 8472' -d udp.port==8472,vxlan
Try more (another terminal, same directory):
  npx podlab get nodes -o wide
  npx podlab exec ${a?.metadata.name ?? 'pod-1a'} -- ping ${c?.status?.podIP ?? '10.244.2.2'}
  npx podlab impair node-1 --peer node-2 --loss 20%
  npx podlab apply -f examples/web-service.yaml --wait
  npx podlab exec ${a?.metadata.name ?? 'pod-1a'} -- curl http://web.default.svc.cluster.local
${ways ? `  curl -H 'Host: web.example' http://${ways}/   # the Ingress route (kubectl get ingress: its ADDRESS)\n  npx podlab get pods -n ingress-nginx; npx podlab logs -n ingress-nginx POD   # the controller's access log\n` : ''}The lab stays up until Ctrl-C.
`);
}

/** One real HTTP GET from the host, retried until it answers (an L2 owner or a controller still starting). */
async function hostGet(url: string, host: string | undefined, signal: AbortSignal, timeoutMs = 30_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await new Promise<string>((resolve, reject) => {
        const req = http.get(url, { timeout: 2000, agent: false, headers: host ? { Host: host } : {} }, (res) => {
          let body = '';
          res.on('data', (d) => (body += d));
          res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`HTTP ${res.statusCode}`))));
        });
        req.on('error', reject);
        req.on('timeout', () => req.destroy(new Error('timeout')));
      });
    } catch (e) {
      if (Date.now() > deadline || signal.aborted) throw e;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

/**
 * 5) The three ways into the cluster from the host: the web pods of
 * examples/web-service.yaml through a NodePort (examples/nodeport.yaml), a
 * LoadBalancer IP and the ingress-nginx controller
 * (examples/ingress-nginx.yaml) by Host. Returns the controller's LB IP.
 */
async function threeWaysIn(
  api: ApiClient,
  nodeIp: string,
  show: (title: string, cmd: string, run: () => Promise<unknown>) => Promise<void>,
  w: (s: string) => void,
  signal: AbortSignal,
): Promise<string | false> {
  const at = (obj: object): LoadedObject => ({ obj: obj as LoadedObject['obj'], file: 'demo', line: 0 });
  const objs = [
    ...['web-service.yaml', 'nodeport.yaml', 'ingress-nginx.yaml'].flatMap((f) => loadManifestFile(path.join(ROOT, 'examples', f))),
    at({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web-lb' }, spec: { type: 'LoadBalancer', selector: { app: 'web' }, ports: [{ port: 80, targetPort: 'http' }] } }),
    at({
      apiVersion: 'networking.k8s.io/v1',
      kind: 'Ingress',
      metadata: { name: 'web' },
      spec: { ingressClassName: 'nginx', rules: [{ host: 'web.example', http: { paths: [{ path: '/', pathType: 'Prefix', backend: { service: { name: 'web', port: { number: 80 } } } }] } }] },
    }),
  ];
  await show(
    '5) Three ways in from the host: web pods behind a NodePort, a LoadBalancer IP (MetalLB L2: the elected node holds it), and the ingress-nginx controller (itself behind a LoadBalancer) routing by Host.',
    'podlab apply -f examples/web-service.yaml -f examples/nodeport.yaml -f examples/ingress-nginx.yaml  (+ Service web-lb, Ingress web)',
    async () => {
      for (const l of await applyObjects(api, objs)) w(`${l}\n`);
      await waitApplied(api, objs, 90_000);
    },
  );
  if (signal.aborted) return false;
  const lbIp = async (ns: string, name: string) => {
    for (let i = 0; i < 100; i++) {
      const ip = (await api.get<Service>('services', name, ns))?.status?.loadBalancer?.ingress?.[0]?.ip;
      if (ip) return ip;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`Service ${ns}/${name} got no LoadBalancer IP`);
  };
  const webLb = await lbIp('default', 'web-lb');
  const ingressLb = await lbIp('ingress-nginx', 'ingress-nginx-controller');
  const get = (url: string, host?: string) => async () => w(await hostGet(url, host, signal));
  await show('   a) NodePort: any node\'s real socket on port 30080, kube-proxy\'s KUBE-NODEPORTS.', `curl http://${nodeIp}:30080/`, get(`http://${nodeIp}:30080/`));
  await show('   b) LoadBalancer: the LB IP from the MetalLB pool, held by the elected node; KUBE-EXT.', `curl http://${webLb}/`, get(`http://${webLb}/`));
  await show(
    '   c) Ingress: the controller\'s LB IP; the controller picks the route by Host and path and proxies to a pod IP (upstream keep-alive).',
    `curl -H 'Host: web.example' http://${ingressLb}/`,
    get(`http://${ingressLb}/`, 'web.example'),
  );
  return ingressLb;
}
