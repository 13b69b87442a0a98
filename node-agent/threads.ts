/**
 * The agent's shared worker thread (common/module-worker.ts SharedThread):
 * kube-proxy's engine and the CoreDNS pods' code run here, each on a port of
 * its own, instead of a thread each. Each loads with its first tenant.
 */
import { hostTenants } from '../common/shared-thread-host.ts';

/** The worker entries whose code the agent's shared thread runs. */
export const SHARED_THREAD_TENANTS = {
  'service-proxy/worker.ts': () => import('../service-proxy/worker-serve.ts'),
  'apps/dns/worker.ts': () => import('../apps/dns/worker-serve.ts'),
};

hostTenants(SHARED_THREAD_TENANTS);
