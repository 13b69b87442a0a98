/**
 * Sequence-number arithmetic modulo 2^32 (RFC 9293 §3.4): comparisons hold
 * as long as the two numbers are less than 2^31 apart, which TCP's window
 * rules guarantee.
 */

/** a < b in sequence space. */
export const seqLt = (a: number, b: number): boolean => ((a - b) | 0) < 0;
/** a <= b in sequence space. */
export const seqLe = (a: number, b: number): boolean => ((a - b) | 0) <= 0;
/** a > b in sequence space. */
export const seqGt = (a: number, b: number): boolean => ((a - b) | 0) > 0;
/** a >= b in sequence space. */
export const seqGe = (a: number, b: number): boolean => ((a - b) | 0) >= 0;
/** a + n, wrapped to 32 bits. */
export const seqAdd = (a: number, n: number): number => (a + n) >>> 0;
/** The signed distance a - b. */
export const seqDiff = (a: number, b: number): number => (a - b) | 0;
