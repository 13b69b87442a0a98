/**
 * NetworkPolicy enforced on one node as Calico enforces it: at each pod's
 * host-side interface, both ways ("from workload" for the pod's egress, "to
 * workload" for its ingress), through the node's netfilter hooks:
 *
 * - FORWARD (filter priority): routed traffic, which includes every Service
 *   connection after kube-proxy's DNAT at PREROUTING (so the backend pod is
 *   judged, not the ClusterIP) and every packet to or from another node;
 * - bridge FORWARD (br_netfilter), before kube-proxy's bridge hook: frames
 *   cni0 switches straight from one local pod to another, seen untranslated.
 *
 * The first packet of a connection is judged: the source pod's egress when the
 * source is a pod of this node, the destination pod's ingress when the
 * destination is; the other end's node judges the other end. An allowed
 * connection is remembered (./flow-table.ts) and every later packet of it,
 * replies included, passes as ESTABLISHED. A denied packet is dropped without
 * an answer (Calico's default: a TCP SYN gets no RST) and counted against
 * each policy isolating the pod.
 *
 * Simplifications: connection state is kept only while some policy exists
 * (with none nothing is isolated, and the fast path stays free of it), so a
 * connection opened before the first policy is judged afresh by its next
 * packet; ICMP errors and later fragments pass as RELATED.
 */
import type { Clock } from '../common/clock.ts';
import type { Ipv4Packet } from '../packet/ipv4-packet.ts';
import { tupleOf, type Tuple } from '../netstack/netfilter/conntrack.ts';
import { NF_BR_PRI, NF_IP_PRI, type Netfilter, type NfState } from '../netstack/netfilter/netfilter.ts';
import type { Tracer } from '../netstack/trace.ts';
import { fromWorkloadChain, toWorkloadChain } from './calico-names.ts';
import { PolicySet, formatDirVerdict, type Flow, type Verdict } from './engine.ts';
import { FlowTable, type FlowTableOptions } from './flow-table.ts';

/** What the enforcer needs to know about the node's own pods. */
export interface EnforcerHost {
  /** The pod of this node with this address: its `namespace/name` and host-side interface. */
  localPod(ip: string): { key: string; iface: string } | undefined;
}

/** The drop reason policy gives (counters, traces). */
export const POLICY_DROP = 'policy-denied';

const PROTO: Record<Tuple['proto'], Flow['protocol']> = { tcp: 'TCP', udp: 'UDP', icmp: 'ICMP' };

export class PolicyEnforcer {
  private set = new PolicySet([], [], []);
  readonly flows: FlowTable;
  /** Packets dropped, per policy that isolated the pod (`ns/name`), and in all. */
  readonly dropsByPolicy = new Map<string, number>();
  drops = 0;
  /** New connections judged and let through. */
  accepted = 0;
  private readonly unregister: (() => void)[];

  constructor(
    private readonly nf: Netfilter,
    private readonly host: EnforcerHost,
    private readonly tracer: Tracer,
    clock: Clock,
    opts: FlowTableOptions = {},
  ) {
    this.flows = new FlowTable(clock, opts);
    const idle = () => this.set.empty && this.flows.size === 0;
    this.unregister = [
      // flowSafe: a flow's later packets pass while its connection stays in the table (refreshed for each, see keep).
      nf.register('forward', { name: 'calico policy', priority: NF_IP_PRI.FILTER, hook: (p, s) => this.hook(p, s), idle, flowSafe: true }),
      // Before kube-proxy's br_netfilter hook: a same-node backend's reply is judged as sent, before it is un-DNATed.
      nf.register('bridge-forward', { name: 'calico policy', priority: NF_BR_PRI.FILTER_BRIDGED, hook: (p, s) => this.hook(p, s), idle }),
    ];
  }

  /** The policies in force now (compiled by the caller on every change). */
  get policies(): PolicySet {
    return this.set;
  }

  update(set: PolicySet): void {
    this.set = set;
    if (set.empty) this.flows.clear();
    this.nf.changed('policy');
  }

  close(): void {
    for (const u of this.unregister.splice(0)) u();
  }

  /**
   * The connection's original direction as policy sees it: after DNAT, before
   * SNAT. From conntrack where kube-proxy tracks the connection (a reply at
   * FORWARD is already translated back), else the packet as it is.
   */
  private original(pkt: Ipv4Packet, st: NfState): { t: Tuple; reply: boolean } | null {
    const ct = st.ct;
    if (ct) {
      const o = ct.e.orig;
      const t: Tuple = { proto: o.proto, src: o.src, sport: o.sport, dst: ct.e.dnat?.ip ?? o.dst, dport: ct.e.dnat?.port ?? o.dport };
      return { t, reply: ct.dir === 'reply' };
    }
    const t = tupleOf(pkt);
    return t && { t, reply: false };
  }

  private hook(pkt: Ipv4Packet, st: NfState): Ipv4Packet | null {
    if (this.set.empty && this.flows.size === 0) return pkt;
    const o = this.original(pkt, st);
    // ICMP errors, later fragments: RELATED.
    if (!o) return pkt;
    const { t } = o;
    if (this.flows.hit(t)) {
      if (this.tracer.current) this.tracer.hop('node', 'policy', `${fmt(t)}: a connection allowed when first seen (conntrack): accepted`);
      this.keep(t, st);
      return pkt;
    }
    if (this.set.empty) return pkt;
    const src = this.host.localPod(t.src);
    const dst = this.host.localPod(t.dst);
    if (!src && !dst) return pkt;
    const flow: Flow = { src: t.src, dst: t.dst, protocol: PROTO[t.proto], dport: t.proto === 'icmp' ? 0 : t.dport };
    const v = this.set.evaluate(flow, { src: !!src, dst: !!dst });
    if (this.tracer.current) this.trace(t, v, src?.iface, dst?.iface);
    if (v.allowed) {
      this.accepted++;
      this.flows.add(t);
      this.keep(t, st);
      return pkt;
    }
    this.drops++;
    for (const d of [v.egress, v.ingress]) {
      if (d?.kind === 'denied') for (const p of d.isolatedBy) this.dropsByPolicy.set(p, (this.dropsByPolicy.get(p) ?? 0) + 1);
    }
    st.dropReason = POLICY_DROP;
    return null;
  }

  /** A cached flow's later packets refresh its connection as this hook would, and leave the fast path once it is gone. */
  private keep(t: Tuple, st: NfState): void {
    if (st.flowKeep) st.flowKeep.push(() => this.flows.hit(t));
  }

  private trace(t: Tuple, v: Verdict, srcIface: string | undefined, dstIface: string | undefined): void {
    const parts: string[] = [];
    if (v.egress) parts.push(`${fromWorkloadChain(srcIface ?? '?')}: ${formatDirVerdict('egress', v.egress)}`);
    if (v.ingress) parts.push(`${toWorkloadChain(dstIface ?? '?')}: ${formatDirVerdict('ingress', v.ingress)}`);
    const verdict = v.allowed ? 'new connection accepted' : 'DROP (no RST sent)';
    this.tracer.hop('node', 'policy', `${fmt(t)}: ${verdict}; ${parts.join('; ')}`, {
      detail: { policy: { allowed: v.allowed, egress: v.egress, ingress: v.ingress } },
      ...(v.allowed ? {} : { drop: POLICY_DROP }),
    });
  }

  /** `podlab node NODE stats`: policy's counters. */
  stats(): Record<string, unknown> {
    return {
      policies: this.set.policies.length,
      acceptedConnections: this.accepted,
      drops: this.drops,
      dropsByPolicy: Object.fromEntries([...this.dropsByPolicy].sort(([a], [b]) => a.localeCompare(b))),
      trackedConnections: this.flows.size,
      evictedConnections: this.flows.evicted,
    };
  }
}

function fmt(t: Tuple): string {
  return t.proto === 'icmp' ? `icmp ${t.src} > ${t.dst} id ${t.sport}` : `${t.proto} ${t.src}:${t.sport} > ${t.dst}:${t.dport}`;
}
