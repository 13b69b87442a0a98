/**
 * The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
 *
 * The checksum is the 16-bit one's complement of the one's complement sum of
 * the data taken as big-endian 16-bit words. We accumulate in a plain JS
 * number (exact up to 2^53, i.e. ~2^37 words, far beyond any packet) and fold
 * the carries once at the end (RFC 1071 §2(C), "deferred carries").
 *
 * A datagram's checksummed bytes are often spread over several buffers
 * (pseudo-header, header, payload). If one of those has an odd length, the
 * next buffer's first byte is the *low* byte of a word that straddles the
 * boundary; `internetChecksum(a, b)` handles that, so it always equals
 * `internetChecksum(Buffer.concat([a, b]))`.
 */
import { ipv4ToInt } from './addr.ts';

/**
 * Unfolded one's complement sum of `buf[start, end)` taken as big-endian
 * 16-bit words (`buf[start]` is a high byte), added to `seed`. An odd final
 * byte is padded with a zero low byte (RFC 1071 §4.1). Fold with
 * `foldChecksum` and complement to get a checksum. Sums of separate ranges
 * can be added as long as every range but the last has an even length.
 */
export function onesComplementSum(buf: Buffer, start = 0, end = buf.length, seed = 0): number {
  let s = seed;
  let i = start;
  if (end - start >= 64) {
    // 32-bit reads (RFC 1071 §2(B), "parallel summation") halve the loop count; each adds at most 0x1fffe, so
    // the double stays exact for ~2^36 words. Worth it only past DataView setup.
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const end4 = end - 3;
    for (; i < end4; i += 4) {
      const w = view.getUint32(i);
      s += (w >>> 16) + (w & 0xffff);
    }
  }
  const end2 = end - 1;
  for (; i < end2; i += 2) s += (buf[i] << 8) | buf[i + 1];
  if (i < end) s += buf[i] << 8;
  return s;
}

/**
 * One's complement sum (unfolded) of `bufs` as 16-bit big-endian words, starting
 * from `seed`. An odd trailing byte is padded with zero (RFC 1071 §4.1), but
 * only after the last buffer: mid-sequence it pairs with the next buffer.
 */
function sumBuffers(seed: number, bufs: readonly Buffer[]): number {
  let s = seed;
  let odd = false; // previous buffer left a high byte waiting for its low byte
  for (let k = 0; k < bufs.length; k++) {
    const b = bufs[k];
    const n = b.length;
    if (n === 0) continue;
    let i = 0;
    if (odd) {
      s += b[0]; // low byte of the straddling word
      i = 1;
    }
    s = onesComplementSum(b, i, n, s);
    odd = (n - i) % 2 === 1;
  }
  return s;
}

/** Folds an unfolded one's complement sum to 16 bits (end-around carry), without complementing. */
export function foldChecksum(sum: number): number {
  // Two rounds of (hi + lo) suffice for sums < 2^32; loop for larger ones.
  while (sum > 0xffff) sum = (sum % 0x10000) + Math.floor(sum / 0x10000);
  return sum;
}

/**
 * RFC 1071 Internet checksum over the concatenation of `bufs`.
 * To verify a received header/segment, run it over the bytes *including* the
 * checksum field: the result is 0 when the checksum is correct.
 */
export function internetChecksum(...bufs: Buffer[]): number {
  return ~foldChecksum(sumBuffers(0, bufs)) & 0xffff;
}

/**
 * Like `internetChecksum`, but starting from `seed`, an unfolded partial sum
 * such as `pseudoHeaderSum(...)`. Used for UDP/TCP, whose checksum covers a
 * pseudo-header (RFC 768, RFC 9293 §3.1) that never exists as bytes.
 */
export function internetChecksumSeeded(seed: number, ...bufs: Buffer[]): number {
  return ~foldChecksum(sumBuffers(seed, bufs)) & 0xffff;
}

/**
 * Unfolded one's complement sum of the IPv4 pseudo-header used by UDP (RFC 768)
 * and TCP (RFC 9293 §3.1): source address, destination address, zero,
 * protocol, and the transport length (header + data). Addresses may be dotted
 * quads or unsigned 32-bit integers. Feed the result to `internetChecksumSeeded`.
 */
export function pseudoHeaderSum(src: string | number, dst: string | number, protocol: number, length: number): number {
  const s = typeof src === 'number' ? src >>> 0 : ipv4ToInt(src);
  const d = typeof dst === 'number' ? dst >>> 0 : ipv4ToInt(dst);
  return (s >>> 16) + (s & 0xffff) + (d >>> 16) + (d & 0xffff) + (protocol & 0xff) + (length & 0xffff);
}

/**
 * RFC 1624 incremental update of checksum `hc` when one 16-bit word of the
 * covered data changes from `oldWord` to `newWord`, using eqn. 3:
 * HC' = ~(~HC + ~m + m'). Eqn. 3, not RFC 1141's HC' = HC + m + ~m', because
 * RFC 1624 §4 shows the latter yielding 0xffff where a full recomputation
 * gives 0x0000; eqn. 3 agrees with recomputation.
 *
 * For UDP, a caller adjusting a checksum must skip a transmitted checksum of 0
 * (meaning "none", RFC 768) and send a computed 0 as 0xffff.
 */
export function checksumAdjust(hc: number, oldWord: number, newWord: number): number {
  const sum = (~hc & 0xffff) + (~oldWord & 0xffff) + (newWord & 0xffff);
  return ~foldChecksum(sum) & 0xffff;
}

/**
 * RFC 1624 incremental update for a 32-bit field (two 16-bit words), e.g. an
 * IPv4 address rewritten by NAT, which changes the IPv4 header checksum and
 * (via the pseudo-header) the UDP/TCP checksum. Values are unsigned 32-bit
 * integers, e.g. from `ipv4ToInt`.
 */
export function checksumAdjust32(hc: number, oldValue: number, newValue: number): number {
  const sum =
    (~hc & 0xffff) +
    (~(oldValue >>> 16) & 0xffff) + (~oldValue & 0xffff) +
    ((newValue >>> 16) & 0xffff) + (newValue & 0xffff);
  return ~foldChecksum(sum) & 0xffff;
}
