/**
 * The LoadBalancer tests' workload and client: a podlab/http pod pinned to a
 * node, a LoadBalancer Service in front of an app label, and one real HTTP GET
 * from the host (optionally from a chosen 127.x source address).
 */
import http from 'node:http';

export const httpPod = (name: string, node: string, app: string) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, labels: { app } },
  spec: { nodeName: node, containers: [{ name: 'c', image: 'podlab/http', ports: [{ name: 'http', containerPort: 80 }] }] },
});

export const lbService = (name: string, app: string, extra: Record<string, unknown> = {}, annotations?: Record<string, string>) => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name, ...(annotations ? { annotations } : {}) },
  spec: { type: 'LoadBalancer', selector: { app }, ports: [{ port: 80, targetPort: 'http' }], ...extra },
});

/** One real HTTP GET from the host; `localAddress` picks the client's source address. */
export function realGet(url: string, localAddress?: string, timeout = 2000): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout, agent: false, ...(localAddress ? { localAddress } : {}) }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(body.trim()));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
  });
}
