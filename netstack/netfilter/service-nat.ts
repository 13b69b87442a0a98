/**
 * kube-proxy's Service translation as netfilter hooks, registered where real
 * kube-proxy's rules sit:
 *
 * - nat PREROUTING and nat OUTPUT (NF_IP_PRI_NAT_DST): a packet of a known
 *   connection gets its destination rewritten as the conntrack entry says
 *   (DNAT on the original direction, un-masquerade on the reply); the first
 *   packet of a new one is offered to the engine, whose decision (DNAT to a
 *   backend, masquerade, REJECT, DROP) creates the entry. REJECT and DROP are
 *   applied here too: the emulated node has no default route, so a ClusterIP
 *   without endpoints would never reach a filter FORWARD hook.
 * - nat POSTROUTING and nat INPUT (NF_IP_PRI_NAT_SRC): the source side of the
 *   same entry: MASQUERADE on the original direction, the ClusterIP back as
 *   the source of replies.
 * - bridge FORWARD (br_netfilter, `net.bridge.bridge-nf-call-iptables=1`,
 *   which kube-proxy requires): frames bridged between two pods of the node
 *   pass conntrack too, so a same-node backend's reply, sent straight to the
 *   client pod over cni0, is un-DNATed back to the ClusterIP.
 *
 * Only translated connections are tracked (a real node tracks every flow;
 * podlab keeps the untranslated fast path free of it), and the engine's
 * `wants()` is the cheap test that keeps every other packet off `decide()`.
 *
 * An engine in another thread answers later: `decide()` returns a promise,
 * and the first packet is queued, as an NFQUEUE verdict queues it for a
 * userspace daemon (or as an Open vSwitch megaflow miss goes up to
 * ovs-vswitchd). Packets of the same flow arriving meanwhile join the queue;
 * the answer creates the conntrack entry and the queue is reinjected in
 * order, each going on after this hook (nf_reinject). Established
 * connections never ask. A failed answer (the engine's thread died) drops
 * the queue, counted and traced, as NFQUEUE without a listener does.
 */
import { intToIpv4 } from '../../packet/addr.ts';
import { Ipv4Packet } from '../../packet/ipv4-packet.ts';
import type { TraceContext, Tracer } from '../trace.ts';
import { rewrite, tupleOf, type CtEntry, type Tuple } from './conntrack.ts';
import { NF_BR_PRI, NF_IP_PRI, type Netfilter, type NfHookOps, type NfState } from './netfilter.ts';

/** kube-proxy's decision for the first packet of a connection (see service-proxy/). */
export type NatDecision =
  | { kind: 'dnat'; to: { ip: string; port: number }; masquerade: boolean; service: string; steps: string[]; onOpen?: () => { onClose(): void } | void }
  | { kind: 'reject'; reason: string; steps: string[] }
  | { kind: 'drop'; reason: string; steps: string[] }
  | { kind: 'redirect'; to: { ip: string; port: number }; service: string; steps: string[] };

/** What the hooks ask of kube-proxy. */
export interface NatEngine {
  readonly mode: string;
  /**
   * Whether a destination can be a service address at all (a ClusterIP, or a
   * NodePort on one of the node's addresses): the cheap test that keeps every
   * other packet off `decide`. `isLocal` is only called for NodePort candidates.
   */
  wants(dst: number, dport: number, isLocal: () => boolean): boolean;
  /** The decision now, or later (an engine in a worker thread): the packet is queued meanwhile. */
  decide(pkt: { src: string; dst: string; protocol: 'tcp' | 'udp'; sport: number; dport: number; localDst: boolean; fromLocalPod: boolean }): NatDecision | null | Promise<NatDecision | null>;
}

/** What the hooks need from the node's stack. */
export interface NatHost {
  isLocal(ip: string): boolean;
  /** The address the node would use as source towards `dst` (masquerade). */
  sourceTowards(dst: string): string | undefined;
  /** Sends ICMP port unreachable about `raw` back to its source, from `from` (REJECT). */
  reject(raw: Buffer, from: string): void;
  /** Whether `ip` is a pod of this node (for fromLocalPod). */
  isLocalPod(ip: string): boolean;
  /** Hands back a queued packet after hook `after` (null: dropped, the reason in `st.dropReason`). */
  reinject(pkt: Ipv4Packet | null, st: NfState, after: NfHookOps): void;
}

/** Packets queued for decisions at most, node-wide (NFQUEUE's default --queue-maxlen). */
const MAX_QUEUED = 1024;

/** The packets of one flow waiting for the engine's decision. */
interface Queued {
  t: Tuple;
  items: { pkt: Ipv4Packet; st: NfState; trace: TraceContext | null }[];
}

/** The trace label of the namespace these hooks run in. */
const NS = 'node';

export class ServiceNat {
  private readonly unregister: (() => void)[] = [];
  /** The destination-side hooks, where queued packets go on from. */
  private readonly dstOps: Record<'prerouting' | 'output', NfHookOps>;
  /** Flows whose first packet waits for a decision, by their original tuple. */
  private readonly queued = new Map<string, Queued>();
  private queuedPackets = 0;
  /** Packets ever queued, and the most queued at once (stats). */
  readonly queueStats = { queued: 0, max: 0, failed: 0 };

  constructor(
    private readonly nf: Netfilter,
    private readonly host: NatHost,
    readonly engine: NatEngine,
    /** The node's tracer: decisions and translations of traced packets become hops. */
    private readonly tracer: Tracer,
  ) {
    const dst = (pkt: Ipv4Packet, st: NfState) => this.natDst(pkt, st);
    const src = (pkt: Ipv4Packet, st: NfState) => this.natSrc(pkt, st);
    // Only the destination side decides about new connections; the rest has nothing to do while nothing is tracked.
    const idle = () => this.nf.conntrack.size === 0;
    // flowSafe: a packet passed untranslated with no connection is passed so until the rules change
    // (rulesChanged) or a connection appears (conntrack moves the flow generation itself).
    this.dstOps = {
      prerouting: { name: 'kube-proxy nat', priority: NF_IP_PRI.NAT_DST, hook: dst, flowSafe: true },
      output: { name: 'kube-proxy nat', priority: NF_IP_PRI.NAT_DST, hook: dst, flowSafe: true },
    };
    this.unregister.push(
      nf.register('prerouting', this.dstOps.prerouting),
      nf.register('output', this.dstOps.output),
      nf.register('postrouting', { name: 'kube-proxy masquerade', priority: NF_IP_PRI.NAT_SRC, hook: src, idle, flowSafe: true }),
      nf.register('input', { name: 'kube-proxy nat', priority: NF_IP_PRI.NAT_SRC, hook: src, idle, flowSafe: true }),
      nf.register('bridge-forward', { name: 'kube-proxy br_netfilter', priority: NF_BR_PRI.BRNF, hook: (pkt, st) => this.bridged(pkt, st), idle }),
    );
  }

  /** The engine's rules changed (a sync): flows cached under the old ones are decided afresh. */
  rulesChanged(): void {
    this.nf.changed('service');
  }

  /** Removes every hook (another engine takes over, or kube-proxy stops). */
  close(): void {
    for (const u of this.unregister.splice(0)) u();
    // Queued packets die with the hook, as the kernel drops a departing queue's packets.
    this.queued.clear();
    this.queuedPackets = 0;
  }

  /** Packets waiting for decisions now. */
  get waiting(): number {
    return this.queuedPackets;
  }

  private get conntrack() {
    return this.nf.conntrack;
  }

  /** PREROUTING / OUTPUT: the connection's destination side, deciding for a first packet. */
  private natDst(pkt: Ipv4Packet, st: NfState): Ipv4Packet | null {
    // Hot path: with nothing tracked, only a possible service destination is worth looking at.
    if (this.conntrack.size === 0 && !this.candidate(pkt)) return pkt;
    const t = tupleOf(pkt);
    if (!t) return pkt;
    const hit = this.conntrack.lookup(t);
    if (hit) return this.translate(hit, pkt, st);
    if (t.proto === 'icmp' || !this.candidate(pkt)) return pkt;
    if (this.queued.size) {
      const q = this.queued.get(flowKey(t));
      if (q) return this.enqueue(q, pkt, st);
    }
    const d = this.engine.decide({
      src: t.src,
      dst: t.dst,
      protocol: t.proto,
      sport: t.sport,
      dport: t.dport,
      localDst: this.host.isLocal(t.dst),
      fromLocalPod: st.hook === 'prerouting' && this.host.isLocalPod(t.src),
    });
    if (d instanceof Promise) return this.queue(t, d, pkt, st);
    return this.verdict(d, t, pkt, st);
  }

  /** A packet of a known connection: translated as its entry says. */
  private translate(hit: { e: CtEntry; dir: 'orig' | 'reply' }, pkt: Ipv4Packet, st: NfState): Ipv4Packet {
    st.ct = hit;
    const e = hit.e;
    const to = hit.dir === 'orig' ? e.dnat && { dst: e.dnat.ip, dport: e.dnat.port } : e.snat && { dst: e.orig.src, dport: e.orig.sport };
    const out = to ? this.own(pkt, st) : pkt;
    this.touch(out, e, hit.dir);
    if (to) rewrite(out, to);
    return out;
  }

  /** Applies the engine's decision to a first packet: DNAT with a new conntrack entry, REJECT, DROP, or pass. */
  private verdict(d: NatDecision | null, t: Tuple, pkt: Ipv4Packet, st: NfState): Ipv4Packet | null {
    if (!d) return pkt;
    if (this.tracer.current) for (const s of d.steps) this.tracer.hop(NS, `kube-proxy(${this.engine.mode})`, s);
    if (d.kind === 'drop') {
      if (this.tracer.current) this.tracer.hop(NS, 'netfilter', `DROP: ${d.reason}`, { drop: `service-${d.reason}` });
      st.dropReason = `service-${d.reason}`;
      return null;
    }
    if (d.kind === 'reject') {
      if (this.tracer.current) this.tracer.hop(NS, 'netfilter', `REJECT: ${d.reason}: ICMP port unreachable sent back to ${t.src}`, { drop: 'service-no-endpoints' });
      this.host.reject(pkt.datagram, t.dst);
      st.dropReason = 'service-no-endpoints';
      return null;
    }
    const snat = d.kind === 'dnat' && d.masquerade ? this.masqueradeSource(d.to, t) : undefined;
    const opened = d.kind === 'dnat' ? d.onOpen?.() : undefined;
    const e = this.conntrack.create(t, { dnat: d.to, snat, note: d.service, onClose: opened ? () => opened.onClose() : undefined });
    if (!e) {
      opened?.onClose();
      if (this.tracer.current) this.tracer.hop(NS, 'conntrack', 'table full (nf_conntrack_max), dropping packet', { drop: 'conntrack-table-full' });
      st.dropReason = 'conntrack-table-full';
      return null;
    }
    if (this.tracer.current) {
      this.tracer.hop(NS, 'conntrack', `new ${t.proto} connection ${fmt(t)}: DNAT to ${d.to.ip}:${d.to.port}${snat ? `, masquerade to ${snat.ip}:${snat.port}` : ''}`, {
        detail: { conntrack: { orig: e.orig, reply: e.reply } },
      });
    }
    st.ct = { e, dir: 'orig' };
    const out = this.own(pkt, st);
    this.touch(out, e, 'orig');
    rewrite(out, { dst: d.to.ip, dport: d.to.port });
    return out;
  }

  /** The first packet of a flow whose decision comes later: queued until it does. */
  private queue(t: Tuple, d: Promise<NatDecision | null>, pkt: Ipv4Packet, st: NfState): null {
    const key = flowKey(t);
    const q: Queued = { t, items: [] };
    this.queued.set(key, q);
    this.enqueue(q, pkt, st);
    d.then(
      (answer) => this.decided(key, q, answer),
      (e: Error) => {
        this.queueStats.failed++;
        this.decided(key, q, { kind: 'drop', reason: 'kube-proxy-unavailable', steps: [`no decision: ${e.message}`] });
      },
    );
    return null;
  }

  /** Keeps a packet of a flow waiting for its decision (NF_QUEUE), or drops it when the queue is full. */
  private enqueue(q: Queued, pkt: Ipv4Packet, st: NfState): null {
    if (this.queuedPackets >= MAX_QUEUED) {
      if (this.tracer.current) this.tracer.hop(NS, 'netfilter', `queue for kube-proxy's decisions full (${MAX_QUEUED} packets): dropped`, { drop: 'service-queue-full' });
      st.dropReason = 'service-queue-full';
      return null;
    }
    // Received bytes may be shared (bridge flooding): the queued packet keeps its own.
    q.items.push({ pkt: this.own(pkt, st), st, trace: this.tracer.current });
    this.queuedPackets++;
    this.queueStats.queued++;
    if (this.queuedPackets > this.queueStats.max) this.queueStats.max = this.queuedPackets;
    st.stolen = true;
    if (this.tracer.current) this.tracer.hop(NS, `kube-proxy(${this.engine.mode})`, `${fmt(q.t)}: queued until kube-proxy's engine decides (NFQUEUE)`);
    return null;
  }

  /** The decision arrived: the first packet gets it, the others follow its conntrack entry, in arrival order. */
  private decided(key: string, q: Queued, d: NatDecision | null): void {
    if (this.queued.get(key) !== q) return; // the hooks were closed meanwhile
    this.queued.delete(key);
    this.queuedPackets -= q.items.length;
    for (const it of q.items) {
      this.tracer.run(it.trace, () => {
        const hit = this.conntrack.lookup(q.t);
        const out = hit ? this.translate(hit, it.pkt, it.st) : this.verdict(d, q.t, it.pkt, it.st);
        this.host.reinject(out, it.st, it.st.hook === 'output' ? this.dstOps.output : this.dstOps.prerouting);
      });
    }
  }

  /** POSTROUTING / INPUT: the connection's source side (MASQUERADE, or the ClusterIP back on replies). */
  private natSrc(pkt: Ipv4Packet, st: NfState): Ipv4Packet {
    const ct = st.ct;
    if (!ct) return pkt;
    const { e, dir } = ct;
    if (dir === 'orig') {
      if (!e.snat) return pkt;
      const out = this.own(pkt, st);
      rewrite(out, { src: e.snat.ip, sport: e.snat.port });
      return out;
    }
    if (!e.dnat) return pkt;
    const out = this.own(pkt, st);
    rewrite(out, { src: e.orig.dst, sport: e.orig.dport });
    return out;
  }

  /** Bridged frames (br_netfilter): known connections only, translated both ways at once, no new decisions. */
  private bridged(pkt: Ipv4Packet, st: NfState): Ipv4Packet {
    if (this.conntrack.size === 0) return pkt;
    const t = tupleOf(pkt);
    const hit = t && this.conntrack.lookup(t);
    if (!hit) return pkt;
    st.ct = hit;
    const out = this.own(pkt, st);
    this.touch(out, hit.e, hit.dir);
    const e = hit.e;
    if (hit.dir === 'orig') rewrite(out, { dst: e.dnat?.ip, dport: e.dnat?.port, src: e.snat?.ip, sport: e.snat?.port });
    else rewrite(out, { src: e.dnat ? e.orig.dst : undefined, sport: e.dnat ? e.orig.dport : undefined, dst: e.snat ? e.orig.src : undefined, dport: e.snat ? e.orig.sport : undefined });
    return out;
  }

  /** The packet's bytes, copied once per packet before the first rewrite (received bytes may be shared). */
  private own(pkt: Ipv4Packet, st: NfState): Ipv4Packet {
    if (st.owned) return pkt;
    st.owned = true;
    return Ipv4Packet.unchecked(Buffer.from(pkt.datagram));
  }

  /** Conntrack's state machine and timers for one packet, and its line in a running trace. */
  private touch(pkt: Ipv4Packet, e: CtEntry, dir: 'orig' | 'reply'): void {
    const flags = e.orig.proto === 'tcp' ? pkt.tcpFlags : -1;
    this.conntrack.touch(e, dir, flags >= 0 ? flags : undefined);
    if (this.tracer.current) {
      this.tracer.hop(NS, 'conntrack', dir === 'orig' ? `${fmt(e.orig)}: translated to ${fmt({ ...e.orig, dst: e.dnat?.ip ?? e.orig.dst, dport: e.dnat?.port ?? e.orig.dport, src: e.snat?.ip ?? e.orig.src, sport: e.snat?.port ?? e.orig.sport })}` : `reply of ${fmt(e.orig)}: translated back (source ${e.orig.dst}:${e.orig.dport})`);
    }
  }

  /** Whether a TCP/UDP packet may be addressed to a service, per the engine. */
  private candidate(pkt: Ipv4Packet): boolean {
    const dport = pkt.dstPort;
    if (dport < 0) return false;
    const dst = pkt.dstInt;
    return this.engine.wants(dst, dport, () => this.host.isLocal(intToIpv4(dst)));
  }

  /** MASQUERADE: the node's address towards the backend, and the client's port (kept unless taken). */
  private masqueradeSource(backend: { ip: string; port: number }, t: Tuple): { ip: string; port: number } | undefined {
    const ip = this.host.sourceTowards(backend.ip);
    if (!ip) return undefined;
    let port = t.sport;
    // Keep the source port when the reply tuple is free, as the kernel does; else pick the next.
    while (this.conntrack.lookup({ proto: t.proto, src: backend.ip, sport: backend.port, dst: ip, dport: port }) && port < 65535) port++;
    return { ip, port };
  }
}

/** A flow's key in the queue: its original tuple. */
function flowKey(t: Tuple): string {
  return `${t.proto} ${t.src}:${t.sport} ${t.dst}:${t.dport}`;
}

function fmt(t: Tuple): string {
  return t.proto === 'icmp' ? `${t.src} > ${t.dst} id ${t.sport}` : `${t.src}:${t.sport} > ${t.dst}:${t.dport}`;
}
