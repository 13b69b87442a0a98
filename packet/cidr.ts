/**
 * An IPv4 prefix (`10.244.1.0/24`) with integer math inside, for the data
 * path: route lookups, "is this address in that subnet", broadcast addresses,
 * subnet carving. The one place that turns a prefix length into a mask.
 *
 * Parsing here is strict and cheap (packet/addr.ts's dotted-quad parser, no
 * regexes) because it also runs when routes are programmed. User-facing input
 * (flags, manifests, annotations) is validated at the boundary with ipaddr.js
 * first (common/ip-input.ts) so its errors can name the field at fault.
 */
import { intToIpv4, ipv4ToInt, isValidIpv4 } from './addr.ts';

/** Netmask of a prefix length as an unsigned 32-bit integer (`/24` → 0xffffff00). */
export function maskOf(prefixLen: number): number {
  return prefixLen <= 0 ? 0 : prefixLen >= 32 ? 0xffffffff : (0xffffffff << (32 - prefixLen)) >>> 0;
}

/** Whether `s` is a prefix length 0..32 written canonically (`0`, `24`; not `024`, `+8`, `8.0`). */
function parsePrefixLen(s: string): number {
  if (!/^(?:\d|[12]\d|3[0-2])$/.test(s)) return -1;
  return Number(s);
}

export class Cidr {
  /** Network address (host bits cleared), unsigned. */
  readonly network: number;
  readonly prefixLen: number;
  /** Netmask, unsigned. */
  readonly mask: number;

  private constructor(network: number, prefixLen: number) {
    this.mask = maskOf(prefixLen);
    this.network = (network & this.mask) >>> 0;
    this.prefixLen = prefixLen;
  }

  /** The prefix `addr/prefixLen`, host bits cleared. Throws RangeError on a length outside 0..32. */
  static of(addr: number | string, prefixLen: number): Cidr {
    if (!Number.isInteger(prefixLen) || prefixLen < 0 || prefixLen > 32) throw new RangeError(`invalid IPv4 prefix length ${prefixLen}`);
    return new Cidr(typeof addr === 'number' ? addr >>> 0 : ipv4ToInt(addr), prefixLen);
  }

  /**
   * Parses `a.b.c.d/n` (host bits are cleared, as Go's net.ParseCIDR returns
   * the network). `strict` rejects set host bits instead. A bare address is
   * read as a /32 only with `allowBare`. Returns undefined when malformed.
   */
  static tryParse(text: string, opts: { strict?: boolean; allowBare?: boolean } = {}): Cidr | undefined {
    if (typeof text !== 'string') return undefined;
    const slash = text.indexOf('/');
    if (slash < 0 && !opts.allowBare) return undefined;
    const ip = slash < 0 ? text : text.slice(0, slash);
    const len = slash < 0 ? 32 : parsePrefixLen(text.slice(slash + 1));
    if (len < 0 || !isValidIpv4(ip)) return undefined;
    const addr = ipv4ToInt(ip);
    const c = new Cidr(addr, len);
    if (opts.strict && c.network !== addr) return undefined;
    return c;
  }

  /** As {@link Cidr.tryParse}, throwing a RangeError that quotes the text when malformed. */
  static parse(text: string, opts: { strict?: boolean; allowBare?: boolean } = {}): Cidr {
    const c = Cidr.tryParse(text, opts);
    if (!c) throw new RangeError(`invalid IPv4 CIDR ${JSON.stringify(text)}${opts.strict ? ' (host bits must be zero)' : ''}`);
    return c;
  }

  /** Number of addresses (2^(32-len)); a number, since /0 holds 2^32. */
  get size(): number {
    return 2 ** (32 - this.prefixLen);
  }

  /** The last address of the prefix (all host bits set), unsigned. */
  get broadcast(): number {
    return (this.network | ~this.mask) >>> 0;
  }

  /** The network address as a dotted quad. */
  get networkAddress(): string {
    return intToIpv4(this.network);
  }

  /** The broadcast address as a dotted quad. */
  get broadcastAddress(): string {
    return intToIpv4(this.broadcast);
  }

  /** The netmask as a dotted quad (`255.255.255.0`). */
  get netmask(): string {
    return intToIpv4(this.mask);
  }

  /** True if the address (unsigned integer or dotted quad) lies inside the prefix. */
  contains(ip: number | string): boolean {
    const v = typeof ip === 'number' ? ip : ipv4ToInt(ip);
    return ((v & this.mask) >>> 0) === this.network;
  }

  /** True if `other` lies entirely inside this prefix. */
  covers(other: Cidr): boolean {
    return other.prefixLen >= this.prefixLen && this.contains(other.network);
  }

  /** True if the two prefixes share any address. */
  overlaps(other: Cidr): boolean {
    return this.covers(other) || other.covers(this);
  }

  /** The address `index` places after the network address, unsigned (no bounds check: callers carve within `size`). */
  nth(index: number): number {
    return (this.network + index) >>> 0;
  }

  /** Sub-prefix number `index` of length `prefixLen` inside this one (subnet carving, node CIDRs). */
  subnet(prefixLen: number, index: number): Cidr {
    return Cidr.of((this.network + index * 2 ** (32 - prefixLen)) >>> 0, prefixLen);
  }

  equals(other: Cidr): boolean {
    return this.network === other.network && this.prefixLen === other.prefixLen;
  }

  /** `10.244.1.0/24`. */
  format(): string {
    return `${intToIpv4(this.network)}/${this.prefixLen}`;
  }

  toString(): string {
    return this.format();
  }
}
