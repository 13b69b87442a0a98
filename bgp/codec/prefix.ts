/**
 * IPv4 prefixes as BGP encodes them in the Withdrawn Routes and NLRI fields
 * (RFC 4271 §4.3): one length octet (0..32) followed by the fewest octets
 * that hold that many bits.
 *
 * ```text
 * +---------------------------+
 * |   Length (1 octet, bits)  |
 * +---------------------------+
 * |   Prefix (variable)       |    ceil(Length / 8) octets
 * +---------------------------+
 * ```
 *
 * Prefixes are strings in canonical CIDR form ('10.244.1.0/24'). Trailing
 * bits past the length are irrelevant on the wire (§4.3) and are cleared on
 * parse, so a parsed prefix is always canonical.
 */
import { intToIpv4, ipv4ToInt, isValidIpv4 } from '../../packet/addr.ts';
import { maskOf } from '../../packet/cidr.ts';

/** Mask for a prefix length, as an unsigned 32-bit integer. */
export const prefixMask = maskOf;

/** Splits 'a.b.c.d/len' into (address int, length), or undefined if not canonical CIDR. */
export function splitPrefix(prefix: string): { addr: number; len: number } | undefined {
  const slash = prefix.indexOf('/');
  if (slash < 0) return undefined;
  const ip = prefix.slice(0, slash);
  const lenStr = prefix.slice(slash + 1);
  if (!/^(\d|[12]\d|3[0-2])$/.test(lenStr) || !isValidIpv4(ip)) return undefined;
  const len = Number(lenStr);
  const addr = ipv4ToInt(ip);
  if ((addr & ~prefixMask(len)) >>> 0 !== 0) return undefined;
  return { addr, len };
}

/** True if `prefix` is canonical IPv4 CIDR (no host bits set). */
export function isValidPrefix(prefix: string): boolean {
  return splitPrefix(prefix) !== undefined;
}

/**
 * Canonicalizes a CIDR string ('10.244.1.7/24' → '10.244.1.0/24').
 * Throws RangeError for anything that is not IPv4 CIDR.
 */
export function normalizePrefix(prefix: string): string {
  const slash = prefix.indexOf('/');
  const ip = slash < 0 ? prefix : prefix.slice(0, slash);
  const lenStr = slash < 0 ? '32' : prefix.slice(slash + 1);
  if (!/^(\d|[12]\d|3[0-2])$/.test(lenStr) || !isValidIpv4(ip)) throw new RangeError(`invalid IPv4 prefix ${JSON.stringify(prefix)}`);
  const len = Number(lenStr);
  return `${intToIpv4((ipv4ToInt(ip) & prefixMask(len)) >>> 0)}/${len}`;
}

/** Encoded size of a prefix of `len` bits. */
export function prefixWireLen(len: number): number {
  return 1 + ((len + 7) >> 3);
}

/**
 * Decodes the prefixes in `buf[off, end)`. Returns undefined if a length
 * octet exceeds 32 or a prefix runs past `end` (the caller picks the error:
 * 3/10 Invalid Network Field).
 */
export function readPrefixes(buf: Buffer, off: number, end: number): string[] | undefined {
  const out: string[] = [];
  while (off < end) {
    const len = buf[off];
    if (len > 32) return undefined;
    const n = (len + 7) >> 3;
    if (off + 1 + n > end) return undefined;
    let addr = 0;
    for (let i = 0; i < 4; i++) addr = addr * 256 + (i < n ? buf[off + 1 + i] : 0);
    out.push(`${intToIpv4((addr & prefixMask(len)) >>> 0)}/${len}`);
    off += 1 + n;
  }
  return out;
}

/** Writes one prefix at `buf[off]`, returns the offset after it. Throws RangeError if not canonical CIDR. */
export function writePrefix(buf: Buffer, off: number, prefix: string): number {
  const p = splitPrefix(prefix);
  if (!p) throw new RangeError(`invalid IPv4 prefix ${JSON.stringify(prefix)} (canonical CIDR expected)`);
  const n = (p.len + 7) >> 3;
  buf[off] = p.len;
  for (let i = 0; i < n; i++) buf[off + 1 + i] = (p.addr >>> (24 - 8 * i)) & 0xff;
  return off + 1 + n;
}

/** Total encoded size of a list of prefixes. Throws RangeError on an invalid prefix. */
export function prefixesWireLen(prefixes: readonly string[]): number {
  let n = 0;
  for (const p of prefixes) {
    const s = splitPrefix(p);
    if (!s) throw new RangeError(`invalid IPv4 prefix ${JSON.stringify(p)} (canonical CIDR expected)`);
    n += prefixWireLen(s.len);
  }
  return n;
}
