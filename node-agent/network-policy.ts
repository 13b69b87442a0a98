/**
 * calico-node's policy role on one emulated node: watches NetworkPolicies,
 * and once there is one, every pod of the cluster (selectors pick peers on
 * any node) and namespaces; recompiles the verdict tables (policy/engine.ts)
 * once per tick however many events arrive, and hands them to the node's
 * enforcer (policy/enforcer.ts).
 *
 * Until the first NetworkPolicy exists nothing is enforced, so the policy
 * code is not loaded and the node does not hold the cluster's pods: in a
 * 100-node lab that is a copy of every pod in every agent, and a watch event
 * per pod change per agent at the apiserver. Once started the pod and
 * namespace watches stay, policies or not, as calico-node's do.
 */
import type { Clock } from '../common/clock.ts';
import { createLogger } from '../common/log.ts';
import type { ApiClient } from '../control-plane/client.ts';
import { Informer } from '../control-plane/informer.ts';
import type { Pod } from '../control-plane/types.ts';
import type { PolicyEnforcer } from '../policy/enforcer.ts';
import type { NetworkPolicy } from '../policy/types.ts';
import type { NodeDataPlane } from './dataplane.ts';

const log = createLogger('podlab:policy');

/** The policy modules, loaded with the first NetworkPolicy. */
async function policyCode() {
  const [engine, enforcer, view] = await Promise.all([import('../policy/engine.ts'), import('../policy/enforcer.ts'), import('../policy/iptables-view.ts')]);
  return { ...engine, ...enforcer, ...view };
}

/** What runs once policies exist: the code, the enforcer and the cluster-wide watches it reads. */
interface Active {
  code: Awaited<ReturnType<typeof policyCode>>;
  enforcer: PolicyEnforcer;
  pods: Informer<Pod>;
  namespaces: Informer;
}

/** A policy-free node's counters, shaped as the enforcer's. */
const NO_POLICY_STATS = { policies: 0, acceptedConnections: 0, drops: 0, dropsByPolicy: {}, trackedConnections: 0, evictedConnections: 0 };

export class NetworkPolicyAgent {
  private readonly policies: Informer<NetworkPolicy>;
  private active?: Active;
  private activating?: Promise<void>;
  private stopped = false;
  private pending?: NodeJS.Immediate;
  /** The node's pods by address (rebuilt with every compile; pods change only through events that trigger one). */
  private local = new Map<string, { key: string; iface: string }>();

  constructor(
    private readonly dp: NodeDataPlane,
    private readonly api: ApiClient,
    private readonly clock: Clock,
  ) {
    this.policies = new Informer<NetworkPolicy>(api, 'networkpolicies');
    const again = () => this.schedule();
    this.policies.on('add', again).on('update', again).on('delete', again);
  }

  /** Resolves once the policies that exist now are enforced. */
  async start(): Promise<void> {
    await this.policies.start();
    if (this.policies.list().length) await this.activate();
  }

  private schedule(): void {
    if (!this.active) {
      if (this.policies.list().length) void this.activate();
      return;
    }
    if (this.pending) return;
    this.pending = setImmediate(() => {
      this.pending = undefined;
      this.compile();
    });
  }

  /** Loads the policy code, starts the pod and namespace watches and the enforcer, then compiles (once). */
  private activate(): Promise<void> {
    this.activating ??= (async () => {
      const code = await policyCode();
      if (this.stopped) return;
      const enforcer = new code.PolicyEnforcer(this.dp.netfilter, { localPod: (ip) => this.local.get(ip) }, this.dp.tracer, this.clock);
      const pods = new Informer<Pod>(this.api, 'pods');
      const namespaces = new Informer(this.api, 'namespaces');
      const active: Active = { code, enforcer, pods, namespaces };
      const again = () => this.active && this.schedule();
      for (const inf of [pods, namespaces] as Informer[]) inf.on('add', again).on('update', again).on('delete', again);
      try {
        await Promise.all([pods.start(), namespaces.start()]);
      } catch (e) {
        enforcer.close();
        void pods.stop();
        void namespaces.stop();
        throw e;
      }
      if (this.stopped) return stopActive(active);
      this.active = active;
      log.info('network policies exist: watching pods and namespaces');
      this.compile();
    })().catch((e: unknown) => {
      // The next policy event tries again.
      this.activating = undefined;
      log.error('starting network policy enforcement failed', { error: (e as Error).message });
    });
    return this.activating;
  }

  /** Compiles the current state now. */
  compile(): void {
    const a = this.active;
    if (!a) return;
    this.local = new Map([...this.dp.pods.values()].map((p) => [p.ip, { key: p.key, iface: p.hostVeth.name }]));
    const set = new a.code.PolicySet(this.policies.list(), a.code.policyPods(a.pods.list()), a.code.policyNamespaces(a.namespaces.list()));
    const before = a.enforcer.policies.policies.length;
    a.enforcer.update(set);
    if (before !== set.policies.length) log.info('network policies compiled', { policies: set.policies.length, isolatedPods: [...set.tables.values()].filter((t) => t.ingress || t.egress).length });
  }

  /** `iptables-save [-t filter]` with policy's chains in the filter table. */
  filterView(save: string): string {
    const a = this.active;
    if (!a || a.enforcer.policies.empty) return save;
    const eps = [...this.dp.pods.values()].map((p) => ({ key: p.key, iface: p.hostVeth.name }));
    return a.code.mergeIntoFilter(save, a.code.policyFilterRules(a.enforcer.policies, eps));
  }

  stats(): Record<string, unknown> {
    return this.active?.enforcer.stats() ?? { ...NO_POLICY_STATS, dropsByPolicy: {} };
  }

  stop(): void {
    this.stopped = true;
    if (this.pending) clearImmediate(this.pending);
    void this.policies.stop();
    if (this.active) stopActive(this.active);
  }
}

function stopActive(a: Active): void {
  void a.pods.stop();
  void a.namespaces.stop();
  a.enforcer.close();
}
