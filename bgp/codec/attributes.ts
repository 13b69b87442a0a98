/**
 * Path attributes (RFC 4271 §4.3, §5; RFC 1997 COMMUNITIES; RFC 4456
 * ORIGINATOR_ID and CLUSTER_LIST; RFC 6793 AS4_PATH and AS4_AGGREGATOR).
 *
 * ```text
 *  0                   1
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |O|T|P|E|0 0 0 0|  Type Code    |   O optional, T transitive, P partial,
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+   E extended length (2-octet length)
 * |  Length (1 or 2 octets)       |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |  Value ...                    |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * type  name              category                value
 *  1    ORIGIN            well-known mandatory    1 octet: 0 IGP, 1 EGP, 2 INCOMPLETE
 *  2    AS_PATH           well-known mandatory    { seg type (1) | count (1) | ASNs (2 or 4 each) }*
 *  3    NEXT_HOP          well-known mandatory    IPv4 address
 *  4    MULTI_EXIT_DISC   optional non-transitive u32
 *  5    LOCAL_PREF        well-known discretionary u32
 *  6    ATOMIC_AGGREGATE  well-known discretionary empty
 *  7    AGGREGATOR        optional transitive     ASN (2 or 4) | IPv4 address
 *  8    COMMUNITIES       optional transitive     { u32 }+
 *  9    ORIGINATOR_ID     optional non-transitive IPv4 address (router ID)
 * 10    CLUSTER_LIST      optional non-transitive { cluster ID (4) }+
 * 17    AS4_PATH          optional transitive     as AS_PATH, always 4-octet ASNs
 * 18    AS4_AGGREGATOR    optional transitive     ASN (4) | IPv4 address
 * ```
 *
 * The AS_PATH and AGGREGATOR width depends on the session: 4 octets when
 * both speakers advertised the 4-octet AS capability (`{ as4: true }`), else 2.
 *
 * Errors (RFC 4271 §6.3), checked per attribute in the order flags, length,
 * value: a header or value that overruns the attribute area, or a repeated
 * type → 3/1 Malformed Attribute List; an unknown type without the Optional
 * bit → 3/2 Unrecognized Well-known Attribute; O/T (or a forbidden P) bit
 * that contradicts the type → 3/4 Attribute Flags Error; a length the type
 * does not allow → 3/5 Attribute Length Error; ORIGIN > 2 → 3/6; a NEXT_HOP
 * of 0.0.0.0, 255.255.255.255 or class D/E → 3/8 Invalid NEXT_HOP (loopback
 * next hops are legal: podlab's local mode lives on 127/8); a broken AS_PATH
 * → 3/11 Malformed AS_PATH; a broken AS4_PATH → 3/9 Optional Attribute Error.
 * 3/2, 3/4, 3/5, 3/6, 3/8 and 3/9 carry the whole attribute (type, length,
 * value) as data. Missing mandatory attributes (3/3) are checked by the
 * UPDATE parser, which knows whether NLRI are present.
 *
 * Unknown optional attributes are kept as raw bytes with their flags (O, T,
 * P): the RIB passes transitive ones on with the Partial bit set and drops
 * non-transitive ones (§5). The serializer writes attributes in ascending
 * type order and uses the extended length only for values over 255 bytes.
 */
import { intToIpv4, ipv4ToInt, isValidIpv4 } from '../../packet/addr.ts';
import type { AsPath, AsPathSegment, AsPathSegmentType } from './aspath.ts';
import {
  AS_CONFED_SEQUENCE,
  AS_CONFED_SET,
  AS_SEQUENCE,
  AS_SET,
  ATTR_AGGREGATOR,
  ATTR_AS4_AGGREGATOR,
  ATTR_AS4_PATH,
  ATTR_AS_PATH,
  ATTR_ATOMIC_AGGREGATE,
  ATTR_CLUSTER_LIST,
  ATTR_COMMUNITIES,
  ATTR_FLAG_EXTENDED_LENGTH,
  ATTR_FLAG_OPTIONAL,
  ATTR_FLAG_PARTIAL,
  ATTR_FLAG_TRANSITIVE,
  ATTR_LOCAL_PREF,
  ATTR_MULTI_EXIT_DISC,
  ATTR_NAMES,
  ATTR_NEXT_HOP,
  ATTR_ORIGIN,
  ATTR_ORIGINATOR_ID,
} from './constants.ts';
import {
  BgpError,
  ERR_UPDATE,
  UPD_ATTRIBUTE_FLAGS,
  UPD_ATTRIBUTE_LENGTH,
  UPD_INVALID_NEXT_HOP,
  UPD_INVALID_ORIGIN,
  UPD_MALFORMED_AS_PATH,
  UPD_MALFORMED_ATTRIBUTE_LIST,
  UPD_OPTIONAL_ATTRIBUTE,
  UPD_UNRECOGNIZED_WELL_KNOWN,
} from './error.ts';

/** ORIGIN values (RFC 4271 §5.1.1), lowest preferred. */
export type Origin = 'igp' | 'egp' | 'incomplete';
export const ORIGINS: readonly Origin[] = ['igp', 'egp', 'incomplete'];

/** AGGREGATOR / AS4_AGGREGATOR value. */
export interface Aggregator {
  asn: number;
  address: string;
}

/** An attribute podlab does not decode, kept verbatim. */
export interface RawAttribute {
  /** O, T and P bits as received (E is a framing detail and is recomputed). */
  flags: number;
  type: number;
  value: Buffer;
}

/** Decoded path attributes. Absent fields were not in the message. */
export interface PathAttributes {
  origin?: Origin;
  /** AS numbers as carried in the AS_PATH attribute (2-octet values unless the session is 4-octet). */
  asPath?: AsPath;
  nextHop?: string;
  /** MULTI_EXIT_DISC. */
  med?: number;
  localPref?: number;
  atomicAggregate?: boolean;
  aggregator?: Aggregator;
  /** RFC 1997 communities as u32 (ASN << 16 | value). */
  communities?: number[];
  /** RFC 4456: router ID of the route's originator in the local AS. */
  originatorId?: string;
  /** RFC 4456: cluster IDs, most recent reflector first. */
  clusterList?: string[];
  /** RFC 6793: the real path, sent to/by speakers without the 4-octet AS capability. */
  as4Path?: AsPath;
  as4Aggregator?: Aggregator;
  /** Attributes podlab does not decode (e.g. LARGE_COMMUNITY, MP_REACH_NLRI), in wire order. */
  other?: RawAttribute[];
}

/** Session context the AS_PATH and AGGREGATOR encodings depend on. */
export interface AttrCodecOptions {
  /** Both speakers advertised the 4-octet AS capability (RFC 6793). Default true. */
  as4?: boolean;
}

const WELL_KNOWN = ATTR_FLAG_TRANSITIVE;
const OPT_NON_TRANS = ATTR_FLAG_OPTIONAL;
const OPT_TRANS = ATTR_FLAG_OPTIONAL | ATTR_FLAG_TRANSITIVE;

/** The O/T flags each known attribute must carry; `partial` = the P bit may be set. */
const KNOWN: Readonly<Record<number, { flags: number; partial: boolean }>> = {
  [ATTR_ORIGIN]: { flags: WELL_KNOWN, partial: false },
  [ATTR_AS_PATH]: { flags: WELL_KNOWN, partial: false },
  [ATTR_NEXT_HOP]: { flags: WELL_KNOWN, partial: false },
  [ATTR_MULTI_EXIT_DISC]: { flags: OPT_NON_TRANS, partial: false },
  [ATTR_LOCAL_PREF]: { flags: WELL_KNOWN, partial: false },
  [ATTR_ATOMIC_AGGREGATE]: { flags: WELL_KNOWN, partial: false },
  [ATTR_AGGREGATOR]: { flags: OPT_TRANS, partial: true },
  [ATTR_COMMUNITIES]: { flags: OPT_TRANS, partial: true },
  [ATTR_ORIGINATOR_ID]: { flags: OPT_NON_TRANS, partial: false },
  [ATTR_CLUSTER_LIST]: { flags: OPT_NON_TRANS, partial: false },
  [ATTR_AS4_PATH]: { flags: OPT_TRANS, partial: true },
  [ATTR_AS4_AGGREGATOR]: { flags: OPT_TRANS, partial: true },
};

/** The wire flags podlab writes for a known attribute type (O/T as the RFC fixes them). */
export function knownAttributeFlags(type: number): number | undefined {
  return KNOWN[type]?.flags;
}

const SEG_TYPES: Readonly<Record<number, AsPathSegmentType>> = {
  [AS_SET]: 'set',
  [AS_SEQUENCE]: 'sequence',
  [AS_CONFED_SEQUENCE]: 'confed-sequence',
  [AS_CONFED_SET]: 'confed-set',
};
const SEG_CODES: Readonly<Record<AsPathSegmentType, number>> = {
  set: AS_SET,
  sequence: AS_SEQUENCE,
  'confed-sequence': AS_CONFED_SEQUENCE,
  'confed-set': AS_CONFED_SET,
};

function attrName(type: number): string {
  return ATTR_NAMES[type] ?? `attribute ${type}`;
}

function updErr(subcode: number, data: Buffer | undefined, msg: string): BgpError {
  return new BgpError(ERR_UPDATE, subcode, data ? Buffer.from(data) : undefined, msg);
}

/** Decodes AS_PATH segments of `width`-octet ASNs; a string says what is wrong. */
function decodeAsPath(v: Buffer, width: 2 | 4): AsPath | string {
  const out: AsPathSegment[] = [];
  let off = 0;
  while (off < v.length) {
    if (off + 2 > v.length) return `segment header at offset ${off} is truncated`;
    const type = SEG_TYPES[v[off]];
    const count = v[off + 1];
    if (!type) return `unknown segment type ${v[off]}`;
    if (count === 0) return 'empty segment';
    if (off + 2 + count * width > v.length) return `segment of ${count} ASNs overruns the attribute`;
    const asns: number[] = [];
    for (let i = 0; i < count; i++) asns.push(width === 4 ? v.readUInt32BE(off + 2 + 4 * i) : v.readUInt16BE(off + 2 + 2 * i));
    out.push({ type, asns });
    off += 2 + count * width;
  }
  return out;
}

function isValidNextHop(v: Buffer): boolean {
  const a = v.readUInt32BE(0);
  // 0.0.0.0, broadcast, and 224.0.0.0/3 (multicast and class E) cannot be a next hop.
  return a !== 0 && a !== 0xffffffff && v[0] < 224;
}

/**
 * Parses the Path Attributes field `buf` (exactly its Total Path Attribute
 * Length bytes). Returns the attributes or the BgpError RFC 4271 §6.3 prescribes.
 */
export function parseAttributes(buf: Buffer, opts: AttrCodecOptions = {}): PathAttributes | BgpError {
  const as4 = opts.as4 ?? true;
  const attrs: PathAttributes = {};
  const seen = new Set<number>();
  let off = 0;
  while (off < buf.length) {
    if (off + 3 > buf.length) return updErr(UPD_MALFORMED_ATTRIBUTE_LIST, undefined, `attribute header at offset ${off} is truncated`);
    const flags = buf[off];
    const type = buf[off + 1];
    const ext = (flags & ATTR_FLAG_EXTENDED_LENGTH) !== 0;
    const hdr = ext ? 4 : 3;
    if (off + hdr > buf.length) return updErr(UPD_MALFORMED_ATTRIBUTE_LIST, undefined, `extended attribute header at offset ${off} is truncated`);
    const len = ext ? buf.readUInt16BE(off + 2) : buf[off + 2];
    if (off + hdr + len > buf.length) {
      return updErr(UPD_MALFORMED_ATTRIBUTE_LIST, undefined, `${attrName(type)} of length ${len} overruns the attribute list`);
    }
    const raw = buf.subarray(off, off + hdr + len);
    const v = raw.subarray(hdr);
    off += hdr + len;
    if (seen.has(type)) return updErr(UPD_MALFORMED_ATTRIBUTE_LIST, undefined, `${attrName(type)} appears twice`);
    seen.add(type);

    const known = KNOWN[type];
    if (!known) {
      if (!(flags & ATTR_FLAG_OPTIONAL)) return updErr(UPD_UNRECOGNIZED_WELL_KNOWN, raw, `unrecognized well-known attribute type ${type}`);
      (attrs.other ??= []).push({ flags: flags & (ATTR_FLAG_OPTIONAL | ATTR_FLAG_TRANSITIVE | ATTR_FLAG_PARTIAL), type, value: Buffer.from(v) });
      continue;
    }
    const ot = flags & (ATTR_FLAG_OPTIONAL | ATTR_FLAG_TRANSITIVE);
    if (ot !== known.flags || (!known.partial && flags & ATTR_FLAG_PARTIAL)) {
      return updErr(UPD_ATTRIBUTE_FLAGS, raw, `${attrName(type)} with flags 0x${flags.toString(16).padStart(2, '0')}`);
    }
    const badLen = (): BgpError => updErr(UPD_ATTRIBUTE_LENGTH, raw, `${attrName(type)} of length ${len}`);
    switch (type) {
      case ATTR_ORIGIN:
        if (len !== 1) return badLen();
        if (v[0] > 2) return updErr(UPD_INVALID_ORIGIN, raw, `ORIGIN value ${v[0]}`);
        attrs.origin = ORIGINS[v[0]];
        break;
      case ATTR_AS_PATH: {
        const p = decodeAsPath(v, as4 ? 4 : 2);
        if (typeof p === 'string') return updErr(UPD_MALFORMED_AS_PATH, undefined, `AS_PATH (${as4 ? 4 : 2}-octet): ${p}`);
        attrs.asPath = p;
        break;
      }
      case ATTR_NEXT_HOP:
        if (len !== 4) return badLen();
        if (!isValidNextHop(v)) return updErr(UPD_INVALID_NEXT_HOP, raw, `NEXT_HOP ${intToIpv4(v.readUInt32BE(0))}`);
        attrs.nextHop = intToIpv4(v.readUInt32BE(0));
        break;
      case ATTR_MULTI_EXIT_DISC:
        if (len !== 4) return badLen();
        attrs.med = v.readUInt32BE(0);
        break;
      case ATTR_LOCAL_PREF:
        if (len !== 4) return badLen();
        attrs.localPref = v.readUInt32BE(0);
        break;
      case ATTR_ATOMIC_AGGREGATE:
        if (len !== 0) return badLen();
        attrs.atomicAggregate = true;
        break;
      case ATTR_AGGREGATOR: {
        const w = as4 ? 4 : 2;
        if (len !== w + 4) return badLen();
        attrs.aggregator = { asn: w === 4 ? v.readUInt32BE(0) : v.readUInt16BE(0), address: intToIpv4(v.readUInt32BE(w)) };
        break;
      }
      case ATTR_AS4_AGGREGATOR:
        if (len !== 8) return badLen();
        attrs.as4Aggregator = { asn: v.readUInt32BE(0), address: intToIpv4(v.readUInt32BE(4)) };
        break;
      case ATTR_COMMUNITIES:
        if (len === 0 || len % 4 !== 0) return badLen();
        attrs.communities = [];
        for (let i = 0; i < len; i += 4) attrs.communities.push(v.readUInt32BE(i));
        break;
      case ATTR_ORIGINATOR_ID:
        if (len !== 4) return badLen();
        attrs.originatorId = intToIpv4(v.readUInt32BE(0));
        break;
      case ATTR_CLUSTER_LIST:
        if (len === 0 || len % 4 !== 0) return badLen();
        attrs.clusterList = [];
        for (let i = 0; i < len; i += 4) attrs.clusterList.push(intToIpv4(v.readUInt32BE(i)));
        break;
      case ATTR_AS4_PATH: {
        const p = decodeAsPath(v, 4);
        if (typeof p === 'string') return updErr(UPD_OPTIONAL_ATTRIBUTE, raw, `AS4_PATH: ${p}`);
        attrs.as4Path = p;
        break;
      }
    }
  }
  return attrs;
}

// ---------------------------------------------------------------------------
// Serialization
// ---------------------------------------------------------------------------

type Encoded = { type: number; flags: number; value: Buffer };

function u32(v: number, what: string): Buffer {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`${what} ${v} is not a u32`);
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v);
  return b;
}

function ip(v: string, what: string): Buffer {
  if (!isValidIpv4(v)) throw new RangeError(`${what} ${JSON.stringify(v)} is not an IPv4 address`);
  return u32(ipv4ToInt(v), what);
}

function encodeAsPath(path: AsPath, width: 2 | 4, what: string): Buffer {
  const parts: Buffer[] = [];
  for (const s of path) {
    if (s.asns.length === 0 || s.asns.length > 255) throw new RangeError(`${what} segment of ${s.asns.length} ASNs (1..255)`);
    const b = Buffer.alloc(2 + width * s.asns.length);
    b[0] = SEG_CODES[s.type];
    b[1] = s.asns.length;
    s.asns.forEach((a, i) => {
      if (!Number.isInteger(a) || a < 0 || a > (width === 4 ? 0xffffffff : 0xffff)) {
        throw new RangeError(`${what}: ASN ${a} does not fit ${width} octets${width === 2 ? ' (use toTwoOctetPath)' : ''}`);
      }
      if (width === 4) b.writeUInt32BE(a, 2 + 4 * i);
      else b.writeUInt16BE(a, 2 + 2 * i);
    });
    parts.push(b);
  }
  return Buffer.concat(parts);
}

function encodeAggregator(a: Aggregator, width: 2 | 4, what: string): Buffer {
  const b = Buffer.alloc(width + 4);
  if (!Number.isInteger(a.asn) || a.asn < 0 || a.asn > (width === 4 ? 0xffffffff : 0xffff)) throw new RangeError(`${what} ASN ${a.asn} does not fit ${width} octets`);
  if (width === 4) b.writeUInt32BE(a.asn, 0);
  else b.writeUInt16BE(a.asn, 0);
  ip(a.address, what).copy(b, width);
  return b;
}

/** Encodes every present attribute, ascending by type code. */
function encodeAll(attrs: PathAttributes, as4: boolean): Encoded[] {
  const out: Encoded[] = [];
  const push = (type: number, value: Buffer): void => void out.push({ type, flags: KNOWN[type].flags, value });
  if (attrs.origin !== undefined) {
    const i = ORIGINS.indexOf(attrs.origin);
    if (i < 0) throw new RangeError(`invalid ORIGIN ${String(attrs.origin)}`);
    push(ATTR_ORIGIN, Buffer.from([i]));
  }
  if (attrs.asPath !== undefined) push(ATTR_AS_PATH, encodeAsPath(attrs.asPath, as4 ? 4 : 2, 'AS_PATH'));
  if (attrs.nextHop !== undefined) push(ATTR_NEXT_HOP, ip(attrs.nextHop, 'NEXT_HOP'));
  if (attrs.med !== undefined) push(ATTR_MULTI_EXIT_DISC, u32(attrs.med, 'MULTI_EXIT_DISC'));
  if (attrs.localPref !== undefined) push(ATTR_LOCAL_PREF, u32(attrs.localPref, 'LOCAL_PREF'));
  if (attrs.atomicAggregate) push(ATTR_ATOMIC_AGGREGATE, Buffer.alloc(0));
  if (attrs.aggregator !== undefined) push(ATTR_AGGREGATOR, encodeAggregator(attrs.aggregator, as4 ? 4 : 2, 'AGGREGATOR'));
  if (attrs.communities !== undefined && attrs.communities.length) push(ATTR_COMMUNITIES, Buffer.concat(attrs.communities.map((c) => u32(c, 'community'))));
  if (attrs.originatorId !== undefined) push(ATTR_ORIGINATOR_ID, ip(attrs.originatorId, 'ORIGINATOR_ID'));
  if (attrs.clusterList !== undefined && attrs.clusterList.length) push(ATTR_CLUSTER_LIST, Buffer.concat(attrs.clusterList.map((c) => ip(c, 'CLUSTER_LIST'))));
  if (attrs.as4Path !== undefined) push(ATTR_AS4_PATH, encodeAsPath(attrs.as4Path, 4, 'AS4_PATH'));
  if (attrs.as4Aggregator !== undefined) push(ATTR_AS4_AGGREGATOR, encodeAggregator(attrs.as4Aggregator, 4, 'AS4_AGGREGATOR'));
  for (const o of attrs.other ?? []) {
    if (KNOWN[o.type]) throw new RangeError(`raw attribute of known type ${o.type}: use the decoded field`);
    if (!(o.flags & ATTR_FLAG_OPTIONAL)) throw new RangeError(`raw attribute ${o.type} must be optional`);
    out.push({ type: o.type, flags: o.flags & (ATTR_FLAG_OPTIONAL | ATTR_FLAG_TRANSITIVE | ATTR_FLAG_PARTIAL), value: o.value });
  }
  for (const e of out) if (e.value.length > 0xffff) throw new RangeError(`${attrName(e.type)} value of ${e.value.length} bytes`);
  return out.sort((a, b) => a.type - b.type);
}

/**
 * Serializes path attributes (the Path Attributes field of an UPDATE), in
 * ascending type order. Throws RangeError on values that cannot be encoded
 * (e.g. a 4-octet ASN in a 2-octet AS_PATH: convert with `toTwoOctetPath`).
 */
export function serializeAttributes(attrs: PathAttributes, opts: AttrCodecOptions = {}): Buffer {
  const enc = encodeAll(attrs, opts.as4 ?? true);
  const total = enc.reduce((n, e) => n + (e.value.length > 255 ? 4 : 3) + e.value.length, 0);
  const buf = Buffer.alloc(total);
  let off = 0;
  for (const e of enc) {
    const ext = e.value.length > 255;
    buf[off] = e.flags | (ext ? ATTR_FLAG_EXTENDED_LENGTH : 0);
    buf[off + 1] = e.type;
    if (ext) buf.writeUInt16BE(e.value.length, off + 2);
    else buf[off + 2] = e.value.length;
    off += ext ? 4 : 3;
    e.value.copy(buf, off);
    off += e.value.length;
  }
  return buf;
}
