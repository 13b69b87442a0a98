/**
 * Typed decode errors for the wire codecs.
 *
 * Parsers in `packet/` never throw on bad input: a packet off the wire is
 * untrusted data, and an exception thrown per malformed datagram would both
 * cost a stack unwind on the data plane and risk taking a node process down.
 * Instead every `parseXxx` returns either its Repr or a `WireError` value,
 * which callers test with `isWireError` (or `instanceof WireError`).
 *
 * Serializers, by contrast, *do* throw (`RangeError`) when handed a Repr
 * that cannot be encoded (a TTL of 300, an invalid MAC string, a 70 KB IPv4
 * payload): that is a programming error in the caller, not hostile input.
 */

/** The protocol layer whose decoder rejected the input. */
export type WireLayer = 'ethernet' | 'arp' | 'ipv4' | 'ipip' | 'icmp' | 'udp' | 'vxlan' | 'tcp' | 'dns' | 'pcapng' | 'spdy' | 'proxy';

/**
 * Why the input was rejected.
 * - `truncated`: the buffer ends before the header (or the length a header
 *   field announces) does.
 * - `bad-version` / `bad-ihl`: IPv4 version or header-length field invalid.
 * - `bad-length`: a length field is self-inconsistent (e.g. IPv4 total length
 *   smaller than its own header, UDP length < 8).
 * - `bad-checksum`: a checksum did not verify.
 * - `bad-flags`: a flags field has an illegal combination (VXLAN I flag).
 * - `reserved-bits`: a must-be-zero field is not zero.
 * - `unsupported`: well-formed but outside what podlab implements
 *   (e.g. ARP for a non-Ethernet/IPv4 pair, 802.3 length-framed Ethernet).
 * - `bad-value`: any other field holds a value the format forbids.
 */
export type WireReason =
  | 'truncated'
  | 'bad-version'
  | 'bad-ihl'
  | 'bad-length'
  | 'bad-checksum'
  | 'bad-flags'
  | 'reserved-bits'
  | 'unsupported'
  | 'bad-value';

/**
 * A decode failure: which layer rejected the input, and why. Returned, not thrown.
 *
 * It carries no stack trace: it is a value describing a packet, created once
 * per malformed datagram, and capturing a V8 stack would make rejecting junk
 * ~20x dearer than parsing a good packet (a cheap flood amplifier).
 */
export class WireError extends Error {
  override name = 'WireError';
  constructor(
    readonly layer: WireLayer,
    readonly reason: WireReason,
    message: string,
  ) {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message);
    Error.stackTraceLimit = limit;
  }
}

/**
 * Type guard for the `Repr | WireError` union every parser returns. Falls
 * back to a structural check so it still works if two copies of this module
 * get loaded (e.g. via different import paths), where `instanceof` would not.
 */
export function isWireError(x: unknown): x is WireError {
  return x instanceof WireError || (x instanceof Error && x.name === 'WireError' && 'layer' in x && 'reason' in x);
}
