/**
 * Where the IPv4 header's fields sit (RFC 791 §3.1), shared by the codec
 * (ipv4.ts) and the read-only view (ipv4-packet.ts), so the two can never
 * disagree about a byte.
 */
export const VER_IHL = 0;
export const TOS = 1;
export const TOTAL_LEN = 2;
export const IDENT = 4;
export const FLAGS_FRAG = 6;
export const TTL = 8;
export const PROTOCOL = 9;
export const CHECKSUM = 10;
export const SRC = 12;
export const DST = 16;

export const FLAG_DF = 0x4000;
export const FLAG_MF = 0x2000;
export const FRAG_OFFSET_MASK = 0x1fff;
