/**
 * The fast path of a forwarding namespace, in the manner of Open vSwitch's
 * megaflow cache: the first packet of a flow takes the slow path (every
 * decision made, hooks run, traceable) and, if nothing about it is unusual,
 * the slow path records what it did as a flow entry: kube-proxy's translation
 * (DNAT, masquerade, or their reverse on replies) with its conntrack entry,
 * the device it left by, its link-layer header, the next hop, and the out
 * device's link template where it offers one (a VTEP: VXLAN header, peer,
 * source port by flow hash). An entry is only kept once its replay, tried on
 * the recording packet, gives exactly the bytes the slow path sent. Later
 * packets of the flow match on the ingress device and the 5-tuple and are
 * forwarded from their own frame: TTL decremented with the checksum patched
 * incrementally (RFC 1624), addresses and ports translated as the hooks do,
 * the conntrack entry refreshed (state, timers), the recorded header written
 * over the old one; no parse into objects, no hook chains, no route or
 * neighbour lookup.
 *
 * Only plain established-flow packets match or record: IPv4 without options,
 * not a fragment, header checksum good, TTL above 1, and TCP carrying only
 * ACK (and PSH), UDP, or an ICMP echo request or reply. Anything else (SYN,
 * FIN, RST, ICMP errors, fragments, options, TTL expiring) takes the slow
 * path, as do packets while a trace runs. A flow that ran a hook without the
 * promise (`flowSafe`) is never recorded; its packets stay on the slow path.
 * A translated flow's entry lives as long as its connection does.
 *
 * Entries die when the namespace's flow generation moves (./generation.ts),
 * which every table the slow path read moves on change. Devices still count,
 * tap and check their own state for every packet, and the VTEP's datagrams
 * still go through eth0's accounting, capture and impairments.
 */
import { macToBuffer } from '../../packet/addr.ts';
import { foldChecksum, onesComplementSum } from '../../packet/checksum.ts';
import { decrementTtlAt } from '../../packet/ipv4.ts';
import { Ipv4Packet } from '../../packet/ipv4-packet.ts';
import type { LinkTemplate, NetDevice } from '../link/netdev.ts';
import { rewrite, type Conntrack, type CtEntry } from '../netfilter/conntrack.ts';
import type { FlowGeneration } from './generation.ts';

/**
 * Upkeep a hook asks for every packet of a cached flow, as it would have done
 * it on the slow path (policy refreshing its connection). False: the packet
 * takes the slow path.
 */
export type FlowKeep = () => boolean;

/** What kube-proxy's hooks do to a connection's packets: before routing (DNAT, un-masquerade), after (masquerade, un-DNAT). */
type Rewrite = Parameters<typeof rewrite>[1];

/** The connection a recorded packet belonged to (the netfilter state's ct). */
export interface FlowConnection {
  e: CtEntry;
  dir: 'orig' | 'reply';
}

/** Where a packet on the slow path stands as a candidate flow entry. */
export interface FlowRecording {
  readonly gen: number;
  /** The frame as received (the slow path works on copies): the replay is checked against it. */
  readonly frame: Buffer;
  readonly len: number;
  /** Set by the stack when kube-proxy's hooks found the packet's connection. */
  ct: FlowConnection | undefined;
  readonly inDev: NetDevice;
  readonly inMac: string;
  readonly proto: number;
  readonly src: number;
  readonly dst: number;
  readonly a: number;
  readonly b: number;
  readonly hash: number;
  /** Hooks' upkeep for later packets (see FlowKeep). */
  readonly keep: FlowKeep[];
}

interface FlowEntry {
  readonly gen: number;
  readonly inDev: NetDevice;
  readonly inMac: string;
  /** The ingress device's MAC as two words, compared with the frame's destination without a native call. */
  readonly inMacHi: number;
  readonly inMacLo: number;
  readonly proto: number;
  readonly src: number;
  readonly dst: number;
  /** Source port, or ICMP type. */
  readonly a: number;
  /** Destination port, or ICMP echo id. */
  readonly b: number;
  readonly out: NetDevice;
  /** The link-layer header the slow path wrote (destination, source, ethertype). */
  readonly eth: Buffer;
  readonly nextHop: string | undefined;
  readonly link: LinkTemplate | undefined;
  readonly keep: FlowKeep[] | undefined;
  /** A translated connection: refreshed per packet as conntrack would, and its rewrites. */
  readonly ct: CtEntry | undefined;
  readonly dir: 'orig' | 'reply';
  readonly pre: Rewrite | undefined;
  readonly post: Rewrite | undefined;
}

/** The rewrites kube-proxy's hooks apply to a packet of `ct` (service-nat.ts: natDst at PREROUTING, natSrc at POSTROUTING). */
function rewritesOf(ct: FlowConnection): { pre: Rewrite | undefined; post: Rewrite | undefined } {
  const { e, dir } = ct;
  if (dir === 'orig') return { pre: e.dnat && { dst: e.dnat.ip, dport: e.dnat.port }, post: e.snat && { src: e.snat.ip, sport: e.snat.port } };
  return { pre: e.snat && { dst: e.orig.src, dport: e.orig.sport }, post: e.dnat && { src: e.orig.dst, sport: e.orig.dport } };
}

/**
 * What forwarding does to a datagram at `off` in `buf`: the translation before
 * routing, the TTL, the translation after, in the slow path's order so the
 * checksums come out the same.
 */
function replay(buf: Buffer, off: number, pre: Rewrite | undefined, post: Rewrite | undefined): void {
  if (pre) rewrite(Ipv4Packet.unchecked(off === 0 ? buf : buf.subarray(off)), pre);
  decrementTtlAt(buf, off);
  if (post) rewrite(Ipv4Packet.unchecked(off === 0 ? buf : buf.subarray(off)), post);
}

const ETH = 14;

/** Writes a recorded 14-byte Ethernet header over the frame's: three words, no native call for 14 bytes. */
function writeEth(out: Buffer, eth: Buffer): void {
  out.writeUInt32BE(eth.readUInt32BE(0), 0);
  out.writeUInt32BE(eth.readUInt32BE(4), 4);
  out.writeUInt32BE(eth.readUInt32BE(8), 8);
  out[12] = eth[12];
  out[13] = eth[13];
}
const TCP_ACK = 0x10;
const TCP_PSH = 0x08;

export interface FlowCacheStats {
  entries: number;
  hits: number;
  misses: number;
  recorded: number;
  refused: number;
  generation: number;
  invalidations: Record<string, number>;
}

export class FlowCache {
  private readonly table = new Map<number, FlowEntry>();
  /** The generation the table's entries were recorded at: dead ones are dropped all at once when it moves. */
  private tableGen = -1;
  /**
   * Flows whose first recordable packet took the slow path (hash -> generation). A
   * flow is recorded from its second: a short exchange (one request, one reply)
   * would otherwise pay for a recording and its replay check that no later
   * packet uses.
   */
  private readonly seen = new Map<number, number>();
  hits = 0;
  misses = 0;
  recorded = 0;
  /** Recordings refused because the replay did not give the slow path's bytes (a hook did more than the cache knows). */
  refused = 0;
  // The key of the packet last read (one packet at a time: no object per packet).
  private kProto = 0;
  private kSrc = 0;
  private kDst = 0;
  private kA = 0;
  private kB = 0;
  private kLen = 0;
  private kHash = 0;

  constructor(
    readonly generation: FlowGeneration,
    /** The namespace's connections (translated flows are refreshed in them). */
    private readonly conntrack?: Conntrack,
    private readonly maxEntries = 8192,
  ) {}

  /**
   * Reads a frame's flow key, or false when the packet is not a plain
   * established-flow packet (the header comment says which are).
   */
  private readKey(frame: Buffer): boolean {
    const n = frame.length;
    if (n < ETH + 28 || frame[12] !== 0x08 || frame[13] !== 0x00 || frame[ETH] !== 0x45) return false;
    const totalLen = (frame[ETH + 2] << 8) | frame[ETH + 3];
    if (totalLen < 28 || ETH + totalLen > n) return false;
    // MF or a fragment offset: a fragment (DF alone is fine).
    if ((frame[ETH + 6] & 0x3f) !== 0 || frame[ETH + 7] !== 0) return false;
    if (frame[ETH + 8] <= 1) return false;
    const proto = frame[ETH + 9];
    const l4 = ETH + 20;
    let a: number;
    let b: number;
    if (proto === 17) {
      a = (frame[l4] << 8) | frame[l4 + 1];
      b = (frame[l4 + 2] << 8) | frame[l4 + 3];
    } else if (proto === 6) {
      if (totalLen < 40) return false;
      const flags = frame[l4 + 13];
      if ((flags & ~(TCP_ACK | TCP_PSH)) !== 0 || (flags & TCP_ACK) === 0) return false;
      a = (frame[l4] << 8) | frame[l4 + 1];
      b = (frame[l4 + 2] << 8) | frame[l4 + 3];
    } else if (proto === 1) {
      const type = frame[l4];
      if ((type !== 0 && type !== 8) || frame[l4 + 1] !== 0) return false;
      a = type;
      b = (frame[l4 + 4] << 8) | frame[l4 + 5];
    } else {
      return false;
    }
    // The slow path drops a header that does not verify; so does this one, by leaving it to it.
    if (foldChecksum(onesComplementSum(frame, ETH, ETH + 20)) !== 0xffff) return false;
    const src = frame.readUInt32BE(ETH + 12);
    const dst = frame.readUInt32BE(ETH + 16);
    let h = Math.imul(src ^ 0x9e3779b9, 0x85ebca6b);
    h = Math.imul(h ^ dst ^ (h >>> 15), 0xc2b2ae35);
    h = Math.imul(h ^ ((a << 16) | b) ^ (h >>> 13), 0x27d4eb2f);
    this.kProto = proto;
    this.kSrc = src;
    this.kDst = dst;
    this.kA = a;
    this.kB = b;
    this.kLen = totalLen;
    this.kHash = (h ^ proto ^ (h >>> 16)) >>> 0;
    return true;
  }

  /**
   * The fast path: forwards a frame received on `dev` as its flow's entry says
   * and returns true, or returns false and leaves the frame to the slow path.
   * The frame is rewritten in place (a frame addressed to the device's own
   * MAC is nobody else's: the bridge hands it up and to no port) and leaves as
   * it is, or through the out device's template, which puts its header in front.
   */
  forward(dev: NetDevice, frame: Buffer): boolean {
    if (this.table.size === 0 || !this.readKey(frame)) return false;
    const e = this.table.get(this.kHash);
    if (
      e === undefined ||
      e.gen !== this.generation.value ||
      e.inDev !== dev ||
      e.src !== this.kSrc ||
      e.dst !== this.kDst ||
      e.a !== this.kA ||
      e.b !== this.kB ||
      e.proto !== this.kProto ||
      dev.mac !== e.inMac ||
      frame.readUInt32BE(0) !== e.inMacHi ||
      frame.readUInt16BE(4) !== e.inMacLo ||
      // Over the out device's MTU (it may have changed): the slow path fragments or refuses.
      this.kLen > e.out.mtu
    ) {
      this.misses++;
      return false;
    }
    // Connection tracking first, as PREROUTING comes before FORWARD's policy.
    if (e.ct !== undefined && !this.conntrack!.refresh(e.ct, e.dir, this.kProto === 6 ? frame[ETH + 33] : undefined)) {
      this.misses++;
      return false;
    }
    const keep = e.keep;
    if (keep !== undefined) {
      for (let i = 0; i < keep.length; i++) {
        if (!keep[i]()) {
          this.misses++;
          return false;
        }
      }
    }
    this.hits++;
    const len = ETH + this.kLen;
    const out = frame.length === len ? frame : frame.subarray(0, len);
    writeEth(out, e.eth);
    if (e.ct === undefined) decrementTtlAt(out, ETH);
    else replay(out, ETH, e.pre, e.post);
    if (e.link === undefined) e.out.transmit(out, e.nextHop);
    else e.out.transmitTemplated(out, e.link);
    return true;
  }

  /** The slow path's start: a recording when this packet could become a flow entry. */
  begin(dev: NetDevice, frame: Buffer): FlowRecording | undefined {
    if (!this.readKey(frame)) return undefined;
    const gen = this.generation.value;
    if (this.seen.get(this.kHash) !== gen) {
      if (this.seen.size >= this.maxEntries) this.seen.delete(this.seen.keys().next().value!);
      this.seen.set(this.kHash, gen);
      return undefined;
    }
    return { gen: this.generation.value, frame, len: this.kLen, ct: undefined, inDev: dev, inMac: dev.mac, proto: this.kProto, src: this.kSrc, dst: this.kDst, a: this.kA, b: this.kB, hash: this.kHash, keep: [] };
  }

  /**
   * The slow path's end: the packet is about to leave `out` as `frame`,
   * towards `nextHop`. Recorded unless a table moved while it was on its way
   * (an ARP answer it waited for, a connection it opened), and only once the
   * replay, tried on the packet as it came in, gives exactly the bytes the
   * slow path is sending.
   */
  record(rec: FlowRecording, out: NetDevice, frame: Buffer, nextHop: string | undefined): void {
    const gen = this.generation.value;
    if (rec.gen !== gen) return;
    const ct = rec.ct;
    if (ct && !this.conntrack) return;
    const { pre, post } = ct ? rewritesOf(ct) : { pre: undefined, post: undefined };
    const tried = Buffer.from(rec.frame.subarray(ETH, ETH + rec.len));
    replay(tried, 0, pre, post);
    if (frame.length !== ETH + rec.len || frame.compare(tried, 0, rec.len, ETH) !== 0) {
      this.refused++;
      return;
    }
    let link: LinkTemplate | undefined;
    if (out.linkTemplate) {
      link = out.linkTemplate(frame);
      // The link would drop it (no FDB entry): nothing worth replaying.
      if (!link) return;
    }
    const inMac = macToBuffer(rec.inMac);
    if (this.tableGen !== gen) {
      this.table.clear();
      this.tableGen = gen;
    }
    if (this.table.size >= this.maxEntries && !this.table.has(rec.hash)) {
      const oldest = this.table.keys().next().value;
      if (oldest !== undefined) this.table.delete(oldest);
    }
    this.table.set(rec.hash, {
      gen,
      inDev: rec.inDev,
      inMac: rec.inMac,
      inMacHi: inMac.readUInt32BE(0),
      inMacLo: inMac.readUInt16BE(4),
      proto: rec.proto,
      src: rec.src,
      dst: rec.dst,
      a: rec.a,
      b: rec.b,
      out,
      eth: Buffer.from(frame.subarray(0, ETH)),
      nextHop,
      link,
      keep: rec.keep.length ? rec.keep : undefined,
      ct: ct?.e,
      dir: ct?.dir ?? 'orig',
      pre,
      post,
    });
    this.recorded++;
  }

  /** Live entries (recorded at the current generation). */
  get size(): number {
    return this.tableGen === this.generation.value ? this.table.size : 0;
  }

  stats(): FlowCacheStats {
    return { entries: this.size, hits: this.hits, misses: this.misses, recorded: this.recorded, refused: this.refused, generation: this.generation.value, invalidations: Object.fromEntries(this.generation.changes) };
  }
}
