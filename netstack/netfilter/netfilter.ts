/**
 * The node's netfilter hooks, where kube-proxy's Service translation happens:
 *
 * - PREROUTING (packets entering the node's stack: from pods via cni0, from
 *   peers via flannel.1/eth0) and OUTPUT (packets the node itself sends): a
 *   packet of a known connection is translated as its conntrack entry says; the
 *   first packet of a new one is offered to kube-proxy's engine, whose decision
 *   (DNAT to a backend, masquerade, reject) creates the entry.
 * - the bridge (br_netfilter, `net.bridge.bridge-nf-call-iptables=1`, which
 *   kube-proxy requires): frames bridged between two pods of the node pass
 *   conntrack too, so a same-node backend's reply, sent straight to the client
 *   pod over cni0, is un-DNATed back to the ClusterIP.
 *
 * Only translated connections are tracked (a real node tracks every flow;
 * podlab keeps the untranslated fast path free of it).
 */
import { Conntrack, rewrite, tupleOf, type CtEntry, type Tuple } from './conntrack.ts';
import { tracer } from '../trace.ts';
import { intToIpv4, ipv4ToInt } from '../../packet/addr.ts';

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
  decide(pkt: { src: string; dst: string; protocol: 'tcp' | 'udp'; sport: number; dport: number; localDst: boolean; fromLocalPod: boolean }): NatDecision | null;
}

/** What the hooks need from the node's stack. */
export interface NetfilterHost {
  isLocal(ip: string): boolean;
  /** The address the node would use as source towards `dst` (masquerade). */
  sourceTowards(dst: string): string | undefined;
  /** Sends ICMP port unreachable about `raw` back to its source, from `from` (REJECT). */
  reject(raw: Buffer, from: string): void;
  /** Whether `ip` is a pod of this node (for fromLocalPod). */
  isLocalPod(ip: string): boolean;
}

export type HookResult = { verdict: 'accept'; raw: Buffer } | { verdict: 'drop'; reason: string };

export class Netfilter {
  engine?: NatEngine;

  constructor(
    readonly conntrack: Conntrack,
    private readonly host: NetfilterHost,
  ) {}

  /** PREROUTING / OUTPUT: translate or decide. `raw` is never modified; a translated packet is a copy. */
  hook(raw: Buffer, where: 'prerouting' | 'output'): HookResult {
    // Hot path: with nothing tracked, only a possible service destination is worth parsing.
    if (this.conntrack.size === 0 && !this.candidate(raw)) return { verdict: 'accept', raw };
    const t = tupleOf(raw);
    if (!t) return { verdict: 'accept', raw };
    const hit = this.conntrack.lookup(t);
    if (hit) return { verdict: 'accept', raw: this.translate(raw, hit.e, hit.dir) };
    if (!this.engine || t.proto === 'icmp' || !this.candidate(raw)) return { verdict: 'accept', raw };
    const d = this.engine.decide({
      src: t.src,
      dst: t.dst,
      protocol: t.proto,
      sport: t.sport,
      dport: t.dport,
      localDst: this.host.isLocal(t.dst),
      fromLocalPod: where === 'prerouting' && this.host.isLocalPod(t.src),
    });
    if (!d) return { verdict: 'accept', raw };
    const ns = 'node';
    if (tracer.current) for (const s of d.steps) tracer.hop(ns, `kube-proxy(${this.engine.mode})`, s);
    if (d.kind === 'drop') {
      if (tracer.current) tracer.hop(ns, 'netfilter', `DROP: ${d.reason}`, { drop: `service-${d.reason}` });
      return { verdict: 'drop', reason: `service-${d.reason}` };
    }
    if (d.kind === 'reject') {
      if (tracer.current) tracer.hop(ns, 'netfilter', `REJECT: ${d.reason}: ICMP port unreachable sent back to ${t.src}`, { drop: 'service-no-endpoints' });
      this.host.reject(raw, t.dst);
      return { verdict: 'drop', reason: 'service-no-endpoints' };
    }
    const snat = d.kind === 'dnat' && d.masquerade ? this.masqueradeSource(d.to, t) : undefined;
    const opened = d.kind === 'dnat' ? d.onOpen?.() : undefined;
    const e = this.conntrack.create(t, { dnat: d.to, snat, note: d.service, onClose: opened ? () => opened.onClose() : undefined });
    if (tracer.current) {
      tracer.hop(ns, 'conntrack', `new ${t.proto} connection ${fmt(t)}: DNAT to ${d.to.ip}:${d.to.port}${snat ? `, masquerade to ${snat.ip}:${snat.port}` : ''}`, {
        detail: { conntrack: { orig: e.orig, reply: e.reply } },
      });
    }
    return { verdict: 'accept', raw: this.translate(raw, e, 'orig') };
  }

  /** Whether a TCP/UDP packet (raw IPv4) may be addressed to a service, per the engine. */
  private candidate(ip: Buffer): boolean {
    if (!this.engine || ip.length < 24) return false;
    const proto = ip[9];
    if (proto !== 6 && proto !== 17) return false;
    const ihl = (ip[0] & 15) * 4;
    if ((ip.readUInt16BE(6) & 0x1fff) !== 0 || ip.length < ihl + 4) return false;
    const dst = ip.readUInt32BE(16);
    return this.engine.wants(dst, ip.readUInt16BE(ihl + 2), () => this.host.isLocal(intToIpv4(dst)));
  }

  /** Whether a packet the node itself sends needs the OUTPUT hook (without serializing it first). */
  wantsOutput(dst: string, protocol: number, l4: Buffer): boolean {
    if (this.conntrack.size > 0) return true;
    if (!this.engine || (protocol !== 6 && protocol !== 17) || l4.length < 4) return false;
    return this.engine.wants(ipv4ToInt(dst), l4.readUInt16BE(2), () => this.host.isLocal(dst));
  }

  /** Bridged frames (br_netfilter): known connections only, no new decisions. */
  bridged(frame: Buffer): Buffer {
    if (frame.length < 34 || frame.readUInt16BE(12) !== 0x0800) return frame;
    const ip = frame.subarray(14);
    const t = tupleOf(ip);
    const hit = t && this.conntrack.lookup(t);
    if (!hit) return frame;
    const out = Buffer.from(frame);
    this.apply(out.subarray(14), hit.e, hit.dir);
    return out;
  }

  /** True while any connection is tracked (the bridge skips the hook otherwise). */
  get active(): boolean {
    return this.conntrack.size > 0;
  }

  private translate(raw: Buffer, e: CtEntry, dir: 'orig' | 'reply'): Buffer {
    const out = Buffer.from(raw);
    this.apply(out, e, dir);
    return out;
  }

  private apply(ip: Buffer, e: CtEntry, dir: 'orig' | 'reply'): void {
    const flags = e.orig.proto === 'tcp' ? ip[(ip[0] & 15) * 4 + 13] : undefined;
    this.conntrack.touch(e, dir, flags);
    if (dir === 'orig') {
      rewrite(ip, { dst: e.dnat?.ip, dport: e.dnat?.port, src: e.snat?.ip, sport: e.snat?.port });
    } else {
      rewrite(ip, { src: e.dnat ? e.orig.dst : undefined, sport: e.dnat ? e.orig.dport : undefined, dst: e.snat ? e.orig.src : undefined, dport: e.snat ? e.orig.sport : undefined });
    }
    if (tracer.current) {
      tracer.hop('node', 'conntrack', dir === 'orig' ? `${fmt(e.orig)}: translated to ${fmt({ ...e.orig, dst: e.dnat?.ip ?? e.orig.dst, dport: e.dnat?.port ?? e.orig.dport, src: e.snat?.ip ?? e.orig.src, sport: e.snat?.port ?? e.orig.sport })}` : `reply of ${fmt(e.orig)}: translated back (source ${e.orig.dst}:${e.orig.dport})`);
    }
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

function fmt(t: Tuple): string {
  return t.proto === 'icmp' ? `${t.src} > ${t.dst} id ${t.sport}` : `${t.src}:${t.sport} > ${t.dst}:${t.dport}`;
}
