/**
 * The `npm start` walkthrough: the seeds' explanation of a packet's way from
 * pod to pod, run for real against the lab just started.
 */
import type { Pod } from '../control-plane/types.ts';
import { execInPod, getResources, nodeCommand } from './commands.ts';
import { labApi, requireLab } from '../lab/lab.ts';

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
The lab stays up until Ctrl-C.
`);
}
