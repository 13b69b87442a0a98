/**
 * Session-level checks that need configuration, not just bytes: what podlab
 * puts in its OPEN, whether a peer's OPEN is acceptable and what the two
 * OPENs negotiate (RFC 4271 §6.2, §4.2; RFC 5492; RFC 6793; RFC 6286), and
 * the per-session normalization of received UPDATEs (RFC 6793 §4.2.3,
 * RFC 4271 §6.3 leftmost-AS check).
 *
 * Capabilities podlab advertises, and why:
 *  - Multiprotocol IPv4/unicast (RFC 4760): BIRD insists on it once any
 *    capability is present (else it answers 2/7);
 *  - 4-octet AS (RFC 6793): ASNs above 65535 and the AS_PATH encoding BIRD
 *    and Calico use;
 *  - Route Refresh (RFC 2918): answering a ROUTE-REFRESH is cheap, it is the
 *    Adj-RIB-Out re-sent.
 * Not advertised: Graceful Restart (RFC 4724). podlab does send End-of-RIB
 * after its initial table (RFC 4724 §2 recommends it regardless), but it does
 * not keep forwarding state across restarts, and advertising GR would make
 * BIRD keep a dead node's routes as stale for the restart time, against what
 * the lab wants to show (a node goes, its routes go). Received GR, enhanced
 * route refresh, LLGR and unknown capabilities are accepted and listed.
 */
import {
  AFI_IPV4,
  AS_TRANS,
  SAFI_UNICAST,
  type Capability,
  type OpenRepr,
  type UpdateRepr,
  BgpError,
  ERR_OPEN,
  ERR_UPDATE,
  OPEN_BAD_BGP_IDENTIFIER,
  OPEN_BAD_PEER_AS,
  OPEN_UNSUPPORTED_CAPABILITY,
  UPD_MALFORMED_AS_PATH,
  findCapability,
  mergeAs4Path,
  openAsn,
} from './codec/index.ts';
import { ipv4ToInt } from '../packet/addr.ts';

/** What the two OPENs of an established session agreed on. */
export interface NegotiatedSession {
  /** The peer's real ASN (4-octet capability if present, else My AS). */
  remoteAsn: number;
  /** The peer's BGP Identifier. */
  remoteId: string;
  /** Negotiated hold time in seconds (the smaller of the two; 0 = no keepalives). */
  holdTime: number;
  /** Keepalive interval in seconds (ours, capped at holdTime / 3; 0 when holdTime is 0). */
  keepaliveTime: number;
  /** Both advertised the 4-octet AS capability: AS_PATH carries 4-octet ASNs. */
  as4: boolean;
  /** The peer advertised route refresh (RFC 2918), so we may send it ROUTE-REFRESH. */
  routeRefresh: boolean;
  /** Same AS on both ends. */
  ibgp: boolean;
  /** Capabilities we sent and the peer sent (for `summary()`, like `birdc show protocols all`). */
  localCapabilities: Capability[];
  remoteCapabilities: Capability[];
}

/** Local parameters the OPEN exchange needs. */
export interface OpenParams {
  localAsn: number;
  routerId: string;
  /** Our proposed hold time in seconds (0 or >= 3). */
  holdTime: number;
  /** Our keepalive interval in seconds (default holdTime / 3). */
  keepaliveTime?: number;
  /** The ASN the peer must have. */
  peerAsn: number;
}

/** podlab's capabilities: MP IPv4 unicast, route refresh, 4-octet AS (see the note at the top). */
export function podlabCapabilities(localAsn: number): Capability[] {
  return [
    { kind: 'multiprotocol', afi: AFI_IPV4, safi: SAFI_UNICAST },
    { kind: 'route-refresh' },
    { kind: 'four-octet-as', asn: localAsn },
  ];
}

/** The OPEN podlab sends: My AS is AS_TRANS when the ASN needs 4 octets (RFC 6793 §4.1). */
export function buildOpen(p: OpenParams, capabilities: Capability[] = podlabCapabilities(p.localAsn)): OpenRepr {
  return { myAs: p.localAsn > 0xffff ? AS_TRANS : p.localAsn, holdTime: p.holdTime, bgpId: p.routerId, capabilities };
}

/**
 * Accepts or rejects the peer's OPEN (already syntax-checked by the codec)
 * and computes the negotiated session. Errors:
 *  - 2/2 Bad Peer AS: the real ASN (4-octet capability, else My AS) is not
 *    the configured one;
 *  - 2/3 Bad BGP Identifier: iBGP peer using our own identifier (RFC 6286 §2.2);
 *  - 2/7 Unsupported Capability: the peer sent Multiprotocol capabilities but
 *    none for IPv4 unicast, the only family podlab speaks (data: our MP cap).
 */
export function checkOpen(open: OpenRepr, p: OpenParams, sent: Capability[] = podlabCapabilities(p.localAsn)): NegotiatedSession | BgpError {
  const remoteAsn = openAsn(open);
  const as4cap = findCapability(open, 'four-octet-as');
  if (remoteAsn !== p.peerAsn) {
    return new BgpError(ERR_OPEN, OPEN_BAD_PEER_AS, undefined, `peer AS ${remoteAsn} (My AS field ${open.myAs}), expected ${p.peerAsn}`);
  }
  const ibgp = remoteAsn === p.localAsn;
  if (ibgp && ipv4ToInt(open.bgpId) === ipv4ToInt(p.routerId)) {
    return new BgpError(ERR_OPEN, OPEN_BAD_BGP_IDENTIFIER, undefined, `iBGP peer uses our own BGP Identifier ${open.bgpId}`);
  }
  const mps = open.capabilities.filter((c) => c.kind === 'multiprotocol');
  if (mps.length && !mps.some((c) => c.kind === 'multiprotocol' && c.afi === AFI_IPV4 && c.safi === SAFI_UNICAST)) {
    // RFC 5492 §5: the data lists the capabilities we needed and the peer lacks.
    return new BgpError(ERR_OPEN, OPEN_UNSUPPORTED_CAPABILITY, Buffer.from([1, 4, 0, AFI_IPV4, 0, SAFI_UNICAST]), 'peer does not support IPv4 unicast');
  }
  const holdTime = Math.min(p.holdTime, open.holdTime);
  const keepaliveTime = holdTime === 0 ? 0 : Math.min(p.keepaliveTime ?? Math.floor(p.holdTime / 3), holdTime / 3);
  return {
    remoteAsn,
    remoteId: open.bgpId,
    holdTime,
    keepaliveTime,
    as4: as4cap !== undefined && sent.some((c) => c.kind === 'four-octet-as'),
    routeRefresh: open.capabilities.some((c) => c.kind === 'route-refresh'),
    ibgp,
    localCapabilities: sent,
    remoteCapabilities: open.capabilities,
  };
}

/**
 * Normalizes a received UPDATE for the RIB: AS_PATH becomes the real
 * 4-octet path (AS4_PATH merged in from a 2-octet speaker, RFC 6793 §4.2.3;
 * AS4_PATH/AS4_AGGREGATOR discarded from a 4-octet speaker, §4.1), and for
 * an eBGP peer the leftmost AS must be the peer's (RFC 4271 §6.3: 3/11).
 */
export function normalizeUpdate(u: UpdateRepr, s: Pick<NegotiatedSession, 'as4' | 'ibgp' | 'remoteAsn'>): UpdateRepr | BgpError {
  if (!u.nlri.length) return u;
  const a = { ...u.attributes };
  if (s.as4) {
    delete a.as4Path;
    delete a.as4Aggregator;
  } else {
    a.asPath = mergeAs4Path(a.asPath ?? [], a.as4Path);
    if (a.as4Aggregator && a.aggregator?.asn === AS_TRANS) a.aggregator = a.as4Aggregator;
    delete a.as4Path;
    delete a.as4Aggregator;
  }
  if (!s.ibgp) {
    const first = a.asPath?.[0];
    if (!first || first.type !== 'sequence' || first.asns[0] !== s.remoteAsn) {
      return new BgpError(ERR_UPDATE, UPD_MALFORMED_AS_PATH, undefined, `eBGP UPDATE whose leftmost AS is not the peer's ${s.remoteAsn}`);
    }
  }
  return { withdrawn: u.withdrawn, attributes: a, nlri: u.nlri };
}
