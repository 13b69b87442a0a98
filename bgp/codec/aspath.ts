/**
 * AS_PATH values and the operations the RIB and the speaker need on them:
 * path length for best-path selection (RFC 4271 §9.1.2.2 a), prepending on
 * eBGP export (§5.1.2), and the 2-octet/4-octet conversion of RFC 6793 §4.2
 * (AS_TRANS in AS_PATH plus an AS4_PATH attribute towards an old speaker;
 * reconstruction of the real path from the two when receiving from one).
 */
import { AS_TRANS } from './constants.ts';

/** AS_PATH segment kinds (RFC 4271 §4.3; the confederation kinds are RFC 5065). */
export type AsPathSegmentType = 'sequence' | 'set' | 'confed-sequence' | 'confed-set';

/** One AS_PATH segment; ASNs are plain numbers (4-octet values once decoded). */
export interface AsPathSegment {
  type: AsPathSegmentType;
  asns: number[];
}

/** An AS_PATH: a list of segments (the empty list for routes originated in our own AS). */
export type AsPath = AsPathSegment[];

/** Path length as RFC 4271 §9.1.2.2 a counts it: an AS_SET counts 1, confederation segments 0. */
export function asPathLength(path: AsPath): number {
  let n = 0;
  for (const s of path) {
    if (s.type === 'sequence') n += s.asns.length;
    else if (s.type === 'set') n += 1;
  }
  return n;
}

/** All ASNs of the path in order (sets flattened in place), for events and display. */
export function flattenAsPath(path: AsPath): number[] {
  return path.flatMap((s) => s.asns);
}

/** True if `asn` appears anywhere in the path (loop detection, RFC 4271 §9.1.2). */
export function asPathContains(path: AsPath, asn: number): boolean {
  return path.some((s) => s.asns.includes(asn));
}

/**
 * The neighbouring AS of a path, for the MED comparison (RFC 4271 §9.1.2.2 c):
 * the first AS of the first AS_SEQUENCE, or `localAsn` for a path without one
 * (a route from inside our own AS).
 */
export function neighborAs(path: AsPath, localAsn: number): number {
  const first = path[0];
  return first && first.type === 'sequence' && first.asns.length ? first.asns[0] : localAsn;
}

/** BIRD's notation: '64512 64513 {65001 65002}' (confederation segments in parentheses / brackets). */
export function asPathToString(path: AsPath): string {
  return path
    .map((s) => {
      const body = s.asns.join(' ');
      switch (s.type) {
        case 'sequence':
          return body;
        case 'set':
          return `{${body}}`;
        case 'confed-sequence':
          return `(${body})`;
        case 'confed-set':
          return `[${body}]`;
      }
    })
    .join(' ');
}

/** A copy of `path` with `asn` prepended (RFC 4271 §5.1.2: into a leading AS_SEQUENCE, or a new one). */
export function prependAs(path: AsPath, asn: number): AsPath {
  const first = path[0];
  if (first && first.type === 'sequence' && first.asns.length < 255) {
    return [{ type: 'sequence', asns: [asn, ...first.asns] }, ...path.slice(1).map(cloneSeg)];
  }
  return [{ type: 'sequence', asns: [asn] }, ...path.map(cloneSeg)];
}

function cloneSeg(s: AsPathSegment): AsPathSegment {
  return { type: s.type, asns: [...s.asns] };
}

/** Deep copy. */
export function cloneAsPath(path: AsPath): AsPath {
  return path.map(cloneSeg);
}

/** True if every ASN fits in 2 octets. */
export function isTwoOctetPath(path: AsPath): boolean {
  return path.every((s) => s.asns.every((a) => a <= 0xffff));
}

/**
 * RFC 6793 §4.2.2: the AS_PATH to send to a speaker without the 4-octet AS
 * capability (every ASN > 65535 replaced by AS_TRANS) and, when anything was
 * replaced, the AS4_PATH carrying the real path (confederation segments are
 * not put in AS4_PATH).
 */
export function toTwoOctetPath(path: AsPath): { asPath: AsPath; as4Path?: AsPath } {
  if (isTwoOctetPath(path)) return { asPath: cloneAsPath(path) };
  const asPath = path.map((s) => ({ type: s.type, asns: s.asns.map((a) => (a > 0xffff ? AS_TRANS : a)) }));
  const as4Path = path.filter((s) => s.type === 'sequence' || s.type === 'set').map(cloneSeg);
  return { asPath, as4Path };
}

/**
 * RFC 6793 §4.2.3: rebuilds the real path from an old speaker's AS_PATH and
 * AS4_PATH. If AS_PATH counts fewer ASes than AS4_PATH, AS4_PATH is ignored;
 * otherwise the leading (count(AS_PATH) - count(AS4_PATH)) ASes of AS_PATH are
 * kept and AS4_PATH appended.
 */
export function mergeAs4Path(asPath: AsPath, as4Path: AsPath | undefined): AsPath {
  if (!as4Path) return cloneAsPath(asPath);
  const n = asPathLength(asPath);
  const n4 = asPathLength(as4Path);
  if (n < n4) return cloneAsPath(asPath);
  let keep = n - n4;
  const out: AsPath = [];
  for (const s of asPath) {
    if (s.type === 'confed-sequence' || s.type === 'confed-set') {
      out.push(cloneSeg(s)); // counted as 0: always kept
    } else if (keep > 0) {
      if (s.type === 'set') {
        out.push(cloneSeg(s));
        keep -= 1;
      } else {
        const take = Math.min(keep, s.asns.length);
        out.push({ type: 'sequence', asns: s.asns.slice(0, take) });
        keep -= take;
      }
    }
  }
  for (const s of as4Path) {
    const last = out[out.length - 1];
    if (last && last.type === 'sequence' && s.type === 'sequence' && last.asns.length + s.asns.length <= 255) last.asns.push(...s.asns);
    else out.push(cloneSeg(s));
  }
  return out;
}
