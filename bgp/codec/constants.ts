/**
 * BGP-4 wire constants: message types and lengths (RFC 4271 §4), path
 * attribute type codes and flags (§4.3, §5; RFC 4456, RFC 6793, RFC 1997),
 * capability codes (RFC 5492 and the IANA registry), AFI/SAFI (RFC 4760).
 */

/** The well-known BGP TCP port (podlab's local mode uses e.g. 1179: 179 needs root). */
export const BGP_PORT = 179;
/** The only BGP version spoken (RFC 4271 §4.2). */
export const BGP_VERSION = 4;
/** Length of the all-ones marker at the start of every message. */
export const BGP_MARKER_LEN = 16;
/** Marker (16) + Length (2) + Type (1). */
export const BGP_HEADER_LEN = 19;
/** Largest message RFC 4271 allows (RFC 8654 extended messages are not negotiated). */
export const BGP_MAX_MESSAGE_LEN = 4096;
/** RFC 6793 §9: the 2-octet placeholder for a 4-octet AS number. */
export const AS_TRANS = 23456;

/** Message type codes (RFC 4271 §4.1, RFC 2918 §3). */
export const MSG_OPEN = 1;
export const MSG_UPDATE = 2;
export const MSG_NOTIFICATION = 3;
export const MSG_KEEPALIVE = 4;
export const MSG_ROUTE_REFRESH = 5;

/** Smallest legal message length per type, header included (RFC 4271 §4, RFC 2918 §3). */
export const MIN_MESSAGE_LEN: Readonly<Record<number, number>> = {
  [MSG_OPEN]: 29,
  [MSG_UPDATE]: 23,
  [MSG_NOTIFICATION]: 21,
  [MSG_KEEPALIVE]: 19,
  [MSG_ROUTE_REFRESH]: 23,
};

/** Human names of the message types, as Wireshark and BIRD print them. */
export const MESSAGE_TYPE_NAMES: Readonly<Record<number, string>> = {
  [MSG_OPEN]: 'OPEN',
  [MSG_UPDATE]: 'UPDATE',
  [MSG_NOTIFICATION]: 'NOTIFICATION',
  [MSG_KEEPALIVE]: 'KEEPALIVE',
  [MSG_ROUTE_REFRESH]: 'ROUTE-REFRESH',
};

/** Optional parameter type carrying capabilities (RFC 5492 §4); the only one RFC 4271 leaves alive. */
export const OPT_PARAM_CAPABILITIES = 2;

/** Path attribute flag bits (RFC 4271 §4.3). The low four bits are unused. */
export const ATTR_FLAG_OPTIONAL = 0x80;
export const ATTR_FLAG_TRANSITIVE = 0x40;
export const ATTR_FLAG_PARTIAL = 0x20;
export const ATTR_FLAG_EXTENDED_LENGTH = 0x10;

/** Path attribute type codes. */
export const ATTR_ORIGIN = 1;
export const ATTR_AS_PATH = 2;
export const ATTR_NEXT_HOP = 3;
export const ATTR_MULTI_EXIT_DISC = 4;
export const ATTR_LOCAL_PREF = 5;
export const ATTR_ATOMIC_AGGREGATE = 6;
export const ATTR_AGGREGATOR = 7;
/** RFC 1997. */
export const ATTR_COMMUNITIES = 8;
/** RFC 4456. */
export const ATTR_ORIGINATOR_ID = 9;
/** RFC 4456. */
export const ATTR_CLUSTER_LIST = 10;
/** RFC 4760 (not decoded by podlab: kept raw). */
export const ATTR_MP_REACH_NLRI = 14;
export const ATTR_MP_UNREACH_NLRI = 15;
/** RFC 6793. */
export const ATTR_AS4_PATH = 17;
export const ATTR_AS4_AGGREGATOR = 18;
/** RFC 8092 (carried as a raw optional transitive attribute: ./large-community.ts). */
export const ATTR_LARGE_COMMUNITY = 32;

/** Names for log lines and `routes()` output. */
export const ATTR_NAMES: Readonly<Record<number, string>> = {
  [ATTR_ORIGIN]: 'ORIGIN',
  [ATTR_AS_PATH]: 'AS_PATH',
  [ATTR_NEXT_HOP]: 'NEXT_HOP',
  [ATTR_MULTI_EXIT_DISC]: 'MULTI_EXIT_DISC',
  [ATTR_LOCAL_PREF]: 'LOCAL_PREF',
  [ATTR_ATOMIC_AGGREGATE]: 'ATOMIC_AGGREGATE',
  [ATTR_AGGREGATOR]: 'AGGREGATOR',
  [ATTR_COMMUNITIES]: 'COMMUNITIES',
  [ATTR_ORIGINATOR_ID]: 'ORIGINATOR_ID',
  [ATTR_CLUSTER_LIST]: 'CLUSTER_LIST',
  [ATTR_MP_REACH_NLRI]: 'MP_REACH_NLRI',
  [ATTR_MP_UNREACH_NLRI]: 'MP_UNREACH_NLRI',
  [ATTR_AS4_PATH]: 'AS4_PATH',
  [ATTR_AS4_AGGREGATOR]: 'AS4_AGGREGATOR',
  [ATTR_LARGE_COMMUNITY]: 'LARGE_COMMUNITY',
};

/** AS_PATH segment types (RFC 4271 §4.3, RFC 5065 §3). */
export const AS_SET = 1;
export const AS_SEQUENCE = 2;
export const AS_CONFED_SEQUENCE = 3;
export const AS_CONFED_SET = 4;

/** ORIGIN values (RFC 4271 §5.1.1). */
export const ORIGIN_IGP = 0;
export const ORIGIN_EGP = 1;
export const ORIGIN_INCOMPLETE = 2;

/** Well-known communities (RFC 1997). */
export const COMMUNITY_NO_EXPORT = 0xffffff01;
export const COMMUNITY_NO_ADVERTISE = 0xffffff02;
export const COMMUNITY_NO_EXPORT_SUBCONFED = 0xffffff03;

/** Capability codes (IANA "Capability Codes" registry). */
export const CAP_MULTIPROTOCOL = 1;
export const CAP_ROUTE_REFRESH = 2;
export const CAP_EXTENDED_NEXT_HOP = 5;
export const CAP_EXTENDED_MESSAGE = 6;
export const CAP_GRACEFUL_RESTART = 64;
export const CAP_FOUR_OCTET_AS = 65;
export const CAP_ADD_PATH = 69;
export const CAP_ENHANCED_ROUTE_REFRESH = 70;
export const CAP_LONG_LIVED_GR = 71;
export const CAP_FQDN = 73;
export const CAP_ROUTE_REFRESH_CISCO = 128;

/** Capability names (what `birdc show protocols all` lists). */
export const CAPABILITY_NAMES: Readonly<Record<number, string>> = {
  [CAP_MULTIPROTOCOL]: 'Multiprotocol',
  [CAP_ROUTE_REFRESH]: 'Route refresh',
  [CAP_EXTENDED_NEXT_HOP]: 'Extended next hop',
  [CAP_EXTENDED_MESSAGE]: 'Extended message',
  [CAP_GRACEFUL_RESTART]: 'Graceful restart',
  [CAP_FOUR_OCTET_AS]: '4-octet AS numbers',
  [CAP_ADD_PATH]: 'ADD-PATH',
  [CAP_ENHANCED_ROUTE_REFRESH]: 'Enhanced refresh',
  [CAP_LONG_LIVED_GR]: 'Long-lived graceful restart',
  [CAP_FQDN]: 'Hostname',
  [CAP_ROUTE_REFRESH_CISCO]: 'Route refresh (Cisco)',
};

/** Address family identifiers (RFC 4760 §3, IANA). */
export const AFI_IPV4 = 1;
export const AFI_IPV6 = 2;
/** Subsequent address family identifiers. */
export const SAFI_UNICAST = 1;
export const SAFI_MULTICAST = 2;
