/**
 * Link- and network-layer address helpers.
 *
 * Reprs carry addresses as canonical strings (MAC "aa:bb:cc:dd:ee:ff" in
 * lower case, IPv4 dotted quad "10.244.1.2") because they are what the
 * control plane, logs and tests speak. These helpers convert between those
 * strings and wire bytes without intermediate arrays or regexes, since they
 * run several times per packet on the data plane.
 */

/** The all-ones Ethernet broadcast address (IEEE 802-2014 §8.2). */
export const BROADCAST_MAC = 'ff:ff:ff:ff:ff:ff';

/** The all-zeros MAC, used as the unknown target hardware address in an ARP request (RFC 826). */
export const ZERO_MAC = '00:00:00:00:00:00';

const HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** Value of one hex digit char code, or -1. Accepts both cases on input. */
function hexVal(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30; // 0-9
  if (c >= 0x61 && c <= 0x66) return c - 0x57; // a-f
  if (c >= 0x41 && c <= 0x46) return c - 0x37; // A-F
  return -1;
}

/** True if `s` is a colon-separated 6-octet MAC ("aa:bb:cc:dd:ee:ff", either case). */
export function isValidMac(s: string): boolean {
  if (typeof s !== 'string' || s.length !== 17) return false;
  for (let i = 0; i < 17; i++) {
    const c = s.charCodeAt(i);
    if (i % 3 === 2) {
      if (c !== 0x3a) return false;
    } else if (hexVal(c) < 0) {
      return false;
    }
  }
  return true;
}

/** Reads the 6-byte MAC at `off` as a lower-case colon-separated string. Caller guarantees bounds. */
export function readMac(buf: Buffer, off: number): string {
  return (
    HEX[buf[off]] + ':' + HEX[buf[off + 1]] + ':' + HEX[buf[off + 2]] + ':' +
    HEX[buf[off + 3]] + ':' + HEX[buf[off + 4]] + ':' + HEX[buf[off + 5]]
  );
}

/**
 * Memo of recently converted address strings. The same few addresses (VTEPs,
 * pod gateways) recur on every packet, and a Map hit is several times cheaper
 * than re-parsing the string. Bounded: cleared wholesale when full.
 */
const MEMO_MAX = 4096;
const macMemo = new Map<string, Uint8Array>();
const ipv4Memo = new Map<string, number>();
let lastMac0 = '';
let lastMacBytes0: Uint8Array | undefined;
let lastMac1 = '';
let lastMacBytes1: Uint8Array | undefined;
let lastSlot = 1;

/** Writes `mac` as 6 bytes at `off`. Throws RangeError if `mac` is not a valid MAC string. */
export function writeMac(buf: Buffer, off: number, mac: string): void {
  // A frame's two MACs are the last two written, most of the time: compared before the memo's hash lookup.
  let bytes = mac === lastMac0 ? lastMacBytes0 : mac === lastMac1 ? lastMacBytes1 : undefined;
  if (bytes === undefined) {
    bytes = macMemo.get(mac);
    if (bytes === undefined) {
      if (!isValidMac(mac)) throw new RangeError(`invalid MAC address: ${JSON.stringify(mac)}`);
      bytes = new Uint8Array(6);
      for (let i = 0; i < 6; i++) bytes[i] = (hexVal(mac.charCodeAt(i * 3)) << 4) | hexVal(mac.charCodeAt(i * 3 + 1));
      if (macMemo.size >= MEMO_MAX) macMemo.clear();
      macMemo.set(mac, bytes);
    }
    // The slot filled longer ago takes it: a hit costs no store.
    if (lastSlot === 1) {
      lastMac0 = mac;
      lastMacBytes0 = bytes;
      lastSlot = 0;
    } else {
      lastMac1 = mac;
      lastMacBytes1 = bytes;
      lastSlot = 1;
    }
  }
  buf[off] = bytes[0];
  buf[off + 1] = bytes[1];
  buf[off + 2] = bytes[2];
  buf[off + 3] = bytes[3];
  buf[off + 4] = bytes[4];
  buf[off + 5] = bytes[5];
}

/** Returns a fresh 6-byte Buffer for `mac`. Throws RangeError on an invalid MAC. */
export function macToBuffer(mac: string): Buffer {
  const b = Buffer.allocUnsafe(6);
  writeMac(b, 0, mac);
  return b;
}

/**
 * Parses a dotted quad to an unsigned 32-bit integer, or returns -1.
 * Strict: exactly four decimal octets 0-255, no leading zeros (which some
 * libcs read as octal, so accepting them would be ambiguous), no whitespace.
 */
function parseIpv4(s: string): number {
  if (typeof s !== 'string') return -1;
  const n = s.length;
  if (n < 7 || n > 15) return -1;
  let result = 0;
  let octets = 0;
  let i = 0;
  while (true) {
    let v = 0;
    let digits = 0;
    const start = i;
    while (i < n) {
      const c = s.charCodeAt(i);
      if (c < 0x30 || c > 0x39) break;
      v = v * 10 + (c - 0x30);
      digits++;
      i++;
    }
    if (digits === 0 || digits > 3 || v > 255) return -1;
    if (digits > 1 && s.charCodeAt(start) === 0x30) return -1;
    result = result * 256 + v; // multiply, not <<, to stay unsigned
    octets++;
    if (octets === 4) return i === n ? result : -1;
    if (i >= n || s.charCodeAt(i) !== 0x2e) return -1;
    i++;
  }
}

/** True if `s` is a canonical dotted-quad IPv4 address. */
export function isValidIpv4(s: string): boolean {
  return parseIpv4(s) >= 0;
}

/** Dotted quad to unsigned 32-bit integer (0..2^32-1). Throws RangeError on an invalid address. */
export function ipv4ToInt(s: string): number {
  let v = ipv4Memo.get(s);
  if (v === undefined) {
    v = parseIpv4(s);
    if (v < 0) throw new RangeError(`invalid IPv4 address: ${JSON.stringify(s)}`);
    if (ipv4Memo.size >= MEMO_MAX) ipv4Memo.clear();
    ipv4Memo.set(s, v);
  }
  return v;
}

/** Unsigned (or signed) 32-bit integer to dotted quad. Only the low 32 bits are used. */
export function intToIpv4(n: number): string {
  return ((n >>> 24) & 0xff) + '.' + ((n >>> 16) & 0xff) + '.' + ((n >>> 8) & 0xff) + '.' + (n & 0xff);
}

const ADDR_CACHE = 64;
/** -1 never matches an address read as an unsigned 32-bit number. */
const addrCacheInt: number[] = new Array<number>(ADDR_CACHE).fill(-1);
const addrCacheStr: string[] = new Array<string>(ADDR_CACHE).fill('');

/** Reads the 4-byte IPv4 address at `off` as a dotted quad. Caller guarantees bounds. */
export function readIpv4(buf: Buffer, off: number): string {
  // A packet's addresses are those of the last few: their strings come from a small direct-mapped cache, not
  // built again for every packet (and a string seen before has its hash, for the maps keyed by address).
  const v = ((buf[off] << 24) | (buf[off + 1] << 16) | (buf[off + 2] << 8) | buf[off + 3]) >>> 0;
  const i = (v ^ (v >>> 11) ^ (v >>> 22)) & (ADDR_CACHE - 1);
  if (addrCacheInt[i] === v) return addrCacheStr[i];
  const s = buf[off] + '.' + buf[off + 1] + '.' + buf[off + 2] + '.' + buf[off + 3];
  addrCacheInt[i] = v;
  addrCacheStr[i] = s;
  return s;
}

/** Writes `ip` as 4 network-order bytes at `off`. Throws RangeError on an invalid address. */
export function writeIpv4(buf: Buffer, off: number, ip: string): void {
  const v = ipv4ToInt(ip);
  buf[off] = v >>> 24;
  buf[off + 1] = (v >>> 16) & 0xff;
  buf[off + 2] = (v >>> 8) & 0xff;
  buf[off + 3] = v & 0xff;
}
