/**
 * calico-node's policy role on one emulated node: watches NetworkPolicies,
 * every pod of the cluster (selectors pick peers on any node) and namespaces,
 * recompiles the verdict tables (policy/engine.ts) once per tick however many
 * events arrive, and hands them to the node's enforcer (policy/enforcer.ts).
 */
import type { Clock } from '../common/clock.ts';
import { createLogger } from '../common/log.ts';
import type { ApiClient } from '../control-plane/client.ts';
import { Informer } from '../control-plane/informer.ts';
import type { Pod } from '../control-plane/types.ts';
import { PolicySet, policyNamespaces, policyPods } from '../policy/engine.ts';
import { PolicyEnforcer } from '../policy/enforcer.ts';
import { mergeIntoFilter, policyFilterRules } from '../policy/iptables-view.ts';
import type { NetworkPolicy } from '../policy/types.ts';
import type { NodeDataPlane } from './dataplane.ts';

const log = createLogger('podlab:policy');

export class NetworkPolicyAgent {
  readonly enforcer: PolicyEnforcer;
  private readonly policies: Informer<NetworkPolicy>;
  private readonly pods: Informer<Pod>;
  private readonly namespaces: Informer;
  private pending?: NodeJS.Immediate;
  /** The node's pods by address (rebuilt with every compile; pods change only through events that trigger one). */
  private local = new Map<string, { key: string; iface: string }>();

  constructor(
    private readonly dp: NodeDataPlane,
    api: ApiClient,
    clock: Clock,
  ) {
    this.enforcer = new PolicyEnforcer(dp.netfilter, { localPod: (ip) => this.local.get(ip) }, dp.tracer, clock);
    this.policies = new Informer<NetworkPolicy>(api, 'networkpolicies');
    this.pods = new Informer<Pod>(api, 'pods');
    this.namespaces = new Informer(api, 'namespaces');
    const again = () => this.schedule();
    for (const inf of [this.policies, this.pods, this.namespaces] as Informer[]) inf.on('add', again).on('update', again).on('delete', again);
  }

  async start(): Promise<void> {
    await Promise.all([this.policies.start(), this.pods.start(), this.namespaces.start()]);
    this.compile();
  }

  private schedule(): void {
    if (this.pending) return;
    this.pending = setImmediate(() => {
      this.pending = undefined;
      this.compile();
    });
  }

  /** Compiles the current state now. */
  compile(): void {
    this.local = new Map([...this.dp.pods.values()].map((p) => [p.ip, { key: p.key, iface: p.hostVeth.name }]));
    const set = new PolicySet(this.policies.list(), policyPods(this.pods.list()), policyNamespaces(this.namespaces.list()));
    const before = this.enforcer.policies.policies.length;
    this.enforcer.update(set);
    if (before !== set.policies.length) log.info('network policies compiled', { policies: set.policies.length, isolatedPods: [...set.tables.values()].filter((t) => t.ingress || t.egress).length });
  }

  /** `iptables-save [-t filter]` with policy's chains in the filter table. */
  filterView(save: string): string {
    if (this.enforcer.policies.empty) return save;
    const eps = [...this.dp.pods.values()].map((p) => ({ key: p.key, iface: p.hostVeth.name }));
    return mergeIntoFilter(save, policyFilterRules(this.enforcer.policies, eps));
  }

  stats(): Record<string, unknown> {
    return this.enforcer.stats();
  }

  stop(): void {
    if (this.pending) clearImmediate(this.pending);
    void this.policies.stop();
    void this.pods.stop();
    void this.namespaces.stop();
    this.enforcer.close();
  }
}
