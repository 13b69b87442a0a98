/**
 * LoadBalancer Services as a scenario sees them from the host: the address
 * in a Service's status, the node whose speaker holds it (the Lease the
 * speakers elect it with), and one real HTTP GET from the host to it.
 */
import http from 'node:http';
import type { Lease } from '../control-plane/core-resources.ts';
import { METALLB_NAMESPACE } from '../control-plane/metallb.ts';
import type { Service } from '../control-plane/service-resources.ts';
import { leaseNameFor } from '../edge/l2-speaker.ts';
import type { RunContext } from './context.ts';
import { StepError } from './pods.ts';

/** The Service's first LoadBalancer address; StepError when it has none. */
export async function lbAddress(ctx: RunContext, service: string, namespace: string): Promise<string> {
  const svc = await ctx.api.get<Service>('services', service, namespace);
  if (!svc) throw new StepError(`no Service ${namespace}/${service}`);
  const ip = svc.status?.loadBalancer?.ingress?.[0]?.ip;
  if (!ip) throw new StepError(`Service ${namespace}/${service} has no LoadBalancer address yet (EXTERNAL-IP <pending>)`);
  return ip;
}

/** The node holding the Service's address (the holder of its election Lease). */
export async function lbLeader(ctx: RunContext, service: string, namespace: string): Promise<string> {
  const ip = await lbAddress(ctx, service, namespace);
  const lease = await ctx.api.get<Lease>('leases', leaseNameFor(ip), METALLB_NAMESPACE);
  const holder = lease?.spec?.holderIdentity;
  if (!holder) throw new StepError(`no node holds ${ip} (Lease ${METALLB_NAMESPACE}/${leaseNameFor(ip)} ${lease ? 'is released' : 'does not exist'})`);
  return holder;
}

/** One GET from the host with a fresh connection: status and body, or the socket error. */
export function hostGet(url: string, timeoutMs: number): Promise<{ status: number; body: string } | { error: string }> {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: timeoutMs, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: body.trim() }));
      res.on('error', (e) => resolve({ error: e.message }));
    });
    req.on('error', (e) => resolve({ error: (e as NodeJS.ErrnoException).code ?? e.message }));
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
  });
}
