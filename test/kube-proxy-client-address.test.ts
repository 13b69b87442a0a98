/**
 * The real client address through kube-proxy's external path, in process
 * (one node's data plane, never started; its real sockets on 127.0.28.200,
 * clients bound to 127.0.29.x, outside the node's underlay 127.0.28.0/24): a
 * real TCP client of the LB IP reaches the pod's HTTP app through KUBE-EXT;
 * with externalTrafficPolicy Local the app sees the client's own 127.0.29.x
 * address and its reply reaches the client (the pod routes it to the node,
 * conntrack un-DNATs it to the node's socket); with Cluster it sees cni0's
 * address (masquerade). 127.0.0.1 and underlay addresses keep stand-ins.
 */
import test from 'ava';
import http from 'node:http';
import { monotonicClock } from '../common/clock.ts';
import { SeededRng } from '../common/rng.ts';
import { startPodApps } from '../apps/index.ts';
import { NodeDataPlane } from '../node-agent/dataplane.ts';
import { KubeProxy } from '../node-agent/kube-proxy.ts';
import { Cidr } from '../packet/cidr.ts';
import type { KubeObject } from '../control-plane/types.ts';
import { loadEngineFactory } from '../service-proxy/load-engine.ts';

const iptablesEngine = await loadEngineFactory('iptables');

const LB = '127.0.28.200';
const under = Cidr.parse('127.0.28.0/24');

function get(port: number, localAddress: string, path = '/ip'): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: LB, port, path, localAddress, agent: false, timeout: 3000 }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(body.trim()));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
  });
}

const service = (name: string, policy: 'Local' | 'Cluster', clusterIP: string, nodePort: number): KubeObject =>
  ({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: 'default', uid: name, resourceVersion: '1', creationTimestamp: '' },
    spec: { type: 'LoadBalancer', clusterIP, clusterIPs: [clusterIP], externalTrafficPolicy: policy, selector: { app: name }, ports: [{ name: 'http', port: 80, targetPort: 80, protocol: 'TCP', nodePort }] },
    status: { loadBalancer: { ingress: [{ ip: LB, ipMode: 'VIP' }] } },
  });
const slice = (name: string, ip: string): KubeObject =>
  ({
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `${name}-a`, namespace: 'default', uid: `${name}-a`, resourceVersion: '1', creationTimestamp: '', labels: { 'kubernetes.io/service-name': name } },
    addressType: 'IPv4',
    endpoints: [{ addresses: [ip], nodeName: 'node-1', conditions: { ready: true } }],
    ports: [{ name: 'http', port: 80, protocol: 'TCP' }],
  }) as unknown as KubeObject;

for (const [policy, port] of [['Local', 18081], ['Cluster', 18082]] as const) {
  test.serial(`${policy}: what the pod sees of a real host client`, async (t) => {
    const dp = new NodeDataPlane({ name: 'node-1', ip: '127.0.28.11', underlayCidr: under.toString(), podCIDR: '10.244.1.0/24', vtepMac: '02:00:00:00:28:01', clusterCidr: '10.244.0.0/16', vxlanPort: 8472, vni: 1, seed: 7, mtu: 1500, clock: monotonicClock, rng: new SeededRng(7) });
    const pod = dp.addPod({ namespace: 'default', name: 'web', uid: 'uid-web', ip: '10.244.1.5' });
    startPodApps(pod, [{ name: 'web', image: 'podlab/http' }], { podName: 'web', nodeName: 'node-1' });
    const kp = new KubeProxy(dp, { engine: iptablesEngine, node: 'node-1', nodeIp: '127.0.28.11', clusterCidr: '10.244.0.0/16', clock: monotonicClock, rng: new SeededRng(3), allowRealBind: (ip) => under.contains(ip) });
    t.teardown(() => kp.close());
    kp.update([service('web', policy, '10.96.0.80', 30080)], [slice('web', '10.244.1.5')]);
    kp.sync();
    const server = await kp.openRealTcp(LB, port, { ip: LB, port: 80 });
    t.teardown(() => server.close());

    if (policy === 'Local') {
      t.is(await get(port, '127.0.29.9'), '127.0.29.9', 'the real client');
      t.is(await get(port, '127.0.29.10'), '127.0.29.10');
      t.is(await get(port, '127.0.29.9', '/'), 'web on node-1', 'a whole response back');
      t.is(await get(port, '127.0.0.1'), '203.0.113.1', "127.0.0.1 is the pod's own: a stand-in");
      t.regex(await get(port, '127.0.28.99'), /^203\.0\.113\.\d+$/, 'an underlay address would shadow a node: a stand-in');
      t.regex(dp.netfilter.conntrack.format(), /src=127\.0\.29\.9 dst=127\.0\.28\.200 sport=\d+ dport=80 src=10\.244\.1\.5 dst=127\.0\.29\.9 sport=80/);
      t.regex(kp.clients.view(), /127\.0\.29\.9 \(carried in\)/);
    } else {
      t.is(await get(port, '127.0.29.9'), '10.244.1.1', "masqueraded to the node (cni0's address towards the pod)");
    }
  });
}
