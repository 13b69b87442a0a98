/**
 * IPv4 (RFC 791), with fragmentation and reassembly.
 *
 * ```text
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |Version|  IHL  |   DSCP    |ECN|          Total Length         |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |         Identification        |R|D|M|    Fragment Offset      |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |  Time to Live |    Protocol   |        Header Checksum        |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                        Source Address                         |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                     Destination Address                       |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                    Options (IHL > 5)          |    Padding    |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * ```
 *
 * DSCP/ECN: RFC 2474 / RFC 3168 (the old TOS byte). Flags: R reserved,
 * D = Don't Fragment, M = More Fragments. The fragment offset field counts
 * 8-byte units; `Ipv4Repr.fragmentOffset` is in bytes.
 */
import { readIpv4, writeIpv4 } from './addr.ts';
import { checksumAdjust, foldChecksum, onesComplementSum } from './checksum.ts';
import { WireError } from './errors.ts';
import { CHECKSUM, DST, FLAGS_FRAG, FLAG_DF, FLAG_MF, FRAG_OFFSET_MASK, IDENT, PROTOCOL, SRC, TOS, TOTAL_LEN, TTL, VER_IHL } from './ipv4-layout.ts';

/** IP protocol number of ICMP (IANA). */
export const IPPROTO_ICMP = 1;
/** IP protocol number of TCP (IANA). */
export const IPPROTO_TCP = 6;
/** IP protocol number of UDP (IANA). */
export const IPPROTO_UDP = 17;

/** Length of an IPv4 header without options (IHL = 5). */
export const IPV4_HEADER_LEN = 20;
/** Longest IPv4 header: IHL = 15, i.e. 40 bytes of options. */
export const IPV4_MAX_HEADER_LEN = 60;
/** Largest datagram the 16-bit Total Length field can describe. */
export const IPV4_MAX_TOTAL_LEN = 65535;
/** Smallest MTU every IPv4 link must support (RFC 791 §3.2). */
export const IPV4_MIN_MTU = 68;


/** A decoded IPv4 datagram. Derived fields (IHL, total length, checksum) are computed on serialize. */
export interface Ipv4Repr {
  src: string;
  dst: string;
  protocol: number;
  ttl: number;
  id: number;
  dontFragment: boolean;
  moreFragments: boolean;
  /** Offset of this fragment's data in the original datagram, in bytes (a multiple of 8). */
  fragmentOffset: number;
  /** Differentiated Services codepoint, 6 bits (RFC 2474). */
  dscp: number;
  /** Explicit Congestion Notification, 2 bits (RFC 3168). */
  ecn: number;
  /** Raw option bytes, present only when IHL > 5 (includes any trailing padding as received). */
  options?: Buffer;
  payload: Buffer;
}

/** Options for `parseIpv4`. */
export interface ParseIpv4Options {
  /** Verify the header checksum (default true). Turn off only for captures with checksum offload. */
  verifyChecksum?: boolean;
}

/**
 * Parses an IPv4 datagram. `payload` (and `options`) are views into `buf`.
 *
 * Checks the same things as Linux's ip_rcv_core, in this order: header
 * present, version 4 ('bad-version'), IHL >= 5 ('bad-ihl'), header within the
 * buffer ('truncated'), total length >= header length ('bad-length'), total
 * length <= buffer ('truncated'), header checksum ('bad-checksum'; verified
 * last so that a reason names the first structural problem). Bytes beyond the
 * total length (Ethernet padding) are ignored. The reserved flag bit is
 * ignored, as Linux does, and written back as 0.
 */
export function parseIpv4(buf: Buffer, opts?: ParseIpv4Options): Ipv4Repr | WireError {
  if (buf.length < IPV4_HEADER_LEN) {
    return new WireError('ipv4', 'truncated', `${buf.length} bytes is shorter than the 20-byte IPv4 header`);
  }
  const verIhl = buf[VER_IHL];
  if (verIhl >> 4 !== 4) {
    return new WireError('ipv4', 'bad-version', `IP version ${verIhl >> 4}, expected 4`);
  }
  const hlen = (verIhl & 0x0f) << 2;
  if (hlen < IPV4_HEADER_LEN) {
    return new WireError('ipv4', 'bad-ihl', `IHL ${verIhl & 0x0f} is below the minimum of 5`);
  }
  if (hlen > buf.length) {
    return new WireError('ipv4', 'truncated', `IHL says ${hlen} header bytes but only ${buf.length} present`);
  }
  const totalLen = (buf[TOTAL_LEN] << 8) | buf[TOTAL_LEN + 1];
  if (totalLen < hlen) {
    return new WireError('ipv4', 'bad-length', `total length ${totalLen} is smaller than the ${hlen}-byte header`);
  }
  if (totalLen > buf.length) {
    return new WireError('ipv4', 'truncated', `total length ${totalLen} exceeds the ${buf.length} bytes present`);
  }
  // A correct header sums to 0xffff (its checksum is the complement of the rest).
  if (opts?.verifyChecksum !== false && foldChecksum(onesComplementSum(buf, 0, hlen)) !== 0xffff) {
    const got = (buf[CHECKSUM] << 8) | buf[CHECKSUM + 1];
    return new WireError('ipv4', 'bad-checksum', `header checksum 0x${got.toString(16).padStart(4, '0')} does not verify`);
  }
  const flagsFrag = (buf[FLAGS_FRAG] << 8) | buf[FLAGS_FRAG + 1];
  const repr: Ipv4Repr = {
    src: readIpv4(buf, SRC),
    dst: readIpv4(buf, DST),
    protocol: buf[PROTOCOL],
    ttl: buf[TTL],
    id: (buf[IDENT] << 8) | buf[IDENT + 1],
    dontFragment: (flagsFrag & FLAG_DF) !== 0,
    moreFragments: (flagsFrag & FLAG_MF) !== 0,
    fragmentOffset: (flagsFrag & FRAG_OFFSET_MASK) << 3,
    dscp: buf[TOS] >> 2,
    ecn: buf[TOS] & 0x03,
    payload: buf.subarray(hlen, totalLen),
  };
  if (hlen > IPV4_HEADER_LEN) repr.options = buf.subarray(IPV4_HEADER_LEN, hlen);
  return repr;
}

function checkField(name: string, v: number, max: number): void {
  if (!Number.isInteger(v) || v < 0 || v > max) throw new RangeError(`IPv4 ${name} ${v} out of range 0..${max}`);
}

/** Header length `repr` serializes to: 20 plus its options padded to 32 bits. */
export function ipv4HeaderLenFor(repr: Pick<Ipv4Repr, 'options'>): number {
  return IPV4_HEADER_LEN + (repr.options ? (repr.options.length + 3) & ~3 : 0);
}

/**
 * Writes the IPv4 header for `repr` (its `payload` is ignored) at `buf[off]`,
 * for a payload of `payloadLen` bytes, computing IHL, total length and the
 * header checksum. Returns the header length. This is the building block of
 * `serializeIpv4`, exposed so encapsulation paths can emit several headers
 * into one buffer with a single copy of the payload.
 * Throws RangeError on an unencodable Repr (see `serializeIpv4`).
 */
export function writeIpv4Header(buf: Buffer, off: number, repr: Omit<Ipv4Repr, 'payload'>, payloadLen: number): number {
  checkField('protocol', repr.protocol, 0xff);
  checkField('ttl', repr.ttl, 0xff);
  checkField('id', repr.id, 0xffff);
  checkField('dscp', repr.dscp, 0x3f);
  checkField('ecn', repr.ecn, 0x03);
  checkField('fragmentOffset', repr.fragmentOffset, FRAG_OFFSET_MASK << 3);
  if (repr.fragmentOffset & 7) throw new RangeError(`IPv4 fragmentOffset ${repr.fragmentOffset} is not a multiple of 8`);
  const hlen = ipv4HeaderLenFor(repr);
  if (hlen > IPV4_MAX_HEADER_LEN) throw new RangeError(`IPv4 options of ${repr.options!.length} bytes exceed 40`);
  const totalLen = hlen + payloadLen;
  if (totalLen > IPV4_MAX_TOTAL_LEN) throw new RangeError(`IPv4 datagram of ${totalLen} bytes exceeds 65535`);

  buf[off + VER_IHL] = 0x40 | (hlen >> 2);
  buf[off + TOS] = (repr.dscp << 2) | repr.ecn;
  buf[off + TOTAL_LEN] = totalLen >> 8;
  buf[off + TOTAL_LEN + 1] = totalLen & 0xff;
  buf[off + IDENT] = repr.id >> 8;
  buf[off + IDENT + 1] = repr.id & 0xff;
  const flagsFrag = (repr.dontFragment ? FLAG_DF : 0) | (repr.moreFragments ? FLAG_MF : 0) | (repr.fragmentOffset >> 3);
  buf[off + FLAGS_FRAG] = flagsFrag >> 8;
  buf[off + FLAGS_FRAG + 1] = flagsFrag & 0xff;
  buf[off + TTL] = repr.ttl;
  buf[off + PROTOCOL] = repr.protocol;
  buf[off + CHECKSUM] = 0;
  buf[off + CHECKSUM + 1] = 0;
  writeIpv4(buf, off + SRC, repr.src);
  writeIpv4(buf, off + DST, repr.dst);
  if (hlen > IPV4_HEADER_LEN) {
    const opts = repr.options!;
    opts.copy(buf, off + IPV4_HEADER_LEN);
    buf.fill(0, off + IPV4_HEADER_LEN + opts.length, off + hlen); // End of Option List padding
  }
  const sum = ~foldChecksum(onesComplementSum(buf, off, off + hlen)) & 0xffff;
  buf[off + CHECKSUM] = sum >> 8;
  buf[off + CHECKSUM + 1] = sum & 0xff;
  return hlen;
}

/**
 * Serializes a datagram, computing IHL, total length and header checksum.
 * Options are zero-padded (End of Option List, RFC 791 §3.1) to a multiple of
 * 4 bytes. Throws RangeError on an unencodable Repr (field out of range,
 * more than 40 option bytes, datagram over 65535 bytes, offset not a multiple of 8).
 */
export function serializeIpv4(repr: Ipv4Repr): Buffer {
  const hlen = ipv4HeaderLenFor(repr);
  const buf = Buffer.allocUnsafe(hlen + repr.payload.length);
  writeIpv4Header(buf, 0, repr, repr.payload.length);
  repr.payload.copy(buf, hlen);
  return buf;
}

/**
 * Header length in bytes from the IHL field of `buf` (0 for an empty buffer).
 * No validation: use on buffers `parseIpv4` already accepted.
 */
export function ipv4HeaderLen(buf: Buffer): number {
  return buf.length === 0 ? 0 : (buf[VER_IHL] & 0x0f) << 2;
}

/** Destination address of the IPv4 header at the start of `buf`, as a dotted quad. No validation. */
export function readIpv4Dst(buf: Buffer): string {
  return readIpv4(buf, DST);
}

/** Destination address as an unsigned 32-bit integer, for route lookups without string work. No validation. */
export function readIpv4DstInt(buf: Buffer): number {
  return buf.readUInt32BE(DST);
}

/** Source address of the IPv4 header at the start of `buf`, as a dotted quad. No validation. */
export function readIpv4Src(buf: Buffer): string {
  return readIpv4(buf, SRC);
}

/**
 * Forwarding hot path: decrements the TTL of the IPv4 header at the start of
 * `buf` in place and patches the header checksum incrementally (RFC 1624
 * eqn. 3, as Linux's ip_decrease_ttl does) instead of re-summing the header.
 * Returns the new TTL. If the TTL is already 0 (or `buf` is shorter than an
 * IPv4 header) nothing is changed and 0 is returned.
 *
 * Like Linux ip_forward, callers should check `buf[8] <= 1` *before* calling
 * and send ICMP time-exceeded quoting the datagram as received.
 */
export function decrementTtlInPlace(buf: Buffer): number {
  if (buf.length < IPV4_HEADER_LEN) return 0;
  return decrementTtlAt(buf, 0);
}

/**
 * `decrementTtlInPlace` for the header at `off` in a bigger buffer (a frame,
 * an encapsulation), without a view of it; the caller has checked that 20
 * header bytes are there.
 */
export function decrementTtlAt(buf: Buffer, off: number): number {
  const ttl = buf[off + TTL];
  if (ttl === 0) return 0;
  const proto = buf[off + PROTOCOL];
  const c = off + CHECKSUM;
  const hc = (buf[c] << 8) | buf[c + 1];
  // TTL shares a 16-bit checksum word with Protocol.
  const nc = checksumAdjust(hc, (ttl << 8) | proto, ((ttl - 1) << 8) | proto);
  buf[off + TTL] = ttl - 1;
  buf[c] = nc >> 8;
  buf[c + 1] = nc & 0xff;
  return ttl - 1;
}

// ---------------------------------------------------------------------------
// Fragmentation (RFC 791 §2.3 "Fragmentation", §3.2 fragmentation procedure)
// ---------------------------------------------------------------------------

/**
 * The options that must be repeated in every fragment: those whose type octet
 * has the copied flag (0x80) set (RFC 791 §3.1), zero-padded to 4 bytes.
 * NOP/EOL are not copied; malformed option lists stop the scan (what was
 * collected so far is kept, the rest dropped).
 */
function copiedOptions(options: Buffer | undefined): Buffer | undefined {
  if (!options || options.length === 0) return undefined;
  const keep: Buffer[] = [];
  let len = 0;
  let i = 0;
  while (i < options.length) {
    const type = options[i];
    if (type === 0) break; // End of Option List
    if (type === 1) {
      i++; // No Operation
      continue;
    }
    if (i + 1 >= options.length) break;
    const olen = options[i + 1];
    if (olen < 2 || i + olen > options.length) break;
    if (type & 0x80) {
      keep.push(options.subarray(i, i + olen));
      len += olen;
    }
    i += olen;
  }
  if (len === 0) return undefined;
  const out = Buffer.alloc((len + 3) & ~3);
  let o = 0;
  for (const k of keep) o += k.copy(out, o);
  return out;
}

/**
 * Splits `repr` into fragments that each fit in `mtu` bytes (IP header
 * included), per RFC 791: every fragment but the last carries a multiple of
 * 8 data bytes and MF=1; offsets are relative to the original datagram (so an
 * already-fragmented Repr can be fragmented again); the first fragment keeps
 * all options, later ones only copied-flag options.
 *
 * Returns `[repr]` unchanged if it fits. Returns `[]` if it does not fit and
 * DF is set: the caller must then drop it and send ICMP dest-unreachable
 * code 4 (ICMP_UNREACH_NEEDFRAG) with `nextHopMtu = mtu` (RFC 1191).
 * Fragment payloads are views into `repr.payload` (no copy).
 * Throws RangeError if `mtu` cannot carry the header plus 8 data bytes.
 */
export function fragmentIpv4(repr: Ipv4Repr, mtu: number): Ipv4Repr[] {
  const firstHlen = ipv4HeaderLenFor(repr);
  const payload = repr.payload;
  if (firstHlen + payload.length <= mtu) return [repr];
  if (repr.dontFragment) return [];

  const laterOptions = copiedOptions(repr.options);
  const laterHlen = IPV4_HEADER_LEN + (laterOptions ? laterOptions.length : 0);
  const firstMax = (mtu - firstHlen) & ~7;
  const laterMax = (mtu - laterHlen) & ~7;
  if (!(firstMax >= 8 && laterMax >= 8)) {
    throw new RangeError(`MTU ${mtu} too small to fragment a datagram with a ${firstHlen}-byte header`);
  }

  const out: Ipv4Repr[] = [];
  let off = 0;
  while (off < payload.length) {
    const first = off === 0;
    const max = first ? firstMax : laterMax;
    const remaining = payload.length - off;
    const last = remaining <= max;
    const n = last ? remaining : max;
    const frag: Ipv4Repr = {
      src: repr.src,
      dst: repr.dst,
      protocol: repr.protocol,
      ttl: repr.ttl,
      id: repr.id,
      dontFragment: false,
      // The last piece inherits MF: it may itself be a non-final fragment.
      moreFragments: last ? repr.moreFragments : true,
      fragmentOffset: repr.fragmentOffset + off,
      dscp: repr.dscp,
      ecn: repr.ecn,
      payload: payload.subarray(off, off + n),
    };
    const options = first ? repr.options : laterOptions;
    if (options) frag.options = options;
    out.push(frag);
    off += n;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Reassembly (RFC 791 §3.2 reassembly procedure)
// ---------------------------------------------------------------------------

interface Fragment {
  start: number;
  end: number;
  data: Buffer;
}

interface FragQueue {
  firstSeenMs: number;
  /** Received pieces, sorted by `start`, pairwise disjoint. */
  frags: Fragment[];
  /** Sum of received piece lengths; complete when it equals `totalLen`. */
  received: number;
  /** Length of the reassembled payload, known once the MF=0 piece arrived; -1 before. */
  totalLen: number;
  /** The offset-0 fragment's header (its payload is held in `frags` like any other piece). */
  first?: Ipv4Repr;
  /** Bytes this queue holds: fragment payloads plus a fixed overhead per piece. */
  bytes: number;
}

/** What a held fragment costs against the budget beyond its payload (Linux charges skb truesize, not just data). */
const FRAG_OVERHEAD = 256;

/** Why the reassembler dropped fragments (counted per reason in `drops`). */
export type ReassemblyDrop = 'timeout' | 'memory' | 'queue-limit' | 'too-many-fragments' | 'overlap' | 'inconsistent-end' | 'oversize';

/** Options for `Reassembler`. */
export interface ReassemblerOptions {
  /** Drop an incomplete datagram this long after its first fragment arrived (default 30000, Linux's ipfrag_time). */
  timeoutMs?: number;
  /** Most datagrams reassembled at once; the oldest is dropped to make room (default 1024). */
  maxDatagrams?: number;
  /**
   * Bytes all incomplete datagrams may hold (default 4 MiB, Linux's
   * ipfrag_high_thresh); past it the oldest are evicted until at most
   * `lowThresholdBytes` (default 3 MiB, ipfrag_low_thresh) remain.
   */
  highThresholdBytes?: number;
  lowThresholdBytes?: number;
  /** Most fragments one datagram may have held at once (default 64): more is an attack, not a path MTU. */
  maxFragments?: number;
  /**
   * Called for each incomplete datagram dropped by timeout, with its offset-0
   * fragment if that arrived: RFC 792 / RFC 1122 §3.3.2 say a host then sends
   * ICMP time-exceeded code 1 (ICMP_TIMXCEED_REASS) quoting it, and only then.
   */
  onExpire?: (firstFragment: Ipv4Repr | undefined) => void;
  /** Called with each drop's reason and how many fragments it cost (for a stack's counters). */
  onDrop?: (reason: ReassemblyDrop, fragments: number) => void;
}

/**
 * IPv4 reassembly, keyed by (src, dst, protocol, id) as RFC 791 specifies.
 * Time is injected (`nowMs`) so tests and simulations are deterministic.
 *
 * Overlap policy follows Linux since the FragmentSmack fix (CVE-2018-5391,
 * RFC 5722 applied to IPv4): a fragment lying entirely within data already
 * received is a duplicate and ignored; any other overlap discards the whole
 * datagram. Inconsistent ends (two different last fragments, data past the
 * end) and reassembled sizes over 65535 bytes also discard it. As in Linux,
 * a non-final fragment whose length is not a multiple of 8 is trimmed.
 *
 * Memory is bounded as Linux bounds it: only each fragment's own payload is
 * copied and kept (never the buffer it arrived in), all queues together hold at
 * most `highThresholdBytes`, and one datagram at most `maxFragments` pieces.
 * Every dropped fragment is counted by reason in `drops`.
 */
export class Reassembler {
  readonly timeoutMs: number;
  readonly maxDatagrams: number;
  readonly highThresholdBytes: number;
  readonly lowThresholdBytes: number;
  readonly maxFragments: number;
  /** Fragments dropped, by reason. */
  readonly drops = new Map<ReassemblyDrop, number>();
  private readonly onExpire?: (firstFragment: Ipv4Repr | undefined) => void;
  private readonly onDrop?: (reason: ReassemblyDrop, fragments: number) => void;
  private readonly queues = new Map<string, FragQueue>();
  private heldBytes = 0;

  constructor(opts: ReassemblerOptions = {}) {
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.maxDatagrams = opts.maxDatagrams ?? 1024;
    this.highThresholdBytes = opts.highThresholdBytes ?? 4 * 2 ** 20;
    this.lowThresholdBytes = Math.min(opts.lowThresholdBytes ?? 3 * 2 ** 20, this.highThresholdBytes);
    this.maxFragments = opts.maxFragments ?? 64;
    this.onExpire = opts.onExpire;
    this.onDrop = opts.onDrop;
  }

  /** Bytes held by incomplete datagrams now. */
  get bytes(): number {
    return this.heldBytes;
  }

  /** When the oldest incomplete datagram times out (for a caller's timer), or undefined when none is held. */
  nextExpiryMs(): number | undefined {
    const oldest = this.queues.values().next();
    return oldest.done ? undefined : oldest.value.firstSeenMs + this.timeoutMs;
  }

  /** Number of incomplete datagrams currently held. */
  get size(): number {
    return this.queues.size;
  }

  /**
   * Adds a datagram. Returns it unchanged if it is not a fragment (MF=0 and
   * offset 0), the reassembled datagram (MF=0, offset 0, header fields of the
   * first fragment) when this fragment completes one, and null otherwise.
   */
  push(repr: Ipv4Repr, nowMs: number): Ipv4Repr | null {
    if (!repr.moreFragments && repr.fragmentOffset === 0) return repr;
    const start = repr.fragmentOffset;
    let end = start + repr.payload.length;
    if (repr.moreFragments) end &= ~7;
    if (end <= start) return null; // empty piece: nothing to add

    const key = `${repr.src}|${repr.dst}|${repr.protocol}|${repr.id}`;
    this.expire(nowMs);
    let q = this.queues.get(key);
    // "Ping of death": the datagram could never be described by Total Length.
    if (end + IPV4_HEADER_LEN > IPV4_MAX_TOTAL_LEN) return this.discard(key, 'oversize');
    if (!q) {
      if (this.queues.size >= this.maxDatagrams) {
        // Map iterates in insertion order, so the first key is the oldest queue.
        this.discard(this.queues.keys().next().value as string, 'queue-limit');
      }
      q = { firstSeenMs: nowMs, frags: [], received: 0, totalLen: -1, bytes: 0 };
      this.queues.set(key, q);
    }
    if (q.frags.length >= this.maxFragments) return this.discard(key, 'too-many-fragments');

    if (!repr.moreFragments) {
      const maxEnd = q.frags.length ? q.frags[q.frags.length - 1].end : 0;
      if ((q.totalLen >= 0 && q.totalLen !== end) || end < maxEnd) return this.discard(key, 'inconsistent-end');
      q.totalLen = end;
    } else if (q.totalLen >= 0 && end > q.totalLen) {
      return this.discard(key, 'inconsistent-end');
    }

    // Binary search for the first piece with start >= ours.
    const frags = q.frags;
    let lo = 0;
    let hi = frags.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (frags[mid].start < start) lo = mid + 1;
      else hi = mid;
    }
    const prev = lo > 0 ? frags[lo - 1] : undefined;
    const next = lo < frags.length ? frags[lo] : undefined;
    if (prev && start < prev.end) {
      if (end <= prev.end) return null; // duplicate, fully inside prev
      return this.discard(key, 'overlap');
    }
    if (next && end > next.start) {
      if (start === next.start && end <= next.end) return null; // duplicate, fully inside next
      return this.discard(key, 'overlap');
    }
    // Copy: the fragment's payload is a view into the whole datagram it arrived in.
    const data = Buffer.from(repr.payload.subarray(0, end - start));
    frags.splice(lo, 0, { start, end, data });
    q.received += end - start;
    const cost = end - start + FRAG_OVERHEAD;
    q.bytes += cost;
    this.heldBytes += cost;
    // The first fragment (its header for the datagram, and what an ICMP time-exceeded quotes), on the copied data.
    if (start === 0) q.first = repr.options ? { ...repr, payload: data, options: Buffer.from(repr.options) } : { ...repr, payload: data };
    if (this.heldBytes > this.highThresholdBytes) {
      this.evictOldest(key);
      if (!this.queues.has(key)) return null;
    }

    if (q.totalLen < 0 || q.received !== q.totalLen) return null;
    // Pieces are disjoint and within [0, totalLen), so equal byte counts mean no holes.
    this.forget(key);
    const first = q.first!;
    if (ipv4HeaderLenFor(first) + q.totalLen > IPV4_MAX_TOTAL_LEN) return null;
    const payload = Buffer.allocUnsafe(q.totalLen);
    for (const f of frags) f.data.copy(payload, f.start);
    return { ...first, moreFragments: false, fragmentOffset: 0, payload };
  }

  /**
   * Drops incomplete datagrams whose first fragment is at least `timeoutMs`
   * old; returns how many. Queues are in arrival order, so this stops at the
   * first one still in time.
   */
  expire(nowMs: number): number {
    let n = 0;
    for (const [key, q] of this.queues) {
      if (nowMs - q.firstSeenMs < this.timeoutMs) break;
      this.discard(key, 'timeout');
      n++;
      this.onExpire?.(q.first);
    }
    return n;
  }

  /** Drops everything held. */
  clear(): void {
    this.queues.clear();
    this.heldBytes = 0;
  }

  /** Over the high threshold: the oldest datagrams go (this one last) until the low threshold is met. */
  private evictOldest(current: string): void {
    for (const key of [...this.queues.keys()]) {
      if (this.heldBytes <= this.lowThresholdBytes) return;
      if (key !== current) this.discard(key, 'memory');
    }
    if (this.heldBytes > this.lowThresholdBytes) this.discard(current, 'memory');
  }

  private forget(key: string): FragQueue | undefined {
    const q = this.queues.get(key);
    if (!q) return undefined;
    this.queues.delete(key);
    this.heldBytes -= q.bytes;
    return q;
  }

  private discard(key: string, reason: ReassemblyDrop): null {
    const q = this.forget(key);
    // The fragment that caused the drop counts too.
    const n = (q ? q.frags.length : 0) + (reason === 'timeout' || reason === 'memory' || reason === 'queue-limit' ? 0 : 1);
    this.drops.set(reason, (this.drops.get(reason) ?? 0) + n);
    this.onDrop?.(reason, n);
    return null;
  }
}
