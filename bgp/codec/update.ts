/**
 * UPDATE message (RFC 4271 §4.3), IPv4 unicast NLRI in the classic fields.
 *
 * ```text
 * +-----------------------------------------------------+
 * |   Withdrawn Routes Length (2 octets)                |
 * +-----------------------------------------------------+
 * |   Withdrawn Routes (variable): { len (1) | prefix }* |
 * +-----------------------------------------------------+
 * |   Total Path Attribute Length (2 octets)            |
 * +-----------------------------------------------------+
 * |   Path Attributes (variable), see attributes.ts     |
 * +-----------------------------------------------------+
 * |   Network Layer Reachability Information (variable) |
 * +-----------------------------------------------------+
 * ```
 *
 * Errors (RFC 4271 §6.3): the two length fields overrun the message → 3/1
 * Malformed Attribute List; a prefix longer than 32 bits or cut short, in
 * either the NLRI or the Withdrawn Routes → 3/10 Invalid Network Field (the
 * RFC names only the NLRI; BIRD uses the same subcode for both); NLRI present
 * without ORIGIN, AS_PATH or NEXT_HOP → 3/3 Missing Well-known Attribute with
 * the missing type code as data; attribute faults as in attributes.ts.
 *
 * An UPDATE with no withdrawn routes, no attributes and no NLRI is the IPv4
 * unicast End-of-RIB marker (RFC 4724 §2).
 */
import { BGP_HEADER_LEN, BGP_MAX_MESSAGE_LEN, MSG_UPDATE } from './constants.ts';
import {
  BgpError,
  ERR_MESSAGE_HEADER,
  ERR_UPDATE,
  HDR_BAD_MESSAGE_LENGTH,
  UPD_INVALID_NETWORK_FIELD,
  UPD_MALFORMED_ATTRIBUTE_LIST,
  UPD_MISSING_WELL_KNOWN,
  isBgpError,
  u16Data,
} from './error.ts';
import { allocMessage } from './header.ts';
import { type AttrCodecOptions, type PathAttributes, parseAttributes, serializeAttributes } from './attributes.ts';
import { ATTR_AS_PATH, ATTR_NEXT_HOP, ATTR_ORIGIN } from './constants.ts';
import { prefixesWireLen, readPrefixes, writePrefix } from './prefix.ts';

/** A decoded UPDATE. */
export interface UpdateRepr {
  /** Prefixes no longer reachable (canonical CIDR strings). */
  withdrawn: string[];
  /** Attributes shared by every prefix in `nlri`. */
  attributes: PathAttributes;
  /** Prefixes announced with `attributes`. */
  nlri: string[];
}

/** The IPv4 unicast End-of-RIB marker: an empty UPDATE (RFC 4724 §2). */
export function endOfRib(): UpdateRepr {
  return { withdrawn: [], attributes: {}, nlri: [] };
}

/** True for the End-of-RIB marker. */
export function isEndOfRib(u: UpdateRepr): boolean {
  return u.withdrawn.length === 0 && u.nlri.length === 0 && Object.keys(u.attributes).length === 0;
}

/** Parses an UPDATE body (after the 19-byte header). Returns the Repr or the BgpError RFC 4271 §6.3 prescribes. */
export function parseUpdateBody(body: Buffer, opts: AttrCodecOptions = {}): UpdateRepr | BgpError {
  if (body.length < 4) {
    return new BgpError(ERR_MESSAGE_HEADER, HDR_BAD_MESSAGE_LENGTH, u16Data(body.length + BGP_HEADER_LEN), `UPDATE of ${body.length + BGP_HEADER_LEN} bytes (minimum 23)`);
  }
  const wlen = body.readUInt16BE(0);
  if (4 + wlen > body.length) {
    return new BgpError(ERR_UPDATE, UPD_MALFORMED_ATTRIBUTE_LIST, undefined, `withdrawn routes length ${wlen} overruns the message`);
  }
  const alen = body.readUInt16BE(2 + wlen);
  const attrStart = 4 + wlen;
  if (attrStart + alen > body.length) {
    return new BgpError(ERR_UPDATE, UPD_MALFORMED_ATTRIBUTE_LIST, undefined, `total path attribute length ${alen} overruns the message`);
  }
  const withdrawn = readPrefixes(body, 2, 2 + wlen);
  if (!withdrawn) return new BgpError(ERR_UPDATE, UPD_INVALID_NETWORK_FIELD, undefined, 'malformed prefix in withdrawn routes');
  const attributes = parseAttributes(body.subarray(attrStart, attrStart + alen), opts);
  if (isBgpError(attributes)) return attributes;
  const nlri = readPrefixes(body, attrStart + alen, body.length);
  if (!nlri) return new BgpError(ERR_UPDATE, UPD_INVALID_NETWORK_FIELD, undefined, 'malformed prefix in NLRI');
  if (nlri.length) {
    const missing =
      attributes.origin === undefined ? ATTR_ORIGIN : attributes.asPath === undefined ? ATTR_AS_PATH : attributes.nextHop === undefined ? ATTR_NEXT_HOP : 0;
    if (missing) {
      const name = missing === ATTR_ORIGIN ? 'ORIGIN' : missing === ATTR_AS_PATH ? 'AS_PATH' : 'NEXT_HOP';
      return new BgpError(ERR_UPDATE, UPD_MISSING_WELL_KNOWN, Buffer.from([missing]), `NLRI without the mandatory ${name} attribute`);
    }
  }
  return { withdrawn, attributes, nlri };
}

/** Serializes a whole UPDATE message. Throws RangeError if a value cannot be encoded or the message exceeds 4096 bytes. */
export function serializeUpdate(repr: UpdateRepr, opts: AttrCodecOptions = {}): Buffer {
  const attrs = serializeAttributes(repr.attributes, opts);
  const wlen = prefixesWireLen(repr.withdrawn);
  const nlen = prefixesWireLen(repr.nlri);
  const buf = allocMessage(MSG_UPDATE, 4 + wlen + attrs.length + nlen);
  let off = BGP_HEADER_LEN;
  buf.writeUInt16BE(wlen, off);
  off += 2;
  for (const p of repr.withdrawn) off = writePrefix(buf, off, p);
  buf.writeUInt16BE(attrs.length, off);
  off += 2;
  attrs.copy(buf, off);
  off += attrs.length;
  for (const p of repr.nlri) off = writePrefix(buf, off, p);
  return buf;
}

/** A set of prefixes sharing one set of attributes, to be announced. */
export interface Announcement {
  attributes: PathAttributes;
  prefixes: string[];
}

/**
 * Packs withdrawals and announcements into as few UPDATEs as fit in 4096
 * bytes each: withdrawals first (in withdraw-only messages), then one run of
 * messages per attribute set. Pure; the speaker serializes the result.
 */
export function packUpdates(withdrawn: readonly string[], announcements: readonly Announcement[], opts: AttrCodecOptions = {}): UpdateRepr[] {
  const out: UpdateRepr[] = [];
  const room = BGP_MAX_MESSAGE_LEN - BGP_HEADER_LEN - 4;
  let cur: string[] = [];
  let used = 0;
  for (const p of withdrawn) {
    const n = prefixesWireLen([p]);
    if (used + n > room) {
      out.push({ withdrawn: cur, attributes: {}, nlri: [] });
      cur = [];
      used = 0;
    }
    cur.push(p);
    used += n;
  }
  if (cur.length) out.push({ withdrawn: cur, attributes: {}, nlri: [] });
  for (const a of announcements) {
    if (!a.prefixes.length) continue;
    const base = serializeAttributes(a.attributes, opts).length;
    if (base > room - 5) throw new RangeError(`path attributes of ${base} bytes leave no room for NLRI`);
    cur = [];
    used = base;
    for (const p of a.prefixes) {
      const n = prefixesWireLen([p]);
      if (used + n > room) {
        out.push({ withdrawn: [], attributes: a.attributes, nlri: cur });
        cur = [];
        used = base;
      }
      cur.push(p);
      used += n;
    }
    if (cur.length) out.push({ withdrawn: [], attributes: a.attributes, nlri: cur });
  }
  return out;
}
