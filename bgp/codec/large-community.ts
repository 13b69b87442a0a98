/**
 * RFC 8092 LARGE_COMMUNITY (type 32, optional transitive): a list of
 * 12-octet (global administrator, local data 1, local data 2) triples.
 *
 * podlab's attribute codec keeps attributes it does not decode verbatim in
 * `PathAttributes.other`; a large community travels that way, so these two
 * functions only build and read that raw value (speakers relay it with the
 * Partial bit as RFC 4271 §5 says for unrecognized transitive attributes).
 */
import { ATTR_FLAG_OPTIONAL, ATTR_FLAG_TRANSITIVE, ATTR_LARGE_COMMUNITY } from './constants.ts';
import type { RawAttribute } from './attributes.ts';

export type LargeCommunity = readonly [number, number, number];

/** The raw attribute for `list` (deduplicated, order kept). Throws RangeError on a value outside u32. */
export function largeCommunityAttribute(list: readonly LargeCommunity[]): RawAttribute {
  const seen = new Set<string>();
  const uniq = list.filter((c) => !seen.has(c.join(':')) && seen.add(c.join(':')));
  const value = Buffer.alloc(12 * uniq.length);
  uniq.forEach((c, i) => {
    for (let j = 0; j < 3; j++) {
      if (!Number.isInteger(c[j]) || c[j] < 0 || c[j] > 0xffffffff) throw new RangeError(`large community part out of range: ${c.join(':')}`);
      value.writeUInt32BE(c[j], 12 * i + 4 * j);
    }
  });
  return { flags: ATTR_FLAG_OPTIONAL | ATTR_FLAG_TRANSITIVE, type: ATTR_LARGE_COMMUNITY, value };
}

/** The triples of a LARGE_COMMUNITY value; undefined when its length is not a non-zero multiple of 12 (RFC 8092 §5: malformed). */
export function parseLargeCommunities(value: Buffer): LargeCommunity[] | undefined {
  if (value.length === 0 || value.length % 12 !== 0) return undefined;
  const out: LargeCommunity[] = [];
  for (let o = 0; o < value.length; o += 12) out.push([value.readUInt32BE(o), value.readUInt32BE(o + 4), value.readUInt32BE(o + 8)]);
  return out;
}

/** BIRD's notation, `(1, 2, 3)`. */
export function formatLargeCommunity(c: LargeCommunity): string {
  return `(${c[0]}, ${c[1]}, ${c[2]})`;
}
