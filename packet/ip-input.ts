/**
 * Addresses and CIDRs as people and manifests write them: the one place that
 * validates them, with ipaddr.js, at every boundary (CLI flags, manifests,
 * Node annotations, BGPPeer specs). Only the canonical four-part decimal form
 * is accepted (`10.244.1.0`, not `10.244.1`, `0x0a.0.0.1` or `010.0.0.1`,
 * which ipaddr.js and some libcs read as other addresses), and prefix lengths
 * are written in one or two digits.
 *
 * What passes is handed on as a `Cidr` (packet/cidr.ts), whose integer math
 * is what the data path uses.
 */
import { createRequire } from 'node:module';
import type ipaddrModule from 'ipaddr.js';
import { Cidr } from './cidr.ts';

// Through require, not an ESM import: importing CommonJS from ESM makes Node
// compile its CommonJS lexer (WebAssembly, some 8 MB RSS in every process).
const ipaddr = createRequire(import.meta.url)('ipaddr.js') as typeof ipaddrModule;

/** True if `s` is an IPv4 address in four-part decimal (`10.244.1.2`). */
export function isIpv4Address(s: unknown): s is string {
  return typeof s === 'string' && ipaddr.IPv4.isValidFourPartDecimal(s);
}

/**
 * Parses `a.b.c.d/n` (n 0..32 in at most two digits). `strict`: host bits
 * must be zero (`10.244.1.0/24`, not `10.244.1.7/24`), as Kubernetes'
 * podCIDR and serviceCIDR validation requires. Undefined when malformed.
 */
export function parseIpv4CidrInput(s: unknown, opts: { strict?: boolean } = {}): Cidr | undefined {
  if (typeof s !== 'string' || !/^[^/]+\/\d{1,2}$/.test(s) || !ipaddr.IPv4.isValidCIDRFourPartDecimal(s)) return undefined;
  const [addr, len] = ipaddr.IPv4.parseCIDR(s);
  const c = Cidr.of(addr.toString(), len);
  if (opts.strict && c.networkAddress !== addr.toString()) return undefined;
  return c;
}

/** True if `s` is an IPv4 CIDR (see {@link parseIpv4CidrInput}). */
export function isIpv4Cidr(s: unknown, opts: { strict?: boolean } = {}): s is string {
  return parseIpv4CidrInput(s, opts) !== undefined;
}

/** True if `s` is an IPv4 address in four-part decimal or an IPv6 address (Kubernetes' ParseIP). */
export function isIpAddress(s: unknown): s is string {
  return isIpv4Address(s) || (typeof s === 'string' && s.includes(':') && ipaddr.IPv6.isValid(s));
}

/** The bytes of an address accepted by {@link isIpAddress} (4 or 16, as a certificate's iPAddress holds them); undefined otherwise. */
export function ipAddressBytes(s: string): Buffer | undefined {
  return isIpAddress(s) ? Buffer.from(ipaddr.parse(s).toByteArray()) : undefined;
}

/** An address as written by convention: IPv6 compressed (RFC 5952: `::1`, not `0:0:0:0:0:0:0:1` as OpenSSL prints it). */
export function canonicalIpAddress(s: string): string {
  return ipaddr.isValid(s) ? ipaddr.parse(s).toString() : s;
}
